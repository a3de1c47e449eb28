// discoctl dashboard: the page's script. It keeps one element per app and updates only
// the apps a server-sent event names; details (tables, charts, history) are built only
// for apps that are open. No framework, no build step.
'use strict';

const TRAFFIC_WINDOW_MS = 120000;
// No red: red means trouble on this page, not a version.
const PALETTE = ['#2b6cb0', '#dd6b20', '#2f855a', '#805ad5', '#319795', '#b7791f', '#d53f8c', '#4a5568'];

const state = {
  meta: null,
  agents: null,
  apps: new Map(),      // name -> view
  traffic: new Map(),   // name -> [point]
  elements: new Map(),  // name -> {root, details, summary, detail}
  open: new Set(),      // apps whose details are open
  filter: '',
  only: 'all',
  rendered: false,
};

// ---- small helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function naturalCompare(a, b) {
  return a.localeCompare(b, undefined, { numeric: true });
}

function colour(version) {
  let hash = 0;
  for (const ch of version) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

function pill(text, kind, cls) {
  return h('span', { class: `pill ${kind}${cls ? ' ' + cls : ''}`, text });
}

function ago(rfc3339) {
  const t = Date.parse(rfc3339);
  if (!t) return '';
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

function flash(text, ok) {
  const el = document.getElementById('flash');
  el.hidden = false;
  el.className = ok ? 'ok' : 'error';
  el.textContent = text;
  clearTimeout(flash.timer);
  if (ok) flash.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

// ---- the token ----

function token() {
  return document.getElementById('token').value.trim();
}

function setUpToken() {
  const input = document.getElementById('token');
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    sessionStorage.setItem('disco-token', fromHash);
    history.replaceState(null, '', location.pathname + location.search);
  }
  input.value = sessionStorage.getItem('disco-token') || '';
  input.addEventListener('change', () => sessionStorage.setItem('disco-token', token()));
}

// ---- actions ----

async function act(app, verb, body, button) {
  const actions = state.meta && state.meta.actions;
  if (!actions || !actions.allowed) {
    flash(`${verb} ${app}: this dashboard is read-only (start it with --allow-actions)`, false);
    return;
  }
  if (!token()) {
    flash(`${verb} ${app}: enter the token that discoctl dashboard printed at start`, false);
    document.getElementById('token').focus();
    return;
  }
  const target = state.elements.get(app);
  const note = target && target.root.querySelector('.app-flash');
  if (button) button.disabled = true;
  if (note) { note.className = 'app-flash'; note.textContent = `${verb}…`; }
  try {
    const response = await fetch(`/api/apps/${encodeURIComponent(app)}/${verb}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Disco-Token': token() },
      body: JSON.stringify(body || {}),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok) {
      flash(`${verb} ${app}: done, recorded as ${answer.actor}`, true);
      if (note) note.textContent = `${verb}: done`;
    } else {
      const message = answer.error || `${response.status} ${response.statusText}`;
      flash(message, false);
      if (note) { note.className = 'app-flash error'; note.textContent = message; }
    }
  } catch (e) {
    flash(`${verb} ${app}: ${e}`, false);
  } finally {
    if (button) button.disabled = false;
  }
}

function actionButton(app, verb, label, body, opts) {
  const confirmText = opts && opts.confirm;
  return h('button', {
    'data-action': verb,
    class: opts && opts.danger ? 'danger' : null,
    text: label,
    onclick: (event) => {
      event.preventDefault();
      if (confirmText && !window.confirm(confirmText)) return;
      act(app, verb, body, event.currentTarget);
    },
  });
}

// ---- header and agents ----

function renderMeta() {
  const m = state.meta;
  const conn = document.getElementById('connection');
  if (m.live) {
    conn.className = 'pill ok';
    conn.textContent = 'live';
  } else {
    conn.className = 'pill bad';
    conn.textContent = m.error ? 'etcd: ' + m.error : 'etcd not answering';
  }
  document.getElementById('meta').textContent =
    `prefix ${m.prefix} · revision ${m.revision} · latest routing change ${m.latest}`;
  const mode = document.getElementById('actions-mode');
  const tokenInput = document.getElementById('token');
  if (m.actions && m.actions.allowed) {
    mode.textContent = `actions as ${m.actions.actor}`;
    tokenInput.hidden = false;
  } else {
    mode.textContent = 'read-only';
    tokenInput.hidden = true;
  }
}

function renderAgents() {
  const box = document.getElementById('agents');
  const list = (state.agents && state.agents.agents) || [];
  box.replaceChildren();
  if (!list.length) {
    const live = state.meta && state.meta.live;
    box.append(h('p', { class: 'muted', text: live ? 'no live agent' : 'waiting for etcd…' }));
    return;
  }
  const rows = list.map((a) => {
    const lag = a.lag === null ? '-' : a.lag;
    const lagCell = a.lag === null ? h('td', { class: 'num', text: '-' })
      : h('td', { class: 'num' }, pill(a.lag === 0 ? 'current' : `${lag} behind`, a.lag === 0 ? 'ok' : 'wait'));
    const applied = Object.entries(a.applied_by || {}).map(([t, how]) => `${t}=${how}`).join(', ') || '-';
    const notes = [...(a.warnings || []), ...(a.held || [])];
    return h('tr', { 'data-agent': a.id },
      h('td', { class: 'mono', text: a.id }),
      h('td', { text: (a.roles || []).join(', ') }),
      h('td', { class: 'num', text: a.applied_revision }),
      lagCell,
      h('td', { text: applied }),
      h('td', { class: 'num', text: `${a.reloads} / ${a.runtime_applies}` }),
      h('td', { class: a.last_error ? 'state-bad' : 'muted', text: a.last_error || 'none' }),
      h('td', { class: notes.length ? 'state-warn' : 'muted', text: notes.join('; ') || (a.rejected ? `${a.rejected} rejected` : '-') }),
      h('td', { class: 'muted', 'data-at': a.updated_at, text: ago(a.updated_at) }));
  });
  box.append(h('table', {},
    h('thead', {}, h('tr', {}, ['agent', 'roles', 'applied revision', 'lag', 'last change applied by', 'reloads / runtime', 'last error', 'warnings', 'updated'].map((t) => h('th', { text: t })))),
    h('tbody', {}, rows)));
}

// ---- apps ----

function matches(view) {
  if (state.only === 'canary' && !(view.canary && view.canary.active)) return false;
  if (state.only === 'problems' && !view.problems) return false;
  if (!state.filter) return true;
  const f = state.filter;
  return view.name.toLowerCase().includes(f) || view.versions.some((v) => v.version.toLowerCase().includes(f));
}

function summary(view) {
  const chips = view.slots.map((s) => {
    const chip = h('span', {
      class: `slot ${s.state}`,
      'data-instance': s.instance,
      'data-version': s.version,
      title: `${s.instance} → ${s.version} (${s.address || 'no endpoint'}, ${s.state})`,
      text: s.version,
    });
    chip.style.background = colour(s.version);
    return chip;
  });
  const badges = [];
  const c = view.canary;
  if (c && c.unreadable) badges.push(pill('canary record unreadable', 'bad'));
  else if (c) badges.push(pill(`canary ${c.version} ${c.step}/${c.of} ${c.state}`, c.state === 'rolled_back' ? 'bad' : (c.active ? 'info' : 'ok'), 'canary-badge'));
  if (view.dark) badges.push(pill(`dark ${view.dark.version}`, 'info'));
  const weights = Object.entries(view.weights || {});
  if (weights.length) badges.push(pill('weights ' + weights.map(([v, p]) => `${v}=${p}%`).join(' '), 'info'));
  if (view.problems) badges.push(pill(`${view.problems} slot${view.problems > 1 ? 's' : ''} unroutable`, 'bad'));
  return [
    h('span', { class: 'name', text: view.name }),
    h('span', { class: 'listen', text: view.listen || '' }),
    h('span', { class: 'slots' }, chips.length ? chips : h('span', { class: 'muted', text: 'no slots' })),
    ...badges,
  ];
}

function table(headers, rows) {
  return h('table', {}, h('thead', {}, h('tr', {}, headers.map((t) => h('th', { text: t })))), h('tbody', {}, rows));
}

function slotsTable(view) {
  const rows = view.slots.map((s) => h('tr', { 'data-instance': s.instance },
    h('td', { class: 'mono', text: s.instance }),
    h('td', { class: 'version mono', text: s.version }),
    h('td', { class: 'mono', text: s.address || '-' }),
    h('td', { class: s.state === 'ok' ? 'state-ok' : 'state-bad', text: s.state })));
  return table(['slot', 'version', 'address', 'endpoint'], rows);
}

function endpointsTable(view) {
  const rows = view.endpoints.map((e) => h('tr', {},
    h('td', { class: 'mono', text: e.instance }),
    h('td', { class: 'mono', text: e.version }),
    h('td', { class: 'mono', text: e.address }),
    h('td', { class: 'num', text: e.weight }),
    h('td', { class: e.health === 'failing' ? 'state-bad' : (e.health === 'passing' ? 'state-ok' : 'muted'), text: e.health + (e.detail ? ` (${e.detail})` : '') }),
    h('td', { text: e.routed ? 'routed' : '' })));
  return table(['slot', 'version', 'address', 'weight', 'health', ''], rows);
}

function timeLeft(c) {
  if (c.state !== 'running' || !c.interval_ms) return '';
  const end = Date.parse(c.updated_at) + c.interval_ms;
  if (!end) return '';
  const left = Math.round((end - Date.now()) / 1000);
  return left > 0 ? `≈ ${left}s left in this step` : 'observing: the step ends soon';
}

function canaryPanel(view) {
  const c = view.canary;
  if (!c) return null;
  if (c.unreadable) return h('div', { class: 'canary' }, h('span', { class: 'canary-state state-bad', text: 'canary record unreadable' }));
  const allowed = state.meta && state.meta.actions && state.meta.actions.allowed;
  const buttons = [];
  if (allowed && c.active) {
    if (c.state === 'running') buttons.push(actionButton(view.name, 'pause', 'pause', { reason: 'paused from the dashboard' }));
    if (c.state === 'paused') buttons.push(actionButton(view.name, 'resume', c.awaits_confirmation ? 'confirm final step' : 'resume', {}));
    if (c.state !== 'aborting') buttons.push(actionButton(view.name, 'abort', 'abort', { reason: 'aborted from the dashboard' },
      { danger: true, confirm: `Abort the canary of ${c.version} on ${view.name} and roll back?` }));
  }
  return h('div', { class: 'canary', 'data-canary-state': c.state },
    h('div', {},
      'canary of ', h('b', { text: c.version }), ': ',
      h('span', { class: 'canary-state', text: c.state.replace('_', ' ') }),
      ` · step ${c.step}/${c.of}`, c.step_description ? ` (${c.step_description})` : '',
      ` · ${c.passed} passed`),
    h('div', { class: 'canary-left muted', text: timeLeft(c) }),
    c.reason ? h('div', { class: 'canary-reason', text: `reason: ${c.reason}` }) : null,
    h('div', { class: 'muted' },
      'started ', h('span', { 'data-at': c.started_at, text: ago(c.started_at) }), ` by ${c.actor}`,
      c.changed_by ? ` · last changed by ${c.changed_by}` : '',
      c.active ? (c.owned ? ` · run by ${c.owner}` : ' · no discoctl runs it (lock expired): resume it with discoctl canary --resume, or abort') : '',
      ` · 5xx limit ${(c.max_error_rate * 100).toFixed(1)}%`, c.dry_run ? ' · dry run' : ''),
    buttons.length ? h('div', { class: 'buttons' }, buttons) : null);
}

function chart(title, points, pick, format) {
  const width = 250; const height = 70;
  const now = Date.now();
  const versions = new Set();
  for (const p of points) for (const v of Object.keys(p.versions)) versions.add(v);
  let max = 0;
  for (const p of points) for (const v of versions) {
    const y = p.versions[v] ? pick(p.versions[v]) : null;
    if (y !== null && y !== undefined) max = Math.max(max, y);
  }
  // The x axis spans the data (at least 10 s), up to the last 2 minutes.
  const first = points.length ? points[0].at_ms : now;
  const span = Math.min(TRAFFIC_WINDOW_MS, Math.max(10000, now - first));
  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' });
  root.append(svg('line', { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, stroke: '#dde1e6' }));
  const scale = max > 0 ? max * 1.15 : 1;
  for (const v of [...versions].sort(naturalCompare)) {
    const coords = [];
    for (const p of points) {
      const y = p.versions[v] ? pick(p.versions[v]) : null;
      if (y === null || y === undefined) continue;
      const x = (width - 2) - ((now - p.at_ms) / span) * (width - 4);
      if (x < 0) continue;
      coords.push(`${x.toFixed(1)},${(height - 2 - (y / scale) * (height - 6)).toFixed(1)}`);
    }
    if (coords.length) root.append(svg('polyline', { points: coords.join(' '), fill: 'none', stroke: colour(v), 'stroke-width': 1.5 }));
  }
  const last = points.length ? points[points.length - 1] : null;
  const now_ = last ? [...versions].sort(naturalCompare).map((v) => {
    const y = last.versions[v] ? pick(last.versions[v]) : null;
    return `${v} ${y === null || y === undefined ? '–' : format(y)}`;
  }).join(' · ') : 'no data';
  return h('div', { class: 'chart' }, h('div', { text: `${title}: ${now_}` }), root);
}

function trafficCharts(view) {
  const points = state.traffic.get(view.name) || [];
  if (!points.length) return h('p', { class: 'muted', text: 'no traffic statistics published for this app (yet)' });
  const hasP95 = points.some((p) => Object.values(p.versions).some((v) => v.p95_ms !== null));
  const versions = [...new Set(points.flatMap((p) => Object.keys(p.versions)))].sort(naturalCompare);
  return h('div', {},
    h('div', { class: 'charts' },
      chart('requests/s', points, (v) => v.rps, (y) => y.toFixed(1)),
      chart('5xx share', points, (v) => v.error_share, (y) => (y * 100).toFixed(1) + '%'),
      hasP95 ? chart('latency p95', points, (v) => v.p95_ms, (y) => y.toFixed(0) + ' ms')
        : chart('mean latency', points, (v) => v.mean_ms, (y) => y.toFixed(1) + ' ms')),
    h('div', { class: 'legend' }, versions.map((v) => {
      const s = h('span', { class: 'swatch' });
      s.style.background = colour(v);
      return h('span', {}, s, v);
    })),
    h('div', { class: 'muted', text: 'last 2 minutes, from the statistics the LB agents publish' }));
}

function historyTable(view) {
  if (!view.history.length) return h('p', { class: 'muted', text: 'no audit record' });
  const rows = view.history.map((r) => h('tr', { 'data-seq': r.seq },
    h('td', { class: 'num', text: r.seq }),
    h('td', { title: r.at, 'data-at': r.at, text: ago(r.at) }),
    h('td', { class: 'actor', text: r.actor }),
    h('td', { class: 'action', text: r.action }),
    h('td', { text: r.change || '-' }),
    h('td', { class: 'muted', text: r.reason || '' })));
  return table(['#', 'when', 'who', 'action', 'change', 'why'], rows);
}

function appActions(view) {
  const allowed = state.meta && state.meta.actions && state.meta.actions.allowed;
  if (!allowed) return null;
  const buttons = [];
  const total = view.slots.length;
  for (const v of view.versions) {
    if (v.endpoints > 0 && v.slots < total) {
      buttons.push(actionButton(view.name, 'promote', `promote 1 slot to ${v.version}`, { version: v.version, count: 1, reason: 'promoted from the dashboard' },
        { confirm: `Flip the next slot of ${view.name} to ${v.version}?` }));
    }
  }
  buttons.push(actionButton(view.name, 'rollback', 'roll back the newest rollout', { reason: 'rolled back from the dashboard' },
    { danger: true, confirm: `Roll ${view.name} back (undo its newest rollout)?` }));
  return h('div', { class: 'buttons' }, buttons);
}

function detail(view) {
  const routing = h('div', {},
    h('h3', { text: 'slots' }), slotsTable(view),
    h('h3', { text: 'endpoints' }), endpointsTable(view),
    h('p', {},
      'dark canary: ', view.dark ? `${view.dark.version} if ${view.dark.matches.join(' or ')}` : 'off',
      ' · weights: ', Object.entries(view.weights || {}).map(([v, p]) => `${v}=${p}%`).join(', ') || 'none',
      ` · mode ${view.mode}`),
    appActions(view),
    h('div', { class: 'app-flash' }));
  const live = h('div', {},
    view.canary ? h('h3', { text: 'canary' }) : null,
    canaryPanel(view),
    h('h3', { text: 'traffic per version' }),
    h('div', { class: 'traffic' }, trafficCharts(view)),
    h('h3', { text: 'history (newest first)' }),
    historyTable(view));
  return [routing, live];
}

function fill(name) {
  const el = state.elements.get(name);
  const view = state.apps.get(name);
  if (!el || !view) return;
  el.summary.replaceChildren(...summary(view));
  if (el.details.open) el.detail.replaceChildren(...detail(view));
  else el.detail.replaceChildren();
  el.root.hidden = !matches(view);
}

function createElement(name) {
  const summaryEl = h('summary');
  const detailEl = h('div', { class: 'detail' });
  const details = h('details', {}, summaryEl, detailEl);
  if (state.open.has(name)) details.open = true;
  details.addEventListener('toggle', () => {
    if (details.open) state.open.add(name); else state.open.delete(name);
    fill(name);
  });
  const root = h('section', { class: 'app', 'data-app': name }, details);
  const el = { root, details, summary: summaryEl, detail: detailEl };
  state.elements.set(name, el);
  return el;
}

function upsertApp(name, view) {
  const list = document.getElementById('apps');
  if (view === null) {
    state.apps.delete(name);
    state.traffic.delete(name);
    const el = state.elements.get(name);
    if (el) el.root.remove();
    state.elements.delete(name);
    updateCount();
    return;
  }
  const isNew = !state.apps.has(name);
  state.apps.set(name, view);
  if (isNew) {
    const el = createElement(name);
    // Keep the list in natural order of names.
    let before = null;
    for (const other of list.children) {
      if (naturalCompare(other.dataset.app, name) > 0) { before = other; break; }
    }
    list.insertBefore(el.root, before);
  }
  fill(name);
  if (isNew) updateCount();
}

function updateCount() {
  let shown = 0;
  for (const [, el] of state.elements) if (!el.root.hidden) shown++;
  document.getElementById('count').textContent = `${shown} of ${state.apps.size} apps`;
  document.getElementById('no-apps').hidden = shown > 0 || state.apps.size === 0;
}

function applyFilter() {
  for (const [name, el] of state.elements) el.root.hidden = !matches(state.apps.get(name));
  updateCount();
}

// ---- events ----

function onInit(data) {
  state.meta = data.meta;
  state.agents = data.agents;
  state.traffic = new Map(Object.entries(data.traffic || {}));
  const names = Object.keys(data.apps).sort(naturalCompare);
  if (!state.rendered && names.length <= 10) names.forEach((n) => state.open.add(n));
  state.apps = new Map(names.map((n) => [n, data.apps[n]]));
  state.elements = new Map();
  const list = document.getElementById('apps');
  const fragment = document.createDocumentFragment();
  for (const name of names) {
    const el = createElement(name);
    fragment.append(el.root);
  }
  list.replaceChildren(fragment);
  for (const name of names) fill(name);
  renderMeta();
  renderAgents();
  updateCount();
  if (!state.rendered) {
    state.rendered = true;
    window.__renderedAt = performance.now();
    document.body.dataset.rendered = 'true';
  }
}

function onTraffic(data) {
  for (const [app, point] of Object.entries(data.points)) {
    const points = state.traffic.get(app) || [];
    points.push(point);
    while (points.length && points[0].at_ms < point.at_ms - TRAFFIC_WINDOW_MS) points.shift();
    state.traffic.set(app, points);
    const el = state.elements.get(app);
    const view = state.apps.get(app);
    if (el && view && el.details.open) {
      const box = el.root.querySelector('.traffic');
      if (box) box.replaceChildren(trafficCharts(view));
    }
  }
}

function connect() {
  const source = new EventSource('/events');
  source.addEventListener('init', (e) => {
    window.__initBytes = e.data.length;
    onInit(JSON.parse(e.data));
  });
  source.addEventListener('app', (e) => {
    const data = JSON.parse(e.data);
    upsertApp(data.name, data.view);
  });
  source.addEventListener('agents', (e) => { state.agents = JSON.parse(e.data); renderAgents(); });
  source.addEventListener('meta', (e) => { state.meta = JSON.parse(e.data); renderMeta(); renderAgents(); });
  source.addEventListener('traffic', (e) => onTraffic(JSON.parse(e.data)));
  source.addEventListener('error', () => {
    const conn = document.getElementById('connection');
    conn.className = 'pill bad';
    conn.textContent = 'dashboard unreachable: reconnecting…';
  });
}

function start() {
  setUpToken();
  const filter = document.getElementById('filter');
  let timer = null;
  filter.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.filter = filter.value.trim().toLowerCase(); applyFilter(); }, 80);
  });
  document.getElementById('only').addEventListener('change', (e) => { state.only = e.target.value; applyFilter(); });
  // The canaries' time left (open apps), once a second; every "… ago", every ten.
  let ticks = 0;
  setInterval(() => {
    ticks += 1;
    for (const name of state.open) {
      const view = state.apps.get(name);
      const el = state.elements.get(name);
      if (!view || !el) continue;
      const left = el.root.querySelector('.canary-left');
      if (view.canary && left) left.textContent = timeLeft(view.canary);
    }
    if (ticks % 10 === 0) {
      for (const el of document.querySelectorAll('[data-at]')) el.textContent = ago(el.dataset.at);
    }
  }, 1000);
  connect();
}

start();
