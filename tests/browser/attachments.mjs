// Files in the workspace at `/`, in headless Chromium at 1280×800 and 360×740: the creator
// attaches a picture (its thumbnail loads through the signed link, under the pages' content
// security policy) and a file whose name is markup (it stays text), a type the hub does not
// take is refused in words, the assignee on a phone sees both and downloads one under its
// name, may not delete the creator's file, uploads one whose answer comes after the live
// notice of it (listed once), the creator deletes the picture (a tombstone
// stays), each sees the other's change live, and axe-core checks every new state.
//
//   node tests/browser/attachments.mjs http://127.0.0.1:8080 client=USER:PASS admin=USER:PASS developer=USER:PASS
//
// All three must be members of one project.

import { Run, parseArgs, restClient, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('attachments.mjs', ['client', 'admin', 'developer']);
const api = restClient(base);

// A 2×2 PNG, red.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP4z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);

const noSidewaysScroll = (page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

async function openTicket(page, key) {
  await page.goto(`${base}/#/tickets/${key}`);
  await until(page, `the ticket view shows ${key}`,
    (k) => document.querySelector('[data-testid="ticket-view-head"]')?.dataset.key === k
      && !document.querySelector('[data-testid="ticket-view"]').hidden, key);
}

const files = (page) => page.evaluate(() => [...document.querySelectorAll('[data-testid="attachment-item"]')]
  .map((li) => ({ text: li.textContent, deleted: li.dataset.deleted === 'true' })));

await new Run('attachments').main(async (run) => {
  run.log('a client files a ticket; an admin assigns it to the developer');
  const token = async (u) => (await api('POST', '/api/auth/login/', null, u)).access;
  const [clientToken, adminToken, devToken] = [await token(users.client), await token(users.admin), await token(users.developer)];
  const dev = await api('GET', '/api/users/me/', devToken);
  const project = (await api('GET', '/api/projects/?page_size=100', clientToken)).results[0];
  const t = await api('POST', '/api/tickets/', clientToken, { project: project.id, title: 'Chart renders blank', priority: 'HIGH', category: 'BUG' });
  await api('POST', `/api/tickets/${t.id}/open_ticket/`, adminToken, {});
  await api('POST', `/api/tickets/${t.id}/assign/`, adminToken, { developer_ids: [dev.id] });

  run.log('the client attaches a screenshot at 1280×800: its thumbnail shows');
  const client = await run.page('client', `${base}/`);
  await client.setViewportSize({ width: 1280, height: 800 });
  await logIn(client, users.client);
  await openTicket(client, t.key);
  run.check(await tid(client, 'attachments-empty').isVisible(), '"No files yet." shows');
  run.check(await client.getByLabel('Attach a file').isVisible(), 'the file picker has a label');
  await run.accessible(client, 'a ticket without files');
  await tid(client, 'attach-input').setInputFiles({ name: 'blank chart.png', mimeType: 'image/png', buffer: PNG });
  await until(client, 'the picture is listed', () => document.querySelectorAll('[data-testid="attachment-item"]').length === 1);
  await until(client, 'its thumbnail loads through the signed link',
    () => document.querySelector('[data-testid="attachment-thumb"]')?.complete && document.querySelector('[data-testid="attachment-thumb"]').naturalWidth === 2);
  const said = await tid(client, 'attach-status').textContent();
  run.check(said === 'Attached blank chart.png.', `the status says so (${said})`);
  await run.accessible(client, 'a ticket with a picture');
  await run.screenshot(client, 'attachments-desktop.png');

  run.log('a file named like markup stays text; a type the hub does not take is refused in words');
  await tid(client, 'attach-input').setInputFiles({ name: '<img src=x onerror=window.__xss=1>.txt', mimeType: 'text/plain', buffer: Buffer.from('steps to reproduce') });
  await until(client, 'the text file is listed', () => document.querySelectorAll('[data-testid="attachment-item"]').length === 2);
  const listed = await files(client);
  run.check(listed[1].text.startsWith('<img src=x onerror=window.__xss=1>.txt'), `the name is text (${listed[1].text})`);
  run.check(await client.evaluate(() => !window.__xss && !document.querySelector('[data-testid="attachment-list"] img:not([data-testid="attachment-thumb"])')),
    'no element or script comes from a file name');
  await tid(client, 'attach-input').setInputFiles({ name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<script>alert(1)</script>') });
  const refused = await until(client, 'the refusal', () => {
    const s = document.querySelector('[data-testid="attach-status"]');
    return s.dataset.kind === 'error' && s.textContent;
  });
  run.check(refused === 'Cannot attach page.html: files of this type are not taken here.', `refused in words (${refused})`);
  run.check((await files(client)).length === 2, 'nothing was added');
  await run.accessible(client, 'a refused file');

  run.log('the developer, on a phone, sees both files, downloads one under its name, and may not delete them');
  const developer = await run.page('developer', `${base}/`);
  await developer.setViewportSize({ width: 360, height: 740 });
  await logIn(developer, users.developer);
  await openTicket(developer, t.key);
  await until(developer, 'both files', () => document.querySelectorAll('[data-testid="attachment-item"]').length === 2);
  run.check((await tid(developer, 'attachment-delete').count()) === 0, 'no delete on another person\'s files');
  run.check(await noSidewaysScroll(developer), 'no sideways scroll at 360 px');
  await run.accessible(developer, 'files on a phone');
  await run.screenshot(developer, 'attachments-phone.png');
  const [download] = await Promise.all([
    developer.waitForEvent('download'),
    tid(developer, 'attachment-link').nth(1).click(),
  ]);
  run.check(download.suggestedFilename().endsWith('.txt'), `downloaded under its name (${download.suggestedFilename()})`);
  const path = await download.path();
  const { readFileSync } = await import('node:fs');
  run.check(readFileSync(path, 'utf8') === 'steps to reproduce', 'the download is the file');
  // The upload's answer is held until the board's live notice of the same file has listed it:
  // the answer then replaces that entry rather than listing the file twice.
  await developer.route('**/api/tickets/*/attachments/', async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    const response = await route.fetch();
    await until(developer, 'the live notice lists the assignee\'s file before the upload answers',
      () => document.querySelectorAll('[data-testid="attachment-item"]').length === 3);
    return route.fulfill({ response });
  });
  await tid(developer, 'attach-input').setInputFiles({ name: 'fix.txt', mimeType: 'text/plain', buffer: Buffer.from('patched') });
  await until(developer, 'the upload answered', () => document.querySelector('[data-testid="attach-status"]').textContent === 'Attached fix.txt.');
  await developer.unroute('**/api/tickets/*/attachments/');
  run.check((await files(developer)).length === 3, `the assignee's file is listed once (${(await files(developer)).map((f) => f.text)})`);
  run.check((await tid(developer, 'attachment-delete').count()) === 1, 'the assignee may delete their own file');
  await until(client, 'the client, watching the ticket, sees the new file live', () => document.querySelectorAll('[data-testid="attachment-item"]').length === 3);

  run.log('the client deletes the picture: a tombstone stays, everywhere');
  await tid(client, 'attachment-delete').first().click();
  await tid(client, 'dialog-confirm').click();
  await until(client, 'a tombstone in its place', () => document.querySelector('[data-testid="attachment-item"]')?.dataset.deleted === 'true');
  run.check((await files(client))[0].text === 'blank chart.png was deleted.', 'the tombstone says so');
  await run.accessible(client, 'a deleted file');
  const left = await api('GET', `/api/tickets/${t.id}/attachments/`, devToken);
  run.check(left.length === 3 && left[0].deleted && left[0].url === null, 'the API lists the tombstone');
  await until(developer, 'the developer, watching the ticket, sees the tombstone live', () => document.querySelector('[data-testid="attachment-item"]')?.dataset.deleted === 'true');
});
