// Consumers: each durable consumer's lag, rate, retries and dead letters, polled every two
// seconds (GET /v1/admin/consumers, GET /v1/admin/dlq, and the consumers' message counters of
// GET /metrics for the rate and the retries), a chart of their lag, and the dead letters with
// their error and a button that sends one back (POST /v1/admin/dlq/{seq}/redrive).

import { api } from './api.js';
import { h, fill, table, dateTime, notice, lineChart } from './ui.js';

const POLL_MS = 2000;
const WINDOW = 300;

/**
 * The consumers' message counters from the Prometheus text of /metrics: consumer -> outcome ->
 * count. Empty when this gateway has no metrics (or runs without the consumers).
 */
async function counters() {
  const response = await fetch('/metrics', { cache: 'no-store' }).catch(() => null);
  const counts = new Map();
  if (!response || !response.ok) return counts;
  const pattern = /^orderflow_consumer_messages_total\{([^}]*)\} ([0-9.e+]+)$/;
  for (const line of (await response.text()).split('\n')) {
    const match = pattern.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...match[1].matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (!counts.has(labels.consumer)) counts.set(labels.consumer, {});
    counts.get(labels.consumer)[labels.outcome] = Number(match[2]);
  }
  return counts;
}

export function mount(root) {
  const message = h('div', { id: 'consumers-message' });
  const list = h('div', { id: 'consumers-table' });
  const chartBox = h('div', { class: 'chart', id: 'consumers-chart' });
  const letters = h('div', { id: 'dlq-table' });
  fill(root,
    h('h1', {}, 'Consumers'),
    message, list,
    h('h2', {}, 'Lag (messages not yet handled)'), chartBox,
    h('h2', {}, 'Dead letters'), letters);

  let previous = new Map(); // name -> { done, at }
  const rates = new Map();
  const samples = []; // { at, lags: Map(name -> lag) }
  let names = [];
  let chart = null;
  let stopped = false;
  let timer = null;
  let shownLetters = null; // what the dead-letter table shows, to leave it alone while it holds

  async function redrive(letter, button) {
    button.disabled = true;
    try {
      const result = await api(`/v1/admin/dlq/${letter.sequence}/redrive`, { method: 'POST' });
      notice(message, `Dead letter ${letter.sequence} was sent back to ${result.consumer} (${result.subject}).`, 'ok');
    } catch (error) {
      notice(message, `Redrive of ${letter.sequence} failed: ${error.message}`, 'error');
      button.disabled = false;
    }
    await poll(false);
  }

  function renderChart() {
    if (names.length === 0 || samples.length === 0) return;
    const xs = samples.map((s) => s.at);
    const ys = names.map((n) => samples.map((s) => s.lags.get(n) ?? null));
    if (!chart) chart = lineChart(chartBox, names, [xs, ...ys], {
      height: 220,
      xRange: () => {
        const now = Date.now() / 1000;
        return [now - WINDOW, now];
      },
    });
    else chart.setData([xs, ...ys]);
  }

  async function poll(schedule = true) {
    try {
      const [{ consumers }, { dead_letters: deadLetters }, counts] = await Promise.all([
        api('/v1/admin/consumers'),
        api('/v1/admin/dlq?limit=100'),
        counters(),
      ]);
      if (stopped) return;
      const now = Date.now() / 1000;
      const parked = new Map();
      for (const letter of deadLetters) parked.set(letter.consumer, (parked.get(letter.consumer) || 0) + 1);
      const next = new Map();
      for (const c of consumers) {
        // Messages finished (handled, or skipped as handled before) by this process's consumers.
        const outcome = counts.get(c.name);
        if (!outcome) continue;
        const done = (outcome.handled || 0) + (outcome.skipped || 0);
        const before = previous.get(c.name);
        if (before && now > before.at) rates.set(c.name, Math.max(0, (done - before.done) / (now - before.at)));
        next.set(c.name, { done, at: now });
      }
      previous = next;
      names = consumers.map((c) => c.name);
      samples.push({ at: Math.floor(now), lags: new Map(consumers.map((c) => [c.name, c.pending + c.ack_pending])) });
      while (samples.length && samples[0].at < now - WINDOW) samples.shift();
      fill(list, table(
        ['consumer', 'kind', 'lag', 'in hand', 'redelivered now', 'retries', 'rate', 'handled', 'dead letters'],
        consumers.map((c) => h('tr', { dataset: { consumer: c.name }, class: parked.get(c.name) ? 'has-dead-letters' : null },
          h('td', {}, c.name, c.exists ? '' : h('span', { class: 'muted' }, ' (not started)')),
          h('td', {}, c.kind),
          h('td', { class: 'num lag' }, c.pending),
          h('td', { class: 'num' }, c.ack_pending),
          h('td', { class: 'num' }, c.redelivered),
          h('td', { class: 'num retries' }, counts.has(c.name) ? counts.get(c.name).retried || 0 : '–'),
          h('td', { class: 'num rate' }, rates.has(c.name) ? `${rates.get(c.name).toFixed(1)}/s` : '–'),
          h('td', { class: 'num handled' }, counts.get(c.name)?.handled ?? '–'),
          h('td', { class: `num dead ${parked.get(c.name) ? 'bad' : ''}` }, parked.get(c.name) || 0)))));
      const lettersKey = JSON.stringify(deadLetters.map((l) => [l.sequence, l.attempts]));
      if (lettersKey !== shownLetters) {
        shownLetters = lettersKey;
        fill(letters, deadLetters.length === 0
        ? h('p', { class: 'muted', id: 'dlq-empty' }, 'No dead letters.')
        : table(['seq', 'consumer', 'order', 'error', 'attempts', 'parked', ''],
          deadLetters.map((letter) => {
            const button = h('button', { type: 'button', class: 'redrive' }, 'Redrive');
            button.addEventListener('click', () => redrive(letter, button));
            const order = letter.body?.order_id || letter.subject.split('.').pop();
            return h('tr', { class: 'dead-letter', dataset: { sequence: letter.sequence, consumer: letter.consumer } },
              h('td', { class: 'num' }, letter.sequence),
              h('td', {}, letter.consumer),
              h('td', {}, h('a', { class: 'mono', href: `#/orders/${encodeURIComponent(order)}` }, order)),
              h('td', { class: 'error' }, letter.error),
              h('td', { class: 'num' }, letter.attempts),
              h('td', {}, dateTime(letter.parked_at)),
              h('td', {}, button));
          })));
      }
      renderChart();
    } catch (error) {
      if (!stopped) notice(message, `Could not read the consumers: ${error.message}`, 'error');
    } finally {
      if (schedule && !stopped) timer = setTimeout(poll, POLL_MS);
    }
  }

  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
    chart?.destroy();
  };
}
