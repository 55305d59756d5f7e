// Small helpers the pages share: building elements without innerHTML (every value from the
// server is set as text), formatting times and money, and line and (horizontal) bar charts
// with uPlot.

/** An element: `h('td', { class: 'num' }, '3')`. Attributes starting with `on` are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A table from column titles and rows of cells. */
export function table(columns, rows, attrs = {}) {
  return h('table', attrs,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows));
}

export function time(value) {
  if (!value) return '–';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleTimeString();
}

export function dateTime(value) {
  if (!value) return '–';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}

/** Minor units in a currency: `money(1299, 'EUR')` is `12.99 EUR`. */
export function money(minor, currency) {
  const digits = ['JPY', 'KRW'].includes(currency) ? 0 : 2;
  return `${(Number(minor) / 10 ** digits).toFixed(digits)} ${currency || ''}`.trim();
}

/** A message line under a page's title; `kind` is 'info', 'ok' or 'error'. */
export function notice(el, text, kind = 'info') {
  fill(el, text ? h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text) : null);
}

/** A UUID, as order ids are. */
export function isUuid(text) {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text.trim());
}

export const COLORS = ['#2563eb', '#16a34a', '#9333ea', '#dc2626', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

function width(el) {
  return Math.max(320, Math.floor(el.clientWidth || el.parentElement?.clientWidth || 800));
}

/**
 * A time-series line chart in `el`: `series` are labels, `data` is [xs, ...ys] (x in Unix
 * seconds unless `opts.time` is false). `opts.xRange` may fix the x axis, as uPlot's scale
 * range function. Returns the uPlot instance; it follows the width of `el`.
 */
export function lineChart(el, series, data, opts = {}) {
  const chart = new window.uPlot({
    width: width(el),
    height: opts.height || 260,
    scales: {
      x: { time: opts.time !== false, range: opts.xRange },
      y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
    },
    axes: [{}, { values: opts.yValues, size: 60 }],
    series: [
      { label: opts.xLabel || 'time' },
      ...series.map((label, i) => ({
        label,
        stroke: COLORS[i % COLORS.length],
        width: 2,
        value: opts.value,
        points: { show: opts.points ?? false },
      })),
    ],
  }, data, el);
  follow(el, chart);
  return chart;
}

/** The font of the charts' axis labels (uPlot's own), to measure them in. */
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif';
/** The height of one bar's row in a bar chart, in CSS pixels: room for a line of label. */
const BAR_ROW = 26;
/** Tick steps for counts (`opts.whole`): no half units. */
const WHOLE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];
/** A label column takes at most this share of a bar chart's width; longer labels are cut. */
const LABEL_SHARE = 1 / 3;

/**
 * A horizontal bar chart in `el`: one bar per label, the first at the top, lengths `values`.
 * Each label is level on its own row, left of its bar, in a column as wide as the longest
 * (up to LABEL_SHARE of the chart, longer ones end in "…"), so labels never overlap however
 * many or long they are; the chart grows taller with the number of bars. `opts.whole`: the
 * values are counts, ticked in whole numbers.
 */
export function barChart(el, labels, values, opts = {}) {
  const measure = document.createElement('canvas').getContext('2d');
  measure.font = AXIS_FONT;
  const textWidth = (text) => Math.ceil(measure.measureText(text).width);
  const fit = (text, room) => {
    if (textWidth(text) <= room) return text;
    let cut = text;
    while (cut.length > 1 && textWidth(`${cut}…`) > room) cut = cut.slice(0, -1);
    return `${cut}…`;
  };
  const ticks = 10;
  const gap = 5;
  const bars = window.uPlot.paths.bars({ size: [0.6, 60] });
  const chart = new window.uPlot({
    width: width(el),
    height: Math.max(opts.height || 260, labels.length * BAR_ROW + 60),
    scales: {
      x: { time: false, ori: 1, dir: -1, range: (u, min, max) => [min - 0.5, max + 0.5] },
      y: { ori: 0, range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
    },
    axes: [
      {
        side: 3,
        font: AXIS_FONT,
        gap,
        ticks: { size: ticks },
        grid: { show: false },
        splits: () => labels.map((_, i) => i),
        values: (u, splits) => splits.map((i) => fit(labels[i] ?? '', Math.floor(u.width * LABEL_SHARE) - ticks - gap)),
        size: (u, shown) => ticks + gap + Math.max(0, ...(shown || []).map(textWidth)) + 4,
      },
      { side: 2, values: opts.yValues, ...(opts.whole && { incrs: WHOLE_STEPS }) },
    ],
    legend: { show: false },
    series: [
      { label: opts.xLabel || '' },
      { label: opts.label || '', fill: COLORS[0], stroke: COLORS[0], paths: bars, points: { show: false } },
    ],
  }, [labels.map((_, i) => i), values], el);
  follow(el, chart);
  return chart;
}

function follow(el, chart) {
  const observer = new ResizeObserver(() => chart.setSize({ width: width(el), height: chart.height }));
  observer.observe(el);
  const destroy = chart.destroy.bind(chart);
  chart.destroy = () => {
    observer.disconnect();
    destroy();
  };
}
