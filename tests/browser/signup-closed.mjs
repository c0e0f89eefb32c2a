// The demo page on a hub whose registration is closed (`--registration closed`): the login page
// offers no sign-up; and a sign-up sent anyway (a page loaded before the hub closed it) is
// answered with what to do instead of a bare error.
//
//   node tests/browser/signup-closed.mjs http://127.0.0.1:8080

import { Run, parseArgs, tid, until } from './lib.mjs';

const { base } = parseArgs('signup-closed.mjs', []);

await new Run('signup-closed').main(async (run) => {
  run.log('the login page of a hub that takes no sign-ups offers none');
  const page = await run.page('visitor', `${base}/`);
  await until(page, 'the login form', () => !document.querySelector('[data-testid="login"]').hidden);
  await until(page, 'the page asked the hub whether it takes sign-ups',
    () => document.querySelector('[data-testid="signup-offer"]').dataset.checked === 'true');
  run.check(!(await tid(page, 'signup-offer').isVisible()), 'no "Create an account" while registration is closed');
  await run.accessible(page, 'login without sign-up');

  run.log('a sign-up sent anyway says sign-up is closed and whom to ask');
  await page.evaluate(() => { document.querySelector('[data-testid="signup-offer"]').hidden = false; });
  await tid(page, 'signup-link').click();
  await tid(page, 'signup-username').fill('hopeful');
  await tid(page, 'signup-password').fill('hopeful-password');
  await tid(page, 'signup-submit').click();
  const said = await until(page, 'the sign-up error', () => document.querySelector('[data-testid="signup-error"]').textContent);
  run.check(/closed/i.test(said) && /ask an admin/i.test(said), `the page says sign-up is closed and whom to ask (${said})`);
  run.check(await tid(page, 'signup-form').isVisible(), 'the form stays');
  await run.accessible(page, 'sign-up refused');
  await tid(page, 'login-link').click();
  run.check(await tid(page, 'login-form').isVisible(), 'the login form is one click back');
});
