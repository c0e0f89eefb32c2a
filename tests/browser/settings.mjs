// The settings page at `/settings/`, in headless Chromium at 1280×800 and 360×740: the
// workspace's header links to it and it keeps the workspace's login; the profile's name and
// time zone are saved and still there after a reload (a language that is no tag is refused in
// words); a new email address waits for its code, a wrong code is refused, the right one
// verifies it; a notification choice switched off is saved and read back over the API, and on
// the phone one is switched with the keyboard; quiet hours and a daily digest are saved (the
// same start and end is refused); two browsers registered through the API are turned off one
// by one; the password is changed (a wrong current one refused next to the form; after it the
// old token and the old password are refused, the new one logs in); and logging out everywhere,
// by keyboard, ends on the login form with the page's token refused. No width scrolls
// sideways, and axe-core checks every new state.
//
//   node tests/browser/settings.mjs http://127.0.0.1:8080 client=USER:PASS \
//     'devices=[<subscription>, <subscription>]' codefile=/tmp/…/code
//
// The client's email is USER@example.test; the hub sends email (the test's SMTP server) and
// takes loopback push endpoints. When the script prints `cue: read the code sent to
// carl.new@example.test`, the test writes the code that mail carried into `codefile`.

import { existsSync, readFileSync } from 'node:fs';
import { PATIENCE, Run, parseArgs, restClient, tid, logIn, until } from './lib.mjs';

/** Takes `<prefix>…` out of the arguments. */
function take(prefix) {
  const at = process.argv.findIndex((a) => a.startsWith(prefix));
  return at < 0 ? null : process.argv.splice(at, 1)[0].slice(prefix.length);
}

const devices = JSON.parse(take('devices=') ?? 'null');
const codeFile = take('codefile=');
const { base, users } = parseArgs('settings.mjs', ['client']);
if (!Array.isArray(devices) || devices.length !== 2 || !codeFile) {
  console.error("missing 'devices=[<subscription>, <subscription>]' or codefile=PATH");
  process.exit(64);
}

const api = restClient(base);
const NEW_EMAIL = 'carl.new@example.test';
const NEW_PASSWORD = 'a much longer secret';

/** A REST call that answers its status (and the body, when there is one). */
async function status(method, path, token, body) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return res.status;
}

const noSidewaysScroll = (page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

/** The access token the page holds (the tab's session). */
const pageToken = (page) => page.evaluate(() => JSON.parse(sessionStorage.getItem('tickethub') || 'null')?.access ?? null);

/** Text of `[data-testid=id]`. */
const text = (page, id) => tid(page, id).textContent();

/** Waits for `[data-testid=id]` to say something matching `pattern`, and answers it. */
const says = (page, id, pattern) => until(page, `${id} says ${pattern}`, ([i, p]) => {
  const t = document.querySelector(`[data-testid="${i}"]`)?.textContent ?? '';
  return new RegExp(p).test(t) && t;
}, [id, pattern.source]);

async function waitForCode() {
  const deadline = Date.now() + PATIENCE;
  while (Date.now() < deadline) {
    if (existsSync(codeFile)) {
      const code = readFileSync(codeFile, 'utf8').trim();
      if (/^\d{6}$/.test(code)) return code;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the test never wrote the code');
}

/** Checks the whole page as it is: no sideways scrolling, axe, every section shown. */
async function wholePage(run, page, state) {
  for (const id of ['profile-section', 'addresses-section', 'preferences-section', 'quiet-section', 'devices-section', 'security-section']) {
    run.check(await tid(page, id).isVisible(), `${state}: ${id} shows`);
  }
  run.check(await noSidewaysScroll(page), `${state}: nothing scrolls sideways`);
  await run.accessible(page, state);
}

await new Run('settings').main(async (run) => {
  run.log('the client registers two browsers for pushes through the API');
  let token = (await api('POST', '/api/auth/login/', null, users.client)).access;
  for (const subscription of devices) await api('POST', '/api/devices/', token, { kind: 'webpush', subscription });

  run.log("from the workspace, the header's Settings link opens the settings with the same login (1280×800)");
  const page = await run.page('client', `${base}/`);
  await page.setViewportSize({ width: 1280, height: 800 });
  await logIn(page, users.client);
  await until(page, 'the workspace shows', () => !document.querySelector('[data-testid="app"]').hidden);
  await page.getByRole('link', { name: 'Settings', exact: true }).click();
  await page.waitForURL(`${base}/settings/`);
  await until(page, 'the settings show without another login',
    () => !document.querySelector('[data-testid="settings"]').hidden
      && document.querySelector('[data-testid="profile-username"]').textContent === 'carl');
  run.check((await text(page, 'profile-role')) === 'Client', 'the role shows, read-only');
  await until(page, 'both devices are listed', () => document.querySelectorAll('[data-testid="device"]').length === 2);
  await until(page, 'the notification choices are drawn', () => document.querySelector('[data-testid="pref-ticket_created-email"]'));
  await until(page, 'the email address shows', () => document.querySelector('[data-testid="address-input-email"]')?.value === 'carl@example.test');
  await wholePage(run, page, 'settings (desktop)');
  await run.screenshot(page, 'settings-desktop.png');

  run.log('profile: a new name and time zone are saved and still there after a reload');
  await tid(page, 'profile-name').fill('Carl Client');
  await tid(page, 'profile-time-zone').selectOption('Europe/Berlin');
  await tid(page, 'profile-save').click();
  await says(page, 'profile-status', /^Profile saved\.$/);
  await run.accessible(page, 'profile saved (desktop)');
  await page.reload();
  await until(page, 'the profile after a reload',
    () => document.querySelector('[data-testid="profile-name"]').value === 'Carl Client'
      && document.querySelector('[data-testid="profile-time-zone"]').value === 'Europe/Berlin');
  run.check((await text(page, 'quiet-zone-name')) === 'Europe/Berlin', 'quiet hours say the time zone they are in');
  run.check((await text(page, 'whoami')).startsWith('Carl Client'), 'the header shows the new name');
  let me = await api('GET', '/api/users/me/', token);
  run.check(me.display_name === 'Carl Client' && me.time_zone === 'Europe/Berlin', `stored: ${me.display_name}, ${me.time_zone}`);
  await tid(page, 'profile-locale').fill('not a language!');
  await tid(page, 'profile-save').click();
  await says(page, 'profile-error', /language as a tag/);
  run.check(await tid(page, 'profile-locale').getAttribute('aria-invalid') === 'true', 'the field in error is marked');
  await run.accessible(page, 'a profile refused (desktop)');
  await tid(page, 'profile-locale').fill('');

  run.log('addresses: a new email waits for its code; a wrong code is refused; the right one verifies it');
  await tid(page, 'address-input-email').fill(NEW_EMAIL);
  await tid(page, 'address-save-email').click();
  await until(page, 'the new address waits for its code',
    () => document.querySelector('[data-testid="address-email"]').dataset.state === 'unverified'
      && !document.querySelector('[data-testid="verify-form-email"]').hidden);
  await says(page, 'address-email-status', /A code is on its way to carl\.new@example\.test/);
  run.check(await page.evaluate(() => document.activeElement?.dataset.testid === 'verify-code-email'), 'the code field has the focus');
  await run.accessible(page, 'an address waiting for its code (desktop)');
  await tid(page, 'verify-code-email').fill('12');
  await tid(page, 'verify-submit-email').click();
  await says(page, 'address-email-error', /^Enter the six digits from the message\.$/);
  console.log('cue: read the code sent to carl.new@example.test');
  const code = await waitForCode();
  await tid(page, 'verify-code-email').fill(String((Number(code) + 1) % 1_000_000).padStart(6, '0'));
  await tid(page, 'verify-submit-email').click();
  await says(page, 'address-email-error', /^Not the code sent to your email address; \d tries left\.$/);
  await run.accessible(page, 'a wrong code (desktop)');
  await tid(page, 'verify-code-email').fill(code);
  await tid(page, 'verify-submit-email').click();
  await until(page, 'the address is verified', () => document.querySelector('[data-testid="address-email"]').dataset.state === 'verified');
  await says(page, 'address-email-status', /^Verified\./);
  await says(page, 'address-state-email', /Verified on /);
  run.check(await tid(page, 'verify-form-email').isHidden(), 'no code is asked for any more');
  me = await api('GET', '/api/users/me/', token);
  run.check(me.email === NEW_EMAIL && typeof me.email_verified_at === 'string', `verified over the API: ${me.email} ${me.email_verified_at}`);
  await run.accessible(page, 'an address verified (desktop)');

  run.log('notification choices: "Ticket created" by email switched off, saved, read back');
  const cell = tid(page, 'pref-ticket_created-email');
  run.check(await cell.isChecked(), 'on by default');
  await cell.uncheck();
  await says(page, 'preferences-pending', /^1 unsaved change$/);
  await tid(page, 'preferences-save').click();
  await says(page, 'preferences-status', /^Saved 1 change\./);
  run.check((await text(page, 'preferences-pending')) === '', 'nothing left unsaved');
  let prefs = await api('GET', '/api/notifications/preferences/', token);
  run.check(prefs.types.ticket_created?.email === false, `stored: ${JSON.stringify(prefs.types)}`);
  run.check(prefs.channels.email === true, 'the default stays on');
  await run.accessible(page, 'notification choices saved (desktop)');

  run.log('quiet hours and a daily digest; the same start and end is refused');
  await tid(page, 'quiet-on').check();
  await tid(page, 'quiet-start').fill('22:30');
  await tid(page, 'quiet-end').fill('22:30');
  await tid(page, 'digest-every').selectOption('daily');
  await tid(page, 'digest-at').fill('08:15');
  await tid(page, 'quiet-save').click();
  await says(page, 'quiet-error', /same time/);
  await run.accessible(page, 'quiet hours refused (desktop)');
  await tid(page, 'quiet-end').fill('07:00');
  await tid(page, 'quiet-save').click();
  await says(page, 'quiet-status', /^Saved\. Quiet hours from 22:30 until 07:00; a digest every day at 08:15\.$/);
  run.check((await text(page, 'quiet-error')) === '', 'the error is gone');
  me = await api('GET', '/api/users/me/', token);
  run.check(me.quiet_hours?.start === '22:30' && me.quiet_hours?.end === '07:00', `stored: ${JSON.stringify(me.quiet_hours)}`);
  run.check(me.digest?.every === 'daily' && me.digest?.at === '08:15', `stored: ${JSON.stringify(me.digest)}`);
  await run.accessible(page, 'quiet hours saved (desktop)');

  run.log('devices: one browser is turned off');
  await tid(page, 'device-turn-off').first().click();
  await until(page, 'one device is left', () => document.querySelectorAll('[data-testid="device"]').length === 1);
  await says(page, 'devices-status', /^Turned off: Browser/);
  run.check((await api('GET', '/api/devices/', token)).length === 1, 'the hub has one device left');
  await run.accessible(page, 'a device turned off (desktop)');

  run.log('password: a wrong current password is refused next to the form, then it is changed');
  await tid(page, 'password-current').fill('not my password');
  await tid(page, 'password-new').fill(NEW_PASSWORD);
  await tid(page, 'password-again').fill(NEW_PASSWORD);
  await tid(page, 'password-save').click();
  await says(page, 'password-error', /^This is not your current password\.$/);
  run.check(await tid(page, 'password-current').getAttribute('aria-invalid') === 'true', 'the current password is marked');
  await run.accessible(page, 'a password refused (desktop)');
  await tid(page, 'password-current').fill(users.client.password);
  await tid(page, 'password-new').fill(NEW_PASSWORD);
  await tid(page, 'password-again').fill(NEW_PASSWORD);
  await tid(page, 'password-save').click();
  await says(page, 'password-status', /^Password changed\./);
  run.check((await text(page, 'password-error')) === '', 'no error is left');
  run.check(await status('GET', '/api/users/me/', token) === 401, 'the token from before is refused');
  run.check(await status('POST', '/api/auth/login/', null, users.client) === 401, 'the old password no longer logs in');
  token = (await api('POST', '/api/auth/login/', null, { username: users.client.username, password: NEW_PASSWORD })).access;
  run.check(await status('GET', '/api/users/me/', await pageToken(page)) === 200, 'this page goes on with its new tokens');
  await run.accessible(page, 'password changed (desktop)');

  run.log('at 360×740: every section fits and passes axe');
  await page.setViewportSize({ width: 360, height: 740 });
  await wholePage(run, page, 'settings (phone)');
  await run.screenshot(page, 'settings-phone.png');

  run.log('phone: the profile, an address, a choice by keyboard, quiet hours off, the last device off');
  await tid(page, 'profile-name').fill('Carl C.');
  await tid(page, 'profile-save').click();
  await says(page, 'profile-status', /^Profile saved\.$/);
  run.check((await api('GET', '/api/users/me/', token)).display_name === 'Carl C.', 'the name is stored');
  await run.accessible(page, 'profile saved (phone)');
  await tid(page, 'address-input-email').fill('not an address');
  await tid(page, 'address-save-email').click();
  await says(page, 'address-email-error', /does not look like an email address/);
  run.check(await noSidewaysScroll(page), 'an address refused fits (phone)');
  await run.accessible(page, 'an address refused (phone)');
  await tid(page, 'address-input-email').fill(NEW_EMAIL);
  // The default row: WhatsApp off for every kind; a kind without its own choice follows.
  await tid(page, 'pref-all-whatsapp').focus();
  await page.keyboard.press('Space');
  run.check(!(await tid(page, 'pref-comment_added-whatsapp').isChecked()), 'a kind follows the default');
  await tid(page, 'preferences-save').focus();
  await page.keyboard.press('Enter');
  await says(page, 'preferences-status', /^Saved 1 change\./);
  prefs = await api('GET', '/api/notifications/preferences/', token);
  run.check(prefs.channels.whatsapp === false && prefs.types.ticket_created?.email === false, `stored: ${JSON.stringify(prefs)}`);
  run.check(await noSidewaysScroll(page), 'notification choices fit (phone)');
  await run.accessible(page, 'notification choices saved (phone)');
  await tid(page, 'quiet-on').uncheck();
  await tid(page, 'digest-every').selectOption('off');
  await tid(page, 'quiet-save').click();
  await says(page, 'quiet-status', /^Saved\. No quiet hours; no digest\.$/);
  me = await api('GET', '/api/users/me/', token);
  run.check(me.quiet_hours === null && me.digest === null, `stored: ${JSON.stringify([me.quiet_hours, me.digest])}`);
  await run.accessible(page, 'quiet hours off (phone)');
  await tid(page, 'device-turn-off').click();
  await until(page, 'no device is left', () => !document.querySelector('[data-testid="device"]') && !document.querySelector('[data-testid="devices-empty"]').hidden);
  run.check((await api('GET', '/api/devices/', token)).length === 0, 'the hub has no device left');
  await run.accessible(page, 'no device (phone)');

  run.log('phone: logging out everywhere, by keyboard, ends on the login form and the token is refused');
  const before = await pageToken(page);
  await tid(page, 'logout-everywhere').focus();
  await page.keyboard.press('Enter');
  await until(page, 'the dialog asks first', () => document.querySelector('[data-testid="logout-everywhere-dialog"]').open);
  await run.accessible(page, 'log out everywhere? (phone)');
  await page.keyboard.press('Escape');
  await until(page, 'the dialog is cancelled', () => !document.querySelector('[data-testid="logout-everywhere-dialog"]').open);
  run.check(await page.evaluate(() => document.activeElement?.dataset.testid === 'logout-everywhere'), 'the focus is back on the button');
  run.check(await status('GET', '/api/users/me/', before) === 200, 'cancelled: nothing ended');
  await page.keyboard.press('Enter');
  await until(page, 'the dialog asks again', () => document.querySelector('[data-testid="logout-everywhere-dialog"]').open);
  await tid(page, 'logout-everywhere-confirm').focus();
  await page.keyboard.press('Enter');
  await until(page, 'the login form shows', () => !document.querySelector('[data-testid="login"]').hidden
    && document.querySelector('[data-testid="settings"]').hidden);
  await says(page, 'login-note', /logged out everywhere/);
  run.check(await pageToken(page) === null, 'the tab keeps no token');
  run.check(await status('GET', '/api/users/me/', before) === 401, "the page's token is refused");
  run.check(await status('GET', '/api/users/me/', token) === 401, 'the other login ended too');
  run.check(await noSidewaysScroll(page), 'the login form fits (phone)');
  await run.accessible(page, 'logged out everywhere (phone)');

  run.log('phone: logging in again on the settings page shows the settings');
  await logIn(page, { username: users.client.username, password: NEW_PASSWORD });
  await until(page, 'the settings show again', () => !document.querySelector('[data-testid="settings"]').hidden
    && document.querySelector('[data-testid="profile-name"]').value === 'Carl C.');
  await run.screenshot(page, 'settings-phone-again.png');
});
