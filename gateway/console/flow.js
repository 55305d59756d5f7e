// Flow, live: orders placed, confirmed, shipped, rejected and cancelled per second over the
// last five minutes, and the newest events, from the gateway's live feed
// (GET /v1/admin/console/stream, one tick a second).

import { follow } from './api.js';
import { h, fill, table, time, lineChart } from './ui.js';

/** The series of the chart: a label and the event type it counts. */
const SERIES = [
  ['placed', 'OrderPlaced'],
  ['confirmed', 'OrderConfirmed'],
  ['shipped', 'ShipmentStarted'],
  ['rejected', 'OrderRejected'],
  ['cancelled', 'OrderCancelled'],
];
const WINDOW = 300;
const NEWEST = 50;

export function mount(root) {
  const controller = new AbortController();
  const status = h('span', { class: 'badge', id: 'flow-status' }, 'connecting');
  const totals = h('div', { class: 'totals', id: 'flow-totals' });
  const chartBox = h('div', { class: 'chart', id: 'flow-chart' });
  const list = h('div', { id: 'flow-events' });
  fill(root,
    h('h1', {}, 'Flow ', status),
    h('p', { class: 'muted' }, 'Events per second over the last five minutes, as the relay numbers them for publishing; it updates by itself.'),
    totals, chartBox,
    h('h2', {}, 'Newest events'), list);

  const buckets = new Map(); // second -> { type: count }
  let newest = [];
  let position = 0;
  let chart = null;
  let skew = 0; // the gateway's clock minus this browser's, in ms

  function add(second, counts) {
    const bucket = buckets.get(second) || {};
    for (const [type, n] of Object.entries(counts)) bucket[type] = (bucket[type] || 0) + n;
    buckets.set(second, bucket);
  }

  function render() {
    const now = Math.floor((Date.now() + skew) / 1000);
    for (const second of buckets.keys()) if (second < now - WINDOW) buckets.delete(second);
    const xs = [];
    const ys = SERIES.map(() => []);
    for (let s = now - WINDOW + 1; s <= now; s++) {
      xs.push(s);
      const bucket = buckets.get(s) || {};
      SERIES.forEach(([, type], i) => ys[i].push(bucket[type] || 0));
    }
    if (!chart) chart = lineChart(chartBox, SERIES.map(([label]) => `${label}/s`), [xs, ...ys]);
    else chart.setData([xs, ...ys]);
    fill(totals, SERIES.map(([label, type], i) => h('div', { class: 'total' },
      h('span', { class: 'value', id: `total-${label}`, dataset: { type } }, ys[i].reduce((a, b) => a + b, 0)),
      h('span', { class: 'label' }, `${label}, last 5 min`))),
    h('div', { class: 'total' },
      h('span', { class: 'value', id: 'flow-position' }, position),
      h('span', { class: 'label' }, 'log position')));
    fill(list, newest.length === 0
      ? h('p', { class: 'muted' }, 'No events yet.')
      : table(['position', 'stored', 'event', 'order'], newest.map((e) => h('tr', { dataset: { position: e.position } },
        h('td', { class: 'num' }, e.position),
        h('td', {}, time(e.stored_at)),
        h('td', {}, h('span', { class: `type ${e.event_type}` }, e.event_type)),
        h('td', {}, h('a', { href: `#/orders/${encodeURIComponent(e.order_id)}`, class: 'mono' }, e.order_id))))));
  }

  function onEvent(name, tick) {
    if (name === 'unavailable') {
      status.textContent = 'database unavailable';
      status.className = 'badge warn';
      return;
    }
    if (name !== 'tick' || typeof tick !== 'object') return;
    skew = Date.parse(tick.at) - Date.now();
    status.textContent = tick.behind ? 'live, catching up' : 'live';
    status.className = 'badge ok';
    for (const second of tick.history || []) add(second.at, second.counts);
    // Counts of a tick belong to the second the gateway read them in.
    add(Math.floor(Date.parse(tick.at) / 1000), tick.counts || {});
    const seen = new Set(newest.map((e) => e.position));
    const fresh = (tick.events || []).filter((e) => !seen.has(e.position));
    newest = [...fresh, ...newest].sort((a, b) => b.position - a.position).slice(0, NEWEST);
    position = tick.position;
    render();
  }

  render();
  follow('/v1/admin/console/stream', {
    onEvent,
    onState: (s) => {
      if (s !== 'live') {
        status.textContent = s;
        status.className = 'badge warn';
      }
    },
    signal: controller.signal,
  });
  // The x axis moves on even when nothing happens.
  const timer = setInterval(render, 1000);
  return () => {
    clearInterval(timer);
    controller.abort();
    chart?.destroy();
  };
}
