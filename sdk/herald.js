// Herald's browser SDK: an ES module, served by every Herald node at
// /sdk/herald.js, with no build step and no dependencies.
//
//   import { Herald } from '/sdk/herald.js';
//   const herald = await Herald.signIn({ username: 'alice', password: '...' });
//   const live = herald.stream({ onEvent: (type, n) => render(type, n) });
//   await herald.markRead(id); await herald.dismiss(id);
//
// Tokens stay in memory (never in storage), and a 401 is answered by one
// refresh with the rotated refresh token before it gives up. Live events
// come over Server-Sent Events (or a WebSocket), resumed after a drop from
// the last event's cursor, so nothing sent meanwhile is missed. Delta sync
// keeps a local copy in step across page loads. Web Push registration and
// a service-worker helper cover devices where no page is open.
//
// The API is the Graph-shaped one that /openapi.json describes; the
// reference is at /ui/api/.

/** An error answered by the server, in the API's error shape. */
export class HeraldError extends Error {
  constructor(status, body, requestId) {
    const e = (body && body.error) || {};
    const msg = typeof e === 'object' ? e.message : body && body.error_description;
    super(msg || `HTTP ${status}`);
    this.name = 'HeraldError';
    this.status = status;
    this.code = typeof e === 'object' ? e.code : e;
    this.target = typeof e === 'object' ? e.target : undefined;
    this.requestId = requestId;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Herald {
  /**
   * @param {object} opts
   * @param {string} [opts.baseUrl] the server, e.g. 'https://herald.example.com'; default this page's origin
   * @param {string} [opts.accessToken]
   * @param {string} [opts.refreshToken]
   * @param {(t: {accessToken: string, refreshToken?: string}) => void} [opts.onTokens] told of rotated tokens
   */
  constructor({ baseUrl = '', accessToken, refreshToken, onTokens } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.accessToken = accessToken;
    this.refreshToken = refreshToken;
    this.onTokens = onTokens;
    this._refreshing = null;
  }

  /** Signs a user in with the OAuth password grant. */
  static async signIn({ baseUrl = '', username, password, onTokens } = {}) {
    const h = new Herald({ baseUrl, onTokens });
    await h._token({ grant_type: 'password', username, password });
    return h;
  }

  /** Forgets the tokens. */
  signOut() {
    this.accessToken = this.refreshToken = undefined;
  }

  async _token(form) {
    const res = await fetch(this.baseUrl + '/oauth2/v2.0/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form),
    });
    const body = await res.json().catch(() => null);
    if (!res.ok) throw new HeraldError(res.status, body, res.headers.get('request-id'));
    this.accessToken = body.access_token;
    if (body.refresh_token) this.refreshToken = body.refresh_token;
    if (this.onTokens) this.onTokens({ accessToken: this.accessToken, refreshToken: this.refreshToken });
  }

  // refresh rotates the tokens once, however many requests ask at a time.
  async _refresh() {
    if (!this.refreshToken) return false;
    if (!this._refreshing) {
      this._refreshing = this._token({ grant_type: 'refresh_token', refresh_token: this.refreshToken })
        .then(() => true, () => false)
        .finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  /**
   * Calls the API: path is '/v1.0/...' or an absolute link the server gave
   * (nextLink, deltaLink). Answers the decoded JSON, or null for 204. A 429
   * or 503 is retried after its Retry-After, a few times.
   */
  async request(method, path, body, headers = {}) {
    const url = /^https?:/.test(path) ? path : this.baseUrl + path;
    for (let attempt = 0; ; attempt++) {
      const h = { ...headers };
      if (this.accessToken) h.Authorization = 'Bearer ' + this.accessToken;
      if (body !== undefined) h['Content-Type'] = 'application/json';
      const res = await fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
      if (res.status === 401 && attempt === 0 && (await this._refresh())) continue;
      if ((res.status === 429 || res.status === 503) && attempt < 3) {
        await sleep(Math.min(30, Number(res.headers.get('Retry-After')) || 1) * 1000);
        continue;
      }
      if (res.status === 204) return null;
      const data = await res.json().catch(() => null);
      if (!res.ok) throw new HeraldError(res.status, data, res.headers.get('request-id'));
      return data;
    }
  }

  me() { return this.request('GET', '/v1.0/me'); }

  /** One page of the feed: {value, '@odata.nextLink'}. Filters as in the API. */
  notifications({ top, readState, userActionState, status, targetHostName, groupName } = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ $top: top, readState, userActionState, status, targetHostName, groupName })) {
      if (v !== undefined && v !== null) q.set(k, String(v));
    }
    const qs = q.toString();
    return this.request('GET', '/v1.0/me/notifications' + (qs ? '?' + qs : ''));
  }

  /** Every notification of the feed, newest first, following nextLink. */
  async *allNotifications(filters = {}) {
    let page = await this.notifications(filters);
    for (;;) {
      yield* page.value;
      const next = page['@odata.nextLink'];
      if (!next) return;
      page = await this.request('GET', next);
    }
  }

  notification(id) { return this.request('GET', '/v1.0/me/notifications/' + encodeURIComponent(id)); }
  update(id, patch) { return this.request('PATCH', '/v1.0/me/notifications/' + encodeURIComponent(id), patch); }
  markRead(id) { return this.update(id, { readState: 'read' }); }
  markUnread(id) { return this.update(id, { readState: 'unread' }); }
  dismiss(id) { return this.update(id, { userActionState: 'dismissed' }); }
  delete(id) { return this.request('DELETE', '/v1.0/me/notifications/' + encodeURIComponent(id)); }

  /**
   * Delta sync. Without a link: every active notification. With the
   * deltaLink of the last call: what changed since, as whole notifications
   * and {id, '@removed': {reason}}. Answers {changes, deltaLink}; keep the
   * deltaLink (e.g. in localStorage) for next time. A link too old throws a
   * HeraldError with code 'resyncRequired': start again without one.
   */
  async delta(deltaLink) {
    let page = await this.request('GET', deltaLink || '/v1.0/me/notifications/delta');
    const changes = [...page.value];
    while (page['@odata.nextLink']) {
      page = await this.request('GET', page['@odata.nextLink']);
      changes.push(...page.value);
    }
    return { changes, deltaLink: page['@odata.deltaLink'] };
  }

  /**
   * Opens the live stream. onEvent(type, notification, cursor) gets
   * 'created', 'updated' and 'deleted' (then the notification is
   * {id, '@removed'}). A dropped connection is reopened after a backoff
   * from the last cursor, so no event is lost; when the server no longer
   * has that cursor, onResync() is called (resync with delta()) and the
   * stream goes on live. Answers {close(), cursor()}.
   *
   * @param {object} opts
   * @param {'sse'|'websocket'} [opts.transport]
   * @param {string} [opts.lastEventId] resume after this cursor
   * @param {string} [opts.subscriptionId] only what this UNSID receives
   */
  stream({ onEvent, onResync, onOpen, onError, transport = 'sse', lastEventId, subscriptionId } = {}) {
    let cursor = lastEventId || '';
    let closed = false;
    let current = null;
    let failures = 0;
    const url = () => {
      const q = new URLSearchParams();
      if (this.accessToken) q.set('access_token', this.accessToken);
      if (cursor) q.set('lastEventId', cursor);
      if (subscriptionId) q.set('subscriptionId', subscriptionId);
      const base = (this.baseUrl || location.origin) + '/v1.0/me/notifications/stream?' + q;
      return transport === 'websocket' ? base.replace(/^http/, 'ws') : base;
    };
    const deliver = (type, data, id) => {
      failures = 0;
      if (id) cursor = id;
      if (onEvent) onEvent(type, data, id);
    };
    const resync = () => {
      cursor = '';
      if (onResync) onResync();
    };
    const reopen = async (err) => {
      if (closed) return;
      if (onError) onError(err);
      failures++;
      // A refused token (expired while the stream was down) is renewed
      // before the next try.
      if (failures > 1) await this._refresh();
      await sleep(Math.min(30000, 500 * 2 ** Math.min(failures, 6)) * (0.5 + Math.random() / 2));
      if (!closed) open();
    };
    const open = () => {
      if (transport === 'websocket') {
        const ws = new WebSocket(url());
        let opened = false;
        current = ws;
        ws.onopen = () => {
          opened = true;
          if (onOpen) onOpen();
        };
        ws.onmessage = (m) => {
          const f = JSON.parse(m.data);
          if (f.type === 'resyncRequired') return resync();
          deliver(f.type, f.notification, f.cursor);
        };
        ws.onclose = async (e) => {
          if (current !== ws) return;
          current = null;
          // A refused upgrade hides its status from script: a 410 (cursor
          // gone) is told apart by asking again over HTTP.
          if (!opened && cursor && (await this._cursorGone(cursor))) resync();
          reopen(new Error('WebSocket closed: ' + e.code));
        };
        return;
      }
      const es = new EventSource(url());
      current = es;
      es.onopen = () => onOpen && onOpen();
      for (const type of ['created', 'updated', 'deleted']) {
        es.addEventListener(type, (e) => deliver(type, JSON.parse(e.data), e.lastEventId));
      }
      es.addEventListener('resyncRequired', () => {
        es.close();
        resync();
        if (!closed) open();
      });
      // EventSource retries by itself, but not after an HTTP error, and
      // its retry would carry an expired token: this one reopens with the
      // current cursor and token instead.
      es.onerror = async () => {
        if (current !== es) return;
        es.close();
        current = null;
        // A 410 (cursor gone) looks like any other error to EventSource;
        // ask the server whether the cursor is still good.
        if (cursor && (await this._cursorGone(cursor))) resync();
        reopen(new Error('event stream dropped'));
      };
    };
    open();
    return {
      close: () => {
        closed = true;
        if (current) current.close();
        current = null;
      },
      cursor: () => cursor,
    };
  }

  // _cursorGone asks with a plain fetch what the EventSource could not tell:
  // 410 means the cursor is too old.
  async _cursorGone(cursor) {
    const ctrl = new AbortController();
    try {
      const res = await fetch(this.baseUrl + '/v1.0/me/notifications/stream?lastEventId=' + encodeURIComponent(cursor), {
        headers: this.accessToken ? { Authorization: 'Bearer ' + this.accessToken } : {},
        signal: ctrl.signal,
      });
      return res.status === 410;
    } catch {
      return false;
    } finally {
      ctrl.abort(); // a 200 is a stream that never ends
    }
  }

  /** Registers this device: answers the subscription, whose id is the UNSID. */
  subscribe({ targetHostName, platformType = 'web', deviceName, channel = { type: 'live' }, expirationDateTime } = {}) {
    return this.request('POST', '/v1.0/me/notificationSubscriptions',
      { targetHostName, platformType, deviceName, channel, expirationDateTime });
  }

  subscriptions() { return this.request('GET', '/v1.0/me/notificationSubscriptions'); }
  unsubscribe(id) { return this.request('DELETE', '/v1.0/me/notificationSubscriptions/' + encodeURIComponent(id)); }

  /**
   * Web Push: registers serviceWorker (a ServiceWorkerRegistration, or the
   * worker script's URL), subscribes with the server's VAPID key and
   * registers the push subscription with Herald. Answers the Herald
   * subscription (its id is the UNSID to hand to the application).
   */
  async registerWebPush({ targetHostName, serviceWorker, deviceName = navigator.userAgent.slice(0, 200) } = {}) {
    const reg = typeof serviceWorker === 'string'
      ? await navigator.serviceWorker.register(serviceWorker, { type: 'module' })
      : serviceWorker || (await navigator.serviceWorker.ready);
    if (Notification.permission !== 'granted' && (await Notification.requestPermission()) !== 'granted') {
      throw new Error('Notifications are not permitted on this device.');
    }
    const { publicKey } = await this.request('GET', '/v1.0/webPush/vapidPublicKey');
    const push = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: base64url(publicKey) });
    return this.subscribe({ targetHostName, platformType: 'web', deviceName, channel: { type: 'webPush', ...push.toJSON() } });
  }
}

function base64url(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

/**
 * For a service worker (registered with {type: 'module'}):
 *
 *   import { handlePush } from '/sdk/herald.js';
 *   handlePush(self, { url: '/inbox/' });
 *
 * Shows each pushed notification once (the notification id is its tag, so
 * a repeated delivery replaces rather than duplicates), closes it when it
 * was read, dismissed or deleted on another device, and opens or focuses
 * url on a click. onMessage(message), when given, decides instead: return
 * false to show nothing.
 */
export function handlePush(sw, { url = '/', icon, onMessage } = {}) {
  const handle = async (m) => {
    if (!m || !m.id) return;
    if (onMessage && (await onMessage(m)) === false) return;
    const shown = await sw.registration.getNotifications({ tag: m.id });
    if (m.type === 'deleted' || m.userActionState === 'dismissed' || m.readState === 'read') {
      shown.forEach((n) => n.close());
      return;
    }
    if (m.type === 'updated' && !shown.length) return; // the user already closed it
    await sw.registration.showNotification(m.title || 'New notification', {
      body: m.body || '', tag: m.id, renotify: m.type === 'created', icon, data: { id: m.id, url },
    });
  };
  sw.addEventListener('push', (e) => {
    let m = null;
    try { m = e.data ? e.data.json() : null; } catch { m = null; }
    e.waitUntil(handle(m));
  });
  sw.addEventListener('notificationclick', (e) => {
    e.notification.close();
    const target = new URL((e.notification.data && e.notification.data.url) || url, sw.location.origin).href;
    e.waitUntil((async () => {
      const wins = await sw.clients.matchAll({ type: 'window', includeUncontrolled: true });
      const open = wins.find((c) => c.url === target);
      return open ? open.focus() : sw.clients.openWindow(target);
    })());
  });
}
