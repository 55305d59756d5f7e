// Projections: each read model's version, position, lag and state, polled every second
// (GET /v1/admin/projections), a button that starts a rebuild in the gateway
// (POST /v1/admin/projections/{name}/rebuild), and the rebuild's progress until it is done.

import { api } from './api.js';
import { h, fill, table, dateTime, notice } from './ui.js';

const POLL_MS = 1000;

export function mount(root) {
  const message = h('div', { id: 'projections-message' });
  const list = h('div', { id: 'projections-table' });
  fill(root,
    h('h1', {}, 'Projections'),
    h('p', { class: 'muted' }, 'A rebuild folds the whole log into shadow tables and swaps them in; the live read model keeps answering until then.'),
    message, list);
  let stopped = false;
  let timer = null;

  async function rebuild(name, button) {
    button.disabled = true;
    try {
      await api(`/v1/admin/projections/${encodeURIComponent(name)}/rebuild`, { method: 'POST', body: {} });
      notice(message, `Rebuild of ${name} started.`, 'ok');
    } catch (error) {
      notice(message, `Rebuild of ${name} was refused: ${error.message}`, 'error');
    }
    await poll(false);
  }

  function progress(task) {
    if (!task) return h('span', { class: 'muted' }, 'none since this gateway started');
    const cell = h('div', { class: `rebuild ${task.state}` },
      h('span', { class: `badge ${task.state === 'failed' ? 'bad' : task.state === 'done' ? 'ok' : 'warn'}` }, task.state),
      ' ', task.phase || '',
      ' ', `${task.done} / ${task.total} events`);
    if (task.state === 'running') {
      cell.append(' ', h('progress', { max: Math.max(task.total, 1), value: task.done }));
    }
    if (task.state === 'done') cell.append(` at position ${task.position}, ${dateTime(task.finished_at)}`);
    if (task.error) cell.append(h('div', { class: 'error' }, task.error));
    return cell;
  }

  async function poll(schedule = true) {
    try {
      const { projections } = await api('/v1/admin/projections');
      if (stopped) return;
      fill(list, table(
        ['projection', 'version', 'position', 'head', 'lag', 'state', 'updated', 'last rebuild', ''],
        projections.map((p) => {
          const running = p.rebuild?.state === 'running';
          const button = h('button', { type: 'button', class: 'rebuild-button', disabled: running }, 'Rebuild');
          button.addEventListener('click', () => rebuild(p.name, button));
          return h('tr', { dataset: { projection: p.name, state: p.state, rebuild: p.rebuild?.state || 'none' } },
            h('td', {}, p.name),
            h('td', { class: 'num' }, p.version ?? '–', p.code_version !== p.version ? h('span', { class: 'muted' }, ` (code ${p.code_version ?? '–'})`) : ''),
            h('td', { class: 'num' }, p.position),
            h('td', { class: 'num' }, p.head_position),
            h('td', { class: `num ${p.lag > 0 ? 'warn' : ''}` }, p.lag),
            h('td', {}, h('span', { class: `badge ${p.state === 'live' ? 'ok' : 'warn'}` }, p.state)),
            h('td', {}, dateTime(p.updated_at)),
            h('td', { class: 'progress' }, progress(p.rebuild)),
            h('td', {}, button));
        })));
    } catch (error) {
      if (!stopped) notice(message, `Could not read the projections: ${error.message}`, 'error');
    } finally {
      if (schedule && !stopped) timer = setTimeout(poll, POLL_MS);
    }
  }

  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
