// The ticket workspace at `/`, in headless Chromium, at 1366×800 and on a phone (390×844 and
// 360 wide): sign-up, finding tickets (search, filters, sort, pages, all in the address), a
// ticket at its own address with its history and comments, a notification that opens its
// ticket, reject with a required reason, confirmations, words for people, toasts in view,
// no sideways scroll, and axe-core's accessibility checks in every state visited.
//
//   node tests/browser/workspace.mjs http://127.0.0.1:8080 client=USER:PASS admin=USER:PASS developer=USER:PASS
//
// All three must be members of one project, which holds no ticket yet. Screenshots of both
// widths are the README's (see `docScreenshot`).

import { Run, docScreenshot, parseArgs, restClient, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('workspace.mjs', ['client', 'admin', 'developer']);

const api = restClient(base);

const shot = docScreenshot;

/** The keys of the rows the list shows, in order. */
const keys = (page) => page.evaluate(() => [...document.querySelectorAll('[data-testid="ticket-row"]')].map((r) => r.dataset.key));

/** Waits until the list is loaded for `hash` and returns its keys. */
async function listFor(page, what, check, arg) {
  await until(page, what, check, arg);
  return keys(page);
}

/** The ticket view, where its action buttons are (the hidden list has some of the same). */
const view = (page) => tid(page, 'ticket-view');

const noSidewaysScroll = (page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

/** Text on screen with names of the hub's own: IN_PROGRESS, ticket_created. */
const codeWords = (page) => page.evaluate(() => document.body.innerText.match(/\b[A-Z]+_[A-Z_]+\b|\b[a-z]+_[a-z_]+\b/g) || []);

async function waitView(page, name, key) {
  await until(page, `${name}: the ticket view shows ${key}`,
    (k) => document.querySelector('[data-testid="ticket-view-head"]')?.dataset.key === k
      && !document.querySelector('[data-testid="ticket-view"]').hidden, key);
}

async function waitViewStatus(page, name, status) {
  await until(page, `${name}: the ticket view shows ${status}`,
    (s) => document.querySelector('[data-testid="ticket-view-head"]')?.dataset.status === s, status);
}

/** The toast's text once it shows, and whether it is inside the viewport. */
async function toast(page, name, pattern) {
  const text = await until(page, `${name}: a toast matching ${pattern}`, (source) => {
    const box = document.querySelector('[data-testid="flash"]');
    return !box.hidden && new RegExp(source).test(box.textContent) ? box.textContent : null;
  }, pattern.source);
  const inView = await tid(page, 'flash').evaluate((box) => {
    const r = box.getBoundingClientRect();
    return r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth;
  });
  return { text, inView, role: await tid(page, 'flash').getAttribute('role') };
}

await new Run('workspace').main(async (run) => {
  const requests = [];
  run.context.on('request', (r) => requests.push(r.url()));

  run.log('tickets are filed and moved over REST: 22 low ones, one high, one critical in progress');
  const token = async (u) => (await api('POST', '/api/auth/login/', null, u)).access;
  const [clientToken, adminToken, devToken] = [await token(users.client), await token(users.admin), await token(users.developer)];
  const devUser = await api('GET', '/api/users/me/', devToken);
  const project = (await api('GET', '/api/projects/?page_size=100', clientToken)).results[0];
  const file = (title, priority, category = 'SUPPORT', description = '') => api('POST', '/api/tickets/', clientToken,
    { project: project.id, title, priority, category, description });
  for (let i = 1; i <= 22; i += 1) await file(`Bulk ticket ${String(i).padStart(2, '0')}`, 'LOW');
  const typo = await file('Typo on the invoice page', 'HIGH', 'BUG');
  const crit = await file('Checkout crashes on coupon', 'CRITICAL', 'BUG', 'Steps: add a coupon, then pay.\nThe page goes blank.');
  await api('POST', `/api/tickets/${crit.id}/open_ticket/`, adminToken, {});
  await api('POST', `/api/tickets/${crit.id}/assign/`, adminToken, { developer_ids: [devUser.id] });
  await api('POST', `/api/tickets/${crit.id}/start_work/`, devToken, {});
  await api('POST', `/api/tickets/${crit.id}/comments/`, devToken, { body: 'Looking into it now.' });
  await api('POST', `/api/tickets/${typo.id}/open_ticket/`, adminToken, {});

  run.log('the login page offers a sign-up; a new account has no project and is told whom to ask');
  const client = await run.page('client', `${base}/`);
  await run.accessible(client, 'login');
  await until(client, 'the sign-up offer, registration being open',
    () => document.querySelector('[data-testid="signup-offer"]').hidden === false);
  run.check(await tid(client, 'signup-link').isVisible(), 'the login page links to the sign-up');
  await tid(client, 'signup-link').click();
  run.check(await tid(client, 'signup-form').isVisible(), 'the sign-up form shows');
  await run.accessible(client, 'sign-up form');
  await tid(client, 'signup-username').fill('newcomer');
  await tid(client, 'signup-name').fill('Nora Newcomer');
  await tid(client, 'signup-password').fill('short');
  await tid(client, 'signup-submit').click();
  run.check(await tid(client, 'signup-form').isVisible(), 'a too short password keeps the form');
  await tid(client, 'signup-password').fill('newcomer-password');
  await tid(client, 'signup-submit').click();
  await until(client, 'the new account is logged in', () => document.querySelector('[data-testid="whoami"]')?.dataset.username === 'newcomer');
  const noProject = await until(client, 'the empty state for a client with no project',
    () => document.querySelector('[data-testid="empty-no-project"]')?.textContent);
  run.check(/ask an admin/i.test(noProject), `the empty state says whom to ask (${noProject})`);
  run.check(!(await tid(client, 'create-ticket-form').isVisible()), 'no create form without a project');
  await run.accessible(client, 'empty list, no project');
  await tid(client, 'logout').click();
  await until(client, 'the login form again', () => !document.querySelector('[data-testid="login"]').hidden);

  run.log('the client logs in: the list in words, labels on the form, Description before Create');
  await logIn(client, users.client);
  await until(client, 'the client sees 24 tickets', () => document.querySelector('[data-testid="ticket-count"]')?.textContent === '24 tickets');
  await until(client, 'the socket is connected', () => document.querySelector('[data-testid="ws-state"]').dataset.state === 'connected');
  run.check((await client.evaluate(() => Object.keys(sessionStorage))).includes('tickethub'),
    'the login is kept under the key the operator page shares');
  run.check(await client.getByLabel('Title', { exact: true }).isVisible(), 'Title has a visible label');
  run.check(await client.getByLabel(/^Description/).isVisible(), 'Description has a visible label');
  await tid(client, 'create-title').focus();
  const order = [];
  for (let i = 0; i < 6; i += 1) {
    await client.keyboard.press('Tab');
    order.push(await client.evaluate(() => document.activeElement.dataset.testid));
  }
  run.check(order.indexOf('create-description') >= 0 && order.indexOf('create-description') < order.indexOf('create-submit'),
    `Tab reaches Description before Create ticket (${order.join(' → ')})`);
  const row = (page, key) => page.locator(`[data-testid="ticket-row"][data-key="${key}"]`);
  run.check((await row(client, crit.key).locator('[data-testid="ticket-status"]').textContent()) === 'In progress', 'the status reads "In progress"');
  const critTag = row(client, crit.key).locator('[data-testid="ticket-priority"]');
  const lowTag = client.locator('[data-testid="ticket-row"][data-priority="LOW"] [data-testid="ticket-priority"]').first();
  const look = (l) => l.evaluate((e) => ({ text: e.textContent, bg: getComputedStyle(e).backgroundColor }));
  const [critLook, lowLook] = [await look(critTag), await look(lowTag)];
  run.check(/critical/i.test(critLook.text) && /low/i.test(lowLook.text) && critLook.bg !== lowLook.bg,
    `Critical differs from Low in words and colour (${JSON.stringify([critLook, lowLook])})`);
  run.check((await codeWords(client)).length === 0, `no code words on screen (${await codeWords(client)})`);
  await run.accessible(client, 'ticket list, desktop');
  await client.evaluate(() => document.activeElement.blur());
  await shot(client, 'workspace-desktop.png');

  run.log('search by title and by key, filter by status and priority, sort, page: all in the address');
  await tid(client, 'find-search').fill('checkout');
  await tid(client, 'find-submit').click();
  let shown = await listFor(client, 'the search shows one ticket', () => document.querySelector('[data-testid="ticket-count"]').textContent === '1 ticket');
  run.check(shown.length === 1 && shown[0] === crit.key, `a title search finds ${crit.key} (${shown})`);
  run.check(new URL(client.url()).hash === '#/?search=checkout', `the search is in the address (${client.url()})`);
  await tid(client, 'find-search').fill(typo.key);
  await tid(client, 'find-search').press('Enter');
  shown = await listFor(client, 'the key search', (k) => document.querySelector('[data-testid="ticket-row"]')?.dataset.key === k
    && document.querySelectorAll('[data-testid="ticket-row"]').length === 1, typo.key);
  run.check(shown[0] === typo.key, `a key search finds ${typo.key}`);
  await tid(client, 'find-search').fill('nothing like this');
  await tid(client, 'find-search').press('Enter');
  await until(client, 'the empty result', () => !document.querySelector('[data-testid="tickets-empty"]').hidden);
  run.check(await tid(client, 'empty-clear').isVisible(), 'an empty result offers to show all tickets');
  await tid(client, 'empty-clear').click();
  await until(client, 'all tickets again', () => document.querySelector('[data-testid="ticket-count"]').textContent === '24 tickets');
  await tid(client, 'find-status').selectOption('IN_PROGRESS');
  shown = await listFor(client, 'the status filter', () => location.hash.includes('status=IN_PROGRESS')
    && document.querySelector('[data-testid="ticket-count"]').textContent === '1 ticket');
  run.check(shown[0] === crit.key, 'the status filter shows the ticket in progress');
  await tid(client, 'find-clear').click();
  await tid(client, 'find-priority').selectOption('HIGH');
  // The list before it also held one ticket (the status filter's): wait for the high one.
  shown = await listFor(client, 'the priority filter', (k) => location.hash.includes('priority=HIGH')
    && document.querySelector('[data-testid="ticket-count"]').textContent === '1 ticket'
    && document.querySelector('[data-testid="ticket-row"]')?.dataset.key === k, typo.key);
  run.check(shown[0] === typo.key, 'the priority filter shows the high one');
  await tid(client, 'find-clear').click();
  await tid(client, 'find-project').selectOption(String(project.id));
  await until(client, 'the project filter', (p) => location.hash.includes(`project=${p}`)
    && document.querySelector('[data-testid="ticket-count"]').textContent === '24 tickets', project.id);
  await tid(client, 'find-clear').click();
  await tid(client, 'find-ordering').selectOption('created_at');
  shown = await listFor(client, 'oldest first', () => location.hash.includes('ordering=created_at')
    && document.querySelector('[data-testid="ticket-title"]')?.textContent === 'Bulk ticket 01');
  await tid(client, 'find-ordering').selectOption('-priority');
  shown = await listFor(client, 'most urgent first', (k) => location.hash.includes('ordering=-priority')
    && document.querySelector('[data-testid="ticket-row"]')?.dataset.key === k, crit.key);
  run.check(shown.length === 20, `a page holds 20 tickets (${shown.length})`);
  run.check((await tid(client, 'page-info').textContent()) === 'Page 1 of 2', 'the pager says page 1 of 2');
  await tid(client, 'page-next').click();
  shown = await listFor(client, 'page 2', () => location.hash.includes('page=2')
    && document.querySelectorAll('[data-testid="ticket-row"]').length === 4);
  run.check((await tid(client, 'page-info').textContent()) === 'Page 2 of 2', 'the pager says page 2 of 2');
  const page2 = shown;
  run.log('a reload keeps the page and the sort; Back returns to page 1');
  await client.reload();
  shown = await listFor(client, 'page 2 after a reload', () => document.querySelectorAll('[data-testid="ticket-row"]').length === 4);
  run.check(JSON.stringify(shown) === JSON.stringify(page2), 'the reload shows the same page');
  run.check((await tid(client, 'find-ordering').inputValue()) === '-priority', 'the sort is kept');
  await client.goBack();
  await listFor(client, 'page 1 again', () => !location.hash.includes('page=2') && document.querySelectorAll('[data-testid="ticket-row"]').length === 20);
  await tid(client, 'find-clear').click();
  await until(client, 'the default list', () => location.hash === '#/' && document.querySelectorAll('[data-testid="ticket-row"]').length === 20);

  run.log(`the client opens ${crit.key}: its own address, description, history, comments`);
  await row(client, crit.key).locator('[data-testid="ticket-title"]').click();
  await waitView(client, 'client', crit.key);
  run.check(new URL(client.url()).hash === `#/tickets/${crit.key}`, `the ticket has its address (${client.url()})`);
  run.check((await tid(client, 'ticket-description').textContent()).includes('The page goes blank.'), 'the description shows');
  run.check((await tid(client, 'ticket-category').textContent()) === 'Bug', 'the category shows');
  run.check((await tid(client, 'ticket-assignees').textContent()).includes(`${users.developer.username} display`), 'the assignee shows by name');
  const history = await until(client, 'the history', () => {
    const items = [...document.querySelectorAll('[data-testid="history-item"] .what')].map((e) => e.textContent);
    return items.length >= 4 ? items : null;
  });
  const ada = `${users.admin.username} display`;
  const dev = `${users.developer.username} display`;
  for (const line of [`${users.client.username} display created the ticket`, `${ada} opened the ticket`, `${ada} assigned ${dev}`, `${dev} started work`]) {
    run.check(history.includes(line), `the history says "${line}" (${JSON.stringify(history)})`);
  }
  run.check((await tid(client, 'comment-item').first().textContent()).includes('Looking into it now.'), 'the comment shows');
  const layout = await client.evaluate(() => {
    const view = document.querySelector('[data-testid="ticket-view"]').getBoundingClientRect();
    const notes = document.querySelector('[data-testid="notifications-panel"]').getBoundingClientRect();
    return { view: view.top, notes: notes.top, viewLeft: view.left, notesLeft: notes.left };
  });
  run.check(Math.abs(layout.view - layout.notes) < 2 && layout.notesLeft > layout.viewLeft,
    `at 1366 the ticket sits beside Notifications, not above them (${JSON.stringify(layout)})`);
  run.check((await codeWords(client)).length === 0, `no code words on the ticket (${await codeWords(client)})`);
  await run.accessible(client, 'ticket view, desktop');
  await shot(client, 'ticket-desktop.png');
  await client.reload();
  await waitView(client, 'client', crit.key);
  await client.goBack();
  await until(client, 'Back shows the list', () => !document.querySelector('[data-testid="tickets-panel"]').hidden
    && document.querySelector('[data-testid="ticket-view"]').hidden);
  await client.goForward();
  await waitView(client, 'client', crit.key);

  run.log('the developer opens the ticket from its address and finishes the work there');
  const devPage = await run.page('developer', `${base}/#/tickets/${crit.key}`);
  await logIn(devPage, users.developer);
  await waitView(devPage, 'developer', crit.key);
  await tid(view(devPage), 'action-finish_work').click();
  await waitViewStatus(devPage, 'developer', 'FINISHED');
  const done = await toast(devPage, 'developer', new RegExp(`^Work on ${crit.key} finished`));
  run.check(done.inView && done.role === 'status', `the toast is in view (${JSON.stringify(done)})`);
  await waitViewStatus(client, 'client', 'FINISHED');
  await until(client, 'the client\'s history shows the finish', (d) => [...document.querySelectorAll('[data-testid="history-item"] .what')]
    .some((e) => e.textContent === `${d} finished work`), dev);
  run.log('"Assigned to me" lists only the developer\'s tickets');
  await devPage.goto(`${base}/#/`);
  await until(devPage, 'the developer\'s list', () => document.querySelectorAll('[data-testid="ticket-row"]').length > 1);
  await tid(devPage, 'find-mine').check();
  shown = await listFor(devPage, 'assigned to me', () => location.hash.includes('mine=1')
    && document.querySelector('[data-testid="ticket-count"]').textContent === '1 ticket');
  run.check(shown[0] === crit.key, 'assigned to me shows the one ticket');

  run.log('the client\'s notification, read as it came (the client had its ticket open), opens its ticket; Delivery details stay in words');
  await client.goto(`${base}/#/`);
  await until(client, 'the list', () => document.querySelectorAll('[data-testid="ticket-row"]').length === 20);
  const item = client.locator('[data-testid="notification-item"][data-type="work_finished"]').first();
  await item.waitFor();
  await until(client, 'the notification is read: the client was looking at its ticket when it came',
    () => document.querySelector('[data-testid="notification-item"][data-type="work_finished"]').dataset.read === 'true');
  run.check(!/work_finished/.test(await item.innerText()), 'its type is in words');
  const unreadBefore = Number(await tid(client, 'unread-badge').getAttribute('data-count'));
  await tid(item, 'notification-title').click();
  await waitView(client, 'client', crit.key);
  run.check(Number(await tid(client, 'unread-badge').getAttribute('data-count')) === unreadBefore, 'the badge stays as it was');
  await tid(item, 'timeline-toggle').click();
  const lines = await until(client, 'the delivery details', () => {
    const panel = document.querySelector('[data-testid="timeline-panel"][data-state="loaded"]');
    return panel ? [...panel.querySelectorAll('[data-testid="timeline-text"]')].map((e) => e.textContent) : null;
  });
  run.check(lines[0] === `${dev} finished work`, `the details start with who did what (${JSON.stringify(lines)})`);
  run.check(lines.every((l) => !/socket|node|Committed|_/.test(l)), `the details are in words (${JSON.stringify(lines)})`);
  const numbers = await item.evaluate((li) => (li.innerText.match(/#\d+/g) || []).length);
  run.check(numbers === 0, 'no internal numbers on the notification');
  await tid(item, 'timeline-toggle').click();

  run.log('Reject asks for a reason and refuses an empty one');
  await tid(view(client), 'action-reject').click();
  run.check(await tid(client, 'dialog').isVisible(), 'the reject dialog opens');
  await run.accessible(client, 'reject dialog');
  await tid(client, 'dialog-confirm').click();
  run.check((await tid(client, 'dialog-error').textContent()).length > 0, 'an empty reason is refused');
  run.check(await tid(client, 'dialog').isVisible(), 'the dialog stays open');
  await tid(client, 'dialog-cancel').click();
  run.check(!(await tid(client, 'dialog').isVisible()), 'Cancel closes it');
  run.check((await tid(client, 'ticket-view-head').getAttribute('data-status')) === 'FINISHED', 'nothing was rejected');
  await tid(view(client), 'action-reject').click();
  await tid(client, 'dialog-input').fill('The page still goes blank with two coupons.');
  await client.keyboard.press('Tab');
  await tid(client, 'dialog-confirm').click();
  await waitViewStatus(client, 'client', 'REJECTED');
  const rejected = await toast(client, 'client', new RegExp(`^${crit.key} rejected and sent back to ${dev}$`));
  run.check(rejected.inView, 'the toast is in view');
  await until(client, 'the history shows the reject with its reason', (c) => [...document.querySelectorAll('[data-testid="history-item"] .what')]
    .some((e) => e.textContent === `${c} rejected the work: “The page still goes blank with two coupons.”`), `${users.client.username} display`);

  run.log('the admin assigns the high ticket from its view: the toast names the developer');
  const admin = await run.page('admin', `${base}/#/tickets/${typo.key}`);
  await logIn(admin, users.admin);
  await waitView(admin, 'admin', typo.key);
  await tid(view(admin), 'assign-developer').selectOption(String(devUser.id));
  await tid(view(admin), 'action-assign').click();
  await waitViewStatus(admin, 'admin', 'ASSIGNED');
  await toast(admin, 'admin', new RegExp(`^${typo.key} assigned to ${dev}$`));
  run.check((await codeWords(admin)).length === 0, `no code words on the admin's view (${await codeWords(admin)})`);
  await run.accessible(admin, 'ticket view with the assign control');
  run.log('the operator page in the same tab is logged in already');
  await admin.goto(`${base}/admin/`);
  await until(admin, 'the operator page shows the admin', () => {
    const who = document.querySelector('[data-testid="whoami"]');
    return who && !who.hidden && document.querySelector('[data-testid="login"]').hidden;
  });
  await admin.close();
  run.pages.delete('admin');

  run.log('on a phone: cards, the bell, no sideways scroll, toasts in view');
  await client.setViewportSize({ width: 390, height: 844 });
  await client.goto(`${base}/#/`);
  await until(client, 'the list on the phone', () => document.querySelectorAll('[data-testid="ticket-row"]').length === 20);
  run.check(await noSidewaysScroll(client), 'no sideways scroll at 390×844 (list)');
  run.check((await row(client, crit.key).evaluate((r) => getComputedStyle(r).display)) !== 'table-row', 'tickets are cards');
  run.check(await tid(client, 'bell').isVisible(), 'the bell shows');
  await until(client, 'the new-ticket form waits behind its summary', () => !document.querySelector('[data-testid="create-details"]').open);
  run.check(!(await tid(client, 'notifications-panel').isVisible()), 'the notifications are behind the bell');
  await run.accessible(client, 'ticket list, phone');
  await shot(client, 'workspace-phone.png');
  await tid(client, 'bell').click();
  run.check(await tid(client, 'notifications-panel').isVisible(), 'the bell shows the notifications');
  run.check((await tid(client, 'bell').getAttribute('aria-expanded')) === 'true', 'the bell says it is open');
  run.check(await noSidewaysScroll(client), 'no sideways scroll with the notifications open');
  await run.accessible(client, 'notifications, phone');
  await shot(client, 'notifications-phone.png');
  await tid(client, 'bell').click();

  run.log('an action far down the page that fails shows its error in view');
  await api('POST', `/api/tickets/${crit.id}/start_work/`, devToken, {});
  await api('POST', `/api/tickets/${crit.id}/finish_work/`, devToken, {});
  await client.goto(`${base}/#/?ordering=created_at&page=2`);
  await until(client, 'page 2 with the approve button', (k) => document.querySelector(`[data-testid="ticket-row"][data-key="${k}"] [data-testid="action-approve"]`), crit.key);
  // Someone approves it (over REST) just as the page asks: the hub refuses the page's approve.
  await client.route('**/api/tickets/*/approve/', async (route) => {
    await api('POST', `/api/tickets/${crit.id}/approve/`, clientToken, {});
    await route.continue();
  }, { times: 1 });
  await client.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  await row(client, crit.key).locator('[data-testid="action-approve"]').click();
  const failed = await toast(client, 'client', new RegExp(`^${crit.key}: `));
  run.check(failed.inView && failed.role === 'alert', `the error toast is in view, as an alert (${JSON.stringify(failed)})`);
  run.check(!(await client.evaluate(() => document.body.innerText.includes('APPROVED'))), 'the error names the status in words');

  run.log('the ticket on the phone, and at 360 wide');
  await client.goto(`${base}/#/tickets/${crit.key}`);
  await waitView(client, 'client', crit.key);
  await waitViewStatus(client, 'client', 'APPROVED');
  run.check(await noSidewaysScroll(client), 'no sideways scroll at 390×844 (ticket)');
  await run.accessible(client, 'ticket view, phone');
  await shot(client, 'ticket-phone.png');
  await client.setViewportSize({ width: 360, height: 740 });
  run.check(await noSidewaysScroll(client), 'no sideways scroll at 360 wide (ticket)');
  await client.goto(`${base}/#/`);
  await until(client, 'the list at 360', () => document.querySelectorAll('[data-testid="ticket-row"]').length === 20);
  run.check(await noSidewaysScroll(client), 'no sideways scroll at 360 wide (list)');

  run.log('Delete all asks first; Cancel keeps the notifications');
  await client.setViewportSize({ width: 1366, height: 800 });
  const count = await client.locator('[data-testid="notification-item"]').count();
  run.check(count > 0, 'the client has notifications');
  await tid(client, 'delete-all').click();
  run.check(await tid(client, 'dialog').isVisible(), 'a confirmation opens');
  await run.accessible(client, 'delete-all confirmation');
  await client.keyboard.press('Escape');
  run.check(!(await tid(client, 'dialog').isVisible()), 'Escape closes it');
  run.check((await client.locator('[data-testid="notification-item"]').count()) === count, 'nothing was deleted');
  await tid(client, 'delete-all').click();
  await tid(client, 'dialog-confirm').click();
  await until(client, 'the notifications are gone', () => document.querySelectorAll('[data-testid="notification-item"]').length === 0
    && !document.querySelector('[data-testid="notifications-empty"]').hidden);
  await toast(client, 'client', /deleted/);
  const inbox = await api('GET', '/api/notifications/', clientToken);
  run.check(inbox.count === 0, `the hub deleted them (${inbox.count} left)`);

  const elsewhere = requests.filter((u) => !u.startsWith(`${base}/`) && !u.startsWith(base.replace(/^http/, 'ws')));
  run.check(elsewhere.length === 0, `every request goes to the hub (${elsewhere.slice(0, 5).join(', ')})`);
  console.log(`    ${requests.length} requests, all to ${base}`);
});
