// app.js: the browser side of the sageLLM Gateway dashboard.
// Reads the /ws feed (a `hello` with five minutes of history, then a `tick` a second; see
// docs/dashboard.md), reconnecting by itself with backoff, and renders the header, the fleet
// table (rows updated in place, keyed by worker id), the routing panel and the charts. The
// operator's actions go through the management API; when the gateway has an admin key the
// page asks for it in an in-page dialog and keeps it in sessionStorage.

import { LineChart, PALETTE } from './charts.js';

const HISTORY_MS = 300_000;
const HISTORY_MAX = 600;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5_000;
const KEY_STORAGE = 'sagellm.adminKey';

const state = {
  intervalMs: 1000,
  strategies: [],
  adminKeyRequired: false,
  history: [],
  status: null,
  strategyPending: false,
  // After a successful change, ticks sampled before it still show the old strategy: ignore
  // them for a moment so the select and the header do not flip back.
  strategyHold: null,
};

// ---------------------------------------------------------------------------------------
// DOM helpers

const $ = (testid, root = document) => root.querySelector(`[data-testid="${testid}"]`);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

/** Sets text only when it changed (keeps the DOM quiet between ticks). */
function setText(node, text) {
  const s = String(text);
  if (node.textContent !== s) node.textContent = s;
}

function setAttr(node, name, value) {
  const s = String(value);
  if (node.getAttribute(name) !== s) node.setAttribute(name, s);
}

// ---------------------------------------------------------------------------------------
// Formatting

const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

function fmtMs(v) {
  if (!isNum(v)) return '—';
  return v >= 100 ? String(Math.round(v)) : v.toFixed(1);
}

function fmtLoad(v) {
  if (!isNum(v)) return '—';
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function fmtRate(v) {
  if (!isNum(v)) return '—';
  return v >= 100 ? String(Math.round(v)) : v.toFixed(1);
}

function fmtPct(share, digits = 1) {
  return isNum(share) ? `${(share * 100).toFixed(digits)}%` : '—';
}

function fmtDuration(seconds) {
  if (!isNum(seconds)) return '—';
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** A stable colour per worker id, shared by the load chart and the routing bars. */
const workerColors = new Map();
function colorFor(id) {
  if (!workerColors.has(id)) workerColors.set(id, PALETTE[workerColors.size % PALETTE.length]);
  return workerColors.get(id);
}

// ---------------------------------------------------------------------------------------
// Toasts

function toast(text, kind = 'ok') {
  const box = $('toast');
  const item = el('div', { class: `toast-msg ${kind}`, 'data-kind': kind, 'data-testid': 'toast-message' }, text);
  box.append(item);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === 'error' ? 15_000 : 6_000);
}

// ---------------------------------------------------------------------------------------
// Admin key: sessionStorage, the in-page dialog, and the writes that need it

let memoryKey = null; // fallback when sessionStorage is unavailable

function getKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || null;
  } catch {
    return memoryKey;
  }
}

function setKey(key) {
  memoryKey = key;
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled: keep it in memory */
  }
}

let keyPrompt = null;

/** Opens the key dialog; resolves with the key entered, or null when cancelled. */
function askKey(reason, refused) {
  if (keyPrompt) return keyPrompt.promise;
  const dialog = $('admin-key-dialog');
  const input = $('admin-key');
  setText($('admin-key-reason'), reason);
  const error = $('admin-key-error');
  error.hidden = !refused;
  setText(error, refused ? 'The gateway refused that key. Enter it again.' : '');
  input.value = '';
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  keyPrompt = { promise, resolve };
  dialog.showModal();
  input.focus();
  return promise;
}

function finishKeyPrompt(value) {
  if (!keyPrompt) return;
  const { resolve } = keyPrompt;
  keyPrompt = null;
  const dialog = $('admin-key-dialog');
  if (dialog.open) dialog.close();
  resolve(value);
}

function setupKeyDialog() {
  const dialog = $('admin-key-dialog');
  dialog.querySelector('form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('admin-key').value.trim();
    if (!key) {
      const error = $('admin-key-error');
      error.hidden = false;
      setText(error, 'Enter the admin key.');
      return;
    }
    setKey(key);
    finishKeyPrompt(key);
  });
  $('admin-key-cancel').addEventListener('click', () => finishKeyPrompt(null));
  dialog.addEventListener('cancel', (e) => {
    e.preventDefault();
    finishKeyPrompt(null);
  });
}

async function readBody(res) {
  const text = await res.text().catch(() => '');
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

function errorText(res, body) {
  const msg = body && typeof body === 'object' && body.error && body.error.message;
  if (typeof msg === 'string' && msg.trim()) return msg.trim();
  if (typeof body === 'string' && body.trim()) return body.trim().slice(0, 300);
  return `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
}

/**
 * A management API write. Asks for the admin key first when the gateway needs one and none
 * is stored, and again after a 401 (which forgets the stored key), then retries.
 * @returns {Promise<{ok: true, data: any} | {ok: false, message: string, cancelled?: boolean}>}
 */
async function apiWrite(method, path, body, what) {
  let refused = false;
  for (;;) {
    let key = getKey();
    if (!key && (state.adminKeyRequired || refused !== false)) {
      key = await askKey(`“${what}” needs the gateway's admin key.`, refused === 'key');
      if (!key) return { ok: false, cancelled: true, message: 'no admin key given' };
    }
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (key) headers.Authorization = `Bearer ${key}`;
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch {
      return { ok: false, message: 'the gateway could not be reached' };
    }
    const data = await readBody(res);
    if (res.status === 401) {
      // A refused key is forgotten; without one, the gateway has a key the page did not know of.
      setKey(null);
      refused = key ? 'key' : 'none';
      continue;
    }
    if (!res.ok) return { ok: false, message: errorText(res, data) };
    return { ok: true, data };
  }
}

/**
 * Runs a write with `button` marked busy (aria-disabled, clicks ignored; not `disabled`, which
 * would drop the keyboard focus), and reports the result in a toast.
 */
async function runAction(button, what, request, onOk) {
  if (button && button.getAttribute('aria-disabled') === 'true') return { ok: false, busy: true };
  if (button) button.setAttribute('aria-disabled', 'true');
  try {
    const res = await apiWrite(request.method, request.path, request.body, what);
    if (res.ok) {
      const message = onOk(res.data);
      if (message) toast(message, 'ok');
    } else if (res.cancelled) {
      toast(`${what}: cancelled (${res.message}).`, 'info');
    } else {
      toast(`${what} refused: ${res.message}`, 'error');
    }
    return res;
  } finally {
    if (button) button.removeAttribute('aria-disabled');
  }
}

// ---------------------------------------------------------------------------------------
// Header

function renderHeader(status) {
  setText($('version'), `v${status.version}`);
  setText($('uptime'), fmtDuration(status.uptime_seconds));
  if (!holdingStrategy(status)) setText($('header-strategy'), status.routing_strategy);
  const workers = $('workers');
  setText(workers, `${status.workers_healthy} / ${status.workers_total}`);
  const level =
    status.workers_total === 0 || status.workers_healthy === 0
      ? 'bad'
      : status.workers_healthy < status.workers_total
        ? 'warn'
        : 'ok';
  setAttr(workers, 'data-level', level);
  setText($('active'), status.active_requests);
  // The gateway-side queue; "off" when no per-worker cap is set (nothing ever waits).
  const q = status.queue;
  const queued = $('queued');
  setText(queued, !q || q.max_inflight_per_worker === 0 ? 'off' : `${q.depth}`);
  setAttr(queued, 'data-level', q && q.depth > 0 ? 'warn' : 'ok');
  renderBanner(status);
}

function renderHeaderPoint(point) {
  setText($('qps'), fmtRate(point.qps));
  const er = $('error-rate');
  setText(er, fmtPct(point.error_rate));
  setAttr(er, 'data-level', point.error_rate > 0.05 ? 'bad' : point.error_rate > 0 ? 'warn' : 'ok');
}

function renderBanner(status) {
  const banner = $('banner');
  const lines = [];
  if (status.shutting_down) lines.push('The gateway is shutting down: new requests get 503.');
  if (status.config_error) lines.push(`The last configuration change was rejected: ${status.config_error}`);
  setText(banner, lines.join(' '));
  banner.hidden = lines.length === 0;
}

// ---------------------------------------------------------------------------------------
// Connection indicator

function setConn(kind, delayMs) {
  const conn = $('conn');
  setAttr(conn, 'data-state', kind);
  const text =
    kind === 'connected'
      ? 'Live'
      : kind === 'reconnecting'
        ? `Reconnecting in ${(delayMs / 1000).toFixed(1)} s…`
        : 'Connecting…';
  setText(conn.querySelector('.conn-text'), text);
  document.body.classList.toggle('stale', kind !== 'connected');
}

// ---------------------------------------------------------------------------------------
// Fleet table

const rows = new Map(); // worker id -> row

function createRow(id) {
  const cell = (testid, cls = '') => el('td', { 'data-testid': testid, class: cls });
  const row = { id, worker: null, armTimer: 0 };
  row.url = cell('url', 'url');
  row.kind = el('span', { 'data-testid': 'kind' });
  row.source = el('span', { class: 'tag', 'data-testid': 'source', hidden: '' });
  row.models = cell('models', 'models');
  row.state = el('span', { class: 'badge', 'data-testid': 'state' });
  row.asleep = el('span', { class: 'tag', hidden: '' }, 'asleep');
  row.breaker = el('span', { class: 'badge', 'data-testid': 'breaker' });
  row.retry = el('span', { class: 'tag', hidden: '' });
  row.inflight = cell('inflight', 'num');
  row.rw = cell('running-waiting', 'num');
  row.kvFill = el('span', { class: 'kv-fill' });
  row.kvText = el('span', { class: 'kv-text', 'data-testid': 'kv' });
  row.kvBar = el('span', { class: 'kv-bar', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100' }, row.kvFill);
  row.hits = cell('prefix-hits', 'num');
  row.latency = cell('latency', 'num');
  row.ttft = cell('ttft', 'num');
  row.served = cell('served', 'num');
  row.errors = cell('errors', 'num');
  row.drain = el('button', { type: 'button', 'data-testid': 'drain' }, 'Drain');
  row.undrain = el('button', { type: 'button', 'data-testid': 'undrain', hidden: '' }, 'Undrain');
  row.reset = el('button', { type: 'button', 'data-testid': 'reset' }, 'Reset breaker');
  row.remove = el('button', { type: 'button', class: 'danger', 'data-testid': 'remove' }, 'Remove');
  row.drain.addEventListener('click', () => drainWorker(row, true));
  row.undrain.addEventListener('click', () => drainWorker(row, false));
  row.reset.addEventListener('click', () => resetBreaker(row));
  row.remove.addEventListener('click', () => removeWorker(row));
  row.tr = el(
    'tr',
    { 'data-worker-id': id, 'data-testid': 'worker-row' },
    row.url,
    el('td', {}, row.kind, row.source),
    row.models,
    el('td', {}, row.state, row.asleep),
    el('td', {}, row.breaker, row.retry),
    row.inflight,
    row.rw,
    el('td', { class: 'kv' }, row.kvBar, row.kvText),
    row.hits,
    row.latency,
    row.ttft,
    row.served,
    row.errors,
    el('td', { class: 'actions' }, el('div', { class: 'buttons' }, row.drain, row.undrain, row.reset, row.remove)),
  );
  return row;
}

function updateRow(row, w) {
  row.worker = w;
  setAttr(row.tr, 'data-worker-index', w.index);
  setText(row.url, w.url);
  setAttr(row.url, 'title', w.version ? `${w.url} (${w.kind} ${w.version}, weight ${w.weight})` : `${w.url} (weight ${w.weight})`);
  setText(row.kind, w.kind);
  // Where the worker came from, shown unless it is the config's own list.
  const source = w.source || 'static';
  row.source.hidden = source === 'static';
  setText(row.source, source);
  setAttr(row.source, 'title', `added by ${source === 'api' ? 'the management API' : source === 'engine' ? 'a launched engine' : `${source} discovery`}`);
  setText(row.models, w.models && w.models.length ? w.models.join(', ') : '—');
  setText(row.state, w.state);
  setAttr(row.state, 'data-value', w.state);
  row.asleep.hidden = !w.asleep;
  updateBreaker(row, w.breaker);
  updateLoad(row, w.load);
  const stats = w.stats || {};
  setText(row.latency, fmtMs(stats.latency_ms));
  setText(row.ttft, fmtMs(stats.ttft_ms));
  setText(row.served, w.served);
  setText(row.errors, isNum(stats.errors) ? stats.errors : '—');
  setAttr(row.errors, 'data-level', stats.errors > 0 ? 'warn' : 'ok');
  updateDrainButtons(row, w.state === 'DRAINING');
  for (const b of [row.drain, row.undrain, row.reset, row.remove]) {
    setAttr(b, 'aria-label', `${b.textContent} ${w.id}`);
  }
}

function updateBreaker(row, b) {
  const s = (b && b.state) || 'CLOSED';
  setText(row.breaker, s);
  setAttr(row.breaker, 'data-value', s);
  setAttr(row.breaker, 'title', b ? `${b.failures_total} failures, opened ${b.opened_total}×` : '');
  const retry = b && s === 'OPEN' && isNum(b.retry_in_seconds);
  row.retry.hidden = !retry;
  if (retry) setText(row.retry, `retry ${Math.ceil(b.retry_in_seconds)} s`);
}

function updateLoad(row, load) {
  const l = load || {};
  setText(row.inflight, isNum(l.inflight) ? l.inflight : '—');
  setText(row.rw, `${fmtLoad(l.running)} / ${fmtLoad(l.waiting)}`);
  const kv = l.scraped && isNum(l.kv_cache) ? Math.max(0, Math.min(1, l.kv_cache)) : null;
  const pct = kv === null ? 0 : Math.round(kv * 100);
  row.kvFill.style.width = `${pct}%`;
  setAttr(row.kvFill, 'data-level', kv > 0.9 ? 'bad' : kv > 0.7 ? 'warn' : 'ok');
  setAttr(row.kvBar, 'aria-valuenow', pct);
  setAttr(row.kvBar, 'aria-label', kv === null ? 'KV cache usage not reported' : `KV cache usage ${pct}%`);
  setText(row.kvText, kv === null ? 'n/a' : `${pct}%`);
  const hits = l.prefix_cache_hit_rate;
  setText(row.hits, isNum(hits) ? `${Math.round(Math.max(0, Math.min(1, hits)) * 100)}%` : 'n/a');
}

/** Shows Drain or Undrain; moves the focus along when the focused one disappears. */
function updateDrainButtons(row, draining) {
  if (row.drain.hidden === draining && row.undrain.hidden === !draining) return;
  const hadFocus = document.activeElement === row.drain || document.activeElement === row.undrain;
  row.drain.hidden = draining;
  row.undrain.hidden = !draining;
  if (hadFocus) (draining ? row.undrain : row.drain).focus();
}

function renderFleet(workers) {
  const tbody = $('fleet-body');
  const sorted = [...workers].sort((a, b) => a.index - b.index);
  const seen = new Set();
  sorted.forEach((w, i) => {
    seen.add(w.id);
    let row = rows.get(w.id);
    if (!row) {
      row = createRow(w.id);
      rows.set(w.id, row);
    }
    updateRow(row, w);
    if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
  });
  for (const [id, row] of rows) {
    if (!seen.has(id)) {
      row.tr.remove();
      rows.delete(id);
    }
  }
  const empty = $('fleet-empty');
  empty.hidden = sorted.length > 0;
  setText(empty, 'No workers. Add one by URL above.');
}

// ---------------------------------------------------------------------------------------
// Worker actions

const workerPath = (w, suffix = '') => `/api/workers/${encodeURIComponent(w.id)}${suffix}`;

function drainWorker(row, drain) {
  const w = row.worker;
  const button = drain ? row.drain : row.undrain;
  return runAction(
    button,
    `${drain ? 'Drain' : 'Undrain'} ${w.id}`,
    { method: 'POST', path: workerPath(w, drain ? '/drain' : '/undrain') },
    (info) => {
      if (info && info.id === row.id && rows.get(row.id) === row) updateRow(row, info);
      return drain ? `Draining ${w.id}: it takes no new requests.` : `${w.id} takes requests again.`;
    },
  );
}

function resetBreaker(row) {
  const w = row.worker;
  return runAction(
    row.reset,
    `Reset the breaker of ${w.id}`,
    { method: 'POST', path: `/api/circuit-breaker/${encodeURIComponent(w.id)}/reset` },
    () => `Circuit breaker of ${w.id} reset.`,
  );
}

/** Remove needs a second click ("Confirm remove") within 5 s. */
function removeWorker(row) {
  const w = row.worker;
  if (!row.armTimer) {
    row.remove.textContent = 'Confirm remove';
    row.remove.classList.add('armed');
    setAttr(row.remove, 'aria-label', `Confirm remove ${w.id}`);
    row.armTimer = setTimeout(() => disarmRemove(row), 5_000);
    return;
  }
  disarmRemove(row);
  return runAction(row.remove, `Remove ${w.id}`, { method: 'DELETE', path: workerPath(w) }, () => {
    if (rows.get(row.id) === row) {
      row.tr.remove();
      rows.delete(row.id);
    }
    return `Removed ${w.id}.`;
  });
}

function disarmRemove(row) {
  clearTimeout(row.armTimer);
  row.armTimer = 0;
  row.remove.textContent = 'Remove';
  row.remove.classList.remove('armed');
  if (row.worker) setAttr(row.remove, 'aria-label', `Remove ${row.worker.id}`);
}

function setupAddForm() {
  const form = $('add-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const url = $('add-url').value.trim();
    if (!url) {
      toast('Enter the URL of the worker to add.', 'error');
      $('add-url').focus();
      return;
    }
    const body = { url };
    const weight = $('add-weight').value.trim();
    if (weight) body.weight = Number.isNaN(Number(weight)) ? weight : Number(weight);
    await runAction($('add-submit'), 'Add worker', { method: 'POST', path: '/api/workers', body }, (info) => {
      form.reset();
      return `Added worker ${(info && info.id) || url}.`;
    });
  });
}

// ---------------------------------------------------------------------------------------
// Routing: the strategy select and the share bars

function renderStrategies() {
  const select = $('strategy');
  const current = state.status ? state.status.routing_strategy : select.value;
  const tags = [...state.strategies];
  if (current && !tags.includes(current)) tags.push(current);
  const same = tags.length === select.options.length && tags.every((t, i) => select.options[i].value === t);
  if (!same) {
    select.replaceChildren(...tags.map((t) => el('option', { value: t }, t)));
  }
  if (current) select.value = current;
  select.disabled = tags.length === 0;
}

/** True while a just-set strategy is not yet in the ticks (at most 3 s). */
function holdingStrategy(status) {
  const hold = state.strategyHold;
  if (!hold) return false;
  if (status.routing_strategy === hold.tag || Date.now() > hold.until) {
    state.strategyHold = null;
    return false;
  }
  return true;
}

function syncStrategy(status) {
  const select = $('strategy');
  if (state.strategyPending || holdingStrategy(status)) return;
  if (![...select.options].some((o) => o.value === status.routing_strategy)) renderStrategies();
  if (select.value !== status.routing_strategy) select.value = status.routing_strategy;
}

/** Sends the strategy the select shows, one PUT at a time (the latest choice wins). */
async function applyStrategy() {
  const select = $('strategy');
  if (state.strategyPending) return;
  state.strategyPending = true;
  let res = { ok: true };
  let tag;
  try {
    do {
      tag = select.value;
      res = await runAction(
        null,
        `Set routing strategy ${tag}`,
        { method: 'PUT', path: '/api/config', body: { routing: { strategy: tag } } },
        (view) => {
          const now = (view && view.config && view.config.routing && view.config.routing.strategy) || tag;
          state.strategyHold = { tag: now, until: Date.now() + 3_000 };
          setText($('header-strategy'), now);
          return `Routing strategy set to ${now}.`;
        },
      );
    } while (res.ok && select.value !== tag);
  } finally {
    state.strategyPending = false;
  }
  if (!res.ok && state.status) select.value = state.status.routing_strategy;
}

function setupStrategySelect() {
  $('strategy').addEventListener('change', applyStrategy);
}

const shareRows = new Map(); // worker id -> row

function shareRow(id) {
  let row = shareRows.get(id);
  if (row) return row;
  const swatch = el('span', { class: 'swatch', 'aria-hidden': 'true' });
  const name = el('span', { class: 'share-name' }, id);
  const pct = el('span', { class: 'share-pct', 'data-testid': 'share' });
  const fill = el('span', { class: 'share-fill' });
  const bar = el('span', { class: 'share-bar', 'aria-hidden': 'true' }, fill);
  row = { li: el('li', { 'data-worker-id': id, 'data-testid': 'share-row' }, el('span', { class: 'share-label' }, swatch, name, pct), bar), swatch, fill, pct };
  shareRows.set(id, row);
  return row;
}

function renderRouting(routing) {
  setText($('routing-strategy'), `(${routing.strategy})`);
  const list = $('shares');
  const workers = [...(routing.workers || [])].sort((a, b) => a.index - b.index);
  const seen = new Set();
  workers.forEach((w, i) => {
    seen.add(w.id);
    const row = shareRow(w.id);
    const color = colorFor(w.id);
    row.swatch.style.background = color;
    row.fill.style.background = color;
    row.fill.style.width = `${Math.max(0, Math.min(1, w.share || 0)) * 100}%`;
    setText(row.pct, fmtPct(w.share));
    setAttr(row.li, 'title', `${w.selected} choices under ${routing.strategy}`);
    if (list.children[i] !== row.li) list.insertBefore(row.li, list.children[i] || null);
  });
  for (const [id, row] of shareRows) {
    if (!seen.has(id)) {
      row.li.remove();
      shareRows.delete(id);
    }
  }
  $('shares-empty').hidden = workers.length > 0;
}

// ---------------------------------------------------------------------------------------
// Charts

const CHARTS = [
  { id: 'qps', series: [{ key: 'qps', label: 'requests/s' }] },
  {
    id: 'latency',
    series: [
      { key: 'latency_p50_ms', label: 'p50' },
      { key: 'latency_p99_ms', label: 'p99' },
    ],
  },
  { id: 'ttft', series: [{ key: 'ttft_p50_ms', label: 'p50' }] },
  { id: 'tokens', series: [{ key: 'tokens_per_s', label: 'tokens/s' }] },
  {
    id: 'errors',
    series: [
      { key: 'rejected_per_s', label: '429/s', color: PALETTE[1] },
      { key: 'errors_per_s', label: '5xx/s', color: PALETTE[3] },
    ],
  },
  { id: 'load', perWorker: true },
];

const charts = new Map();

function setupCharts() {
  for (const c of CHARTS) charts.set(c.id, new LineChart($(`chart-${c.id}`)));
}

const num = (v) => (isNum(v) ? v : null);

/** Worker ids seen in the history's load maps, in first-seen order. */
function loadIds(history) {
  const ids = new Set();
  for (const p of history) for (const id of Object.keys(p.load || {})) ids.add(id);
  return [...ids];
}

function chartSeries(c, history) {
  if (c.perWorker) {
    return loadIds(history).map((id) => ({
      label: id,
      color: colorFor(id),
      values: history.map((p) => num(p.load && p.load[id])),
    }));
  }
  return c.series.map((s, i) => ({
    label: s.label,
    color: s.color || PALETTE[i],
    values: history.map((p) => num(p[s.key])),
  }));
}

function drawCharts() {
  const { history } = state;
  const t = history.map((p) => p.t);
  for (const c of CHARTS) {
    const chart = charts.get(c.id);
    chart.setGap(state.intervalMs * 2.5);
    chart.setData({ t, series: chartSeries(c, history) });
    setAttr(chart.canvas, 'data-points', history.length);
  }
}

/** Appends a tick's point; a point with the newest timestamp replaces it, older ones are dropped. */
function pushPoint(point) {
  if (!point || !isNum(point.t) || point.t <= 0) return false;
  const h = state.history;
  const last = h[h.length - 1];
  if (last && point.t < last.t) return false;
  if (last && point.t === last.t) h[h.length - 1] = point;
  else h.push(point);
  const cutoff = point.t - HISTORY_MS - state.intervalMs;
  while (h.length > HISTORY_MAX || (h.length && h[0].t < cutoff)) h.shift();
  return true;
}

// ---------------------------------------------------------------------------------------
// The feed

function onHello(hello) {
  state.intervalMs = isNum(hello.interval_ms) && hello.interval_ms > 0 ? hello.interval_ms : 1000;
  state.strategies = Array.isArray(hello.strategies) ? hello.strategies : [];
  state.adminKeyRequired = Boolean(hello.admin_key_required);
  state.history = [];
  for (const p of Array.isArray(hello.history) ? hello.history : []) pushPoint(p);
  if (hello.version) setText($('version'), `v${hello.version}`);
  renderStrategies();
  drawCharts();
}

function onTick(tick) {
  if (tick.status) {
    state.status = tick.status;
    renderHeader(tick.status);
    renderFleet(tick.status.workers || []);
    syncStrategy(tick.status);
  }
  if (tick.routing) renderRouting(tick.routing);
  if (tick.point) {
    renderHeaderPoint(tick.point);
    if (pushPoint(tick.point)) drawCharts();
  }
}

const feed = { ws: null, backoff: BACKOFF_MIN_MS, timer: 0, since: 0, lastMessage: 0 };

function connect() {
  clearTimeout(feed.timer);
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch {
    scheduleReconnect();
    return;
  }
  feed.ws = ws;
  feed.since = Date.now();
  feed.lastMessage = 0;
  setConn('connecting');
  ws.onmessage = (ev) => {
    if (feed.ws !== ws) return;
    feed.lastMessage = Date.now();
    onMessage(ev.data);
  };
  ws.onclose = () => {
    if (feed.ws !== ws) return;
    feed.ws = null;
    scheduleReconnect();
  };
  ws.onerror = () => {}; // a close event follows
}

function onMessage(data) {
  let msg;
  try {
    msg = JSON.parse(data);
  } catch {
    return;
  }
  if (!msg || typeof msg !== 'object') return;
  if (msg.type === 'hello') {
    feed.backoff = BACKOFF_MIN_MS; // a real session: start the backoff over next time
    setConn('connected');
    onHello(msg);
  } else if (msg.type === 'tick') {
    onTick(msg);
  }
}

function scheduleReconnect() {
  const delay = feed.backoff;
  feed.backoff = Math.min(feed.backoff * 2, BACKOFF_MAX_MS);
  setConn('reconnecting', delay);
  clearTimeout(feed.timer);
  feed.timer = setTimeout(connect, delay);
}

/** Drops a socket that stopped talking (no hello, or no tick for several intervals). */
function watchdog() {
  const ws = feed.ws;
  if (!ws) return;
  const now = Date.now();
  const silentFor = now - (feed.lastMessage || feed.since);
  const limit = Math.max(10_000, state.intervalMs * 5);
  if (silentFor > limit) {
    feed.ws = null;
    try {
      ws.close();
    } catch {
      /* already closing */
    }
    scheduleReconnect();
  }
}

// ---------------------------------------------------------------------------------------

function main() {
  setupKeyDialog();
  setupAddForm();
  setupStrategySelect();
  setupCharts();
  drawCharts();
  connect();
  setInterval(watchdog, 1000);
}

main();
