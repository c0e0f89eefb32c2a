// On-call schedules on the administration page at `/manage/`, in headless Chromium at
// 1280×800 and 360×740: an admin makes a schedule of two people handing over daily (a schedule
// with nobody is refused in words), sees who is on call now, puts the other person on call
// instead for a while (an override that ends before it starts is refused), sees them on call,
// takes the override off, and deletes the schedule behind a dialog; the hub's API agrees at
// each step. Nothing scrolls sideways, and axe-core checks every new state.
//
//   node tests/browser/oncall-admin.mjs http://127.0.0.1:8080 client=USER:PASS admin=USER:PASS developer=USER:PASS

import { Run, parseArgs, restClient, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('oncall-admin.mjs', ['client', 'admin', 'developer']);
const api = restClient(base);

const noSidewaysScroll = (page) => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

async function check(run, page, state) {
  run.check(await noSidewaysScroll(page), `${state}: nothing scrolls sideways`);
  await run.accessible(page, state);
}

const schedule = (page, name) => page.locator(`[data-testid="schedule"][data-name="${name}"]`);

await new Run('oncall-admin').main(async (run) => {
  const adminToken = (await api('POST', '/api/auth/login/', null, users.admin)).access;
  const admin = await api('GET', '/api/users/me/', adminToken);
  const devToken = (await api('POST', '/api/auth/login/', null, users.developer)).access;
  const dev = await api('GET', '/api/users/me/', devToken);

  for (const [width, height, label] of [[1280, 800, 'desktop'], [360, 740, 'phone']]) {
    const name = `primary-${label}`;
    run.log(`${label}: the admin makes a schedule of two people, handing over daily`);
    const page = await run.page(`admin-${label}`, `${base}/manage/#on-call`);
    await page.setViewportSize({ width, height });
    await logIn(page, users.admin);
    await until(page, 'the on-call section is loaded', () => !document.querySelector('[data-testid="manage"]').hidden
      && document.querySelectorAll('[data-testid="schedule-person"]').length >= 3);
    await tid(page, 'add-schedule-box').locator('summary').click();
    await tid(page, 'add-schedule-name').fill(name);
    await tid(page, 'add-schedule-submit').click();
    const refused = await until(page, 'a schedule with nobody is refused', () => document.querySelector('[data-testid="add-schedule-error"]').textContent);
    run.check(refused === 'Choose who takes the shifts.', `refused in words (${refused})`);
    await check(run, page, `a refused schedule (${label})`);
    await tid(page, 'add-schedule-zone').fill('Europe/Berlin');
    const people = tid(page, 'schedule-person');
    for (const id of [admin.id, dev.id]) await people.and(page.locator(`[value="${id}"]`)).check();
    await tid(page, 'add-schedule-submit').click();
    await until(page, 'the schedule is listed', (n) => !!document.querySelector(`[data-testid="schedule"][data-name="${n}"]`), name);
    const now = await schedule(page, name).getByTestId('schedule-now').textContent();
    run.check(/^On call now: .+ until /.test(now), `who is on call now, and until when (${now})`);
    const made = (await api('GET', `/api/oncall/schedules/${name}/`, adminToken));
    run.check(made.time_zone === 'Europe/Berlin' && made.layers[0].users.join() === `${admin.id},${dev.id}` && made.layers[0].rotation === 'daily',
      `the hub has it as made (${JSON.stringify(made.layers)})`);
    await check(run, page, `a schedule (${label})`);

    run.log(`${label}: an override puts the developer on call instead, then is taken off`);
    const row = schedule(page, name);
    await row.getByTestId('override-user').selectOption(String(dev.id));
    await row.getByTestId('override-to').fill('2000-01-01T00:00');
    await row.getByTestId('override-submit').click();
    const wrong = await until(page, 'an override ending before it starts is refused',
      (n) => document.querySelector(`[data-testid="schedule"][data-name="${n}"] [data-testid="row-error"]`)?.textContent, name);
    run.check(wrong === 'It must end after it starts.', `refused in words (${wrong})`);
    const later = new Date(Date.now() + 4 * 3600 * 1000);
    const local = new Date(later.getTime() - later.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    await row.getByTestId('override-to').fill(local);
    await row.getByTestId('override-submit').click();
    await until(page, 'the override is listed', (n) => document.querySelectorAll(`[data-testid="schedule"][data-name="${n}"] [data-testid="override"]`).length === 1, name);
    const onCall = await api('GET', `/api/oncall/schedules/${name}/now/`, adminToken);
    run.check(onCall.user_id === dev.id && onCall.source === 'override', `the developer is on call by the override (${JSON.stringify(onCall)})`);
    const shown = await schedule(page, name).getByTestId('schedule-now').textContent();
    run.check(shown.includes('(an override)'), `the page says so (${shown})`);
    await check(run, page, `an override (${label})`);
    await schedule(page, name).scrollIntoViewIfNeeded();
    await run.screenshot(page, `oncall-admin-${label}.png`);
    await schedule(page, name).getByTestId('override-delete').click();
    await until(page, 'the override is taken off', (n) => document.querySelectorAll(`[data-testid="schedule"][data-name="${n}"] [data-testid="override"]`).length === 0, name);
    run.check((await api('GET', `/api/oncall/schedules/${name}/overrides/`, adminToken)).length === 0, 'the hub took it off');

    run.log(`${label}: the schedule is deleted behind a dialog`);
    await schedule(page, name).getByTestId('schedule-delete').click();
    await run.accessible(page, `deleting a schedule (${label})`);
    await tid(page, 'confirm-ok').click();
    await until(page, 'the schedule is gone', (n) => !document.querySelector(`[data-testid="schedule"][data-name="${n}"]`), name);
    const gone = await fetch(`${base}/api/oncall/schedules/${name}/`, { headers: { authorization: `Bearer ${adminToken}` } });
    run.check(gone.status === 404, 'the hub deleted it');
    await check(run, page, `no schedule (${label})`);
  }
});
