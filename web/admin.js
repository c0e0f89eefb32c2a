// The operator page: the hub's supervision tree from GET /api/admin/actors, polled every
// second, with a filter that goes to the hub as `?q=` and also narrows what is shown at once.

import { el, byTestId, ApiError, Session, duration, loginForm } from '/assets/common.js';

const session = new Session('tickethub.operator');
const POLL_MS = 1000;

const view = {
  tree: null,
  filter: '',
  offset: 0,
  limit: 50,
  paused: false,
  timer: null,
  filterTimer: null,
  inFlight: false,
  pending: false,
  lastOk: 0,
};

// The helpers below turn the tree's values into readable text.

const num = (v) => (typeof v === 'number' ? v.toLocaleString() : v ?? '–');
const secs = (v) => duration(v);
const ago = (v) => (typeof v === 'number' ? `${duration(v)} ago` : '–');

function bytes(v) {
  if (typeof v !== 'number') return '–';
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
  return `${(v / 1024 / 1024).toFixed(1)} MiB`;
}

function stateTag(v) {
  return el('span', { class: 'state', dataset: { value: v ?? 'unknown' } }, v ?? 'unknown');
}

/** Text with the filter's matches wrapped in <mark>, built from text nodes only. */
function highlight(text, q) {
  const s = text === null || text === undefined ? '' : String(text);
  if (!q) return s;
  const lower = s.toLowerCase();
  const parts = [];
  let at = 0;
  for (let i = lower.indexOf(q); i !== -1; i = lower.indexOf(q, at)) {
    if (i > at) parts.push(s.slice(at, i));
    parts.push(el('mark', {}, s.slice(i, i + q.length)));
    at = i + q.length;
  }
  if (at < s.length) parts.push(s.slice(at));
  return parts;
}

function get(obj, path) {
  return path.split('.').reduce((o, k) => (o && typeof o === 'object' ? o[k] : undefined), obj);
}

// Each known kind of leaf gets these columns: the header, the field's path, how to show the
// value, whether it is a number, and whether the filter highlights it.
const COLUMNS = {
  user: [
    ['Actor', 'name', null, false, true],
    ['User', 'username', null, false, true],
    ['Status', 'status', stateTag],
    ['Uptime', 'uptime_secs', secs, true],
    ['Restarts', 'restarts', num, true],
    ['Sockets', 'sockets.count', num, true],
    ['Queued frames', 'sockets.queued_frames', num, true],
    ['Queued bytes', 'sockets.queued_bytes', bytes, true],
    ['Last seen', 'sockets.last_seen_secs_ago', ago, true],
  ],
  ticket: [
    ['Actor', 'name', null, false, true],
    ['Ticket', 'key', null, false, true],
    ['Status', 'status', stateTag],
    ['Ticket status', 'ticket_status', (v) => el('span', { class: 'status', dataset: { status: v } }, v)],
    ['Uptime', 'uptime_secs', secs, true],
    ['Idle', 'idle_secs', secs, true],
  ],
  channel: [
    ['Channel', 'channel', null, false, true],
    ['Status', 'status', stateTag],
    ['Circuit', 'circuit', stateTag],
    ['In flight', 'in_flight', num, true],
    ['Outbox', 'outbox_depth', num, true],
    ['Sent', 'sent', num, true],
    ['Failed', 'failed', num, true],
    ['Retried', 'retried', num, true],
    ['Restarts', 'restarts', num, true],
  ],
};

/** Columns for a kind this page does not know: every scalar field, nested ones flattened. */
function guessColumns(nodes) {
  const paths = [];
  const walk = (obj, prefix) => {
    for (const [k, v] of Object.entries(obj)) {
      if (k === 'children' || k === 'kind') continue;
      const path = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, path);
      else if (!Array.isArray(v) && !paths.includes(path)) paths.push(path);
    }
  };
  for (const n of nodes) walk(n, '');
  return paths.map((p) => [p.replace(/_/g, ' '), p, (v) => (typeof v === 'number' ? num(v) : v ?? '–'), false, p === 'name']);
}

function matches(node, q) {
  if (!q) return true;
  return ['name', 'username', 'key', 'channel'].some((k) => typeof node[k] === 'string' && node[k].toLowerCase().includes(q));
}

// Rendering rebuilds the view from the last tree the hub answered, so typing in the filter
// narrows it at once, before the next request.

function render() {
  const tree = view.tree;
  if (!tree) return;
  const q = view.filter.trim().toLowerCase();

  const root = byTestId('root');
  root.replaceChildren(
    el('div', { class: 'node-head' },
      el('span', { class: 'name' }, tree.name ?? 'hub'),
      el('span', { class: 'chip' }, tree.kind ?? 'root'),
      stateTag(tree.status),
      el('span', { class: 'facts' },
        el('span', {}, 'uptime ', el('b', { testid: 'root-uptime' }, secs(tree.uptime_secs))),
        el('span', {}, 'restarts ', el('b', {}, num(tree.restarts))))),
  );

  const totals = tree.totals && typeof tree.totals === 'object' ? tree.totals : {};
  // The known counts first, in the tree's order, then any others the hub adds.
  const order = ['users', 'sockets', 'tickets', 'channels'];
  const keys = [...order.filter((k) => k in totals), ...Object.keys(totals).filter((k) => !order.includes(k))];
  byTestId('totals').replaceChildren(
    ...keys.map((k) => [k, totals[k]]).map(([k, v]) => el('div', { class: 'stat', testid: `total-${k}` },
      el('div', { class: 'label' }, k.replace(/_/g, ' ')),
      el('div', { class: 'value' }, num(v)))),
  );

  byTestId('tree').replaceChildren(...(tree.children || []).map((c) => nodePanel(c, q, 0)));

  // Each paged directory says which window of its children the hub answered.
  const pages = [];
  const collect = (n) => {
    if (n.page) pages.push(n.page);
    (n.children || []).forEach(collect);
  };
  (tree.children || []).forEach(collect);
  const more = pages.some((p) => p.offset + p.limit < p.total);
  byTestId('page-prev').disabled = view.offset === 0;
  byTestId('page-next').disabled = !more;
  byTestId('page-info').textContent = pages.length
    ? `rows ${view.offset + 1}–${view.offset + view.limit} of each directory`
    : '';
}

function nodePanel(node, q, depth) {
  const children = Array.isArray(node.children) ? node.children : [];
  const branches = children.filter((c) => Array.isArray(c.children));
  const leaves = children.filter((c) => !Array.isArray(c.children));
  const facts = [];
  if (node.actors !== undefined) facts.push(el('span', {}, 'actors ', el('b', { testid: 'node-actors' }, num(node.actors))));
  if (node.failures !== undefined) facts.push(el('span', {}, 'failures ', el('b', {}, num(node.failures))));
  if (node.page) {
    const p = node.page;
    const shown = Math.max(0, Math.min(p.limit, p.total - p.offset));
    facts.push(el('span', { testid: 'node-page' }, shown
      ? `${num(p.offset + 1)}–${num(p.offset + shown)} of ${num(p.total)}`
      : `none of ${num(p.total)} here`));
  }
  for (const k of ['uptime_secs', 'restarts']) {
    if (node[k] !== undefined) facts.push(el('span', {}, `${k === 'uptime_secs' ? 'uptime' : k} `, el('b', {}, k === 'uptime_secs' ? secs(node[k]) : num(node[k]))));
  }

  const body = [];
  const byKind = new Map();
  for (const leaf of leaves) {
    const kind = leaf.kind ?? 'actor';
    if (!byKind.has(kind)) byKind.set(kind, []);
    byKind.get(kind).push(leaf);
  }
  for (const [kind, nodes] of byKind) body.push(leafTable(kind, nodes, q));
  for (const b of branches) body.push(nodePanel(b, q, depth + 1));
  if (children.length === 0) {
    body.push(el('p', { class: 'empty' }, q ? `No actors here match “${view.filter.trim()}”.` : 'No actors.'));
  }

  const lastFailure = node.last_failure
    ? el('p', { class: 'failure', testid: 'last-failure' }, 'last failure: ',
      typeof node.last_failure === 'object' ? JSON.stringify(node.last_failure) : String(node.last_failure))
    : null;

  return el(depth === 0 ? 'section' : 'div', {
    class: depth === 0 ? 'panel' : 'subtree',
    testid: 'node',
    dataset: { name: node.name ?? '', kind: node.kind ?? '' },
  },
  el('div', { class: 'node-head' },
    el('span', { class: 'name' }, node.name ?? '?'),
    el('span', { class: 'chip' }, node.kind ?? '?'),
    stateTag(node.status),
    el('span', { class: 'facts' }, facts)),
  lastFailure,
  el('div', { class: 'node-children' }, body),
  );
}

function leafTable(kind, nodes, q) {
  const columns = COLUMNS[kind] || guessColumns(nodes);
  const shown = nodes.filter((n) => matches(n, q));
  const rows = shown.map((n) => el('tr', { testid: 'actor-row', dataset: { name: n.name ?? '', kind } },
    columns.map(([, path, show, numeric, searchable]) => {
      const value = get(n, path);
      const content = show ? show(value) : searchable ? highlight(value ?? '–', q) : value ?? '–';
      return el('td', { class: numeric ? 'num' : path === 'name' ? 'mono' : null, testid: `actor-${path.replace(/\./g, '-')}` }, content);
    })));
  const hidden = nodes.length - shown.length;
  return el('div', { class: 'leaf-group' },
    el('table', {},
      el('thead', {}, el('tr', {}, columns.map(([label, , , numeric]) => el('th', { class: numeric ? 'num' : null }, label)))),
      el('tbody', {}, rows)),
    rows.length === 0 ? el('p', { class: 'empty' }, `No ${kind} actors match “${view.filter.trim()}”.`) : null,
    hidden > 0 && rows.length > 0 ? el('p', { class: 'muted' }, `${hidden} hidden by the filter`) : null);
}

// Polling asks the hub for the tree once a second, one request at a time.

function setLive(state, text) {
  const pill = byTestId('live-state');
  pill.dataset.state = state;
  pill.textContent = text;
}

function showError(text) {
  const box = byTestId('flash');
  box.textContent = text;
  box.hidden = !text;
}

function query() {
  const p = new URLSearchParams();
  const q = view.filter.trim();
  if (q) p.set('q', q);
  p.set('offset', String(view.offset));
  p.set('limit', String(view.limit));
  return p.toString();
}

async function poll() {
  clearTimeout(view.timer);
  if (!session.loggedIn || view.paused) return;
  view.inFlight = true;
  try {
    const tree = await session.api('GET', `/api/admin/actors?${query()}`);
    view.tree = tree;
    view.lastOk = Date.now();
    showError('');
    setLive('live', 'live');
    render();
    byTestId('updated-at').textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    if (!session.loggedIn) return;
    let text;
    if (e instanceof ApiError && e.status === 404) {
      text = 'This hub does not serve GET /api/admin/actors (404); it may be an older version.';
    } else if (e instanceof ApiError && e.status === 403) {
      logout(`The hub refused: ${e.message}`);
      return;
    } else if (e instanceof ApiError) {
      text = `GET /api/admin/actors failed: ${e.message}`;
    } else {
      text = `Cannot reach the hub: ${e.message}`;
    }
    showError(text);
    const age = view.lastOk ? ` · last update ${Math.round((Date.now() - view.lastOk) / 1000)} s ago` : '';
    setLive('error', `not updating${age}`);
  } finally {
    view.inFlight = false;
    if (session.loggedIn && !view.paused) {
      if (view.pending) {
        view.pending = false;
        poll();
      } else {
        view.timer = setTimeout(poll, POLL_MS);
      }
    }
  }
}

/** Polls now, or right after the request in flight. */
function pollSoon() {
  clearTimeout(view.timer);
  if (view.inFlight) view.pending = true;
  else poll();
}

// The page starts on the login form, or straight away with a login this tab kept.

async function start() {
  const me = await session.api('GET', '/api/users/me/');
  if (me.role !== 'admin') {
    session.logout();
    showLogin(`Only admins can use the operator page; ${me.username} is a ${me.role}. The demo client is at /.`);
    return;
  }
  const who = byTestId('whoami');
  who.textContent = `${me.display_name || me.username} · admin`;
  who.dataset.username = me.username;
  who.hidden = false;
  byTestId('logout').hidden = false;
  byTestId('login').hidden = true;
  byTestId('operator').hidden = false;
  setLive('connecting', 'loading…');
  pollSoon();
}

function showLogin(message) {
  byTestId('operator').hidden = true;
  byTestId('whoami').hidden = true;
  byTestId('logout').hidden = true;
  byTestId('login').hidden = false;
  byTestId('login-error').textContent = message || '';
  byTestId('updated-at').textContent = '';
  setLive('closed', 'not watching');
}

function logout(message) {
  clearTimeout(view.timer);
  session.logout();
  view.tree = null;
  showLogin(message);
}

session.onExpired = () => logout('Your session has expired; please log in again.');

document.addEventListener('DOMContentLoaded', () => {
  loginForm(session, start);
  byTestId('logout').addEventListener('click', () => logout());
  byTestId('filter').addEventListener('input', (ev) => {
    view.filter = ev.target.value;
    view.offset = 0;
    render();
    clearTimeout(view.filterTimer);
    view.filterTimer = setTimeout(pollSoon, 250);
  });
  byTestId('limit').addEventListener('change', (ev) => {
    view.limit = Number(ev.target.value);
    view.offset = 0;
    pollSoon();
  });
  byTestId('page-prev').addEventListener('click', () => {
    view.offset = Math.max(0, view.offset - view.limit);
    pollSoon();
  });
  byTestId('page-next').addEventListener('click', () => {
    view.offset += view.limit;
    pollSoon();
  });
  byTestId('pause').addEventListener('click', (ev) => {
    view.paused = !view.paused;
    ev.target.textContent = view.paused ? 'Resume' : 'Pause';
    if (view.paused) {
      clearTimeout(view.timer);
      setLive('closed', 'paused');
    } else {
      pollSoon();
    }
  });
  if (session.loggedIn) {
    start().catch((e) => logout(e instanceof ApiError && e.status === 401 ? '' : e.message));
  } else {
    showLogin();
  }
});
