// The demo client's project room: the live board (`/ws/projects/{id}/tickets/`) and who is
// here (`/ws/projects/{id}/presence/`), with what each person looks at and who is typing. The
// sockets are the official client's (`hub.project(id)`): it reconnects them with backoff,
// renews their tokens, drops stale board updates and keeps the list of who is present.

import { el, byTestId } from '/assets/common.js';

const TYPING_EVERY_MS = 1000;

export class Room {
  /**
   * @param {object} hooks
   * @param {(update: object) => void} hooks.onTicket a `ticket_update`'s data and action
   * @param {(comment: object) => void} hooks.onComment a `comment_added`'s data
   * @param {(data: object) => void} [hooks.onFiles] an `attachments_changed`'s data
   * @param {(id: number) => string} hooks.ticketKey a ticket's key, for the presence list
   * @param {(dir: string, text: string) => void} hooks.log the event log
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.project = null;
    this.me = null;
    this.room = null;
    this.typing = new Map();
    this.viewing = null;
    this.lastTyping = 0;
  }

  /** Joins a project's board and presence through the client `hub`, leaving any other. */
  open(hub, project, me) {
    this.close();
    if (!hub) return;
    this.project = project;
    this.me = me;
    const room = hub.project(project);
    this.room = room;
    const mine = (fn) => (value) => {
      if (room === this.room) fn(value);
    };
    this.setState('connecting', 'joining…');
    room.on('state', mine(({ state }) => {
      if (state === 'connected') {
        this.setState('connected', 'board live');
        // Someone may have looked elsewhere while this page was away: say again what it shows.
        if (this.viewing !== null) room.view(this.viewing);
      } else if (state === 'reconnecting') {
        this.typing.clear();
        this.setState('closed', 'room closed · reconnecting…');
      } else if (state === 'closed') {
        this.setState('closed', 'room closed');
      }
    }));
    room.on('retry', mine(({ delay }) => this.setState('closed', `room closed · reconnecting in ${Math.ceil(delay / 1000)} s`)));
    room.on('ticket_update', mine((u) => {
      this.hooks.log('⇠', `ticket_update ${u.action} ${u.key} v${u.version}`);
      this.hooks.onTicket(u);
    }));
    room.on('comment_added', mine((d) => {
      this.hooks.log('⇠', `comment_added ${d.key}`);
      this.hooks.onComment(d);
    }));
    room.on('attachments_changed', mine((d) => {
      this.hooks.log('⇠', `attachments_changed ${d.key}`);
      this.hooks.onFiles?.(d);
    }));
    room.on('presence', mine(() => this.render()));
    room.on('joined', mine((u) => this.hooks.log('⇠', `joined: ${u.username}`)));
    room.on('left', mine((u) => {
      this.hooks.log('⇠', `left: ${u.username}`);
      for (const key of [...this.typing.keys()]) if (key.startsWith(`${u.user_id}:`)) this.typing.delete(key);
      this.render();
    }));
    room.on('viewing', mine(() => this.render()));
    room.on('typing', mine((t) => {
      const key = `${t.user_id}:${t.ticket_id}`;
      if (t.is_typing) this.typing.set(key, t.user_id);
      else this.typing.delete(key);
      this.render();
    }));
    room.on('error', mine((e) => {
      this.hooks.log('⇠', `room error ${e.code}: ${e.message}`);
      if (e.code === '4003') this.setState('closed', 'not a member of this project');
    }));
  }

  close() {
    const room = this.room;
    this.room = null;
    if (room) room.close();
    this.project = null;
    this.typing.clear();
    this.viewing = null;
    this.render();
  }

  /** This page looks at a ticket (or at none). */
  view(ticketId) {
    this.viewing = ticketId;
    this.room?.view(ticketId);
    this.render();
  }

  /** A keystroke in the comment box: say so, at most once a second. */
  typed(ticketId) {
    const now = Date.now();
    if (now - this.lastTyping < TYPING_EVERY_MS) return;
    this.lastTyping = now;
    this.room?.typing(ticketId, true);
  }

  stoppedTyping(ticketId) {
    this.lastTyping = 0;
    this.room?.typing(ticketId, false);
  }

  setState(state, text) {
    const pill = byTestId('room-state');
    pill.dataset.state = state;
    pill.textContent = text;
  }

  /** Everyone present, by user id. */
  people() {
    return new Map((this.room ? this.room.people() : []).map((u) => [u.user_id, u]));
  }

  /** The names of the people typing under a ticket, this page's user left out. */
  typers(ticketId, online) {
    const names = [];
    for (const [key, userId] of this.typing) {
      if (key === `${userId}:${ticketId}` && userId !== this.me?.id) {
        const u = online.get(userId);
        names.push(u ? u.display_name || u.username : `#${userId}`);
      }
    }
    return names;
  }

  render() {
    const list = byTestId('presence-list');
    if (!list) return;
    const online = this.people();
    const people = [...online.values()].sort((a, b) => a.user_id - b.user_id);
    list.replaceChildren(...people.map((u) => el('li', {
      testid: 'presence-user',
      dataset: { userId: u.user_id, viewing: u.viewing ?? '' },
    },
    el('span', { class: 'dot' }),
    el('span', { title: u.username }, u.display_name || u.username),
    u.user_id === this.me?.id ? el('span', { class: 'muted' }, ' (you)') : null,
    u.viewing ? el('span', { class: 'muted', testid: 'presence-viewing' }, ` · viewing ${this.hooks.ticketKey(u.viewing)}`) : null)));
    byTestId('presence-empty').hidden = people.length > 0;
    const indicator = byTestId('typing-indicator');
    if (indicator) {
      const names = this.viewing ? this.typers(this.viewing, online) : [];
      indicator.textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
    }
  }
}
