// The client in headless Chromium against a real hub: a page loads src/index.js as a module,
// connects, and keeps every notification exactly once and in seq order while the hub is killed
// with SIGKILL and started again on the same port and database, the page staying open; the
// same over the event stream behind a proxy that refuses WebSockets, and back to a socket.
//
// The page and the client's file are served by a small server in this file, which passes
// everything else (REST, the event stream, WebSocket upgrades) through to the hub, so that the
// page and the hub share an origin as they do in production. It can refuse upgrades, and hold
// the page away from the hub (503, refused upgrades) while notifications are committed.
//
// Needs /usr/bin/chromium (or CHROMIUM) and playwright-core in the repository's node_modules;
// without them the test fails with the command that installs them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hub, patience } from './hub.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const CLIENT = resolve(here, '../src/index.js');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let browser = null;
const hubs = [];
const servers = [];

/** Chromium through playwright-core, or an error that says how to install what is missing. */
async function launch() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install it with \`apt-get update && apt-get -o 'DPkg::Post-Invoke::=' install -y chromium chromium-driver\` (or set CHROMIUM to a Chromium binary)`);
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is missing (${e.message}): run \`npm ci\` in the repository root`);
  }
  // A fresh temporary profile each run (playwright makes and removes it).
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close().catch(() => {});
  for (const s of servers) {
    s.close();
    s.closeAllConnections();
  }
  for (const hub of hubs) {
    await hub.stop();
    hub.cleanup();
  }
});

async function started() {
  const hub = await new Hub().start();
  hubs.push(hub);
  return hub;
}

/** The admin's token and the client user's id. */
async function cast(hub) {
  const admin = (await hub.login('admin')).access;
  const me = await hub.get('/api/users/me/', (await hub.login('client')).access);
  return { admin, clientId: me.body.id };
}

// The page: a client of the hub at its own origin, logged in as the demo client, recording
// what it delivers and how its connection goes.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>tickethub client</title>
<script type="module">
import { TicketHub } from '/client-test/tickethub-client.js';

let pair = null;
const post = (path, body) => fetch(path, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
});
// Refresh tokens rotate; a refused one (or a hub that forgot it) means logging in again.
async function token() {
  if (pair) {
    const r = await post('/api/auth/refresh/', { refresh: pair.refresh });
    if (r.ok) {
      pair = await r.json();
      return pair.access;
    }
    if (r.status !== 401) throw new Error('refresh: ' + r.status);
  }
  const r = await post('/api/auth/login/', { username: 'client', password: 'client-demo' });
  if (!r.ok) throw new Error('login: ' + r.status);
  pair = await r.json();
  return pair.access;
}

const params = new URLSearchParams(location.search);
const hub = new TicketHub({
  url: location.origin, token, backoffBase: 50, backoffMax: 500,
  upgradeInterval: Number(params.get('upgrade') || 60000),
});
const th = { hub, got: [], states: [], drops: [], errors: [] };
hub.on('notification', (n) => th.got.push({ id: n.id, seq: n.seq, title: n.title, replayed: n.replayed, type: typeof n.type }));
hub.on('state', (s) => th.states.push(s));
hub.on('disconnect', (d) => th.drops.push(d));
hub.on('error', (e) => th.errors.push(e.code));
th.ready = hub.connect().then(() => 'connected', (e) => 'failed: ' + e.message);
window.th = th;
</script></head><body>tickethub client test</body></html>`;

/**
 * A server for the page and the client's file that passes everything else through to the hub.
 * `state.upgrades`: WebSocket upgrades pass; `state.hold`: the page cannot reach the hub.
 */
async function front(hub, { upgrades }) {
  const state = { upgrades, hold: false };
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/client-test/tickethub-client.js')) {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
      res.end(readFileSync(CLIENT));
      return;
    }
    if (req.url.startsWith('/client-test/')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
      return;
    }
    if (state.hold) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end('{"detail":"held away from the hub"}');
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: hub.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
      // The hub went away mid-stream: so does the page's connection, as behind any proxy.
      r.on('aborted', () => res.destroy());
      r.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    // The page let go (an event stream it replaced): so does the hub's side.
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  server.on('upgrade', (req, socket, head) => {
    if (!state.upgrades || state.hold) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const up = net.connect(hub.port, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(`${lines.join('\r\n')}\r\n\r\n`);
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    up.on('close', () => socket.destroy());
    socket.on('error', () => up.destroy());
    socket.on('close', () => up.destroy());
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  servers.push(server);
  state.url = `http://127.0.0.1:${server.address().port}`;
  return state;
}

/** A fresh page at the front server, watched for script errors. */
async function open(url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(patience);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  await page.goto(url);
  const ready = await page.waitForFunction(() => window.th?.ready, null, { timeout: patience });
  assert.equal(await ready.evaluate((p) => p), 'connected');
  return { page, context, problems };
}

/** Waits until `fn` holds in the page. */
async function inPage(page, what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: patience, polling: 50 });
  } catch (e) {
    throw new Error(`timed out waiting for: ${what}`, { cause: e });
  }
}

const got = (page) => page.evaluate(() => window.th.got);

/** Each of the inbox's notifications delivered once, in seq order. */
async function assertExactlyOnce(hub, page) {
  const inbox = (await hub.get('/api/notifications/?page_size=100', (await hub.login('client')).access)).body;
  await inPage(page, `all ${inbox.count} committed notifications are delivered`, (n) => window.th.got.length >= n, inbox.count);
  const delivered = await got(page);
  const seqs = delivered.map((n) => n.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'in seq order');
  assert.equal(new Set(seqs).size, seqs.length, 'no seq twice');
  assert.equal(delivered.length, inbox.count, 'as many as the inbox holds');
  assert.deepEqual(new Set(delivered.map((n) => n.id)), new Set(inbox.results.map((n) => n.id)));
  assert.ok(delivered.every((n) => n.type === 'undefined'), 'notifications come without their frame type');
  return delivered;
}

test('in Chromium: each notification once and in order across kill -9, a restart and a backlog', async () => {
  const hub = await started();
  const { admin, clientId } = await cast(hub);
  const server = await front(hub, { upgrades: true });
  const { page, context, problems } = await open(`${server.url}/client-test/`);
  assert.equal(await page.evaluate(() => window.th.hub.transport), 'websocket');

  for (let i = 1; i <= 5; i++) await hub.notify(admin, clientId, `before ${i}`);
  await inPage(page, 'five notifications', () => window.th.got.length >= 5);

  // The hub dies without a word while more are sent; it comes back on the same port and
  // database. The page is held away until more are committed: it gets those as its backlog.
  const sending = (async () => {
    for (let i = 1; i <= 10; i++) await hub.notify(admin, clientId, `around ${i}`);
  })();
  await inPage(page, 'the first of the next ones', () => window.th.got.length >= 6);
  await hub.kill9();
  server.hold = true;
  await hub.restart();
  await sending;
  const admin2 = (await hub.login('admin')).access;
  const lastBefore = await page.evaluate(() => window.th.hub.lastSeq);
  for (let i = 1; i <= 3; i++) await hub.notify(admin2, clientId, `while away ${i}`);
  server.hold = false;
  await inPage(page, 'the page is connected again', () => window.th.hub.state === 'connected');
  for (let i = 1; i <= 3; i++) await hub.notify(admin2, clientId, `after ${i}`);

  const delivered = await assertExactlyOnce(hub, page);
  // Each send committed once, a send the hub was killed while answering included.
  const titles = delivered.map((n) => n.title);
  assert.equal(titles.length, 21, JSON.stringify(titles));
  assert.equal(new Set(titles).size, titles.length, `a title twice: ${JSON.stringify(titles)}`);
  const away = delivered.filter((n) => n.title.startsWith('while away'));
  assert.ok(away.every((n) => n.seq > lastBefore && n.replayed === true), `the backlog was replayed: ${JSON.stringify(away)}`);
  const live = delivered.filter((n) => n.title.startsWith('after'));
  assert.ok(live.every((n) => n.replayed === false), JSON.stringify(live));

  // The connection went down and came back; everything delivered is acknowledged.
  const { drops, states } = await page.evaluate(() => ({ drops: window.th.drops, states: window.th.states.map((s) => s.state) }));
  assert.ok(drops.length >= 1 && drops.every((d) => d.willReconnect), JSON.stringify(drops));
  assert.ok(states.includes('reconnecting'), JSON.stringify(states));
  assert.equal(states.at(-1), 'connected');
  await inPage(page, 'the last seq is acknowledged', () => window.th.hub.ackedSeq === window.th.hub.lastSeq);
  await page.evaluate(() => window.th.hub.close());
  assert.equal(await page.evaluate(() => window.th.hub.state), 'closed');
  assert.deepEqual(problems, []);
  await context.close();
});

test('in Chromium behind a proxy that refuses WebSockets: the event stream across kill -9, then back to a socket', async () => {
  const hub = await started();
  const { admin, clientId } = await cast(hub);
  const server = await front(hub, { upgrades: false });
  const { page, context, problems } = await open(`${server.url}/client-test/?upgrade=300`);
  assert.equal(await page.evaluate(() => window.th.hub.transport), 'sse');

  for (let i = 1; i <= 3; i++) await hub.notify(admin, clientId, `streamed ${i}`);
  await inPage(page, 'three over the stream', () => window.th.got.length >= 3);
  assert.deepEqual((await got(page)).map((n) => n.title), ['streamed 1', 'streamed 2', 'streamed 3']);

  await hub.kill9();
  server.hold = true;
  await hub.restart();
  const admin2 = (await hub.login('admin')).access;
  const lastBefore = await page.evaluate(() => window.th.hub.lastSeq);
  for (let i = 1; i <= 2; i++) await hub.notify(admin2, clientId, `while away ${i}`);
  server.hold = false;
  await inPage(page, 'the stream again', () => window.th.hub.state === 'connected' && window.th.hub.transport === 'sse');
  await hub.notify(admin2, clientId, 'streamed after');
  await inPage(page, 'six', () => window.th.got.length >= 6);

  // WebSockets pass again: the page moves back to a socket, missing nothing.
  server.upgrades = true;
  await inPage(page, 'back on a socket', () => window.th.hub.transport === 'websocket');
  await hub.notify(admin2, clientId, 'on the socket');
  const delivered = await assertExactlyOnce(hub, page);
  assert.deepEqual(delivered.map((n) => n.title), [
    'streamed 1', 'streamed 2', 'streamed 3', 'while away 1', 'while away 2', 'streamed after', 'on the socket',
  ]);
  assert.ok(delivered.slice(3, 5).every((n) => n.seq > lastBefore && n.replayed === true), JSON.stringify(delivered));
  await inPage(page, 'acknowledged on the socket', () => window.th.hub.ackedSeq === window.th.hub.lastSeq);
  await page.evaluate(() => window.th.hub.close());
  assert.deepEqual(problems, []);
  await context.close();
});
