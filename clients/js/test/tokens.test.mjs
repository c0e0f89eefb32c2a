// Tokens against a real hub, given tokens that last 33 s (signed here with the hub's secret;
// the hub warns 30 s before expiry, and its own tokens last at least a minute): one
// refresh per expiry, shared by every socket; a provider that fails is asked again with
// backoff; one that gives back the same token (the README's first mistake) is told so once,
// and when the hub refuses that token the client raises `token_refused` and stops, on a
// WebSocket and on the event stream alike, until `connect()` is called again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { TicketHub, tokenExpiry } from '../src/index.js';
import { Hub, until, patience } from './hub.mjs';

const TTL = 33;
const SECRET = 'tokens-test-secret-0123456789abcdef';

/** `token` (one of the hub's) signed again to run out `seconds` from now. */
function lasting(token, seconds) {
  const [header, payload] = token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  claims.exp = Math.floor(Date.now() / 1000) + seconds;
  const body = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}
const hubs = [];
const clients = [];
after(async () => {
  for (const c of clients) c.close();
  for (const hub of hubs) {
    await hub.stop();
    hub.cleanup();
  }
});

async function started() {
  const hub = await new Hub(['--jwt-secret', SECRET]).start();
  hubs.push(hub);
  return hub;
}

/** A client that records the provider's calls by reason, its errors, states and retries. */
function watched(url, provider, options = {}) {
  const reasons = [];
  const token = async (ctx) => {
    reasons.push(ctx.reason);
    return provider(ctx);
  };
  const hub = new TicketHub({ url, token, backoffBase: 50, backoffMax: 400, ...options });
  clients.push(hub);
  const errors = [];
  const states = [];
  const retries = [];
  hub.on('error', (e) => errors.push(e.code));
  hub.on('state', (s) => states.push(s.state));
  hub.on('retry', (r) => retries.push(r));
  return { hub, reasons, errors, states, retries };
}

test('the token expiry of a JWT is read; anything else has none', () => {
  const payload = Buffer.from(JSON.stringify({ exp: 1795845785, user_id: 1 })).toString('base64url');
  assert.equal(tokenExpiry(`e30.${payload}.sig`), 1795845785);
  assert.equal(tokenExpiry('not-a-token'), null);
  assert.equal(tokenExpiry(`e30.${Buffer.from('{}').toString('base64url')}.x`), null);
});

/**
 * A provider that always gives the same token: told once as it nears expiry, refused at
 * expiry, and then the client stops; a new token and `connect()` bring it back.
 */
async function fixedTokenStops(hub, transports) {
  const fixed = lasting((await hub.login('client')).access, TTL);
  let give = () => fixed;
  const c = watched(hub.url, () => give(), { transports });
  await c.hub.connect();
  assert.equal(c.hub.transport, transports[0]);
  await until(`${transports[0]}: told the token did not change`, () => c.errors.includes('token_unchanged'));
  const refused = new Promise((ok) => {
    c.hub.on('error', (e) => e.code === 'token_refused' && ok());
  });
  // The hub refuses the token when it runs out; the provider gives it again; the client stops.
  await Promise.race([refused, new Promise((_, fail) => setTimeout(() => fail(new Error('no token_refused')), (TTL + 5) * 1000 + patience))]);
  assert.equal(c.hub.state, 'unauthorized');
  assert.deepEqual(c.reasons, ['connect', 'expiring', 'refused'], `${transports[0]}: one call per need`);
  assert.equal(c.errors.filter((e) => e === 'token_unchanged').length, 1, JSON.stringify(c.errors));
  const retriesThen = c.retries.length;
  // Nothing more happens on its own: no provider call, no reconnect (a bounded look).
  await new Promise((ok) => setTimeout(ok, 1500));
  assert.equal(c.retries.length, retriesThen, 'no reconnecting once the token is refused again');
  assert.equal(c.reasons.length, 3);
  // The application has a new token: connect() goes on.
  const fresh = hub.tokens('client');
  give = () => fresh();
  await c.hub.connect();
  assert.equal(c.hub.state, 'connected');
  assert.equal(c.reasons.at(-1), 'refused', 'the next token after a refusal is asked for as refused');
  c.hub.close();
}

test('a fixed token: told once, refused at expiry, then no reconnecting, on a socket and on the event stream', async () => {
  const hub = await started();
  await Promise.all([fixedTokenStops(hub, ['websocket']), fixedTokenStops(hub, ['sse'])]);
});

test('a provider that fails is asked again with backoff; the socket and a room share one refresh', async () => {
  const hub = await started();
  const good = hub.tokens('client');
  let failures = 0;
  const c = watched(hub.url, async ({ reason }) => {
    if (reason === 'expiring' && failures < 2) {
      failures += 1;
      throw new Error('the identity provider is down');
    }
    // The first tokens run out soon; the refresh is one of the hub's own.
    return reason === 'expiring' ? good() : lasting(await good(), TTL);
  });
  const renewed = [];
  c.hub.on('renewed', (r) => renewed.push(r));
  await c.hub.connect();
  const projects = (await hub.get('/api/projects/', await good())).body;
  const room = c.hub.project((projects.results ?? projects)[0].id);
  const roomRenewed = [];
  room.on('renewed', (r) => roomRenewed.push(r));
  const roomErrors = [];
  room.on('error', (e) => roomErrors.push(e.code));
  await until('the room is live', () => room.state === 'connected');
  await until('the socket renewed its token after two failures', () => renewed.length === 1, 10000);
  await until('both room sockets renewed theirs', () => roomRenewed.length === 2, 10000);
  // Each failure is told to the sockets that waited on it (one call for all of them).
  assert.ok(c.errors.includes('token'), JSON.stringify(c.errors));
  assert.ok([...c.errors, ...roomErrors].filter((e) => e === 'token').length >= 2, JSON.stringify([c.errors, roomErrors]));
  const expiring = c.reasons.filter((r) => r === 'expiring').length;
  assert.equal(expiring, 3, `two failures and one refresh for three sockets (${c.reasons})`);
  assert.ok(renewed[0].expiresAt > Date.now() / 1000 + 300, JSON.stringify(renewed));
  for (const unwanted of ['token_unchanged', 'token_refused']) {
    assert.ok(![...c.errors, ...roomErrors].includes(unwanted), JSON.stringify([c.errors, roomErrors]));
  }
  assert.equal(c.hub.state, 'connected');
  c.hub.close();
});

test('concurrent askers share one provider call', async () => {
  let calls = 0;
  let release;
  const gate = new Promise((ok) => {
    release = ok;
  });
  const c = new TicketHub({
    url: 'http://hub.invalid',
    token: async () => {
      calls += 1;
      await gate;
      return `t${calls}`;
    },
  });
  const asked = [c.token('connect'), c.token('refused'), c.token('expiring')];
  release();
  assert.deepEqual(await Promise.all(asked), ['t1', 't1', 't1']);
  assert.equal(calls, 1);
  assert.equal(await c.token('connect'), 't2', 'the next need asks again');
  await assert.rejects(
    new TicketHub({ url: 'http://hub.invalid', token: () => '' }).token(),
    /gave no token/,
  );
});
