// The operator page at `/admin/`, in headless Chromium: a non-admin is turned away; an admin
// sees the supervision tree, watches the users directory change as people connect, and
// filters it by a username.
//
//   node tests/browser/operator.mjs http://127.0.0.1:8080 admin=USER:PASS client=USER:PASS
//
// Exits non-zero on the first failed check, with screenshots of every page in
// target/test-artifacts/.

import { Run, PATIENCE, docScreenshot, parseArgs, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('operator.mjs', ['admin', 'client']);

/** The usernames the users directory lists right now. */
const listed = (page) => page.evaluate(() => [...document.querySelectorAll(
  '[data-testid="node"][data-name="users"] [data-testid="actor-row"] [data-testid="actor-username"]',
)].map((td) => td.textContent));

/** Polls the users directory until `pred(usernames)` holds. */
async function waitListed(page, what, pred) {
  const deadline = Date.now() + PATIENCE;
  let names = [];
  while (Date.now() < deadline) {
    names = await listed(page);
    if (pred(names)) return names;
    await page.waitForTimeout(50);
  }
  throw new Error(`timed out waiting for: ${what} (listed: ${names.join(', ') || 'nobody'})`);
}

await new Run('operator').main(async (run) => {
  run.log('a client is turned away from the operator page');
  // Every request the page makes goes to the hub itself.
  const elsewhere = [];
  run.context.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(`${base}/`) && !url.startsWith('data:') && !url.startsWith('blob:')) elsewhere.push(url);
  });
  const op = await run.page('operator', `${base}/admin/`);
  await run.accessible(op, 'operator login');
  await logIn(op, users.client);
  await until(op, 'the refusal', () => /Only admins/.test(document.querySelector('[data-testid="login-error"]').textContent));
  run.check(!(await tid(op, 'operator').isVisible()), 'the tree stays hidden from a client');

  run.log(`admin ${users.admin.username} logs in on ${base}/admin/`);
  await logIn(op, users.admin);
  try {
    await until(op, 'the tree', () => document.querySelector('[data-testid="node"][data-name="users"]'));
  } catch (e) {
    const shown = await tid(op, 'flash').textContent();
    throw new Error(`the tree did not appear; the page says: ${shown || 'nothing'}`, { cause: e });
  }
  await until(op, 'the live indicator', () => document.querySelector('[data-testid="live-state"]').dataset.state === 'live');
  for (const total of ['users', 'sockets', 'tickets', 'channels']) {
    run.check(await tid(op, `total-${total}`).isVisible(), `the ${total} count is shown`);
  }
  // The counters say what they count: live actors on this node, not tickets in the database.
  const ticketsLabel = await tid(op, 'total-tickets').textContent();
  run.check(/Ticket actors in memory/.test(ticketsLabel) && /not all tickets/.test(ticketsLabel),
    `the tickets counter says it counts ticket actors (${ticketsLabel})`);
  for (const dir of ['users', 'tickets', 'delivery']) {
    run.check(await op.locator(`[data-testid="node"][data-name="${dir}"]`).isVisible(), `the ${dir} branch is shown`);
  }
  // An embedded hub sends Web Push with a key of its own: its carrier is a channel like email.
  const webpush = op.locator('[data-testid="actor-row"][data-name="channel:webpush"]');
  await webpush.waitFor();
  run.check((await webpush.locator('[data-testid="actor-circuit"]').textContent()).includes('closed'),
    'the Web Push channel is listed with its circuit');
  run.check((await webpush.locator('[data-testid="actor-suppressed"]').textContent()) === '0',
    'and its count of pushes suppressed because the notification was seen');
  const loadedAt = await op.evaluate(() => window.__loadedAt);

  run.log('the client and the admin connect on the demo page; the tree follows without a reload');
  const before = await listed(op);
  run.check(!before.includes(users.client.username), `the client has no actor yet (listed: ${before.join(', ')})`);
  const demos = [];
  for (const [role, user] of [['client', users.client], ['admin', users.admin]]) {
    const page = await run.page(`demo-${role}`, `${base}/`);
    await logIn(page, user);
    await until(page, `${role}'s demo socket is connected`,
      () => document.querySelector('[data-testid="ws-state"]')?.dataset.state === 'connected');
    demos.push(page);
  }
  const both = [users.client.username, users.admin.username];
  await waitListed(op, 'both users in the users directory', (names) => both.every((w) => names.includes(w)));
  await until(op, 'the client\'s row counts a socket', (name) => {
    const rowOf = [...document.querySelectorAll('[data-testid="node"][data-name="users"] [data-testid="actor-row"]')]
      .find((r) => r.querySelector('[data-testid="actor-username"]').textContent === name);
    return rowOf && Number(rowOf.querySelector('[data-testid="actor-sockets-count"]').textContent) >= 1;
  }, users.client.username);

  run.log('the client files a ticket and the admin opens it; its actor appears in the tickets directory');
  const [demoClient, demoAdmin] = demos;
  await tid(demoClient, 'create-title').fill('Checkout button does nothing');
  await tid(demoClient, 'create-submit').click();
  const key = await until(demoClient, 'the ticket in the client\'s list',
    () => document.querySelector('[data-testid="ticket-row"]')?.dataset.key);
  const opener = demoAdmin.locator(`[data-testid="ticket-row"][data-key="${key}"] [data-testid="action-open_ticket"]`);
  await opener.click();
  await until(demoAdmin, `${key} is open`,
    (k) => document.querySelector(`[data-testid="ticket-row"][data-key="${k}"]`)?.dataset.status === 'OPEN', key);
  await until(op, `${key} in the tickets directory`, (k) => [...document.querySelectorAll(
    '[data-testid="node"][data-name="tickets"] [data-testid="actor-row"] [data-testid="actor-key"]',
  )].some((td) => td.textContent === k), key);
  run.check((await op.evaluate(() => window.__loadedAt)) === loadedAt, 'the operator page was not reloaded');
  await run.accessible(op, 'operator page with the tree');
  await run.screenshot(op, 'operator-all.png');
  await docScreenshot(op, 'operator-desktop.png');

  run.log(`the admin filters by "${users.client.username}"`);
  const asked = op.waitForRequest((r) => r.url().includes('/api/admin/actors')
    && new URL(r.url()).searchParams.get('q') === users.client.username);
  await tid(op, 'filter').fill(users.client.username);
  await asked;
  await waitListed(op, 'only the client listed', (names) => names.length === 1 && names[0] === users.client.username);
  // The filter must hold across the refreshes that follow: wait for two more of them.
  for (let i = 0; i < 2; i += 1) {
    await op.waitForResponse((r) => r.url().includes('/api/admin/actors')
      && new URL(r.url()).searchParams.get('q') === users.client.username);
  }
  await op.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve())));
  const after = await listed(op);
  run.check(after.length === 1 && after[0] === users.client.username, `still only the client after a refresh (${after.join(', ')})`);
  run.check(await op.locator('[data-testid="actor-row"] mark').first().isVisible(), 'the match is highlighted');
  await run.screenshot(op, 'operator.png');

  run.log('clearing the filter lists everyone again');
  await tid(op, 'filter').fill('');
  await waitListed(op, 'both users again', (names) => both.every((w) => names.includes(w)));

  run.log('while the hub cannot be reached, what the page last heard is greyed out and said to be stale');
  await op.route('**/api/admin/actors*', (route) => route.abort('connectionrefused'));
  await until(op, 'the tree marked stale', () => ['root', 'totals', 'tree'].every((id) =>
    document.querySelector(`[data-testid="${id}"]`).dataset.stale === 'true'));
  const note = await tid(op, 'flash').innerText();
  run.check(/Cannot reach the hub/.test(note) && /may no longer be true/.test(note), `the page says the figures are stale (${note})`);
  run.check(await op.evaluate(() => getComputedStyle(document.querySelector('[data-testid="tree"]')).filter.includes('grayscale')),
    'the stale tree is greyed out, its green badges with it');
  run.check((await op.evaluate(() => document.querySelector('[data-testid="live-state"]').dataset.state)) === 'error', 'the live indicator says it is not updating');
  await run.screenshot(op, 'operator-stale.png');
  await op.unroute('**/api/admin/actors*');
  await until(op, 'the tree live again', () => document.querySelector('[data-testid="tree"]').dataset.stale === 'false'
    && document.querySelector('[data-testid="live-state"]').dataset.state === 'live');
  run.check(!(await tid(op, 'flash').isVisible()), 'the stale note is gone once the hub answers');

  run.log('on a phone (390×844 and 360 wide) the page fits its width: nothing scrolls sideways');
  for (const width of [390, 360]) {
    await op.setViewportSize({ width, height: 844 });
    await op.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve())));
    const [scroll, inner] = await op.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    run.check(scroll <= inner, `at ${width} px the page is ${scroll} px wide (no sideways scroll)`);
    const columns = await op.evaluate(() => {
      const panels = [...document.querySelectorAll('.ops-grid > .panel')].map((p) => p.getBoundingClientRect().left);
      return new Set(panels.map((x) => Math.round(x))).size;
    });
    run.check(columns === 1, `at ${width} px the escalation and trace panels stack (${columns} columns)`);
  }
  await run.accessible(op, 'operator page at phone width');
  await docScreenshot(op, 'operator-phone.png');
  await op.setViewportSize({ width: 1366, height: 800 });

  run.log('one login for both pages: the demo client in the same tab needs no second login, and back');
  await op.goto(`${base}/`);
  await until(op, 'the demo client, logged in as the admin', (name) =>
    document.querySelector('[data-testid="whoami"]')?.dataset.username === name, users.admin.username);
  run.check(!(await tid(op, 'login').isVisible()), 'the demo client asks for no login');
  await op.goto(`${base}/admin/`);
  await until(op, 'the operator page, still logged in', () => document.querySelector('[data-testid="node"][data-name="users"]'));
  run.check(elsewhere.length === 0, `every request went to the hub (elsewhere: ${elsewhere.join(', ')})`);
  for (const page of demos) await page.close();
  run.pages.delete('demo-client');
  run.pages.delete('demo-admin');
});
