// The demo client's project room at `/`, in headless Chromium: a client and a developer, each
// in a page of their own, see each other online, see which ticket the other looks at and that
// the other is typing under it, and watch tickets move on the board without a reload, also
// when an admin acts elsewhere and they get no notification for it.
//
//   node tests/browser/rooms.mjs http://127.0.0.1:8080 client=USER:PASS developer=USER:PASS admin=USER:PASS
//
// Both must be members of the first project, which must hold a ticket in status NEW.

import { Run, parseArgs, restClient, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('rooms.mjs', ['client', 'developer', 'admin']);

async function open(run, name, user) {
  const page = await run.page(name, `${base}/`);
  await logIn(page, user);
  await until(page, `${name}: the board is live`,
    () => document.querySelector('[data-testid="room-state"]')?.dataset.state === 'connected');
  return page;
}

/** The user ids the page lists as present. */
const present = (page) => page.evaluate(() => [...document.querySelectorAll('[data-testid="presence-user"]')]
  .map((li) => Number(li.dataset.userId)).sort((a, b) => a - b));

const api = restClient(base);

await new Run('rooms').main(async (run) => {
  const admin = (await api('POST', '/api/auth/login/', null, users.admin)).access;
  const me = async (u) => api('GET', '/api/users/me/', (await api('POST', '/api/auth/login/', null, u)).access);
  const [clientUser, devUser] = [await me(users.client), await me(users.developer)];

  run.log('the client and the developer log in, each in a page of their own');
  const client = await open(run, 'client', users.client);
  const dev = await open(run, 'developer', users.developer);
  const loaded = await dev.evaluate(() => window.__loadedAt);
  const both = [clientUser.id, devUser.id].sort((a, b) => a - b);
  for (const [name, page] of [['client', client], ['developer', dev]]) {
    await until(page, `${name}: both are online`,
      (ids) => JSON.stringify([...document.querySelectorAll('[data-testid="presence-user"]')]
        .map((li) => Number(li.dataset.userId)).sort((a, b) => a - b)) === JSON.stringify(ids), both);
  }
  run.check(JSON.stringify(await present(dev)) === JSON.stringify(both), 'one entry per user');

  const row = (page) => page.locator('[data-testid="ticket-row"]').first();
  const key = await row(client).getAttribute('data-key');
  const ticketId = Number(await row(client).getAttribute('data-ticket-id'));
  run.log(`the client opens ${key}; the developer sees what the client looks at`);
  await row(client).locator('[data-testid="action-view"]').click();
  await until(dev, `developer: the client is viewing ${key}`,
    ([id, t]) => document.querySelector(`[data-testid="presence-user"][data-user-id="${id}"]`)?.dataset.viewing === String(t),
    [clientUser.id, ticketId]);
  run.check((await dev.locator(`[data-testid="presence-user"][data-user-id="${clientUser.id}"]`).textContent()).includes(key),
    'the presence list names the ticket');

  run.log('the developer opens it too; the client types a comment');
  await row(dev).locator('[data-testid="action-view"]').click();
  await tid(client, 'comment-input').pressSequentially('Is anyone on this?', { delay: 20 });
  const typing = await until(dev, 'developer: "… is typing"',
    () => document.querySelector('[data-testid="typing-indicator"]')?.textContent || '');
  run.check(typing.includes('is typing'), `the developer sees: ${typing}`);
  await run.screenshot(dev, 'rooms-developer-typing.png');
  await tid(client, 'comment-submit').click();
  await until(dev, 'developer: the comment arrives',
    () => [...document.querySelectorAll('[data-testid="comment-item"]')].some((li) => li.textContent.includes('Is anyone on this?')));
  await until(dev, 'developer: the typing indicator clears',
    () => document.querySelector('[data-testid="typing-indicator"]').textContent === '');

  run.log(`an admin opens ${key} over REST; both boards move it without a reload`);
  await api('POST', `/api/tickets/${ticketId}/open_ticket/`, admin, {});
  for (const [name, page] of [['client', client], ['developer', dev]]) {
    await until(page, `${name}: ${key} shows OPEN`,
      (k) => document.querySelector(`[data-testid="ticket-row"][data-key="${k}"]`)?.dataset.status === 'OPEN'
        && document.querySelector('[data-testid="ticket-view-head"]')?.dataset.status === 'OPEN', key);
  }
  // The developer had no notification about it: the board moved the row.
  run.check((await dev.locator('[data-testid="notification-item"]').count()) === 0, 'the developer got no notification');
  run.check((await dev.evaluate(() => window.__loadedAt)) === loaded, 'the developer\'s page was not reloaded');
  await run.screenshot(client, 'rooms-client-board.png');

  run.log('the developer leaves; the client sees them go after the grace period');
  await dev.close();
  run.pages.delete('developer');
  await until(client, 'client: the developer left',
    (id) => !document.querySelector(`[data-testid="presence-user"][data-user-id="${id}"]`), devUser.id);
});
