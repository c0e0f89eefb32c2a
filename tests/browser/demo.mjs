// The demo client at `/`, in headless Chromium: a client and an admin (and, when given, a
// developer) each log in in a page of their own and move one ticket through its lifecycle by
// clicking, watching the other side's notifications arrive without a reload, and open the
// notifications' delivery details.
//
//   node tests/browser/demo.mjs http://127.0.0.1:8080 client=USER:PASS admin=USER:PASS [developer=USER:PASS]
//
// The client must be a member of at least one project. Exits non-zero on the first failed
// check, with screenshots of every page in target/test-artifacts/.

import { Run, PATIENCE, parseArgs, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('demo.mjs', ['client', 'admin'], ['developer']);

/** Logs in on the demo page and waits for the socket's greeting. */
async function open(run, name, user, role) {
  const page = await run.page(name, `${base}/`);
  await logIn(page, user);
  await until(page, `${name}: the socket is connected`,
    () => document.querySelector('[data-testid="ws-state"]')?.dataset.state === 'connected');
  const who = tid(page, 'whoami');
  run.check((await who.getAttribute('data-role')) === role, `${name} is logged in as a ${role}`);
  const socket = await page.evaluate(() => ({ url: window.__sockets.find((s) => s.url.includes('/ws/notifications/')).url, protocols: window.__sockets.find((s) => s.url.includes('/ws/notifications/')).protocols }));
  run.check(!/token|bearer|eyJ/i.test(socket.url), `${name}: no token in the socket URL (${socket.url})`);
  run.check(socket.protocols[0] === 'tickethub.v1' && socket.protocols[1]?.startsWith('bearer.'),
    `${name}: the token travels as a subprotocol`);
  return page;
}

const badge = (page) => page.evaluate(() => Number(document.querySelector('[data-testid="unread-badge"]').dataset.count));

async function waitBadge(page, name, count) {
  await until(page, `${name}: the unread badge shows ${count}`,
    (n) => document.querySelector('[data-testid="unread-badge"]').dataset.count === String(n), count);
}

async function waitNotification(page, name, type, key) {
  await until(page, `${name}: a ${type} notification about ${key}`,
    ([t, k]) => [...document.querySelectorAll(`[data-testid="notification-item"][data-type="${t}"]`)]
      .some((li) => li.textContent.includes(k)), [type, key]);
}

function row(page, key) {
  return page.locator(`[data-testid="ticket-row"][data-key="${key}"]`);
}

async function waitStatus(page, name, key, status) {
  await until(page, `${name}: ${key} shows ${status}`,
    ([k, s]) => document.querySelector(`[data-testid="ticket-row"][data-key="${k}"]`)?.dataset.status === s, [key, status]);
}

/** Clicks the row's action button and waits for the row to show the new status. */
async function act(run, page, name, key, action, status) {
  run.log(`${name} clicks ${action} on ${key}`);
  await row(page, key).locator(`[data-testid="action-${action}"]`).click();
  await waitStatus(page, name, key, status);
}

function notification(page, type, key) {
  return page.locator(`[data-testid="notification-item"][data-type="${type}"]`).filter({ hasText: key }).first();
}

/** The events of the timeline open under notification `id`, once it is loaded and idle. */
const timelineEvents = (page, id) => page.evaluate((i) => {
  const panel = document.querySelector(`[data-testid="notification-item"][data-notification-id="${i}"] [data-testid="timeline-panel"]`);
  if (!panel || panel.dataset.state !== 'loaded' || panel.dataset.loading !== 'false') return null;
  return [...panel.querySelectorAll('[data-testid="timeline-event"]')]
    .map((li) => ({ event: li.dataset.event, text: li.querySelector('[data-testid="timeline-text"]').textContent }));
}, id);

/** Waits until the timeline open under notification `id` has a `kind` line matching `pattern`. */
async function waitTimeline(page, name, id, kind, pattern) {
  return until(page, `${name}: the timeline of #${id} shows a ${kind} line matching ${pattern}`,
    ([i, k, source]) => {
      const panel = document.querySelector(`[data-testid="notification-item"][data-notification-id="${i}"] [data-testid="timeline-panel"][data-state="loaded"]`);
      if (!panel) return null;
      const line = [...panel.querySelectorAll(`[data-testid="timeline-event"][data-event="${k}"] [data-testid="timeline-text"]`)]
        .find((t) => new RegExp(source).test(t.textContent));
      return line ? line.textContent : null;
    }, [id, kind, pattern.source]);
}

/**
 * Clicks the open timeline's Refresh until it has a `kind` line: some events (socket writes)
 * are recorded in batches, a moment after they happen.
 */
async function refreshUntil(page, name, id, kind) {
  const deadline = Date.now() + PATIENCE;
  let events = null;
  while (Date.now() < deadline) {
    events = await timelineEvents(page, id);
    if (events && events.some((e) => e.event === kind)) return events;
    if (events) {
      await page.waitForTimeout(100);
      await page.locator(`[data-testid="notification-item"][data-notification-id="${id}"] [data-testid="timeline-refresh"]`).click();
    }
    await until(page, `${name}: the timeline of #${id} is loaded again`, (i) => document.querySelector(
      `[data-testid="notification-item"][data-notification-id="${i}"] [data-testid="timeline-panel"][data-state="loaded"][data-loading="false"]`), id);
  }
  throw new Error(`timed out waiting for: ${name}: a ${kind} event in the timeline of #${id} (${JSON.stringify(events)})`);
}

async function noReload(run, page, name, loadedAt) {
  run.check((await page.evaluate(() => window.__loadedAt)) === loadedAt, `${name}: the page was not reloaded`);
}

await new Run('demo').main(async (run) => {
  run.log(`client ${users.client.username} logs in on ${base}/`);
  const client = await open(run, 'client', users.client, 'client');
  run.log(`admin ${users.admin.username} logs in in a second page`);
  const admin = await open(run, 'admin', users.admin, 'admin');
  const adminLoaded = await admin.evaluate(() => window.__loadedAt);
  const clientLoaded = await client.evaluate(() => window.__loadedAt);
  const adminBefore = await badge(admin);
  const clientBefore = await badge(client);

  // Markup in the title must show as text, not become elements.
  const title = `Printer <b>on fire</b> & "smoking" ${Date.now()}`;
  run.log('the client creates a ticket with the form');
  run.check(await tid(client, 'create-ticket-form').isVisible(), 'the client sees the create form');
  run.check(!(await tid(admin, 'create-ticket-form').isVisible()), 'the admin does not see the create form');
  run.check((await tid(client, 'create-project').locator('option').count()) > 0, 'the project select lists projects');
  await tid(client, 'create-title').fill(title);
  await tid(client, 'create-submit').click();
  const key = await until(client, 'the new ticket in the client\'s list',
    (t) => [...document.querySelectorAll('[data-testid="ticket-row"]')]
      .find((r) => r.querySelector('[data-testid="ticket-title"]').textContent === t)?.dataset.key, title);
  run.check((await row(client, key).locator('b').count()) === 0, 'the title\'s markup is shown as text');
  await waitStatus(client, 'client', key, 'NEW');
  run.check((await row(client, key).locator('button:not([data-testid="action-view"])').count()) === 0, 'a client has no action on a NEW ticket');

  run.log(`the admin's page shows ticket_created for ${key} without a reload`);
  await waitNotification(admin, 'admin', 'ticket_created', key);
  await waitBadge(admin, 'admin', adminBefore + 1);
  await noReload(run, admin, 'admin', adminLoaded);
  const first = tid(admin, 'notification-item').first();
  run.check((await first.getAttribute('data-type')) === 'ticket_created', 'the newest notification is listed first');
  await waitStatus(admin, 'admin', key, 'NEW');
  await run.screenshot(admin, 'demo-admin-ticket-created.png');

  run.log('the admin opens the delivery details of ticket_created, starting with who did what');
  const created = notification(admin, 'ticket_created', key);
  const createdId = await created.getAttribute('data-notification-id');
  await created.locator('[data-testid="timeline-toggle"]').click();
  const committed = await waitTimeline(admin, 'admin', createdId, 'committed',
    new RegExp(`^${users.client.username} display created the ticket$`));
  console.log(`    ${committed}`);
  const createdEvents = await timelineEvents(admin, createdId);
  run.check(createdEvents[0].event === 'committed', `the commit is the first event (${JSON.stringify(createdEvents)})`);
  run.check((await created.getAttribute('data-expanded')) === 'true', 'the item shows as expanded');
  run.check((await tid(created, 'timeline-toggle').getAttribute('aria-expanded')) === 'true', 'its timeline button says it is open');
  run.check((await created.getAttribute('data-read')) === 'false', 'opening the delivery details does not mark the notification as read');
  run.check((await created.locator('[data-testid="timeline-panel"] b').count()) === 0, 'the title\'s markup is shown as text in the timeline');
  await waitBadge(admin, 'admin', adminBefore + 1);

  await act(run, admin, 'admin', key, 'open_ticket', 'OPEN');
  run.log(`the client's page shows ticket_opened for ${key}`);
  await waitNotification(client, 'client', 'ticket_opened', key);
  await waitBadge(client, 'client', clientBefore + 1);
  await waitStatus(client, 'client', key, 'OPEN');
  await noReload(run, client, 'client', clientLoaded);

  run.log('the client opens the delivery details of ticket_opened: opened by the admin, delivered to a device');
  const openedItem = notification(client, 'ticket_opened', key);
  const openedId = await openedItem.getAttribute('data-notification-id');
  await openedItem.locator('[data-testid="timeline-toggle"]').click();
  console.log(`    ${await waitTimeline(client, 'client', openedId, 'committed',
    new RegExp(`^${users.admin.username} display opened the ticket$`))}`);
  const pushed = (await refreshUntil(client, 'client', openedId, 'pushed')).find((e) => e.event === 'pushed');
  run.check(/^Delivered to [1-9]\d* devices?$/.test(pushed.text), `the push says how many devices (${pushed.text})`);
  await run.screenshot(client, 'demo-client-timeline.png');

  run.log('a second tab of the client follows the first tab\'s mark-as-read');
  const tab2 = await open(run, 'client-tab2', users.client, 'client');
  await waitBadge(tab2, 'client-tab2', clientBefore + 1);
  await waitNotification(tab2, 'client-tab2', 'ticket_opened', key);

  run.log('the client marks ticket_opened as read');
  const opened = client.locator('[data-testid="notification-item"][data-type="ticket_opened"]').first();
  await opened.locator('[data-testid="mark-read"]').click();
  await waitBadge(client, 'client', clientBefore);
  run.check((await opened.getAttribute('data-read')) === 'true', 'the notification shows as read');
  await waitBadge(tab2, 'client-tab2', clientBefore);
  await tab2.close();
  run.pages.delete('client-tab2');

  run.log('the open timeline follows the mark-as-read; clicking the item again hides it');
  await waitTimeline(client, 'client', openedId, 'read', /^Read$/);
  run.check((await opened.getAttribute('data-expanded')) === 'true', 'the mark-as-read button did not close the timeline');
  await tid(openedItem, 'timeline-toggle').click();
  await until(client, 'the timeline is hidden', (i) => !document.querySelector(
    `[data-testid="notification-item"][data-notification-id="${i}"] [data-testid="timeline-panel"]`), openedId);
  run.log('its Delivery details button opens it again');
  await tid(openedItem, 'timeline-toggle').click();
  await waitTimeline(client, 'client', openedId, 'read', /^Read$/);

  run.log('the admin marks everything as read; the timeline still open shows the read');
  await tid(admin, 'mark-all-read').click();
  await waitBadge(admin, 'admin', 0);
  await waitTimeline(admin, 'admin', createdId, 'read', /^Read$/);

  run.log('the client\'s socket drops and reconnects with ?last_seq=');
  const seqBefore = await client.evaluate(() => Math.max(...[...document.querySelectorAll('[data-testid="notification-item"]')].map((li) => Number(li.dataset.seq))));
  // Record every state the indicator shows, since the closed state lasts only until the retry.
  await client.evaluate(() => {
    const pill = document.querySelector('[data-testid="ws-state"]');
    window.__states = [];
    new MutationObserver(() => window.__states.push(`${pill.dataset.state}|${pill.dataset.closeCode ?? ''}|${pill.textContent}|${pill.title}`))
      .observe(pill, { attributes: true, childList: true, characterData: true, subtree: true });
  });
  // Close the socket under the page's feet, keeping the code its close event carries.
  await client.evaluate(() => {
    const { socket } = window.__sockets.filter((s) => s.url.includes('/ws/notifications/')).at(-1);
    socket.addEventListener('close', (ev) => { window.__closeCode = ev.code; });
    socket.close(4000, 'test');
  });
  try {
    await until(client, 'the socket reconnects', () => window.__sockets.filter((s) => s.url.includes('/ws/notifications/')).length === 2
      && document.querySelector('[data-testid="ws-state"]').dataset.state === 'connected');
  } finally {
    console.log(`    states: ${JSON.stringify(await client.evaluate(() => window.__states))}`);
  }
  const states = await client.evaluate(() => window.__states);
  const code = await client.evaluate(() => window.__closeCode);
  run.check(states.some((s) => s.startsWith(`closed|${code}|Offline`) && s.includes(`|closed (${code})`)),
    `the page said "Offline", with "closed (${code})…" on hover`);
  run.check(states.every((s) => !/seq|\(\d{4}\)/.test(s.split('|')[2])), `the words shown are people's (${JSON.stringify(states)})`);
  const again = await client.evaluate(() => window.__sockets.filter((s) => s.url.includes('/ws/notifications/')).at(-1).url);
  run.check(new URL(again).searchParams.get('last_seq') === String(seqBefore),
    `the reconnect resumes from seq ${seqBefore} (${again})`);

  if (users.developer) {
    run.log(`developer ${users.developer.username} logs in in a third page`);
    const dev = await open(run, 'developer', users.developer, 'developer');
    await waitStatus(dev, 'developer', key, 'OPEN');
    run.check((await row(dev, key).locator('button:not([data-testid="action-view"])').count()) === 0, 'an unassigned developer has no action');

    run.log('the admin assigns the developer');
    const select = row(admin, key).locator('[data-testid="assign-developer"]');
    await select.selectOption({ label: `${users.developer.username} display` }).catch(async () => {
      await select.selectOption({ index: 0 });
    });
    await act(run, admin, 'admin', key, 'assign', 'ASSIGNED');
    await waitNotification(dev, 'developer', 'ticket_assigned', key);
    await waitStatus(dev, 'developer', key, 'ASSIGNED');

    await act(run, dev, 'developer', key, 'start_work', 'IN_PROGRESS');
    await waitNotification(client, 'client', 'work_started', key);
    await waitStatus(client, 'client', key, 'IN_PROGRESS');

    await act(run, dev, 'developer', key, 'finish_work', 'FINISHED');
    await waitNotification(client, 'client', 'work_finished', key);
    await waitNotification(admin, 'admin', 'work_finished', key);
    await waitStatus(client, 'client', key, 'FINISHED');

    run.log('the client rejects with a reason, the developer works again, the client approves');
    await row(client, key).locator('[data-testid="action-reject"]').click();
    await tid(client, 'dialog-confirm').click();
    run.check((await tid(client, 'dialog-error').textContent()).length > 0, 'reject without a reason is refused');
    await tid(client, 'dialog-input').fill('Still smoking');
    await tid(client, 'dialog-confirm').click();
    await waitStatus(client, 'client', key, 'REJECTED');
    await waitNotification(dev, 'developer', 'ticket_rejected', key);
    await waitStatus(dev, 'developer', key, 'REJECTED');
    await act(run, dev, 'developer', key, 'start_work', 'IN_PROGRESS');
    await act(run, dev, 'developer', key, 'finish_work', 'FINISHED');
    await waitStatus(client, 'client', key, 'FINISHED');
    await act(run, client, 'client', key, 'approve', 'APPROVED');
    await waitNotification(admin, 'admin', 'ticket_approved', key);
    await waitNotification(dev, 'developer', 'ticket_approved', key);
    await waitStatus(admin, 'admin', key, 'APPROVED');
    await waitStatus(dev, 'developer', key, 'APPROVED');
    await run.screenshot(dev, 'demo-developer.png');
  }

  run.log('a wrong password shows the hub\'s message');
  const stranger = await run.page('stranger', `${base}/`);
  await logIn(stranger, { username: users.client.username, password: 'wrong password' });
  await until(stranger, 'the login error', () => document.querySelector('[data-testid="login-error"]').textContent.length > 0);
  run.check(/credentials/i.test(await tid(stranger, 'login-error').textContent()), 'the error names the credentials');
  await stranger.close();
  run.pages.delete('stranger');

  run.log('the client files a second ticket; the admin sees it arrive');
  await tid(client, 'create-title').fill('Invoice totals are off by one cent');
  await tid(client, 'create-priority').selectOption('HIGH');
  await tid(client, 'create-submit').click();
  const key2 = await until(client, 'the second ticket in the client\'s list',
    () => [...document.querySelectorAll('[data-testid="ticket-row"]')]
      .find((r) => r.querySelector('[data-testid="ticket-title"]').textContent === 'Invoice totals are off by one cent')?.dataset.key);
  await waitNotification(admin, 'admin', 'ticket_created', key2);
  await waitStatus(admin, 'admin', key2, 'NEW');
  run.check(await admin.locator('[data-testid="ticket-row"][data-status="NEW"] [data-testid="action-open_ticket"]').first().isVisible(),
    'the admin can open the new ticket');

  await run.screenshot(client, 'demo-client.png');
  await run.screenshot(admin, 'demo-admin.png');
});
