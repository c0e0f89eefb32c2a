// Getting into a project from the workspace: an invitation's link (`#/invite/<token>`) shows
// what it offers and makes the account (GET and POST /api/invitations/{token}/…, no login
// needed, even while sign-up is closed); and someone signed in who is in no project asks to
// join one by its key (POST /api/join-requests/), with their requests and the admins' answers
// (GET /api/join-requests/).

import { el, byTestId, ApiError, when, exact } from '/assets/common.js';
import { Feedback, busy, explain } from '/assets/settings-parts.js';

const ROLE_WORDS = { admin: 'an admin', developer: 'a developer', client: 'a client' };

const ROLE_DOES = {
  admin: 'run this hub: open and assign tickets, and manage people and projects',
  developer: 'work on the tickets assigned to you',
  client: 'file tickets and approve the work done on them',
};

/** The token of an invitation's address (`#/invite/<token>`), or null. */
export function inviteToken(hash = window.location.hash) {
  const m = /^#\/invite\/([^/?#]+)\/?$/.exec(hash);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

/** A call to the hub without a login: the invitation's link is the proof. */
async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    credentials: 'omit',
    cache: 'no-store',
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, data?.detail || `${res.status} ${res.statusText}`, data);
  return data;
}

/**
 * The invitation page: what the link offers (email, role, project, until when) and a form for
 * the account it makes. `onAccepted({ username, password, name })` logs in with it.
 */
export class InvitePanel {
  constructor({ onAccepted }) {
    this.onAccepted = onAccepted;
    this.token = null;
    this.panel = byTestId('invite');
    this.form = byTestId('invite-form');
    this.form.addEventListener('submit', (ev) => this.accept(ev));
  }

  get shown() {
    return !this.panel.hidden;
  }

  /** Says who is logged in on this tab (null: nobody), whom accepting logs out. */
  signedInAs(name) {
    const note = byTestId('invite-signed-in');
    note.hidden = !name;
    note.textContent = name ? `You are logged in as ${name} on this tab. Making this account logs you in with it instead.` : '';
  }

  /** Shows the invitation of `token`. */
  async show(token) {
    this.token = token;
    this.panel.hidden = false;
    byTestId('invite-offer').hidden = true;
    byTestId('invite-gone').hidden = true;
    byTestId('invite-note').textContent = 'Reading the invitation…';
    new Feedback('invite').clear();
    const heading = document.getElementById('invite-heading');
    let offer;
    try {
      offer = await call('GET', `/api/invitations/${encodeURIComponent(token)}/`);
    } catch (e) {
      if (this.token !== token) return;
      byTestId('invite-note').textContent = '';
      const gone = byTestId('invite-gone');
      gone.textContent = e instanceof ApiError && e.status === 404
        ? e.message
        : explain(e).text;
      gone.hidden = false;
      heading.focus();
      return;
    }
    if (this.token !== token) return;
    byTestId('invite-note').textContent = '';
    const named = offer.project_key ? `${offer.project_key} · ${offer.project_name}` : offer.project_name;
    const project = named ? ` in the project ${named}` : '';
    byTestId('invite-offer-text').textContent = `This invitation makes you an account as ${ROLE_WORDS[offer.role] || offer.role}${project}: `
      + `you ${ROLE_DOES[offer.role] || 'use this hub'}. Choose how you log in.`;
    byTestId('invite-for').textContent = offer.email || '—';
    byTestId('invite-project').textContent = named || 'None yet: an admin adds you to one';
    byTestId('invite-until').replaceChildren(el('time', { datetime: offer.expires_at }, exact(offer.expires_at)));
    byTestId('invite-offer').hidden = false;
    heading.focus();
  }

  hide() {
    this.token = null;
    this.panel.hidden = true;
    this.form.reset();
  }

  async accept(ev) {
    ev.preventDefault();
    const f = this.form.elements;
    const feedback = new Feedback('invite');
    const fields = { username: f.username, password: f.password, display_name: f.display_name };
    const username = f.username.value.trim();
    if (!username) return feedback.fail('Choose a username: you log in with it.', { input: f.username });
    if (!/^[\w.@+-]+$/u.test(username)) {
      return feedback.fail('A username has letters, digits and @ . + - _ only: no spaces.', { input: f.username });
    }
    if ([...f.password.value].length < 8) return feedback.fail('The password is too short: use at least 8 characters.', { input: f.password });
    const body = { username, password: f.password.value };
    const name = f.display_name.value.trim();
    if (name) body.display_name = name;
    const submit = byTestId('invite-submit');
    try {
      await busy(submit, () => call('POST', `/api/invitations/${encodeURIComponent(this.token)}/accept/`, body));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        byTestId('invite-offer').hidden = true;
        const gone = byTestId('invite-gone');
        gone.textContent = e.message;
        gone.hidden = false;
        return undefined;
      }
      feedback.fail(e, { fields });
      return undefined;
    }
    feedback.ok('Your account is ready. Logging you in…');
    try {
      await busy(submit, () => this.onAccepted({ username, password: body.password, name: name || username }));
    } catch (e) {
      feedback.fail(`Your account is ready, but logging in failed: ${explain(e).text} Log in with your new username and password.`);
    }
    return undefined;
  }
}

const STATE_WORDS = { waiting: 'Waiting for an admin', approved: 'Approved', declined: 'Declined' };

/**
 * "Ask to join a project", for someone in no project: a project key and a few words for the
 * admins, and the requests they made with the answers.
 */
export class JoinPanel {
  constructor({ session }) {
    this.session = session;
    this.panel = byTestId('join-panel');
    this.form = byTestId('join-form');
    this.items = [];
    this.form.addEventListener('submit', (ev) => this.ask(ev));
    const key = this.form.elements.project;
    key.addEventListener('input', () => {
      const at = key.selectionStart;
      key.value = key.value.toUpperCase();
      key.setSelectionRange(at, at);
    });
  }

  /** Shows the panel (and loads the requests) or hides it. */
  async show(visible) {
    this.panel.hidden = !visible;
    if (!visible) {
      this.form.reset();
      new Feedback('join').clear();
      return;
    }
    try {
      this.items = await this.session.api('GET', '/api/join-requests/');
      this.render();
    } catch (e) {
      new Feedback('join').fail(e);
    }
  }

  render() {
    byTestId('join-requests').replaceChildren(...this.items.map((j) => this.row(j)));
    byTestId('join-requests-empty').hidden = this.items.length > 0;
  }

  row(j) {
    return el('li', { testid: 'join-request', dataset: { status: j.status, project: j.project_key } },
      el('strong', { class: 'mono' }, j.project_key), ' ', j.project_name, ': ',
      el('span', { class: `join-state join-${j.status}`, testid: 'join-request-state' }, STATE_WORDS[j.status] || j.status),
      el('span', { class: 'muted' }, ' · asked ', when(j.created_at)),
      j.status === 'approved'
        ? el('span', {}, ' · ', el('button', {
          type: 'button', class: 'link', testid: 'join-reload', onclick: () => window.location.reload(),
        }, `Reload to see ${j.project_key}`))
        : null);
  }

  async ask(ev) {
    ev.preventDefault();
    const f = this.form.elements;
    const feedback = new Feedback('join');
    const project = f.project.value.trim().toUpperCase();
    if (!project) return feedback.fail('Give the key of the project, such as WEB. A colleague in it can tell you.', { input: f.project });
    if (!/^[A-Z][A-Z0-9]{1,9}$/.test(project)) {
      return feedback.fail('A project key is 2 to 10 capital letters or digits and starts with a letter, such as WEB.', { input: f.project });
    }
    const body = { project };
    const message = f.message.value.trim();
    if (message) body.message = message;
    try {
      const asked = await busy(byTestId('join-submit'), () => this.session.api('POST', '/api/join-requests/', body));
      this.form.reset();
      this.items = [asked, ...this.items.filter((j) => j.id !== asked.id)];
      this.render();
      feedback.ok(`You asked to join ${asked.project_key} · ${asked.project_name}. An admin answers; once approved, reload this page to see it.`);
    } catch (e) {
      feedback.fail(e, { fields: { project: f.project, message: f.message }, input: e instanceof ApiError && e.status === 404 ? f.project : null });
    }
    return undefined;
  }
}
