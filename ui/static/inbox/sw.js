// The inbox's service worker: it shows Web Push notifications while no
// inbox page is open, and closes them when the notification is read,
// dismissed or deleted on another device. The message format is the one
// Herald's Web Push sender encrypts: {type, id, title, body, readState,
// userActionState, ...}.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

async function inboxVisible() {
  const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  return wins.some((c) => c.visibilityState === 'visible' && new URL(c.url).pathname.startsWith('/ui/inbox/'));
}

async function handle(m) {
  if (!m || !m.id) return;
  const shown = await self.registration.getNotifications({ tag: m.id });
  const gone = m.type === 'deleted' || m.userActionState === 'dismissed' || m.readState === 'read';
  if (gone) {
    // Done elsewhere: take it off this device too.
    for (const n of shown) n.close();
    return;
  }
  // An open inbox already shows it live; a second, system notification
  // would only repeat it.
  if (await inboxVisible()) return;
  if (m.type === 'updated' && !shown.length) return; // an update of one the user already closed
  await self.registration.showNotification(m.title || 'New notification', {
    body: m.body || '',
    tag: m.id, // delivery is at least once: the same id replaces, never duplicates
    renotify: m.type === 'created',
    icon: '/ui/icon.svg',
    data: { id: m.id },
  });
}

self.addEventListener('push', (e) => {
  let m = null;
  try {
    m = e.data ? e.data.json() : null;
  } catch {
    m = null;
  }
  e.waitUntil(handle(m));
});

self.addEventListener('notificationclick', (e) => {
  e.notification.close();
  e.waitUntil((async () => {
    const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const inbox = wins.find((c) => new URL(c.url).pathname.startsWith('/ui/inbox/'));
    if (inbox) return inbox.focus();
    return self.clients.openWindow('/ui/inbox/');
  })());
});
