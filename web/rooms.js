// The demo client's project room: the live board (`/ws/projects/{id}/tickets/`) and who is
// here (`/ws/projects/{id}/presence/`), with what each person looks at and who is typing.

import { el, byTestId } from '/assets/common.js';

const TYPING_EVERY_MS = 1000;

export class Room {
  /**
   * @param {object} hooks
   * @param {() => string} hooks.token the current access token
   * @param {(update: object) => void} hooks.onTicket a `ticket_update`'s data and action
   * @param {(comment: object) => void} hooks.onComment a `comment_added`'s data
   * @param {(id: number) => string} hooks.ticketKey a ticket's key, for the presence list
   * @param {(dir: string, text: string) => void} hooks.log the frame log
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.project = null;
    this.me = null;
    this.board = null;
    this.presence = null;
    this.online = new Map();
    this.typing = new Map();
    this.viewing = null;
    this.lastTyping = 0;
    this.retry = null;
  }

  /** Joins a project's board and presence, leaving any other. */
  open(project, me) {
    this.close();
    this.project = project;
    this.me = me;
    this.connect();
  }

  connect() {
    clearTimeout(this.retry);
    if (this.project === null) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const base = `${scheme}//${location.host}/ws/projects/${this.project}`;
    const protocols = () => ['tickethub.v1', `bearer.${this.hooks.token()}`];
    this.board = this.socket(`${base}/tickets/`, protocols(), (f) => this.onBoard(f));
    this.presence = this.socket(`${base}/presence/`, protocols(), (f) => this.onPresence(f));
  }

  socket(url, protocols, onFrame) {
    const ws = new WebSocket(url, protocols);
    ws.onmessage = (ev) => {
      this.hooks.log('⇠', ev.data);
      try {
        onFrame(JSON.parse(ev.data));
      } catch {
        // A frame that is not JSON is logged and ignored.
      }
    };
    ws.onclose = (ev) => {
      if (ws !== this.board && ws !== this.presence) return;
      this.setState('closed', `room closed (${ev.code})`);
      // 4003: not a member; anything else: try again in a moment.
      if (ev.code !== 4003) {
        clearTimeout(this.retry);
        this.retry = setTimeout(() => {
          this.closeSockets();
          this.connect();
        }, 2000);
      }
    };
    return ws;
  }

  closeSockets() {
    const [b, p] = [this.board, this.presence];
    this.board = null;
    this.presence = null;
    for (const ws of [b, p]) if (ws) ws.close(1000, 'leaving');
  }

  close() {
    clearTimeout(this.retry);
    this.closeSockets();
    this.project = null;
    this.online.clear();
    this.typing.clear();
    this.viewing = null;
    this.render();
  }

  send(frame) {
    if (!this.presence || this.presence.readyState !== WebSocket.OPEN) return;
    const text = JSON.stringify(frame);
    this.presence.send(text);
    this.hooks.log('⇢', text);
  }

  /** This page looks at a ticket (or at none). */
  view(ticketId) {
    this.viewing = ticketId;
    this.send({ type: 'ticket_viewing', ticket_id: ticketId });
    this.render();
  }

  /** A keystroke in the comment box: say so, at most once a second. */
  typed(ticketId) {
    const now = Date.now();
    if (now - this.lastTyping < TYPING_EVERY_MS) return;
    this.lastTyping = now;
    this.send({ type: 'user_typing', ticket_id: ticketId, is_typing: true });
  }

  stoppedTyping(ticketId) {
    this.lastTyping = 0;
    this.send({ type: 'user_typing', ticket_id: ticketId, is_typing: false });
  }

  setState(state, text) {
    const pill = byTestId('room-state');
    pill.dataset.state = state;
    pill.textContent = text;
  }

  onBoard(f) {
    if (f.type === 'connection_established') this.setState('connected', 'board live');
    if (f.type === 'ticket_update') this.hooks.onTicket({ action: f.action, ...f.data });
    if (f.type === 'comment_added') this.hooks.onComment(f.data);
  }

  onPresence(f) {
    switch (f.type) {
      case 'presence_state':
        this.online = new Map(f.users.map((u) => [u.user_id, u]));
        break;
      case 'user_status':
        if (f.action === 'joined' && !this.online.has(f.user_id)) {
          this.online.set(f.user_id, { user_id: f.user_id, username: f.username, display_name: f.username, viewing: null });
        }
        if (f.action === 'left') {
          this.online.delete(f.user_id);
          for (const key of [...this.typing.keys()]) if (key.startsWith(`${f.user_id}:`)) this.typing.delete(key);
        }
        break;
      case 'ticket_viewing': {
        const u = this.online.get(f.user_id);
        if (u) u.viewing = f.ticket_id;
        break;
      }
      case 'user_typing': {
        const key = `${f.user_id}:${f.ticket_id}`;
        if (f.is_typing) this.typing.set(key, f.user_id);
        else this.typing.delete(key);
        break;
      }
      default:
        break;
    }
    this.render();
  }

  /** The names of the people typing under a ticket, this page's user left out. */
  typers(ticketId) {
    const names = [];
    for (const [key, userId] of this.typing) {
      if (key === `${userId}:${ticketId}` && userId !== this.me?.id) {
        const u = this.online.get(userId);
        names.push(u ? u.display_name || u.username : `#${userId}`);
      }
    }
    return names;
  }

  render() {
    const list = byTestId('presence-list');
    if (!list) return;
    const people = [...this.online.values()].sort((a, b) => a.user_id - b.user_id);
    list.replaceChildren(...people.map((u) => el('li', {
      testid: 'presence-user',
      dataset: { userId: u.user_id, viewing: u.viewing ?? '' },
    },
    el('span', { class: 'dot' }),
    el('span', {}, u.display_name || u.username),
    u.user_id === this.me?.id ? el('span', { class: 'muted' }, ' (you)') : null,
    u.viewing ? el('span', { class: 'muted', testid: 'presence-viewing' }, ` · viewing ${this.hooks.ticketKey(u.viewing)}`) : null)));
    byTestId('presence-empty').hidden = people.length > 0;
    const indicator = byTestId('typing-indicator');
    if (indicator) {
      const names = this.viewing ? this.typers(this.viewing) : [];
      indicator.textContent = names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
    }
  }
}
