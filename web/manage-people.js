// People on the administration page: everyone with an account, found by name, a page at a
// time; each person's role, whether they may log in, a new password, and erasing them for good.
// "Add a person" makes an account (POST /api/users/).

import { el, byTestId, ApiError, when } from '/assets/common.js';
import { Feedback, busy } from '/assets/settings-parts.js';
import { ROLE_WORDS, aRole, roleOptions, rowMessages, rowFeedback, tag, focusAfter, reloadButton } from '/assets/manage-parts.js';

const PAGE = 20;

/** An API key's own user (`key:<name>`): nobody logs in as it; the key is managed instead. */
const isKeyUser = (u) => /^key:/.test(u.username);

/** An erased person's remains (`erased-<id>`). */
const isErased = (u) => u.username === `erased-${u.id}`;

export class People {
  constructor(ctx) {
    this.ctx = ctx;
    this.page = 1;
    this.list = byTestId('people-list');
    this.filter = byTestId('people-filter');
    byTestId('add-person-form').addEventListener('submit', (ev) => this.add(ev));
    this.filter.addEventListener('input', () => {
      this.page = 1;
      this.render();
    });
    byTestId('people-prev').addEventListener('click', () => this.turn(-1));
    byTestId('people-next').addEventListener('click', () => this.turn(1));
    reloadButton(byTestId('people-reload'), 'people', () => this.load(), () => `The list is up to date: ${byTestId('people-count').textContent}.`);
    // An approved join request may be someone this page has not seen yet.
    ctx.on('members', () => this.load());
  }

  /** Everyone: active and deactivated people (`GET /api/users/?is_active=all`, page after
   * page); erased accounts are left out (they keep only their place in old records). */
  async load() {
    const feedback = new Feedback('people');
    try {
      const everyone = await this.ctx.session.all('/api/users/?is_active=all');
      this.ctx.people = new Map(everyone.filter((u) => !isErased(u)).sort((a, b) => a.id - b.id).map((u) => [u.id, u]));
      this.render();
      this.ctx.emit('people');
    } catch (e) {
      feedback.fail(e);
    }
  }

  /** The people the filter box matches (by username, name or email), in id order. */
  matching() {
    const words = this.filter.value.trim().toLowerCase();
    const all = [...this.ctx.people.values()];
    if (!words) return all;
    return all.filter((u) => [u.username, u.display_name, u.email].some((f) => String(f ?? '').toLowerCase().includes(words)));
  }

  render() {
    const found = this.matching();
    const total = this.ctx.people.size;
    const pages = Math.max(1, Math.ceil(found.length / PAGE));
    this.page = Math.min(this.page, pages);
    const shown = found.slice((this.page - 1) * PAGE, this.page * PAGE);
    this.list.replaceChildren(...shown.map((u) => this.row(u)));
    const count = byTestId('people-count');
    if (!this.filter.value.trim()) count.textContent = total === 1 ? '1 person' : `${total} people`;
    else if (!found.length) count.textContent = `No one of ${total} matches “${this.filter.value.trim()}”.`;
    else count.textContent = `${found.length} of ${total} ${total === 1 ? 'person matches' : 'people match'}`;
    byTestId('people-pager').hidden = pages <= 1;
    byTestId('people-page').textContent = `Page ${this.page} of ${pages}`;
    byTestId('people-prev').disabled = this.page <= 1;
    byTestId('people-next').disabled = this.page >= pages;
  }

  turn(by) {
    this.page += by;
    this.render();
    byTestId('people-page').focus();
  }

  row(u) {
    const me = u.id === this.ctx.me.id;
    const name = u.display_name || u.username;
    const key = `person-${u.id}`;
    const head = el('div', { class: 'item-head' },
      el('strong', { id: `${key}-name`, testid: 'person-name' }, name),
      name !== u.username ? el('span', { class: 'muted' }, ` (${u.username})`) : null,
      ' ', tag(ROLE_WORDS[u.role] || u.role, 'plain', 'person-role-tag'),
      u.is_active ? null : [' ', tag('Deactivated', 'bad', 'person-inactive')],
      me ? [' ', tag('You', 'ok')] : null);
    const facts = el('p', { class: 'muted item-facts' },
      u.email ? [u.email, ' · '] : null,
      'joined ', when(u.date_joined));
    const row = el('li', {
      class: 'manage-item', testid: 'person',
      dataset: { id: u.id, username: u.username, role: u.role, active: String(u.is_active) },
    }, head, facts);
    if (me) {
      row.append(el('p', { class: 'muted' }, 'Change your own details on your ', el('a', { href: '/settings/' }, 'settings page'), '.'));
      return row;
    }
    if (isKeyUser(u)) {
      row.append(el('p', { class: 'muted' }, 'The user of an API key: nobody logs in as it. Manage it under ', el('a', { href: '#api-keys' }, 'API keys'), '.'));
      return row;
    }
    const role = el('select', { id: `${key}-role`, testid: 'person-role', name: 'role' }, roleOptions(u.role));
    const password = el('input', {
      id: `${key}-password`, type: 'password', name: 'new_password', testid: 'person-password',
      autocomplete: 'new-password', minlength: 8, maxlength: 128, required: true, 'aria-describedby': `${key}-password-hint`,
    });
    const passwordForm = el('form', {
      class: 'inline-form password-form', testid: 'person-password-form', id: `${key}-password-form`, hidden: true, novalidate: true,
      onsubmit: (ev) => this.setPassword(ev, u),
    },
    el('label', { for: password.id }, `New password for ${name}`),
    el('div', { class: 'inline-field' }, password,
      el('button', { type: 'submit', class: 'small primary', testid: 'person-password-save' }, 'Set the password'),
      el('button', { type: 'button', class: 'small', testid: 'person-password-cancel', onclick: () => this.togglePassword(row, false) }, 'Cancel')),
    el('p', { class: 'muted field-hint', id: `${key}-password-hint` },
      'At least 8 characters. Their logins end at once; tell them the new password in a safe way.'));
    row.append(
      el('div', { class: 'item-controls' },
        el('form', { class: 'inline-form', novalidate: true, onsubmit: (ev) => this.changeRole(ev, u) },
          el('label', { for: role.id }, 'Role', el('span', { class: 'sr-only' }, ` of ${name}`)),
          el('div', { class: 'inline-field' }, role,
            el('button', { type: 'submit', class: 'small', testid: 'person-role-save', 'aria-label': `Change role of ${name}` }, 'Change role'))),
        el('div', { class: 'item-buttons' },
          el('button', {
            type: 'button', class: 'small', testid: 'person-active',
            'aria-label': `${u.is_active ? 'Deactivate' : 'Activate'} ${name}`,
            onclick: (ev) => this.setActive(ev.currentTarget, u, !u.is_active),
          }, u.is_active ? 'Deactivate' : 'Activate'),
          el('button', {
            type: 'button', class: 'small', testid: 'person-password-open', 'aria-expanded': 'false', 'aria-controls': passwordForm.id,
            'aria-label': `Set a new password for ${name}`, onclick: () => this.togglePassword(row, passwordForm.hidden),
          }, 'Set a new password'),
          el('button', {
            type: 'button', class: 'small danger', testid: 'person-erase', 'aria-label': `Erase ${name}`,
            onclick: (ev) => this.erase(ev.currentTarget, u),
          }, 'Erase…'))),
      passwordForm,
      rowMessages(key));
    return row;
  }

  /** Draws a person's row again (after a change), keeps the keyboard on `focus`, and says `text`. */
  redraw(u, focus, text) {
    this.ctx.people.set(u.id, u);
    const old = this.list.querySelector(`[data-testid="person"][data-id="${u.id}"]`);
    const row = this.row(u);
    if (old) old.replaceWith(row);
    if (text) rowFeedback(row).ok(text);
    if (focus) row.querySelector(`[data-testid="${focus}"]`)?.focus();
    this.ctx.emit('people');
    return row;
  }

  togglePassword(row, open) {
    const form = row.querySelector('[data-testid="person-password-form"]');
    const opener = row.querySelector('[data-testid="person-password-open"]');
    form.hidden = !open;
    opener.setAttribute('aria-expanded', String(open));
    if (open) form.querySelector('input').focus();
    else {
      form.reset();
      opener.focus();
    }
  }

  async changeRole(ev, u) {
    ev.preventDefault();
    const row = ev.target.closest('li');
    const feedback = rowFeedback(row);
    const select = row.querySelector('[data-testid="person-role"]');
    const role = select.value;
    const name = u.display_name || u.username;
    if (role === u.role) {
      feedback.ok(`${name} is ${aRole(role)} already.`);
      return;
    }
    try {
      const changed = await busy(row.querySelector('[data-testid="person-role-save"]'),
        () => this.ctx.session.api('PATCH', `/api/users/${u.id}/`, { role }));
      this.redraw(changed, 'person-role',
        `${name} is ${aRole(changed.role)} now. They were logged out, and act in the new role once they log in again.`);
    } catch (e) {
      feedback.fail(e, { input: select });
    }
  }

  async setActive(button, u, active) {
    const row = button.closest('li');
    const name = u.display_name || u.username;
    try {
      const changed = await busy(button, () => this.ctx.session.api('PATCH', `/api/users/${u.id}/`, { is_active: active }));
      this.redraw(changed, 'person-active', active
        ? `${name} is active again and can log in.`
        : `${name} is deactivated: they were logged out and cannot log in until you activate them again.`);
    } catch (e) {
      rowFeedback(row).fail(e);
    }
  }

  async setPassword(ev, u) {
    ev.preventDefault();
    const row = ev.target.closest('li');
    const feedback = rowFeedback(row);
    const input = row.querySelector('[data-testid="person-password"]');
    const fresh = input.value;
    if ([...fresh].length < 8) return feedback.fail('The password is too short: use at least 8 characters.', { input });
    if ([...fresh].length > 128) return feedback.fail('The password is too long: use at most 128 characters.', { input });
    const name = u.display_name || u.username;
    try {
      await busy(row.querySelector('[data-testid="person-password-save"]'),
        () => this.ctx.session.api('POST', `/api/users/${u.id}/password/`, { new_password: fresh }));
      this.togglePassword(row, false);
      feedback.ok(`New password set for ${name}. Their logins have ended; tell them the new password in a safe way.`);
    } catch (e) {
      feedback.fail(e, { input });
    }
    return undefined;
  }

  async erase(button, u) {
    const name = u.display_name || u.username;
    const yes = await this.ctx.confirm({
      title: `Erase ${name}?`,
      message: `${name}'s account, notifications, addresses, choices and memberships are removed, and they are logged out everywhere. `
        + 'Their tickets and comments stay, signed “Erased user”. This cannot be undone. To only stop them logging in, deactivate them instead.',
      confirm: 'Erase for good',
    });
    if (!yes) return;
    const row = button.closest('li');
    const feedback = new Feedback('people');
    try {
      await busy(button, () => this.ctx.session.api('DELETE', `/api/users/${u.id}/?erase=true`));
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        rowFeedback(row).fail(e);
        return;
      }
    }
    const next = focusAfter(row, this.filter);
    this.ctx.people.delete(u.id);
    this.render();
    next();
    feedback.ok(`${name} is erased.`);
    this.ctx.emit('people');
  }

  async add(ev) {
    ev.preventDefault();
    const form = ev.target;
    const feedback = new Feedback('add-person');
    const f = form.elements;
    const fields = { username: f.username, password: f.password, role: f.role, display_name: f.display_name, email: f.email };
    const username = f.username.value.trim();
    if (!username) return feedback.fail('Give them a username: they log in with it.', { input: f.username });
    if (!/^[\w.@+-]+$/u.test(username)) {
      return feedback.fail('A username has letters, digits and @ . + - _ only: no spaces.', { input: f.username });
    }
    const email = f.email.value.trim();
    if (email && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) {
      return feedback.fail('This does not look like an email address. Check it, or leave it empty.', { input: f.email });
    }
    if ([...f.password.value].length < 8) return feedback.fail('The password is too short: use at least 8 characters.', { input: f.password });
    const body = { username, password: f.password.value, role: f.role.value };
    if (f.display_name.value.trim()) body.display_name = f.display_name.value.trim();
    if (email) body.email = email;
    try {
      const made = await busy(byTestId('add-person-submit'), () => this.ctx.session.api('POST', '/api/users/', body));
      form.reset();
      this.ctx.people.set(made.id, made);
      this.filter.value = '';
      this.page = Math.floor(Math.max(0, this.matching().findIndex((p) => p.id === made.id)) / PAGE) + 1;
      this.render();
      this.ctx.emit('people');
      feedback.ok(`Added ${made.display_name || made.username} as ${aRole(made.role)}. They log in as ${made.username} with the password you chose.`);
    } catch (e) {
      feedback.fail(e, { fields });
    }
    return undefined;
  }
}
