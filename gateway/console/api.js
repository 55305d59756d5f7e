// The console's access to the gateway: the admin token (kept in this tab's sessionStorage,
// never in a URL or a cookie), JSON requests with the bearer header and their problem+json
// errors, and the live feed read as server-sent events with fetch (an EventSource cannot
// send the header).

const TOKEN_KEY = 'orderflow.console.token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** An answer that was not a success: its status and problem document. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  /** The problem's type without its prefix: `admin-disabled`, `order-not-found`, ... */
  get kind() {
    return String(this.problem.type || '').split('/').pop();
  }
}

function headers(extra = {}) {
  const h = { Accept: 'application/json', ...extra };
  const t = token.get();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function parse(response) {
  const type = response.headers.get('content-type') || '';
  if (type.includes('json')) return response.json();
  return response.text();
}

/** A JSON request; throws ApiError for anything but 2xx. A 401 logs the tab out. */
export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, headers: headers(), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await parse(response).catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && token.get()) {
      token.clear();
      window.dispatchEvent(new CustomEvent('console:logout'));
    }
    throw new ApiError(response.status, typeof data === 'object' ? data : { detail: data });
  }
  return data;
}

/**
 * Whether the admin routes are on: 'disabled' (no ORDERFLOW_ADMIN_TOKEN), 'login' (a token is
 * needed, or the one kept is wrong) or 'ok'.
 */
export async function probe() {
  const response = await fetch('/v1/admin/consumers', { headers: headers(), cache: 'no-store' });
  if (response.ok) return 'ok';
  const problem = await parse(response).catch(() => ({}));
  if (response.status === 404 && String(problem?.type || '').endsWith('admin-disabled')) {
    return 'disabled';
  }
  if (response.status === 401) return 'login';
  throw new ApiError(response.status, problem);
}

/** Whether `candidate` opens the admin routes. */
export async function tryToken(candidate) {
  const response = await fetch('/v1/admin/consumers', {
    headers: { Accept: 'application/json', Authorization: `Bearer ${candidate}` },
    cache: 'no-store',
  });
  return response.ok;
}

/**
 * Reads the server-sent events of `path` and calls `onEvent(name, data)` for each one,
 * `onState('live' | 'reconnecting')` as the connection comes and goes. Reconnects after a
 * pause until `signal` aborts.
 */
export async function follow(path, { onEvent, onState, signal }) {
  while (!signal.aborted) {
    try {
      const response = await fetch(path, {
        headers: headers({ Accept: 'text/event-stream' }),
        cache: 'no-store',
        signal,
      });
      if (!response.ok) {
        if (response.status === 401) {
          token.clear();
          window.dispatchEvent(new CustomEvent('console:logout'));
          return;
        }
        throw new Error(`HTTP ${response.status}`);
      }
      onState('live');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          dispatch(block, onEvent);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    onState('reconnecting');
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function dispatch(block, onEvent) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return;
  const text = data.join('\n');
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: handed over as text
  }
  onEvent(name, parsed);
}
