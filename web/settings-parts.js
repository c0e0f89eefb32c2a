// Parts of the settings page: what each form says back (errors in people's words beside the
// form, successes in a polite live region), and the notification choices as a grid of kinds by
// channels (GET and PUT /api/notifications/preferences/).

import { el, byTestId, ApiError, channelName, eventName } from '/assets/common.js';

/** A field's name at the start of the hub's `detail` ("display_name: …"). */
const FIELD = /^([a-z_]+(?:\.[a-z_]+)*): /;

function sentence(text) {
  const t = String(text ?? '').trim();
  return t ? t[0].toUpperCase() + t.slice(1) : t;
}

/**
 * What went wrong, for people: `{ field, text }`, where `field` is the request's field the hub
 * named (or null) and `text` says what happened without the hub's field names or paths.
 */
export function explain(e) {
  if (!(e instanceof ApiError)) {
    return { field: null, text: 'The hub cannot be reached just now. Check your connection and try again.' };
  }
  let text = e.message;
  let field = null;
  const named = FIELD.exec(text);
  if (named) {
    [, field] = named;
    text = text.slice(named[0].length);
  }
  if (e.status === 401) return { field: null, text: 'Your session has ended. Log in again to go on.' };
  if (e.status === 429) {
    const wait = /(\d+) seconds?/.exec(text);
    if (/code was sent lately/i.test(text)) return { field, text: sentence(text) };
    return { field, text: wait ? `Too many tries just now. Try again in ${wait[1]} seconds.` : 'Too many tries just now. Try again in a minute.' };
  }
  if (e.status === 503 && /identity provider/i.test(text)) {
    return { field, text: 'This hub signs you in through your organisation, so your password is changed there.' };
  }
  if (e.status === 503) return { field, text: 'The hub is busy just now. Try again in a moment.' };
  if (e.status >= 500) return { field, text: 'Something went wrong on the hub. Try again in a moment.' };
  return { field, text: sentence(text) };
}

/**
 * The answer area of one form: `[data-testid=<prefix>-error]` (role="alert") and
 * `[data-testid=<prefix>-status]` (a polite live region), and the fields marked invalid.
 */
export class Feedback {
  constructor(prefix, root = document) {
    this.error = byTestId(`${prefix}-error`, root);
    this.status = byTestId(`${prefix}-status`, root);
    this.marked = [];
  }

  clear() {
    this.error.textContent = '';
    if (this.status) this.status.textContent = '';
    for (const input of this.marked) {
      input.removeAttribute('aria-invalid');
      const ids = (input.getAttribute('aria-describedby') || '').split(' ').filter((id) => id && id !== this.error.id);
      if (ids.length) input.setAttribute('aria-describedby', ids.join(' '));
      else input.removeAttribute('aria-describedby');
    }
    this.marked = [];
  }

  /** Says it worked. */
  ok(text) {
    this.clear();
    if (this.status) this.status.textContent = text;
  }

  /**
   * Says what went wrong: `problem` is a sentence or an error (see `explain`). The field the
   * hub named (found in `fields`, by name), or `input`, is marked invalid, described by the
   * error and focused.
   */
  fail(problem, { input = null, fields = {} } = {}) {
    this.clear();
    const { field, text } = typeof problem === 'string' ? { field: null, text: problem } : explain(problem);
    this.error.textContent = text;
    const target = input || (field && (fields[field] || fields[field.split('.')[0]])) || null;
    if (target) {
      if (!this.error.id) this.error.id = `${this.error.dataset.testid}-text`;
      target.setAttribute('aria-invalid', 'true');
      const ids = (target.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
      if (!ids.includes(this.error.id)) target.setAttribute('aria-describedby', [...ids, this.error.id].join(' '));
      this.marked.push(target);
      target.focus();
    }
  }
}

/** Disables `button` while `work` runs, and answers what it answers. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

/** Channels as people name them, where the shared names have none. */
const CHANNEL_WORDS = { voice: 'Calls', slack: 'Slack', mattermost: 'Mattermost', teams: 'Teams' };

/** A channel's name for people: "Email", "Calls", "Slack". */
export function channelLabel(channel) {
  return CHANNEL_WORDS[channel] || channelName(channel);
}

/** The channels people know first, in this order; others follow by name. */
const CHANNEL_ORDER = ['email', 'push', 'sms', 'whatsapp', 'voice'];

/** The key of a grid cell's test id: `*` (every kind) is `all`. */
const cellKey = (type) => (type === '*' ? 'all' : type);

/**
 * The notification choices: one row per kind of notification (the first, `*`, is the default
 * for every kind), one column per channel a person can switch, a checkbox in each cell. Changes
 * wait for "Save", which sends only what changed.
 */
export class PreferencesGrid {
  constructor(session) {
    this.session = session;
    this.server = null;
    this.pending = { channels: {}, types: {} };
    this.form = byTestId('preferences-form');
    this.feedback = new Feedback('preferences');
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.save();
    });
    this.form.addEventListener('change', (ev) => {
      if (ev.target instanceof HTMLInputElement && ev.target.type === 'checkbox') this.changed(ev.target);
    });
  }

  async load() {
    this.server = await this.session.api('GET', '/api/notifications/preferences/');
    this.pending = { channels: {}, types: {} };
    this.render();
  }

  channels() {
    const names = Object.keys(this.server?.channels || {});
    const known = CHANNEL_ORDER.filter((c) => names.includes(c));
    return [...known, ...names.filter((c) => !known.includes(c)).sort()];
  }

  types() {
    const list = [...(this.server?.notification_types || [])];
    for (const t of Object.keys(this.server?.types || {})) if (!list.includes(t)) list.push(t);
    return list;
  }

  /** A channel's default, as it will be saved. */
  base(channel) {
    return channel in this.pending.channels ? this.pending.channels[channel] : this.server.channels[channel] !== false;
  }

  /** A kind's own choice for a channel as stored, if it has one. */
  stored(type, channel) {
    const v = this.server.types?.[type]?.[channel];
    return typeof v === 'boolean' ? v : undefined;
  }

  /** Whether a cell is on, with the changes not saved yet. */
  value(type, channel) {
    if (type === '*') return this.base(channel);
    const own = this.pending.types[type]?.[channel] ?? this.stored(type, channel);
    return own ?? this.base(channel);
  }

  cell(type, rowName, channel) {
    return el('td', {},
      el('label', { class: 'pref-cell' },
        el('input', {
          type: 'checkbox',
          testid: `pref-${cellKey(type)}-${channel}`,
          dataset: { type, channel },
          checked: this.value(type, channel),
        }),
        el('span', { class: 'cell-name' }, channelLabel(channel)),
        el('span', { class: 'sr-only' }, ` for ${rowName}`)));
  }

  render() {
    const channels = this.channels();
    byTestId('preferences-head').replaceChildren(el('tr', {},
      el('th', { scope: 'col' }, 'Kind of notification'),
      channels.map((c) => el('th', { scope: 'col' }, channelLabel(c)))));
    const row = (type, name) => el('tr', { testid: `pref-row-${cellKey(type)}`, class: type === '*' ? 'pref-default' : null },
      el('th', { scope: 'row' }, name),
      channels.map((c) => this.cell(type, name, c)));
    byTestId('preferences-body').replaceChildren(
      row('*', 'Every kind (default)'),
      ...this.types().map((t) => row(t, eventName(t))));
    this.showPending();
  }

  /** Shows every cell's value as it will be saved. */
  refresh() {
    for (const input of this.form.querySelectorAll('input[type="checkbox"][data-type]')) {
      input.checked = this.value(input.dataset.type, input.dataset.channel);
    }
    this.showPending();
  }

  count() {
    return Object.keys(this.pending.channels).length
      + Object.values(this.pending.types).reduce((n, per) => n + Object.keys(per).length, 0);
  }

  showPending() {
    const n = this.count();
    byTestId('preferences-pending').textContent = n ? `${n} unsaved ${n === 1 ? 'change' : 'changes'}` : '';
  }

  changed(input) {
    const { type, channel } = input.dataset;
    const on = input.checked;
    if (type === '*') {
      if (on === (this.server.channels[channel] !== false)) delete this.pending.channels[channel];
      else this.pending.channels[channel] = on;
    } else {
      const per = this.pending.types[type] || {};
      if (on === (this.stored(type, channel) ?? this.base(channel))) delete per[channel];
      else per[channel] = on;
      if (Object.keys(per).length) this.pending.types[type] = per;
      else delete this.pending.types[type];
    }
    // A kind without a choice of its own follows the default.
    this.refresh();
    this.feedback.clear();
  }

  async save() {
    const n = this.count();
    if (!n) {
      this.feedback.ok('Nothing to save: no choice changed.');
      return;
    }
    const body = {};
    if (Object.keys(this.pending.channels).length) body.channels = this.pending.channels;
    if (Object.keys(this.pending.types).length) body.types = this.pending.types;
    try {
      this.server = await busy(byTestId('preferences-save'),
        () => this.session.api('PUT', '/api/notifications/preferences/', body));
      this.pending = { channels: {}, types: {} };
      this.refresh();
      this.feedback.ok(`Saved ${n} ${n === 1 ? 'change' : 'changes'}. Your notifications follow them from now on.`);
    } catch (e) {
      this.feedback.fail(e);
    }
  }
}
