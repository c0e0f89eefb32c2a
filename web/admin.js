// The operator page: the hub's supervision tree from GET /api/admin/actors, polled every
// second, with a filter that goes to the hub as `?q=` and also narrows what is shown at once;
// the escalation steps (GET /api/admin/escalations) on the same cycle; who is on call on each
// schedule (GET /api/oncall/schedules/ and …/now/), every ten seconds; and "why wasn't this
// user notified?" (GET /api/admin/trace) with each notification's timeline; and delivery
// analytics (GET /api/admin/analytics), loaded when the page starts and when a filter changes,
// drawn as SVG charts and a table.

import {
  el, byTestId, ApiError, Session, duration, loginForm, clock, relative, channelName, timelineView,
  barChart,
} from '/assets/common.js';

// One login for both pages: the demo client's session is this page's too.
const session = new Session('tickethub');
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
  // The escalation steps shown, and the names their ids stand for.
  escalations: { status: 'PENDING', rows: null, error: null, signature: '', inFlight: null, again: false },
  people: new Map(),
  peopleAt: 0,
  ticketKeys: new Map(),
  ticketsAsked: new Set(),
  // The notification whose timeline shows under the escalations.
  escalationTimeline: { id: null, request: 0 },
  // Delivery analytics: the request in flight, and the types seen (offered in the type field).
  analytics: { request: 0, types: new Set() },
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
    ['Suppressed', 'suppressed', num, true],
    ['Wakes', 'wakes', num, true],
    ['Restarts', 'restarts', num, true],
  ],
};

// What each of the tree's totals counts, in words: these are live actors on this node, not
// rows in the database.
const TOTALS = {
  users: ['User actors', 'users with an actor on this node: connected now, or recently'],
  sockets: ['Open sockets', 'WebSocket and event-stream connections to this node'],
  tickets: ['Ticket actors in memory', 'tickets changed recently on this node, not all tickets'],
  channels: ['Delivery channels', 'email, WhatsApp, webhook, push… actors on this node'],
  rooms: ['Project rooms', 'project boards with someone in them on this node'],
};

// The escalation actor has no children: its counts show on its line of the tree.
const dueText = (v) => (v ? `${clock(v)} (${relative(v)})` : 'none');
const NODE_FACTS = {
  escalation: [
    ['pending', 'pending', num],
    ['next due', 'next_due', dueText],
    ['fired', 'fired', num],
    ['cancelled', 'cancelled', num],
    ['failed', 'failed', num],
    ['policies', 'policies', num],
  ],
};
COLUMNS.escalation = [
  ['Actor', 'name', null, false, true],
  ['Status', 'status', stateTag],
  ['Pending', 'pending', num, true],
  ['Next due', 'next_due', dueText],
  ['Fired', 'fired', num, true],
  ['Cancelled', 'cancelled', num, true],
  ['Failed', 'failed', num, true],
  ['Policies', 'policies', num, true],
];

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
  const order = ['users', 'sockets', 'tickets', 'channels', 'rooms'];
  const keys = [...order.filter((k) => k in totals), ...Object.keys(totals).filter((k) => !order.includes(k))];
  byTestId('totals').replaceChildren(
    ...keys.map((k) => [k, totals[k]]).map(([k, v]) => {
      const [label, help] = TOTALS[k] || [k.replace(/_/g, ' '), ''];
      return el('div', { class: 'stat', testid: `total-${k}`, title: help || null },
        el('div', { class: 'label' }, label),
        el('div', { class: 'value' }, num(v)),
        help ? el('div', { class: 'muted small' }, help) : null);
    }),
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
  for (const [label, key, show] of NODE_FACTS[node.kind] || []) {
    if (node[key] !== undefined) {
      facts.push(el('span', {}, `${label} `, el('b', { testid: `${node.kind}-${key.replace(/_/g, '-')}` }, show(node[key]))));
    }
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
  if (Array.isArray(node.children) && children.length === 0) {
    body.push(el('p', { class: 'empty' }, q ? `No actors here match “${view.filter.trim()}”.` : 'No actors.'));
  }
  if (node.kind === 'escalation' && node.policies === 0) {
    body.push(el('p', { class: 'muted' }, 'No escalation policy is configured: the routing file has no [[escalation]] table.'));
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
  body.length ? el('div', { class: 'node-children' }, body) : null,
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
  // A table wider than a phone scrolls in its own region, which the keyboard can reach.
  return el('div', { class: 'leaf-group', tabindex: '0', role: 'region', 'aria-label': `${kind} actors` },
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

/**
 * Greys out what the hub last said while it cannot be reached, so that no green "running" badge
 * claims what nobody knows now.
 */
function setStale(stale) {
  for (const id of ['root', 'totals', 'tree']) {
    const box = byTestId(id);
    if (!box) continue;
    box.dataset.stale = String(stale);
    box.style.filter = stale ? 'grayscale(1)' : '';
    if (stale) box.setAttribute('aria-describedby', 'stale-note');
    else box.removeAttribute('aria-describedby');
  }
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
  const escalations = loadEscalations();
  try {
    const tree = await session.api('GET', `/api/admin/actors?${query()}`);
    view.tree = tree;
    view.lastOk = Date.now();
    showError('');
    setStale(false);
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
    const age = view.lastOk ? ` · last update ${Math.round((Date.now() - view.lastOk) / 1000)} s ago` : '';
    showError(view.lastOk
      ? `${text}. What is shown is from ${new Date(view.lastOk).toLocaleTimeString()} and may no longer be true.`
      : text);
    setStale(Boolean(view.lastOk));
    setLive('error', `not updating${age}`);
  } finally {
    await escalations;
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

// On call: every schedule and who is on call now, loaded with the page and every ten seconds.

const ONCALL_MS = 10_000;

async function loadOncall() {
  if (!session.loggedIn) return;
  const panel = byTestId('oncall-panel');
  const error = byTestId('oncall-error');
  try {
    const schedules = await session.api('GET', '/api/oncall/schedules/');
    const now = await Promise.all(schedules.map((s) =>
      session.api('GET', `/api/oncall/schedules/${encodeURIComponent(s.name)}/now/`).catch(() => null)));
    byTestId('oncall-list').replaceChildren(...schedules.map((s, i) => oncallRow(s, now[i])));
    const count = byTestId('oncall-count');
    count.textContent = String(schedules.length);
    count.dataset.count = String(schedules.length);
    byTestId('oncall-empty').hidden = schedules.length > 0;
    error.hidden = true;
    panel.dataset.state = 'loaded';
  } catch (e) {
    if (!session.loggedIn) return;
    error.textContent = e instanceof ApiError ? `GET /api/oncall/schedules/ failed: ${e.message}` : `Cannot reach the hub: ${e.message}`;
    error.hidden = false;
    panel.dataset.state = 'error';
  }
}

function oncallRow(s, now) {
  const who = now && now.username ? `${now.username} (#${now.user_id})` : 'nobody';
  const why = now && now.source ? `${now.source} ${now.source_id}` : '–';
  return el('tr', { testid: 'oncall-row', dataset: { schedule: s.name, userId: now?.user_id ?? '' } },
    el('td', { class: 'mono', testid: 'oncall-schedule' }, s.name, el('div', { class: 'muted' }, s.time_zone)),
    el('td', { testid: 'oncall-who' }, who),
    el('td', { testid: 'oncall-until', title: now?.until ?? '' }, now?.until ? clock(now.until) : '–',
      now?.until ? el('div', { class: 'muted' }, relative(now.until)) : null),
    el('td', { testid: 'oncall-why' }, why));
}

// Escalation steps: every node's, soonest due first, loaded with each refresh of the tree.
// User and ticket ids are shown with their names, looked up once.

async function loadPeople(force = false) {
  if (!force && Date.now() - view.peopleAt < 10_000) return;
  view.peopleAt = Date.now();
  try {
    const people = await session.all('/api/users/');
    view.people = new Map(people.map((u) => [u.id, u.username]));
    renderEscalations();
  } catch {
    // Ids are shown without names.
  }
}

async function lookUpTicket(id) {
  if (id === null || id === undefined || view.ticketsAsked.has(id)) return;
  view.ticketsAsked.add(id);
  try {
    const t = await session.api('GET', `/api/tickets/${encodeURIComponent(id)}/`);
    view.ticketKeys.set(id, t.key);
    renderEscalations();
  } catch {
    // The id is shown without its key.
  }
}

/** Loads the steps, one request at a time; a call during a request loads again after it. */
function loadEscalations() {
  const esc = view.escalations;
  if (!session.loggedIn) return Promise.resolve();
  if (esc.inFlight) {
    esc.again = true;
    return esc.inFlight;
  }
  esc.inFlight = (async () => {
    const status = esc.status;
    try {
      const page = await session.api('GET', `/api/admin/escalations?${new URLSearchParams({ status, limit: '100' })}`);
      if (status === esc.status) {
        esc.rows = Array.isArray(page.results) ? page.results : [];
        esc.error = null;
      }
    } catch (e) {
      if (session.loggedIn && status === esc.status) {
        esc.error = e instanceof ApiError && e.status === 404
          ? 'This hub does not serve GET /api/admin/escalations (404); it may be an older version.'
          : e instanceof ApiError ? `GET /api/admin/escalations failed: ${e.message}` : `Cannot reach the hub: ${e.message}`;
      }
    }
    esc.inFlight = null;
    if (!session.loggedIn) return;
    renderEscalations();
    if (esc.again) {
      esc.again = false;
      await loadEscalations();
    }
  })();
  return esc.inFlight;
}

function userLabel(id) {
  const name = view.people.get(id);
  return name ? `${name} (#${id})` : `#${id}`;
}

function ticketLabel(id) {
  if (id === null || id === undefined) return '–';
  const key = view.ticketKeys.get(id);
  return key ? `${key} (#${id})` : `#${id}`;
}

function renderEscalations() {
  const esc = view.escalations;
  byTestId('escalations-panel').dataset.state = esc.error ? 'error' : esc.rows === null ? 'loading' : 'loaded';
  const error = byTestId('escalations-error');
  error.textContent = esc.error || '';
  error.hidden = !esc.error;
  const rows = esc.rows || [];
  if (rows.some((e) => !view.people.has(e.user_id))) loadPeople();
  for (const e of rows) lookUpTicket(e.ticket_id);
  const labels = rows.map((e) => [userLabel(e.user_id), ticketLabel(e.ticket_id), relative(e.due_at)]);
  const signature = JSON.stringify([esc.status, esc.rows === null, rows, labels]);
  if (signature === esc.signature) return;
  esc.signature = signature;
  const count = byTestId('escalations-count');
  count.textContent = String(rows.length);
  count.dataset.count = String(rows.length);
  byTestId('escalations-title').textContent = esc.status === 'PENDING'
    ? 'Pending escalations'
    : `Escalations · ${esc.status === 'all' ? 'all' : esc.status.toLowerCase()}`;
  byTestId('escalation-list').replaceChildren(...rows.map((e, i) => escalationRow(e, labels[i])));
  const empty = byTestId('escalations-empty');
  empty.hidden = rows.length > 0 || esc.rows === null;
  empty.textContent = esc.status === 'PENDING' ? 'No escalation steps are pending.' : 'No escalation steps here.';
}

function escalationRow(e, [user, ticket, due]) {
  const channels = (e.channels || []).map(channelName);
  const also = e.also || [];
  const status = String(e.status ?? '?');
  return el('tr', {
    testid: 'escalation-row',
    dataset: {
      id: e.id,
      notificationId: e.notification_id,
      userId: e.user_id,
      ticketId: e.ticket_id ?? '',
      policy: e.policy,
      step: e.step,
      status,
    },
  },
  el('td', { class: 'mono', testid: 'escalation-policy' }, e.policy),
  el('td', { class: 'num', testid: 'escalation-step' }, e.step),
  el('td', {},
    el('button', {
      type: 'button',
      class: 'small',
      testid: 'escalation-notification',
      title: 'Show the timeline of this notification',
      onclick: () => showEscalationTimeline(e.notification_id),
    }, `#${e.notification_id}`)),
  el('td', { testid: 'escalation-user' }, user),
  el('td', { testid: 'escalation-ticket' }, ticket),
  el('td', { testid: 'escalation-due', title: e.due_at }, clock(e.due_at), el('div', { class: 'muted' }, due)),
  el('td', { testid: 'escalation-channels' },
    channels.length ? channels.join(', ') : 'no channel',
    el('div', { class: 'muted' }, [`unless ${e.unless ?? '?'}`, also.length ? `also ${also.join(', ')}` : null].filter(Boolean).join(' · '))),
  el('td', { testid: 'escalation-status' },
    el('span', { class: 'state', dataset: { value: status.toLowerCase() } }, status),
    e.detail ? el('div', { class: 'muted' }, e.detail) : null,
    e.claimed_by && status !== 'PENDING' ? el('div', { class: 'muted' }, `node ${e.claimed_by}`) : null),
  el('td', {},
    e.ticket_id !== null && e.ticket_id !== undefined
      ? el('button', {
        type: 'button',
        class: 'small',
        testid: 'escalation-trace',
        title: 'Trace this ticket for this user',
        onclick: () => traceFor(e.ticket_id, e.user_id),
      }, 'Trace')
      : null),
  );
}

async function showEscalationTimeline(id) {
  const box = byTestId('escalation-timeline-panel');
  const body = byTestId('escalation-timeline-body');
  const t = view.escalationTimeline;
  t.id = id;
  t.request += 1;
  const request = t.request;
  box.hidden = false;
  box.dataset.notificationId = String(id);
  box.dataset.state = 'loading';
  body.replaceChildren(el('p', { class: 'muted' }, `Loading the timeline of #${id}…`));
  try {
    const data = await session.api('GET', `/api/notifications/${encodeURIComponent(id)}/timeline/`);
    if (request !== t.request) return;
    body.replaceChildren(timelineView(data, 'escalation-timeline'));
    box.dataset.state = 'loaded';
  } catch (e) {
    if (request !== t.request) return;
    body.replaceChildren(el('p', { class: 'error', role: 'alert' }, timelineError(e, id)));
    box.dataset.state = 'error';
  }
}

function hideEscalationTimeline() {
  view.escalationTimeline.id = null;
  view.escalationTimeline.request += 1;
  byTestId('escalation-timeline-panel').hidden = true;
  byTestId('escalation-timeline-body').replaceChildren();
}

function timelineError(e, id) {
  if (e instanceof ApiError && e.status === 404) return `Notification #${id} no longer exists.`;
  if (e instanceof ApiError) return `Cannot load the timeline of #${id}: ${e.message}`;
  return `Cannot reach the hub: ${e.message}`;
}

// "Why wasn't … notified?": the routing decision of each event of a ticket, for one user.

const REASONS = {
  not_a_member: 'not a member of the ticket\'s project',
  not_routed: 'not in the route of this event',
  actor: 'took the action themselves',
  inactive: 'deactivated',
  no_route: 'the event has no route',
};

function showTraceError(text, status) {
  const box = byTestId('trace-error');
  box.textContent = text || '';
  box.hidden = !text;
  if (status === undefined) delete box.dataset.status;
  else box.dataset.status = String(status);
}

function traceErrorText(e, ticket, user) {
  if (!(e instanceof ApiError)) return `Cannot reach the hub: ${e.message}`;
  if (e.status === 400) return `The hub cannot trace that: ${e.message}`;
  if (e.status === 404) return `Not found: there is no ticket “${ticket}” (by key or id), or no user “${user}” (by username or id).`;
  if (e.status === 403) return `The hub refused: ${e.message}`;
  return `The trace failed (${e.status}): ${e.message}`;
}

async function runTrace(ev) {
  if (ev) ev.preventDefault();
  const form = byTestId('trace-form');
  const ticket = form.elements.ticket.value.trim();
  const user = form.elements.user.value.trim();
  const result = byTestId('trace-result');
  const submit = byTestId('trace-submit');
  showTraceError(null);
  submit.disabled = true;
  result.dataset.state = 'loading';
  try {
    const data = await session.api('GET', `/api/admin/trace?${new URLSearchParams({ ticket, user })}`);
    renderTrace(data);
    result.dataset.state = 'loaded';
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) {
      logout(`The hub refused: ${e.message}`);
      return;
    }
    result.replaceChildren();
    result.hidden = true;
    result.dataset.state = 'error';
    showTraceError(traceErrorText(e, ticket, user), e instanceof ApiError ? e.status : 0);
  } finally {
    submit.disabled = false;
  }
}

/** Fills the trace form with a ticket and a user, and traces. */
function traceFor(ticket, user) {
  const form = byTestId('trace-form');
  form.elements.ticket.value = String(ticket);
  form.elements.user.value = String(view.people.get(user) ?? user);
  byTestId('trace-panel').scrollIntoView({ block: 'nearest' });
  runTrace();
}

function renderTrace(data) {
  const t = data.ticket || {};
  const u = data.user || {};
  const events = Array.isArray(data.events) ? data.events : [];
  const notified = events.filter((e) => e.recipient).length;
  const project = t.project?.key ?? '?';
  const result = byTestId('trace-result');
  result.replaceChildren(
    el('div', {
      class: 'trace-summary',
      testid: 'trace-summary',
      dataset: { ticketId: t.id ?? '', userId: u.id ?? '', member: Boolean(u.member), active: Boolean(u.is_active) },
    },
    el('div', {},
      el('strong', { testid: 'trace-ticket-key' }, t.key ?? `#${t.id}`), ' ',
      el('span', {}, t.title ?? ''), ' ',
      t.status ? el('span', { class: 'status', dataset: { status: t.status } }, t.status) : null),
    el('div', {},
      'for ', el('strong', { testid: 'trace-username' }, u.username ?? `#${u.id}`),
      ` (${u.role ?? '?'}${u.is_active === false ? ', deactivated' : ''}), `,
      el('span', { testid: 'trace-membership' }, u.member ? `a member of ${project}` : `not a member of ${project}`)),
    el('div', { class: 'muted', testid: 'trace-count' }, events.length
      ? `Notified for ${notified} of ${events.length} event${events.length === 1 ? '' : 's'}.`
      : 'This ticket has no recorded events.')),
    data.note ? el('p', { class: 'muted note' }, data.note) : null,
    el('ol', { class: 'trace-events', testid: 'trace-events' }, events.map(traceEvent)),
  );
  result.hidden = false;
}

function traceEvent(e) {
  const who = e.actor ? e.actor.username ?? `user #${e.actor.id}` : 'nobody';
  const audiences = (e.route?.audiences || []).join(', ');
  const channels = (e.route?.channels || []).map(channelName).join(', ');
  const parts = [
    el('div', { class: 'trace-head' },
      el('time', { class: 'when', datetime: e.at ?? '', title: e.at ?? '' }, clock(e.at)),
      el('span', { class: 'chip', testid: 'trace-type' }, e.notification_type ?? '?'),
      el('span', {}, `${e.action ?? '?'} by ${who}`),
      e.status ? el('span', { class: 'status', dataset: { status: e.status } }, e.status) : null),
    el('div', { class: 'verdict', testid: 'trace-verdict' },
      el('span', { class: 'verdict-tag', testid: 'trace-recipient', dataset: { value: e.recipient ? 'yes' : 'no' } },
        e.recipient ? 'notified' : 'not notified'),
      e.reason ? el('span', { class: 'chip', testid: 'trace-reason', title: REASONS[e.reason] ?? e.reason }, e.reason) : null,
      el('span', { testid: 'trace-explanation' }, e.explanation ?? '')),
    el('div', { class: 'muted', testid: 'trace-route' },
      `route: ${audiences || 'nobody'} · ${channels || 'no channel'}`),
  ];
  if (e.recipient) {
    const list = Array.isArray(e.channels) ? e.channels : [];
    parts.push(list.length
      ? el('ul', { class: 'trace-channels', testid: 'trace-channels' }, list.map((c) => el('li', {
        testid: 'trace-channel',
        dataset: { channel: c.channel ?? '', reached: Boolean(c.reached) },
      },
      el('strong', {}, channelName(c.channel)), ': ',
      c.reached
        ? `reached at ${c.address ?? '?'}`
        : `not sent (${c.reason ?? '?'})${c.explanation ? `: ${c.explanation}` : ''}`)))
      : el('p', { class: 'muted', testid: 'trace-channels' }, 'No outbound channel in the route: in the app only.'));
    parts.push(e.notification ? traceTimeline(e.notification) : el('p', { class: 'muted', testid: 'trace-no-notification' },
      'No notification was stored for this user.'));
  }
  return el('li', {
    class: 'trace-event',
    testid: 'trace-event',
    dataset: {
      eventId: e.event_id ?? '',
      type: e.notification_type ?? '',
      recipient: Boolean(e.recipient),
      reason: e.reason ?? '',
    },
  }, parts);
}

/** A button that shows a traced notification's timeline under it. */
function traceTimeline(notification) {
  const id = notification.id;
  const path = typeof notification.timeline === 'string' && notification.timeline.startsWith('/api/')
    ? notification.timeline
    : `/api/notifications/${encodeURIComponent(id)}/timeline/`;
  const box = el('div', { class: 'timeline-box', testid: 'trace-timeline', hidden: true });
  let request = 0;
  const button = el('button', {
    type: 'button',
    class: 'small',
    testid: 'trace-timeline-button',
    dataset: { notificationId: id },
    onclick: async () => {
      if (!box.hidden) {
        box.hidden = true;
        button.textContent = `Timeline of notification #${id}`;
        request += 1;
        return;
      }
      box.hidden = false;
      button.textContent = 'Hide the timeline';
      request += 1;
      const mine = request;
      box.dataset.state = 'loading';
      box.replaceChildren(el('p', { class: 'muted' }, 'Loading the timeline…'));
      try {
        const data = await session.api('GET', path);
        if (mine !== request) return;
        box.replaceChildren(timelineView(data, 'trace-timeline-view'));
        box.dataset.state = 'loaded';
      } catch (e) {
        if (mine !== request) return;
        box.replaceChildren(el('p', { class: 'error', role: 'alert' }, timelineError(e, id)));
        box.dataset.state = 'error';
      }
    },
  }, `Timeline of notification #${id}`);
  return el('div', { class: 'trace-notification' }, button, box);
}

// Delivery analytics: per bucket, type and channel, what became of the notifications
// committed in it. Loaded on start and whenever a filter changes, not with every poll.

const ANALYTICS_FIELDS = [
  ['committed', 'Committed'], ['pushed', 'Pushed'], ['delivered', 'Delivered'], ['failed', 'Failed'],
  ['read', 'Read'], ['read_5m', 'Read within 5 min'], ['read_1h', 'Read within 1 h'], ['read_1d', 'Read within 1 day'],
];

/** The request the form asks for: local times as UTC instants, empty fields left out. */
function analyticsQuery() {
  const form = byTestId('analytics-form');
  const p = new URLSearchParams();
  for (const name of ['from', 'to']) {
    const value = form.elements[name].value;
    if (!value) continue;
    const at = new Date(value);
    p.set(name, Number.isNaN(at.getTime()) ? value : at.toISOString());
  }
  const type = form.elements.type.value.trim();
  if (type) p.set('type', type);
  if (form.elements.channel.value) p.set('channel', form.elements.channel.value);
  p.set('bucket', form.elements.bucket.value || 'day');
  return p.toString();
}

function showAnalyticsError(text, status) {
  const box = byTestId('analytics-error');
  box.textContent = text || '';
  box.hidden = !text;
  if (status === undefined) delete box.dataset.status;
  else box.dataset.status = String(status);
}

/** Loads the figures the form asks for; an answer to an older request is dropped. */
async function loadAnalytics(ev) {
  if (ev) ev.preventDefault();
  if (!session.loggedIn) return;
  const a = view.analytics;
  a.request += 1;
  const mine = a.request;
  const query = analyticsQuery();
  const panel = byTestId('analytics-panel');
  panel.dataset.state = 'loading';
  panel.dataset.query = query;
  try {
    const answer = await session.api('GET', `/api/admin/analytics?${query}`);
    if (mine !== a.request) return;
    showAnalyticsError(null);
    renderAnalytics(answer);
    panel.dataset.state = 'loaded';
  } catch (e) {
    if (mine !== a.request || !session.loggedIn) return;
    if (e instanceof ApiError && e.status === 403) {
      logout(`The hub refused: ${e.message}`);
      return;
    }
    panel.dataset.state = 'error';
    const text = !(e instanceof ApiError) ? `Cannot reach the hub: ${e.message}`
      : e.status === 400 ? `The hub cannot answer that: ${e.message}`
        : e.status === 404 ? 'This hub does not serve GET /api/admin/analytics (404); it may be an older version.'
          : `GET /api/admin/analytics failed: ${e.message}`;
    showAnalyticsError(text, e instanceof ApiError ? e.status : 0);
  }
}

/** A bucket's start as people read it: the UTC day, or the UTC day and hour. */
function bucketLabel(iso, bucket) {
  const s = String(iso ?? '');
  return bucket === 'hour' ? `${s.slice(5, 10)} ${s.slice(11, 16)}` : s.slice(0, 10);
}

const seconds = (v) => (typeof v === 'number' ? duration(v) : '–');
const share = (part, whole) => (whole > 0 ? Math.round((part / whole) * 1000) / 10 : null);

function renderAnalytics(answer) {
  const rows = Array.isArray(answer.rows) ? answer.rows : [];
  const bucket = answer.bucket === 'hour' ? 'hour' : 'day';
  byTestId('analytics-range').textContent = answer.from && answer.to
    ? `${answer.from.replace('T', ' ').replace(':00Z', ' UTC')} – ${answer.to.replace('T', ' ').replace(':00Z', ' UTC')}, per ${bucket}`
    : '';
  for (const r of rows) view.analytics.types.add(r.type);
  document.getElementById('analytics-types').replaceChildren(
    ...[...view.analytics.types].sort().map((t) => el('option', { value: t })),
  );
  byTestId('analytics-rows').replaceChildren(...rows.map((r) => analyticsRow(r, bucket)));
  byTestId('analytics-empty').hidden = rows.length > 0;
  byTestId('analytics-charts').replaceChildren(...analyticsCharts(rows, bucket));
}

function analyticsRow(r, bucket) {
  const cell = (field, shown, value = r[field]) => el('td', {
    class: 'num',
    testid: `analytics-${field.replace(/_/g, '-')}`,
    dataset: { value: value ?? '' },
    title: r.time_to_read_approximate && field.startsWith('time_to_read') ? 'approximate: some reads were purged and are known by their histogram bucket' : null,
  }, shown);
  return el('tr', {
    testid: 'analytics-row',
    dataset: { bucket: r.bucket, type: r.type, channel: r.channel, approximate: Boolean(r.time_to_read_approximate) },
  },
  el('td', { testid: 'analytics-bucket', title: r.bucket }, bucketLabel(r.bucket, bucket)),
  el('td', { class: 'mono', testid: 'analytics-type' }, r.type),
  el('td', { testid: 'analytics-channel' }, r.channel === 'websocket' ? 'in-app' : channelName(r.channel)),
  ANALYTICS_FIELDS.map(([field]) => cell(field, num(r[field]))),
  cell('time_to_read_p50_s', `${r.time_to_read_approximate && r.read ? '≈ ' : ''}${seconds(r.time_to_read_p50_s)}`),
  cell('time_to_read_p90_s', `${r.time_to_read_approximate && r.read ? '≈ ' : ''}${seconds(r.time_to_read_p90_s)}`),
  cell('escalations_per_100', r.channel === 'websocket' ? num(r.escalations_per_100) : '–'),
  cell('push_suppressed', num(r.push_suppressed)));
}

/**
 * The charts of the rows shown: volume per bucket (every row shown added up), the share read
 * within 5 min, 1 h and 1 day, and the time to read (median and 90th percentile) per bucket and
 * type. The last two are of the in-app rows (notifications), or of the chosen outbound channel.
 */
function analyticsCharts(rows, bucket) {
  const buckets = [...new Set(rows.map((r) => r.bucket))].sort();
  const inApp = rows.filter((r) => r.channel === 'websocket');
  const reading = inApp.length ? inApp : rows;
  const readingWhat = inApp.length ? 'in-app notifications' : 'deliveries';
  const sum = (list, field) => list.reduce((n, r) => n + (Number(r[field]) || 0), 0);
  const volume = buckets.map((b) => {
    const here = rows.filter((r) => r.bucket === b);
    return {
      label: bucketLabel(b, bucket),
      values: { committed: sum(here, 'committed'), delivered: sum(here, 'delivered'), failed: sum(here, 'failed') },
    };
  });
  const within = buckets.map((b) => {
    const here = reading.filter((r) => r.bucket === b);
    const committed = sum(here, 'committed');
    return {
      label: bucketLabel(b, bucket),
      values: {
        read_5m: share(sum(here, 'read_5m'), committed),
        read_1h: share(sum(here, 'read_1h'), committed),
        read_1d: share(sum(here, 'read_1d'), committed),
      },
    };
  });
  const types = new Set(reading.map((r) => r.type));
  const timing = reading.filter((r) => r.read > 0).map((r) => ({
    label: types.size > 1 ? `${bucketLabel(r.bucket, bucket)} · ${r.type}` : bucketLabel(r.bucket, bucket),
    values: { p50: r.time_to_read_p50_s, p90: r.time_to_read_p90_s },
  }));
  const count = (v) => Number(v).toLocaleString();
  return [
    barChart({
      id: 'analytics-volume',
      title: 'Committed, delivered and failed',
      caption: 'every row shown, added up: pick a channel to see one',
      groups: volume,
      series: [
        { key: 'committed', label: 'Committed' },
        { key: 'delivered', label: 'Delivered' },
        { key: 'failed', label: 'Failed' },
      ],
      format: count,
    }),
    barChart({
      id: 'analytics-read-within',
      title: 'Read within 5 min, 1 h, 1 day',
      caption: `share of the ${readingWhat} committed`,
      groups: within,
      series: [
        { key: 'read_5m', label: '≤ 5 min' },
        { key: 'read_1h', label: '≤ 1 h' },
        { key: 'read_1d', label: '≤ 1 day' },
      ],
      format: (v) => `${v}%`,
      max: 100,
    }),
    barChart({
      id: 'analytics-time-to-read',
      title: 'Time to read',
      caption: `median and 90th percentile of the ${readingWhat} read${rows.some((r) => r.time_to_read_approximate) ? ' (≈: from the rollups of purged rows)' : ''}`,
      groups: timing,
      series: [
        { key: 'p50', label: 'Median' },
        { key: 'p90', label: '90th percentile' },
      ],
      format: seconds,
    }),
  ];
}

// The page starts on the login form, or straight away with a login this tab kept.

async function start() {
  const me = await session.api('GET', '/api/users/me/');
  if (me.role !== 'admin') {
    // The session stays: it is the demo client's too, where this user may carry on.
    showLogin(`Only admins can use the operator page; ${me.username} is a ${me.role}. Log in as an admin, or go back to the demo client at /.`);
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
  loadPeople(true);
  pollSoon();
  loadAnalytics();
  loadOncall();
  clearInterval(view.oncallTimer);
  view.oncallTimer = setInterval(loadOncall, ONCALL_MS);
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
  clearInterval(view.oncallTimer);
  session.logout();
  view.tree = null;
  Object.assign(view.escalations, { rows: null, error: null, signature: '', again: false });
  view.people.clear();
  view.ticketKeys.clear();
  view.ticketsAsked.clear();
  hideEscalationTimeline();
  byTestId('escalation-list').replaceChildren();
  byTestId('trace-result').replaceChildren();
  byTestId('trace-result').hidden = true;
  showTraceError(null);
  view.analytics.request += 1;
  byTestId('analytics-rows').replaceChildren();
  byTestId('analytics-charts').replaceChildren();
  byTestId('analytics-panel').dataset.state = 'idle';
  showAnalyticsError(null);
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
  byTestId('escalations-status').addEventListener('change', (ev) => {
    view.escalations.status = ev.target.value;
    view.escalations.rows = null;
    renderEscalations();
    loadEscalations();
  });
  byTestId('escalations-refresh').addEventListener('click', () => loadEscalations());
  byTestId('oncall-refresh').addEventListener('click', () => loadOncall());
  byTestId('escalation-timeline-close').addEventListener('click', hideEscalationTimeline);
  byTestId('trace-form').addEventListener('submit', runTrace);
  byTestId('analytics-form').addEventListener('submit', loadAnalytics);
  for (const name of ['channel', 'bucket']) {
    byTestId(`analytics-filter-${name}`).addEventListener('change', () => loadAnalytics());
  }
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
