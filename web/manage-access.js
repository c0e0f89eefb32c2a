// Getting people in, on the administration page: invitation links (each makes one account with
// a role, in a project, shown once when made; /api/admin/invitations/) and the requests people
// who signed up make to join a project by its key (/api/join-requests/), approved or declined.

import { el, byTestId, ApiError, when, exact } from '/assets/common.js';
import { Feedback, busy } from '/assets/settings-parts.js';
import { aRole, rowMessages, rowFeedback, tag, copyField, focusAfter, reloadButton } from '/assets/manage-parts.js';

const INVITATION_STATES = {
  pending: ['Waiting', 'warn'],
  accepted: ['Accepted', 'ok'],
  revoked: ['Taken back', 'plain'],
  expired: ['Ran out', 'plain'],
};

/** An invitation's link as people open it: the hub answers `/#/invite/…` without a public URL. */
function absolute(url) {
  return /^https?:\/\//i.test(url) ? url : new URL(url, window.location.origin).href;
}

export class Invitations {
  constructor(ctx) {
    this.ctx = ctx;
    this.items = [];
    this.form = byTestId('invite-form');
    this.form.addEventListener('submit', (ev) => this.invite(ev));
    byTestId('invite-copy').addEventListener('click', () => copyField(byTestId('invite-link'), byTestId('invite-copy-status')));
    byTestId('invite-done').addEventListener('click', () => this.closeLink());
    ctx.on('projects', () => this.fillProjects());
    ctx.on('people', () => this.render());
    this.fillProjects();
    reloadButton(byTestId('invitations-reload'), 'invitations', () => this.load(), () => {
      const n = this.items.filter((i) => i.status === 'pending').length;
      return `The list is up to date: ${n === 1 ? '1 invitation waits' : `${n} invitations wait`} to be used.`;
    });
  }

  fillProjects() {
    const select = this.form.elements.project;
    const chosen = select.value;
    select.replaceChildren(el('option', { value: '' }, 'No project (an admin adds them later)'),
      ...this.ctx.projects.map((p) => el('option', { value: p.id }, `${p.key} · ${p.name}`)));
    if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  }

  async load() {
    const feedback = new Feedback('invitations');
    try {
      this.items = await this.ctx.session.api('GET', '/api/admin/invitations/');
      this.render();
    } catch (e) {
      feedback.fail(e);
    }
  }

  render() {
    byTestId('invitation-list').replaceChildren(...this.items.map((i) => this.row(i)));
    byTestId('invitations-empty').hidden = this.items.length > 0;
  }

  row(i) {
    const [word, kind] = INVITATION_STATES[i.status] || [i.status, 'plain'];
    const email = i.email || 'an address since erased';
    const where = i.project ? ` in ${this.ctx.projectName(i.project, i.project_name)}` : ', in no project';
    const facts = [`${aRole(i.role)[0].toUpperCase()}${aRole(i.role).slice(1)}${where}. Sent by ${this.ctx.nameOf(i.created_by)} `, when(i.created_at)];
    if (i.status === 'pending') facts.push(`; works until ${exact(i.expires_at)}.`);
    else if (i.status === 'accepted' && i.accepted_user) facts.push(`; ${this.ctx.people.has(i.accepted_user) ? this.ctx.nameOf(i.accepted_user) : 'the account it made'} joined with it.`);
    else facts.push('.');
    return el('li', { class: 'manage-item', testid: 'invitation', dataset: { id: i.id, status: i.status, email: i.email } },
      el('div', { class: 'item-head' }, el('strong', {}, email), ' ', tag(word, kind, 'invitation-status')),
      el('p', { class: 'muted item-facts' }, facts),
      i.status === 'pending'
        ? el('div', { class: 'item-buttons' }, el('button', {
          type: 'button', class: 'small', testid: 'invitation-revoke', 'aria-label': `Take back the invitation for ${email}`,
          onclick: (ev) => this.revoke(ev.currentTarget, i),
        }, 'Take back'))
        : null,
      rowMessages(`invitation-${i.id}`));
  }

  async invite(ev) {
    ev.preventDefault();
    const f = this.form.elements;
    const feedback = new Feedback('invite');
    const email = f.email.value.trim();
    if (!email) return feedback.fail('Give the email address of the person you invite.', { input: f.email });
    if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) return feedback.fail('This does not look like an email address. Check it and try again.', { input: f.email });
    const body = { email, role: f.role.value, expires_in_days: Number(f.expires_in_days.value) };
    if (f.project.value) body.project = Number(f.project.value);
    try {
      const made = await busy(byTestId('invite-submit'), () => this.ctx.session.api('POST', '/api/admin/invitations/', body));
      this.form.reset();
      this.fillProjects();
      this.items = [made, ...this.items.filter((i) => i.id !== made.id)];
      this.render();
      feedback.ok(`Invitation made for ${made.email}.`);
      this.showLink(made);
    } catch (e) {
      feedback.fail(e, { fields: { email: f.email, role: f.role, project: f.project, expires_in_days: f.expires_in_days } });
    }
    return undefined;
  }

  /** Shows the new invitation's link, this once. */
  showLink(made) {
    const where = made.project ? ` in ${this.ctx.projectName(made.project, made.project_name)}` : '';
    byTestId('invite-link-hint').textContent = `Send this link to ${made.email}. It is shown only this once: copy it now. `
      + `It makes one account, ${aRole(made.role)}${where}, and works until ${exact(made.expires_at)}.`;
    const input = byTestId('invite-link');
    input.value = made.url ? absolute(made.url) : '';
    byTestId('invite-copy-status').textContent = '';
    byTestId('invite-link-box').hidden = false;
    input.focus();
    input.select();
  }

  closeLink() {
    byTestId('invite-link').value = '';
    byTestId('invite-copy-status').textContent = '';
    byTestId('invite-link-box').hidden = true;
    this.form.elements.email.focus();
  }

  async revoke(button, i) {
    const row = button.closest('li');
    try {
      await busy(button, () => this.ctx.session.api('DELETE', `/api/admin/invitations/${i.id}/`));
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        rowFeedback(row).fail(e);
        return;
      }
      // Used, run out or taken back meanwhile: the list says which.
      await this.load();
      new Feedback('invitations').fail(`The invitation for ${i.email} can no longer be taken back: it was used or ran out. The list is up to date now.`);
      return;
    }
    const next = focusAfter(row, this.form.elements.email);
    i.status = 'revoked';
    const fresh = this.row(i);
    row.replaceWith(fresh);
    rowFeedback(fresh).ok(`Taken back: the link for ${i.email} no longer works.`);
    next();
  }
}

const JOIN_STATES = { waiting: ['Waiting', 'warn'], approved: ['Approved', 'ok'], declined: ['Declined', 'plain'] };

export class JoinRequests {
  constructor(ctx) {
    this.ctx = ctx;
    this.items = [];
    this.all = byTestId('join-show-all');
    this.all.addEventListener('change', () => this.load());
    reloadButton(byTestId('join-reload'), 'join', () => this.load(), () => {
      const n = this.waiting();
      return n ? `${n === 1 ? '1 request waits' : `${n} requests wait`} for an answer.` : 'No one is waiting for an answer.';
    });
  }

  async load() {
    const feedback = new Feedback('join');
    try {
      const path = this.all.checked ? '/api/join-requests/?status=all' : '/api/join-requests/';
      this.items = await this.ctx.session.api('GET', path);
      this.render();
    } catch (e) {
      feedback.fail(e);
    }
  }

  waiting() {
    return this.items.filter((j) => j.status === 'waiting').length;
  }

  render() {
    const list = byTestId('join-list');
    list.replaceChildren(...this.items.map((j) => this.row(j)));
    byTestId('join-empty').hidden = this.items.length > 0;
    byTestId('join-empty').textContent = this.all.checked ? 'No one has asked to join a project yet.' : 'No one is waiting for an answer.';
    this.count();
  }

  count() {
    const n = this.waiting();
    const badge = byTestId('join-count');
    badge.textContent = String(n);
    badge.dataset.count = String(n);
    byTestId('nav-join').textContent = n ? `Join requests (${n} waiting)` : 'Join requests';
  }

  row(j) {
    const [word, kind] = JOIN_STATES[j.status] || [j.status, 'plain'];
    const who = j.user_name && j.user_name !== j.username ? `${j.user_name} (${j.username})` : j.username;
    const project = `${j.project_key} · ${j.project_name}`;
    return el('li', { class: 'manage-item', testid: 'join-request', dataset: { id: j.id, status: j.status, username: j.username, project: j.project_key } },
      el('div', { class: 'item-head' },
        el('strong', {}, who), ` asks to join ${project} `, tag(word, kind, 'join-state')),
      j.message ? el('blockquote', { class: 'item-message', testid: 'join-message' }, j.message) : null,
      el('p', { class: 'muted item-facts' }, 'Asked ', when(j.created_at),
        j.decided_at ? ['; decided ', when(j.decided_at)] : null, '.'),
      j.status === 'waiting'
        ? el('div', { class: 'item-buttons' },
          el('button', {
            type: 'button', class: 'small primary', testid: 'join-approve', 'aria-label': `Approve ${who} joining ${j.project_key}`,
            onclick: (ev) => this.decide(ev.currentTarget, j, true),
          }, 'Approve'),
          el('button', {
            type: 'button', class: 'small', testid: 'join-decline', 'aria-label': `Decline ${who} joining ${j.project_key}`,
            onclick: (ev) => this.decide(ev.currentTarget, j, false),
          }, 'Decline'))
        : null,
      rowMessages(`join-${j.id}`));
  }

  async decide(button, j, approve) {
    const row = button.closest('li');
    const feedback = new Feedback('join');
    const who = j.user_name || j.username;
    let decided;
    try {
      decided = await busy(button, () => this.ctx.session.api('POST', `/api/join-requests/${j.id}/${approve ? 'approve' : 'decline'}/`));
    } catch (e) {
      if (e instanceof ApiError && (e.status === 409 || e.status === 404)) {
        // Another admin answered first: show the list as it is now.
        await this.load();
        feedback.fail(e.status === 409 ? `${e.message} The list is up to date now.` : `${who}'s request is gone. The list is up to date now.`);
        return;
      }
      rowFeedback(row).fail(e);
      return;
    }
    Object.assign(j, decided);
    const text = approve
      ? `Approved: ${who} is a member of ${j.project_key} now, and sees it when they next load the workspace.`
      : `Declined: ${who} does not join ${j.project_key}.`;
    if (this.all.checked) {
      const fresh = this.row(j);
      row.replaceWith(fresh);
      rowFeedback(fresh).ok(text);
      fresh.setAttribute('tabindex', '-1');
      fresh.focus();
    } else {
      const next = focusAfter(row, this.all);
      this.items = this.items.filter((x) => x.id !== j.id);
      row.remove();
      byTestId('join-empty').hidden = this.items.length > 0;
      feedback.ok(text);
      next();
    }
    this.count();
    if (approve) this.ctx.emit('members');
  }
}
