// The administration page at /manage/: what an admin does to run a project without the command
// line. People (GET, PATCH and DELETE /api/users/…, POST /api/users/ and …/password/),
// invitation links (/api/admin/invitations/), requests to join a project (/api/join-requests/),
// projects and their members (/api/projects/), API keys (/api/admin/api-keys/) and scheduled
// sends (/api/notifications/scheduled/) and on-call schedules (/api/oncall/schedules/). It
// shares the workspace's login; anyone but an admin is told the page is not for them.

import { byTestId, ApiError, Session, loginForm, setTimeZone, refreshTimes } from '/assets/common.js';
import { explain } from '/assets/settings-parts.js';
import { People } from '/assets/manage-people.js';
import { Invitations, JoinRequests } from '/assets/manage-access.js';
import { Projects } from '/assets/manage-projects.js';
import { ApiKeys, ScheduledSends } from '/assets/manage-keys.js';
import { OnCall } from '/assets/manage-oncall.js';
import { ROLE_WORDS } from '/assets/manage-parts.js';

// The same key as the workspace's, the settings page's and the operator page's: one login.
const session = new Session('tickethub');

/**
 * What the sections share: the session, the admin using the page, everyone and every project
 * as last loaded, a confirmation dialog, and news of changes one section makes that others show.
 */
const ctx = {
  session,
  me: null,
  /** Everyone the page knows of, by id: active people, and deactivated ones it found. */
  people: new Map(),
  /** Every project, oldest first. */
  projects: [],
  listeners: new Map(),

  /** Calls `fn` whenever `what` ('people', 'projects') changes. */
  on(what, fn) {
    if (!this.listeners.has(what)) this.listeners.set(what, []);
    this.listeners.get(what).push(fn);
  },

  emit(what) {
    for (const fn of this.listeners.get(what) || []) fn();
  },

  /** A person's name as others see it: their display name, else their username. */
  nameOf(id) {
    const p = this.people.get(id);
    if (!p) return id === null || id === undefined ? 'Someone' : `Person #${id}`;
    return p.display_name || p.username;
  },

  /** A project as "WEB · Web shop"; `fallback` where the page does not know it. */
  projectName(id, fallback = null) {
    const p = this.projects.find((x) => x.id === id);
    return p ? `${p.key} · ${p.name}` : fallback || `Project #${id}`;
  },

  /**
   * Asks before something that cannot be undone: resolves to true when confirmed. The focus
   * goes back where it was either way (the caller moves it if that element goes).
   */
  confirm({ title, message, confirm }) {
    const dialog = byTestId('confirm-dialog');
    const opener = document.activeElement;
    byTestId('confirm-title').textContent = title;
    byTestId('confirm-message').textContent = message;
    byTestId('confirm-ok').textContent = confirm;
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => {
        const yes = dialog.returnValue === 'confirm';
        dialog.returnValue = '';
        if (opener && opener.isConnected && opener.focus) opener.focus();
        resolve(yes);
      }, { once: true });
      dialog.returnValue = '';
      dialog.showModal();
      byTestId('confirm-cancel').focus();
    });
  },
};

const sections = {
  people: new People(ctx),
  projects: new Projects(ctx),
  invitations: new Invitations(ctx),
  join: new JoinRequests(ctx),
  keys: new ApiKeys(ctx),
  scheduled: new ScheduledSends(ctx),
  oncall: new OnCall(ctx),
};

// Logging in shows the page; logging out, or a session that ends, the login form.

function showLogin(message = '') {
  byTestId('manage').hidden = true;
  byTestId('not-admin').hidden = true;
  byTestId('whoami').hidden = true;
  byTestId('logout').hidden = true;
  byTestId('login').hidden = false;
  byTestId('login-note').textContent = message;
  byTestId('login-error').textContent = '';
  ctx.me = null;
  byTestId('login-username').focus();
}

session.onExpired = () => showLogin('Your session has ended. Log in again to go on.');

async function start() {
  const me = await session.api('GET', '/api/users/me/');
  ctx.me = me;
  setTimeZone(me.time_zone);
  const who = byTestId('whoami');
  who.textContent = `${me.display_name || me.username} · ${ROLE_WORDS[me.role] || me.role}`;
  who.title = me.username;
  who.hidden = false;
  byTestId('login').hidden = true;
  byTestId('logout').hidden = false;
  if (me.role !== 'admin') {
    const role = (ROLE_WORDS[me.role] || me.role).toLowerCase();
    byTestId('not-admin-text').textContent = `You are logged in as ${me.display_name || me.username}, a ${role}. `
      + 'This page is where admins add people, send invitations and run projects. If you need one of those, ask an admin of this hub.';
    byTestId('manage').hidden = true;
    byTestId('not-admin').hidden = false;
    return;
  }
  byTestId('not-admin').hidden = true;
  byTestId('manage').hidden = false;
  // People and projects first: the other sections name them.
  await Promise.all([sections.people.load(), sections.projects.load()]);
  await Promise.all([
    sections.invitations.load(),
    sections.join.load(),
    sections.keys.load(),
    sections.scheduled.load(),
    sections.oncall.load(),
  ]);
  const wanted = decodeURIComponent(window.location.hash.slice(1));
  if (wanted) document.getElementById(wanted)?.scrollIntoView();
}

document.addEventListener('DOMContentLoaded', () => {
  loginForm(session, start);
  byTestId('logout').addEventListener('click', () => {
    session.logout();
    showLogin('You are logged out.');
  });
  setInterval(refreshTimes, 30_000);
  if (session.loggedIn) {
    start().catch((e) => {
      if (e instanceof ApiError && e.status === 401) showLogin();
      else showLogin(explain(e).text);
    });
  } else {
    showLogin();
  }
});
