// The demo page's sign-up on a hub whose registration is closed (`--registration closed`): the
// form says so and whom to ask, instead of a bare error.
//
//   node tests/browser/signup-closed.mjs http://127.0.0.1:8080

import { Run, parseArgs, tid, until } from './lib.mjs';

const { base } = parseArgs('signup-closed.mjs', []);

await new Run('signup-closed').main(async (run) => {
  run.log('a visitor tries to sign up on a hub that takes no sign-ups');
  const page = await run.page('visitor', `${base}/`);
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
