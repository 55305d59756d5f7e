// The operator console in headless Chromium (playwright-core), against a running
// `orderflow serve` that tests/console/main.rs started. Each scenario drives the page as an
// operator would, asserts on what the page shows, and saves a screenshot.
//
// Environment: CONSOLE_BASE (http://127.0.0.1:<port>), CONSOLE_TOKEN (the admin token, unset
// for a gateway without one), CONSOLE_SCENARIOS (comma-separated, in order), CONSOLE_SHOTS
// (the screenshot folder), CONSOLE_CHROMIUM (the browser), NODE_PATH (where playwright-core
// is). Prints `ok <scenario>` for each one that passed; the first failure ends the run with a
// non-zero exit and what was on the page.

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const base = process.env.CONSOLE_BASE;
const adminToken = process.env.CONSOLE_TOKEN || '';
const shots = process.env.CONSOLE_SHOTS;
const scenarios = (process.env.CONSOLE_SCENARIOS || '').split(',').filter(Boolean);
const CUSTOMER = 'c-console';
const WAIT = 30_000;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function api(method, route, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(base + route, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, data };
}

async function placeOrder(sku, quantity, { currency = 'EUR', unitPrice = 1299 } = {}) {
  const response = await api('POST', '/v1/orders', {
    customer_id: CUSTOMER,
    customer_email: 'ops@example.com',
    currency,
    lines: [{ sku, quantity, unit_price: unitPrice }],
    shipping_address: { name: 'Ada L', line1: '1 Main St', city: 'Berlin', postal_code: '10115', country: 'DE' },
  });
  check(response.status === 201, `placing an order answered ${response.status}: ${JSON.stringify(response.data)}`);
  return response.data.id;
}

/**
 * The partners' gauges and call counters as GET /metrics gives them now: partner -> { limit,
 * down, ok, ... } (the metric names without `orderflow_partner_`, outcomes by name).
 */
async function partnerMetrics() {
  const response = await fetch(`${base}/metrics`);
  check(response.ok, `/metrics answered ${response.status}`);
  const partners = {};
  const pattern = /^orderflow_partner_(in_flight|limit|down|calls_total)\{([^}]*)\} (\S+)$/;
  for (const line of (await response.text()).split('\n')) {
    const match = pattern.exec(line);
    if (!match) continue;
    const labels = Object.fromEntries([...match[2].matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    partners[labels.partner] ??= {};
    partners[labels.partner][match[1] === 'calls_total' ? labels.outcome : match[1]] = Number(match[3]);
  }
  return partners;
}

/** The number a selector's element shows. */
async function number(page, selector) {
  return Number((await page.locator(selector).textContent()).trim());
}

/** Waits until `fn(arg)` is true in the page. */
async function until(page, what, fn, arg, timeout = WAIT) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 200 });
  } catch (error) {
    throw new Error(`${what}: not within ${timeout} ms`);
  }
}

/**
 * Where the uPlot chart in `selector` drew its category labels (the x scale's axis): each
 * label's text and box in CSS pixels, from the chart's own layout (uPlot draws on a canvas,
 * so there is no element per label), measured in the axis's font. Only level labels are
 * measured: a rotated one counts as a failure.
 */
async function chartLabels(page, selector) {
  return page.evaluate((selector) => {
    const box = document.querySelector(selector);
    const chart = window.consoleCharts.filter((c) => c.root.isConnected && box.contains(c.root)).pop();
    if (!chart) return null;
    const axis = chart.axes.find((a) => a.scale === 'x');
    const context = document.createElement('canvas').getContext('2d');
    context.font = axis.font[0];
    const ratio = window.devicePixelRatio || 1;
    const labels = axis._values.map((text, i) => {
      const metrics = context.measureText(text);
      const width = metrics.width / ratio;
      const height = (metrics.fontBoundingBoxAscent + metrics.fontBoundingBoxDescent) / ratio;
      const at = chart.valToPos(axis._splits[i], 'x');
      // Bottom (2) or top (0): centred under the tick; left (3) or right (1): beside it.
      const [left, top] = axis.side % 2 === 0 ? [at - width / 2, 0] : [axis.side === 3 ? -width : 0, at - height / 2];
      return { text, left, top, right: left + width, bottom: top + height };
    });
    return { labels, side: axis.side, rotate: axis._rotate, size: axis._size };
  }, selector);
}

/** Pairs of `labels` whose boxes overlap, as "a / b". */
function overlapping(labels) {
  const pairs = [];
  labels.forEach((a, i) => labels.slice(i + 1).forEach((b) => {
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) pairs.push(`${a.text} / ${b.text}`);
  }));
  return pairs;
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

const placed = [];

const SCENARIOS = {
  // The login form: a wrong token is refused, the right one opens the flow page; the token
  // is in sessionStorage and nowhere in the URL or a cookie.
  async login(page) {
    await page.goto(`${base}/console`);
    await page.locator('#login').waitFor({ timeout: WAIT });
    check(!(await page.isVisible('#nav')), 'the pages are not offered before logging in');
    await page.fill('#token', 'not-the-token');
    await page.click('#login button[type=submit]');
    await page.locator('#login-error:not([hidden])').waitFor({ timeout: WAIT });
    check((await page.textContent('#login-error')).includes('does not open'), 'a wrong token is refused');
    await shot(page, '01-login');
    await page.fill('#token', adminToken);
    await page.click('#login button[type=submit]');
    await page.locator('#page-flow').waitFor({ timeout: WAIT });
    check(await page.isVisible('#nav'), 'the pages are offered once logged in');
    check(await page.evaluate(() => sessionStorage.getItem('orderflow.console.token')) === adminToken, 'the token is kept in sessionStorage');
    check(!page.url().includes(adminToken), `the token is not in the URL: ${page.url()}`);
    check(await page.evaluate(() => document.cookie) === '', 'no cookie is set');
  },

  // Orders placed through the API show up in the live chart's totals and the event list, with
  // no reload of the page.
  async flow(page) {
    await page.goto(`${base}/console#/flow`);
    await until(page, 'the live feed connects', () => document.querySelector('#flow-status')?.textContent.startsWith('live'));
    await page.evaluate(() => { window.notReloaded = true; });
    const before = {
      placed: await number(page, '#total-placed'),
      confirmed: await number(page, '#total-confirmed'),
      rejected: await number(page, '#total-rejected'),
    };
    for (const sku of ['SKU-1', 'SKU-2']) {
      const stock = await api('PUT', `/v1/inventory/${sku}`, { available: 1000 });
      check(stock.status === 200, `setting stock answered ${stock.status}`);
    }
    for (let i = 0; i < 8; i++) placed.push(await placeOrder(i % 3 === 2 ? 'SKU-2' : 'SKU-1', 1 + (i % 3)));
    // No stock of this one: inventory rejects it.
    placed.push(await placeOrder('SKU-NONE', 1));
    await until(page, 'the chart counts 9 more placed orders',
      (n) => Number(document.querySelector('#total-placed').textContent) >= n, before.placed + 9);
    await until(page, 'the chart counts 8 more confirmed orders',
      (n) => Number(document.querySelector('#total-confirmed').textContent) >= n, before.confirmed + 8);
    await until(page, 'the chart counts a rejected order',
      (n) => Number(document.querySelector('#total-rejected').textContent) >= n, before.rejected + 1);
    await until(page, 'the event list shows the newest order',
      (id) => [...document.querySelectorAll('#flow-events a')].some((a) => a.textContent === id), placed[placed.length - 1]);
    check(await page.locator('#flow-chart canvas').count() > 0, 'the chart is drawn');
    const rows = await page.locator('#flow-events tbody tr').count();
    check(rows >= 9, `the event list has the new events (${rows} rows)`);
    check(await page.evaluate(() => window.notReloaded === true), 'the page was not reloaded');
    // Let a few shipments in before the picture.
    await until(page, 'a shipment shows', () => Number(document.querySelector('#total-shipped').textContent) >= 1);
    await shot(page, '02-flow');
  },

  // Find the customer's orders, open one: its state, its timeline and its trace (or that
  // there is none yet).
  async order(page) {
    check(placed.length > 0, 'the flow scenario placed orders');
    const id = placed[0];
    await page.goto(`${base}/console#/orders`);
    await page.fill('#order-search', CUSTOMER);
    await page.click('form.search button');
    await until(page, 'the customer\'s orders are listed',
      (n) => document.querySelectorAll('#orders-table tr.order-row').length >= n, placed.length);
    await page.click(`#orders-table a[href="#/orders/${id}"]`);
    await until(page, 'the order has its timeline up to its shipment',
      () => [...document.querySelectorAll('#order-timeline .type')].map((e) => e.textContent).includes('ShipmentStarted'));
    const types = await page.locator('#order-timeline .type').allTextContents();
    check(types[0] === 'OrderPlaced' && types[1] === 'OrderConfirmed', `timeline: ${types}`);
    check((await page.textContent('#order-status')).trim() === 'shipped', 'the state says shipped');
    const changes = await page.locator('#order-timeline ul.changes li').allTextContents();
    check(changes.some((c) => c.startsWith('status')), `the timeline says what changed: ${changes}`);
    await until(page, 'the trace or its absence shows',
      () => document.querySelector('#order-trace, #no-trace') !== null);
    if (await page.locator('#order-trace').count() > 0) {
      const consumers = await page.locator('#order-trace tr.step').evaluateAll((rows) => rows.map((r) => r.dataset.consumer));
      check(consumers.includes('inventory'), `the trace names the consumers: ${consumers}`);
    } else {
      check((await page.textContent('#no-trace')).includes('No trace yet'), 'says there is no trace yet');
    }
    await shot(page, '03-order');
  },

  // An order's trace as the shared contract of GET /v1/admin/orders/{id}/trace has it (the
  // answer is stubbed in the browser, so this holds whether this gateway records traces or
  // not): every event with its steps, dead-lettered and pending steps marked, what each event
  // led to.
  async trace(page) {
    check(placed.length > 0, 'the flow scenario placed orders');
    const id = placed[1];
    const at = new Date().toISOString();
    const step = (consumer, outcome, extra = {}) => ({
      consumer, first_seen_at: at, last_attempt_at: at, attempts: 1, outcome,
      error: null, duration_ms: 4, effect: null, ...extra,
    });
    const sample = {
      order_id: id,
      request_id: 'req-console-test',
      events: [
        {
          sequence: 1, position: 1, event_type: 'OrderPlaced', stored_at: at, published_at: at,
          request_id: 'req-console-test', causation_id: null, caused_by: 'request req-console-test',
          steps: [
            step('inventory', 'handled', { effect: 'reserved 1 x SKU-1' }),
            step('notifications', 'dead_lettered', { attempts: 5, error: 'webhook answered 400 Bad Request' }),
            step('analytics', 'pending', { first_seen_at: null, last_attempt_at: null, attempts: 0, duration_ms: null }),
          ],
          caused: [{ sequence: 2, event_type: 'OrderConfirmed', by: 'inventory' }],
        },
        {
          sequence: 2, position: 3, event_type: 'OrderConfirmed', stored_at: at, published_at: null,
          request_id: 'req-console-test', causation_id: 'e-1', caused_by: 'inventory on event e-1',
          steps: [step('shipments', 'retrying', { attempts: 2, error: 'carrier timed out' })],
          caused: [],
        },
      ],
    };
    await page.route(`**/v1/admin/orders/${id}/trace`, (route) => route.fulfill({
      status: 200, contentType: 'application/json', body: JSON.stringify(sample),
    }));
    await page.goto(`${base}/console#/orders/${id}`);
    await page.locator('#order-trace').waitFor({ timeout: WAIT });
    check((await page.textContent('#order-trace')).includes('req-console-test'), 'the request that placed it');
    const steps = await page.locator('#order-trace tr.step').evaluateAll((rows) => rows.map((r) => [r.dataset.consumer, r.dataset.outcome, r.className]));
    check(steps.length === 4, `every step: ${JSON.stringify(steps)}`);
    const marked = Object.fromEntries(steps.map(([consumer, , cls]) => [consumer, cls]));
    check(marked.notifications.includes('bad'), `a dead-lettered step stands out: ${marked.notifications}`);
    check(marked.analytics.includes('warn'), `a pending step stands out: ${marked.analytics}`);
    check(marked.shipments.includes('warn'), `a retrying step stands out: ${marked.shipments}`);
    check(!marked.inventory.includes('bad') && !marked.inventory.includes('warn'), 'a handled step does not');
    const text = await page.textContent('#order-trace');
    for (const expected of ['webhook answered 400 Bad Request', 'reserved 1 x SKU-1', 'inventory on event e-1', '#2 OrderConfirmed (by inventory)', 'published not yet']) {
      check(text.includes(expected), `the trace shows "${expected}"`);
    }
    await shot(page, '03-trace');
    await page.unroute(`**/v1/admin/orders/${id}/trace`);
  },

  // The notifications webhook refused the first message, so it was parked: the console lists
  // it with its error, and its Redrive button sends it back until the list is empty.
  async redrive(page) {
    await page.goto(`${base}/console#/consumers`);
    await until(page, 'the consumers are listed',
      () => document.querySelector('#consumers-table tr[data-consumer="inventory"]') !== null);
    const row = 'tr.dead-letter[data-consumer="notifications"]';
    await page.locator(row).first().waitFor({ timeout: 60_000 });
    const error = await page.locator(`${row} td.error`).first().textContent();
    check(error.includes('400'), `the dead letter shows its error: ${error}`);
    const parked = await page.locator('tr[data-consumer="notifications"] td.dead').textContent();
    check(Number(parked) >= 1, `the consumer row counts its dead letters: ${parked}`);
    await until(page, 'the consumers\' counters show',
      () => Number(document.querySelector('tr[data-consumer="inventory"] td.handled')?.textContent) > 0);
    await shot(page, '04-dead-letter');
    const sequence = await page.locator(row).first().getAttribute('data-sequence');
    await page.locator(`${row} button.redrive`).first().click();
    await until(page, 'the redrive is confirmed',
      () => (document.querySelector('#consumers-message')?.textContent || '').includes('sent back'));
    await until(page, 'the dead letter is gone',
      (seq) => document.querySelector(`tr.dead-letter[data-sequence="${seq}"]`) === null, sequence);
    await until(page, 'no dead letters are left', () => document.querySelector('#dlq-empty') !== null);
    await shot(page, '05-redriven');
  },

  // Every partner the workers call, as /metrics counts it: the carrier (shipments booked for
  // the orders that shipped) and the mail service (notify: the notifications sent, one of
  // them refused), each up, with its adaptive limit and its calls by outcome. Then, with
  // /metrics stubbed in the browser, a partner that is down and one with no calls yet.
  async partners(page) {
    await page.goto(`${base}/console#/consumers`);
    const cells = (partner) => page.evaluate((p) => {
      const row = document.querySelector(`#partners-table tr[data-partner="${p}"]`);
      if (!row) return null;
      const text = (c) => row.querySelector(`td.${c}`)?.textContent.trim();
      return {
        state: text('state'), inFlight: text('in-flight'), limit: text('limit'), p50: text('p50'),
        p99: text('p99'), ok: text('ok'), refused: text('refused'), busy: text('busy'), failed: text('failed'),
      };
    }, partner);
    for (const partner of ['carrier', 'notify']) {
      // The counters move while messages are handled: wait until the page shows what /metrics
      // says, both read within one poll.
      const deadline = Date.now() + WAIT;
      let shown;
      let metrics;
      for (;;) {
        metrics = (await partnerMetrics())[partner];
        shown = await cells(partner);
        const same = shown && metrics && Number(shown.ok) === metrics.ok && Number(shown.limit) === metrics.limit
          && Number(shown.refused || 0) === (metrics.refused || 0);
        if (same || Date.now() > deadline) break;
        await page.waitForTimeout(500);
      }
      check(metrics, `/metrics has the partner ${partner}`);
      check(metrics.ok > 0, `/metrics counts calls to ${partner} that went well: ${JSON.stringify(metrics)}`);
      check(shown, `the Partners table has a row for ${partner}`);
      check(Number(shown.ok) === metrics.ok, `${partner}: the page counts ${shown.ok} ok calls, /metrics ${metrics.ok}`);
      check(Number(shown.limit) === metrics.limit && metrics.limit > 0, `${partner}: limit ${shown.limit}, /metrics ${metrics.limit}`);
      check(shown.state === 'up' && metrics.down === 0, `${partner} is up: ${shown.state} (down ${metrics.down})`);
      check(/^\d+$/.test(shown.inFlight), `${partner}: calls in flight are a number: ${shown.inFlight}`);
      // '–' once no call fell in the exporter's window of the last minute.
      for (const percentile of ['p50', 'p99']) {
        check(/^(\d+(\.\d+)? (µs|ms|s)|–)$/.test(shown[percentile]), `${partner}: ${percentile} is a time: ${shown[percentile]}`);
      }
    }
    const notify = await cells('notify');
    check(Number(notify.refused) >= 1, `notify: the refused notification is counted: ${notify.refused}`);
    await shot(page, '05-partners');

    // A partner taken for down, and one that has not been called yet (only its gauges exist).
    await page.route('**/metrics', (route) => route.fulfill({
      status: 200,
      contentType: 'text/plain',
      body: [
        'orderflow_partner_in_flight{partner="carrier"} 0',
        'orderflow_partner_limit{partner="carrier"} 7',
        'orderflow_partner_down{partner="carrier"} 1',
        'orderflow_partner_calls_total{partner="carrier",outcome="ok"} 12',
        'orderflow_partner_calls_total{partner="carrier",outcome="failed"} 5',
        'orderflow_partner_call_duration_seconds{partner="carrier",quantile="0.5"} 0.0042',
        'orderflow_partner_call_duration_seconds{partner="carrier",quantile="0.99"} 2.5',
        'orderflow_partner_call_duration_seconds{partner="carrier",quantile="1"} 2.6',
        'orderflow_partner_call_duration_seconds_sum{partner="carrier"} 14',
        'orderflow_partner_call_duration_seconds_count{partner="carrier"} 17',
        'orderflow_partner_limit{partner="notify"} 32',
        'orderflow_partner_down{partner="notify"} 0',
        '',
      ].join('\n'),
    }));
    try {
      await until(page, 'the stubbed carrier shows as down',
        () => document.querySelector('#partners-table tr[data-partner="carrier"] td.state')?.textContent.trim() === 'down', undefined, 10_000);
      const carrier = await cells('carrier');
      check(carrier.limit === '7' && carrier.failed === '5' && carrier.ok === '12', `the stubbed carrier's numbers: ${JSON.stringify(carrier)}`);
      check(carrier.p50 === '4.2 ms' && carrier.p99 === '2.50 s', `the stubbed carrier's percentiles: ${carrier.p50}, ${carrier.p99}`);
      const idle = await cells('notify');
      check(idle.state === 'up' && idle.limit === '32', `a partner not called yet has its gauges: ${JSON.stringify(idle)}`);
      const idleText = await page.textContent('#partners-table tr[data-partner="notify"]');
      check(idleText.includes('no calls yet'), `a partner not called yet says so: ${idleText}`);
      check(!/NaN|undefined/.test(await page.textContent('#partners-table')), 'no NaN or undefined in the table');
      await shot(page, '05-partners-stubbed');
    } finally {
      await page.unroute('**/metrics');
    }
  },

  // Start a rebuild of order-summary and watch it to its end.
  async rebuild(page) {
    await page.goto(`${base}/console#/projections`);
    const row = 'tr[data-projection="order-summary"]';
    await page.locator(row).waitFor({ timeout: WAIT });
    await page.click(`${row} button.rebuild-button`);
    await until(page, 'the rebuild starts',
      () => (document.querySelector('#projections-message')?.textContent || '').includes('started'));
    await until(page, 'the rebuild is done',
      (r) => document.querySelector(r)?.dataset.rebuild === 'done', row, 60_000);
    const progress = await page.textContent(`${row} td.progress`);
    check(progress.includes('done') && progress.includes('events'), `the progress says done: ${progress}`);
    check((await page.getAttribute(row, 'data-state')) === 'live', 'the projection is live again');
    await shot(page, '06-rebuild');
  },

  // Revenue per day and the top SKUs as charts and numbers. One SKU is sold in two
  // currencies: it is one bar and one row, its units summed and its revenue given per
  // currency. Six more SKUs with long names fill the chart: its labels must not overlap.
  async analytics(page) {
    const both = 'SKU-TWO-CURRENCIES';
    const long = Array.from({ length: 6 }, (_, i) => `CONSOLE-LONG-SKU-NAME-${i + 1}`);
    for (const sku of [both, ...long]) {
      const stock = await api('PUT', `/v1/inventory/${sku}`, { available: 1000 });
      check(stock.status === 200, `setting stock answered ${stock.status}`);
    }
    await placeOrder(both, 2, { currency: 'EUR', unitPrice: 1299 });
    await placeOrder(both, 1, { currency: 'USD', unitPrice: 350 });
    for (const sku of long) await placeOrder(sku, 1);
    await page.goto(`${base}/console#/analytics`);
    const shown = (expected) => {
      const rows = [...document.querySelectorAll('#sku-table tr[data-sku]')];
      const units = (sku) => rows.filter((r) => r.dataset.sku === sku)
        .reduce((sum, r) => sum + Number(r.querySelector('td.units').textContent), 0);
      return units(expected.both) === 3 && [...expected.long, 'SKU-1', 'SKU-2'].every((sku) => units(sku) > 0);
    };
    const deadline = Date.now() + WAIT;
    while (!(await page.evaluate(shown, { both, long }))) {
      check(Date.now() < deadline, 'the analytics show every SKU sold, and both orders of the one sold in two currencies');
      await page.waitForTimeout(500);
      await page.click('#page-analytics h1 button');
    }
    check(await page.locator('#revenue-chart canvas').count() > 0, 'the revenue chart is drawn');
    check(await page.locator('#sku-chart canvas').count() > 0, 'the SKU chart is drawn');
    await shot(page, '07-analytics');

    const wrong = [];
    const rows = await page.locator('#sku-table tr[data-sku]').evaluateAll((trs) => trs.map((r) => ({
      sku: r.dataset.sku, units: r.querySelector('td.units').textContent, text: r.textContent,
    })));
    const skus = rows.map((r) => r.sku);
    const bothRows = rows.filter((r) => r.sku === both);
    if (bothRows.length !== 1) wrong.push(`the table lists ${both} ${bothRows.length} times: ${JSON.stringify(rows)}`);
    else {
      if (Number(bothRows[0].units) !== 3) wrong.push(`its units are summed over currencies: ${bothRows[0].units}`);
      for (const revenue of ['25.98 EUR', '3.50 USD']) {
        if (!bothRows[0].text.includes(revenue)) wrong.push(`its row shows the revenue ${revenue}: ${bothRows[0].text}`);
      }
    }
    const chart = await chartLabels(page, '#sku-chart');
    check(chart, 'the SKU chart is a uPlot chart');
    const labels = chart.labels.map((l) => l.text);
    if (labels.filter((l) => l === both).length !== 1) wrong.push(`the chart labels ${both} once: ${JSON.stringify(labels)}`);
    if (JSON.stringify(labels) !== JSON.stringify(skus)) wrong.push(`the chart has a bar per row of the table, in its order: ${JSON.stringify(labels)} vs ${JSON.stringify(skus)}`);
    if (chart.rotate !== 0) wrong.push(`the chart's labels are level (rotated ${chart.rotate})`);
    const overlaps = overlapping(chart.labels);
    if (overlaps.length > 0) wrong.push(`the chart's labels overlap: ${overlaps.join(', ')}`);
    const wider = chart.labels.filter((l) => l.right - l.left > chart.size);
    if (chart.side % 2 === 1 && wider.length > 0) wrong.push(`labels wider than their axis: ${wider.map((l) => l.text)}`);
    check(wrong.length === 0, wrong.join('\n'));
  },

  // A gateway without a token: the console says how to turn the admin routes on.
  async disabled(page) {
    await page.goto(`${base}/console`);
    await page.locator('#disabled').waitFor({ timeout: WAIT });
    check((await page.textContent('#disabled')).includes('ORDERFLOW_ADMIN_TOKEN'), 'names ORDERFLOW_ADMIN_TOKEN');
    check(await page.locator('#login').count() === 0, 'no login form');
    check(!(await page.isVisible('#nav')), 'no pages offered');
    await shot(page, '08-disabled');
  },
};

async function main() {
  fs.mkdirSync(shots, { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CONSOLE_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  // Every uPlot chart the console makes, so that a scenario can read how a chart laid out
  // its axes (uPlot draws on a canvas).
  await context.addInitScript(() => {
    window.consoleCharts = [];
    let recording;
    Object.defineProperty(window, 'uPlot', {
      configurable: true,
      get: () => recording,
      set: (uPlot) => {
        recording = Object.assign(function (...args) {
          const chart = new uPlot(...args);
          window.consoleCharts.push(chart);
          return chart;
        }, uPlot);
      },
    });
  });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    // A 401 or 404 the console asked for on purpose is logged by the browser as a failed
    // resource; everything else (a script error, a blocked inline style) is a failure.
    if (message.type() === 'error' && !/status of 40[14]/.test(message.text())) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  let current = null;
  try {
    for (const name of scenarios) {
      current = name;
      check(SCENARIOS[name], `no scenario ${name}`);
      fs.rmSync(path.join(shots, `failed-${name}.png`), { force: true });
      await SCENARIOS[name](page);
      check(problems.length === 0, problems.join('\n'));
      console.log(`ok ${name}`);
    }
  } catch (error) {
    console.error(`FAILED ${current}: ${error.message}`);
    await page.screenshot({ path: path.join(shots, `failed-${current}.png`), fullPage: true }).catch(() => {});
    const text = await page.evaluate(() => document.body.innerText).catch(() => '(no page)');
    console.error(`the page showed:\n${text.slice(0, 4000)}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
