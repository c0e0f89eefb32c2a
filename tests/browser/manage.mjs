// The administration page at `/manage/` and the ways into a project from the workspace, in
// headless Chromium at 1280×800 and 360×740. The workspace's header links to the page for
// admins only, and anyone else who opens it is told it is for admins. An admin adds a person
// (a taken username is refused beside the form), finds them, changes their role, deactivates
// and activates them (a deactivated person stays listed after a reload, and cannot log in),
// and sets a new password (their old token and password are refused, the new one logs in).
// An invitation's link, shown once, is copied and opened in another tab by a newcomer, who
// makes their account and lands in the workspace in the invited project; a link taken back,
// or used, says so in words. Someone who signed up by themselves asks to join a project by its
// key (an unknown key and asking twice are refused in words), the admin approves it on the page,
// and a reload shows them the project. A project is created, renamed, and members added and
// removed; an API key is made (shown once, it works) and revoked behind a dialog (it no longer
// works); a scheduled send is listed and cancelled; a person is erased behind a dialog that
// says it cannot be undone. Nothing scrolls sideways, and axe-core checks every new state, at
// both widths, light and dark.
//
//   node tests/browser/manage.mjs http://127.0.0.1:8080 client=USER:PASS admin=USER:PASS developer=USER:PASS
//
// All three must be members of one project, WEB; sign-up must be open.

import { Run, parseArgs, restClient, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('manage.mjs', ['client', 'admin', 'developer']);
const api = restClient(base);

/** A REST call that answers its status. */
async function status(method, path, token, body, scheme = 'Bearer') {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `${scheme} ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return res.status;
}

const login = async (u) => (await api('POST', '/api/auth/login/', null, u)).access;

const noSidewaysScroll = (page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

/** Waits for `[data-testid=id]` to say something matching `pattern`, and answers it. */
const says = (page, id, pattern) => until(page, `${id} says ${pattern}`, ([i, p]) => {
  const t = document.querySelector(`[data-testid="${i}"]`)?.textContent ?? '';
  return new RegExp(p).test(t) && t;
}, [id, pattern.source]);

/** The list item `[data-testid=kind][data-<attr>=value]`. */
const item = (page, kind, attr, value) => page.locator(`[data-testid="${kind}"][data-${attr}="${value}"]`);

/** Waits for that item's own status line (or error line, with `line`) to match `pattern`. */
const itemSays = (page, [kind, attr, value], pattern, line = 'row-status') => until(page, `${kind} ${value}: ${line} says ${pattern}`,
  ([k, a, v, p, l]) => {
    const t = document.querySelector(`[data-testid="${k}"][data-${a}="${v}"] [data-testid="${l}"]`)?.textContent ?? '';
    return new RegExp(p).test(t) && t;
  }, [kind, attr, value, pattern.source, line]);

/** Checks the page as it is: no sideways scrolling, and axe. */
async function check(run, page, state) {
  run.check(await noSidewaysScroll(page), `${state}: nothing scrolls sideways`);
  await run.accessible(page, state);
}

/** Waits until the administration page has loaded every section. */
async function loaded(page) {
  await until(page, 'the administration page shows its lists', () => !document.querySelector('[data-testid="manage"]').hidden
    && document.querySelectorAll('[data-testid="person"]').length > 0
    && document.querySelectorAll('[data-testid="project"]').length > 0
    && document.querySelector('[data-testid="people-count"]').textContent !== '');
}

/** Finds a person with the filter box and answers their row. */
async function find(page, username) {
  await tid(page, 'people-filter').fill(username);
  await until(page, `${username} is found`, (u) => document.querySelectorAll('[data-testid="person"]').length === 1
    && document.querySelector(`[data-testid="person"][data-username="${u}"]`), username);
  return item(page, 'person', 'username', username);
}

/** Makes an invitation on the page and answers its link. */
async function invite(run, page, email, role, state) {
  await tid(page, 'invite-email').fill(email);
  await tid(page, 'invite-role').selectOption(role);
  await tid(page, 'invite-project').selectOption({ label: 'WEB · Web' });
  await tid(page, 'invite-submit').click();
  await until(page, 'the link box shows', () => !document.querySelector('[data-testid="invite-link-box"]').hidden);
  await says(page, 'invite-status', new RegExp(`^Invitation made for ${email.replace(/[.]/g, '\\.')}\\.$`));
  const hint = await tid(page, 'invite-link-hint').textContent();
  run.check(/shown only this once/.test(hint) && hint.includes(email) && /WEB/.test(hint), `the link is said to be shown once (${hint})`);
  const link = await tid(page, 'invite-link').inputValue();
  run.check(link.startsWith(`${base}/#/invite/`), `an absolute link (${link})`);
  run.check(await page.evaluate(() => document.activeElement?.dataset.testid === 'invite-link'), 'the link has the focus');
  await check(run, page, state);
  return link;
}

await new Run('manage').main(async (run) => {
  const adminToken = await login(users.admin);
  const project = (await api('GET', '/api/projects/?page_size=100', adminToken)).results.find((p) => p.key === 'WEB');
  await api('PATCH', `/api/projects/${project.id}/`, adminToken, { name: 'Web' });
  const carl = (await api('GET', '/api/users/me/', await login(users.client)));
  await run.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });

  run.log('a client sees no Administration link, and the page tells them it is for admins (1280×800)');
  const client = await run.page('client', `${base}/`);
  await client.setViewportSize({ width: 1280, height: 800 });
  await logIn(client, users.client);
  await until(client, 'the workspace shows', () => !document.querySelector('[data-testid="app"]').hidden);
  run.check(await tid(client, 'settings-link').isVisible(), 'Settings is in the header');
  run.check(await tid(client, 'manage-link').isHidden(), 'no Administration link for a client');
  await client.goto(`${base}/manage/`);
  await until(client, 'the page says it is for admins', () => !document.querySelector('[data-testid="not-admin"]').hidden);
  run.check((await client.getByRole('heading', { level: 2 }).first().textContent()) === 'Only admins can use this page', 'a clear heading');
  run.check(/logged in as carl display, a client/.test(await tid(client, 'not-admin-text').textContent()), 'it says who is logged in');
  run.check(await tid(client, 'manage').isHidden(), 'no section shows');
  await check(run, client, 'not an admin (desktop)');

  run.log("the admin follows the header's Administration link: the page loads with the same login");
  const admin = await run.page('admin', `${base}/`);
  await admin.setViewportSize({ width: 1280, height: 800 });
  await logIn(admin, users.admin);
  await until(admin, 'the workspace shows', () => !document.querySelector('[data-testid="app"]').hidden);
  run.check(await tid(admin, 'manage-link').isVisible(), 'Administration is in the header');
  await admin.getByRole('link', { name: 'Administration', exact: true }).click();
  await admin.waitForURL(`${base}/manage/`);
  await loaded(admin);
  run.check(/^3 people$/.test(await tid(admin, 'people-count').textContent()), 'the three of the crew are listed');
  run.check(await item(admin, 'project', 'key', 'WEB').isVisible(), 'WEB is listed');
  await check(run, admin, 'administration (desktop)');
  await run.screenshot(admin, 'manage-desktop.png');

  run.log('people: a person is added; a taken username is refused beside the form');
  await tid(admin, 'add-person-box').locator('summary').click();
  await tid(admin, 'add-person-username').fill('grace');
  await tid(admin, 'add-person-name').fill('Grace Hopper');
  await tid(admin, 'add-person-email').fill('grace@example.test');
  await tid(admin, 'add-person-role').selectOption('developer');
  await tid(admin, 'add-person-password').fill('grace-first-password');
  await tid(admin, 'add-person-submit').click();
  await says(admin, 'add-person-status', /^Added Grace Hopper as a developer\. They log in as grace/);
  const grace = (await api('GET', '/api/users/?page_size=100', adminToken)).results.find((u) => u.username === 'grace');
  run.check(grace?.role === 'developer' && grace.email === 'grace@example.test' && grace.is_active, `stored: ${JSON.stringify(grace)}`);
  run.check(await status('POST', '/api/auth/login/', null, { username: 'grace', password: 'grace-first-password' }) === 200, 'grace logs in');
  await check(run, admin, 'a person added (desktop)');
  await tid(admin, 'add-person-username').fill('Grace');
  await tid(admin, 'add-person-password').fill('another-password');
  await tid(admin, 'add-person-submit').click();
  await says(admin, 'add-person-error', /^A user with that username already exists\.$/);
  run.check(await tid(admin, 'add-person-username').getAttribute('aria-invalid') === 'true', 'the username is marked');
  await check(run, admin, 'a taken username (desktop)');
  await tid(admin, 'add-person-box').locator('summary').click();

  run.log("people: found by the filter box; the role changes and the person's logins end");
  let row = await find(admin, 'grace');
  run.check(/^1 of 4 people match$/.test(await tid(admin, 'people-count').textContent()), 'the count says what matches');
  const graceToken = await login({ username: 'grace', password: 'grace-first-password' });
  await row.locator('[data-testid="person-role"]').selectOption('client');
  await row.locator('[data-testid="person-role-save"]').click();
  await itemSays(admin, ['person', 'username', 'grace'], /^Grace Hopper is a client now\./);
  run.check((await api('GET', `/api/users/${grace.id}/`, adminToken)).role === 'client', 'stored: a client');
  run.check(await status('GET', '/api/users/me/', graceToken) === 401, 'her token from before is refused');
  run.check(await admin.evaluate(() => document.activeElement?.dataset.testid === 'person-role'), 'the keyboard stays on the role');
  await check(run, admin, 'a role changed (desktop)');

  run.log('people: deactivated (listed after a reload, cannot log in), then activated again');
  await item(admin, 'person', 'username', 'grace').locator('[data-testid="person-active"]').click();
  await itemSays(admin, ['person', 'username', 'grace'], /^Grace Hopper is deactivated/);
  run.check(await item(admin, 'person', 'username', 'grace').locator('[data-testid="person-inactive"]').isVisible(), 'tagged Deactivated');
  run.check(await status('POST', '/api/auth/login/', null, { username: 'grace', password: 'grace-first-password' }) === 401, 'she cannot log in');
  await check(run, admin, 'a person deactivated (desktop)');
  await admin.reload();
  await loaded(admin);
  row = await find(admin, 'grace');
  run.check(await row.getAttribute('data-active') === 'false', 'a deactivated person is still listed after a reload');
  await row.locator('[data-testid="person-active"]').click();
  await itemSays(admin, ['person', 'username', 'grace'], /^Grace Hopper is active again/);
  run.check((await api('GET', `/api/users/${grace.id}/`, adminToken)).is_active === true, 'stored: active');

  run.log('people: a new password; her old token and password are refused, the new one logs in');
  const before = await login({ username: 'grace', password: 'grace-first-password' });
  row = item(admin, 'person', 'username', 'grace');
  await row.locator('[data-testid="person-password-open"]').click();
  run.check(await row.locator('[data-testid="person-password-open"]').getAttribute('aria-expanded') === 'true', 'the button says the form is open');
  run.check(await admin.evaluate(() => document.activeElement?.dataset.testid === 'person-password'), 'the password field has the focus');
  await row.locator('[data-testid="person-password"]').fill('short');
  await row.locator('[data-testid="person-password-save"]').click();
  await itemSays(admin, ['person', 'username', 'grace'], /too short/, 'row-error');
  await check(run, admin, 'a password too short (desktop)');
  await row.locator('[data-testid="person-password"]').fill('grace-second-password');
  await row.locator('[data-testid="person-password-save"]').click();
  await itemSays(admin, ['person', 'username', 'grace'], /^New password set for Grace Hopper\./);
  run.check(await row.locator('[data-testid="person-password-form"]').isHidden(), 'the form closes');
  run.check(await status('GET', '/api/users/me/', before) === 401, 'her token from before is refused');
  run.check(await status('POST', '/api/auth/login/', null, { username: 'grace', password: 'grace-first-password' }) === 401, 'the old password fails');
  run.check(await status('POST', '/api/auth/login/', null, { username: 'grace', password: 'grace-second-password' }) === 200, 'the new one logs in');
  await check(run, admin, 'a password set (desktop)');
  await tid(admin, 'people-filter').fill('');

  run.log('invitations: a link shown once, copied; another taken back');
  const link = await invite(run, admin, 'nora@example.test', 'developer', 'an invitation link (desktop)');
  await tid(admin, 'invite-copy').click();
  await says(admin, 'invite-copy-status', /^Copied\./);
  run.check(await admin.evaluate(() => navigator.clipboard.readText()) === link, 'the clipboard holds the link');
  await run.screenshot(admin, 'manage-invitation.png');
  await tid(admin, 'invite-done').click();
  run.check(await tid(admin, 'invite-link-box').isHidden() && (await tid(admin, 'invite-link').inputValue()) === '', 'the link is gone from the page');
  run.check(await item(admin, 'invitation', 'email', 'nora@example.test').getAttribute('data-status') === 'pending', 'listed, waiting');
  const listed = await api('GET', '/api/admin/invitations/', adminToken);
  run.check(listed.every((i) => i.url === null), 'the hub never shows the link again');
  const second = await invite(run, admin, 'taken.back@example.test', 'client', 'a second invitation link (desktop)');
  await tid(admin, 'invite-done').click();
  await item(admin, 'invitation', 'email', 'taken.back@example.test').locator('[data-testid="invitation-revoke"]').click();
  await itemSays(admin, ['invitation', 'email', 'taken.back@example.test'], /^Taken back/);
  run.check(await item(admin, 'invitation', 'email', 'taken.back@example.test').getAttribute('data-status') === 'revoked', 'marked taken back');
  const secondToken = decodeURIComponent(second.split('#/invite/')[1]);
  run.check(await status('GET', `/api/invitations/${encodeURIComponent(secondToken)}/`) === 404, 'its link no longer works');
  await check(run, admin, 'an invitation taken back (desktop)');

  run.log('a newcomer opens the link in another tab, makes the account and lands in WEB');
  const nora = await run.page('nora', link);
  await nora.setViewportSize({ width: 1280, height: 800 });
  await until(nora, 'the invitation shows what it offers', () => !document.querySelector('[data-testid="invite-offer"]').hidden);
  const offer = await tid(nora, 'invite-offer-text').textContent();
  run.check(/as a developer in the project [A-Z0-9]+ · Web/.test(offer), `it says what it offers, by key and name (${offer})`);
  run.check((await tid(nora, 'invite-for').textContent()) === 'nora@example.test', 'and to whom it was sent');
  run.check(await tid(nora, 'login-panel').isHidden() && await tid(nora, 'app').isHidden(), 'in place of the login');
  await check(run, nora, 'an invitation (desktop)');
  await run.screenshot(nora, 'manage-invite-accept.png');
  await tid(nora, 'invite-username').fill('nora');
  await tid(nora, 'invite-name').fill('Nora Newman');
  await tid(nora, 'invite-password').fill('nora-password');
  await tid(nora, 'invite-submit').click();
  await until(nora, 'nora is logged in, in the workspace', () => document.querySelector('[data-testid="whoami"]')?.dataset.username === 'nora'
    && !document.querySelector('[data-testid="app"]').hidden);
  run.check(await nora.evaluate(() => window.location.hash) === '#/', 'the address is the workspace');
  run.check(await tid(nora, 'login').isHidden() && await tid(nora, 'invite').isHidden(), 'no login form or invitation is left on the page');
  await until(nora, 'the WEB room is offered', () => [...document.querySelectorAll('[data-testid="room-project"] option')].some((o) => o.textContent.startsWith('WEB')));
  run.check(await tid(nora, 'join-panel').isHidden(), 'she is asked to join nothing');
  const noraToken = await login({ username: 'nora', password: 'nora-password' });
  const noraMe = await api('GET', '/api/users/me/', noraToken);
  run.check(noraMe.role === 'developer' && noraMe.display_name === 'Nora Newman', `her account: ${noraMe.role}, ${noraMe.display_name}`);
  run.check((await api('GET', '/api/projects/', noraToken)).results.some((p) => p.key === 'WEB'), 'she is a member of WEB');
  await check(run, nora, 'in the workspace from an invitation (desktop)');
  await nora.goto(link);
  await says(nora, 'invite-gone', /^This invitation was used, taken back or has run out; ask an admin for a new one\.$/);
  run.check(await tid(nora, 'invite-offer').isHidden(), 'a used link offers no form');
  await check(run, nora, 'a used invitation (desktop)');
  await tid(nora, 'invite-login').click();
  await until(nora, 'back in her workspace', () => !document.querySelector('[data-testid="app"]').hidden);

  run.log('someone who signed up asks to join WEB by its key; unknown keys and asking twice are refused');
  const sam = await run.page('sam', `${base}/`);
  await sam.setViewportSize({ width: 1280, height: 800 });
  await until(sam, 'sign-up is offered', () => document.querySelector('[data-testid="signup-offer"]').hidden === false);
  await tid(sam, 'signup-link').click();
  await tid(sam, 'signup-username').fill('sam');
  await tid(sam, 'signup-name').fill('Sam Signup');
  await tid(sam, 'signup-password').fill('sam-password');
  await tid(sam, 'signup-submit').click();
  await until(sam, 'the join panel shows', () => !document.querySelector('[data-testid="join-panel"]')?.hidden);
  run.check(/ask to join a project/i.test(await tid(sam, 'empty-no-project').textContent()), 'the empty list points to it');
  run.check(await tid(sam, 'login').isHidden(), 'no login form is left on the page');
  run.check(await tid(sam, 'join-requests-empty').isVisible(), 'no request yet');
  await check(run, sam, 'asking to join (desktop)');
  await tid(sam, 'join-key').fill('nope');
  await tid(sam, 'join-submit').click();
  await says(sam, 'join-error', /^No project has the key NOPE\.$/);
  run.check(await tid(sam, 'join-key').getAttribute('aria-invalid') === 'true', 'the key is marked');
  await check(run, sam, 'an unknown key (desktop)');
  await tid(sam, 'join-key').fill('web');
  await tid(sam, 'join-message').fill('I test the checkout.');
  await tid(sam, 'join-submit').click();
  await says(sam, 'join-status', /^You asked to join WEB · Web\./);
  run.check(await item(sam, 'join-request', 'project', 'WEB').getAttribute('data-status') === 'waiting', 'the request waits');
  await check(run, sam, 'asked to join (desktop)');
  await run.screenshot(sam, 'manage-join-ask.png');
  await tid(sam, 'join-key').fill('WEB');
  await tid(sam, 'join-submit').click();
  await says(sam, 'join-error', /^You asked to join WEB already; an admin will answer\.$/);

  run.log('the admin checks for new requests: one waits; approved, WEB lists sam');
  await tid(admin, 'invitations-reload').click();
  await says(admin, 'invitations-status', /^The list is up to date: 0 invitations wait to be used\.$/);
  run.check(await item(admin, 'invitation', 'email', 'nora@example.test').getAttribute('data-status') === 'accepted', 'the used invitation says so');
  await tid(admin, 'people-reload').click();
  await says(admin, 'people-status', /^The list is up to date: 6 people\.$/);
  const used = await item(admin, 'invitation', 'email', 'nora@example.test').textContent();
  run.check(/Nora Newman joined with it\./.test(used), `the invitation names who used it (${used})`);
  await tid(admin, 'join-reload').click();
  await says(admin, 'join-status', /^1 request waits for an answer\.$/);
  await says(admin, 'join-count', /^1$/);
  run.check(/1 waiting/.test(await tid(admin, 'nav-join').textContent()), 'the section link counts it too');
  const request = item(admin, 'join-request', 'username', 'sam');
  run.check((await request.locator('[data-testid="join-message"]').textContent()) === 'I test the checkout.', 'the message shows');
  await check(run, admin, 'a join request (desktop)');
  await request.locator('[data-testid="join-approve"]').click();
  await says(admin, 'join-status', /^Approved: Sam Signup is a member of WEB now/);
  await says(admin, 'join-count', /^0$/);
  await until(admin, 'WEB lists sam', () => document.querySelector('[data-testid="project"][data-key="WEB"] [data-testid="project-member"][data-username="sam"]'));
  await check(run, admin, 'a join request approved (desktop)');

  run.log('sam reloads and sees WEB');
  await sam.reload();
  await until(sam, 'sam can file tickets in WEB', () => !document.querySelector('[data-testid="create-ticket-form"]').hidden
    && [...document.querySelectorAll('[data-testid="create-project"] option')].some((o) => o.textContent.startsWith('WEB')));
  run.check(await tid(sam, 'join-panel').isHidden(), 'the join panel is gone');
  await check(run, sam, 'a member after approval (desktop)');

  run.log('projects: OPS is created, renamed; members are added and one removed');
  await tid(admin, 'add-project-box').locator('summary').click();
  await tid(admin, 'add-project-key').fill('o');
  await tid(admin, 'add-project-name').fill('Operations');
  await tid(admin, 'add-project-submit').click();
  await says(admin, 'add-project-error', /^A key is 2 to 10 capital letters/);
  await tid(admin, 'add-project-key').fill('ops');
  await tid(admin, 'add-project-submit').click();
  await says(admin, 'add-project-status', /^Created OPS · Operations\./);
  const ops = item(admin, 'project', 'key', 'OPS');
  await check(run, admin, 'a project created (desktop)');
  await ops.locator('[data-testid="project-name-input"]').fill('Operations team');
  await ops.locator('[data-testid="project-rename"]').click();
  await itemSays(admin, ['project', 'key', 'OPS'], /^Renamed: OPS is Operations team now\.$/);
  await ops.locator('[data-testid="project-member-select"]').selectOption({ label: 'Grace Hopper (Client)' });
  await ops.locator('[data-testid="member-add"]').click();
  await itemSays(admin, ['project', 'key', 'OPS'], /^Grace Hopper is a member of OPS now\.$/);
  run.check(await admin.evaluate(() => document.activeElement?.dataset.testid === 'project-member-select'), 'the keyboard stays on the picker');
  await ops.locator('[data-testid="project-member-select"]').selectOption({ label: 'dev display (Developer)' });
  await ops.locator('[data-testid="member-add"]').click();
  await itemSays(admin, ['project', 'key', 'OPS'], /^dev display is a member of OPS now\.$/);
  await ops.locator('[data-testid="project-member"][data-username="dev"] [data-testid="member-remove"]').click();
  await itemSays(admin, ['project', 'key', 'OPS'], /^dev display is no longer a member of OPS\.$/);
  const stored = (await api('GET', '/api/projects/?page_size=100', adminToken)).results.find((p) => p.key === 'OPS');
  run.check(stored.name === 'Operations team' && JSON.stringify(stored.member_ids) === JSON.stringify([grace.id]), `stored: ${JSON.stringify(stored)}`);
  run.check((await api('GET', '/api/projects/', await login({ username: 'grace', password: 'grace-second-password' }))).results.some((p) => p.key === 'OPS'), 'grace sees OPS');
  await check(run, admin, 'members changed (desktop)');

  run.log('API keys: a key is made, shown once and works; revoked behind a dialog, it no longer does');
  await tid(admin, 'add-key-box').locator('summary').click();
  await tid(admin, 'add-key-name').fill('billing-server');
  await tid(admin, 'add-key-submit').click();
  await says(admin, 'add-key-error', /^Choose at least one thing the key may do\.$/);
  await tid(admin, 'scope-notifications-send').check();
  await tid(admin, 'add-key-submit').click();
  await until(admin, 'the key shows', () => !document.querySelector('[data-testid="key-box"]').hidden);
  const key = await tid(admin, 'key-value').inputValue();
  run.check(/only time the key is shown/.test(await tid(admin, 'key-hint').textContent()), 'it is said to be shown once');
  run.check(await status('GET', '/api/notifications/scheduled/', key, undefined, 'Api-Key') === 200, 'the key works');
  await check(run, admin, 'a key made (desktop)');
  await tid(admin, 'key-copy').click();
  await says(admin, 'key-copy-status', /^Copied\./);
  run.check(await admin.evaluate(() => navigator.clipboard.readText()) === key, 'the clipboard holds the key');
  await tid(admin, 'key-done').click();
  run.check(!(await admin.evaluate(() => document.body.innerText)).includes(key) && (await tid(admin, 'key-value').inputValue()) === '', 'the key is gone from the page');
  run.check(!JSON.stringify(await api('GET', '/api/admin/api-keys/', adminToken)).includes(key), 'the hub never shows it again');
  await item(admin, 'api-key', 'name', 'billing-server').locator('[data-testid="api-key-revoke"]').click();
  await until(admin, 'the dialog asks first', () => document.querySelector('[data-testid="confirm-dialog"]').open);
  run.check(/cannot be undone/.test(await tid(admin, 'confirm-message').textContent()), 'the dialog says it cannot be undone');
  await run.accessible(admin, 'revoke a key? (desktop)');
  await tid(admin, 'confirm-ok').click();
  await itemSays(admin, ['api-key', 'name', 'billing-server'], /^Revoked: billing-server no longer works\.$/);
  run.check(await status('GET', '/api/notifications/scheduled/', key, undefined, 'Api-Key') === 401, 'the key is refused');
  await check(run, admin, 'a key revoked (desktop)');

  run.log('scheduled sends: one made through the API is listed and cancelled');
  await api('POST', '/api/notifications/send/', adminToken, {
    user_ids: [carl.id], title: 'Maintenance tonight', message: 'The hub restarts at 22:00.', delay: '2h',
  });
  await tid(admin, 'scheduled-reload').click();
  await until(admin, 'the send is listed', () => document.querySelectorAll('[data-testid="scheduled-send"]').length === 1);
  const send = admin.locator('[data-testid="scheduled-send"]');
  run.check(/to carl display\.$/.test(await send.locator('.item-facts').first().textContent()), 'it says to whom');
  await check(run, admin, 'a scheduled send (desktop)');
  await send.locator('[data-testid="scheduled-cancel"]').click();
  await says(admin, 'scheduled-status', /^Cancelled: “Maintenance tonight” will not be sent\.$/);
  run.check(await tid(admin, 'scheduled-empty').isVisible(), 'nothing waits');
  run.check((await api('GET', '/api/notifications/scheduled/', adminToken)).count === 0, 'the hub has nothing pending');
  await check(run, admin, 'a send cancelled (desktop)');

  run.log('erasing asks first, saying it cannot be undone; Escape keeps the person');
  row = await find(admin, 'grace');
  await row.locator('[data-testid="person-erase"]').click();
  await until(admin, 'the dialog asks first', () => document.querySelector('[data-testid="confirm-dialog"]').open);
  run.check(/cannot be undone/.test(await tid(admin, 'confirm-message').textContent()), 'it says it cannot be undone');
  await run.accessible(admin, 'erase? (desktop)');
  await admin.keyboard.press('Escape');
  await until(admin, 'the dialog is gone', () => !document.querySelector('[data-testid="confirm-dialog"]').open);
  run.check(await admin.evaluate(() => document.activeElement?.dataset.testid === 'person-erase'), 'the focus is back on the button');
  run.check(await status('POST', '/api/auth/login/', null, { username: 'grace', password: 'grace-second-password' }) === 200, 'nothing happened');
  await row.locator('[data-testid="person-erase"]').click();
  await tid(admin, 'confirm-ok').click();
  await says(admin, 'people-status', /^Grace Hopper is erased\.$/);
  run.check(await item(admin, 'person', 'username', 'grace').count() === 0, 'she is no longer listed');
  run.check(await status('POST', '/api/auth/login/', null, { username: 'grace', password: 'grace-second-password' }) === 401, 'she cannot log in');
  run.check((await api('GET', `/api/users/${grace.id}/`, adminToken)).username === `erased-${grace.id}`, 'her account is erased');
  await check(run, admin, 'a person erased (desktop)');
  await tid(admin, 'people-filter').fill('');

  run.log('at 360×740: the page fits and passes axe, light and dark');
  await admin.setViewportSize({ width: 360, height: 740 });
  await admin.reload();
  await loaded(admin);
  await check(run, admin, 'administration (phone)');
  await run.screenshot(admin, 'manage-phone.png');
  await admin.emulateMedia({ colorScheme: 'dark' });
  await check(run, admin, 'administration (phone, dark)');
  await admin.emulateMedia({ colorScheme: 'light' });

  run.log('phone: a person added, given another role, a password form open, deactivated');
  await tid(admin, 'add-person-box').locator('summary').click();
  await tid(admin, 'add-person-username').fill('pat');
  await tid(admin, 'add-person-role').selectOption('client');
  await tid(admin, 'add-person-password').fill('pat-password');
  await tid(admin, 'add-person-submit').click();
  await says(admin, 'add-person-status', /^Added pat as a client\./);
  await check(run, admin, 'a person added (phone)');
  await tid(admin, 'add-person-box').locator('summary').click();
  row = await find(admin, 'pat');
  await row.locator('[data-testid="person-role"]').selectOption('developer');
  await row.locator('[data-testid="person-role-save"]').click();
  await itemSays(admin, ['person', 'username', 'pat'], /^pat is a developer now\./);
  await item(admin, 'person', 'username', 'pat').locator('[data-testid="person-password-open"]').click();
  await check(run, admin, 'a role changed, a password form open (phone)');
  await item(admin, 'person', 'username', 'pat').locator('[data-testid="person-password-cancel"]').click();
  await item(admin, 'person', 'username', 'pat').locator('[data-testid="person-active"]').click();
  await itemSays(admin, ['person', 'username', 'pat'], /^pat is deactivated/);
  await check(run, admin, 'a person deactivated (phone)');

  run.log('phone: an invitation accepted in a phone-sized tab');
  await admin.locator('#invitations').scrollIntoViewIfNeeded();
  const phoneLink = await invite(run, admin, 'quinn@example.test', 'client', 'an invitation link (phone)');
  await tid(admin, 'invite-copy').click();
  await says(admin, 'invite-copy-status', /^Copied\./);
  await tid(admin, 'invite-done').click();
  const quinn = await run.page('quinn', phoneLink);
  await quinn.setViewportSize({ width: 360, height: 740 });
  await until(quinn, 'the invitation shows', () => !document.querySelector('[data-testid="invite-offer"]').hidden);
  await check(run, quinn, 'an invitation (phone)');
  await tid(quinn, 'invite-username').fill('quinn');
  await tid(quinn, 'invite-password').fill('short');
  await tid(quinn, 'invite-submit').click();
  await says(quinn, 'invite-error', /too short/);
  await check(run, quinn, 'an invitation refused (phone)');
  await run.screenshot(quinn, 'manage-invite-phone.png');
  await tid(quinn, 'invite-password').fill('quinn-password');
  await tid(quinn, 'invite-submit').click();
  await until(quinn, 'quinn is in the workspace', () => document.querySelector('[data-testid="whoami"]')?.dataset.username === 'quinn'
    && !document.querySelector('[data-testid="create-ticket-form"]').hidden);
  await check(run, quinn, 'in the workspace from an invitation (phone)');

  run.log('phone: a sign-up asks to join, the admin approves, a reload shows the project');
  const rae = await run.page('rae', `${base}/`);
  await rae.setViewportSize({ width: 360, height: 740 });
  await until(rae, 'sign-up is offered', () => document.querySelector('[data-testid="signup-offer"]').hidden === false);
  await tid(rae, 'signup-link').click();
  await tid(rae, 'signup-username').fill('rae');
  await tid(rae, 'signup-password').fill('rae-password');
  await tid(rae, 'signup-submit').click();
  await until(rae, 'the join panel shows', () => !document.querySelector('[data-testid="join-panel"]')?.hidden);
  await check(run, rae, 'asking to join (phone)');
  await rae.emulateMedia({ colorScheme: 'dark' });
  await check(run, rae, 'asking to join (phone, dark)');
  await rae.emulateMedia({ colorScheme: 'light' });
  await tid(rae, 'join-key').fill('OPS');
  await tid(rae, 'join-key').press('Enter');
  await says(rae, 'join-status', /^You asked to join OPS/);
  await check(run, rae, 'asked to join (phone)');
  await tid(admin, 'join-show-all').check();
  await until(admin, 'decided requests show too', () => document.querySelector('[data-testid="join-request"][data-username="sam"][data-status="approved"]'));
  await until(admin, "rae's request shows", () => document.querySelector('[data-testid="join-request"][data-username="rae"][data-status="waiting"]'));
  await says(admin, 'join-count', /^1$/);
  await check(run, admin, 'join requests, all (phone)');
  await item(admin, 'join-request', 'username', 'rae').locator('[data-testid="join-approve"]').focus();
  await admin.keyboard.press('Enter');
  await itemSays(admin, ['join-request', 'username', 'rae'], /^Approved: rae is a member of OPS now/);
  await check(run, admin, 'a join request approved (phone)');
  await rae.reload();
  await until(rae, 'rae can file tickets in OPS', () => !document.querySelector('[data-testid="create-ticket-form"]').hidden
    && [...document.querySelectorAll('[data-testid="create-project"] option')].some((o) => o.textContent.startsWith('OPS')));

  run.log('phone: a project, a key and its revocation, a send cancelled, an erasure, by keyboard where it asks');
  await tid(admin, 'add-project-box').locator('summary').click();
  await tid(admin, 'add-project-key').fill('APP');
  await tid(admin, 'add-project-name').fill('The app');
  await tid(admin, 'add-project-submit').click();
  await says(admin, 'add-project-status', /^Created APP · The app\./);
  await item(admin, 'project', 'key', 'APP').locator('[data-testid="project-member-select"]').selectOption({ label: 'quinn (Client)' });
  await item(admin, 'project', 'key', 'APP').locator('[data-testid="member-add"]').click();
  await itemSays(admin, ['project', 'key', 'APP'], /^quinn is a member of APP now\.$/);
  await check(run, admin, 'a project with a member (phone)');
  await tid(admin, 'add-key-box').locator('summary').click();
  await tid(admin, 'add-key-name').fill('phone-key');
  await tid(admin, 'scope-admin-read').check();
  await tid(admin, 'add-key-submit').click();
  await until(admin, 'the key shows', () => !document.querySelector('[data-testid="key-box"]').hidden);
  await check(run, admin, 'a key made (phone)');
  await tid(admin, 'key-done').click();
  await item(admin, 'api-key', 'name', 'phone-key').locator('[data-testid="api-key-revoke"]').focus();
  await admin.keyboard.press('Enter');
  await until(admin, 'the dialog asks first', () => document.querySelector('[data-testid="confirm-dialog"]').open);
  await check(run, admin, 'revoke a key? (phone)');
  await tid(admin, 'confirm-ok').focus();
  await admin.keyboard.press('Enter');
  await itemSays(admin, ['api-key', 'name', 'phone-key'], /^Revoked/);
  await api('POST', '/api/notifications/send/', adminToken, { role: 'client', title: 'Survey', message: 'Tell us.', delay: '1d' });
  await tid(admin, 'scheduled-reload').click();
  await until(admin, 'the send is listed', () => document.querySelectorAll('[data-testid="scheduled-send"]').length === 1);
  run.check(/to every client\.$/.test(await admin.locator('[data-testid="scheduled-send"] .item-facts').first().textContent()), 'a role in words');
  await check(run, admin, 'a scheduled send (phone)');
  await admin.locator('[data-testid="scheduled-cancel"]').click();
  await says(admin, 'scheduled-status', /^Cancelled/);
  row = await find(admin, 'pat');
  await row.locator('[data-testid="person-erase"]').focus();
  await admin.keyboard.press('Enter');
  await until(admin, 'the dialog asks first', () => document.querySelector('[data-testid="confirm-dialog"]').open);
  await check(run, admin, 'erase? (phone)');
  await tid(admin, 'confirm-ok').focus();
  await admin.keyboard.press('Enter');
  await says(admin, 'people-status', /^pat is erased\.$/);
  await check(run, admin, 'a person erased (phone)');
  await run.screenshot(admin, 'manage-phone-end.png');
});
