// Starts a real hub (the `tickethub` binary) for the client's tests, on SQLite in a fresh
// folder, with the demo accounts; can kill it with SIGKILL and start it again on the same
// port and database.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');

/** The hub binary: `TICKETHUB_BIN`, else the workspace's debug build. */
export function hubBinary() {
  const bin = process.env.TICKETHUB_BIN ?? join(root, 'target/debug/tickethub');
  if (!existsSync(bin)) {
    throw new Error(`no hub binary at ${bin}: run \`cargo build\` first, or set TICKETHUB_BIN`);
  }
  return bin;
}

/** How long any awaited event may take: 15 s times TICKETHUB_TEST_PATIENCE. */
export const patience = 15000 * Number(process.env.TICKETHUB_TEST_PATIENCE ?? 1);

export class Hub {
  constructor(args = []) {
    this.dir = mkdtempSync(join(tmpdir(), 'tickethub-js-'));
    this.args = args;
    this.port = 0;
    this.proc = null;
  }

  /** Starts the hub (on the port it had, after the first start) and waits until it serves. */
  async start() {
    const db = `sqlite://${join(this.dir, 'hub.db')}`;
    const proc = spawn(hubBinary(), [
      'serve', '--demo', '--bind', `127.0.0.1:${this.port}`, '--database-url', db,
      '--mail-outbox-dir', join(this.dir, 'mail'),
      // A send claimed by a hub that was then killed lets its retry run after a second.
      '--idempotency-lease', '1', ...this.args,
    ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
    this.proc = proc;
    let stderr = '';
    proc.stderr.on('data', (d) => {
      stderr += d;
    });
    const lines = createInterface({ input: proc.stdout });
    const address = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`the hub did not start: ${stderr}`)), patience);
      lines.on('line', (line) => {
        const m = line.match(/http:\/\/([0-9.]+):(\d+)/);
        if (m) {
          clearTimeout(timer);
          ok({ host: m[1], port: Number(m[2]) });
        }
      });
      proc.on('exit', (code) => {
        clearTimeout(timer);
        fail(new Error(`the hub exited with ${code}: ${stderr}`));
      });
    });
    this.port = address.port;
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  /** SIGKILL: no goodbye to anyone. */
  async kill9() {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const gone = new Promise((ok) => proc.once('exit', ok));
    proc.kill('SIGKILL');
    await gone;
  }

  /** Starts again on the same port and database, retrying while the port is still held. */
  async restart() {
    const until = Date.now() + patience;
    for (;;) {
      try {
        return await this.start();
      } catch (e) {
        if (Date.now() > until || !/address|in use|bind/i.test(String(e.message))) throw e;
        await new Promise((ok) => setTimeout(ok, 100));
      }
    }
  }

  async stop() {
    const proc = this.proc;
    this.proc = null;
    if (proc && proc.exitCode === null) {
      const gone = new Promise((ok) => proc.once('exit', ok));
      proc.kill('SIGTERM');
      await gone;
    }
  }

  cleanup() {
    rmSync(this.dir, { recursive: true, force: true });
  }

  async post(path, body, token, headers = {}) {
    const res = await fetch(`${this.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  /**
   * Sends one notification to `userId` as `token`'s user, retrying while the hub is down (a
   * patience at most). The retries carry the first try's Idempotency-Key, as a careful caller's
   * would: a send the hub committed but was killed before answering is committed once.
   */
  async notify(token, userId, title) {
    const end = Date.now() + patience;
    const key = randomUUID();
    for (;;) {
      try {
        const { status, body } = await this.post('/api/notifications/send/', { user_ids: [userId], title, message: title }, token, { 'idempotency-key': key });
        if (status !== 201) throw new Error(`send answered ${status}: ${JSON.stringify(body)}`);
        return;
      } catch (e) {
        if (Date.now() > end) throw e;
        await new Promise((ok) => setTimeout(ok, 50));
      }
    }
  }

  async get(path, token) {
    const res = await fetch(`${this.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: await res.json() };
  }

  /** Logs in; answers `{access, refresh}`. */
  async login(username) {
    const { status, body } = await this.post('/api/auth/login/', { username, password: `${username}-demo` });
    if (status !== 200) throw new Error(`login ${username}: ${status} ${JSON.stringify(body)}`);
    return body;
  }

  /** A token source for the client: rotates the refresh token on every call. */
  tokens(username) {
    let pair = null;
    const source = async () => {
      source.calls += 1;
      if (pair) {
        const { status, body } = await this.post('/api/auth/refresh/', { refresh: pair.refresh });
        if (status === 200) {
          pair = body;
          return pair.access;
        }
        if (status !== 401) throw new Error(`refresh: ${status}`);
      }
      pair = await this.login(username);
      return pair.access;
    };
    source.calls = 0;
    return source;
  }
}

/** Waits until `cond()` holds, polling every 20 ms; fails after the patience (plus `extra` ms
 * for a wait the hub itself schedules). */
export async function until(what, cond, extra = 0) {
  const end = Date.now() + patience + extra;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((ok) => setTimeout(ok, 20));
  }
}
