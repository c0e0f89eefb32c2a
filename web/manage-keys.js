// Servers and sends later, on the administration page: API keys (/api/admin/api-keys/; the
// whole key shown once, when made; revoking one asks first) and the notifications scheduled to
// go later (/api/notifications/scheduled/), each of which can be cancelled.

import { el, byTestId, ApiError, when, exact, channelName } from '/assets/common.js';
import { Feedback, busy } from '/assets/settings-parts.js';
import { ROLE_WORDS, rowMessages, rowFeedback, tag, copyField, focusAfter, reloadButton } from '/assets/manage-parts.js';

const SCOPE_WORDS = {
  'notifications:send': 'sends notifications',
  'tickets:write': 'files and changes tickets',
  'admin:read': 'reads the audit trail and other admin lists',
};

const KEY_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** "a, b and c". */
function listed(words) {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words.at(-1)}`;
}

export class ApiKeys {
  constructor(ctx) {
    this.ctx = ctx;
    this.items = [];
    this.form = byTestId('add-key-form');
    this.form.addEventListener('submit', (ev) => this.create(ev));
    byTestId('key-copy').addEventListener('click', () => copyField(byTestId('key-value'), byTestId('key-copy-status')));
    byTestId('key-done').addEventListener('click', () => {
      byTestId('key-value').value = '';
      byTestId('key-copy-status').textContent = '';
      byTestId('key-box').hidden = true;
      this.form.elements.name.focus();
    });
  }

  async load() {
    const feedback = new Feedback('keys');
    try {
      this.items = await this.ctx.session.api('GET', '/api/admin/api-keys/');
      this.render();
    } catch (e) {
      feedback.fail(e);
    }
  }

  render() {
    byTestId('key-list').replaceChildren(...this.items.map((k) => this.row(k)));
    byTestId('keys-empty').hidden = this.items.length > 0;
  }

  row(k) {
    const scopes = k.scopes.map((s) => SCOPE_WORDS[s] || s);
    return el('li', { class: 'manage-item', testid: 'api-key', dataset: { name: k.name, revoked: String(Boolean(k.revoked_at)) } },
      el('div', { class: 'item-head' },
        el('strong', { class: 'mono' }, k.name), ' ',
        k.revoked_at ? tag('Revoked', 'bad', 'api-key-state') : tag('In use', 'ok', 'api-key-state')),
      el('p', { class: 'item-facts' }, `It ${listed(scopes) || 'may do nothing'}, acting as ${k.username}.`),
      el('p', { class: 'muted item-facts' },
        'Starts with ', el('code', {}, k.prefix), '. Made ', when(k.created_at),
        k.last_used_at ? ['; last used ', when(k.last_used_at)] : '; never used yet',
        k.revoked_at ? ['; revoked ', when(k.revoked_at)] : null, '.'),
      k.revoked_at
        ? null
        : el('div', { class: 'item-buttons' }, el('button', {
          type: 'button', class: 'small danger', testid: 'api-key-revoke', 'aria-label': `Revoke the key ${k.name}`,
          onclick: (ev) => this.revoke(ev.currentTarget, k),
        }, 'Revoke…')),
      rowMessages(`api-key-${k.name.replace(/[^A-Za-z0-9_-]/g, '_')}`));
  }

  async revoke(button, k) {
    const yes = await this.ctx.confirm({
      title: `Revoke the key ${k.name}?`,
      message: 'Servers using it are refused from now on, and the notifications it scheduled are cancelled. '
        + 'This cannot be undone: a server that still needs to call the hub gets a new key.',
      confirm: 'Revoke the key',
    });
    if (!yes) return;
    const row = button.closest('li');
    try {
      await busy(button, () => this.ctx.session.api('DELETE', `/api/admin/api-keys/${encodeURIComponent(k.name)}/`));
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        rowFeedback(row).fail(e);
        return;
      }
    }
    k.revoked_at = k.revoked_at || new Date().toISOString();
    const next = focusAfter(row, this.form.elements.name);
    const fresh = this.row(k);
    row.replaceWith(fresh);
    rowFeedback(fresh).ok(`Revoked: ${k.name} no longer works.`);
    next();
    this.ctx.emit('keys');
  }

  async create(ev) {
    ev.preventDefault();
    const f = this.form.elements;
    const feedback = new Feedback('add-key');
    const name = f.name.value.trim();
    const scopes = [...this.form.querySelectorAll('input[name="scope"]:checked')].map((c) => c.value);
    if (!KEY_NAME.test(name)) {
      return feedback.fail('A key name is 1 to 64 letters, digits, - _ or . (no spaces), such as billing-server.', { input: f.name });
    }
    if (!scopes.length) {
      return feedback.fail('Choose at least one thing the key may do.', { input: this.form.querySelector('input[name="scope"]') });
    }
    const body = { name, scopes };
    if (f.user.value.trim()) body.user = f.user.value.trim();
    try {
      const made = await busy(byTestId('add-key-submit'), () => this.ctx.session.api('POST', '/api/admin/api-keys/', body));
      this.form.reset();
      const { key, ...stored } = made;
      this.items = [...this.items.filter((k) => k.name !== stored.name), stored];
      this.render();
      feedback.ok(`Made the key ${stored.name}.`);
      const input = byTestId('key-value');
      input.value = key;
      byTestId('key-copy-status').textContent = '';
      byTestId('key-box').hidden = false;
      input.focus();
      input.select();
    } catch (e) {
      feedback.fail(e, { fields: { name: f.name, scopes: this.form.querySelector('input[name="scope"]'), user: f.user } });
    }
    return undefined;
  }
}

const SEND_STATES = { PENDING: ['Waiting', 'warn'], FIRING: ['Sending now', 'ok'] };

export class ScheduledSends {
  constructor(ctx) {
    this.ctx = ctx;
    this.items = [];
    reloadButton(byTestId('scheduled-reload'), 'scheduled', () => this.load(),
      () => `The list is up to date: ${this.items.length === 1 ? '1 send waits' : `${this.items.length} sends wait`}.`);
    ctx.on('people', () => this.render());
    // A revoked key's sends were cancelled with it.
    ctx.on('keys', () => this.load());
  }

  async load() {
    const feedback = new Feedback('scheduled');
    try {
      this.items = await this.ctx.session.all('/api/notifications/scheduled/');
      feedback.clear();
      this.render();
    } catch (e) {
      feedback.fail(e);
    }
  }

  render() {
    byTestId('scheduled-list').replaceChildren(...this.items.map((s) => this.row(s)));
    byTestId('scheduled-empty').hidden = this.items.length > 0;
  }

  recipients(s) {
    if (s.user_ids) return listed(s.user_ids.map((id) => this.ctx.nameOf(id))) || 'nobody';
    if (s.role) return `every ${(ROLE_WORDS[s.role] || s.role).toLowerCase()}`;
    if (s.oncall) return `whoever is on call on ${s.oncall}`;
    return 'nobody';
  }

  row(s) {
    const [word, kind] = SEND_STATES[s.status] || [s.status, 'plain'];
    const by = s.api_key ? `the API key ${s.api_key}` : this.ctx.nameOf(s.created_by);
    const channels = s.channels.length ? `, also by ${listed(s.channels.map(channelName))}` : '';
    return el('li', { class: 'manage-item', testid: 'scheduled-send', dataset: { id: s.id, status: s.status } },
      el('div', { class: 'item-head' }, el('strong', {}, s.title), ' ', tag(word, kind, 'scheduled-state')),
      el('p', { class: 'item-facts' }, 'Goes ', when(s.send_at), ` (${exact(s.send_at)}) to ${this.recipients(s)}${channels}.`),
      s.message ? el('p', { class: 'muted item-facts item-message-text' }, s.message) : null,
      el('p', { class: 'muted item-facts' }, `Scheduled by ${by} `, when(s.created_at), '.'),
      s.status === 'PENDING'
        ? el('div', { class: 'item-buttons' }, el('button', {
          type: 'button', class: 'small danger', testid: 'scheduled-cancel', 'aria-label': `Cancel this send: “${s.title}”`,
          onclick: (ev) => this.cancel(ev.currentTarget, s),
        }, 'Cancel this send'))
        : null,
      rowMessages(`scheduled-${s.id}`));
  }

  async cancel(button, s) {
    const row = button.closest('li');
    const feedback = new Feedback('scheduled');
    try {
      await busy(button, () => this.ctx.session.api('DELETE', `/api/notifications/scheduled/${s.id}/`));
    } catch (e) {
      if (e instanceof ApiError && (e.status === 409 || e.status === 404)) {
        await this.load();
        feedback.fail(e.status === 409 ? `${e.message} The list is up to date now.` : 'This send is gone already. The list is up to date now.');
        byTestId('scheduled-reload').focus();
        return;
      }
      rowFeedback(row).fail(e);
      return;
    }
    const next = focusAfter(row, byTestId('scheduled-reload'));
    this.items = this.items.filter((x) => x.id !== s.id);
    row.remove();
    byTestId('scheduled-empty').hidden = this.items.length > 0;
    feedback.ok(`Cancelled: “${s.title}” will not be sent.`);
    next();
  }
}
