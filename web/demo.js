// The demo client: log in, follow the notifications with the official client, and move
// tickets through their lifecycle with the actions the logged-in role may take.

import { el, byTestId, ApiError, Session, clock, loginForm, timelineView } from '/assets/common.js';
import { Room } from '/assets/rooms.js';
import { TicketHub, TicketHubError, describeClose } from '/assets/tickethub-client.js';

const session = new Session('tickethub.demo');

/** The client following this user's notifications, while logged in. */
let hub = null;

const state = {
  me: null,
  projects: [],
  developers: [],
  names: new Map(),
  tickets: [],
  ticketsSignature: '',
  busy: new Set(),
  assignChoice: new Map(),
  rejectReason: new Map(),
  // The newest notifications are kept by id; unread ones older than those are counted in
  // `unreadElsewhere`, so that the badge matches the hub's count.
  notifications: new Map(),
  unreadElsewhere: 0,
  fresh: new Set(),
  inboxRequest: 0,
  // How the last connection ended, shown until the next one is up.
  closeCode: null,
  closeLabel: '',
  countdownTimer: null,
  ticketTimer: null,
  frames: [],
  // The ticket whose comments are open, if any.
  detail: null,
  // The notification whose timeline is open under its item, if any, and what the hub said.
  timeline: { id: null, data: null, error: null, loading: false, request: 0, timer: null },
};

// The project room: the board moves tickets in place; presence shows who is here.
const room = new Room({
  onTicket: (u) => {
    const t = state.tickets.find((x) => x.id === u.ticket_id);
    if (!t) {
      scheduleTicketRefresh();
      return;
    }
    // The list is newer than this update: drop it.
    if (typeof t.version === 'number' && u.version <= t.version) return;
    Object.assign(t, {
      status: u.status.code,
      title: u.title,
      assignees: u.assignees,
      version: u.version,
      updated_at: u.updated_at,
    });
    renderTickets();
  },
  onComment: (d) => {
    if (state.detail === d.ticket_id) appendComment(d.comment);
  },
  ticketKey: (id) => state.tickets.find((t) => t.id === id)?.key || `#${id}`,
  log: (dir, text) => logEvent(dir, text),
});

// Each role gets the buttons of the actions it may take at a ticket's status.
const ACTIONS = {
  admin: (t) => {
    if (t.status === 'NEW') return ['open_ticket'];
    if (['OPEN', 'ASSIGNED', 'IN_PROGRESS', 'REJECTED'].includes(t.status)) return ['assign'];
    return [];
  },
  developer: (t, me) => {
    if (!t.assignees.includes(me.id)) return [];
    if (['ASSIGNED', 'REJECTED'].includes(t.status)) return ['start_work'];
    if (t.status === 'IN_PROGRESS') return ['finish_work'];
    return [];
  },
  client: (t, me) => (t.status === 'FINISHED' && t.created_by === me.id ? ['approve', 'reject'] : []),
};

const LABELS = {
  open_ticket: 'Open ticket',
  assign: 'Assign',
  start_work: 'Start work',
  finish_work: 'Finish work',
  approve: 'Approve',
  reject: 'Reject',
};

// Logging in starts the page; logging out or an expired session takes it back to the form.

async function start() {
  byTestId('login').hidden = true;
  const me = await session.api('GET', '/api/users/me/');
  state.me = me;
  const who = byTestId('whoami');
  who.textContent = `${me.display_name || me.username} · ${me.role}`;
  who.dataset.role = me.role;
  who.dataset.username = me.username;
  who.hidden = false;
  byTestId('logout').hidden = false;
  byTestId('app').hidden = false;
  byTestId('create-ticket-form').hidden = me.role !== 'client';
  byTestId('mark-all-read').disabled = true;
  await Promise.all([loadProjects(), loadPeople()]);
  await refreshTickets();
  connect();
  await loadRooms();
}

// The project rooms this user may join: their projects (every project for admins).

async function loadRooms() {
  const page = await session.api('GET', '/api/projects/?page_size=100');
  const select = byTestId('room-project');
  select.replaceChildren(...page.results.map((p) => el('option', { value: p.id }, `${p.key} · ${p.name}`)));
  if (page.results.length) room.open(hub, page.results[0].id, state.me);
}

async function showDetail(t) {
  state.detail = t.id;
  room.view(t.id);
  byTestId('ticket-detail').hidden = false;
  byTestId('detail-title').textContent = `${t.key} · ${t.title}`;
  byTestId('comment-list').replaceChildren();
  try {
    const full = await session.api('GET', `/api/tickets/${t.id}/`);
    if (state.detail !== t.id) return;
    for (const c of full.comments || []) appendComment({ ...c, author: c.author_name });
  } catch (e) {
    flash(`Cannot load the comments: ${describe(e)}`, 'error');
  }
  room.render();
}

function hideDetail() {
  state.detail = null;
  byTestId('ticket-detail').hidden = true;
  room.view(null);
}

function appendComment(c) {
  const list = byTestId('comment-list');
  if (list.querySelector(`[data-comment-id="${c.id}"]`)) return;
  list.append(el('li', { testid: 'comment-item', dataset: { commentId: c.id } },
    el('strong', {}, c.author), ' ', el('span', { class: 'muted' }, clock(c.created_at)),
    el('div', {}, c.body)));
}

async function postComment(ev) {
  ev.preventDefault();
  const id = state.detail;
  const input = byTestId('comment-input');
  if (id === null || !input.value.trim()) return;
  try {
    const c = await session.api('POST', `/api/tickets/${id}/comments/`, { body: input.value });
    input.value = '';
    room.stoppedTyping(id);
    appendComment({ ...c, author: c.author_name });
  } catch (e) {
    flash(`Cannot comment: ${describe(e)}`, 'error');
  }
}

function showLogin(message) {
  byTestId('app').hidden = true;
  byTestId('whoami').hidden = true;
  byTestId('logout').hidden = true;
  byTestId('login').hidden = false;
  byTestId('login-error').textContent = message || '';
  byTestId('login-username').focus();
}

function logout(message) {
  disconnect();
  room.close();
  hideDetail();
  session.logout();
  state.me = null;
  state.tickets = [];
  state.ticketsSignature = '';
  state.notifications.clear();
  state.unreadElsewhere = 0;
  state.closeCode = null;
  state.closeLabel = '';
  closeTimeline(false);
  byTestId('ticket-list').replaceChildren();
  renderNotifications();
  setWsState('closed', 'not connected');
  showLogin(message);
}

session.onExpired = () => logout('Your session has expired; please log in again.');

// Outcomes of actions show in a banner above the panels for a few seconds.

let flashTimer = null;

function flash(text, kind = 'ok') {
  const box = byTestId('flash');
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => {
    box.hidden = true;
  }, kind === 'error' ? 8000 : 4000);
}

function describe(e) {
  if (e instanceof TicketHubError) return e.message;
  if (e instanceof ApiError) {
    const status = e.body && e.body.status ? ` (the ticket is ${e.body.status})` : '';
    return `${e.message}${status}`;
  }
  return `Cannot reach the hub: ${e.message}`;
}

// The tickets panel comes from REST, and is loaded again whenever a notification arrives.

async function loadProjects() {
  if (state.me.role !== 'client') return;
  const page = await session.api('GET', '/api/projects/?page_size=100');
  state.projects = page.results;
  const select = byTestId('create-project');
  select.replaceChildren(
    ...state.projects.map((p) => el('option', { value: p.id }, `${p.key} · ${p.name}`)),
  );
  byTestId('create-submit').disabled = state.projects.length === 0;
  if (state.projects.length === 0) flash('You are not a member of any project yet, so you cannot create tickets.', 'error');
}

async function loadPeople() {
  const people = await session.all('/api/users/');
  state.names = new Map(people.map((u) => [u.id, u.display_name || u.username]));
  if (state.me.role === 'admin') {
    state.developers = await session.all('/api/users/?role=developer');
  }
}

async function refreshTickets() {
  if (!state.me) return;
  try {
    const page = await session.api('GET', '/api/tickets/?page_size=100');
    state.tickets = page.results;
    byTestId('ticket-count').textContent =
      page.count > page.results.length ? `${page.results.length} of ${page.count}` : `${page.count}`;
    renderTickets();
  } catch (e) {
    flash(`Cannot load tickets: ${describe(e)}`, 'error');
  }
}

/** Refreshes the ticket list soon, once for a burst of notifications. */
function scheduleTicketRefresh() {
  clearTimeout(state.ticketTimer);
  state.ticketTimer = setTimeout(refreshTickets, 150);
}

function renderTickets() {
  const signature = JSON.stringify([state.tickets, [...state.busy], state.developers.length]);
  if (signature === state.ticketsSignature) return;
  state.ticketsSignature = signature;
  const focused = document.activeElement && document.activeElement.closest('[data-testid="ticket-row"]')
    ? { id: document.activeElement.closest('[data-testid="ticket-row"]').dataset.ticketId, testid: document.activeElement.dataset.testid }
    : null;
  const rows = state.tickets.map(ticketRow);
  byTestId('ticket-list').replaceChildren(...rows);
  byTestId('tickets-empty').hidden = rows.length > 0;
  if (focused) {
    const again = document.querySelector(`[data-testid="ticket-row"][data-ticket-id="${focused.id}"] [data-testid="${focused.testid}"]`);
    if (again) again.focus();
  }
}

function ticketRow(t) {
  const actions = (ACTIONS[state.me.role] || (() => []))(t, state.me);
  const busy = state.busy.has(t.id);
  const cells = [];
  for (const action of actions) {
    if (action === 'assign') {
      const select = el('select', {
        testid: 'assign-developer',
        'aria-label': `Developer for ${t.key}`,
        onchange: (ev) => state.assignChoice.set(t.id, ev.target.value),
      });
      const current = state.assignChoice.get(t.id) ?? String(t.assignees[0] ?? state.developers[0]?.id ?? '');
      for (const d of state.developers) {
        select.append(el('option', { value: d.id, selected: String(d.id) === current }, d.display_name || d.username));
      }
      if (state.developers.length === 0) select.append(el('option', { value: '' }, 'no developers'));
      cells.push(select);
    }
    if (action === 'reject') {
      cells.push(el('input', {
        testid: 'reject-reason',
        placeholder: 'reason',
        'aria-label': `Reason to reject ${t.key}`,
        value: state.rejectReason.get(t.id) || '',
        oninput: (ev) => state.rejectReason.set(t.id, ev.target.value),
      }));
    }
    cells.push(el('button', {
      type: 'button',
      class: `small${action === 'reject' ? ' danger' : action === 'assign' && t.assignees.length ? '' : ' primary'}`,
      testid: `action-${action}`,
      disabled: busy || (action === 'assign' && state.developers.length === 0),
      onclick: () => act(t, action),
    }, action === 'assign' && t.assignees.length ? 'Reassign' : LABELS[action]));
  }
  const assignees = t.assignees.map((id) => state.names.get(id) || `#${id}`);
  return el('tr', { testid: 'ticket-row', dataset: { ticketId: t.id, key: t.key, status: t.status } },
    el('td', { class: 'mono key', testid: 'ticket-key' }, t.key),
    el('td', { class: 'title' },
      el('div', { testid: 'ticket-title' }, t.title),
      el('div', { class: 'muted' },
        `by ${t.created_by_name || state.names.get(t.created_by) || `#${t.created_by}`}`,
        assignees.length ? ` · assigned to ${assignees.join(', ')}` : '')),
    el('td', {}, el('span', { class: 'status', testid: 'ticket-status', dataset: { status: t.status } }, t.status)),
    el('td', { class: 'muted' }, t.priority_display || t.priority),
    el('td', { class: 'actions' },
      ...(cells.length ? cells : [el('span', { class: 'muted' }, '–')]),
      el('button', {
        type: 'button',
        class: 'small',
        testid: 'action-view',
        onclick: () => showDetail(t),
      }, 'View')),
  );
}

async function act(ticket, action) {
  let body = {};
  if (action === 'assign') {
    const id = Number(state.assignChoice.get(ticket.id) ?? ticket.assignees[0] ?? state.developers[0]?.id);
    body = { developer_ids: [id] };
  } else if (action === 'reject') {
    body = { reason: state.rejectReason.get(ticket.id) || '' };
  }
  state.busy.add(ticket.id);
  renderTickets();
  try {
    const updated = await session.api('POST', `/api/tickets/${ticket.id}/${action}/`, body);
    flash(`${updated.key}: ${LABELS[action].toLowerCase()} → ${updated.status}`);
    state.assignChoice.delete(ticket.id);
    state.rejectReason.delete(ticket.id);
  } catch (e) {
    flash(`${ticket.key}: ${describe(e)}`, 'error');
  } finally {
    state.busy.delete(ticket.id);
    await refreshTickets();
    renderTickets();
  }
}

async function createTicket(ev) {
  ev.preventDefault();
  const form = ev.target;
  const submit = byTestId('create-submit');
  submit.disabled = true;
  try {
    const ticket = await session.api('POST', '/api/tickets/', {
      project: Number(form.elements.project.value),
      title: form.elements.title.value,
      description: form.elements.description.value,
      priority: form.elements.priority.value,
    });
    form.elements.title.value = '';
    form.elements.description.value = '';
    flash(`Created ${ticket.key}.`);
    await refreshTickets();
  } catch (e) {
    flash(`Cannot create the ticket: ${describe(e)}`, 'error');
  } finally {
    submit.disabled = state.projects.length === 0;
  }
}

// The notifications come through the official client (/assets/tickethub-client.js). It opens
// `/ws/notifications/` with the token as the subprotocol pair `tickethub.v1, bearer.<JWT>` (so
// the token is in no URL and no log), falls back to the event stream `/sse/notifications/` when
// a WebSocket cannot be opened, reconnects with backoff, resumes after the last seq it has
// (`?last_seq=`, or `Last-Event-ID` on the stream), hands each notification over once and in
// order, acknowledges what it delivered, and renews the token when the hub says it runs out.

function setWsState(name, text, code) {
  const pill = byTestId('ws-state');
  pill.dataset.state = name;
  if (code === undefined) delete pill.dataset.closeCode;
  else pill.dataset.closeCode = String(code);
  pill.textContent = text;
}

/** Seconds until the JWT `jwt` expires; -1 when it cannot be read. */
function secondsLeft(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const { exp } = JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, '=')));
    return typeof exp === 'number' ? exp - Date.now() / 1000 : -1;
  } catch {
    return -1;
  }
}

/**
 * The client's token source: the session's token for a new connection while it has time left;
 * a renewed one when the hub refused the last one (4001), said it runs out, or it nearly has.
 */
async function token({ reason }) {
  if (reason === 'connect' && session.access && secondsLeft(session.access) > 35) return session.access;
  const access = await session.renew();
  if (!access) throw new Error('the session has ended');
  return access;
}

function connect() {
  if (!session.loggedIn || hub) return;
  hub = new TicketHub({ url: location.origin, token });
  hub.on('state', onState);
  hub.on('disconnect', onDisconnect);
  hub.on('retry', onRetry);
  hub.on('notification', onNotification);
  hub.on('replayed', (r) => {
    logEvent('←', `replay complete: ${r.count} replayed, resuming after seq ${r.lastSeq}`);
    // The inbox may have changed while this page was away: load it again.
    loadInbox();
    scheduleTicketRefresh();
  });
  hub.on('truncated', (t) => {
    logEvent('←', `replay truncated: ${t.remaining} older`);
    flash(`${t.remaining} older notifications were not replayed; the list below shows the newest.`);
  });
  hub.on('inbox', onInbox);
  hub.on('renewed', () => logEvent('→', 'token renewed on the socket'));
  hub.on('error', (e) => {
    logEvent('←', `error ${e.code}: ${e.message}`);
    if (e.code === 'token' && !session.loggedIn) return;
    flash(`The hub says: ${e.message} (${e.code})`, 'error');
  });
  hub.connect().catch(() => {});
}

function disconnect() {
  clearInterval(state.countdownTimer);
  const h = hub;
  hub = null;
  if (h) h.close();
}

function onState({ state: now, transport }) {
  logEvent('·', `${now}${transport ? ` (${transport})` : ''}`);
  byTestId('mark-all-read').disabled = now !== 'connected';
  if (now === 'connected') {
    clearInterval(state.countdownTimer);
    setWsState('connected', transport === 'sse' ? 'connected · event stream' : 'connected');
  } else if (now === 'connecting') {
    setWsState('connecting', 'connecting…');
  } else if (now === 'closed') {
    clearInterval(state.countdownTimer);
    setWsState('closed', state.closeLabel || 'not connected', state.closeCode ?? undefined);
  }
}

function onDisconnect({ code, reason, willReconnect }) {
  state.closeCode = code;
  state.closeLabel = `closed (${code}${reason ? `: ${reason}` : ''})`;
  logEvent('←', `${state.closeLabel}${willReconnect ? '' : ', for good'}`);
  // 4001: the token was refused or ran out; the client asks for a renewed one.
  setWsState('closed', code === 4001 ? `${state.closeLabel} · renewing the login…` : state.closeLabel, code);
  if (!willReconnect) flash(`The hub closed the connection: ${describeClose(code)} (${code})`, 'error');
}

/** The client waits `delay` ms before its next try: count down, then show the resume point. */
function onRetry({ delay }) {
  clearInterval(state.countdownTimer);
  const until = Date.now() + delay;
  const label = state.closeLabel || 'cannot connect';
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left > 0) {
      setWsState('closed', `${label} · reconnecting in ${left} s`, state.closeCode ?? undefined);
      return;
    }
    clearInterval(state.countdownTimer);
    const seq = hub?.lastSeq;
    setWsState('connecting', seq === null || seq === undefined ? 'reconnecting…' : `reconnecting from seq ${seq}…`);
  };
  tick();
  state.countdownTimer = setInterval(tick, 250);
}

function logEvent(direction, text) {
  state.frames.push(`${new Date().toLocaleTimeString()} ${direction} ${text}`);
  if (state.frames.length > 80) state.frames.splice(0, state.frames.length - 80);
  byTestId('frame-log').textContent = state.frames.slice().reverse().join('\n');
}

function onNotification(n) {
  logEvent('←', `notification #${n.seq} ${n.notification_type}${n.replayed ? ' (replayed)' : ''}: ${n.title}`);
  if (!n.replayed) state.fresh.add(n.id);
  state.notifications.set(n.id, n);
  renderNotifications();
  scheduleTicketRefresh();
}

/** A notification as the REST API lists it, in the shape the socket sends. */
function fromRest(n) {
  return {
    id: n.id,
    seq: n.seq,
    notification_type: n.notification_type,
    title: n.title,
    message: n.message,
    ticket: n.ticket === null || n.ticket === undefined ? null : { id: n.ticket, key: n.ticket_key, title: n.ticket_title },
    data: n.data,
    action_url: n.action_url,
    is_read: n.is_read,
    timestamp: n.created_at,
    replayed: true,
  };
}

/**
 * Loads the newest notifications and every unread one (up to 100) over REST; unread ones
 * beyond those are counted in `unreadElsewhere`, so that the badge matches the hub's count.
 */
async function loadInbox() {
  const h = hub;
  if (!h) return;
  state.inboxRequest += 1;
  const request = state.inboxRequest;
  try {
    const [recent, unread] = await Promise.all([h.list({ page_size: 50 }), h.list({ is_read: false, page_size: 100 })]);
    if (request !== state.inboxRequest || h !== hub) return;
    const listed = new Map();
    for (const n of [...unread.results, ...recent.results]) listed.set(n.id, fromRest(n));
    const newest = Math.max(-1, ...[...listed.values()].map((n) => n.seq ?? -1));
    // Keep notifications that arrived after the lists were taken.
    for (const [id, n] of state.notifications) {
      if (!listed.has(id) && (n.seq ?? -1) > newest) listed.set(id, n);
    }
    state.notifications = listed;
    state.unreadElsewhere = Math.max(0, unread.count - unread.results.length);
    renderNotifications();
  } catch (e) {
    if (request === state.inboxRequest && h === hub) flash(`Cannot load the notifications: ${describe(e)}`, 'error');
  }
}

/** The inbox changed, here or on another device of the same user. */
function onInbox(e) {
  logEvent('←', `inbox ${e.type}${e.id === undefined ? '' : ` #${e.id}`}`);
  switch (e.type) {
    case 'read':
    case 'unread': {
      const n = state.notifications.get(e.id);
      const read = e.type === 'read';
      if (n) {
        n.is_read = read;
        refreshTimelineSoon(e.id);
      } else {
        state.unreadElsewhere = Math.max(0, state.unreadElsewhere + (read ? -1 : 1));
      }
      break;
    }
    case 'deleted':
      state.notifications.delete(e.id);
      if (e.id === state.timeline.id) closeTimeline(false);
      break;
    case 'cleared':
      state.notifications.clear();
      state.unreadElsewhere = 0;
      closeTimeline(false);
      break;
    case 'all_read':
      if (e.notification_type || e.ticket) {
        for (const n of state.notifications.values()) {
          if ((!e.notification_type || n.notification_type === e.notification_type) && (!e.ticket || n.ticket?.id === e.ticket)) n.is_read = true;
        }
        // Which of the unlisted ones matched is the hub's to say.
        loadInbox();
      } else {
        for (const n of state.notifications.values()) n.is_read = true;
        state.unreadElsewhere = 0;
      }
      refreshTimelineSoon(state.timeline.id);
      break;
    default:
      break;
  }
  renderNotifications();
}

async function markRead(id) {
  try {
    await hub.markRead(id);
    const n = state.notifications.get(id);
    if (n && !n.is_read) {
      n.is_read = true;
      renderNotifications();
    }
    refreshTimelineSoon(id);
  } catch (e) {
    flash(e instanceof TicketHubError && e.code === '404' ? `Notification ${id} is gone.` : `Cannot mark it as read: ${describe(e)}`, 'error');
  }
}

async function markAllRead() {
  // Those shown now were committed before the request, so the hub marks them all.
  const shown = [...state.notifications.values()];
  try {
    await hub.markAllRead();
    for (const n of shown) n.is_read = true;
    state.unreadElsewhere = 0;
    refreshTimelineSoon(state.timeline.id);
    renderNotifications();
  } catch (e) {
    flash(`Cannot mark everything as read: ${describe(e)}`, 'error');
  }
}

function unreadCount() {
  let n = state.unreadElsewhere;
  for (const x of state.notifications.values()) if (!x.is_read) n += 1;
  return n;
}

function renderNotifications() {
  const sorted = [...state.notifications.values()].sort((a, b) => (b.seq ?? b.id) - (a.seq ?? a.id));
  const items = sorted.slice(0, 100).map(notificationItem);
  state.fresh.clear();
  // The list is rebuilt; keep the keyboard focus on the same item or button.
  const active = document.activeElement;
  const item = active && active.closest ? active.closest('[data-testid="notification-item"]') : null;
  const focused = item ? { id: item.dataset.notificationId, testid: active === item ? null : active.dataset.testid } : null;
  byTestId('notification-list').replaceChildren(...items);
  if (focused) {
    const again = document.querySelector(`[data-testid="notification-item"][data-notification-id="${CSS.escape(focused.id)}"]`);
    const target = again && focused.testid ? again.querySelector(`[data-testid="${CSS.escape(focused.testid)}"]`) : again;
    if (target) target.focus({ preventScroll: true });
  }
  byTestId('notifications-empty').hidden = items.length > 0;
  const unread = unreadCount();
  const badge = byTestId('unread-badge');
  badge.textContent = String(unread);
  badge.dataset.count = String(unread);
  document.title = unread ? `(${unread}) tickethub` : 'tickethub';
}

function notificationItem(n) {
  const open = state.timeline.id === n.id;
  return el('li', {
    class: `notification${state.fresh.has(n.id) ? ' fresh' : ''}`,
    testid: 'notification-item',
    dataset: { notificationId: n.id, type: n.notification_type, read: n.is_read, seq: n.seq ?? '', expanded: open },
    onclick: (ev) => {
      // Its buttons and its open timeline keep their own clicks.
      if (ev.target.closest('button, a, input, select, textarea, .timeline-box')) return;
      toggleTimeline(n.id);
    },
  },
  el('div', { class: 'meta' },
    el('span', { class: 'chip', testid: 'notification-type' }, n.notification_type),
    n.ticket ? el('span', { class: 'chip' }, n.ticket.key) : null,
    el('span', {}, clock(n.timestamp)),
    el('span', {}, `#${n.seq ?? '–'}`)),
  el('div', { class: 'title', testid: 'notification-title' }, n.title),
  el('div', { class: 'message', testid: 'notification-message' }, n.message),
  el('div', { class: 'side' },
    n.is_read
      ? el('span', { class: 'muted' }, 'read')
      : el('button', {
        type: 'button',
        class: 'small',
        testid: 'mark-read',
        onclick: () => markRead(n.id),
      }, 'Mark as read'),
    el('button', {
      type: 'button',
      class: 'small',
      testid: 'timeline-toggle',
      'aria-expanded': String(open),
      title: 'What happened to this notification (or click the notification)',
      onclick: () => toggleTimeline(n.id),
    }, open ? 'Hide timeline' : 'Timeline')),
  open ? timelineBox() : null,
  );
}

// Clicking a notification opens its timeline under it: what the hub recorded about it, from
// the commit to the pushes, reads, deliveries and escalation steps. It is loaded again when
// the notification changes.

function timelineBox() {
  const t = state.timeline;
  let body;
  if (t.error) body = el('p', { class: 'error', testid: 'timeline-error', role: 'alert' }, t.error);
  else if (t.data) body = timelineView(t.data, 'timeline');
  else body = el('p', { class: 'muted' }, 'Loading the timeline…');
  return el('div', {
    class: 'timeline-box',
    testid: 'timeline-panel',
    dataset: { notificationId: t.id, state: t.error ? 'error' : t.data ? 'loaded' : 'loading', loading: t.loading },
  },
  el('div', { class: 'panel-head' },
    el('h3', {}, 'Timeline'),
    t.loading ? el('span', { class: 'muted' }, 'updating…') : null,
    el('span', { class: 'spacer' }),
    el('button', { type: 'button', class: 'small', testid: 'timeline-refresh', onclick: () => loadTimeline() }, 'Refresh'),
    el('button', { type: 'button', class: 'small', testid: 'timeline-close', onclick: () => closeTimeline() }, 'Hide')),
  body);
}

function toggleTimeline(id) {
  if (state.timeline.id === id) {
    closeTimeline();
    return;
  }
  clearTimeout(state.timeline.timer);
  Object.assign(state.timeline, { id, data: null, error: null });
  loadTimeline();
}

function closeTimeline(render = true) {
  clearTimeout(state.timeline.timer);
  state.timeline.request += 1;
  Object.assign(state.timeline, { id: null, data: null, error: null, loading: false });
  if (render) renderNotifications();
}

async function loadTimeline() {
  const t = state.timeline;
  const id = t.id;
  if (id === null) return;
  clearTimeout(t.timer);
  t.request += 1;
  const request = t.request;
  t.loading = true;
  renderNotifications();
  try {
    const data = await session.api('GET', `/api/notifications/${encodeURIComponent(id)}/timeline/`);
    if (request !== t.request) return;
    t.data = data;
    t.error = null;
  } catch (e) {
    if (request !== t.request) return;
    t.error = e instanceof ApiError && e.status === 404
      ? 'This notification is gone, or its timeline is not available to you.'
      : `Cannot load the timeline: ${describe(e)}`;
  }
  t.loading = false;
  renderNotifications();
}

/** Loads the open timeline again shortly, if it is `id`'s. */
function refreshTimelineSoon(id) {
  if (id === null || id === undefined || id !== state.timeline.id) return;
  clearTimeout(state.timeline.timer);
  state.timeline.timer = setTimeout(loadTimeline, 200);
}

// The buttons and forms are wired once the document is parsed.

document.addEventListener('DOMContentLoaded', () => {
  loginForm(session, start);
  byTestId('logout').addEventListener('click', () => logout());
  byTestId('create-ticket-form').addEventListener('submit', createTicket);
  byTestId('tickets-reload').addEventListener('click', refreshTickets);
  byTestId('mark-all-read').addEventListener('click', markAllRead);
  byTestId('room-project').addEventListener('change', (ev) => room.open(hub, Number(ev.target.value), state.me));
  byTestId('detail-close').addEventListener('click', hideDetail);
  byTestId('comment-form').addEventListener('submit', postComment);
  byTestId('comment-input').addEventListener('input', () => {
    if (state.detail !== null) room.typed(state.detail);
  });
  if (session.loggedIn) {
    start().catch((e) => logout(e instanceof ApiError && e.status === 401 ? '' : describe(e)));
  } else {
    showLogin();
  }
});
