// @tickethub/client: the official client of tickethub, for browsers and Node ≥ 20.
//
// It follows `/ws/notifications/` (or, when a WebSocket cannot be opened, the Server-Sent
// Events stream `/sse/notifications/`), and hands the application every notification exactly
// once, in seq order, across reconnects, hub restarts and transport changes: it resumes from
// the last seq it delivered, drops anything at or below it, and acknowledges what it
// delivered. No runtime dependencies.

/** Why the client stopped or what went wrong, with the hub's close or error code. */
export class TicketHubError extends Error {
  /**
   * @param {string} code a close code (`"4001"`) or an error code (`"invalid_token"`)
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'TicketHubError';
    this.code = code;
  }
}

/** What the hub's close codes mean to a client, and whether it tries again. */
const CLOSES = {
  // Not asked for by the application (that one never reaches here): a proxy, or the hub's
  // answer to a close someone else started. Reconnected like any drop.
  1000: ['closed', true],
  1001: ['the hub is shutting down', true],
  1002: ['a frame broke the WebSocket protocol', true],
  1003: ['a binary frame was sent', true],
  1006: ['the connection dropped', true],
  1007: ['a message was not UTF-8', true],
  1009: ['a message was over the size limit', true],
  1012: ["the user's actor restarted", true],
  4000: ['silent for longer than the idle timeout', true],
  4001: ['the token was refused or ran out: a new one is asked for', true],
  4003: ['not a member of the project, or no longer one', false],
  4008: ['too slow to read, or too many sockets', true],
};

/** The `error` events that end an event stream, as the socket's close codes. */
const STREAM_ENDINGS = {
  invalid_token: 4001,
  revoked: 4001,
  idle: 4000,
  forbidden: 4003,
  slow_consumer: 4008,
};

/** Describes a close code. */
export function describeClose(code) {
  return (CLOSES[code] ?? [`closed with ${code}`, true])[0];
}

/** A minimal event emitter: `on` answers a function that unsubscribes. */
class Emitter {
  constructor() {
    this.listeners = new Map();
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this.listeners.get(event)?.delete(fn);
  }

  once(event, fn) {
    const off = this.on(event, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  emit(event, ...args) {
    for (const fn of [...(this.listeners.get(event) ?? [])]) {
      try {
        fn(...args);
      } catch (e) {
        // A listener's failure is the application's; it must not stop the client.
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}

/** Full-jitter exponential backoff: a random wait in [0, min(max, base·2^attempt)]. */
export function backoff(attempt, base = 500, max = 30000, random = Math.random) {
  const cap = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/** `http://h` → `ws://h`, `https://h` → `wss://h`. */
function wsBase(url) {
  return url.replace(/^http/, 'ws');
}

/** Splits a Server-Sent Events stream into events, as the HTML standard parses it. */
export class SseParser {
  constructor() {
    this.buffer = '';
    this.reset();
  }

  reset() {
    this.event = '';
    this.data = [];
    this.id = null;
  }

  /** Feeds text; answers the complete events: `{event, data, id}`. */
  push(text) {
    this.buffer += text;
    const out = [];
    let at;
    while ((at = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, at);
      const eol = this.buffer.startsWith('\r\n', at) ? 2 : 1;
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (this.buffer[at] === '\r' && eol === 1 && at === this.buffer.length - 1) break;
      this.buffer = this.buffer.slice(at + eol);
      if (line === '') {
        if (this.data.length) {
          out.push({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
        }
        this.reset();
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
      else if (field === 'id' && !value.includes('\0')) this.id = value;
    }
    return out;
  }
}

/** The `exp` claim of a JWT, in seconds since the epoch; `null` for a token that is not one. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part));
    return typeof claims.exp === 'number' ? claims.exp : null;
  } catch {
    return null;
  }
}

/** Whether `next` renews nothing of `held`: the same token, or a JWT that runs out no later. */
function noNewer(next, held) {
  if (next === held) return true;
  const [a, b] = [tokenExpiry(next), tokenExpiry(held)];
  return a !== null && b !== null && a <= b;
}

/**
 * Whether `token` has time left past the hub's warning (30 s before its expiry), so that a
 * socket that takes it is not warned again at once; a token that is not a JWT is taken as is.
 */
function lasting(token) {
  const exp = tokenExpiry(token);
  return exp === null || exp * 1000 - Date.now() > 35000;
}

/** Whether `token` is no answer to the hub's refusal of `refused`: the same, or run out. */
function noAnswer(token, refused) {
  if (token === refused) return true;
  const exp = tokenExpiry(token);
  return exp !== null && exp * 1000 <= Date.now();
}

const REFUSED_AGAIN = 'the hub refused the token, and the token provider gave it again (or one that has run out): '
  + 'reconnecting stops until connect() is called with a provider that gives a new one';

/**
 * The client. Events: `notification` (each exactly once, in order), `inbox` (read, unread,
 * deleted, cleared, all_read), `replayed` (`{count, lastSeq}`: the backlog of a connection was
 * sent), `truncated` (the backlog was over the hub's cap), `renewed` (the hub took a fresh
 * token), `state` (`{state, previous, transport}`), `disconnect` (`{code, reason,
 * willReconnect}`), `retry` (`{attempt, delay}`), `error` (a {@link TicketHubError}).
 */
export class TicketHub extends Emitter {
  /**
   * @param {object} options
   * @param {string} options.url the hub's base URL, `http://host:8080`
   * @param {(context: {reason: "connect" | "expiring" | "refused"}) => string | Promise<string>} options.token
   *   an access token; called for every connection (`connect`: a cached token that is still
   *   valid will do), when the hub says the current one runs out within 30 s (`expiring`) and
   *   after the hub refused the last one (`refused`: 4001 or HTTP 401): answer a new one
   * @param {number} [options.lastSeq] the seq the application has already seen (resume point)
   * @param {("websocket"|"sse")[]} [options.transports] in order of preference
   * @param {number} [options.backoffBase] ms, 500
   * @param {number} [options.backoffMax] ms, 30000
   * @param {number} [options.upgradeInterval] ms between tries to go back from SSE to a
   *   WebSocket, 60000
   * @param {number} [options.streamTimeout] ms of silence after which an event stream is taken
   *   for dead and opened again (the hub writes at least every 15 s), 45000
   * @param {typeof WebSocket} [options.WebSocket] a WebSocket implementation (the global one
   *   by default)
   * @param {typeof fetch} [options.fetch] a fetch implementation (the global one by default)
   */
  constructor(options) {
    super();
    if (!options || typeof options.url !== 'string') throw new TypeError('url is required');
    if (typeof options.token !== 'function') throw new TypeError('token must be a function');
    this.url = options.url.replace(/\/+$/, '');
    this.tokenSource = options.token;
    this.lastSeq = Number.isInteger(options.lastSeq) ? options.lastSeq : null;
    this.transports = options.transports ?? ['websocket', 'sse'];
    this.backoffBase = options.backoffBase ?? 500;
    this.backoffMax = options.backoffMax ?? 30000;
    this.upgradeInterval = options.upgradeInterval ?? 60000;
    this.streamTimeout = options.streamTimeout ?? 45000;
    this.WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    this.fetchImpl = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this.state = 'idle';
    this.transport = null;
    this.attempt = 0;
    this.ackedSeq = null;
    this.ackTimer = null;
    this.retryTimer = null;
    this.upgradeTimer = null;
    this.ws = null;
    this.sse = null;
    this.currentToken = null;
    this.wsFailed = false;
    this.waiters = [];
    this.rooms = new Set();
    // The hub refused the last token (4001): the next one is asked for as `refused`, and
    // must differ from it.
    this.refused = false;
    this.refusedToken = null;
    // The token the open transport holds, and the one whose renewal is under way or done.
    this.heldToken = null;
    this.renewing = null;
    this.renewTimer = null;
    // The provider's answer being awaited: every caller shares it (one call at a time).
    this.tokenFlight = null;
  }

  setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.emit('state', { state, previous, transport: this.transport });
  }

  /** Connects; resolves once the hub has greeted the first connection. */
  connect() {
    if (this.state === 'connected') return Promise.resolve();
    const ready = new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.state === 'idle' || this.state === 'closed' || this.state === 'unauthorized') {
      this.closing = false;
      this.setState('connecting');
      this.open();
    }
    return ready;
  }

  /** Stops for good: closes the transport, cancels retries. */
  close(error = new TicketHubError('closed', 'the client was closed')) {
    this.closing = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.upgradeTimer);
    clearTimeout(this.ackTimer);
    clearTimeout(this.renewTimer);
    this.flushAck();
    this.dropWs(1000, 'closing');
    this.dropSse();
    for (const room of [...this.rooms]) room.close();
    this.transport = null;
    this.setState('closed');
    for (const w of this.waiters.splice(0)) w.reject(error);
  }

  /**
   * A token from the application's provider; `reason` is `connect`, `expiring` or `refused`.
   * One call at a time: callers that ask while one is under way share its answer. A caller
   * replacing `holding` takes a token another socket already got, if it is newer.
   */
  token(reason = 'connect', holding = null) {
    if (holding !== null && this.currentToken && !noNewer(this.currentToken, holding) && lasting(this.currentToken)) {
      return Promise.resolve(this.currentToken);
    }
    if (!this.tokenFlight) {
      const flight = Promise.resolve()
        .then(() => this.tokenSource({ reason }))
        .then((token) => {
          if (typeof token !== 'string' || token === '') throw new TypeError('the token provider gave no token');
          this.currentToken = token;
          return token;
        });
      this.tokenFlight = flight;
      const done = () => {
        if (this.tokenFlight === flight) this.tokenFlight = null;
      };
      flight.then(done, done);
    }
    return this.tokenFlight;
  }

  /** The provider gave back a token the hub refused: stop until `connect()` is called. */
  unauthorized() {
    const error = new TicketHubError('token_refused', REFUSED_AGAIN);
    clearTimeout(this.retryTimer);
    clearTimeout(this.upgradeTimer);
    this.transport = null;
    this.setState('unauthorized');
    this.emit('error', error);
    for (const w of this.waiters.splice(0)) w.reject(error);
  }

  /** Opens the preferred transport that can work. */
  async open() {
    const useWs = this.transports.includes('websocket') && this.WebSocketImpl && !this.wsFailed;
    const useSse = this.transports.includes('sse') && this.fetchImpl;
    let token;
    try {
      token = this.refused ? await this.token('refused', this.refusedToken) : await this.token('connect');
    } catch (e) {
      this.emit('error', new TicketHubError('token', `token() failed: ${e?.message ?? e}`));
      this.retry();
      return;
    }
    if (this.closing) return;
    if (this.refused && noAnswer(token, this.refusedToken)) {
      this.unauthorized();
      return;
    }
    this.refused = false;
    if (useWs) this.openWs(token);
    else if (useSse) this.openSse(token);
    else {
      this.emit('error', new TicketHubError('transport', 'no WebSocket or fetch to connect with'));
      this.retry();
    }
  }

  resumeQuery() {
    return this.lastSeq === null ? '' : `last_seq=${this.lastSeq}`;
  }

  openWs(token, probe = false) {
    const query = this.resumeQuery();
    const url = `${wsBase(this.url)}/ws/notifications/${query ? `?${query}` : ''}`;
    let ws;
    try {
      ws = new this.WebSocketImpl(url, ['tickethub.v1', `bearer.${token}`]);
    } catch {
      this.wsUnavailable(probe);
      return;
    }
    let opened = false;
    if (!probe) {
      this.ws = ws;
      this.heldToken = token;
    } else this.probeWs = ws;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws && ws !== this.probeWs) return;
      let frame;
      try {
        frame = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        return;
      }
      if (ws === this.probeWs && frame.type === 'connection_established') {
        // The socket works again: it takes over from the stream.
        this.probeWs = null;
        this.ws = ws;
        this.heldToken = token;
        this.dropSse();
        this.wsFailed = false;
        this.transport = 'websocket';
        this.emit('state', { state: this.state, previous: this.state, transport: 'websocket' });
      }
      if (ws === this.ws) this.onFrame(frame, 'websocket');
    };
    let ended = false;
    const onEnd = (code, reason) => {
      // Some implementations report a failed opening as an error and never as a close.
      if (ended) return;
      ended = true;
      if (ws === this.probeWs) {
        this.probeWs = null;
        this.scheduleUpgrade();
        return;
      }
      if (ws !== this.ws) return;
      this.ws = null;
      if (!opened && !probe && this.transports.includes('sse') && this.fetchImpl) {
        // The socket could not be opened (a proxy that refuses upgrades, say): the stream.
        this.wsUnavailable(false);
        return;
      }
      this.onDrop(code, reason);
    };
    ws.onerror = () => {
      if (!opened) onEnd(1006, 'the WebSocket could not be opened');
    };
    ws.onclose = (ev) => onEnd(ev.code, ev.reason);
  }

  /** The socket could not be opened: fall back to the event stream, and look back later. */
  wsUnavailable(probe) {
    if (probe) {
      this.probeWs = null;
      this.scheduleUpgrade();
      return;
    }
    this.wsFailed = true;
    if (this.transports.includes('sse') && this.fetchImpl && !this.closing) {
      this.token().then(
        (t) => !this.closing && this.openSse(t),
        () => this.retry(),
      );
    } else {
      this.onDrop(1006, 'cannot open a WebSocket');
    }
  }

  scheduleUpgrade() {
    clearTimeout(this.upgradeTimer);
    if (this.closing || !this.transports.includes('websocket') || !this.WebSocketImpl) return;
    this.upgradeTimer = setTimeout(async () => {
      if (this.closing || this.transport !== 'sse') return;
      try {
        this.openWs(await this.token(), true);
      } catch {
        this.scheduleUpgrade();
      }
    }, this.upgradeInterval);
  }

  async openSse(token) {
    const controller = new AbortController();
    const sse = { controller, token };
    this.sse = sse;
    this.heldToken = token;
    const query = this.lastSeq === null ? '' : `?last_event_id=${this.lastSeq}`;
    let response;
    try {
      response = await this.fetchImpl(`${this.url}/sse/notifications/${query}`, {
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
        signal: controller.signal,
        cache: 'no-store',
      });
    } catch {
      if (this.sse === sse) {
        this.sse = null;
        this.onDrop(1006, 'the event stream could not be opened');
      }
      return;
    }
    if (this.sse !== sse) {
      controller.abort();
      return;
    }
    if (!response.ok) {
      this.sse = null;
      const code = response.status === 401 ? 4001 : response.status === 403 ? 4003 : 1006;
      this.onDrop(code, `HTTP ${response.status}`);
      return;
    }
    this.scheduleUpgrade();
    const parser = new SseParser();
    const decoder = new TextDecoder();
    let ended = { code: 1006, reason: 'the event stream ended' };
    // A stream that goes silent (a connection dropped on the way) is given up.
    let watchdog = null;
    const watch = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        ended = { code: 1006, reason: 'the event stream went silent' };
        controller.abort();
      }, this.streamTimeout);
    };
    try {
      const reader = response.body.getReader();
      watch();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        watch();
        for (const ev of parser.push(decoder.decode(value, { stream: true }))) {
          if (this.sse !== sse) break;
          let frame;
          try {
            frame = JSON.parse(ev.data);
          } catch {
            continue;
          }
          if (ev.event === 'error' && STREAM_ENDINGS[frame.code]) {
            ended = { code: STREAM_ENDINGS[frame.code], reason: frame.message ?? frame.code };
          } else if (ev.event === 'shutdown') {
            ended = { code: 1001, reason: 'the hub is shutting down' };
          }
          if (!frame.type) frame.type = ev.event;
          this.onFrame(frame, 'sse');
        }
        if (this.sse !== sse) break;
      }
    } catch {
      // An aborted or broken stream ends like a dropped socket.
    }
    clearTimeout(watchdog);
    if (this.sse === sse) {
      this.sse = null;
      this.onDrop(ended.code, ended.reason);
    }
  }

  dropWs(code, reason) {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        // Already closed.
      }
    }
    const probe = this.probeWs;
    this.probeWs = null;
    if (probe) {
      try {
        probe.close(code, reason);
      } catch {
        // Already closed.
      }
    }
  }

  dropSse() {
    const sse = this.sse;
    this.sse = null;
    sse?.controller.abort();
  }

  onFrame(frame, transport) {
    switch (frame.type) {
      case 'connection_established':
        this.attempt = 0;
        this.transport = transport;
        this.setState('connected');
        for (const w of this.waiters.splice(0)) w.resolve();
        break;
      case 'notification':
        this.deliver(frame);
        break;
      case 'replay_truncated':
        this.emit('truncated', { remaining: frame.remaining });
        break;
      case 'replay_complete':
        // The hub's resume point: this connection has everything up to it. A client that got
        // nothing resumes after it, rather than after whatever another tab acknowledged since.
        if (typeof frame.last_seq === 'number' && (this.lastSeq === null || frame.last_seq > this.lastSeq)) {
          this.lastSeq = frame.last_seq;
        }
        this.emit('replayed', { count: frame.count, lastSeq: frame.last_seq ?? null });
        this.flushAck();
        break;
      case 'notification_updated':
        if (frame.deleted) this.emit('inbox', { type: 'deleted', id: frame.id });
        else this.emit('inbox', { type: frame.is_read ? 'read' : 'unread', id: frame.id });
        break;
      case 'notifications_cleared':
        this.emit('inbox', { type: 'cleared', count: frame.count });
        break;
      case 'all_marked_read':
        this.emit('inbox', {
          type: 'all_read',
          count: frame.count,
          notification_type: frame.notification_type ?? null,
          ticket: frame.ticket ?? null,
        });
        break;
      case 'token_expiring':
        this.renew(transport);
        break;
      case 'token_refreshed':
        this.emit('renewed', { expiresAt: frame.expires_at ?? null });
        break;
      case 'error':
        this.emit('error', new TicketHubError(frame.code ?? 'error', frame.message ?? 'the hub refused a frame'));
        break;
      default:
        break;
    }
  }

  /** Hands a notification to the application once, in order, and acknowledges it. */
  deliver(frame) {
    const seq = frame.seq;
    if (typeof seq === 'number') {
      if (this.lastSeq !== null && seq <= this.lastSeq) return;
      this.lastSeq = seq;
    }
    const { type: _type, ...notification } = frame;
    this.emit('notification', notification);
    this.scheduleAck();
  }

  scheduleAck() {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      this.flushAck();
    }, 250);
  }

  flushAck() {
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    if (this.lastSeq === null || this.lastSeq === this.ackedSeq) return;
    if (this.ws && this.ws.readyState === 1) {
      this.ws.send(JSON.stringify({ type: 'ack', seq: this.lastSeq }));
      this.ackedSeq = this.lastSeq;
    }
  }

  /**
   * A new token before the held one runs out: sent on the socket, or a fresh stream. Once per
   * token, however often the hub says it runs out (each new stream says so again); a provider
   * that fails is asked again with backoff while the token lasts; one that gives the same
   * token back is told so (`token_unchanged`) once, and the hub refuses it when it runs out.
   */
  async renew(transport) {
    const held = this.heldToken;
    if (held === null || this.renewing === held) return;
    this.renewing = held;
    const token = await this.replacement(held, () => !this.closing && this.heldToken === held, this);
    if (token === null) return;
    this.heldToken = token;
    if (transport === 'websocket' && this.ws && this.ws.readyState === 1) {
      this.ws.send(JSON.stringify({ type: 'refresh_token', token }));
    } else if (transport === 'sse' && this.sse) {
      // A stream cannot take a new token: open the next one (it resumes after the last seq
      // delivered), then let the old one go.
      const old = this.sse;
      this.sse = null;
      old.controller.abort();
      this.openSse(token);
    }
  }

  /**
   * A token to replace `held` (which the hub says runs out soon) on a socket of `owner`'s, or
   * `null`: the provider is asked again with backoff while it fails and `held` lasts; a token
   * no newer than `held` is reported once (`token_unchanged`) and not sent; `holds()` says
   * whether the socket still wants one.
   */
  async replacement(held, holds, owner) {
    for (let attempt = 0; ; attempt += 1) {
      let token;
      try {
        token = await this.token('expiring', held);
      } catch (e) {
        owner.emit('error', new TicketHubError('token', `token() failed: ${e?.message ?? e}`));
        const wait = backoff(attempt, this.backoffBase, this.backoffMax);
        const exp = tokenExpiry(held);
        if (exp !== null && Date.now() + wait >= exp * 1000) return null;
        await new Promise((resume) => {
          owner.renewTimer = setTimeout(resume, wait);
        });
        if (!holds()) return null;
        continue;
      }
      if (!holds()) return null;
      if (noNewer(token, held)) {
        if (owner.unchanged !== held) {
          owner.unchanged = held;
          owner.emit('error', new TicketHubError('token_unchanged',
            'the token provider gave back the token that runs out; the hub refuses it when it does'));
        }
        return null;
      }
      return token;
    }
  }

  onDrop(code, reason) {
    clearTimeout(this.upgradeTimer);
    if (this.closing) return;
    const [, again] = CLOSES[code] ?? [null, true];
    this.emit('disconnect', { code, reason, willReconnect: again });
    if (!again) {
      const error = new TicketHubError(String(code), describeClose(code));
      this.emit('error', error);
      this.close(error);
      return;
    }
    if (code === 4001) {
      this.refused = true;
      this.refusedToken = this.heldToken;
    }
    this.heldToken = null;
    this.transport = null;
    this.setState('reconnecting');
    this.retry();
  }

  retry() {
    if (this.closing) return;
    clearTimeout(this.retryTimer);
    const wait = backoff(this.attempt, this.backoffBase, this.backoffMax);
    this.attempt += 1;
    // After a failed socket, the next round tries the socket again first.
    this.wsFailed = false;
    this.retryTimer = setTimeout(() => this.open(), wait);
    this.emit('retry', { attempt: this.attempt, delay: wait });
  }

  /**
   * A REST call with the current token; answers the parsed JSON (or null for 204). A 401 asks
   * for a new token (`refused`) and tries once more.
   */
  async request(method, path, body) {
    const call = (token) => this.fetchImpl(`${this.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const first = this.currentToken ?? (await this.token('connect'));
    let res = await call(first);
    if (res.status === 401) {
      await res.text().catch(() => {});
      const again = await this.token('refused', first);
      if (noAnswer(again, first)) throw new TicketHubError('token_refused', REFUSED_AGAIN);
      res = await call(again);
    }
    const text = await res.text();
    let data = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON (a proxy's error page, say): kept as text.
    }
    if (!res.ok) {
      throw new TicketHubError(String(res.status), data?.detail ?? `HTTP ${res.status}`);
    }
    return data;
  }

  /** Marks a notification read. */
  markRead(id) {
    return this.request('POST', `/api/notifications/${id}/mark_as_read/`, {});
  }

  /** Marks a notification unread. */
  markUnread(id) {
    return this.request('POST', `/api/notifications/${id}/mark_as_unread/`, {});
  }

  /** Marks every notification read. */
  markAllRead() {
    return this.request('POST', '/api/notifications/mark_all_as_read/', {});
  }

  /** Deletes a notification. */
  remove(id) {
    return this.request('DELETE', `/api/notifications/${id}/`);
  }

  /** A page of the inbox (`GET /api/notifications/` with these query parameters). */
  list(params = {}) {
    const query = new URLSearchParams(params).toString();
    return this.request('GET', `/api/notifications/${query ? `?${query}` : ''}`);
  }

  /** A project's live board and presence. */
  project(id) {
    const room = new ProjectRoom(this, id);
    this.rooms.add(room);
    room.once('closed', () => this.rooms.delete(room));
    room.open();
    return room;
  }
}

/**
 * A project's board (`/ws/projects/{id}/tickets/`) and presence
 * (`/ws/projects/{id}/presence/`). Events: `ticket_update` (stale versions dropped),
 * `comment_added`, `attachments_changed` (a ticket's files: load them again), `presence`
 * (everyone present, after each change), `joined`, `left`, `viewing`, `typing`, `state`,
 * `retry`, `renewed`, `error`, `closed`. Each socket answers the hub's `token_expiring` with
 * a fresh token of its own.
 */
export class ProjectRoom extends Emitter {
  constructor(hub, id) {
    super();
    this.hub = hub;
    this.id = id;
    this.refused = false;
    this.refusedToken = null;
    this.renewTimer = null;
    this.present = new Map();
    this.versions = new Map();
    this.board = null;
    this.presence = null;
    this.attempt = 0;
    this.state = 'connecting';
    this.closed = false;
    this.retryTimer = null;
  }

  setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.emit('state', { state, previous });
  }

  async open() {
    if (this.closed) return;
    const Impl = this.hub.WebSocketImpl;
    if (!Impl) {
      this.emit('error', new TicketHubError('transport', 'project rooms need a WebSocket'));
      return;
    }
    let token;
    try {
      token = this.refused
        ? await this.hub.token('refused', this.refusedToken)
        : await this.hub.token('connect');
    } catch (e) {
      this.emit('error', new TicketHubError('token', `token() failed: ${e?.message ?? e}`));
      this.retry();
      return;
    }
    if (this.closed) return;
    if (this.refused && noAnswer(token, this.refusedToken)) {
      this.emit('error', new TicketHubError('token_refused', REFUSED_AGAIN));
      this.close();
      return;
    }
    this.refused = false;
    const base = `${wsBase(this.hub.url)}/ws/projects/${this.id}`;
    const protocols = ['tickethub.v1', `bearer.${token}`];
    let live = 0;
    const socket = (url, onFrame) => {
      const ws = new Impl(url, protocols);
      // The token this socket holds (each renews its own).
      ws.heldToken = token;
      ws.onmessage = (ev) => {
        let frame;
        try {
          frame = JSON.parse(String(ev.data));
        } catch {
          return;
        }
        if (frame.type === 'connection_established' || frame.type === 'presence_state') {
          live += 1;
          if (live === 2) {
            this.attempt = 0;
            this.setState('connected');
          }
        }
        if (frame.type === 'token_expiring') this.renew(ws);
        else if (frame.type === 'token_refreshed') this.emit('renewed', { expiresAt: frame.expires_at ?? null });
        else onFrame(frame);
      };
      let opened = false;
      let ended = false;
      ws.onopen = () => {
        opened = true;
      };
      const onEnd = (code) => {
        if (ended) return;
        ended = true;
        if (ws !== this.board && ws !== this.presence) return;
        this.drop();
        if (this.closed) return;
        if (code === 4003) {
          this.emit('error', new TicketHubError('4003', describeClose(4003)));
          this.close();
          return;
        }
        if (code === 4001) {
          this.refused = true;
          this.refusedToken = ws.heldToken;
        }
        this.setState('reconnecting');
        this.retry();
      };
      ws.onerror = () => {
        if (!opened) onEnd(1006);
      };
      ws.onclose = (ev) => onEnd(ev.code);
      return ws;
    };
    this.board = socket(`${base}/tickets/`, (f) => this.onBoard(f));
    this.presence = socket(`${base}/presence/?presence=diff`, (f) => this.onPresence(f));
  }

  retry() {
    clearTimeout(this.retryTimer);
    if (this.closed) return;
    const wait = backoff(this.attempt, this.hub.backoffBase, this.hub.backoffMax);
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.open(), wait);
    this.emit('retry', { attempt: this.attempt, delay: wait });
  }

  drop() {
    const sockets = [this.board, this.presence];
    this.board = null;
    this.presence = null;
    for (const ws of sockets) {
      try {
        ws?.close(1000, 'leaving');
      } catch {
        // Already closed.
      }
    }
  }

  /** Leaves the room for good. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.renewTimer);
    this.drop();
    this.setState('closed');
    this.emit('closed');
  }

  /**
   * The hub says this socket's token runs out soon: a fresh one goes on the same socket (both
   * sockets share one renewal, and the hub's client shares its own with them).
   */
  async renew(ws) {
    const held = ws.heldToken;
    const live = () => !this.closed && (ws === this.board || ws === this.presence);
    const token = await this.hub.replacement(held, live, this);
    if (token === null) return;
    if (ws.readyState === 1) {
      ws.heldToken = token;
      ws.send(JSON.stringify({ type: 'refresh_token', token }));
    }
  }

  /**
   * The project's tickets over REST, taken after the board socket is live (so no change is
   * missed); their versions decide which later updates are stale.
   */
  async tickets() {
    const page = await this.hub.request('GET', `/api/tickets/?project=${this.id}&page_size=100`);
    const list = page.results ?? page;
    for (const t of list) {
      if (typeof t.version === 'number') this.versions.set(t.id, t.version);
    }
    return list;
  }

  onBoard(f) {
    if (f.type === 'ticket_update') {
      const d = f.data;
      const held = this.versions.get(d.ticket_id);
      if (typeof held === 'number' && typeof d.version === 'number' && d.version <= held) return;
      if (typeof d.version === 'number') this.versions.set(d.ticket_id, d.version);
      this.emit('ticket_update', { action: f.action, ...d });
    } else if (f.type === 'comment_added') {
      this.emit('comment_added', f.data);
    } else if (f.type === 'attachments_changed') {
      this.emit('attachments_changed', f.data);
    } else if (f.type === 'error') {
      this.emit('error', new TicketHubError(f.code ?? 'error', f.message ?? 'refused'));
    }
  }

  onPresence(f) {
    switch (f.type) {
      case 'presence_state':
        this.present = new Map(f.users.map((u) => [u.user_id, { ...u }]));
        this.emit('presence', [...this.present.values()]);
        break;
      case 'presence_diff':
        for (const u of f.leaves ?? []) {
          this.present.delete(u.user_id);
          this.emit('left', u);
        }
        for (const u of f.joins ?? []) {
          this.present.set(u.user_id, { ...u });
          this.emit('joined', u);
        }
        this.emit('presence', [...this.present.values()]);
        break;
      case 'ticket_viewing': {
        const u = this.present.get(f.user_id);
        if (u) u.viewing = f.ticket_id;
        this.emit('viewing', { user_id: f.user_id, ticket_id: f.ticket_id });
        break;
      }
      case 'user_typing':
        this.emit('typing', { user_id: f.user_id, ticket_id: f.ticket_id, is_typing: f.is_typing });
        break;
      case 'error':
        this.emit('error', new TicketHubError(f.code ?? 'error', f.message ?? 'refused'));
        break;
      default:
        break;
    }
  }

  /** Everyone present now. */
  people() {
    return [...this.present.values()];
  }

  send(frame) {
    if (this.presence && this.presence.readyState === 1) {
      this.presence.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  /** This user looks at a ticket of the project (or at none: `null`). */
  view(ticketId) {
    return this.send({ type: 'ticket_viewing', ticket_id: ticketId });
  }

  /** This user types under a ticket, or stopped. */
  typing(ticketId, isTyping = true) {
    return this.send({ type: 'user_typing', ticket_id: ticketId, is_typing: isTyping });
  }
}

export default TicketHub;
