// The operator page's escalation steps and "why wasn't … notified?", in headless Chromium, on a
// hub whose routing file escalates every ticket assignment with one step, by email, ten minutes
// later.
//
//   node tests/browser/escalations.mjs http://127.0.0.1:8080 admin=USER:PASS client=USER:PASS \
//     developer=USER:PASS outsider=USER:PASS
//
// The admin, the client and the developer share a project; the outsider does not. A global
// on-call schedule `primary` has the developer on call. The client
// has a ticket the admin opened and nobody is assigned yet. Once the page shows no pending step,
// the script prints the line `cue: assign the ticket now` and waits for the step of the
// developer's assignment, which whoever runs the script makes (over REST, as the admin). Exits
// non-zero on the first failed check, with screenshots of every page in target/test-artifacts/.

import { Run, parseArgs, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('escalations.mjs', ['admin', 'client', 'developer', 'outsider']);

/** The line that asks for the assignment. */
const CUE = 'cue: assign the ticket now';

const text = async (locator) => (await locator.textContent()).trim();

/** The events of the trace shown, once it is the trace of `username`. */
async function traced(page, username) {
  return until(page, `the trace for ${username}`, (name) => {
    const result = document.querySelector('[data-testid="trace-result"]');
    if (result.hidden || result.dataset.state !== 'loaded') return null;
    if (document.querySelector('[data-testid="trace-username"]')?.textContent !== name) return null;
    return [...document.querySelectorAll('[data-testid="trace-event"]')].map((li) => ({
      type: li.dataset.type,
      recipient: li.dataset.recipient === 'true',
      reason: li.dataset.reason,
      verdict: li.querySelector('[data-testid="trace-recipient"]').textContent,
      explanation: li.querySelector('[data-testid="trace-explanation"]').textContent,
      channels: [...li.querySelectorAll('[data-testid="trace-channel"]')].map((c) => c.textContent),
      timeline: Boolean(li.querySelector('[data-testid="trace-timeline-button"]')),
    }));
  }, username);
}

/** Traces the ticket in the form for `user` (an id or a username) by submitting the form. */
async function trace(page, user) {
  await tid(page, 'trace-user').fill(user);
  await tid(page, 'trace-submit').click();
}

/** Waits for the trace's error message with this HTTP status, and returns it. */
async function traceError(page, status) {
  return until(page, `a ${status} message under the trace form`, (s) => {
    const box = document.querySelector('[data-testid="trace-error"]');
    return !box.hidden && box.dataset.status === String(s) && box.textContent;
  }, status);
}

/** The lines of a loaded timeline inside `scope`, as `{event, text}`. */
async function timelineLines(page, what, selector) {
  return until(page, what, (sel) => {
    const box = document.querySelector(sel);
    if (!box || box.dataset.state !== 'loaded') return null;
    return [...box.querySelectorAll('[data-testid="timeline-event"]')].map((li) => ({
      event: li.dataset.event,
      text: li.querySelector('[data-testid="timeline-text"]').textContent,
    }));
  }, selector);
}

function line(lines, event, pattern) {
  return lines.find((l) => l.event === event && pattern.test(l.text));
}

await new Run('escalations').main(async (run) => {
  run.log(`admin ${users.admin.username} logs in on ${base}/admin/`);
  const op = await run.page('operator', `${base}/admin/`);
  await logIn(op, users.admin);
  await until(op, 'the escalation actor in the tree',
    () => document.querySelector('[data-testid="node"][data-name="escalation"] [data-testid="escalation-pending"]'));
  await until(op, 'the escalation steps are loaded',
    () => document.querySelector('[data-testid="escalations-panel"]').dataset.state === 'loaded');
  run.check(await tid(op, 'escalations-empty').isVisible(), 'no step is pending yet');
  run.check((await tid(op, 'escalation-row').count()) === 0, 'the list of steps is empty');
  const escalationNode = op.locator('[data-testid="node"][data-name="escalation"]');
  run.check(await text(tid(escalationNode, 'escalation-pending')) === '0', 'the escalation actor has nothing pending');
  run.check(await text(tid(escalationNode, 'escalation-policies')) === '1', 'the escalation actor counts one policy');
  const loadedAt = await op.evaluate(() => window.__loadedAt);

  run.log('the on-call panel names who is on call on the schedule `primary`, and why');
  const oncall = await until(op, 'the on-call schedules are loaded', () => {
    const r = document.querySelector('[data-testid="oncall-row"][data-schedule="primary"]');
    if (!r) return null;
    const cell = (id) => r.querySelector(`[data-testid="${id}"]`).textContent;
    return { who: cell('oncall-who'), why: cell('oncall-why'), until: cell('oncall-until') };
  });
  run.check(oncall.who.startsWith(users.developer.username), `the developer is on call (${oncall.who})`);
  run.check(oncall.why === 'layer 1', `because of layer 1 (${oncall.why})`);
  run.check(oncall.until !== '–', `until the next handoff (${oncall.until})`);
  run.check(await text(tid(op, 'oncall-count')) === '1', 'the panel counts one schedule');

  run.log('the admin assigns the developer over REST; the step appears without a reload');
  console.log(CUE);
  const row = await until(op, 'a pending step in the list', () => {
    const r = document.querySelector('[data-testid="escalation-row"]');
    if (!r) return null;
    const cell = (id) => r.querySelector(`[data-testid="${id}"]`).textContent;
    return {
      ...r.dataset,
      user: cell('escalation-user'),
      due: cell('escalation-due'),
      channels: cell('escalation-channels'),
      notification: cell('escalation-notification'),
    };
  });
  console.log(`    ${JSON.stringify(row)}`);
  run.check(row.policy === 'critical-assignments', `the step's policy is shown (${row.policy})`);
  run.check(row.step === '1' && row.status === 'PENDING', `step 1 is pending (${row.step}, ${row.status})`);
  run.check(row.user.includes(users.developer.username), `the step names the developer (${row.user})`);
  run.check(/^Email/.test(row.channels) && row.channels.includes('unless read'), `the step's channels are shown (${row.channels})`);
  run.check(/in (9|10) min/.test(row.due), `the step is due in ten minutes (${row.due})`);
  run.check(row.notification === `#${row.notificationId}`, `the step's notification is shown (${row.notification})`);
  await until(op, 'the escalation actor counts the pending step', () => document.querySelector(
    '[data-testid="node"][data-name="escalation"] [data-testid="escalation-pending"]').textContent === '1');
  run.check(await text(tid(op, 'escalations-count')) === '1', 'the section counts one step');
  run.check(!(await tid(op, 'escalations-empty').isVisible()), 'the empty message is gone');
  run.check((await op.evaluate(() => window.__loadedAt)) === loadedAt, 'the operator page was not reloaded');
  await escalationNode.scrollIntoViewIfNeeded();
  await run.screenshot(op, 'escalations-tree.png');
  await tid(op, 'escalations-panel').scrollIntoViewIfNeeded();

  run.log('the step\'s notification shows its timeline: the assignment, then the step scheduled');
  await tid(op, 'escalation-notification').first().click();
  const stepLines = await timelineLines(op, 'the timeline of the step\'s notification',
    `[data-testid="escalation-timeline-panel"][data-notification-id="${row.notificationId}"]`);
  run.check(stepLines[0]?.event === 'committed', `the commit comes first (${JSON.stringify(stepLines)})`);
  run.check(line(stepLines, 'committed', new RegExp(`^Committed: assign by ${users.admin.username}$`)),
    `the commit names the action and the admin (${JSON.stringify(stepLines)})`);
  run.check(line(stepLines, 'escalation_scheduled', /^Escalation step 1 \(critical-assignments\) scheduled for /),
    `the step is in the timeline (${JSON.stringify(stepLines)})`);
  await run.screenshot(op, 'escalations-pending.png');

  run.log('Trace on the step: the developer was notified of the assignment');
  await tid(op, 'escalation-trace').first().click();
  const forDeveloper = await traced(op, users.developer.username);
  console.log(`    ${JSON.stringify(forDeveloper)}`);
  const assigned = forDeveloper.find((e) => e.type === 'ticket_assigned');
  run.check(assigned?.recipient && assigned.verdict === 'notified', 'the developer was a recipient of ticket_assigned');
  run.check(assigned.explanation.includes('was a recipient as newly_assigned'), `the explanation names the audience (${assigned.explanation})`);
  run.check(assigned.channels.some((c) => c.startsWith('Email')), `the email channel is listed (${assigned.channels})`);
  run.check(assigned.timeline, 'the notification\'s timeline can be opened from the trace');
  const created = forDeveloper.find((e) => e.type === 'ticket_created');
  run.check(created && !created.recipient && created.reason === 'not_routed', `ticket_created went to the admins only (${JSON.stringify(created)})`);
  run.check((await tid(op, 'trace-result').locator('i').count()) === 0, 'the ticket title\'s markup is shown as text');
  await op.locator('[data-testid="trace-event"][data-type="ticket_assigned"] [data-testid="trace-timeline-button"]').click();
  const traceLines = await timelineLines(op, 'the timeline under the traced assignment',
    '[data-testid="trace-event"][data-type="ticket_assigned"] [data-testid="trace-timeline"]');
  run.check(line(traceLines, 'escalation_scheduled', /^Escalation step 1 /), `the traced notification's timeline shows the step (${JSON.stringify(traceLines)})`);

  run.log(`the outsider ${users.outsider.username}, not a member, was left out of every event`);
  await trace(op, users.outsider.username);
  const forOutsider = await traced(op, users.outsider.username);
  run.check(forOutsider.length >= 3, `every event is listed (${forOutsider.length})`);
  for (const e of forOutsider) {
    run.check(!e.recipient && e.verdict === 'not notified' && e.reason === 'not_a_member',
      `${e.type}: not notified, not a member (${JSON.stringify(e)})`);
    run.check(e.explanation.startsWith(`${users.outsider.username} is not a member of project`),
      `${e.type}: the explanation says why (${e.explanation})`);
  }
  run.check((await text(tid(op, 'trace-membership'))).startsWith('not a member of'), 'the summary says the outsider is not a member');
  await run.accessible(op, 'operator page with a trace and an escalation step');
  await run.screenshot(op, 'escalations-trace.png');

  run.log(`the client ${users.client.username} was not told of the ticket they created, but of its opening`);
  await trace(op, users.client.username);
  const forClient = await traced(op, users.client.username);
  const own = forClient.find((e) => e.type === 'ticket_created');
  run.check(own && !own.recipient && own.reason && own.explanation.length > 0,
    `ticket_created: the client was not a recipient, with the reason (${JSON.stringify(own)})`);
  const opened = forClient.find((e) => e.type === 'ticket_opened');
  run.check(opened?.recipient && opened.explanation.includes('as creator'), `ticket_opened reached the creator (${JSON.stringify(opened)})`);

  run.log('the hub\'s refusals show as messages: a ticket that is neither an id nor a key, a user nobody has');
  const ticket = await tid(op, 'trace-ticket').inputValue();
  const key = await text(tid(op, 'trace-ticket-key'));
  await tid(op, 'trace-ticket').fill('abc');
  await trace(op, users.client.username);
  const bad = await traceError(op, 400);
  run.check(bad.includes('ticket: A ticket id or key (like WEB-5) is required.'), `the 400 shows the hub's detail (${bad})`);
  run.check(!(await tid(op, 'trace-result').isVisible()), 'no stale trace is shown under the error');
  await tid(op, 'trace-ticket').fill(ticket);
  await trace(op, 'nobody-by-this-name');
  const missing = await traceError(op, 404);
  run.check(/^Not found: .*nobody-by-this-name/.test(missing), `the 404 names what was asked (${missing})`);
  run.log(`the ticket is traced by its key, ${key}, as the pages show it`);
  await tid(op, 'trace-ticket').fill(key);
  await trace(op, users.developer.username);
  await traced(op, users.developer.username);
  run.check(!(await tid(op, 'trace-error').isVisible()), 'a trace that works clears the message');
  run.check((await text(tid(op, 'trace-ticket-key'))) === key, `the trace is of ${key}`);
});
