// dashboard.test.mjs: end-to-end test of the sageLLM Gateway web dashboard in headless
// Chromium (playwright-core), against a running gateway that fronts three simulated workers
// and has an admin key. Run from the repository root:
//
//   GATEWAY_URL=http://127.0.0.1:9000 ADMIN_KEY=... MODEL=... SCREENSHOT=/tmp/dash.png \
//     node dashboard/e2e/dashboard.test.mjs
//
// CHROMIUM defaults to /usr/bin/chromium. Prints a line per step; exits 0 on success and 1
// (with the reason) on failure. The whole run is bounded by a global timeout.

import { chromium } from 'playwright-core';

const GATEWAY_URL = (process.env.GATEWAY_URL || '').replace(/\/+$/, '');
const ADMIN_KEY = process.env.ADMIN_KEY || '';
const MODEL = process.env.MODEL || '';
const SCREENSHOT = process.env.SCREENSHOT || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const GLOBAL_TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 120_000);
const MAX_REQUESTS = 2000;
const CONCURRENCY = 3;
const PACE_MS = 75; // pause between one loop's requests, so the 2000 last through the test

const started = Date.now();
let browser = null;
let load = null;
let drained = null; // the worker this test drained, undrained again if the test fails

function log(msg) {
  const s = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
  console.log(`[${s}s] ${msg}`);
}

class TestFailure extends Error {}

function fail(msg) {
  throw new TestFailure(msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value; fails with `what` after `timeoutMs`. */
async function waitFor(what, fn, timeoutMs = 15_000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? `: ${last.message}` : last !== undefined ? ` (last: ${JSON.stringify(last)})` : '';
      fail(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(everyMs);
  }
}

async function api(path) {
  const res = await fetch(GATEWAY_URL + path, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) fail(`GET ${path} answered ${res.status}: ${await res.text()}`);
  return res.json();
}

// ---------------------------------------------------------------------------------------
// Background load: CONCURRENCY loops of chat completions (every other one streamed), at
// most MAX_REQUESTS in all.

function startLoad() {
  const st = { sent: 0, ok: 0, bad: 0, failures: [], stopped: false, done: null };
  async function loop() {
    while (!st.stopped && st.sent < MAX_REQUESTS) {
      const n = ++st.sent;
      try {
        const res = await fetch(`${GATEWAY_URL}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          // Every other request streams, so the TTFT chart has data too.
          body: JSON.stringify({
            model: MODEL,
            messages: [{ role: 'user', content: `hi ${n}` }],
            max_tokens: 8,
            stream: n % 2 === 0,
          }),
          signal: AbortSignal.timeout(15_000),
        });
        const text = await res.text();
        if (res.status === 200 && (n % 2 === 1 || text.trimEnd().endsWith('data: [DONE]'))) st.ok++;
        else {
          st.bad++;
          if (st.failures.length < 5) st.failures.push(`${res.status} ${text.slice(0, 200)}`);
        }
      } catch (e) {
        st.bad++;
        if (st.failures.length < 5) st.failures.push(`request error: ${e.message}`);
      }
      await sleep(PACE_MS);
    }
  }
  st.done = Promise.all(Array.from({ length: CONCURRENCY }, loop));
  st.stop = async () => {
    st.stopped = true;
    await st.done;
  };
  return st;
}

// ---------------------------------------------------------------------------------------
// Page helpers

const row = (index) => `[data-testid="fleet-body"] tr[data-worker-index="${index}"]`;

async function rowInfo(page) {
  return page.$$eval('[data-testid="fleet-body"] tr[data-worker-id]', (trs) =>
    trs.map((tr) => ({
      id: tr.dataset.workerId,
      index: Number(tr.dataset.workerIndex),
      state: tr.querySelector('[data-testid="state"]').textContent.trim(),
      served: Number(tr.querySelector('[data-testid="served"]').textContent.trim()),
    })),
  );
}

async function textOf(page, testid) {
  return (await page.locator(`[data-testid="${testid}"]`).first().textContent()).trim();
}

async function stateOf(page, index) {
  return (await page.locator(`${row(index)} [data-testid="state"]`).textContent()).trim();
}

async function errorToasts(page) {
  return page.$$eval('[data-testid="toast"] [data-kind="error"]', (els) => els.map((e) => e.textContent.trim()));
}

async function chartPoints(page) {
  return page.$$eval('canvas[data-testid^="chart-"]', (cs) => Math.min(...cs.map((c) => Number(c.dataset.points || 0))));
}

// ---------------------------------------------------------------------------------------
// The steps

async function run() {
  for (const [name, v] of Object.entries({ GATEWAY_URL, ADMIN_KEY, MODEL, SCREENSHOT })) {
    if (!v) fail(`${name} is not set`);
  }
  if (!SCREENSHOT.endsWith('.png')) fail('SCREENSHOT must end with .png');
  const mobileShot = SCREENSHOT.replace(/\.png$/, '-mobile.png');

  log(`launching ${CHROMIUM}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    timeout: 30_000,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);

  // a. Console errors / warnings and page errors. The one expected exception: Chromium logs
  //    the 400 of the deliberately refused add-worker request in step g.
  const problems = [];
  let expect400 = false;
  let ignored400 = 0;
  page.on('console', (msg) => {
    const type = msg.type();
    if (type !== 'error' && type !== 'warning') return;
    const text = msg.text();
    const where = msg.location() && msg.location().url;
    if (expect400 && /status of 400/.test(text) && where && where.endsWith('/api/workers')) {
      ignored400++;
      return;
    }
    problems.push(`console ${type}: ${text}${where ? ` (${where})` : ''}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  log('a. watching console errors/warnings and page errors');

  // b. The page lists the three workers, all READY.
  await page.goto(`${GATEWAY_URL}/`, { waitUntil: 'load' });
  const rows0 = await waitFor('the fleet table to list 3 READY workers', async () => {
    const r = await rowInfo(page);
    return r.length === 3 && r.every((w) => w.state === 'READY') && r;
  });
  await waitFor('the connection indicator to say connected', async () => (await page.getAttribute('[data-testid="conn"]', 'data-state')) === 'connected');
  log(`b. fleet table lists ${rows0.map((w) => w.id).join(', ')}, all READY; feed connected`);
  // No per-worker cap on this gateway: the header says the queue is off.
  await waitFor('the header to show the queue as off', async () => (await page.textContent('[data-testid="queued"]'))?.trim() === 'off');

  // c. Background load.
  load = startLoad();
  log(`c. load started: ${CONCURRENCY} concurrent chat completions, at most ${MAX_REQUESTS}`);

  // d. Numbers move.
  const served0 = rows0.reduce((a, w) => a + w.served, 0);
  const served1 = await waitFor('the sum of the served cells to increase', async () => {
    const s = (await rowInfo(page)).reduce((a, w) => a + w.served, 0);
    return s > served0 && s;
  });
  const qps = await waitFor('the header QPS to be > 0', async () => {
    const v = parseFloat(await textOf(page, 'qps'));
    return v > 0 && v;
  });
  // The simulated workers export vLLM's prefix-cache counters: each row shows a hit rate.
  const hits = await waitFor('every row to show a prefix-cache hit rate', async () => {
    const cells = await page.$$eval('[data-testid="fleet-body"] [data-testid="prefix-hits"]', (tds) => tds.map((td) => td.textContent.trim()));
    return cells.length === rows0.length && cells.every((c) => /^\d+%$/.test(c)) && cells;
  });
  log(`d. served ${served0} -> ${served1}, header QPS ${qps}, prefix hits ${hits.join(' ')}`);

  // e. Drain worker 0 through the UI: the admin key is asked for first.
  const hasKey = await page.evaluate(() => Object.keys(sessionStorage).length);
  if (hasKey) fail('the page has something in sessionStorage before the first action');
  const id0 = await page.getAttribute(row(0), 'data-worker-id');
  drained = id0;
  await page.click(`${row(0)} [data-testid="drain"]`);
  await page.locator('[data-testid="admin-key"]').waitFor({ state: 'visible', timeout: 5_000 });
  log('e. clicking Drain opened the admin-key dialog');
  await page.fill('[data-testid="admin-key"]', ADMIN_KEY);
  await page.click('[data-testid="admin-key-submit"]');
  await waitFor(`worker ${id0}'s state cell to read DRAINING`, async () => (await stateOf(page, 0)) === 'DRAINING', 10_000);
  await page.locator('[data-testid="admin-key"]').waitFor({ state: 'hidden', timeout: 5_000 });
  log(`e. worker 0 (${id0}) reads DRAINING`);
  // Requests it had in flight when the drain began are counted once they end (the gateway
  // counts an attempt before releasing its worker): wait for none to be left.
  await waitFor(`worker ${id0} to finish its in-flight requests`, async () => (await api('/api/workers')).find((w) => w.id === id0)?.load.inflight === 0);
  const servedById = async () => Object.fromEntries((await api('/api/workers')).map((w) => [w.id, w.served]));
  const before = await servedById();
  const sentBefore = load.sent;
  await sleep(2_000);
  const after = await servedById();
  if (load.sent <= sentBefore) fail('the load stopped during the drain check');
  if (after[id0] !== before[id0]) fail(`drained worker ${id0} still served requests: ${before[id0]} -> ${after[id0]}`);
  for (const id of Object.keys(before)) {
    if (id !== id0 && !(after[id] > before[id])) fail(`worker ${id} did not take the load: served ${before[id]} -> ${after[id]}`);
  }
  log(`e. over 2 s: ${id0} stayed at ${before[id0]}, others ${Object.keys(before).filter((i) => i !== id0).map((i) => `${i} ${before[i]}->${after[i]}`).join(', ')}`);

  // f. Switch the routing strategy.
  const current = await page.inputValue('[data-testid="strategy"]');
  const target = current === 'least_connections' ? 'round_robin' : 'least_connections';
  await page.selectOption('[data-testid="strategy"]', target);
  await waitFor(`GET /api/config to show strategy ${target}`, async () => (await api('/api/config')).config.routing.strategy === target, 10_000, 250);
  await waitFor(`the header to show strategy ${target}`, async () => (await textOf(page, 'header-strategy')) === target, 10_000);
  log(`f. strategy ${current} -> ${target}: the API and the header agree`);

  // g. A refused action shows the API's error text.
  expect400 = true;
  const errorsBefore = (await errorToasts(page)).length;
  await page.fill('[data-testid="add-url"]', 'not a url');
  await page.click('[data-testid="add-submit"]');
  const shown = await waitFor('an error toast after adding "not a url"', async () => {
    const t = await errorToasts(page);
    return t.length > errorsBefore && t[t.length - 1];
  }, 10_000);
  const direct = await fetch(`${GATEWAY_URL}/api/workers`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_KEY}` },
    body: JSON.stringify({ url: 'not a url' }),
    signal: AbortSignal.timeout(5_000),
  });
  const apiMessage = ((await direct.json().catch(() => ({}))).error || {}).message || '';
  if (direct.status !== 400 || !apiMessage) fail(`POST /api/workers {"url":"not a url"} answered ${direct.status} without an error message`);
  if (!shown.includes(apiMessage)) fail(`the toast "${shown}" does not show the API's error "${apiMessage}"`);
  if (!/url/i.test(shown)) fail(`the toast "${shown}" does not name the field`);
  await page.waitForTimeout(200);
  expect400 = false;
  log(`g. refused add shows: ${shown}`);
  if (ignored400) log(`g. (Chromium logged the 400 of that request ${ignored400}×; expected, not counted)`);

  // h. Stop the load; screenshots at 1280x800 and 390x844.
  await load.stop();
  log(`h. load stopped: ${load.sent} sent, ${load.ok} answered 200, ${load.bad} not`);
  if (load.bad) fail(`${load.bad} requests did not answer 200: ${load.failures.join(' | ')}`);
  const points = await waitFor('the charts to have a few points', async () => {
    const n = await chartPoints(page);
    return n >= 5 && n;
  }, 15_000, 250);
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  log(`h. screenshot (1280x800, charts with ${points} points): ${SCREENSHOT}`);
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  if (scrollWidth > 391) fail(`at 390 px the page scrolls horizontally: scrollWidth ${scrollWidth}`);
  await page.screenshot({ path: mobileShot, fullPage: true });
  log(`h. 390 px wide: scrollWidth ${scrollWidth}; screenshot ${mobileShot}`);
  await page.setViewportSize({ width: 1280, height: 800 });

  // i. Undrain worker 0 through the UI.
  await page.click(`${row(0)} [data-testid="undrain"]`);
  await waitFor(`worker ${id0} to read READY on the page`, async () => (await stateOf(page, 0)) === 'READY', 10_000);
  await waitFor(`GET /api/workers to show ${id0} READY`, async () => (await api('/api/workers')).find((w) => w.id === id0)?.state === 'READY', 10_000);
  drained = null;
  log(`i. worker 0 (${id0}) undrained: READY again`);

  if (problems.length) fail(`console problems:\n  ${problems.join('\n  ')}`);
  log('a. no console errors or warnings, no page errors');
}

/** After a failure: leave the gateway as we found it (best effort, bounded). */
async function undrainLeftover() {
  if (!drained) return;
  const id = drained;
  drained = null;
  await fetch(`${GATEWAY_URL}/api/workers/${encodeURIComponent(id)}/undrain`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_KEY}` },
    signal: AbortSignal.timeout(3_000),
  }).catch(() => {});
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), sleep(5_000)]);
}

const timer = setTimeout(async () => {
  console.error(`FAIL: global timeout of ${GLOBAL_TIMEOUT_MS / 1000} s exceeded`);
  if (load) load.stopped = true;
  await Promise.all([closeBrowser(), undrainLeftover()]);
  process.exit(1);
}, GLOBAL_TIMEOUT_MS);

try {
  await run();
  clearTimeout(timer);
  await closeBrowser();
  log('PASS: dashboard end-to-end test');
  process.exit(0);
} catch (e) {
  clearTimeout(timer);
  console.error(`FAIL: ${e instanceof TestFailure ? e.message : e.stack || e}`);
  if (load) {
    load.stopped = true;
    await Promise.race([load.done, sleep(5_000)]);
  }
  await Promise.all([closeBrowser(), undrainLeftover()]);
  process.exit(1);
}
