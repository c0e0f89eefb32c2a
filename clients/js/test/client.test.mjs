// The client against a real hub: exactly once and in order across `kill -9`, acks, tokens,
// the event-stream fallback behind a proxy that refuses WebSockets, inbox events and rooms.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { TicketHub, SseParser, backoff, describeClose } from '../src/index.js';
import { Hub, until, patience } from './hub.mjs';

const hubs = [];
const clients = [];
after(async () => {
  // A failed test leaves its clients retrying: they would keep the process alive.
  for (const c of clients) c.close();
  for (const hub of hubs) {
    await hub.stop();
    hub.cleanup();
  }
});

async function started(args) {
  const hub = await new Hub(args).start();
  hubs.push(hub);
  return hub;
}

/** The admin's token and the client user's id. */
async function cast(hub) {
  const admin = (await hub.login('admin')).access;
  const me = await hub.get('/api/users/me/', (await hub.login('client')).access);
  return { admin, clientId: me.body.id };
}

/** A client of the hub at `url` collecting what it delivers. */
function client(url, token, options = {}) {
  const hub = new TicketHub({ url, token, backoffBase: 50, backoffMax: 500, ...options });
  clients.push(hub);
  const got = [];
  const states = [];
  hub.on('notification', (n) => got.push(n));
  hub.on('state', (s) => states.push(s));
  hub.on('error', () => {});
  return { hub, got, states };
}

test('pure parts: the event-stream parser, backoff and close codes', () => {
  const p = new SseParser();
  assert.deepEqual(p.push('id: 3\nevent: notification\ndata: {"a":'), []);
  assert.deepEqual(p.push('1}\n\n: heartbeat\n\r\ndata: x\r\ndata: y\r\n\r\n'), [
    { event: 'notification', data: '{"a":1}', id: '3' },
    { event: 'message', data: 'x\ny', id: null },
  ]);
  assert.deepEqual(p.push('event: e\ndata:no-space\n'), []);
  assert.deepEqual(p.push('\n'), [{ event: 'e', data: 'no-space', id: null }]);
  // Full jitter: within [0, min(max, base·2^n)).
  assert.equal(backoff(0, 500, 30000, () => 0.999), 499);
  assert.equal(backoff(3, 500, 30000, () => 0.5), 2000);
  assert.equal(backoff(20, 500, 30000, () => 0.999), 29970);
  assert.equal(backoff(5, 500, 30000, () => 0), 0);
  assert.match(describeClose(4001), /token/);
  assert.match(describeClose(4003), /member/);
  assert.throws(() => new TicketHub({ token: () => 't' }), /url/);
  assert.throws(() => new TicketHub({ url: 'http://x' }), /token/);
});

test('each notification once and in order, acknowledged, across kill -9 and a restart', async () => {
  const hub = await started();
  const { admin, clientId } = await cast(hub);
  const { hub: c, got } = client(hub.url, hub.tokens('client'));
  await c.connect();
  assert.equal(c.transport, 'websocket');
  for (let i = 1; i <= 5; i++) await hub.notify(admin, clientId, `before ${i}`);
  await until('five notifications', () => got.length >= 5);

  // The hub dies without a word while more are sent; it comes back on the same database.
  const sending = (async () => {
    for (let i = 1; i <= 10; i++) await hub.notify(admin, clientId, `around ${i}`);
  })();
  await until('the first of the next ones', () => got.length >= 6);
  await hub.kill9();
  await hub.restart();
  await sending;
  const admin2 = (await hub.login('admin')).access;
  for (let i = 1; i <= 5; i++) await hub.notify(admin2, clientId, `after ${i}`);

  // What the inbox holds is what the client delivered: each once, in seq order.
  const inbox = (await hub.get('/api/notifications/?page_size=100', (await hub.login('client')).access)).body;
  await until('everything committed is delivered', () => got.length >= inbox.count);
  const seqs = got.map((n) => n.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'in seq order');
  assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
  assert.deepEqual(new Set(got.map((n) => n.id)), new Set(inbox.results.map((n) => n.id)));
  assert.equal(got.length, inbox.count);
  // Each send committed once, a send the hub was killed while answering included.
  const titles = got.map((n) => n.title);
  assert.equal(titles.length, 20, JSON.stringify(titles));
  assert.equal(new Set(titles).size, titles.length, `a title twice: ${JSON.stringify(titles)}`);
  assert.ok(got.every((n) => !('type' in n) && typeof n.notification_type === 'string'));

  // Acknowledged: a fresh client that remembers nothing gets no backlog.
  await until('the last seq is acknowledged', () => c.ackedSeq === c.lastSeq);
  const fresh = client(hub.url, hub.tokens('client'));
  const replayed = new Promise((ok) => fresh.hub.once('replayed', ok));
  await fresh.hub.connect();
  assert.equal((await replayed).count, 0);
  assert.equal(fresh.got.length, 0);
  fresh.hub.close();
  c.close();
  assert.equal(c.state, 'closed');
});

test('a refused token is asked for again; one about to expire is renewed once for every socket', async () => {
  const hub = await started(['--access-token-ttl', '60']);
  const { admin, clientId } = await cast(hub);
  const good = hub.tokens('client');
  const reasons = [];
  const token = async ({ reason }) => {
    reasons.push(reason);
    return reasons.length === 1 ? 'not-a-token' : good();
  };
  const { hub: c, got } = client(hub.url, token);
  const renewed = [];
  c.on('renewed', (r) => renewed.push(r));
  const drops = [];
  c.on('disconnect', (d) => drops.push(d.code));
  await c.connect();
  assert.deepEqual(drops, [4001]);
  assert.deepEqual(reasons, ['connect', 'refused'], 'the token after a 4001 is asked for as refused');
  // A project room's sockets hold tokens of their own, and renew them themselves.
  const projects = (await hub.get('/api/projects/', await good())).body;
  const room = c.project((projects.results ?? projects)[0].id);
  const roomRenewed = [];
  const roomStates = [];
  room.on('renewed', (r) => roomRenewed.push(r));
  room.on('state', (s) => roomStates.push(s.state));
  await until('the room is live', () => room.state === 'connected');
  // 30 s before the token's expiry the hub says so: the client fetches another and sends it.
  await until('the token is renewed', () => renewed.length === 1, 30000);
  await until('both room sockets renewed theirs', () => roomRenewed.length === 2, 30000);
  // One refresh for the three sockets: the room's take the token the first one got.
  assert.deepEqual(reasons, ['connect', 'refused', 'connect', 'expiring']);
  assert.ok(renewed[0].expiresAt > Date.now() / 1000 + 50, JSON.stringify(renewed));
  assert.ok(roomRenewed.every((r) => r.expiresAt > Date.now() / 1000 + 50), JSON.stringify(roomRenewed));
  await hub.notify(admin, clientId, 'still here');
  await until('delivered', () => got.length === 1);
  assert.deepEqual(drops, [4001], 'no reconnect for a renewal');
  assert.deepEqual(roomStates, ['connected'], 'the room stayed connected');
  c.close();
});

test('a REST call whose token is refused asks for another and tries once more', async () => {
  const hub = await started();
  const good = hub.tokens('client');
  const reasons = [];
  const { hub: c } = client(hub.url, async ({ reason }) => {
    reasons.push(reason);
    return reasons.length === 1 ? 'not-a-token' : good();
  });
  const page = await c.list({ page_size: 5 });
  assert.equal(typeof page.count, 'number');
  assert.deepEqual(reasons, ['connect', 'refused']);
  await c.list();
  assert.equal(reasons.length, 2, 'the current token is used again');
});

test('a client that got nothing resumes from the hub\'s resume point, not after what another tab acknowledged since', async () => {
  const hub = await started();
  const { admin, clientId } = await cast(hub);
  const a = client(hub.url, hub.tokens('client'));
  await a.hub.connect();
  for (let i = 1; i <= 3; i++) await hub.notify(admin, clientId, `seen ${i}`);
  await until('three acknowledged', () => a.got.length === 3 && a.hub.ackedSeq === a.hub.lastSeq);

  // A second tab starts with nothing to replay, on a socket that can be held closed.
  let blocked = false;
  const urls = [];
  class Gate extends WebSocket {
    constructor(url, protocols) {
      urls.push(url);
      super(blocked ? 'ws://127.0.0.1:9/' : url, protocols);
    }
  }
  const b = client(hub.url, hub.tokens('client'), { WebSocket: Gate, transports: ['websocket'] });
  const replayed = new Promise((ok) => b.hub.once('replayed', ok));
  await b.hub.connect();
  assert.equal((await replayed).count, 0);
  const resume = a.hub.lastSeq;
  assert.equal(b.hub.lastSeq, resume, 'the resume point of replay_complete is kept');

  // The second tab is away while the first sees and acknowledges two more. Its socket is
  // closed under it: the hub answers 1000, which the client did not ask for, so it reconnects.
  const drops = [];
  b.hub.on('disconnect', (d) => drops.push(d));
  blocked = true;
  b.hub.ws.close(4000, 'test');
  for (let i = 1; i <= 2; i++) await hub.notify(admin, clientId, `missed ${i}`);
  await until('the first tab acknowledged five', () => a.got.length === 5 && a.hub.ackedSeq === a.hub.lastSeq);
  blocked = false;
  await until('the second tab has both', () => b.got.length === 2);
  assert.deepEqual(b.got.map((n) => n.title), ['missed 1', 'missed 2']);
  assert.equal(new URL(urls.at(-1)).searchParams.get('last_seq'), String(resume));
  assert.deepEqual(drops.slice(0, 1).map((d) => [d.code, d.willReconnect]), [[1000, true]]);
  a.hub.close();
  b.hub.close();
});

test('an event stream ended as revoked asks for a token as refused; a 403 stops and rejects connect()', async () => {
  const enc = new TextEncoder();
  const stream = (text) => new ReadableStream({
    start(controller) {
      controller.enqueue(enc.encode(text));
      controller.close();
    },
  });
  const requests = [];
  const fetch = async (url, init) => {
    requests.push({ url, authorization: init.headers.authorization });
    if (requests.length === 1) {
      return new Response(stream('event: error\ndata: {"type":"error","code":"revoked","message":"Token has been revoked."}\n\n'), {
        status: 200, headers: { 'content-type': 'text/event-stream' },
      });
    }
    return new Response('{"detail":"Not allowed."}', { status: 403 });
  };
  const reasons = [];
  const c = new TicketHub({
    url: 'http://hub.invalid', transports: ['sse'], fetch, backoffBase: 10, backoffMax: 20,
    token: ({ reason }) => {
      reasons.push(reason);
      return `t${reasons.length}`;
    },
  });
  const drops = [];
  const retries = [];
  const errors = [];
  c.on('disconnect', (d) => drops.push(d));
  c.on('retry', (r) => retries.push(r));
  c.on('error', (e) => errors.push(e.code));
  await assert.rejects(c.connect(), (e) => e instanceof Error && e.name === 'TicketHubError' && e.code === '4003');
  assert.deepEqual(drops.map((d) => [d.code, d.willReconnect]), [[4001, true], [4003, false]]);
  assert.deepEqual(reasons, ['connect', 'refused']);
  assert.deepEqual(requests.map((r) => r.authorization), ['Bearer t1', 'Bearer t2']);
  assert.equal(retries.length, 1);
  assert.equal(retries[0].attempt, 1);
  assert.ok(retries[0].delay >= 0 && retries[0].delay < 10, JSON.stringify(retries));
  assert.ok(errors.includes('4003'), JSON.stringify(errors));
  assert.equal(c.state, 'closed');
});

test('behind a proxy that refuses WebSockets: the event stream, and back to a socket', async (t) => {
  const hub = await started();
  const { admin, clientId } = await cast(hub);
  let upgrades = false;
  const proxy = http.createServer((req, res) => {
    const up = http.request({ host: '127.0.0.1', port: hub.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
      // The hub went away mid-stream: so does the client's connection, as behind any proxy.
      r.on('aborted', () => res.destroy());
      r.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  proxy.on('upgrade', (req, socket, head) => {
    if (!upgrades) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const up = net.connect(hub.port, '127.0.0.1', () => {
      up.write(`${req.method} ${req.url} HTTP/1.1\r\n${Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`);
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise((ok) => proxy.listen(0, '127.0.0.1', ok));
  t.after(() => {
    proxy.close();
    proxy.closeAllConnections();
  });
  const url = `http://127.0.0.1:${proxy.address().port}`;
  const { hub: c, got, states } = client(url, hub.tokens('client'), { upgradeInterval: 300 });
  await c.connect();
  assert.equal(c.transport, 'sse');
  for (let i = 1; i <= 3; i++) await hub.notify(admin, clientId, `streamed ${i}`);
  await until('three over the stream', () => got.length === 3);
  assert.deepEqual(got.map((n) => n.title), ['streamed 1', 'streamed 2', 'streamed 3']);
  assert.ok(got.every((n) => n.replayed === false));

  // The stream resumes from the last seq after the hub dies.
  await hub.kill9();
  await hub.restart();
  const admin2 = (await hub.login('admin')).access;
  await hub.notify(admin2, clientId, 'after the crash');
  await until('four', () => got.length === 4);
  assert.equal(got[3].title, 'after the crash');

  // WebSockets pass again: the client moves back to a socket, missing nothing.
  upgrades = true;
  await until('back on a socket', () => c.transport === 'websocket');
  assert.ok(states.some((s) => s.transport === 'websocket'));
  await hub.notify(admin2, clientId, 'on the socket again');
  await until('five', () => got.length === 5);
  const seqs = got.map((n) => n.seq);
  assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b));
  c.close();
});

test('inbox changes arrive as events; the REST helpers act on the inbox', async () => {
  const hub = await started();
  const { admin, clientId } = await cast(hub);
  const { hub: c, got } = client(hub.url, hub.tokens('client'));
  const inbox = [];
  c.on('inbox', (e) => inbox.push(e));
  await c.connect();
  await hub.notify(admin, clientId, 'one');
  await hub.notify(admin, clientId, 'two');
  await until('two', () => got.length === 2);
  await c.markRead(got[0].id);
  await until('read', () => inbox.some((e) => e.type === 'read' && e.id === got[0].id));
  await c.markUnread(got[0].id);
  await until('unread', () => inbox.some((e) => e.type === 'unread' && e.id === got[0].id));
  await c.markAllRead();
  await until('all read', () => inbox.some((e) => e.type === 'all_read' && e.notification_type === null && e.ticket === null));
  await c.remove(got[1].id);
  await until('deleted', () => inbox.some((e) => e.type === 'deleted' && e.id === got[1].id));
  const page = await c.list({ is_read: true });
  assert.deepEqual(page.results.map((n) => n.id), [got[0].id]);
  // The REST shape (index.d.ts's RestNotification), not the socket's.
  const [listed] = page.results;
  assert.equal(listed.seq, got[0].seq);
  assert.equal(listed.created_at !== undefined && listed.ticket_key !== undefined && listed.timestamp === undefined, true, JSON.stringify(listed));
  await assert.rejects(c.markRead(999999), (e) => e.code === '404');
  // Closed, then connected again: it resumes after what it delivered.
  c.close();
  await c.connect();
  assert.equal(c.state, 'connected');
  await hub.notify(admin, clientId, 'three');
  await until('three', () => got.length === 3);
  assert.deepEqual(got.map((n) => n.title), ['one', 'two', 'three']);
  c.close();
});

test('a REST answer that is not JSON is an error with its status', async () => {
  const c = new TicketHub({
    url: 'http://hub.invalid',
    token: () => 't',
    fetch: async () => new Response('<html>Bad Gateway</html>', { status: 502 }),
  });
  await assert.rejects(c.list(), (e) => e.name === 'TicketHubError' && e.code === '502' && e.message === 'HTTP 502');
});

test("a project's board and presence", async () => {
  const hub = await started();
  const token = hub.tokens('client');
  const { hub: c } = client(hub.url, token);
  await c.connect();
  const projects = (await hub.get('/api/projects/', await token())).body;
  const project = (projects.results ?? projects)[0].id;
  const room = c.project(project);
  const updates = [];
  room.on('ticket_update', (u) => updates.push(u));
  await until('the room is live', () => room.state === 'connected');
  await until('present', () => room.people().some((p) => p.username === 'client'));
  const before = await room.tickets();
  const created = await hub.post('/api/tickets/', { project, title: 'From the client', priority: 'LOW', category: 'BUG' }, await token());
  assert.equal(created.status, 201);
  await until('the board says so', () => updates.some((u) => u.ticket_id === created.body.id && u.action === 'created'));
  assert.equal((await room.tickets()).length, before.length + 1);
  assert.ok(room.view(created.body.id));
  // Another room of a project that does not exist is refused (4003) and stops for good.
  const other = c.project(999999);
  const refused = new Promise((ok) => other.once('error', ok));
  assert.equal((await refused).code, '4003');
  assert.equal(other.state, 'closed');
  c.close();
  assert.equal(room.state, 'closed');
});
