// Shared helpers of the browser scenarios: argument parsing, a headless Chromium with a fresh
// profile, checks that fail the run with a screenshot, and logging in through the pages' forms.

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

/** axe-core, the accessibility engine, as a script to evaluate in a page. */
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** Where screenshots go: `target/test-artifacts/` at the repository root. */
export const ARTIFACTS = resolve(here, '../../target/test-artifacts');

/** How long any one expected change on a page may take: 15 s times TICKETHUB_TEST_PATIENCE (a
 * factor, e.g. `3` on a loaded machine), as in the Rust suite and the JS client's tests. */
export const PATIENCE = 15_000 * Number(process.env.TICKETHUB_TEST_PATIENCE ?? 1);

/**
 * Parses `<base-url> role=username:password …`. Exits with a usage message when the base URL or
 * one of the `required` roles is missing.
 */
export function parseArgs(script, required, optional = []) {
  const [base, ...rest] = process.argv.slice(2);
  const users = {};
  for (const arg of rest) {
    const m = /^([a-z]+)=([^:]+):(.*)$/.exec(arg);
    if (!m) usage(script, required, optional, `cannot read ${JSON.stringify(arg)}`);
    users[m[1]] = { username: m[2], password: m[3] };
  }
  if (!base || !/^https?:\/\//.test(base)) usage(script, required, optional, 'the first argument is the base URL');
  for (const role of required) if (!users[role]) usage(script, required, optional, `missing ${role}=USER:PASSWORD`);
  return { base: base.replace(/\/$/, ''), users };
}

function usage(script, required, optional, why) {
  const roles = [...required.map((r) => `${r}=USER:PASSWORD`), ...optional.map((r) => `[${r}=USER:PASSWORD]`)];
  console.error(`${why}\nusage: node tests/browser/${script} http://HOST:PORT ${roles.join(' ')}`);
  process.exit(64);
}

/**
 * A scenario run: one Chromium with a fresh profile, pages that are watched for script errors
 * and content-security-policy violations, and numbered steps in the output.
 */
export class Run {
  constructor(name) {
    this.name = name;
    this.pages = new Map();
    this.problems = [];
    this.step = 0;
  }

  async start() {
    mkdirSync(ARTIFACTS, { recursive: true });
    this.profile = mkdtempSync(join(tmpdir(), 'tickethub-chromium-'));
    this.context = await chromium.launchPersistentContext(this.profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      viewport: { width: 1366, height: 800 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    this.context.setDefaultTimeout(PATIENCE);
    // The persistent profile opens with one blank tab; scenarios open their own.
    for (const p of this.context.pages()) await p.close();
    // Record every WebSocket a page opens (URL and subprotocols), and keep a handle to close
    // it, without changing how the page uses it.
    await this.context.addInitScript(() => {
      const Native = window.WebSocket;
      window.__sockets = [];
      window.WebSocket = class extends Native {
        constructor(url, protocols) {
          super(url, protocols);
          window.__sockets.push({ url: String(url), protocols: [].concat(protocols ?? []), socket: this });
        }
      };
      window.__loadedAt = Date.now();
    });
  }

  /** Opens a page named `name` at `url` and watches it. */
  async page(name, url) {
    const page = await this.context.newPage();
    page.on('pageerror', (e) => this.problems.push(`${name}: uncaught ${e.message}`));
    const seen = new Set();
    page.on('console', (m) => {
      const text = m.text();
      if (/Content Security Policy|Refused to/i.test(text)) this.problems.push(`${name}: ${text}`);
      // Each distinct message once: a page that polls would repeat its errors every second.
      const line = `  [${name} console.${m.type()}] ${text}`;
      if ((m.type() === 'error' || process.env.BROWSER_CONSOLE) && !seen.has(line)) {
        seen.add(line);
        console.log(line);
      }
    });
    await page.goto(url);
    this.pages.set(name, page);
    return page;
  }

  /** Prints a step. */
  log(text) {
    this.step += 1;
    console.log(`${String(this.step).padStart(2)}. ${text}`);
  }

  /** Fails the run unless `cond` holds. */
  check(cond, what) {
    if (!cond) throw new Error(`check failed: ${what}`);
  }

  /**
   * Checks `page` as it is now against WCAG 2.2 A and AA with axe-core, and fails the run on any
   * serious or critical violation, naming the rule and the elements. `state` names the page's
   * state in the message.
   */
  async accessible(page, state) {
    // Evaluated over the DevTools protocol, so the pages' content security policy (no inline
    // scripts) stays as it is.
    if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE_SOURCE);
    const violations = await page.evaluate(async () => {
      const result = await window.axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] },
      });
      return result.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.help}; ${v.nodes.slice(0, 5).map((n) => n.target.join(' ')).join(', ')}`);
    });
    this.check(violations.length === 0, `${state}: no serious or critical accessibility violations:\n  ${violations.join('\n  ')}`);
    console.log(`    accessible: ${state}`);
  }

  /** Saves a screenshot of `page` as `target/test-artifacts/<file>`. */
  async screenshot(page, file) {
    const path = join(ARTIFACTS, file);
    await page.screenshot({ path, fullPage: false });
    console.log(`    screenshot: ${path}`);
    return path;
  }

  /** Runs the scenario: exits 0 when it passes, 1 (after screenshots of every page) when not. */
  async main(scenario) {
    // A scenario is a few dozen steps, each waiting at most PATIENCE: twelve of them (180 s
    // unscaled) bound the whole run, inside the sixteen the Rust side gives the script.
    const limit = 12 * PATIENCE;
    const deadline = setTimeout(() => {
      console.error(`${this.name}: gave up after ${limit / 1000} s`);
      process.exit(1);
    }, limit);
    let failed = null;
    try {
      await this.start();
      await scenario(this);
      if (this.problems.length) throw new Error(`the pages reported problems:\n  ${this.problems.join('\n  ')}`);
    } catch (e) {
      failed = e;
      console.error(`\nFAILED: ${e.stack || e}`);
      for (const [name, page] of this.pages) {
        try {
          await this.screenshot(page, `${this.name}-failure-${name}.png`);
        } catch {
          // The page may be gone; the other screenshots still help.
        }
      }
    } finally {
      clearTimeout(deadline);
      if (this.context) await this.context.close().catch(() => {});
      if (this.profile) rmSync(this.profile, { recursive: true, force: true });
    }
    if (!failed) console.log(`\n${this.name}: all checks passed`);
    process.exit(failed ? 1 : 0);
  }
}

/** Where the README's screenshots live. */
const DOC_SHOTS = resolve(here, '../../docs/screenshots');

/**
 * Saves a screenshot of `page` for the README as `target/test-artifacts/<file>`, and, when
 * `TICKETHUB_DOC_SCREENSHOTS=1`, as `docs/screenshots/<file>` too (so that an ordinary test run
 * leaves the committed ones alone).
 */
export async function docScreenshot(page, file) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, file), fullPage: false });
  if (process.env.TICKETHUB_DOC_SCREENSHOTS === '1') {
    mkdirSync(DOC_SHOTS, { recursive: true });
    await page.screenshot({ path: join(DOC_SHOTS, file), fullPage: false });
    console.log(`    screenshot: docs/screenshots/${file}`);
  } else {
    console.log(`    screenshot: ${join(ARTIFACTS, file)}`);
  }
}

/**
 * A REST caller for the hub at `base`: `api(method, path, token, body)` answers the JSON body,
 * and throws with the status and body on anything but 2xx.
 */
export function restClient(base) {
  return async (method, path, token, body) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
}

/** The locator of `[data-testid=id]` inside `scope` (a page or a locator). */
export function tid(scope, id) {
  return scope.locator(`[data-testid="${id}"]`);
}

/** Logs in through a page's login form. */
export async function logIn(page, user) {
  await tid(page, 'login-username').fill(user.username);
  await tid(page, 'login-password').fill(user.password);
  await tid(page, 'login-submit').click();
}

/** Waits until `fn` (run in the page with `arg`) returns a truthy value, and returns it. */
export async function until(page, what, fn, arg) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: PATIENCE, polling: 50 });
    return handle.jsonValue();
  } catch (e) {
    throw new Error(`timed out waiting for: ${what}`, { cause: e });
  }
}
