// The ticket workspace: log in (or sign up), find tickets, open one at its own address
// (`#/tickets/DEMO-3`) with its description, history, comments and the actions the user may
// take, follow the notifications with the official client (and, with browser notifications on,
// through the service worker `/sw.js` while the page is closed), and see who else is here.

import {
  el, byTestId, ApiError, Session, loginForm, markdownNodes, peopleTimelineView, when, exact, setTimeZone, refreshTimes,
  statusName, priorityName, categoryName, eventName,
} from '/assets/common.js';
import { Room } from '/assets/rooms.js';
import { Files } from '/assets/attachments.js';
import { InvitePanel, JoinPanel, inviteToken } from '/assets/join.js';
import { TicketHub, TicketHubError, describeClose } from '/assets/tickethub-client.js';

// The same key as the operator page's: logging in on one logs in on the other.
const session = new Session('tickethub');

/** The client following this user's notifications, while logged in. */
let hub = null;

const PAGE_SIZE = 20;
const NARROW = window.matchMedia('(max-width: 760px)');

/** The list's default query: what an empty `#/` shows. */
const DEFAULT_QUERY = { search: '', status: '', priority: '', project: '', mine: false, ordering: '-created_at', page: 1 };

const state = {
  me: null,
  projects: [],
  developers: [],
  // Everyone this user may see, by id: `{ display_name, username }`.
  people: new Map(),
  tickets: [],
  count: 0,
  query: { ...DEFAULT_QUERY },
  listRequest: 0,
  ticketsSignature: '',
  busy: new Set(),
  assignChoice: new Map(),
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
  // The ticket open in the ticket view, if any: its id and what the hub said about it.
  detail: null,
  // The ticket whose fields are being edited, if any.
  editing: null,
  // The notification the phone's banner shows, and when the banner goes.
  bannerFor: null,
  bannerTimer: null,
  ticket: null,
  history: [],
  detailRequest: 0,
  // Where "All tickets" goes back to: the list as it was last shown.
  listHash: '#/',
  // The notification whose delivery details are open under its item, if any.
  timeline: { id: null, data: null, error: null, loading: false, request: 0, timer: null },
};

/** The open ticket's files. */
const files = new Files({ session, me: () => state.me, ask, flash, describe });

/** "Ask to join a project", for someone in no project. */
let joinPanel = null;

/** An invitation's link (`#/invite/<token>`), shown in place of the login. */
let invitePanel = null;

// The project room: the board moves tickets in place; presence shows who is here.
const room = new Room({
  onTicket: (u) => {
    const fields = {
      status: u.status.code,
      title: u.title,
      assignees: u.assignees,
      version: u.version,
      updated_at: u.updated_at,
      ...(u.priority ? { priority: u.priority } : {}),
    };
    const t = state.tickets.find((x) => x.id === u.ticket_id);
    if (t && !(typeof t.version === 'number' && u.version <= t.version)) {
      Object.assign(t, fields);
      renderTickets();
    } else if (!t) {
      scheduleTicketRefresh();
    }
    const open = state.ticket;
    if (open && open.id === u.ticket_id && !(typeof open.version === 'number' && u.version <= open.version)) {
      Object.assign(open, fields);
      renderTicketView();
      // An edit changes what the frame does not carry (the description, the category).
      if (u.action === 'updated') reloadTicket();
      else loadHistory(open.id);
    }
  },
  onComment: (d) => {
    if (state.detail === d.ticket_id) {
      showComment({ ...d.comment, author: d.comment.author_id ?? null, author_name: d.comment.author });
    }
  },
  // Someone attached or deleted a file of the open ticket: its files again (each viewer's
  // links are signed for them, so the frame carries none).
  onFiles: async (d) => {
    if (state.detail !== d.ticket_id) return;
    try {
      const list = await session.api('GET', `/api/tickets/${d.ticket_id}/attachments/`);
      if (state.ticket?.id !== d.ticket_id) return;
      state.ticket.attachments = list;
      files.show(state.ticket);
    } catch {
      // The next load of the ticket shows them.
    }
  },
  ticketKey: (id) => state.tickets.find((t) => t.id === id)?.key || (state.ticket?.id === id ? state.ticket.key : `#${id}`),
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

// People are named one way everywhere: their display name, with the username on hover.

function nameOf(id, fallback) {
  const p = state.people.get(id);
  return p ? p.display_name || p.username : fallback || (id === null || id === undefined ? 'Someone' : `User ${id}`);
}

function person(id, fallback) {
  const p = state.people.get(id);
  return el('span', { class: 'person', title: p ? p.username : undefined }, nameOf(id, fallback));
}

function names(ids) {
  const list = ids.map((id) => nameOf(id));
  if (list.length <= 1) return list.join('');
  return `${list.slice(0, -1).join(', ')} and ${list.at(-1)}`;
}

function statusPill(status, testid = 'ticket-status') {
  return el('span', { class: 'status', testid, dataset: { status } }, statusName(status));
}

function priorityTag(priority, testid = 'ticket-priority') {
  return el('span', { class: 'priority', testid, dataset: { priority } },
    priority === 'CRITICAL' ? el('span', { 'aria-hidden': 'true' }, '▲ ') : null,
    priorityName(priority));
}

// Logging in starts the page; logging out or an expired session takes it back to the form.

async function start() {
  // An invitation open on this tab stays in front of the workspace.
  byTestId('login').hidden = !invitePanel.shown;
  const me = await session.api('GET', '/api/users/me/');
  state.me = me;
  setTimeZone(me.time_zone);
  const who = byTestId('whoami');
  who.textContent = `${me.display_name || me.username} · ${me.role}`;
  who.title = me.username;
  who.dataset.role = me.role;
  who.dataset.username = me.username;
  who.hidden = false;
  byTestId('logout').hidden = false;
  byTestId('bell').hidden = false;
  byTestId('manage-link').hidden = me.role !== 'admin';
  byTestId('app').hidden = invitePanel.shown;
  invitePanel.signedInAs(me.display_name || me.username);
  byTestId('create-ticket-form').hidden = me.role !== 'client';
  byTestId('create-details').hidden = me.role !== 'client';
  // On a phone the form waits behind its summary, so that the tickets come first.
  byTestId('create-details').open = !NARROW.matches;
  byTestId('find-mine-label').hidden = me.role === 'client';
  byTestId('mark-all-read').disabled = true;
  checkPush();
  await Promise.all([loadProjects(), loadPeople()]);
  // Someone in no project has nothing to see yet: they ask to join one.
  joinPanel.show(me.role !== 'admin' && state.projects.length === 0);
  await route();
  connect();
  await loadRooms();
}

// The project rooms this user may join: their projects (every project for admins).

async function loadRooms() {
  const select = byTestId('room-project');
  select.replaceChildren(...state.projects.map((p) => el('option', { value: p.id }, `${p.key} · ${p.name}`)));
  const wanted = state.ticket && state.projects.some((p) => p.id === state.ticket.project) ? state.ticket.project : state.projects[0]?.id;
  if (wanted !== undefined) {
    select.value = String(wanted);
    room.open(hub, wanted, state.me);
    if (state.detail !== null) room.view(state.detail);
  }
}

/** Joins the room of the ticket's project, when it is not the one joined. */
function followRoom(t) {
  if (!hub || !t || room.project === t.project) return;
  if (!state.projects.some((p) => p.id === t.project)) return;
  byTestId('room-project').value = String(t.project);
  room.open(hub, t.project, state.me);
}

function showLogin(message) {
  clearTimeout(flashTimer);
  byTestId('flash').hidden = true;
  byTestId('app').hidden = true;
  byTestId('whoami').hidden = true;
  byTestId('logout').hidden = true;
  byTestId('bell').hidden = true;
  byTestId('manage-link').hidden = true;
  invitePanel.hide();
  byTestId('login').hidden = false;
  byTestId('login-panel').hidden = false;
  byTestId('signup').hidden = true;
  byTestId('login-error').textContent = message || '';
  byTestId('login-username').focus();
  offerSignup();
}

/** Offers sign-up only where the hub takes it (`GET /api/auth/registration/`). */
async function offerSignup() {
  let open = false;
  try {
    const res = await fetch('/api/auth/registration/', { headers: { Accept: 'application/json' } });
    open = res.ok && (await res.json()).open === true;
  } catch {
    // A hub that cannot be reached takes no sign-ups either.
  }
  const offer = byTestId('signup-offer');
  offer.hidden = !open;
  offer.dataset.checked = 'true';
}

/** Ends the session here; `show` is false where something else takes the screen (an
 * invitation). */
function logout(message, show = true) {
  disconnect();
  room.close();
  session.logout();
  state.me = null;
  state.tickets = [];
  state.ticketsSignature = '';
  state.detail = null;
  state.ticket = null;
  state.notifications.clear();
  state.unreadElsewhere = 0;
  state.closeCode = null;
  state.closeLabel = '';
  closeTimeline(false);
  resetPush();
  joinPanel.show(false);
  byTestId('ticket-list').replaceChildren();
  renderNotifications();
  setWsState('closed', 'Offline');
  byTestId('app').hidden = true;
  byTestId('whoami').hidden = true;
  byTestId('logout').hidden = true;
  byTestId('bell').hidden = true;
  byTestId('manage-link').hidden = true;
  if (show) showLogin(message);
}

session.onExpired = () => {
  if (invitePanel.shown) {
    logout('', false);
    invitePanel.signedInAs(null);
  } else {
    logout('Your session has expired; please log in again.');
  }
};

/** Logging out by hand also stops this browser's pushes for the user: on a shared computer
 * the next person must not see them. */
async function signOut() {
  const me = state.me;
  const saved = me && savedDevice(me);
  if (saved) {
    try {
      await session.api('DELETE', `/api/devices/${encodeURIComponent(saved.id)}/`);
    } catch {
      // Gone already, or the hub is unreachable: the device is pruned when a push finds it gone.
    }
    forgetDevice(me);
    try {
      const subscription = await currentSubscription();
      if (subscription) await subscription.unsubscribe();
    } catch {
      // The browser keeps no subscription the hub still sends to.
    }
  }
  logout();
}

// Signing up makes a client account, then logs in with it.

function showSignup(show) {
  byTestId('login-panel').hidden = show;
  byTestId('signup').hidden = !show;
  byTestId('signup-error').textContent = '';
  byTestId(show ? 'signup-username' : 'login-username').focus();
}

async function signUp(ev) {
  ev.preventDefault();
  const form = ev.target;
  const error = byTestId('signup-error');
  const submit = byTestId('signup-submit');
  error.textContent = '';
  submit.disabled = true;
  const value = (name) => form.elements[name].value.trim();
  const body = { username: value('username'), password: form.elements.password.value };
  if (value('display_name')) body.display_name = value('display_name');
  if (value('email')) body.email = value('email');
  try {
    const res = await fetch('/api/auth/register/', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      if (res.status === 403) {
        error.textContent = 'Sign-up is closed on this hub. Ask an admin to create an account for you.';
      } else if (res.status === 429) {
        error.textContent = 'Too many sign-ups from here just now. Try again in a while.';
      } else {
        error.textContent = data?.detail || `The hub refused the sign-up (${res.status}).`;
      }
      return;
    }
    await session.login(body.username, body.password);
    form.reset();
    await start();
    flash(`Welcome, ${body.display_name || body.username}. Ask to join a project with its key, or wait for an admin to add you to one.`);
  } catch (e) {
    error.textContent = e instanceof ApiError ? e.message : `Cannot reach the hub: ${e.message}`;
  } finally {
    submit.disabled = false;
  }
}

// Outcomes of actions show in a toast at the bottom of the screen, in view wherever the
// action was taken.

let flashTimer = null;

function flash(text, kind = 'ok') {
  const box = byTestId('flash');
  box.setAttribute('role', kind === 'error' ? 'alert' : 'status');
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
    // A conflict names the ticket's status as the hub stores it: say it in words instead.
    if (e.status === 409 && e.body && e.body.status) return `it is ${statusName(e.body.status).toLowerCase()} now, so this no longer applies.`;
    return e.message;
  }
  return `Cannot reach the hub: ${e.message}`;
}

// A small dialog asks before anything that cannot be undone, and for a reason when one is
// needed. It resolves to null when cancelled.

function ask({ title, message, confirm, danger = false, field = null }) {
  const dialog = byTestId('dialog');
  const input = byTestId('dialog-input');
  const error = byTestId('dialog-error');
  const opener = document.activeElement;
  byTestId('dialog-title').textContent = title;
  byTestId('dialog-message').textContent = message;
  byTestId('dialog-field').hidden = !field;
  byTestId('dialog-label').textContent = field ? field.label : '';
  input.value = '';
  input.required = Boolean(field);
  input.removeAttribute('aria-invalid');
  error.textContent = '';
  const ok = byTestId('dialog-confirm');
  ok.textContent = confirm;
  ok.className = danger ? 'danger-solid' : 'primary';
  return new Promise((resolve) => {
    const form = byTestId('dialog-form');
    const onSubmit = (ev) => {
      ev.preventDefault();
      if (field && !input.value.trim()) {
        error.textContent = field.missing;
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      dialog.close('confirm');
    };
    const onCancel = () => dialog.close('cancel');
    const onClose = () => {
      form.removeEventListener('submit', onSubmit);
      byTestId('dialog-cancel').removeEventListener('click', onCancel);
      dialog.removeEventListener('close', onClose);
      if (opener && opener.isConnected && opener.focus) opener.focus();
      resolve(dialog.returnValue === 'confirm' ? { value: input.value.trim() } : null);
    };
    form.addEventListener('submit', onSubmit);
    byTestId('dialog-cancel').addEventListener('click', onCancel);
    dialog.addEventListener('close', onClose);
    dialog.returnValue = '';
    dialog.showModal();
    (field ? input : byTestId('dialog-cancel')).focus();
  });
}

// Routes: `#/` (with `?search=&status=&priority=&project=&mine=1&ordering=&page=`) is the
// list, `#/tickets/<key or id>` one ticket. Back, forward and reload follow the address.

function parseRoute() {
  const hash = location.hash.replace(/^#/, '');
  const m = /^\/tickets\/([^/?#]+)\/?$/.exec(hash);
  if (m) return { view: 'ticket', ref: decodeURIComponent(m[1]) };
  const params = new URLSearchParams(hash.split('?')[1] || '');
  const page = Number.parseInt(params.get('page') || '1', 10);
  return {
    view: 'list',
    query: {
      search: params.get('search') || '',
      status: params.get('status') || '',
      priority: params.get('priority') || '',
      project: params.get('project') || '',
      mine: params.get('mine') === '1',
      ordering: params.get('ordering') || DEFAULT_QUERY.ordering,
      page: Number.isFinite(page) && page > 0 ? page : 1,
    },
  };
}

function queryHash(q) {
  const params = new URLSearchParams();
  if (q.search) params.set('search', q.search);
  if (q.status) params.set('status', q.status);
  if (q.priority) params.set('priority', q.priority);
  if (q.project) params.set('project', q.project);
  if (q.mine) params.set('mine', '1');
  if (q.ordering && q.ordering !== DEFAULT_QUERY.ordering) params.set('ordering', q.ordering);
  if (q.page > 1) params.set('page', String(q.page));
  const text = params.toString();
  return text ? `#/?${text}` : '#/';
}

function ticketHash(t) {
  return `#/tickets/${encodeURIComponent(t.key)}`;
}

async function route() {
  if (!state.me || inviteToken()) return;
  const r = parseRoute();
  if (r.view === 'ticket') {
    byTestId('tickets-panel').hidden = true;
    byTestId('ticket-view').hidden = false;
    await openTicket(r.ref);
  } else {
    closeTicket();
    state.listHash = queryHash(r.query);
    byTestId('back-to-list').setAttribute('href', state.listHash);
    byTestId('ticket-view').hidden = true;
    byTestId('tickets-panel').hidden = false;
    state.query = r.query;
    fillFindForm();
    await refreshTickets();
  }
}

function go(hash) {
  if (location.hash === hash || (hash === '#/' && location.hash === '')) route();
  else location.hash = hash;
}

// The list comes from REST with the query's filters, and is loaded again whenever a
// notification arrives or the board shows a ticket it does not list.

async function loadProjects() {
  const page = await session.api('GET', '/api/projects/?page_size=100');
  state.projects = page.results;
  const create = byTestId('create-project');
  create.replaceChildren(...state.projects.map((p) => el('option', { value: p.id }, `${p.key} · ${p.name}`)));
  byTestId('create-submit').disabled = state.projects.length === 0;
  byTestId('create-ticket-form').hidden = state.me.role !== 'client' || state.projects.length === 0;
  byTestId('create-details').hidden = byTestId('create-ticket-form').hidden;
  const find = byTestId('find-project');
  find.replaceChildren(el('option', { value: '' }, 'Any'),
    ...state.projects.map((p) => el('option', { value: p.id }, p.key)));
}

async function loadPeople() {
  const people = await session.all('/api/users/');
  state.people = new Map(people.map((u) => [u.id, { display_name: u.display_name, username: u.username }]));
  state.people.set(state.me.id, { display_name: state.me.display_name, username: state.me.username });
  if (state.me.role === 'admin') {
    state.developers = await session.all('/api/users/?role=developer');
  }
}

function fillFindForm() {
  const form = byTestId('find-form');
  const q = state.query;
  form.elements.search.value = q.search;
  form.elements.status.value = q.status;
  form.elements.priority.value = q.priority;
  form.elements.project.value = q.project;
  form.elements.ordering.value = q.ordering;
  form.elements.mine.checked = q.mine;
  // Folded on a phone, the filters say how many are on.
  const on = [q.status, q.priority, q.project].filter(Boolean).length + (q.mine ? 1 : 0);
  byTestId('filters-toggle').textContent = on ? `Filters (${on})` : 'Filters';
}

/** Clears the filters. The form is cleared at once, not when the address change is handled,
 * so that a filter chosen right after starts from an empty form. */
function clearFind() {
  state.query = { ...DEFAULT_QUERY };
  fillFindForm();
  go('#/');
}

/** The find form's query, from page 1. */
function formQuery() {
  const form = byTestId('find-form');
  return {
    search: form.elements.search.value.trim(),
    status: form.elements.status.value,
    priority: form.elements.priority.value,
    project: form.elements.project.value,
    mine: form.elements.mine.checked,
    ordering: form.elements.ordering.value,
    page: 1,
  };
}

function filtered(q) {
  return Boolean(q.search || q.status || q.priority || q.project || q.mine);
}

async function refreshTickets() {
  if (!state.me) return;
  const q = state.query;
  const params = new URLSearchParams({ page: String(q.page), page_size: String(PAGE_SIZE) });
  if (q.search) params.set('search', q.search);
  if (q.status) params.set('status', q.status);
  if (q.priority) params.set('priority', q.priority);
  if (q.project) params.set('project', q.project);
  if (q.mine) params.set('assigned_to_me', 'true');
  if (q.ordering) params.set('ordering', q.ordering);
  state.listRequest += 1;
  const request = state.listRequest;
  try {
    const page = await session.api('GET', `/api/tickets/?${params}`);
    if (request !== state.listRequest) return;
    if (page.results.length === 0 && page.count > 0 && q.page > 1) {
      // The page is past the end now (tickets were closed or filtered away): show the last.
      go(queryHash({ ...q, page: Math.ceil(page.count / PAGE_SIZE) }));
      return;
    }
    state.tickets = page.results;
    state.count = page.count;
    renderTickets();
  } catch (e) {
    if (request !== state.listRequest) return;
    if (e instanceof ApiError && e.status === 404 && q.page > 1) {
      // The page is past the end now: start again from the first.
      go(queryHash({ ...q, page: 1 }));
      return;
    }
    flash(`Cannot load tickets: ${describe(e)}`, 'error');
  }
}

/** Refreshes the list (and the open ticket) soon, once for a burst of notifications. */
function scheduleTicketRefresh() {
  clearTimeout(state.ticketTimer);
  state.ticketTimer = setTimeout(() => {
    if (state.detail !== null) reloadTicket();
    else refreshTickets();
  }, 150);
}

function renderTickets() {
  const q = state.query;
  const pages = Math.max(1, Math.ceil(state.count / PAGE_SIZE));
  const signature = JSON.stringify([state.tickets, [...state.busy], state.developers.length, state.count, q]);
  if (signature === state.ticketsSignature) return;
  state.ticketsSignature = signature;
  const active = document.activeElement;
  const row = active && active.closest ? active.closest('[data-testid="ticket-row"]') : null;
  const focused = row ? { id: row.dataset.ticketId, testid: active.dataset.testid } : null;
  const rows = state.tickets.map(ticketRow);
  byTestId('ticket-list').replaceChildren(...rows);
  byTestId('ticket-table').hidden = rows.length === 0;
  const empty = byTestId('tickets-empty');
  empty.hidden = rows.length > 0;
  empty.replaceChildren(...(rows.length ? [] : emptyTickets(q)));
  byTestId('ticket-count').textContent = state.count === 1 ? '1 ticket' : `${state.count} tickets`;
  byTestId('pager').hidden = pages <= 1;
  byTestId('page-info').textContent = `Page ${q.page} of ${pages}`;
  byTestId('page-prev').disabled = q.page <= 1;
  byTestId('page-next').disabled = q.page >= pages;
  if (focused) {
    const again = document.querySelector(`[data-testid="ticket-row"][data-ticket-id="${focused.id}"] [data-testid="${focused.testid}"]`);
    if (again) again.focus();
  }
}

/** What an empty list says: what to do next. */
function emptyTickets(q) {
  if (filtered(q)) {
    return [el('p', {}, 'No ticket matches this search.'), el('button', {
      type: 'button', class: 'small', testid: 'empty-clear', onclick: clearFind,
    }, 'Show all tickets')];
  }
  const role = state.me.role;
  if (role !== 'admin' && state.projects.length === 0) {
    return [el('p', { testid: 'empty-no-project' },
      'You are not a member of any project yet, so there are no tickets to show. Ask to join a project with its key above, or ask an admin of this hub to add you to one.')];
  }
  if (role === 'client') return [el('p', {}, 'No tickets yet. File the first one with the New ticket form above: give it a title, and it goes to the admins.')];
  if (role === 'developer') return [el('p', {}, 'No tickets for you yet. Tickets appear here once an admin assigns them to you.')];
  return [el('p', {}, 'No tickets yet. They appear here as clients file them; each new one is also announced under Notifications.')];
}

/** The controls of the actions `t` allows this user: a developer to pick, buttons. */
function actionControls(t, where) {
  const actions = (ACTIONS[state.me.role] || (() => []))(t, state.me);
  const busy = state.busy.has(t.id);
  const controls = [];
  for (const action of actions) {
    if (action === 'assign') {
      const current = state.assignChoice.get(t.id) ?? String(t.assignees[0] ?? state.developers[0]?.id ?? '');
      const select = el('select', {
        testid: 'assign-developer',
        'aria-label': `Developer for ${t.key}`,
        onchange: (ev) => state.assignChoice.set(t.id, ev.target.value),
      }, state.developers.map((d) => el('option', { value: d.id, selected: String(d.id) === current, title: d.username }, d.display_name || d.username)));
      if (state.developers.length === 0) select.append(el('option', { value: '' }, 'no developers'));
      controls.push(select);
    }
    controls.push(el('button', {
      type: 'button',
      class: `small${action === 'reject' ? ' danger' : action === 'assign' && t.assignees.length ? '' : ' primary'}`,
      testid: `action-${action}`,
      'aria-label': where === 'row' ? `${action === 'assign' && t.assignees.length ? 'Reassign' : LABELS[action]} ${t.key}` : undefined,
      disabled: busy || (action === 'assign' && state.developers.length === 0),
      onclick: () => act(t, action),
    }, action === 'assign' && t.assignees.length ? 'Reassign' : LABELS[action]));
  }
  return controls;
}

function ticketRow(t) {
  const controls = actionControls(t, 'row');
  const assignees = t.assignees.map((id) => person(id));
  const href = ticketHash(t);
  return el('tr', { testid: 'ticket-row', class: `ticket-row priority-${String(t.priority).toLowerCase()}`, dataset: { ticketId: t.id, key: t.key, status: t.status, priority: t.priority } },
    el('td', { class: 'mono key', testid: 'ticket-key' }, t.key),
    el('td', { class: 'title' },
      el('a', { href, class: 'ticket-link', testid: 'ticket-title' }, t.title),
      el('div', { class: 'muted by' },
        'by ', person(t.created_by, t.created_by_name),
        assignees.length ? [' · assigned to ', ...assignees.flatMap((p, i) => (i ? [', ', p] : [p]))] : null)),
    el('td', { class: 'status-cell' }, statusPill(t.status)),
    el('td', { class: 'priority-cell' }, priorityTag(t.priority)),
    el('td', { class: 'actions' },
      ...controls,
      el('a', { href, class: 'button small', testid: 'action-view', 'aria-label': `View ${t.key}` }, 'View')),
  );
}

/** A sentence for what an action did: "DEMO-1 assigned to Grace Hopper". */
function actionDone(t, action) {
  switch (action) {
    case 'open_ticket': return `${t.key} opened`;
    case 'assign': return `${t.key} assigned to ${names(t.assignees) || 'nobody'}`;
    case 'start_work': return `Work started on ${t.key}`;
    case 'finish_work': return `Work on ${t.key} finished; ${nameOf(t.created_by, t.created_by_name)} can now approve it`;
    case 'approve': return `${t.key} approved`;
    case 'reject': return `${t.key} rejected and sent back to ${names(t.assignees) || 'the developers'}`;
    default: return `${t.key}: ${statusName(t.status)}`;
  }
}

async function act(ticket, action) {
  let body = {};
  if (action === 'assign') {
    const id = Number(state.assignChoice.get(ticket.id) ?? ticket.assignees[0] ?? state.developers[0]?.id);
    body = { developer_ids: [id] };
  } else if (action === 'reject') {
    const answer = await ask({
      title: `Reject ${ticket.key}?`,
      message: 'The work goes back to the developers. Tell them what is still wrong.',
      confirm: 'Reject',
      danger: true,
      field: { label: 'Reason', missing: 'Write a reason: the developers need to know what to fix.' },
    });
    if (!answer) return;
    body = { reason: answer.value };
  }
  state.busy.add(ticket.id);
  renderTickets();
  renderTicketView();
  try {
    const updated = await session.api('POST', `/api/tickets/${ticket.id}/${action}/`, body);
    flash(actionDone(updated, action));
    state.assignChoice.delete(ticket.id);
  } catch (e) {
    flash(`${ticket.key}: cannot ${LABELS[action].toLowerCase()}: ${describe(e)}`, 'error');
  } finally {
    state.busy.delete(ticket.id);
    if (state.detail === ticket.id) await reloadTicket();
    else await refreshTickets();
    renderTickets();
    renderTicketView();
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
      category: form.elements.category.value,
    });
    form.elements.title.value = '';
    form.elements.description.value = '';
    flash(`${ticket.key} created. The admins are told about it.`);
    await refreshTickets();
  } catch (e) {
    flash(`Cannot create the ticket: ${describe(e)}`, 'error');
  } finally {
    submit.disabled = state.projects.length === 0;
  }
}

// One ticket at its own address: what it is, what happened to it, the comments and typing of
// the people in its room, and the actions the user may take.

/** The ticket's id from `ref`, a key (`DEMO-3`) or an id; null when this user sees none. */
async function resolveTicket(ref) {
  if (/^\d+$/.test(ref)) return Number(ref);
  const known = state.tickets.find((t) => t.key.toUpperCase() === ref.toUpperCase());
  if (known) return known.id;
  const page = await session.api('GET', `/api/tickets/?search=${encodeURIComponent(ref)}&page_size=10`);
  return page.results.find((t) => t.key.toUpperCase() === ref.toUpperCase())?.id ?? null;
}

async function openTicket(ref) {
  state.detailRequest += 1;
  const request = state.detailRequest;
  const body = byTestId('ticket-view-body');
  if (!state.ticket || (state.ticket.key !== ref && String(state.ticket.id) !== ref)) {
    state.ticket = null;
    state.history = [];
    body.replaceChildren(el('p', { class: 'muted' }, `Loading ${ref}…`));
    byTestId('comment-list').replaceChildren();
    byTestId('history-list').replaceChildren();
    byTestId('ticket-detail').hidden = true;
  }
  try {
    const id = await resolveTicket(ref);
    if (request !== state.detailRequest) return;
    if (id === null) throw new ApiError(404, 'not found');
    await loadTicket(id, request);
  } catch (e) {
    if (request !== state.detailRequest) return;
    state.detail = null;
    state.ticket = null;
    room.view(null);
    byTestId('ticket-detail').hidden = true;
    body.replaceChildren(
      el('h2', { id: 'detail-title', testid: 'detail-title' }, `Ticket ${ref}`),
      el('p', { class: 'empty', testid: 'ticket-missing' }, e instanceof ApiError && e.status === 404
        ? `There is no ticket ${ref}, or you may not see it. Check the key, or search the list.`
        : `Cannot load ${ref}: ${describe(e)}`));
  }
}

async function loadTicket(id, request = state.detailRequest) {
  const [full, history] = await Promise.all([
    session.api('GET', `/api/tickets/${id}/`),
    session.api('GET', `/api/tickets/${id}/history/`).catch(() => null),
  ]);
  if (request !== state.detailRequest) return;
  const first = state.detail !== full.id;
  state.detail = full.id;
  state.ticket = full;
  if (history) state.history = history;
  byTestId('ticket-detail').hidden = false;
  if (first) {
    byTestId('comment-list').replaceChildren();
    byTestId('comment-input').value = '';
    followRoom(full);
    room.view(full.id);
  }
  for (const c of full.comments || []) showComment(c);
  if (first) readTicket(full.id);
  renderTicketView();
  files.show(full);
  renderHistory();
  room.render();
  if (first) {
    document.title = `${full.key} · tickethub`;
    byTestId('detail-title')?.focus({ preventScroll: false });
  }
}

/**
 * Marks the notifications about ticket `id` read: the user is looking at it. Every tab and
 * device of theirs hears it from the hub.
 */
async function readTicket(id) {
  const unread = [...state.notifications.values()].filter((n) => !n.is_read && n.ticket?.id === id);
  if (!hub || (unread.length === 0 && state.unreadElsewhere === 0)) return;
  try {
    await session.api('POST', `/api/notifications/mark_all_as_read/?ticket=${id}`);
    for (const n of unread) n.is_read = true;
    renderNotifications();
  } catch {
    // They stay unread; the bell says so.
  }
}

/** Loads the open ticket again (after an action or a notification about it). */
async function reloadTicket() {
  if (state.detail === null) return;
  try {
    await loadTicket(state.detail);
  } catch (e) {
    flash(`Cannot load the ticket again: ${describe(e)}`, 'error');
  }
}

let historyTimer = null;

function loadHistory(id) {
  clearTimeout(historyTimer);
  historyTimer = setTimeout(async () => {
    try {
      const history = await session.api('GET', `/api/tickets/${id}/history/`);
      if (state.detail !== id) return;
      state.history = history;
      renderHistory();
    } catch {
      // The next change loads it again.
    }
  }, 150);
}

function closeTicket() {
  state.detailRequest += 1;
  if (state.detail !== null) room.view(null);
  state.detail = null;
  state.ticket = null;
  state.history = [];
  renderNotificationsTitle();
}

/** Whether this user may change the ticket's fields: its creator while NEW or OPEN, admins. */
function canEdit(t) {
  return state.me.role === 'admin' || (t.created_by === state.me.id && ['NEW', 'OPEN'].includes(t.status));
}

/** The form that changes a ticket's title, description, priority and category. */
function editForm(t) {
  const options = (values, names, current) => values.map((v) => el('option', { value: v, selected: v === current }, names(v)));
  const form = el('form', { class: 'edit-ticket', testid: 'edit-form', 'aria-label': `Edit ${t.key}`, onsubmit: (ev) => saveEdit(ev, t) },
    el('label', {}, 'Title', el('input', { name: 'title', testid: 'edit-title', required: true, maxlength: '200', value: t.title })),
    el('label', {}, 'Priority', el('select', { name: 'priority', testid: 'edit-priority' },
      options(['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'], priorityName, t.priority))),
    el('label', {}, 'Category', el('select', { name: 'category', testid: 'edit-category' },
      options(['BUG', 'FEATURE', 'SUPPORT', 'OTHER'], categoryName, t.category))),
    el('label', { class: 'wide' }, 'Description', el('textarea', { name: 'description', testid: 'edit-description', rows: '5', maxlength: '20000' }, t.description || '')),
    el('div', { class: 'actions' },
      el('button', { type: 'submit', class: 'small primary', testid: 'edit-save' }, 'Save changes'),
      el('button', { type: 'button', class: 'small', testid: 'edit-cancel', onclick: () => { state.editing = null; renderTicketView(); } }, 'Cancel')));
  return form;
}

async function saveEdit(ev, t) {
  ev.preventDefault();
  const f = ev.target.elements;
  const changed = {};
  for (const name of ['title', 'priority', 'category', 'description']) {
    const value = name === 'title' ? f[name].value.trim() : f[name].value;
    if (value !== (t[name] ?? '')) changed[name] = value;
  }
  if (Object.keys(changed).length === 0) {
    state.editing = null;
    renderTicketView();
    return;
  }
  byTestId('edit-save').disabled = true;
  try {
    await session.api('PATCH', `/api/tickets/${t.id}/`, changed);
    state.editing = null;
    flash(`${t.key} changed. The people on it are told.`);
    await reloadTicket();
    await refreshTickets();
    renderTickets();
  } catch (e) {
    flash(`Cannot change ${t.key}: ${describe(e)}`, 'error');
    const save = byTestId('edit-save');
    if (save) save.disabled = false;
  }
}

/**
 * The ticket's description: the hub's safe HTML of its Markdown (raw HTML in it is text,
 * links http(s), mailto or relative), built as nodes, or the text itself when the hub sent none.
 */
function description(t) {
  const box = el('div', { class: 'description markdown', testid: 'ticket-description' });
  if (!t.description) box.append(el('span', { class: 'muted' }, 'No description.'));
  else if (typeof t.description_html === 'string') box.append(...markdownNodes(t.description_html));
  else box.textContent = t.description;
  return box;
}

/** A comment's text: the hub's safe HTML of its Markdown, or the text itself. */
function commentBody(c) {
  const box = el('div', { class: 'body markdown', testid: 'comment-body' });
  if (typeof c.body_html === 'string') box.append(...markdownNodes(c.body_html));
  else box.textContent = c.body;
  return box;
}

function renderTicketView() {
  const t = state.ticket;
  if (!t) return;
  const controls = actionControls(t, 'view');
  if (state.editing === t.id && !canEdit(t)) state.editing = null;
  if (canEdit(t) && state.editing !== t.id) {
    controls.push(el('button', {
      type: 'button', class: 'small', testid: 'action-edit',
      onclick: () => { state.editing = t.id; renderTicketView(); byTestId('edit-title')?.focus(); },
    }, 'Edit'));
  }
  const assignees = t.assignees.map((id) => person(id));
  const fact = (label, ...value) => [el('dt', {}, label), el('dd', {}, ...value)];
  byTestId('comment-form').hidden = t.status === 'APPROVED';
  byTestId('comments-closed').hidden = t.status !== 'APPROVED';
  byTestId('comments-empty').hidden = byTestId('comment-list').children.length > 0;
  byTestId('ticket-view-body').replaceChildren(
    el('div', { class: 'ticket-head', testid: 'ticket-view-head', dataset: { ticketId: t.id, key: t.key, status: t.status, priority: t.priority } },
      el('h2', { id: 'detail-title', testid: 'detail-title', tabindex: '-1' },
        el('span', { class: 'mono key' }, t.key), ' ', el('span', { testid: 'ticket-title' }, t.title)),
      el('div', { class: 'tags' }, statusPill(t.status), priorityTag(t.priority), el('span', { class: 'chip category', testid: 'ticket-category' }, categoryName(t.category)))),
    el('dl', { class: 'facts-list' },
      fact('Project', t.project_name || t.project_key || ''),
      fact('Filed by', person(t.created_by, t.created_by_name), ' · ', when(t.created_at, { testid: 'ticket-created-at' })),
      fact('Assigned to', el('span', { testid: 'ticket-assignees' },
        assignees.length ? assignees.flatMap((p, i) => (i ? [', ', p] : [p])) : 'Nobody yet')),
      fact('Last change', when(t.updated_at))),
    state.editing === t.id
      ? byTestId('edit-form') || editForm(t)
      : description(t),
    controls.length
      ? el('div', { class: 'actions view-actions', testid: 'ticket-actions' }, el('span', { class: 'muted' }, 'You can: '), ...controls)
      : el('p', { class: 'muted', testid: 'ticket-actions' }, waitingFor(t)),
  );
}

/** Who the ticket waits for, when this user has nothing to do on it. */
function waitingFor(t) {
  switch (t.status) {
    case 'NEW': return 'Waiting for an admin to open it.';
    case 'OPEN': return 'Waiting for an admin to assign a developer.';
    case 'ASSIGNED': return `Waiting for ${names(t.assignees) || 'the developer'} to start work.`;
    case 'IN_PROGRESS': return `${names(t.assignees) || 'A developer'} is working on it.`;
    case 'FINISHED': return `Waiting for ${nameOf(t.created_by, t.created_by_name)} to approve or reject the work.`;
    case 'REJECTED': return `Sent back: waiting for ${names(t.assignees) || 'the developer'} to work on it again.`;
    case 'APPROVED': return 'Done: the work was approved.';
    default: return '';
  }
}

/** One history entry in words: "Ada Lovelace assigned Grace Hopper". */
function historyText(h) {
  const who = nameOf(h.actor, h.actor_name);
  switch (h.action) {
    case 'create': return `${who} created the ticket`;
    case 'open_ticket': return `${who} opened the ticket`;
    case 'assign': {
      const added = (h.newly_assigned || []).length ? h.newly_assigned : h.assignees || [];
      return added.length ? `${who} assigned ${names(added)}` : `${who} changed the assignees`;
    }
    case 'start_work': return `${who} started work`;
    case 'finish_work': return `${who} finished work`;
    case 'approve': return `${who} approved the work`;
    case 'reject': return h.reason ? `${who} rejected the work: “${h.reason}”` : `${who} rejected the work`;
    case 'edit': return `${who} changed ${(h.changes || []).map(changeText).join(', ') || 'the ticket'}`;
    case 'escalate': return `${h.recipient_name || 'Someone'} was paged again by ${(h.channels || []).map(channelWord).join(', ') || 'more channels'} (${h.policy}, step ${h.step})`;
    case 'acknowledge': return `${who} acknowledged the page by ${channelWord(h.via)}`;
    case 'comment':
    case 'comments': return `${who} commented`;
    default: return h.event === 'comment_added' ? `${who} commented` : `${who}: ${eventName(h.event).toLowerCase()}`;
  }
}

/** A channel in people's words: "SMS", "push", "Slack". */
function channelWord(c) {
  return { sms: 'SMS', whatsapp: 'WhatsApp', slack: 'Slack', mattermost: 'Mattermost', teams: 'Teams', email: 'email', push: 'push', voice: 'a call', webpush: 'push', fcm: 'push', apns: 'push' }[c] || c;
}

/** One field an edit changed, in words: "the priority from High to Critical". */
function changeText(c) {
  switch (c.field) {
    case 'title': return `the title to “${c.after}”`;
    case 'priority': return `the priority from ${priorityName(c.before)} to ${priorityName(c.after)}`;
    case 'category': return `the category from ${categoryName(c.before)} to ${categoryName(c.after)}`;
    default: return `the ${c.field}`;
  }
}

function renderHistory() {
  const list = byTestId('history-list');
  // Each entry says the status it led to, when it changed it.
  list.replaceChildren(...state.history.map((h, i) => {
    const before = i > 0 ? state.history[i - 1].status : h.status;
    return el('li', { testid: 'history-item', dataset: { event: h.event, action: h.action } },
      el('span', { class: 'what', title: state.people.get(h.actor)?.username }, historyText(h)),
      ' ',
      el('span', { class: 'muted' }, h.status !== before ? `· now ${statusName(h.status).toLowerCase()} · ` : '· '),
      when(h.at, { class: 'muted' }));
  }));
  if (!state.history.length) list.append(el('li', { class: 'muted' }, 'Nothing recorded yet.'));
}

/** Shows a comment: added at the end, or in its place when it is there (edited, deleted). */
function showComment(c) {
  const list = byTestId('comment-list');
  const item = commentItem(c);
  const there = list.querySelector(`[data-comment-id="${CSS.escape(String(c.id))}"]`);
  if (there) {
    // A frame of the room carries no edit; what the REST API said last stands.
    if (there.dataset.edited && !c.edited_at && !c.deleted) return;
    there.replaceWith(item);
  } else list.append(item);
  byTestId('comments-empty').hidden = true;
}

function commentItem(c) {
  const t = state.ticket;
  const open = t && t.status !== 'APPROVED';
  const mine = c.author === state.me.id;
  const buttons = [];
  if (open && !c.deleted && mine) {
    buttons.push(el('button', { type: 'button', class: 'link', testid: 'comment-edit', 'aria-label': 'Edit your comment', onclick: () => editComment(c) }, 'Edit'));
  }
  if (open && !c.deleted && (mine || state.me.role === 'admin')) {
    buttons.push(el('button', { type: 'button', class: 'link danger', testid: 'comment-delete', 'aria-label': mine ? 'Delete your comment' : `Delete the comment of ${c.author_name}`, onclick: () => deleteComment(c) }, 'Delete'));
  }
  return el('li', { testid: 'comment-item', dataset: { commentId: c.id, ...(c.edited_at ? { edited: 'true' } : {}), ...(c.deleted ? { deleted: 'true' } : {}) } },
    el('strong', {}, person(c.author, c.author_name)), ' ',
    when(c.created_at, { class: 'muted' }),
    c.edited_at && !c.deleted ? el('span', { class: 'muted', testid: 'comment-edited', title: `Edited ${exact(c.edited_at)}` }, ' · edited') : null,
    buttons.length ? el('span', { class: 'comment-tools' }, ' ', ...buttons) : null,
    c.deleted
      ? el('div', { class: 'body muted tombstone', testid: 'comment-tombstone' }, 'This comment was deleted.')
      : commentBody(c));
}

function editComment(c) {
  const item = byTestId('comment-list').querySelector(`[data-comment-id="${CSS.escape(String(c.id))}"]`);
  if (!item) return;
  const input = el('textarea', { testid: 'comment-edit-input', rows: '3', 'aria-label': 'Your comment', maxlength: '10000' }, c.body);
  const form = el('form', { class: 'comment-form', testid: 'comment-edit-form', onsubmit: async (ev) => {
    ev.preventDefault();
    if (!input.value.trim()) return;
    try {
      const changed = await session.api('PATCH', `/api/tickets/${c.ticket}/comments/${c.id}/`, { body: input.value });
      showComment(changed);
    } catch (e) {
      flash(`Cannot change the comment: ${describe(e)}`, 'error');
    }
  } },
  input,
  el('div', { class: 'actions' },
    el('button', { type: 'submit', class: 'small primary', testid: 'comment-edit-save' }, 'Save'),
    el('button', { type: 'button', class: 'small', onclick: () => item.replaceWith(commentItem(c)) }, 'Cancel')));
  item.querySelector('.body')?.replaceWith(form);
  input.focus();
}

async function deleteComment(c) {
  const answer = await ask({
    title: 'Delete this comment?',
    message: 'Its text is removed for everyone; the ticket shows that a comment was deleted.',
    confirm: 'Delete',
    danger: true,
  });
  if (!answer) return;
  try {
    await session.api('DELETE', `/api/tickets/${c.ticket}/comments/${c.id}/`);
    showComment({ ...c, body: '', deleted: true });
  } catch (e) {
    flash(`Cannot delete the comment: ${describe(e)}`, 'error');
  }
}

/**
 * Offers the people who share a project with this user as `@name` completions while one is
 * typed in `input`: a list of buttons under it, by username or display name.
 */
function mentionHelper(input) {
  const list = el('ul', { class: 'mentions', testid: 'mention-suggestions', 'aria-label': 'People to mention', hidden: true });
  const typed = () => /(?:^|[^\p{L}\p{N}._+@-])@([\p{L}\p{N}._+-]*)$/u.exec(input.value.slice(0, input.selectionStart ?? input.value.length));
  const close = () => { list.hidden = true; list.replaceChildren(); };
  const pick = (username, start) => {
    const caret = input.selectionStart ?? input.value.length;
    input.value = `${input.value.slice(0, start)}@${username} ${input.value.slice(caret)}`;
    const at = start + username.length + 2;
    input.focus();
    input.setSelectionRange(at, at);
    close();
  };
  input.addEventListener('input', () => {
    const m = typed();
    if (!m) return close();
    const word = m[1].toLowerCase();
    const start = m.index + m[0].indexOf('@');
    const matches = [...state.people.entries()]
      .filter(([id, p]) => id !== state.me.id && (p.username.toLowerCase().startsWith(word) || (p.display_name || '').toLowerCase().split(/\s+/).some((w) => w.startsWith(word))))
      .slice(0, 6);
    if (!matches.length) return close();
    list.replaceChildren(...matches.map(([, p]) => el('li', {},
      el('button', { type: 'button', class: 'small', testid: 'mention-option', dataset: { username: p.username },
        onclick: () => pick(p.username, start) }, p.display_name ? `${p.display_name} (@${p.username})` : `@${p.username}`))));
    list.hidden = false;
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !list.hidden) { ev.stopPropagation(); close(); }
  });
  input.after(list);
  return list;
}

/** What the keyboard shortcuts do, for `?`. */
const SHORTCUTS = 'c: create a ticket · /: search · j and k: next and previous ticket in the list · ?: this help · Esc: close a dialog';

/**
 * The desktop's keyboard shortcuts: `c` create, `/` search, `j`/`k` move through the list,
 * `?` help; never while typing in a field, nor with a modifier held.
 */
function shortcut(ev) {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || !state.me || invitePanel.shown) return;
  const target = ev.target;
  if (target instanceof HTMLElement && (target.isContentEditable || target.closest('input, textarea, select, dialog[open]'))) return;
  const visible = (id) => { const e = byTestId(id); return e && e.offsetParent !== null ? e : null; };
  switch (ev.key) {
    case 'c': {
      if (!byTestId('create-ticket-form') || byTestId('create-ticket-form').hidden) return;
      if (location.hash.startsWith('#/tickets/')) go('#/');
      ev.preventDefault();
      setTimeout(() => visible('create-title')?.focus(), 0);
      break;
    }
    case '/': {
      if (location.hash.startsWith('#/tickets/')) go('#/');
      ev.preventDefault();
      setTimeout(() => visible('find-search')?.focus(), 0);
      break;
    }
    case 'j':
    case 'k': {
      const links = [...document.querySelectorAll('[data-testid="ticket-row"] a.ticket-link')].filter((a) => a.offsetParent !== null);
      if (!links.length) return;
      ev.preventDefault();
      const at = links.indexOf(document.activeElement);
      const next = at < 0 ? 0 : Math.min(links.length - 1, Math.max(0, at + (ev.key === 'j' ? 1 : -1)));
      links[next].focus();
      break;
    }
    case '?':
      ev.preventDefault();
      ask({ title: 'Keyboard shortcuts', message: SHORTCUTS, confirm: 'Close' });
      break;
    default:
      break;
  }
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
    showComment(c);
  } catch (e) {
    flash(`Cannot comment: ${describe(e)}`, 'error');
  }
}

// The notifications come through the official client (/assets/tickethub-client.js). It opens
// `/ws/notifications/` with the token as the subprotocol pair `tickethub.v1, bearer.<JWT>` (so
// the token is in no URL and no log), falls back to the event stream `/sse/notifications/` when
// a WebSocket cannot be opened, reconnects with backoff, resumes after the last seq it has
// (`?last_seq=`, or `Last-Event-ID` on the stream), hands each notification over once and in
// order, acknowledges what it delivered, and renews the token when the hub says it runs out.

/**
 * The connection's state in people's words (`Live`, `Offline · trying again in 3 s`); the
 * technical reason (the close code, the transport, the resume point) is on hover and in the
 * connection log.
 */
function setWsState(name, text, code, detail = '') {
  const pill = byTestId('ws-state');
  pill.dataset.state = name;
  if (code === undefined) delete pill.dataset.closeCode;
  else pill.dataset.closeCode = String(code);
  pill.textContent = text;
  if (detail) pill.title = detail;
  else pill.removeAttribute('title');
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
    flash(`${t.remaining} older notifications were not replayed; the list shows the newest.`);
  });
  hub.on('inbox', onInbox);
  hub.on('renewed', () => logEvent('→', 'token renewed on the socket'));
  hub.on('error', (e) => {
    logEvent('←', `error ${e.code}: ${e.message}`);
    if (e.code === 'token' && !session.loggedIn) return;
    flash(`The hub says: ${e.message}`, 'error');
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
    setWsState('connected', 'Live', undefined, transport === 'sse'
      ? 'Connected over the event stream (a WebSocket could not be opened)'
      : 'Connected over a WebSocket');
  } else if (now === 'connecting') {
    setWsState('connecting', 'Connecting…');
  } else if (now === 'closed') {
    clearInterval(state.countdownTimer);
    setWsState('closed', 'Offline', state.closeCode ?? undefined, state.closeLabel);
  } else if (now === 'unauthorized') {
    // The hub refused the session's token and no new one could be had: log in again.
    clearInterval(state.countdownTimer);
    setWsState('closed', 'Signed out · log in again', 4001, state.closeLabel);
  }
}

function onDisconnect({ code, reason, willReconnect }) {
  state.closeCode = code;
  state.closeLabel = `closed (${code}${reason ? `: ${reason}` : ''}): ${describeClose(code)}`;
  logEvent('←', `${state.closeLabel}${willReconnect ? '' : ', for good'}`);
  // 4001: the token was refused or ran out; the client asks for a renewed one.
  setWsState('closed', code === 4001 ? 'Signing in again…' : 'Offline', code, state.closeLabel);
  if (!willReconnect) flash(`The hub closed the connection: ${describeClose(code)}`, 'error');
}

/** The client waits `delay` ms before its next try: count down, then show the resume point. */
function onRetry({ delay }) {
  clearInterval(state.countdownTimer);
  const until = Date.now() + delay;
  const label = state.closeLabel || 'the hub cannot be reached';
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left > 0) {
      setWsState('closed', `Offline · trying again in ${left} s`, state.closeCode ?? undefined, label);
      return;
    }
    clearInterval(state.countdownTimer);
    const seq = hub?.lastSeq;
    setWsState('connecting', 'Reconnecting…', undefined,
      seq === null || seq === undefined ? '' : `Nothing is lost: it resumes after notification ${seq}`);
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
  if (!n.replayed && NARROW.matches && !document.body.classList.contains('show-notifications')) showBanner(n);
  // About the ticket on the screen: the user sees it there.
  if (!n.is_read && !n.replayed && n.ticket?.id === state.detail && document.visibilityState === 'visible') markRead(n.id);
}

/** Shows a new notification as a banner at the top (on a phone, where the list is folded). */
function showBanner(n) {
  state.bannerFor = n;
  byTestId('notification-banner-text').textContent = `${n.title}: ${n.message}`;
  byTestId('notification-banner-open').hidden = !n.ticket?.key;
  byTestId('notification-banner').hidden = false;
  clearTimeout(state.bannerTimer);
  state.bannerTimer = setTimeout(hideBanner, 10_000);
}

function hideBanner() {
  clearTimeout(state.bannerTimer);
  state.bannerFor = null;
  byTestId('notification-banner').hidden = true;
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
    flash(e instanceof TicketHubError && e.code === '404' ? 'That notification is gone.' : `Cannot mark it as read: ${describe(e)}`, 'error');
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
    flash('All notifications are marked as read.');
  } catch (e) {
    flash(`Cannot mark everything as read: ${describe(e)}`, 'error');
  }
}

async function deleteAll() {
  const answer = await ask({
    title: 'Delete all notifications?',
    message: 'Every notification you have is deleted, read or not, on all your devices. This cannot be undone.',
    confirm: 'Delete all',
    danger: true,
  });
  if (!answer) return;
  try {
    const res = await session.api('DELETE', '/api/notifications/delete-all/');
    state.notifications.clear();
    state.unreadElsewhere = 0;
    closeTimeline(false);
    renderNotifications();
    const n = Number(res?.count ?? res?.deleted);
    flash(Number.isFinite(n) ? `${n === 1 ? '1 notification' : `${n} notifications`} deleted.` : 'Notifications deleted.');
  } catch (e) {
    flash(`Cannot delete the notifications: ${describe(e)}`, 'error');
  }
}

/** Opens a notification's ticket and marks the notification as read. */
function openNotification(n) {
  if (!n.is_read) markRead(n.id);
  if (NARROW.matches) showNotifications(false);
  if (n.ticket?.key) go(`#/tickets/${encodeURIComponent(n.ticket.key)}`);
}

function unreadCount() {
  let n = state.unreadElsewhere;
  for (const x of state.notifications.values()) if (!x.is_read) n += 1;
  return n;
}

function renderNotificationsTitle() {
  const unread = unreadCount();
  const base = state.ticket ? `${state.ticket.key} · tickethub` : 'tickethub';
  document.title = unread ? `(${unread}) ${base}` : base;
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
  byTestId('delete-all').disabled = items.length === 0;
  const unread = unreadCount();
  for (const id of ['unread-badge', 'bell-count']) {
    const badge = byTestId(id);
    badge.textContent = String(unread);
    badge.dataset.count = String(unread);
  }
  // The visible words first ("Notifications 3"), so that speech input finds it by what it shows.
  byTestId('bell').setAttribute('aria-label', `Notifications ${unread} unread`);
  renderNotificationsTitle();
}

function notificationItem(n) {
  const open = state.timeline.id === n.id;
  return el('li', {
    class: `notification${state.fresh.has(n.id) ? ' fresh' : ''}`,
    testid: 'notification-item',
    dataset: { notificationId: n.id, type: n.notification_type, read: n.is_read, seq: n.seq ?? '', expanded: open },
    onclick: (ev) => {
      // Its buttons, its link and its open details keep their own clicks.
      if (ev.target.closest('button, a, input, select, textarea, .timeline-box')) return;
      openNotification(n);
    },
  },
  el('div', { class: 'meta' },
    // The kind in words, unless the title already says it ("Work Finished").
    eventName(n.notification_type).toLowerCase() === String(n.title).toLowerCase()
      ? null
      : el('span', { class: 'chip', testid: 'notification-type' }, eventName(n.notification_type)),
    n.ticket ? el('span', { class: 'chip mono' }, n.ticket.key) : null,
    when(n.timestamp),
    n.is_read ? null : el('span', { class: 'unread-tag' }, 'unread')),
  el('div', { class: 'title' },
    n.ticket?.key
      ? el('a', {
        href: `#/tickets/${encodeURIComponent(n.ticket.key)}`,
        testid: 'notification-title',
        onclick: (ev) => {
          ev.preventDefault();
          openNotification(n);
        },
      }, n.title)
      : el('span', { testid: 'notification-title' }, n.title)),
  el('div', { class: 'message', testid: 'notification-message' }, n.message),
  el('div', { class: 'side' },
    n.is_read
      ? el('span', { class: 'muted' }, 'Read')
      : el('button', {
        type: 'button',
        class: 'small',
        testid: 'mark-read',
        'aria-label': `Mark as read: ${n.title}`,
        onclick: () => markRead(n.id),
      }, 'Mark as read'),
    el('button', {
      type: 'button',
      class: 'small link',
      testid: 'timeline-toggle',
      'aria-expanded': String(open),
      onclick: () => toggleTimeline(n.id),
    }, open ? 'Hide delivery details' : 'Delivery details')),
  open ? timelineBox() : null,
  );
}

// "Delivery details" open under a notification what happened to it: when it was sent, to how
// many devices, when it was read, and any email or reminder. It is loaded again when the
// notification changes.

function timelineBox() {
  const t = state.timeline;
  let body;
  if (t.error) body = el('p', { class: 'error', testid: 'timeline-error', role: 'alert' }, t.error);
  else if (t.data) body = peopleTimelineView(t.data, 'timeline', (actor) => nameOf(actor.id, actor.username));
  else body = el('p', { class: 'muted' }, 'Loading…');
  return el('div', {
    class: 'timeline-box',
    testid: 'timeline-panel',
    dataset: { notificationId: t.id, state: t.error ? 'error' : t.data ? 'loaded' : 'loading', loading: t.loading },
  },
  el('div', { class: 'panel-head' },
    el('h3', {}, 'Delivery details'),
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
      ? 'This notification is gone.'
      : `Cannot load the delivery details: ${describe(e)}`;
  }
  t.loading = false;
  renderNotifications();
}

/** Loads the open delivery details again shortly, if they are `id`'s. */
function refreshTimelineSoon(id) {
  if (id === null || id === undefined || id !== state.timeline.id) return;
  clearTimeout(state.timeline.timer);
  state.timeline.timer = setTimeout(loadTimeline, 200);
}

// Browser notifications (Web Push): the hub pushes to this browser even while no page of it is
// open, and the service worker `/sw.js` shows each push. Turning them on asks the browser's
// permission, subscribes it with the hub's key (`GET /api/push/vapid/`), and registers the
// subscription as one of the user's devices (`POST /api/devices/`); this browser remembers
// which device that is. Turning them off removes the device and ends the subscription.

const push = { state: 'checking', key: null, busy: null, request: 0 };

const PUSH_WORDS = {
  checking: 'Checking whether this browser can show them…',
  insecure: 'This page is not on a secure (https) address, so the browser cannot show notifications from it.',
  unsupported: 'This browser cannot show notifications from the hub.',
  unavailable: 'This hub does not send browser notifications: Web Push is not set up on it.',
  blocked: 'Notifications are blocked for this site. Allow them in the browser\'s site settings, then turn them on here.',
  off: 'Get a notification from your system when one of your tickets changes, even with this page closed.',
  on: 'Browser notifications are on. You get them even with this page closed.',
};

function pushSupported() {
  return 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

/** Where this browser keeps the device it registered for `user`: `{ id, endpoint }`. */
function pushStoreKey(user) {
  return `tickethub.push.${user.id}`;
}

function savedDevice(user) {
  try {
    const saved = JSON.parse(localStorage.getItem(pushStoreKey(user)) || 'null');
    return saved && saved.id !== undefined && typeof saved.endpoint === 'string' ? saved : null;
  } catch {
    return null;
  }
}

function forgetDevice(user) {
  localStorage.removeItem(pushStoreKey(user));
}

/** The hub's application server key (base64url), or null when it sends no Web Push. */
async function vapidKey() {
  const res = await fetch('/api/push/vapid/', { headers: { Accept: 'application/json' }, credentials: 'omit', cache: 'no-store' });
  if (res.status === 404) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok || typeof data?.public_key !== 'string') {
    throw new ApiError(res.status, data?.detail || `${res.status} ${res.statusText}`, data);
  }
  return data.public_key;
}

/** The bytes of a base64url text, as `applicationServerKey` takes them. */
function fromBase64Url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, '='));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function sameBytes(buffer, bytes) {
  if (!buffer) return false;
  const a = new Uint8Array(buffer);
  return a.length === bytes.length && a.every((x, i) => x === bytes[i]);
}

/** This browser's push subscription for the pages at `/`, if it has one. */
async function currentSubscription() {
  const registration = await navigator.serviceWorker.getRegistration('/');
  return registration ? registration.pushManager.getSubscription() : null;
}

/** Why turning notifications on or off failed, in words. */
function pushProblem(e) {
  if (e instanceof ApiError || e instanceof TicketHubError) return describe(e);
  if (e?.name === 'NotAllowedError') return 'the browser does not allow it (notifications may be blocked for this site).';
  if (e?.name === 'AbortError') return 'the browser could not reach its push service.';
  if (e instanceof TypeError) return describe(e);
  return e?.message || String(e);
}

function setPushError(text) {
  byTestId('push-error').textContent = text;
}

/** Shows the setting as it is; with `focus`, moves the focus to the button now shown. */
function renderPush(focus = false) {
  const box = byTestId('push-settings');
  const enable = byTestId('push-enable');
  const disable = byTestId('push-disable');
  box.dataset.state = push.state;
  box.setAttribute('aria-busy', String(Boolean(push.busy)));
  byTestId('push-status').textContent = push.busy || PUSH_WORDS[push.state];
  enable.hidden = !['off', 'blocked', 'unavailable'].includes(push.state);
  enable.disabled = Boolean(push.busy) || push.state === 'unavailable';
  disable.hidden = push.state !== 'on';
  disable.disabled = Boolean(push.busy);
  if (focus) {
    const next = push.state === 'on' ? disable : enable;
    if (!next.hidden && !next.disabled) next.focus();
  }
}

/** Finds out whether this browser can take notifications, and whether they are on. */
async function checkPush() {
  push.request += 1;
  const request = push.request;
  const me = state.me;
  push.busy = null;
  setPushError('');
  if (!pushSupported()) {
    push.state = window.isSecureContext ? 'unsupported' : 'insecure';
    renderPush();
    return;
  }
  push.state = 'checking';
  renderPush();
  let next = 'off';
  try {
    push.key = await vapidKey();
    if (request !== push.request) return;
    if (!push.key) {
      next = 'unavailable';
    } else {
      const saved = savedDevice(me);
      if (saved) next = (await stillOn(saved)) ? 'on' : 'off';
      if (request !== push.request) return;
      if (next === 'off' && saved) forgetDevice(me);
      if (next === 'off' && Notification.permission === 'denied') next = 'blocked';
    }
  } catch (e) {
    if (request !== push.request) return;
    setPushError(`Cannot tell whether browser notifications are on: ${pushProblem(e)}`);
  }
  push.state = next;
  renderPush();
}

/**
 * Whether the device this browser registered still takes pushes: the browser has the same
 * subscription, and the hub still lists the device as this user's (it drops one the push
 * service gave up on, and moves one another user of this browser registered since).
 */
async function stillOn(saved) {
  const subscription = Notification.permission === 'granted' ? await currentSubscription() : null;
  if (!subscription || subscription.endpoint !== saved.endpoint) {
    // The permission or the subscription is gone: so is any use of the device.
    session.api('DELETE', `/api/devices/${encodeURIComponent(saved.id)}/`).catch(() => {});
    return false;
  }
  const devices = await session.api('GET', '/api/devices/');
  return Array.isArray(devices) && devices.some((d) => d.id === saved.id);
}

async function enablePush() {
  if (push.busy) return;
  push.request += 1;
  const request = push.request;
  const me = state.me;
  push.busy = 'Turning browser notifications on…';
  setPushError('');
  renderPush();
  try {
    if (!push.key) push.key = await vapidKey();
    if (!push.key) {
      push.state = 'unavailable';
      return;
    }
    const permission = await Notification.requestPermission();
    if (permission !== 'granted') {
      push.state = permission === 'denied' ? 'blocked' : 'off';
      setPushError(permission === 'denied'
        ? 'The browser blocks notifications from this site, so they cannot be turned on.'
        : 'Notifications were not allowed. Choose Allow when the browser asks.');
      return;
    }
    await navigator.serviceWorker.register('/sw.js');
    const registration = await navigator.serviceWorker.ready;
    const key = fromBase64Url(push.key);
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameBytes(subscription.options?.applicationServerKey, key)) {
      // Subscribed with another key (the hub's key changed): pushes signed with this one fail.
      await subscription.unsubscribe();
      subscription = null;
    }
    if (!subscription) subscription = await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    let device;
    try {
      device = await session.api('POST', '/api/devices/', { kind: 'webpush', subscription: subscription.toJSON() });
    } catch (e) {
      // A subscription the hub does not know is of no use: end it, and start afresh next time.
      await subscription.unsubscribe().catch(() => {});
      throw e;
    }
    if (request !== push.request || state.me !== me) return;
    localStorage.setItem(pushStoreKey(me), JSON.stringify({ id: device.id, endpoint: subscription.endpoint }));
    push.state = 'on';
  } catch (e) {
    if (request !== push.request) return;
    setPushError(`Cannot turn on browser notifications: ${pushProblem(e)}`);
  } finally {
    if (request === push.request) {
      push.busy = null;
      renderPush(true);
    }
  }
}

async function disablePush() {
  if (push.busy) return;
  push.request += 1;
  const request = push.request;
  const me = state.me;
  push.busy = 'Turning browser notifications off…';
  setPushError('');
  renderPush();
  try {
    const saved = savedDevice(me);
    if (saved) {
      try {
        await session.api('DELETE', `/api/devices/${encodeURIComponent(saved.id)}/`);
      } catch (e) {
        // A device the hub no longer has is off already.
        if (!(e instanceof ApiError && e.status === 404)) throw e;
      }
    }
    forgetDevice(me);
    const subscription = await currentSubscription();
    if (subscription) await subscription.unsubscribe();
    if (request !== push.request) return;
    push.state = Notification.permission === 'denied' ? 'blocked' : 'off';
  } catch (e) {
    if (request !== push.request) return;
    setPushError(`Cannot turn off browser notifications: ${pushProblem(e)}`);
  } finally {
    if (request === push.request) {
      push.busy = null;
      renderPush(true);
    }
  }
}

/** Logging out leaves the setting to the next user of the page. */
function resetPush() {
  push.request += 1;
  push.busy = null;
  push.state = 'checking';
  setPushError('');
  renderPush();
}

// On a phone the notifications sit behind the bell in the top bar.

function showNotifications(show) {
  document.body.classList.toggle('show-notifications', show);
  byTestId('bell').setAttribute('aria-expanded', String(show));
  if (show) {
    const panel = byTestId('notifications-panel');
    panel.scrollIntoView({ block: 'start' });
    document.getElementById('notifications-heading').focus({ preventScroll: true });
  }
}

// An invitation's link shows what it offers in place of the login, whoever is logged in; the
// account it makes is logged in at once and lands in the workspace.

function showInvite(token) {
  clearTimeout(flashTimer);
  byTestId('flash').hidden = true;
  byTestId('app').hidden = true;
  byTestId('login').hidden = false;
  byTestId('login-panel').hidden = true;
  byTestId('signup').hidden = true;
  invitePanel.show(token);
  invitePanel.signedInAs(state.me ? state.me.display_name || state.me.username : null);
}

/** Leaves the invitation for the page the address names now. */
function leaveInvite() {
  invitePanel.hide();
  if (!state.me) {
    showLogin();
    return;
  }
  byTestId('login').hidden = true;
  byTestId('app').hidden = false;
  route().catch((e) => flash(describe(e), 'error'));
}

async function acceptedInvitation({ username, password, name }) {
  if (state.me) logout('', false);
  await session.login(username, password);
  // The link is used up: the address becomes the workspace's own.
  history.replaceState(null, '', `${location.pathname}${location.search}#/`);
  invitePanel.hide();
  await start();
  flash(`Welcome, ${name}. Your account is ready.`);
}

// The buttons and forms are wired once the document is parsed.

document.addEventListener('DOMContentLoaded', () => {
  joinPanel = new JoinPanel({ session });
  invitePanel = new InvitePanel({ onAccepted: acceptedInvitation });
  loginForm(session, start);
  byTestId('signup-link').addEventListener('click', () => showSignup(true));
  byTestId('login-link').addEventListener('click', () => showSignup(false));
  byTestId('signup-form').addEventListener('submit', signUp);
  byTestId('logout').addEventListener('click', signOut);
  byTestId('bell').addEventListener('click', () => showNotifications(!document.body.classList.contains('show-notifications')));
  NARROW.addEventListener('change', (ev) => {
    byTestId('create-details').open = !ev.matches;
  });
  byTestId('filters-toggle').addEventListener('click', () => {
    const open = byTestId('find-form').classList.toggle('filters-open');
    byTestId('filters-toggle').setAttribute('aria-expanded', String(open));
  });
  byTestId('notification-banner-close').addEventListener('click', hideBanner);
  byTestId('notification-banner-open').addEventListener('click', () => {
    const n = state.bannerFor;
    hideBanner();
    if (n) openNotification(n);
  });
  byTestId('create-ticket-form').addEventListener('submit', createTicket);
  byTestId('tickets-reload').addEventListener('click', refreshTickets);
  const find = byTestId('find-form');
  find.addEventListener('submit', (ev) => {
    ev.preventDefault();
    go(queryHash(formQuery()));
  });
  for (const name of ['status', 'priority', 'project', 'ordering', 'mine']) {
    find.elements[name].addEventListener('change', () => go(queryHash(formQuery())));
  }
  byTestId('find-clear').addEventListener('click', clearFind);
  byTestId('page-prev').addEventListener('click', () => go(queryHash({ ...state.query, page: Math.max(1, state.query.page - 1) })));
  byTestId('page-next').addEventListener('click', () => go(queryHash({ ...state.query, page: state.query.page + 1 })));
  byTestId('mark-all-read').addEventListener('click', markAllRead);
  byTestId('delete-all').addEventListener('click', deleteAll);
  byTestId('push-enable').addEventListener('click', enablePush);
  byTestId('push-disable').addEventListener('click', disablePush);
  byTestId('room-project').addEventListener('change', (ev) => {
    room.open(hub, Number(ev.target.value), state.me);
    if (state.detail !== null) room.view(state.detail);
  });
  byTestId('comment-form').addEventListener('submit', postComment);
  mentionHelper(byTestId('comment-input'));
  byTestId('comment-input').addEventListener('input', () => {
    if (state.detail !== null) room.typed(state.detail);
  });
  setInterval(refreshTimes, 30_000);
  document.addEventListener('keydown', shortcut);
  window.addEventListener('hashchange', () => {
    const token = inviteToken();
    if (token) showInvite(token);
    else if (invitePanel.shown) leaveInvite();
    else route().catch((e) => flash(describe(e), 'error'));
  });
  const token = inviteToken();
  if (token) {
    showInvite(token);
    // Whoever is logged in on this tab stays so, behind the invitation.
    if (session.loggedIn) start().catch(() => {});
  } else if (session.loggedIn) {
    start().catch((e) => logout(e instanceof ApiError && e.status === 401 ? '' : describe(e)));
  } else {
    showLogin();
  }
});
