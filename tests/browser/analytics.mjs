// The operator page's delivery analytics, in headless Chromium: the figures a hub was given,
// charted as SVG and listed in a table; the filters change the request, the table and the
// charts; a range the hub refuses shows its reason; the page passes axe.
//
//   node tests/browser/analytics.mjs http://127.0.0.1:8080 admin=USER:PASS
//
// The hub holds, all committed within one hour of today (UTC): six `outage` notifications, each
// with an email (three sent, three refused for good by the mail server), two of them read one
// and five minutes after their commit; and one `deploy` notification, in the app only. Exits
// non-zero on the first failed check, with screenshots of every page in target/test-artifacts/.

import { Run, parseArgs, tid, logIn, until } from './lib.mjs';

const { base, users } = parseArgs('analytics.mjs', ['admin']);

/** The table's rows once the panel has loaded the answer to a query matching `pattern`. */
async function loaded(page, what, pattern = '') {
  return until(page, what, (source) => {
    const panel = document.querySelector('[data-testid="analytics-panel"]');
    if (panel.dataset.state !== 'loaded' || !new RegExp(source).test(panel.dataset.query ?? '')) return null;
    return [...document.querySelectorAll('[data-testid="analytics-row"]')].map((tr) => {
      const row = { ...tr.dataset };
      for (const td of tr.querySelectorAll('td[data-value]')) {
        const key = td.dataset.testid.replace(/^analytics-/, '').replace(/-/g, '_');
        row[key] = td.dataset.value === '' ? null : Number(td.dataset.value);
      }
      row.text = tr.textContent;
      return row;
    });
  }, pattern);
}

/** The bars of a chart, as `{series, group, value}`, and its accessible name. */
async function chart(page, id) {
  return page.evaluate((chartId) => {
    const svg = document.querySelector(`svg[data-chart="${chartId}"]`);
    if (!svg) return null;
    const names = (svg.getAttribute('aria-labelledby') || '').split(' ').map((i) => document.getElementById(i)?.textContent);
    return {
      role: svg.getAttribute('role'),
      name: names[0],
      description: names[1],
      bars: [...svg.querySelectorAll('rect[data-series]')].map((r) => ({
        series: r.dataset.series, group: r.dataset.group, value: Number(r.dataset.value),
      })),
    };
  }, id);
}

const find = (rows, type, channel) => rows.find((r) => r.type === type && r.channel === channel);
const bar = (c, series) => c.bars.filter((b) => b.series === series).map((b) => b.value);

await new Run('analytics').main(async (run) => {
  const asked = [];
  run.context.on('request', (r) => {
    if (r.url().includes('/api/admin/analytics')) asked.push(new URL(r.url()).searchParams);
  });
  run.log(`admin ${users.admin.username} logs in on ${base}/admin/`);
  const op = await run.page('operator', `${base}/admin/`);
  await logIn(op, users.admin);
  let rows = await loaded(op, 'the analytics of the last seven days', 'bucket=day');
  console.log(`    ${JSON.stringify(rows.map(({ text, ...r }) => r))}`);
  run.check(asked.length >= 1 && asked[0].get('bucket') === 'day' && !asked[0].has('from'),
    `the first request asks for the default range by day (${asked[0]})`);
  run.check(rows.length === 3, `three rows: outage in-app and by email, deploy in-app (${rows.length})`);
  const inApp = find(rows, 'outage', 'websocket');
  run.check(inApp && inApp.committed === 6 && inApp.read === 2 && inApp.read_5m === 2 && inApp.read_1d === 2,
    `six outages, two read within five minutes (${JSON.stringify(inApp)})`);
  run.check(inApp.time_to_read_p50_s === 60 && inApp.time_to_read_p90_s === 300,
    `time to read: median 60 s, 90th percentile 300 s (${inApp.time_to_read_p50_s}, ${inApp.time_to_read_p90_s})`);
  run.check(inApp.text.includes('1 min') && inApp.text.includes('5 min'), `the times are shown in words (${inApp.text})`);
  const email = find(rows, 'outage', 'email');
  run.check(email && email.committed === 6 && email.pushed === 6 && email.delivered === 3 && email.failed === 3,
    `six mails tried, three sent, three refused (${JSON.stringify(email)})`);
  const deploy = find(rows, 'deploy', 'websocket');
  run.check(deploy && deploy.committed === 1 && deploy.read === 0 && deploy.time_to_read_p50_s === null,
    `one deploy, unread (${JSON.stringify(deploy)})`);
  run.check(rows[0].type === 'deploy' && rows[1].channel === 'websocket' && rows[2].channel === 'email',
    'rows by type, the in-app row first');

  const volume = await chart(op, 'analytics-volume');
  run.check(volume?.role === 'img' && /Committed, delivered and failed/.test(volume.name),
    `the volume chart is an image with a name (${JSON.stringify(volume && { role: volume.role, name: volume.name })})`);
  run.check(String(bar(volume, 'committed')) === '13' && String(bar(volume, 'delivered')) === '3' && String(bar(volume, 'failed')) === '3',
    `one day: 13 committed, 3 delivered, 3 failed (${JSON.stringify(volume.bars)})`);
  run.check(/Committed 13/.test(volume.description), `the chart describes its values (${volume.description})`);
  const within = await chart(op, 'analytics-read-within');
  run.check(String(bar(within, 'read_5m')) === '28.6' && String(bar(within, 'read_1d')) === '28.6',
    `2 of 7 in-app notifications read within 5 min (${JSON.stringify(within.bars)})`);
  const timing = await chart(op, 'analytics-time-to-read');
  run.check(String(bar(timing, 'p50')) === '60' && String(bar(timing, 'p90')) === '300',
    `the time-to-read chart: 60 s and 300 s (${JSON.stringify(timing.bars)})`);
  run.check(timing.bars.every((b) => b.group.endsWith('· outage')), 'the time to read is labelled with its type');
  await tid(op, 'analytics-panel').scrollIntoViewIfNeeded();
  await run.screenshot(op, 'analytics.png');
  await run.accessible(op, 'operator page with delivery analytics');

  run.log('the channel filter: email only');
  await tid(op, 'analytics-filter-channel').selectOption('email');
  rows = await loaded(op, 'the email rows', 'channel=email');
  run.check(asked.at(-1).get('channel') === 'email', `the request asks for email (${asked.at(-1)})`);
  run.check(rows.length === 1 && rows[0].channel === 'email' && rows[0].committed === 6,
    `only the email row (${JSON.stringify(rows)})`);
  const emailVolume = await chart(op, 'analytics-volume');
  run.check(String(bar(emailVolume, 'committed')) === '6' && String(bar(emailVolume, 'failed')) === '3',
    `the volume chart follows: 6 mails, 3 failed (${JSON.stringify(emailVolume.bars)})`);

  run.log('the type filter: deploy, on any channel');
  await tid(op, 'analytics-filter-channel').selectOption('');
  await tid(op, 'analytics-filter-type').fill('deploy');
  await tid(op, 'analytics-submit').click();
  rows = await loaded(op, 'the deploy rows', 'type=deploy');
  run.check(!asked.at(-1).has('channel') && asked.at(-1).get('type') === 'deploy', `the request asks for deploy (${asked.at(-1)})`);
  run.check(rows.length === 1 && rows[0].type === 'deploy', `only deploy (${JSON.stringify(rows)})`);
  const deployVolume = await chart(op, 'analytics-volume');
  run.check(String(bar(deployVolume, 'committed')) === '1', `the volume chart: one (${JSON.stringify(deployVolume.bars)})`);
  const deployTiming = await chart(op, 'analytics-time-to-read');
  run.check(deployTiming.bars.length === 0 && deployTiming.description === 'Nothing to show.',
    `nothing read, no time-to-read bars (${JSON.stringify(deployTiming)})`);

  run.log('per hour');
  await tid(op, 'analytics-filter-type').fill('');
  await tid(op, 'analytics-filter-bucket').selectOption('hour');
  rows = await loaded(op, 'the rows per hour', '^bucket=hour$');
  run.check(asked.at(-1).get('bucket') === 'hour', `the request asks for hours (${asked.at(-1)})`);
  run.check(rows.length === 3 && rows.every((r) => /T\d\d:00:00Z$/.test(r.bucket)), `three rows in one hour (${JSON.stringify(rows.map((r) => r.bucket))})`);
  const hourly = await chart(op, 'analytics-volume');
  run.check(hourly.bars.every((b) => /^\d\d-\d\d \d\d:00$/.test(b.group)), `the chart's groups are hours (${JSON.stringify(hourly.bars)})`);

  run.log('a range that ends before it starts is refused, with the hub\'s reason');
  await tid(op, 'analytics-filter-from').fill('2030-01-02T00:00');
  await tid(op, 'analytics-filter-to').fill('2030-01-01T00:00');
  await tid(op, 'analytics-submit').click();
  const refusal = await until(op, 'the refusal', () => {
    const box = document.querySelector('[data-testid="analytics-error"]');
    return !box.hidden && box.dataset.status === '400' && box.textContent;
  });
  run.check(refusal.includes('from: Must be before `to`.'), `the hub's detail is shown (${refusal})`);
  run.check(asked.at(-1).has('from') && asked.at(-1).has('to'), `the range was asked for (${asked.at(-1)})`);
  await run.accessible(op, 'operator page with a refused analytics range');
});
