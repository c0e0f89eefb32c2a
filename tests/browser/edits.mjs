// Editing in the workspace at `/`, in headless Chromium at 1280×800 and 360×740: the creator
// changes a NEW ticket's fields in place (text that looks like HTML stays text), an admin
// watching the ticket sees the change live and its notifications about the ticket marked read,
// the history says what changed and why work was rejected, a comment is edited (shown as
// edited) and deleted (a tombstone stays), the creator of an assigned ticket is offered no
// edit, and axe-core checks every new state.
//
//   node tests/browser/edits.mjs http://127.0.0.1:8080 client=USER:PASS admin=USER:PASS developer=USER:PASS
//
// All three must be members of one project, which holds no ticket yet.

import { Run, parseArgs, restClient, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('edits.mjs', ['client', 'admin', 'developer']);
const api = restClient(base);

/** The ticket view, where its own buttons and times are. */
const view = (page) => tid(page, 'ticket-view');

const noSidewaysScroll = (page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

async function openTicket(page, key) {
  await page.goto(`${base}/#/tickets/${key}`);
  await until(page, `the ticket view shows ${key}`,
    (k) => document.querySelector('[data-testid="ticket-view-head"]')?.dataset.key === k
      && !document.querySelector('[data-testid="ticket-view"]').hidden, key);
}

await new Run('edits').main(async (run) => {
  run.log('a client files a ticket and comments on it; another ticket is assigned and rejected');
  const token = async (u) => (await api('POST', '/api/auth/login/', null, u)).access;
  const [clientToken, adminToken, devToken] = [await token(users.client), await token(users.admin), await token(users.developer)];
  const dev = await api('GET', '/api/users/me/', devToken);
  await api('PATCH', '/api/users/me/', clientToken, { time_zone: 'Europe/Berlin' });
  const project = (await api('GET', '/api/projects/?page_size=100', clientToken)).results[0];
  const file = (title) => api('POST', '/api/tickets/', clientToken, { project: project.id, title, priority: 'MEDIUM', category: 'BUG' });
  const slow = await file('Login page slow');
  await api('POST', `/api/tickets/${slow.id}/comments/`, clientToken, { body: 'It started on Mondy.' });
  const sent = await file('Export fails');
  await api('POST', `/api/tickets/${sent.id}/open_ticket/`, adminToken, {});
  await api('POST', `/api/tickets/${sent.id}/assign/`, adminToken, { developer_ids: [dev.id] });
  await api('POST', `/api/tickets/${sent.id}/start_work/`, devToken, {});
  await api('POST', `/api/tickets/${sent.id}/finish_work/`, devToken, {});
  await api('POST', `/api/tickets/${sent.id}/reject/`, clientToken, { reason: 'CSV files still fail' });

  run.log('an admin opens the new ticket: its notifications about it are marked read');
  const admin = await run.page('admin', `${base}/`);
  await admin.setViewportSize({ width: 1280, height: 800 });
  await logIn(admin, users.admin);
  await until(admin, 'the admin socket is connected', () => document.querySelector('[data-testid="ws-state"]').dataset.state === 'connected');
  await openTicket(admin, slow.key);
  const unreadAbout = async (id) => (await api('GET', `/api/notifications/?ticket=${id}&is_read=false`, adminToken)).count;
  for (let i = 0; (await unreadAbout(slow.id)) !== 0; i += 1) {
    run.check(i < 150, 'the admin\'s notifications about the ticket they opened are read');
    await new Promise((r) => setTimeout(r, 100));
  }

  run.log('the client edits the ticket in place, at 1280×800');
  const client = await run.page('client', `${base}/`);
  await client.setViewportSize({ width: 1280, height: 800 });
  await logIn(client, users.client);
  await until(client, 'the client socket is connected', () => document.querySelector('[data-testid="ws-state"]').dataset.state === 'connected');
  await openTicket(client, slow.key);
  await tid(client, 'action-edit').click();
  run.check(await tid(client, 'edit-form').isVisible(), 'the edit form shows');
  run.check(await tid(client, 'edit-form').getByLabel('Title', { exact: true }).isVisible(), 'the title field has a label');
  await run.accessible(client, 'editing a ticket (desktop)');
  await tid(client, 'edit-title').fill('Login page slow on Safari');
  await tid(client, 'edit-priority').selectOption('CRITICAL');
  await tid(client, 'edit-description').fill('Takes 10 s. <img src=x onerror="window.__xss=1"><script>window.__xss=1</script>');
  await tid(client, 'edit-save').click();
  await until(client, 'the form closes after saving', () => !document.querySelector('[data-testid="edit-form"]'));
  await until(client, 'the new title', () => document.querySelector('[data-testid="ticket-view"] [data-testid="ticket-title"]')?.textContent === 'Login page slow on Safari');
  const description = await until(client, 'the new description',
    () => document.querySelector('[data-testid="ticket-description"]')?.textContent.startsWith('Takes 10 s.') && document.querySelector('[data-testid="ticket-description"]').textContent);
  run.check(description.includes('<script>'), `markup in the description shows as text (${description})`);
  run.check(await client.evaluate(() => !document.querySelector('[data-testid="ticket-description"] img, [data-testid="ticket-description"] script') && !window.__xss),
    'no element or script comes from the description');
  const said = await until(client, 'the history says what changed', () => [...document.querySelectorAll('[data-testid="history-item"][data-action="edit"]')].map((li) => li.textContent).join(' '));
  run.check(/changed the title to “Login page slow on Safari”, the description, the priority from Medium to Critical/.test(said), `history in words (${said})`);
  await run.accessible(client, 'ticket after an edit');

  run.log('the admin watching the ticket sees the change live, and its notice is read at once');
  await until(admin, 'the admin sees the new title', () => document.querySelector('[data-testid="ticket-view"] [data-testid="ticket-title"]')?.textContent === 'Login page slow on Safari');
  await until(admin, 'the admin sees the new description', () => document.querySelector('[data-testid="ticket-description"]')?.textContent.startsWith('Takes 10 s.'));
  for (let i = 0; (await unreadAbout(slow.id)) !== 0; i += 1) {
    run.check(i < 150, 'the ticket_updated about the open ticket is read');
    await new Promise((r) => setTimeout(r, 100));
  }

  run.log('the client fixes a typo in their comment, then deletes it');
  await tid(client, 'comment-edit').click();
  await tid(client, 'comment-edit-input').fill('It started on Monday.');
  await run.accessible(client, 'editing a comment');
  await tid(client, 'comment-edit-save').click();
  await until(client, 'the comment shows as edited', () => document.querySelector('[data-testid="comment-item"]')?.dataset.edited === 'true');
  run.check((await tid(client, 'comment-body').textContent()).trim() === 'It started on Monday.', 'the new text shows');
  run.check(await tid(client, 'comment-edited').isVisible(), '"edited" shows beside the time');
  await tid(client, 'comment-delete').click();
  await tid(client, 'dialog-confirm').click();
  await until(client, 'a tombstone in its place', () => document.querySelector('[data-testid="comment-item"]')?.dataset.deleted === 'true');
  run.check((await tid(client, 'comment-tombstone').textContent()) === 'This comment was deleted.', 'the tombstone says so');
  run.check(!(await tid(client, 'comment-edit').count()), 'a deleted comment offers no edit');
  await run.accessible(client, 'a deleted comment');
  await openTicket(admin, sent.key);
  await openTicket(admin, slow.key);
  await until(admin, 'the admin sees the tombstone', () => document.querySelector('[data-testid="comment-item"]')?.dataset.deleted === 'true');

  run.log('the client mentions the admin, completed from "@ad", in a comment with Markdown');
  const input = tid(client, 'comment-input');
  await input.fill('Thanks **a lot**, ');
  await input.press('End');
  await input.pressSequentially('@ad');
  await until(client, 'a completion for @ad', () => !document.querySelector('[data-testid="mention-suggestions"]').hidden);
  await run.accessible(client, 'mention completions');
  await tid(client, 'mention-option').first().click();
  run.check((await input.inputValue()) === `Thanks **a lot**, @${users.admin.username} `, `the completion fills the name (${await input.inputValue()})`);
  await tid(client, 'comment-submit').click();
  await until(client, 'the comment in bold', () => [...document.querySelectorAll('[data-testid="comment-body"] strong')].some((b) => b.textContent === 'a lot'));
  const mentioned = await until(admin, 'the admin is told they were mentioned',
    () => [...document.querySelectorAll('[data-notification-type="ticket_mentioned"], [data-type="ticket_mentioned"]')].length > 0
      || [...document.querySelectorAll('[data-testid="notification-item"]')].some((n) => /mentioned you/.test(n.textContent)));
  run.check(mentioned, 'the mention reaches the admin');

  run.log('a rejection\'s reason is in the history; the creator of an assigned ticket gets no edit');
  await openTicket(client, sent.key);
  const rejected = await until(client, 'the rejection in the history', () => document.querySelector('[data-testid="history-item"][data-action="reject"]')?.textContent);
  run.check(rejected.includes('“CSV files still fail”'), `the reason shows (${rejected})`);
  run.check((await tid(client, 'action-edit').count()) === 0, 'no edit once the ticket is assigned');

  run.log('times are relative, exact in the client\'s own time zone on hover');
  const filed = tid(view(client), 'ticket-created-at');
  run.check(/just now|minute/.test(await filed.textContent()), `relative (${await filed.textContent()})`);
  const hover = await filed.getAttribute('title');
  run.check(/\(Europe\/Berlin\)$/.test(hover) && /2026|20\d\d/.test(hover), `exact, in Europe/Berlin (${hover})`);

  run.log('keyboard shortcuts: j and k walk the list, / searches, c creates, ? tells them');
  await client.goto(`${base}/#/`);
  await until(client, 'the list', () => document.querySelectorAll('[data-testid="ticket-row"]').length === 2);
  await client.locator('body').click({ position: { x: 5, y: 300 } });
  const focused = () => client.evaluate(() => document.activeElement?.closest('[data-testid="ticket-row"]')?.dataset.key ?? document.activeElement?.dataset.testid ?? null);
  const rows = await client.evaluate(() => [...document.querySelectorAll('[data-testid="ticket-row"]')].map((r) => r.dataset.key));
  await client.keyboard.press('j');
  run.check((await focused()) === rows[0], `j focuses the first ticket (${await focused()})`);
  await client.keyboard.press('j');
  run.check((await focused()) === rows[1], 'j again, the second');
  await client.keyboard.press('k');
  run.check((await focused()) === rows[0], 'k goes back');
  await client.keyboard.press('/');
  await until(client, '/ focuses the search', () => document.activeElement?.dataset.testid === 'find-search');
  await client.keyboard.press('c');
  run.check((await tid(client, 'find-search').inputValue()) === 'c', 'typing in a field is typing, not a shortcut');
  await tid(client, 'find-search').fill('');
  await client.locator('body').click({ position: { x: 5, y: 300 } });
  await client.keyboard.press('c');
  await until(client, 'c focuses the new ticket\'s title', () => document.activeElement?.dataset.testid === 'create-title');
  await client.locator('body').click({ position: { x: 5, y: 300 } });
  await client.keyboard.press('?');
  await until(client, '? opens the help', () => document.querySelector('[data-testid="dialog"]').open
    && document.querySelector('[data-testid="dialog-title"]').textContent === 'Keyboard shortcuts');
  await run.accessible(client, 'keyboard shortcuts help');
  await tid(client, 'dialog-confirm').click();

  run.log('dark mode, as the system asks: dark surfaces, every state still at AA contrast');
  await client.emulateMedia({ colorScheme: 'dark' });
  const dark = await client.evaluate(() => getComputedStyle(document.body).backgroundColor);
  run.check(dark === 'rgb(15, 18, 24)', `the page is dark (${dark})`);
  await run.accessible(client, 'the list in dark mode');
  await openTicket(client, slow.key);
  await run.accessible(client, 'a ticket in dark mode');
  await run.screenshot(client, 'edits-dark.png');
  await tid(client, 'action-edit').click();
  await run.accessible(client, 'editing in dark mode');
  await tid(client, 'edit-cancel').click();
  await client.emulateMedia({ colorScheme: 'light' });

  run.log('on a phone the filters fold behind one button, and a new notification shows as a banner');
  await client.setViewportSize({ width: 360, height: 740 });
  await client.goto(`${base}/#/`);
  await until(client, 'the list at 360', () => document.querySelectorAll('[data-testid="ticket-row"]').length === 2);
  run.check(await tid(client, 'find-search').isVisible(), 'the search stays');
  run.check(!(await tid(client, 'find-status').isVisible()), 'the filters are folded');
  await tid(client, 'filters-toggle').click();
  run.check(await tid(client, 'find-status').isVisible(), 'Filters unfolds them');
  await tid(client, 'find-status').selectOption('NEW');
  await until(client, 'the toggle counts the filter', () => document.querySelector('[data-testid="filters-toggle"]').textContent === 'Filters (1)');
  await run.accessible(client, 'filters unfolded on a phone');
  await tid(client, 'find-clear').click();
  await api('POST', `/api/tickets/${slow.id}/comments/`, adminToken, { body: 'Which Safari version?' });
  const banner = await until(client, 'a banner for the new notification',
    () => !document.querySelector('[data-testid="notification-banner"]').hidden && document.querySelector('[data-testid="notification-banner-text"]').textContent);
  run.check(/New Comment: ada display commented on WEB-1: Which Safari version\?/.test(banner), `the banner says what came (${banner})`);
  const box = await tid(client, 'notification-banner').boundingBox();
  run.check(box.y >= 0 && box.y + box.height <= 740 && box.x >= 0 && box.x + box.width <= 360, 'the banner is on screen');
  await run.accessible(client, 'a notification banner on a phone');
  await tid(client, 'notification-banner-open').click();
  await until(client, 'the banner opens the ticket', (k) => document.querySelector('[data-testid="ticket-view-head"]')?.dataset.key === k
    && !document.querySelector('[data-testid="ticket-view"]').hidden, slow.key);
  run.check(await tid(client, 'notification-banner').isHidden(), 'and goes');

  run.log('at 360×740: the edit form fits, with no sideways scroll');
  await openTicket(client, slow.key);
  await tid(client, 'action-edit').click();
  run.check(await tid(client, 'edit-form').isVisible(), 'the edit form shows on a phone');
  run.check(await noSidewaysScroll(client), 'no sideways scroll at 360 wide (editing)');
  await run.accessible(client, 'editing a ticket (phone)');
  await run.screenshot(client, 'edits-phone.png');
  await tid(client, 'edit-cancel').click();
  run.check(!(await tid(client, 'edit-form').isVisible()), 'cancel closes the form');
});
