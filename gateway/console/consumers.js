// Consumers: each durable consumer's lag, rate, retries and dead letters, polled every two
// seconds (GET /v1/admin/consumers, GET /v1/admin/dlq, and the consumers' message counters of
// GET /metrics for the rate and the retries), a chart of their lag, and the dead letters with
// their error and a button that sends one back (POST /v1/admin/dlq/{seq}/redrive). Also the
// partners the workers call (the carrier, the mail service), from the same read of /metrics:
// calls in flight, the adaptive limit, whether the partner is down, latency and outcomes.

import { api } from './api.js';
import { h, fill, table, dateTime, notice, lineChart } from './ui.js';

const POLL_MS = 2000;
const WINDOW = 300;

/** What each partner's metric label stands for (workers/src/partner.rs). */
const PARTNER_ROLES = { carrier: 'the carrier (shipments)', notify: 'the mail service (notifications)' };
const PARTNER_OUTCOMES = ['ok', 'refused', 'busy', 'failed'];
const METRIC_LINE = /^(orderflow_consumer_messages_total|orderflow_partner_\w+)\{([^}]*)\} (\S+)$/;

function emptyPartner() {
  return { inFlight: 0, limit: null, down: false, calls: {}, quantiles: {} };
}

/**
 * What the console shows of the Prometheus text of /metrics: the consumers' message counters
 * (consumer -> outcome -> count) and the partners (name -> { inFlight, limit, down, calls:
 * outcome -> count, quantiles: '0.5' -> seconds }). The exporter renders the partners' call
 * durations as a summary (quantile lines over its rolling window of about a minute, all 0 once
 * no call fell in it), so the percentiles are read from those. Both maps are empty when this
 * gateway has no metrics (or runs without the consumers).
 */
async function readMetrics() {
  const response = await fetch('/metrics', { cache: 'no-store' }).catch(() => null);
  const consumers = new Map();
  const partners = new Map();
  if (!response || !response.ok) return { consumers, partners };
  for (const line of (await response.text()).split('\n')) {
    const match = METRIC_LINE.exec(line);
    if (!match) continue;
    const [, name, labelText, valueText] = match;
    const labels = Object.fromEntries([...labelText.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const value = Number(valueText);
    if (name === 'orderflow_consumer_messages_total') {
      if (!consumers.has(labels.consumer)) consumers.set(labels.consumer, {});
      consumers.get(labels.consumer)[labels.outcome] = value;
      continue;
    }
    if (!labels.partner) continue;
    if (!partners.has(labels.partner)) partners.set(labels.partner, emptyPartner());
    const partner = partners.get(labels.partner);
    if (name === 'orderflow_partner_in_flight') partner.inFlight = value;
    else if (name === 'orderflow_partner_limit') partner.limit = value;
    else if (name === 'orderflow_partner_down') partner.down = value === 1;
    else if (name === 'orderflow_partner_calls_total') partner.calls[labels.outcome] = value;
    else if (name === 'orderflow_partner_call_duration_seconds' && labels.quantile) {
      partner.quantiles[labels.quantile] = value;
    }
  }
  return { consumers, partners };
}

/** Seconds as µs, ms or s; '–' when the exporter gave no such number. */
function duration(seconds) {
  if (seconds === undefined || !Number.isFinite(seconds)) return '–';
  if (seconds < 0.001) return `${Math.round(seconds * 1e6)} µs`;
  if (seconds < 1) {
    const ms = seconds * 1000;
    return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  }
  return `${seconds.toFixed(2)} s`;
}

/** A row of the Partners table. */
function partnerRow(name, partner) {
  const calls = PARTNER_OUTCOMES.reduce((sum, outcome) => sum + (partner.calls[outcome] || 0), 0);
  // The slowest call of the window took 0 s: there was none in it.
  const recent = partner.quantiles['1'] !== 0;
  const percentile = (quantile, column) => (recent
    ? h('td', { class: `num ${column}` }, duration(partner.quantiles[quantile]))
    : h('td', { class: `num muted ${column}`, title: 'no call in the last minute' }, '–'));
  return h('tr', { dataset: { partner: name }, class: partner.down ? 'partner-down' : null },
    h('td', {}, name, PARTNER_ROLES[name] ? h('span', { class: 'muted' }, ` ${PARTNER_ROLES[name]}`) : ''),
    h('td', { class: 'state' }, h('span', { class: `badge ${partner.down ? 'bad' : 'ok'}` }, partner.down ? 'down' : 'up')),
    h('td', { class: 'num in-flight' }, partner.inFlight),
    h('td', { class: 'num limit' }, partner.limit ?? '–'),
    calls === 0
      ? h('td', { class: 'muted no-calls', colspan: 2 + PARTNER_OUTCOMES.length }, 'no calls yet')
      : [
        percentile('0.5', 'p50'),
        percentile('0.99', 'p99'),
        PARTNER_OUTCOMES.map((outcome) => h('td', {
          class: `num ${outcome} ${outcome !== 'ok' && partner.calls[outcome] ? 'warn' : ''}`,
        }, partner.calls[outcome] || 0)),
      ]);
}

export function mount(root) {
  const message = h('div', { id: 'consumers-message' });
  const list = h('div', { id: 'consumers-table' });
  const chartBox = h('div', { class: 'chart', id: 'consumers-chart' });
  const letters = h('div', { id: 'dlq-table' });
  const partnerList = h('div', { id: 'partners-table' });
  fill(root,
    h('h1', {}, 'Consumers'),
    message, list,
    h('h2', {}, 'Lag (messages not yet handled)'), chartBox,
    h('h2', {}, 'Partners'), partnerList,
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
      const [{ consumers }, { dead_letters: deadLetters }, { consumers: counts, partners }] = await Promise.all([
        api('/v1/admin/consumers'),
        api('/v1/admin/dlq?limit=100'),
        readMetrics(),
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
      fill(partnerList, partners.size === 0
        ? h('p', { class: 'muted', id: 'partners-empty' }, 'No partners on /metrics (this gateway runs no workers that call one).')
        : table(
          ['partner', 'state', 'in flight', 'limit', 'p50', 'p99', ...PARTNER_OUTCOMES],
          [...partners].sort(([a], [b]) => a.localeCompare(b)).map(([name, partner]) => partnerRow(name, partner))));
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
