// The API reference at /api/docs/ renders with nothing from outside the hub: every request the
// page makes to another host is refused and recorded, and the run fails if there is any.
//
// usage: node tests/browser/docs.mjs http://HOST:PORT

import { Run, parseArgs, until } from './lib.mjs';

const { base } = parseArgs('docs.mjs', []);
const run = new Run('docs');

await run.main(async () => {
  const outside = [];
  await run.context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${base}/`) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    outside.push(url);
    return route.abort();
  });

  run.log('open /api/docs/ with the internet refused');
  const page = await run.page('docs', `${base}/api/docs/`);
  await until(page, 'Redoc renders the title and the operations', () => {
    const title = document.querySelector('.api-info h1');
    return title && /tickethub/i.test(title.textContent) && document.body.innerText.includes('/api/tickets/');
  });
  run.check(outside.length === 0, `the page loaded nothing from outside the hub (asked for: ${outside.join(', ')})`);
  await run.screenshot(page, 'docs.png');
});
