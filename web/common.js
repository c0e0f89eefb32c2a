// Helpers shared by the hub's pages: building DOM nodes without HTML parsing, and a login
// session whose REST calls carry the access token and renew it when it runs out.
//
// Every piece of text that comes from a user or from the hub is inserted as a text node, never
// as HTML, so a ticket titled "<img onerror=…>" shows as those characters.

/**
 * Creates an element. `attrs` keys: `class`, `testid` (becomes `data-testid`), `dataset`
 * (an object of `data-*` values), `on<event>` (a listener), anything else is an attribute.
 * Children are nodes or values shown as text.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'testid') node.dataset.testid = value;
    else if (key === 'dataset') {
      for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    } else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.append(child);
    else node.append(document.createTextNode(String(child)));
  }
}

/** The first element with this `data-testid`. */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

/** An error answered by the REST API, with its status and `detail`. */
export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/**
 * A login kept in this tab's sessionStorage (each tab may be a different user), under `key`.
 * Tokens never go into URLs: REST calls send `Authorization: Bearer`, and sockets use the
 * subprotocol.
 */
export class Session {
  constructor(key) {
    this.key = key;
    this.access = null;
    this.refreshToken = null;
    this.renewing = null;
    try {
      const saved = JSON.parse(sessionStorage.getItem(key) || 'null');
      if (saved && saved.access && saved.refresh) {
        this.access = saved.access;
        this.refreshToken = saved.refresh;
      }
    } catch {
      sessionStorage.removeItem(key);
    }
    /** Called when the session ends because its tokens are no longer accepted. */
    this.onExpired = () => {};
  }

  get loggedIn() {
    return Boolean(this.access);
  }

  save() {
    sessionStorage.setItem(this.key, JSON.stringify({ access: this.access, refresh: this.refreshToken }));
  }

  /** Logs in; throws an `ApiError` whose message is the hub's `detail`. */
  async login(username, password) {
    const tokens = await request('POST', '/api/auth/login/', null, { username, password });
    this.access = tokens.access;
    this.refreshToken = tokens.refresh;
    this.save();
  }

  logout() {
    this.access = null;
    this.refreshToken = null;
    sessionStorage.removeItem(this.key);
  }

  /**
   * Trades the refresh token for a new access token. Concurrent callers share one request.
   * Returns the new token, or null (and ends the session) when the refresh token is refused.
   */
  renew() {
    if (!this.renewing) {
      this.renewing = (async () => {
        try {
          if (!this.refreshToken) return null;
          const { access } = await request('POST', '/api/auth/refresh/', null, { refresh: this.refreshToken });
          this.access = access;
          this.save();
          return access;
        } catch (e) {
          if (e instanceof ApiError && (e.status === 401 || e.status === 400)) {
            this.logout();
            this.onExpired();
            return null;
          }
          throw e;
        } finally {
          this.renewing = null;
        }
      })();
    }
    return this.renewing;
  }

  /** A REST call as the logged-in user; a 401 renews the token once and retries. */
  async api(method, path, body) {
    try {
      return await request(method, path, this.access, body);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401 || !this.refreshToken) throw e;
      const access = await this.renew();
      if (!access) throw e;
      return request(method, path, access, body);
    }
  }
}

async function request(method, path, token, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const detail = data && typeof data === 'object' && data.detail ? data.detail : `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, detail, data);
  }
  return data;
}

/** "3 s", "4 min", "2 h 5 min", "3 d" from a number of seconds. */
export function duration(secs) {
  if (typeof secs !== 'number' || !Number.isFinite(secs)) return '–';
  if (secs < 60) return `${secs < 10 ? secs.toFixed(1) : Math.round(secs)} s`;
  const m = Math.floor(secs / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d`;
}

/** A timestamp as local time of day (today) or date and time. */
export function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

/** Wires a login form: calls `done()` after a successful login, shows errors in place. */
export function loginForm(session, done) {
  const form = byTestId('login-form');
  const error = byTestId('login-error');
  const submit = byTestId('login-submit');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    try {
      await session.login(form.elements.username.value.trim(), form.elements.password.value);
      form.elements.password.value = '';
      await done();
    } catch (e) {
      error.textContent = e instanceof ApiError ? e.message : `Cannot reach the hub: ${e.message}`;
    } finally {
      submit.disabled = false;
    }
  });
}
