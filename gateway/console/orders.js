// Orders: find one by id or a customer's orders (GET /v1/orders, GET /v1/customers/{id}/orders),
// and an order's page: its state (GET /v1/orders/{id}), its timeline with the state after each
// event and what changed (GET /v1/admin/orders/{id}/replay), and its trace: what each consumer
// did with each event (GET /v1/admin/orders/{id}/trace), dead-lettered and pending steps marked.

import { api, ApiError } from './api.js';
import { h, fill, table, time, dateTime, money, notice, isUuid } from './ui.js';

const REFRESH_MS = 3000;

export function mount(root, params) {
  return params[0] ? orderPage(root, params[0]) : searchPage(root);
}

function orderRows(orders) {
  return orders.map((o) => h('tr', { class: 'order-row', dataset: { order: o.id } },
    h('td', {}, h('a', { class: 'mono', href: `#/orders/${o.id}` }, o.id)),
    h('td', {}, o.customer_id),
    h('td', {}, h('span', { class: `status ${o.status}` }, o.status)),
    h('td', { class: 'num' }, money(o.total, o.currency)),
    h('td', {}, dateTime(o.placed_at))));
}

function searchPage(root) {
  const input = h('input', { id: 'order-search', name: 'q', type: 'search', placeholder: 'order id or customer id', required: true });
  const message = h('div', { id: 'orders-message' });
  const results = h('div', { id: 'orders-results' });
  const form = h('form', { class: 'search' }, input, h('button', { type: 'submit' }, 'Find'));
  fill(root, h('h1', {}, 'Orders'), form, message, results);

  async function show(title, path) {
    try {
      const page = await api(path);
      notice(message, '');
      fill(results, h('h2', {}, title), page.orders.length === 0
        ? h('p', { class: 'muted' }, 'No orders.')
        : table(['order', 'customer', 'status', 'total', 'placed'], orderRows(page.orders), { id: 'orders-table' }));
    } catch (error) {
      notice(message, error.message, 'error');
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const q = input.value.trim();
    if (!q) return;
    if (isUuid(q)) location.hash = `#/orders/${q.toLowerCase()}`;
    else show(`Orders of customer ${q}`, `/v1/customers/${encodeURIComponent(q)}/orders?limit=50`);
  });
  show('Newest orders', '/v1/orders?limit=20');
  return () => {};
}

function value(v) {
  if (v === undefined || v === null) return '–';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function stateCard(order) {
  return h('dl', { class: 'facts', id: 'order-state' },
    h('dt', {}, 'status'), h('dd', {}, h('span', { class: `status ${order.status}`, id: 'order-status' }, order.status)),
    h('dt', {}, 'customer'), h('dd', {}, order.customer_id),
    h('dt', {}, 'total'), h('dd', {}, money(order.total, order.currency)),
    h('dt', {}, 'lines'), h('dd', {}, order.lines.map((l) => `${l.quantity} × ${l.sku}`).join(', ')),
    h('dt', {}, 'placed'), h('dd', {}, dateTime(order.placed_at)),
    h('dt', {}, 'version'), h('dd', {}, order.version),
    order.tracking_number ? [h('dt', {}, 'tracking'), h('dd', {}, `${order.carrier || ''} ${order.tracking_number}`)] : null,
    order.rejection_reason ? [h('dt', {}, 'rejected'), h('dd', { class: 'bad' }, order.rejection_reason)] : null);
}

/** Changes listed in full; an event that changes more (the order placed) folds them away. */
const SHOWN_CHANGES = 6;

function changes(list) {
  const items = h('ul', { class: 'changes' }, list.map((c) => h('li', {},
    h('code', {}, c.path), ': ', h('span', { class: 'before' }, value(c.before)), ' → ', h('span', { class: 'after' }, value(c.after)))));
  return list.length <= SHOWN_CHANGES ? items : h('details', {}, h('summary', {}, `${list.length} fields set`), items);
}

function timeline(replay) {
  return h('ol', { class: 'timeline', id: 'order-timeline' }, replay.entries.map((e) => h('li', { class: 'entry', dataset: { sequence: e.sequence } },
    h('div', { class: 'head' },
      h('span', { class: 'seq' }, `#${e.sequence}`), ' ',
      h('span', { class: `type ${e.type}` }, e.type), ' ',
      h('span', { class: 'muted' }, `${dateTime(e.recorded_at)} · position ${e.position ?? 'not yet numbered'}`), ' → ',
      h('span', { class: `status ${e.state?.status}` }, e.state?.status || '')),
    e.changes.length === 0 ? null : changes(e.changes))));
}

const OUTCOME_CLASS = { dead_lettered: 'bad', pending: 'warn', retrying: 'warn', redriven: 'warn', handled: 'ok', already_handled: 'ok' };

function trace(data) {
  return h('div', { id: 'order-trace' },
    h('p', {}, 'Placed by request ', h('code', {}, data.request_id || 'unknown')),
    data.events.map((e) => h('section', { class: 'trace-event', dataset: { sequence: e.sequence } },
      h('h3', {}, `#${e.sequence} ${e.event_type}`, ' ',
        h('span', { class: 'muted' }, `stored ${time(e.stored_at)}, published ${e.published_at ? time(e.published_at) : 'not yet'} · position ${e.position ?? '–'}`)),
      e.caused_by ? h('p', { class: 'muted' }, `caused by ${e.caused_by}`) : null,
      e.steps.length === 0 ? h('p', { class: 'muted' }, 'No consumer reacts to this event.') : table(
        ['consumer', 'outcome', 'attempts', 'first seen', 'last attempt', 'took', 'effect', 'error'],
        e.steps.map((s) => h('tr', { class: `step ${OUTCOME_CLASS[s.outcome] || ''}`, dataset: { consumer: s.consumer, outcome: s.outcome } },
          h('td', {}, s.consumer),
          h('td', {}, h('span', { class: `badge ${OUTCOME_CLASS[s.outcome] || ''}` }, s.outcome.replace('_', ' '))),
          h('td', { class: 'num' }, s.attempts ?? '–'),
          h('td', {}, time(s.first_seen_at)),
          h('td', {}, time(s.last_attempt_at)),
          h('td', { class: 'num' }, s.duration_ms === null || s.duration_ms === undefined ? '–' : `${s.duration_ms} ms`),
          h('td', {}, s.effect || ''),
          h('td', { class: 'error' }, s.error || '')))),
      e.caused.length === 0 ? null : h('p', { class: 'caused' }, 'led to ',
        e.caused.map((c, i) => [i ? ', ' : '', `#${c.sequence} ${c.event_type} (by ${c.by})`])))));
}

function orderPage(root, id) {
  const message = h('div', { id: 'order-message' });
  const state = h('div');
  const history = h('div');
  const traceBox = h('div', { id: 'trace-box' });
  fill(root,
    h('p', {}, h('a', { href: '#/orders' }, '← orders')),
    h('h1', {}, 'Order ', h('span', { class: 'mono' }, id)),
    message,
    h('div', { class: 'columns' },
      h('div', {}, h('h2', {}, 'State'), state, h('h2', {}, 'Timeline'), history),
      h('div', {}, h('h2', {}, 'Trace'), traceBox)));
  let stopped = false;
  let timer = null;
  let shownVersion = null;
  let shownTrace = null;

  async function load() {
    try {
      const [order, replay] = await Promise.all([
        api(`/v1/orders/${encodeURIComponent(id)}`),
        api(`/v1/admin/orders/${encodeURIComponent(id)}/replay`),
      ]);
      if (stopped) return;
      // Drawn again only when they changed, so that what the operator unfolded stays open.
      if (replay.version !== shownVersion) {
        shownVersion = replay.version;
        fill(state, stateCard(order));
        fill(history, timeline(replay));
      }
      let traced = null;
      try {
        traced = await api(`/v1/admin/orders/${encodeURIComponent(id)}/trace`);
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 404) throw error;
      }
      const traceKey = JSON.stringify(traced);
      if (traceKey !== shownTrace) {
        shownTrace = traceKey;
        fill(traceBox, traced ? trace(traced)
          : h('p', { class: 'muted', id: 'no-trace' }, 'No trace yet: this gateway does not record one for this order.'));
      }
      notice(message, '');
    } catch (error) {
      if (stopped) return;
      const gone = error instanceof ApiError && error.status === 404;
      notice(message, gone ? `No order ${id}.` : `Could not read the order: ${error.message}`, 'error');
      if (gone) return;
    }
    if (!stopped) timer = setTimeout(load, REFRESH_MS);
  }

  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
