// Helpers shared by the hub's pages: building DOM nodes without HTML parsing, and a login
// session whose REST calls carry the access token and renew it when it runs out.
//
// Every piece of text that comes from a user or from the hub is inserted as a text node, never
// as HTML, so a ticket titled "<img onerror=…>" shows as those characters.

/**
 * Creates an element. `attrs` keys: `class`, `testid` (becomes `data-testid`), `dataset`
 * (an object of `data-*` values), `on<event>` (a listener), anything else is an attribute.
 * Children are nodes or values shown as text.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'testid') node.dataset.testid = value;
    else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    } else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.append(child);
    else node.append(document.createTextNode(String(child)));
  }
}

/** The first element with this `data-testid`. */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

/** An error answered by the REST API, with its status and `detail`. */
export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/**
 * A login kept in this tab's sessionStorage (each tab may be a different user), under `key`.
 * Tokens never go into URLs: REST calls send `Authorization: Bearer`, and sockets use the
 * subprotocol.
 */
export class Session {
  constructor(key) {
    this.key = key;
    this.access = null;
    this.refreshToken = null;
    this.renewing = null;
    try {
      const saved = JSON.parse(sessionStorage.getItem(key) || 'null');
      if (saved && saved.access && saved.refresh) {
        this.access = saved.access;
        this.refreshToken = saved.refresh;
      }
    } catch {
      sessionStorage.removeItem(key);
    }
    /** Called when the session ends because its tokens are no longer accepted. */
    this.onExpired = () => {};
  }

  get loggedIn() {
    return Boolean(this.access);
  }

  save() {
    sessionStorage.setItem(this.key, JSON.stringify({ access: this.access, refresh: this.refreshToken }));
  }

  /** Logs in; throws an `ApiError` whose message is the hub's `detail`. */
  async login(username, password) {
    const tokens = await request('POST', '/api/auth/login/', null, { username, password });
    this.access = tokens.access;
    this.refreshToken = tokens.refresh;
    this.save();
  }

  /** Ends the session here and, unless `local`, its refresh token on the hub. */
  logout(local = false) {
    const refresh = this.refreshToken;
    this.access = null;
    this.refreshToken = null;
    sessionStorage.removeItem(this.key);
    if (refresh && !local) {
      request('POST', '/api/auth/logout/', null, { refresh }).catch(() => {});
    }
  }

  /**
   * Trades the refresh token for a new access token. Concurrent callers share one request.
   * Returns the new token, or null (and ends the session) when the refresh token is refused.
   */
  renew() {
    if (!this.renewing) {
      this.renewing = (async () => {
        try {
          if (!this.refreshToken) return null;
          // Refresh tokens rotate: the answer carries the next one, and the one sent is used up.
          const { access, refresh } = await request('POST', '/api/auth/refresh/', null, { refresh: this.refreshToken });
          this.access = access;
          if (refresh) this.refreshToken = refresh;
          this.save();
          return access;
        } catch (e) {
          if (e instanceof ApiError && (e.status === 401 || e.status === 400)) {
            this.logout(true);
            this.onExpired();
            return null;
          }
          throw e;
        } finally {
          this.renewing = null;
        }
      })();
    }
    return this.renewing;
  }

  /** Every row of a paginated list (`{count, next, previous, results}`), page after page. */
  async all(path) {
    const rows = [];
    const sep = path.includes('?') ? '&' : '?';
    for (let page = 1; ; page += 1) {
      const body = await this.api('GET', `${path}${sep}page_size=100&page=${page}`);
      rows.push(...body.results);
      if (!body.next) return rows;
    }
  }

  /** A REST call as the logged-in user; a 401 renews the token once and retries. */
  async api(method, path, body) {
    try {
      return await request(method, path, this.access, body);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || !this.refreshToken) throw e;
      const access = await this.renew();
      if (!access) throw e;
      return request(method, path, access, body);
    }
  }
}

async function request(method, path, token, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  // A form (a file upload) goes as multipart, its boundary set by the browser.
  const form = typeof FormData !== 'undefined' && body instanceof FormData;
  if (body !== undefined && !form) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined || form ? body : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const detail = data && typeof data === 'object' && data.detail ? data.detail : `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, detail, data);
  }
  return data;
}

/** "3 s", "4 min", "2 h 5 min", "3 d" from a number of seconds. */
export function duration(secs) {
  if (typeof secs !== 'number' || !Number.isFinite(secs)) return '–';
  if (secs < 60) return `${secs < 10 ? secs.toFixed(1) : Math.round(secs)} s`;
  const m = Math.floor(secs / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d`;
}

/** A timestamp as local time of day (today) or date and time. */
export function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

/** The elements Markdown renders to that a page shows; anything else shows as its text. */
const MARKDOWN_TAGS = new Set(['P', 'STRONG', 'EM', 'CODE', 'PRE', 'A', 'UL', 'OL', 'LI', 'BLOCKQUOTE',
  'DEL', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'HR', 'BR']);

/**
 * The hub's rendering of Markdown (already cleaned by the hub: see the API guide's "Markdown and
 * mentions") as nodes built here, element by element: only the tags above, only `href`s that
 * are http(s), mailto or relative, and no other attribute. The HTML is parsed into an inert
 * document, never into the page.
 */
export function markdownNodes(html) {
  const parsed = new DOMParser().parseFromString(html, 'text/html');
  const copy = (node) => {
    if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.data);
    if (node.nodeType !== Node.ELEMENT_NODE) return null;
    if (node.tagName === 'INPUT') return document.createTextNode(node.hasAttribute('checked') ? '☑ ' : '☐ ');
    if (!MARKDOWN_TAGS.has(node.tagName)) return document.createTextNode(node.textContent);
    const out = document.createElement(node.tagName.toLowerCase());
    if (node.tagName === 'A') {
      const href = node.getAttribute('href') ?? '';
      if (/^(https?:|mailto:)/i.test(href) || !/^[a-z][a-z0-9+.-]*:/i.test(href)) out.setAttribute('href', href);
      out.setAttribute('rel', 'noopener noreferrer nofollow');
    }
    for (const child of node.childNodes) {
      const c = copy(child);
      if (c) out.append(c);
    }
    return out;
  };
  return [...parsed.body.childNodes].map(copy).filter(Boolean);
}

/** The time zone exact times are shown in: the user's own (`time_zone`), else the browser's. */
let zone;

/** Shows exact times in `timeZone` (an IANA name) from now on; none: the browser's. */
export function setTimeZone(timeZone) {
  try {
    zone = timeZone ? new Intl.DateTimeFormat('en', { timeZone }).resolvedOptions().timeZone : undefined;
  } catch {
    zone = undefined;
  }
}

/** `iso` relative to now, as people say it: "just now", "5 minutes ago", "yesterday". */
export function ago(iso, now = Date.now()) {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return '';
  const seconds = Math.round((t - now) / 1000);
  if (Math.abs(seconds) < 45) return 'just now';
  const words = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
  for (const [unit, size] of [['year', 31_536_000], ['month', 2_592_000], ['week', 604_800], ['day', 86_400], ['hour', 3_600], ['minute', 60]]) {
    if (Math.abs(seconds) >= size) return words.format(Math.round(seconds / size), unit);
  }
  return words.format(Math.round(seconds / 60), 'minute');
}

/** `iso` exactly, in the user's time zone, named: "28 Nov 2026, 14:41:21 (Europe/Berlin)". */
export function exact(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium', timeZone: zone });
  return `${format.format(d)} (${format.resolvedOptions().timeZone})`;
}

/** A `<time>` saying `iso` relative to now (kept current), the exact time on hover. */
export function when(iso, attrs = {}) {
  return el('time', { ...attrs, datetime: iso ?? '', title: exact(iso), dataset: { relative: 'true' } }, ago(iso));
}

/** Brings every relative time on the page up to date. */
export function refreshTimes() {
  for (const t of document.querySelectorAll('time[data-relative]')) t.textContent = ago(t.dateTime);
}

/** Wires a login form: calls `done()` after a successful login, shows errors in place. */
export function loginForm(session, done) {
  const form = byTestId('login-form');
  const error = byTestId('login-error');
  const submit = byTestId('login-submit');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    try {
      await session.login(form.elements.username.value.trim(), form.elements.password.value);
      form.elements.password.value = '';
      await done();
    } catch (e) {
      error.textContent = e instanceof ApiError ? e.message : `Cannot reach the hub: ${e.message}`;
    } finally {
      submit.disabled = false;
    }
  });
}

// A notification's timeline (GET /api/notifications/{id}/timeline/), shown by both pages: one
// line per recorded event, oldest first, with its time and a sentence.

const CHANNEL_NAMES = {
  email: 'Email', whatsapp: 'WhatsApp', sms: 'SMS', websocket: 'WebSocket', webhook: 'Webhook',
  push: 'Push', webpush: 'Web Push', fcm: 'FCM', apns: 'APNs',
};

/** A channel's name as people write it: "WhatsApp", "Email". */
export function channelName(channel) {
  return CHANNEL_NAMES[channel] || String(channel ?? '?');
}

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** "in 9 min" or "3 s ago", from now. */
export function relative(iso) {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return '';
  const secs = (t - Date.now()) / 1000;
  return secs >= 0 ? `in ${duration(secs)}` : `${duration(-secs)} ago`;
}

/**
 * One timeline event as `{ text, details }`: a sentence ("Committed: assign by ada", "WhatsApp
 * attempt 1: sent") and the secondary facts (addresses, nodes, errors).
 */
export function describeEvent(e) {
  const step = `Escalation step ${e.escalation?.step ?? '?'}`;
  const policy = e.escalation?.policy ? `policy ${e.escalation.policy}` : null;
  const node = e.node ? `node ${e.node}` : null;
  const list = (xs) => (Array.isArray(xs) ? xs : []);
  switch (e.event) {
    case 'committed': {
      const who = e.actor ? ` by ${e.actor.username ?? `user #${e.actor.id}`}` : '';
      return {
        text: `Committed: ${e.action ?? 'notification'}${who}`,
        details: [e.ticket_event_id != null ? `ticket event #${e.ticket_event_id}` : null],
      };
    }
    case 'pushed': {
      const n = Number(e.sockets) || 0;
      return { text: `Pushed to ${plural(n, 'socket')}${e.node ? ` on node ${e.node}` : ''}`, details: [] };
    }
    case 'acked':
      return { text: 'Acknowledged by a client of the recipient', details: [] };
    case 'read':
      return { text: 'Read by the recipient', details: [] };
    case 'deleted':
      return { text: 'Deleted by the recipient', details: [] };
    case 'delivery_attempt':
      return {
        text: `${channelName(e.channel)} attempt ${e.attempt ?? '?'}: ${e.outcome ?? '?'}`,
        details: [e.address ? `to ${e.address}` : null, e.error ? `error: ${e.error}` : null, node],
      };
    case 'delivery_pending':
      return {
        text: `${channelName(e.channel)} delivery ${String(e.status ?? 'pending').toLowerCase()}, next attempt due`,
        details: [e.address ? `to ${e.address}` : null, `${plural(Number(e.attempts) || 0, 'attempt')} so far`],
      };
    case 'escalation_scheduled': {
      const channels = list(e.channels).map(channelName);
      const also = list(e.also);
      return {
        text: `${step} (${e.escalation?.policy ?? '?'}) scheduled for ${clock(e.due_at)}`,
        details: [
          relative(e.due_at),
          e.unless ? `unless ${e.unless}` : null,
          channels.length ? `on ${channels.join(', ')}` : null,
          also.length ? `also tells ${also.join(', ')}` : null,
          e.status ? `now ${e.status}` : null,
        ],
      };
    }
    case 'scheduled_send_due': {
      const late = Number(e.late_seconds) || 0;
      return {
        text: `Scheduled send #${e.scheduled_send_id ?? '?'} due`,
        details: [late >= 1 ? `fired ${duration(late)} late` : 'fired on time', e.fired_at ? `at ${clock(e.fired_at)}` : null],
      };
    }
    case 'escalation_fired':
      return { text: `${step} fired: ${e.detail ?? ''}`, details: [policy, node] };
    case 'escalation_cancelled':
      return { text: `${step} cancelled: ${e.reason ?? ''}`, details: [policy, node] };
    case 'escalation_failed':
      return { text: `${step} failed: ${e.reason ?? ''}`, details: [policy, node] };
    default: {
      const facts = Object.entries(e)
        .filter(([k, v]) => k !== 'event' && k !== 'at' && v !== null && typeof v !== 'object')
        .map(([k, v]) => `${k} ${v}`);
      return { text: String(e.event ?? 'event').replace(/_/g, ' '), details: facts };
    }
  }
}

/**
 * The timeline answer as a list: `[data-testid=<testid>]` holding one
 * `[data-testid=timeline-event][data-event=<kind>]` per event, each with its time, kind,
 * sentence (`timeline-text`) and facts (`timeline-detail`).
 */
export function timelineView(data, testid = 'timeline') {
  const n = data?.notification || {};
  return timelineFrame(data, testid, {
    head: [
      el('strong', {}, `#${n.id ?? '?'}`), ' ',
      el('span', { class: 'chip' }, n.notification_type ?? '?'), ' ',
      n.ticket ? el('span', { class: 'chip' }, n.ticket.key) : null, ' ',
      el('span', {}, n.title ?? ''),
      el('span', { class: 'muted' },
        ` · for ${n.username ?? `user #${n.user_id ?? '?'}`} · seq ${n.seq ?? '–'} · ${n.is_read ? 'read' : 'unread'}`),
    ],
    describe: describeEvent,
    kind: true,
    empty: 'No events are recorded for this notification.',
  });
}

/**
 * A notification's timeline: `head` above one line per event, each told by `describe(event)`
 * (`{text, details}`), with the event's name beside it if `kind`.
 */
function timelineFrame(data, testid, { head, describe, kind, empty }) {
  const n = data?.notification || {};
  const events = Array.isArray(data?.events) ? data.events : [];
  const items = events.map((e) => {
    const { text, details } = describe(e);
    const facts = details.filter(Boolean);
    return el('li', { testid: 'timeline-event', dataset: { event: e.event ?? '' } },
      el('time', { class: 'when', datetime: e.at ?? '', title: e.at ?? '' }, clock(e.at)),
      kind ? el('span', { class: 'chip kind' }, e.event ?? '?') : null,
      el('span', { class: 'what', testid: 'timeline-text' }, text),
      facts.length ? el('div', { class: 'facts muted', testid: 'timeline-detail' }, facts.join(' · ')) : null);
  });
  return el('div', { class: 'timeline-view', testid, dataset: { notificationId: n.id ?? '', events: events.length } },
    el('div', { class: 'timeline-head', testid: `${testid}-head` }, head),
    items.length
      ? el('ol', { class: 'timeline' }, items)
      : el('p', { class: 'empty' }, empty));
}

// Words for people: the demo client shows statuses, events and timelines as sentences, where
// the operator page keeps the hub's own names.

const STATUS_WORDS = {
  NEW: 'New',
  OPEN: 'Open',
  ASSIGNED: 'Assigned',
  IN_PROGRESS: 'In progress',
  FINISHED: 'Finished',
  APPROVED: 'Approved',
  REJECTED: 'Rejected',
};

const PRIORITY_WORDS = { LOW: 'Low', MEDIUM: 'Medium', HIGH: 'High', CRITICAL: 'Critical' };

const CATEGORY_WORDS = { BUG: 'Bug', FEATURE: 'Feature', SUPPORT: 'Support', OTHER: 'Other' };

const EVENT_WORDS = {
  ticket_created: 'Ticket created',
  ticket_opened: 'Ticket opened',
  ticket_assigned: 'Ticket assigned',
  work_started: 'Work started',
  work_finished: 'Work finished',
  ticket_approved: 'Ticket approved',
  ticket_rejected: 'Ticket rejected',
  comment_added: 'New comment',
  ticket_updated: 'Ticket changed',
  ticket_mentioned: 'You were mentioned',
  user_registered: 'New account',
};

/** A snake_case or UPPER_CASE name as words: "escalation_fired" → "Escalation fired". */
export function humanize(name) {
  const words = String(name ?? '').replace(/[_-]+/g, ' ').trim().toLowerCase();
  return words ? words[0].toUpperCase() + words.slice(1) : '';
}

/** A ticket status as people say it: "In progress". */
export function statusName(status) {
  return STATUS_WORDS[status] || humanize(status);
}

/** A priority as people say it: "Critical". */
export function priorityName(priority) {
  return PRIORITY_WORDS[priority] || humanize(priority);
}

/** A category as people say it: "Bug". */
export function categoryName(category) {
  return CATEGORY_WORDS[category] || humanize(category);
}

/** A notification type as people say it: "Ticket created". */
export function eventName(type) {
  return EVENT_WORDS[type] || humanize(type);
}

const ACTION_WORDS = {
  create: 'created the ticket',
  open_ticket: 'opened the ticket',
  assign: 'assigned the ticket',
  start_work: 'started work',
  finish_work: 'finished work',
  approve: 'approved the work',
  reject: 'rejected the work',
  comment: 'commented',
  edit: 'changed the ticket',
};

/**
 * One timeline event for the person it was sent to, as `{ text, details }`: "Delivered to 1
 * device", "Email sent", with no node names or internal ids. `nameOf(actor)` names a user.
 */
export function describeEventForPeople(e, nameOf = (u) => u?.username) {
  const list = (xs) => (Array.isArray(xs) ? xs : []);
  switch (e.event) {
    case 'committed': {
      const who = e.actor ? nameOf(e.actor) : null;
      const did = ACTION_WORDS[e.action] || (e.action ? humanize(e.action).toLowerCase() : 'sent it');
      return { text: who ? `${who} ${did}` : `Sent: ${did}`, details: [] };
    }
    case 'pushed': {
      const n = Number(e.sockets) || 0;
      return { text: n ? `Delivered to ${plural(n, 'device')}` : 'No device was online', details: [] };
    }
    case 'acked':
      return { text: 'Received by the app', details: [] };
    case 'read':
      return { text: 'Read', details: [] };
    case 'deleted':
      return { text: 'Deleted', details: [] };
    case 'delivery_attempt': {
      const ok = /^(sent|delivered|ok)$/i.test(String(e.outcome ?? ''));
      return {
        text: ok ? `${channelName(e.channel)} sent` : `${channelName(e.channel)} did not go through${e.attempt ? ` (attempt ${e.attempt})` : ''}`,
        details: [e.address ? `to ${e.address}` : null],
      };
    }
    case 'delivery_pending':
      return {
        text: `${channelName(e.channel)} will be tried again`,
        details: [e.address ? `to ${e.address}` : null],
      };
    case 'escalation_scheduled': {
      const channels = list(e.channels).map(channelName);
      return {
        text: `A reminder is due ${clock(e.due_at)}${e.unless === 'read' ? ' unless it is read' : ''}`,
        details: [relative(e.due_at), channels.length ? `by ${channels.join(', ')}` : null],
      };
    }
    case 'scheduled_send_due': {
      const late = Number(e.late_seconds) || 0;
      return { text: late >= 1 ? `Scheduled; sent ${duration(late)} late` : 'Scheduled; sent on time', details: [] };
    }
    case 'escalation_fired':
      return { text: 'Reminder sent', details: [] };
    case 'escalation_cancelled':
      return { text: 'Reminder no longer needed', details: [] };
    case 'escalation_failed':
      return { text: 'Reminder could not be sent', details: [] };
    default:
      return { text: humanize(e.event ?? 'event'), details: [] };
  }
}

/**
 * A timeline for the person it was sent to: like `timelineView`, with the sentences of
 * `describeEventForPeople`, no internal numbers or node names, and users named by `nameOf`.
 */
export function peopleTimelineView(data, testid = 'timeline', nameOf = undefined) {
  const n = data?.notification || {};
  return timelineFrame(data, testid, {
    head: [
      el('span', { class: 'chip' }, eventName(n.notification_type)), ' ',
      n.ticket ? el('span', { class: 'chip' }, n.ticket.key) : null, ' ',
      el('span', {}, n.title ?? ''),
      el('span', { class: 'muted' }, ` · ${n.is_read ? 'read' : 'unread'}`),
    ],
    describe: (e) => describeEventForPeople(e, nameOf),
    kind: false,
    empty: 'Nothing is recorded about this notification yet.',
  });
}

// Charts drawn by the page itself as inline SVG: no library, nothing loaded from elsewhere.
// Colours come from classes in app.css (the pages' content security policy allows no inline
// styles).

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Like `el`, for an SVG element: every attribute but `class` and `dataset` is set as is. */
export function svgEl(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    } else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

/**
 * A bar chart: one group of bars per entry of `groups` (`{label, values: {key: number|null}}`),
 * one bar per series (`{key, label}`, coloured by the class `series-<key>`). `format` writes a
 * value; `max` fixes the top of the scale (100 for percentages), which is otherwise the largest
 * value. The SVG is an image (`role="img"`) named by its title and described by every value in
 * words; a missing value draws no bar. Returns a `<figure>` with the chart (in a scrolling
 * region when wide) and its legend.
 */
export function barChart({ id, title, caption, groups, series, format = String, max }) {
  const bar = 16;
  const gap = 3;
  const left = 56;
  const top = 14;
  const plot = 150;
  const below = 40;
  const inner = series.length * (bar + gap) - gap;
  const slot = Math.max(92, inner + 24);
  const width = Math.max(360, left + groups.length * slot + 8);
  const height = top + plot + below;
  const numbers = groups
    .flatMap((g) => series.map((s) => g.values[s.key]))
    .filter((v) => typeof v === 'number' && Number.isFinite(v));
  const scale = max ?? Math.max(1, ...numbers);
  const words = (v) => (typeof v === 'number' && Number.isFinite(v) ? format(v) : 'none');
  const described = groups.length
    ? groups.map((g) => `${g.label}: ${series.map((s) => `${s.label} ${words(g.values[s.key])}`).join(', ')}`).join('; ')
    : 'Nothing to show.';
  const svg = svgEl('svg', {
    role: 'img',
    class: 'chart-svg',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    'aria-labelledby': `${id}-title ${id}-desc`,
    dataset: { chart: id, testid: `chart-${id}` },
  },
  svgEl('title', { id: `${id}-title` }, title),
  svgEl('desc', { id: `${id}-desc` }, described),
  svgEl('line', { class: 'chart-axis', x1: left, x2: width - 4, y1: top + plot, y2: top + plot }),
  svgEl('line', { class: 'chart-grid', x1: left, x2: width - 4, y1: top, y2: top }),
  svgEl('text', { class: 'chart-tick', x: left - 6, y: top + 4, 'text-anchor': 'end' }, format(scale)),
  svgEl('text', { class: 'chart-tick', x: left - 6, y: top + plot, 'text-anchor': 'end' }, format(0)),
  groups.map((g, i) => {
    const x = left + i * slot + (slot - inner) / 2;
    const [first, second] = String(g.label).split(' · ');
    return svgEl('g', { class: 'chart-group', dataset: { group: g.label } },
      series.map((s, j) => {
        const v = g.values[s.key];
        if (typeof v !== 'number' || !Number.isFinite(v)) return null;
        const h = v > 0 ? Math.max(1, (Math.min(v, scale) / scale) * plot) : 0;
        return svgEl('rect', {
          class: `chart-bar series-${s.key}`,
          x: x + j * (bar + gap),
          y: top + plot - h,
          width: bar,
          height: h,
          dataset: { series: s.key, value: v, group: g.label },
        }, svgEl('title', {}, `${g.label} · ${s.label}: ${format(v)}`));
      }),
      svgEl('text', { class: 'chart-label', x: x + inner / 2, y: top + plot + 15, 'text-anchor': 'middle' }, first),
      second ? svgEl('text', { class: 'chart-label', x: x + inner / 2, y: top + plot + 30, 'text-anchor': 'middle' }, second) : null);
  }));
  return el('figure', { class: 'chart', dataset: { chart: id } },
    el('figcaption', {}, el('strong', {}, title), caption ? el('span', { class: 'muted' }, ` · ${caption}`) : null),
    el('div', { class: 'scroll-x', tabindex: '0', role: 'region', 'aria-label': `${title} (chart)` }, svg),
    el('ul', { class: 'chart-legend' }, series.map((s) => el('li', {},
      el('span', { class: `swatch series-${s.key}`, 'aria-hidden': 'true' }), s.label))));
}
