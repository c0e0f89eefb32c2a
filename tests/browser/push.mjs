// Browser notifications on the demo page at `/`, in headless Chromium: turning them on asks the
// permission, registers the service worker `/sw.js`, subscribes with the hub's key and
// registers the subscription as a device; a refused subscription shows the hub's reason; the
// setting survives a reload; the service worker shows pushes (delivered over the DevTools
// protocol) as notifications, and a click on one opens its link; turning them off removes the
// device and ends the subscription; without Web Push on the hub the button is disabled, with
// the reason. axe-core checks the page in each of these states.
//
//   node tests/browser/push.mjs http://127.0.0.1:8080 client=USER:PASS 'subscription={"endpoint":…,"keys":{"p256dh":…,"auth":…}}'
//
// Headless Chromium reaches no push service, so `PushManager.subscribe` answers the
// subscription given (the hub must accept its endpoint: `--push-allow-private` for a loopback
// one). The user must have no device yet.

import { PATIENCE, Run, parseArgs, restClient, tid, logIn, until } from './lib.mjs';

const SUBSCRIPTION_ARG = 'subscription=';
const at = process.argv.findIndex((a) => a.startsWith(SUBSCRIPTION_ARG));
const subscription = at < 0 ? null : JSON.parse(process.argv.splice(at, 1)[0].slice(SUBSCRIPTION_ARG.length));
const { base, users } = parseArgs('push.mjs', ['client']);
if (!subscription?.endpoint || !subscription?.keys?.p256dh || !subscription?.keys?.auth) {
  console.error('missing subscription={"endpoint":…,"keys":{"p256dh":…,"auth":…}}');
  process.exit(64);
}

const api = restClient(base);

/** The setting's state (`data-state` of the box) once it is not busy. */
const pushState = (page) => until(page, 'the browser notifications setting settles', () => {
  const box = document.querySelector('[data-testid="push-settings"]');
  return box.dataset.state !== 'checking' && box.getAttribute('aria-busy') !== 'true' ? box.dataset.state : null;
});

const waitState = (page, wanted) => until(page, `browser notifications are ${wanted}`, (w) => {
  const box = document.querySelector('[data-testid="push-settings"]');
  return box.dataset.state === w && box.getAttribute('aria-busy') !== 'true';
}, wanted);

/** Polls `shown(page)` until `ok(list)` holds, and answers the list. */
async function shownUntil(page, what, ok) {
  const deadline = Date.now() + PATIENCE;
  for (;;) {
    const list = await shown(page);
    if (ok(list)) return list;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what} (shown: ${JSON.stringify(list)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The notifications the service worker shows now, as plain objects. */
const shown = (page) => page.evaluate(async () => {
  const registration = await navigator.serviceWorker.ready;
  const list = await registration.getNotifications();
  return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data, icon: n.icon, requireInteraction: n.requireInteraction }));
});

await new Run('push').main(async (run) => {
  const origin = new URL(base).origin;
  await run.context.grantPermissions(['notifications'], { origin });
  // The browser's push service, stood in for: `subscribe` answers the subscription given (kept
  // in localStorage so that a reload still has it), `unsubscribe` forgets it. A page may set
  // `__pushEndpoint` to subscribe with another endpoint.
  await run.context.addInitScript((sub) => {
    if (typeof PushManager === 'undefined') return;
    const KEY = '__fake_push_subscription';
    const stored = () => {
      try {
        return JSON.parse(localStorage.getItem(KEY) || 'null');
      } catch {
        return null;
      }
    };
    const make = (json) => ({
      endpoint: json.endpoint,
      expirationTime: null,
      options: { userVisibleOnly: true, applicationServerKey: new Uint8Array(json.serverKey).buffer },
      toJSON: () => ({ endpoint: json.endpoint, expirationTime: null, keys: { ...json.keys } }),
      unsubscribe: async () => {
        localStorage.removeItem(KEY);
        return true;
      },
    });
    PushManager.prototype.subscribe = async function subscribe(options) {
      if (options?.userVisibleOnly !== true) throw new DOMException('userVisibleOnly must be true', 'NotAllowedError');
      const serverKey = Array.from(new Uint8Array(options.applicationServerKey.buffer ?? options.applicationServerKey));
      const json = { endpoint: window.__pushEndpoint || sub.endpoint, keys: sub.keys, serverKey };
      localStorage.setItem(KEY, JSON.stringify(json));
      return make(json);
    };
    PushManager.prototype.getSubscription = async function getSubscription() {
      const json = stored();
      return json ? make(json) : null;
    };
  }, subscription);

  const token = (await api('POST', '/api/auth/login/', null, users.client)).access;
  const devices = () => api('GET', '/api/devices/', token);
  run.check((await devices()).length === 0, 'the user starts with no device');

  run.log('the setting sits under the notifications, off, with its button');
  const page = await run.page('client', `${base}/`);
  await logIn(page, users.client);
  await until(page, 'the workspace', () => !document.querySelector('[data-testid="app"]').hidden);
  run.check(await pushState(page) === 'off', 'browser notifications start off');
  run.check(await tid(page, 'push-enable').isVisible(), 'an "Enable browser notifications" button');
  run.check(await tid(page, 'push-enable').textContent() === 'Enable browser notifications', 'the button says what it does');
  run.check(!(await tid(page, 'push-disable').isVisible()), 'no "Turn off" while off');
  run.check(await tid(page, 'push-status').getAttribute('role') === 'status', 'the setting\'s state is a live status');
  run.check(await page.evaluate(() => document.querySelector('[data-testid="push-settings"]').closest('[data-testid="notifications-panel"]') !== null),
    'the setting is in the notifications panel');
  await run.accessible(page, 'browser notifications off');

  run.log('a subscription the hub refuses shows its reason, and the setting stays off');
  await page.evaluate(() => { window.__pushEndpoint = 'ftp://127.0.0.1/push/refused'; });
  await tid(page, 'push-enable').click();
  const refused = await until(page, 'the error', () => document.querySelector('[data-testid="push-error"]').textContent);
  run.check(/^Cannot turn on browser notifications: /.test(refused) && /endpoint/.test(refused), `the hub's detail is shown (${refused})`);
  run.check(await tid(page, 'push-error').getAttribute('role') === 'alert', 'the error is announced');
  run.check(await pushState(page) === 'off', 'still off');
  run.check((await devices()).length === 0, 'no device was registered');
  run.check(await page.evaluate(() => localStorage.getItem('__fake_push_subscription')) === null, 'the refused subscription was ended');

  run.log('"Enable browser notifications" registers the worker, subscribes and registers the device');
  await page.evaluate(() => { delete window.__pushEndpoint; });
  await tid(page, 'push-enable').click();
  await waitState(page, 'on');
  const status = await tid(page, 'push-status').textContent();
  run.check(/Browser notifications are on/.test(status), `the page says they are on (${status})`);
  run.check(await tid(page, 'push-error').textContent() === '', 'the earlier error is gone');
  run.check(await tid(page, 'push-disable').isVisible(), 'a "Turn off" button');
  run.check(!(await tid(page, 'push-enable').isVisible()), 'no "Enable" button while on');
  run.check(await page.evaluate(() => document.activeElement?.dataset.testid) === 'push-disable', 'the focus moves to "Turn off"');
  const listed = await devices();
  run.check(listed.length === 1 && listed[0].kind === 'webpush' && listed[0].push_service === new URL(subscription.endpoint).hostname,
    `GET /api/devices/ lists one webpush device (${JSON.stringify(listed)})`);
  const remembered = await page.evaluate(() => Object.entries(localStorage)
    .filter(([k]) => k.startsWith('tickethub.push.')).map(([, v]) => JSON.parse(v)));
  run.check(remembered.length === 1 && remembered[0].id === listed[0].id && remembered[0].endpoint === subscription.endpoint,
    `the browser remembers the device (${JSON.stringify(remembered)})`);
  const { public_key: vapid } = await api('GET', '/api/push/vapid/');
  const usedKey = await page.evaluate(() => JSON.parse(localStorage.getItem('__fake_push_subscription')).serverKey);
  const expected = [...Buffer.from(vapid, 'base64url')];
  run.check(usedKey.length === 65 && usedKey.join() === expected.join(), 'it subscribed with the hub\'s key, as bytes');
  const controller = await until(page, 'the service worker controls the page', () => navigator.serviceWorker.controller?.scriptURL);
  run.check(controller === `${base}/sw.js`, `the worker is /sw.js (${controller})`);
  await run.accessible(page, 'browser notifications on');
  await run.screenshot(page, 'push-on.png');

  run.log('after a reload the setting is still on');
  await page.reload();
  await until(page, 'the workspace', () => !document.querySelector('[data-testid="app"]').hidden);
  run.check(await pushState(page) === 'on', 'still on after a reload');

  run.log('the service worker shows a push as a notification');
  const cdp = await run.context.newCDPSession(page);
  const registrations = new Map();
  cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations: list }) => {
    for (const r of list) {
      if (r.isDeleted) registrations.delete(r.registrationId);
      else registrations.set(r.registrationId, r.scopeURL);
    }
  });
  await cdp.send('ServiceWorker.enable');
  const deadline = Date.now() + 10_000;
  while (![...registrations.values()].includes(`${base}/`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const registrationId = [...registrations].find(([, scope]) => scope === `${base}/`)?.[0];
  run.check(registrationId !== undefined, `a registration for ${base}/ (${JSON.stringify([...registrations])})`);
  const deliver = (data) => cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data });
  const payload = {
    title: 'DEMO-5 assigned to you',
    body: 'Checkout crashes on coupon',
    url: '/tickets/5/',
    notification_id: 41,
    seq: 7,
    type: 'ticket_assigned',
    priority: 'CRITICAL',
  };
  // A push the DevTools protocol hands to a worker that is not running (yet, or again: an
  // idle worker is stopped) can be dropped without a word back: each push is delivered again
  // until the worker shows it, a few times at most. A push shown twice replaces itself (the
  // same tag).
  const deliverUntilShown = async (data, tag) => {
    for (let i = 0; i < 5; i += 1) {
      await deliver(data);
      const until = Date.now() + 2000;
      while (Date.now() < until) {
        if ((await shown(page)).some((n) => n.tag === tag)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  await deliverUntilShown(JSON.stringify(payload), 'tickethub-41');
  const [critical] = (await shownUntil(page, 'the notification is shown', (l) => l.some((n) => n.tag === 'tickethub-41')))
    .filter((n) => n.tag === 'tickethub-41');
  run.check(critical.title === payload.title && critical.body === payload.body, `its title and body (${JSON.stringify(critical)})`);
  run.check(critical.data?.url === '/tickets/5/' && critical.data?.notification_id === 41, 'its data: the link and the notification');
  run.check(critical.requireInteraction === true, 'a critical one stays until it is dealt with');
  run.check(critical.icon === `${base}/assets/icon.svg`, `the hub's icon (${critical.icon})`);

  run.log('a minimal push and one that is not JSON are shown too');
  await deliverUntilShown(JSON.stringify({ title: 'Ticket assigned', notification_id: 42, seq: 8 }), 'tickethub-42');
  await deliverUntilShown('plain words', 'tickethub-message');
  const all = await shownUntil(page, 'both are shown', (l) => l.length >= 3);
  const minimal = all.find((n) => n.tag === 'tickethub-42');
  run.check(minimal && minimal.title === 'Ticket assigned' && minimal.body === '' && minimal.requireInteraction === false && minimal.data?.url === null,
    `the minimal one: title only (${JSON.stringify(minimal)})`);
  const plain = all.find((n) => n.body === 'plain words');
  run.check(plain && plain.title === 'tickethub', `the text one: the body under the hub's name (${JSON.stringify(plain)})`);

  run.log('a click closes the notification and opens its link: in the open workspace, or a new window');
  const worker = run.context.serviceWorkers().find((w) => w.url() === `${base}/sw.js`)
    ?? await run.context.waitForEvent('serviceworker', { predicate: (w) => w.url() === `${base}/sw.js` });
  const clicked = await worker.evaluate(async (home) => {
    const out = {};
    out.targets = ['/tickets/5/', '/admin/', 'https://example.com/help?x=1', 'javascript:alert(1)', '//evil.example/x', null, 'not a url at all']
      .map((u) => linkTarget(u));
    const calls = [];
    const windowAt = (url, focused) => ({
      url,
      focused,
      focus: async function focus() { calls.push(['focus', url]); return this; },
      navigate: async (to) => { calls.push(['navigate', url, to]); return { url: to }; },
    });
    // No window of the hub open: a new one.
    self.clients.matchAll = async () => [];
    self.clients.openWindow = async (to) => { calls.push(['open', to]); return { url: to }; };
    const [n] = await self.registration.getNotifications({ tag: 'tickethub-41' });
    await clickNotification(n);
    out.alone = calls.splice(0);
    out.left = (await self.registration.getNotifications({ tag: 'tickethub-41' })).length;
    // The operator page and the workspace open: the workspace goes to the ticket.
    self.clients.matchAll = async () => [windowAt(`${home}admin/`, true), windowAt(home, false)];
    await openLink('/tickets/5/');
    out.open = calls.splice(0);
    // A link elsewhere opens in a window of its own.
    await openLink('https://example.com/help');
    out.elsewhere = calls.splice(0);
    delete self.clients.matchAll;
    delete self.clients.openWindow;
    return out;
  }, `${base}/`);
  run.check(JSON.stringify(clicked.targets) === JSON.stringify([
    `${base}/#/tickets/5`, `${base}/admin/`, 'https://example.com/help?x=1', `${base}/`, 'http://evil.example/x', `${base}/`, `${base}/not%20a%20url%20at%20all`,
  ]), `links resolve against the hub, ticket links to the workspace, others only http(s) (${JSON.stringify(clicked.targets)})`);
  run.check(JSON.stringify(clicked.alone) === JSON.stringify([['open', `${base}/#/tickets/5`]]), `with no window, a new one at the ticket (${JSON.stringify(clicked.alone)})`);
  run.check(clicked.left === 0, 'the clicked notification is closed');
  run.check(JSON.stringify(clicked.open) === JSON.stringify([['focus', `${base}/`], ['navigate', `${base}/`, `${base}/#/tickets/5`]]),
    `the open workspace is brought forward and goes to the ticket (${JSON.stringify(clicked.open)})`);
  run.check(JSON.stringify(clicked.elsewhere) === JSON.stringify([['open', 'https://example.com/help']]), `another site opens in a new window (${JSON.stringify(clicked.elsewhere)})`);
  await cdp.detach();

  run.log('"Turn off" removes the device and ends the subscription');
  await tid(page, 'push-disable').click();
  await waitState(page, 'off');
  run.check(await page.evaluate(() => localStorage.getItem('__fake_push_subscription')) === null, 'the subscription was ended');
  run.check(await page.evaluate(() => Object.keys(localStorage).every((k) => !k.startsWith('tickethub.push.'))), 'the browser forgets the device');
  run.check((await devices()).length === 0, 'GET /api/devices/ lists no device');
  run.check(await tid(page, 'push-enable').isVisible(), 'the "Enable" button is back');
  run.check(await page.evaluate(() => document.activeElement?.dataset.testid) === 'push-enable', 'the focus moves to "Enable"');
  await run.accessible(page, 'browser notifications turned off');

  run.log('on a hub without Web Push the button is disabled, and the page says why');
  const noPush = (route) => route.fulfill({ status: 404, contentType: 'application/json', body: '{"detail":"Web Push is not configured on this hub."}' });
  await run.context.route('**/api/push/vapid/', noPush);
  await page.reload();
  await until(page, 'the workspace', () => !document.querySelector('[data-testid="app"]').hidden);
  run.check(await pushState(page) === 'unavailable', 'the setting is unavailable');
  run.check(await tid(page, 'push-enable').isDisabled(), 'the button is disabled');
  const why = await tid(page, 'push-status').textContent();
  run.check(/does not send browser notifications/.test(why), `the page says why (${why})`);
  await run.accessible(page, 'browser notifications unavailable');
  await run.context.unroute('**/api/push/vapid/', noPush);

  run.log('logging out stops this browser\'s pushes for the user');
  await page.reload();
  await until(page, 'the workspace', () => !document.querySelector('[data-testid="app"]').hidden);
  await waitState(page, 'off');
  await tid(page, 'push-enable').click();
  await waitState(page, 'on');
  run.check((await devices()).length === 1, 'on again: one device');
  await tid(page, 'logout').click();
  await until(page, 'the login form', () => !document.querySelector('[data-testid="login"]').hidden);
  run.check((await devices()).length === 0, 'after logging out, GET /api/devices/ lists no device');
  run.check(await page.evaluate(() => localStorage.getItem('__fake_push_subscription')) === null, 'the subscription was ended');
});
