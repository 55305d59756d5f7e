// Analytics: revenue per day (one line per currency) and the top SKUs by units sold (one bar
// per SKU, whatever currencies it sold in; its revenue per currency in the table), from the
// analytics read model (GET /v1/analytics/summary), with the numbers as tables too.

import { api } from './api.js';
import { h, fill, table, money, notice, lineChart, barChart } from './ui.js';

const TOP = 10;

const DAY = 86_400_000;
/** The chart shows at least this many days, up to today. */
const MIN_DAYS = 14;

/** Every day (YYYY-MM-DD) from the first of `days` (or MIN_DAYS ago) to today or the last. */
function dayRange(days) {
  const today = Math.floor(Date.now() / DAY) * DAY;
  const stamps = days.map((d) => Date.parse(`${d}T00:00:00Z`));
  const first = Math.min(today - (MIN_DAYS - 1) * DAY, ...stamps);
  const last = Math.max(today, ...stamps);
  const all = [];
  for (let t = first; t <= last; t += DAY) all.push(new Date(t).toISOString().slice(0, 10));
  return all;
}

/**
 * The summary's sales (one entry per SKU and currency) as one entry per SKU: its units summed
 * over currencies and its revenue per currency (by currency code), most units first, then by
 * SKU.
 */
function salesPerSku(sales) {
  const perSku = new Map();
  for (const { sku, currency, units, revenue } of sales) {
    const entry = perSku.get(sku) || { sku, units: 0, revenues: [] };
    entry.units += units;
    entry.revenues.push({ currency, revenue });
    perSku.set(sku, entry);
  }
  const all = [...perSku.values()];
  all.forEach((s) => s.revenues.sort((a, b) => a.currency.localeCompare(b.currency)));
  return all.sort((a, b) => b.units - a.units || a.sku.localeCompare(b.sku));
}

export function mount(root) {
  const message = h('div', { id: 'analytics-message' });
  const revenueBox = h('div', { class: 'chart', id: 'revenue-chart' });
  const skuBox = h('div', { class: 'chart', id: 'sku-chart' });
  const revenueTable = h('div', { id: 'revenue-table' });
  const skuTable = h('div', { id: 'sku-table' });
  const refresh = h('button', { type: 'button' }, 'Refresh');
  fill(root,
    h('h1', {}, 'Analytics ', refresh),
    message,
    h('h2', {}, 'Revenue per day'), revenueBox, revenueTable,
    h('h2', {}, `Top ${TOP} SKUs by units`), skuBox, skuTable);
  const charts = [];

  async function load() {
    try {
      const summary = await api('/v1/analytics/summary');
      charts.splice(0).forEach((c) => c.destroy());
      fill(revenueBox);
      fill(skuBox);
      const currencies = [...new Set(summary.revenue_per_day.map((r) => r.currency))].sort();
      const days = dayRange(summary.revenue_per_day.map((r) => r.day));
      notice(message, `As of log position ${summary.position}; revenue counts orders ${summary.revenue_statuses.join(', ')}.`);
      if (summary.revenue_per_day.length > 0) {
        const xs = days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
        const ys = currencies.map((c) => days.map((d) => {
          const row = summary.revenue_per_day.find((r) => r.day === d && r.currency === c);
          return row ? row.revenue / 100 : 0;
        }));
        charts.push(lineChart(revenueBox, currencies, [xs, ...ys], { points: true, height: 240 }));
      } else {
        fill(revenueBox, h('p', { class: 'muted' }, 'No revenue yet.'));
      }
      fill(revenueTable, table(['day', 'currency', 'orders', 'revenue'],
        summary.revenue_per_day.map((r) => h('tr', {},
          h('td', {}, r.day), h('td', {}, r.currency),
          h('td', { class: 'num' }, r.orders), h('td', { class: 'num' }, money(r.revenue, r.currency))))));
      const skus = salesPerSku(summary.skus).slice(0, TOP);
      if (skus.length > 0) {
        charts.push(barChart(skuBox, skus.map((s) => s.sku), skus.map((s) => s.units), { label: 'units', whole: true, height: 240 }));
      } else {
        fill(skuBox, h('p', { class: 'muted' }, 'No sales yet.'));
      }
      fill(skuTable, table(['sku', 'units', 'revenue'],
        skus.map((s) => h('tr', { dataset: { sku: s.sku } },
          h('td', {}, s.sku), h('td', { class: 'num units' }, s.units),
          h('td', { class: 'num revenue' }, s.revenues.map((r) => money(r.revenue, r.currency)).join(', '))))));
    } catch (error) {
      notice(message, `Could not read the analytics: ${error.message}`, 'error');
    }
  }

  refresh.addEventListener('click', load);
  load();
  return () => charts.forEach((c) => c.destroy());
}
