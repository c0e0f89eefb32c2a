// The service worker of the pages at `/`: it shows the hub's Web Push messages as system
// notifications, and a click on one opens its link in a window of the hub (or a new one).
//
// A push carries JSON: `{title, body, url, notification_id, seq, type, priority}`, or only
// `{title, notification_id, seq}` when the hub sends minimal pushes. A page carries an
// Acknowledge button too (`actions`), whose click posts the push's one-time token (`ack`) to
// the hub, which marks the page read and stops its escalation. It is served at `/sw.js` so
// that its scope is the whole site.

const ORIGIN = self.location.origin;

self.addEventListener('install', () => {
  // A new version takes over at once: it holds no state worth waiting for.
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  // Control the pages already open, so that a click can bring one of them to the link.
  event.waitUntil(self.clients.claim());
});

/** A push's data as an object: its JSON, or its text as the body. */
function readPush(data) {
  if (!data) return {};
  try {
    const value = data.json();
    return value && typeof value === 'object' ? value : { body: String(value) };
  } catch {
    return { body: data.text() };
  }
}

/** Shows the notification a push describes. */
function showPush(push) {
  const id = push.notification_id ?? push.seq ?? 'message';
  return self.registration.showNotification(String(push.title || 'tickethub'), {
    body: push.body ? String(push.body) : '',
    tag: `tickethub-${id}`,
    data: { url: push.url ?? null, notification_id: push.notification_id ?? null, ack: push.ack ?? null },
    actions: Array.isArray(push.actions) ? push.actions.slice(0, 2) : [],
    icon: '/assets/icon.svg',
    requireInteraction: push.priority === 'CRITICAL',
  });
}

self.addEventListener('push', (event) => {
  event.waitUntil(showPush(readPush(event.data)));
});

/**
 * The address a notification's link opens, absolute: a link relative to the hub is resolved
 * against it, and the hub's ticket links (`/tickets/5/`) open that ticket in the workspace
 * (`/#/tickets/5`). Anything but the hub's own pages or an http(s) URL opens the workspace.
 */
function linkTarget(url) {
  const home = `${ORIGIN}/`;
  if (typeof url !== 'string' || !url) return home;
  let target;
  try {
    target = new URL(url, home);
  } catch {
    return home;
  }
  if (target.origin === ORIGIN) {
    const ticket = /^\/tickets\/([^/]+)\/?$/.exec(target.pathname);
    if (ticket) return `${home}#/tickets/${ticket[1]}`;
    return target.href;
  }
  return target.protocol === 'https:' || target.protocol === 'http:' ? target.href : home;
}

/**
 * Opens `url` (as `linkTarget` reads it): in a window of the hub already open, brought to the
 * front (the workspace rather than another page), or else in a new one. Answers the window.
 */
async function openLink(url) {
  const target = linkTarget(url);
  if (new URL(target).origin === ORIGIN) {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const ours = windows.filter((c) => new URL(c.url).origin === ORIGIN);
    ours.sort((a, b) => rank(b) - rank(a));
    for (const client of ours) {
      try {
        const focused = await client.focus();
        // Only a page this worker controls may be navigated; another is only brought forward.
        const moved = focused.url === target ? focused : await focused.navigate(target);
        if (moved) return moved;
      } catch {
        // Try the next window, and at last a new one.
      }
    }
  }
  return self.clients.openWindow(target);
}

/** Which of the hub's windows a click prefers: the workspace, then any focused one. */
function rank(client) {
  const path = new URL(client.url).pathname;
  return (path === '/' ? 2 : 0) + (client.focused ? 1 : 0);
}

/** What a click on one of the notifications does: close it, and open its link. */
function clickNotification(notification) {
  notification.close();
  return openLink(notification.data?.url ?? null);
}

/** The Acknowledge button: posts the push's token; the notification closes either way. */
async function acknowledge(notification) {
  notification.close();
  const ack = notification.data?.ack;
  if (!ack || typeof ack.url !== 'string' || typeof ack.token !== 'string') return;
  try {
    await fetch(new URL(ack.url, ORIGIN), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: ack.token }),
    });
  } catch {
    // Offline: the page stays unread, and escalates as it would have.
  }
}

self.addEventListener('notificationclick', (event) => {
  const work = event.action === 'ack'
    ? acknowledge(event.notification)
    : clickNotification(event.notification);
  event.waitUntil(work);
});
