// The user inbox. It behaves like one of the user's devices: it registers a
// `live` subscription for the application it is connected to (and Web Push
// where the browser allows), shows the feed, and follows the live stream,
// so that reading or dismissing a notification on any device shows here at
// once.
//
// Which application? Users cannot list applications (that is an admin's
// view), so the inbox is told: by ?app=<targetHostName> in its address
// (the admin console shows each application's inbox link), or by the user
// typing the host name once. The choice is remembered in this browser.
// Without one, the inbox shows the user's whole feed live but registers no
// subscription.
//
// All its API work goes through the browser SDK (/sdk/herald.js) in
// cookie-session mode, as any page served from Herald's origin could use
// it: sign-in, the feed, read and dismiss, the live stream with resume,
// and Web Push registration.

import { Herald, HeraldError } from '/sdk/herald.js';
import { h, replace, $, toast, errorBox, field, busy, fmtTime } from './dom.js';
import { explain, unreachable } from './errors.js';
import { signInForm } from './signin.js';
import { notificationCard, titleOf } from './card.js';

const root = $('#app');

// inWords gives an SDK error the words the console uses for the same
// answer: the inbox shows error messages to people, not to developers.
function inWords(e) {
  if (e instanceof HeraldError) {
    const x = e.status ? explain(e.status, e.body, e.retryAfter) : { code: 'network', message: unreachable };
    e.message = x.message;
    if (!e.code) e.code = x.code;
  }
  return e;
}

class InboxHerald extends Herald {
  async request(...args) {
    try { return await super.request(...args); } catch (e) { throw inWords(e); }
  }

  async signIn(...args) {
    try { return await super.signIn(...args); } catch (e) { throw inWords(e); }
  }

  async restore() {
    try { return await super.restore(); } catch (e) { throw inWords(e); }
  }

  async signOut() {
    try { return await super.signOut(); } catch (e) { throw inWords(e); }
  }
}

// The session ends (expired, revoked, signed out here or in another tab):
// back to the sign-in form.
const herald = new InboxHerald({
  session: true,
  onSignedOut: () => {
    // An open dialog (Sessions) would cover the sign-in form.
    for (const d of document.querySelectorAll('dialog[open]')) d.close();
    if (current) current.stop();
    current = null;
    start();
  },
});

// skipEmpty follows a few nextLinks past pages that hold nothing: a page
// of a filtered feed reads at most 2,000 notifications and may come back
// empty with a nextLink (docs/API-NOTES.md), and the inbox would say
// "No notifications yet" above "Show older notifications".
async function skipEmpty(page) {
  for (let i = 0; i < 5 && !page.value.length && page['@odata.nextLink']; i++) {
    page = await herald.request('GET', page['@odata.nextLink']);
  }
  return page;
}

const RENEW_BEFORE = 15 * 86400e3; // renew a subscription with less left than this
const LIFETIME = 30 * 86400e3;

const store = {
  get: (k) => { try { return localStorage.getItem(k); } catch { return null; } },
  set: (k, v) => { try { localStorage.setItem(k, v); } catch { /* private mode */ } },
  del: (k) => { try { localStorage.removeItem(k); } catch { /* private mode */ } },
};

function deviceName() {
  const ua = navigator.userAgent;
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : 'a browser';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS X/.test(ua) ? 'macOS' : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : '';
  return `Inbox in ${browser}${os ? ' on ' + os : ''}`;
}

// ---- subscriptions

// ensureSubscription reuses the subscription this browser registered
// before (renewing it when it runs low), or registers a new one.
async function ensureSubscription(key, host, channel, name) {
  const id = store.get(key);
  if (id) {
    try {
      const s = await herald.subscription(id);
      if (s.targetHostName === host && s.status !== 'disabled') {
        if (new Date(s.expirationDateTime).getTime() - Date.now() < RENEW_BEFORE) {
          return await herald.updateSubscription(id, { expirationDateTime: new Date(Date.now() + LIFETIME).toISOString() });
        }
        return s;
      }
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    store.del(key);
  }
  const s = await herald.subscribe({
    targetHostName: host, platformType: 'web', deviceName: name, channel,
    expirationDateTime: new Date(Date.now() + LIFETIME).toISOString(),
  });
  store.set(key, s.id);
  return s;
}

// Push is Web Push through a service worker: notifications reach the user
// while no inbox page is open. Every step can be missing (old browser,
// plain HTTP, server without VAPID keys, permission denied); each one
// leaves the inbox working without it and says why.
class Push {
  constructor(uid, host, el) {
    this.key = `herald.inbox.${uid}.${host}.push`;
    this.host = host;
    this.el = el;
  }

  async init() {
    if (!('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window) || !isSecureContext) {
      return this.show('Desktop notifications are not available in this browser here.');
    }
    try {
      await herald.vapidPublicKey();
    } catch (e) {
      return this.show(e.status === 404 ? 'Desktop notifications are not set up on this server.' : '');
    }
    try {
      this.reg = await navigator.serviceWorker.register('/ui/inbox/sw.js', { scope: '/ui/inbox/' });
    } catch {
      return this.show('Desktop notifications could not be set up in this browser.');
    }
    const existing = await this.reg.pushManager.getSubscription();
    if (Notification.permission === 'granted' && existing && store.get(this.key)) {
      try {
        await this.register();
        return this.on();
      } catch {
        // fall through to offering the button again
      }
    }
    if (Notification.permission === 'denied') return this.show('Notifications are blocked for this site in the browser’s settings.');
    return this.offer();
  }

  show(text) {
    replace(this.el, text ? h('span', { class: 'muted small' }, text) : '');
  }

  offer() {
    const btn = h('button', {
      type: 'button', class: 'btn btn-small', id: 'push-enable',
      on: { click: () => busy(btn, () => this.enable()) },
    }, 'Turn on desktop notifications');
    replace(this.el, btn);
  }

  on() {
    const btn = h('button', {
      type: 'button', class: 'btn btn-small btn-ghost',
      on: { click: () => busy(btn, () => this.disable()) },
    }, 'Turn off');
    replace(this.el, h('span', { class: 'small' }, 'Desktop notifications are on. '), btn);
  }

  // register hands this browser's push subscription (made with the
  // server's VAPID key when there is none) to Herald. Permission is given
  // by then, so the SDK asks nothing.
  async register() {
    const channel = await herald.webPushChannel(this.reg);
    await ensureSubscription(this.key, this.host, channel, `${deviceName()} (desktop notifications)`);
  }

  async enable() {
    try {
      if (await Notification.requestPermission() !== 'granted') {
        this.show('Notifications were not allowed; the inbox still updates while it is open.');
        return;
      }
      await this.register();
      this.on();
      toast('Desktop notifications are on.');
    } catch (e) {
      toast(e instanceof Error && e.status !== undefined ? e.message : 'Desktop notifications could not be turned on in this browser.', 'error');
    }
  }

  async disable() {
    const id = store.get(this.key);
    try {
      if (id) await herald.unsubscribe(id);
      const sub = await this.reg.pushManager.getSubscription();
      if (sub) await sub.unsubscribe();
      store.del(this.key);
      this.offer();
    } catch (e) {
      toast(e.message, 'error');
    }
  }
}

// leave signs out for good on this browser: it removes the subscriptions
// this browser registered for the user (so a shared browser does not keep
// showing their notifications), drops the browser's push subscription and
// what the page remembered, then ends the session. Removing the server's
// records is best effort: the session ends even if they fail.
async function leave(uid) {
  // The stream goes first: removing its subscription would end it.
  if (current) current.stop();
  const prefix = `herald.inbox.${uid}.`;
  const keys = [];
  try {
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (k && k.startsWith(prefix)) keys.push(k);
    }
  } catch { /* private mode: nothing remembered */ }
  for (const k of keys) {
    const id = store.get(k);
    if (id && (k.endsWith('.push') || k.endsWith('.live'))) {
      try { await herald.unsubscribe(id); } catch { /* already gone */ }
    }
  }
  try {
    const reg = await navigator.serviceWorker?.getRegistration('/ui/inbox/');
    const sub = await reg?.pushManager.getSubscription();
    if (sub) await sub.unsubscribe();
  } catch { /* no push in this browser */ }
  for (const k of keys) store.del(k);
  await herald.signOut();
}

// ---- sessions

// showSessions lists where the user is signed in (API.md §2) and signs out
// any of them. The tokens of a session ended here stop working at once, on
// every node.
async function showSessions() {
  const list = h('div', { 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
  const close = h('button', { type: 'button', class: 'btn', on: { click: () => d.close() } }, 'Close');
  const d = h('dialog', { class: 'modal', id: 'sessions', 'aria-labelledby': 'sessions-title', on: { close: () => d.remove() } },
    h('form', { method: 'dialog' },
      h('h2', { id: 'sessions-title' }, 'Where you are signed in'),
      list, h('div', { class: 'actions' }, close)));
  document.body.append(d);
  d.showModal();
  async function load() {
    try {
      const p = await herald.sessions();
      replace(list, h('ul', { class: 'session-list' }, p.value.map((x) => h('li', { dataset: { session: x.id, current: String(x.current) } },
        h('div', h('strong', x.current ? 'This browser' : (x.userAgent || 'Unknown client')),
          h('div', { class: 'muted small' }, `from ${x.clientAddress || 'an unknown address'} · signed in ${fmtTime(x.createdDateTime)} · last used ${fmtTime(x.lastUsedDateTime)}`)),
        x.current ? null : h('button', {
          type: 'button', class: 'btn btn-small btn-danger-outline', 'aria-label': `Sign out the session from ${x.clientAddress}`,
          on: {
            click: (e) => busy(e.currentTarget, async () => {
              await herald.endSession(x.id);
              toast('That session is signed out.');
              await load();
            }),
          },
        }, 'Sign out')))));
    } catch (e) {
      replace(list, h('p', { class: 'error-text' }, e.message));
    }
  }
  load();
}

// ---- the inbox

class Inbox {
  constructor(user, host) {
    this.user = user;
    this.host = host;
    this.items = new Map(); // id -> notification
    this.cards = new Map(); // id -> {key, el}
    this.pending = null; // events that arrive while the feed loads
    this.next = null;
    this.showDismissed = false;
    this.loaded = false;
    this.stream = null;
    this.appNames = new Map(); // targetHostName -> the application's display name
  }

  // loadAppNames learns the applications' display names, which cards show
  // in place of the host name (notifications carry only the host name).
  // Without them the cards keep the host name.
  async loadAppNames() {
    try {
      const apps = await herald.getAll('/v1.0/me/applications');
      for (const a of apps) this.appNames.set(a.targetHostName, a.displayName);
    } catch {
      return;
    }
    this.cards.clear();
    this.render();
  }

  mount() {
    this.status = h('span', { class: 'live-status', id: 'live-status', dataset: { state: 'connecting' }, role: 'status' }, 'Connecting…');
    this.count = h('span', { class: 'count', id: 'unread-count', dataset: { count: '0' }, 'aria-label': '0 unread' }, '0');
    this.list = h('div', { class: 'notif-list', id: 'feed', 'aria-live': 'polite', 'aria-relevant': 'additions' });
    this.empty = h('div', { class: 'empty card', id: 'empty', hidden: true });
    this.more = h('button', { type: 'button', class: 'btn', id: 'show-older', hidden: true, on: { click: (e) => busy(e.currentTarget, () => this.loadMore()) } }, 'Show older notifications');
    this.pushSlot = h('span', { class: 'push-slot' });
    this.subInfo = h('span', { class: 'muted small', id: 'sub-info' });
    const toggle = h('button', {
      type: 'button', class: 'btn btn-small btn-ghost', 'aria-pressed': 'false', id: 'toggle-dismissed',
      on: {
        click: () => {
          this.showDismissed = !this.showDismissed;
          toggle.setAttribute('aria-pressed', String(this.showDismissed));
          toggle.textContent = this.showDismissed ? 'Hide dismissed' : 'Show dismissed';
          this.render();
        },
      },
    }, 'Show dismissed');
    this.markAll = h('button', { type: 'button', class: 'btn btn-small btn-ghost', on: { click: (e) => busy(e.currentTarget, () => this.markAllRead()) } }, 'Mark all read');
    const admin = (this.user.roles || []).includes('admin') ? h('a', { class: 'btn btn-ghost', href: '/ui/' }, 'Admin console') : null;

    replace(root,
      h('header', { class: 'topbar' },
        h('a', { class: 'brand', href: '/ui/inbox/' }, h('img', { src: '/ui/icon.svg', alt: '', width: 28, height: 28 }), 'Herald'),
        h('div', { class: 'whoami' },
          h('span', { class: 'muted', title: this.user.userPrincipalName }, this.user.displayName || this.user.userPrincipalName),
          admin,
          h('button', { type: 'button', class: 'btn btn-ghost', id: 'sessions-open', on: { click: () => showSessions() } }, 'Sessions'),
          h('button', { type: 'button', class: 'btn btn-ghost', id: 'signout', on: { click: (e) => busy(e.currentTarget, () => leave(this.user.id).catch((ex) => toast(ex.message, 'error'))) } }, 'Sign out'))),
      h('main', { id: 'main', tabindex: '-1', class: 'inbox' },
        h('div', { class: 'inbox-head' },
          h('h1', 'Inbox ', this.count),
          this.status),
        h('div', { class: 'inbox-context' }, this.contextLine(), this.pushSlot),
        h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Inbox actions' }, this.markAll, toggle,
          h('span', { class: 'muted small kbd-hint' }, 'Keys: j/k move · r read · d dismiss · Delete delete')),
        this.empty, this.list, this.more));
    this.keyboard();
  }

  contextLine() {
    if (!this.host) {
      return h('div', { class: 'card notice connect' }, this.connectForm());
    }
    const change = h('button', { type: 'button', class: 'btn btn-small btn-ghost', on: { click: (e) => busy(e.currentTarget, () => this.changeApp()) } }, 'Change');
    return h('p', { class: 'context' }, 'Connected to ', h('strong', { id: 'app-host' }, this.host), ' ', this.subInfo, ' ', change);
  }

  connectForm() {
    const input = h('input', { id: 'connect-host', required: true, autocapitalize: 'none', spellcheck: 'false', placeholder: 'tasks.example.com' });
    const err = errorBox();
    const btn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Connect');
    return h('form', {
      class: 'connect-form',
      on: {
        submit: (e) => {
          e.preventDefault();
          err.show(null);
          busy(btn, async () => {
            const host = input.value.trim().toLowerCase();
            try {
              await ensureSubscription(`herald.inbox.${this.user.id}.${host}.live`, host, { type: 'live' }, deviceName());
              connectTo(this, host);
            } catch (ex) {
              err.show(ex.code === 'invalidRequest' ? new Error(`No application named ${host} is registered. Check the name with your admin.`) : ex);
            }
          });
        },
      },
    },
    h('p', h('strong', 'Connect this inbox to an application'), ' to receive its notifications as one of your devices. Your admin can give you its host name, or a link that opens the inbox connected.'),
    field('Application host name', input), err, btn);
  }

  // changeApp disconnects: this browser stops being a device of the
  // application, so its live subscription goes too.
  async changeApp() {
    const key = `herald.inbox.${this.user.id}.${this.host}.live`;
    const id = store.get(key);
    if (id) {
      try {
        await herald.unsubscribe(id);
      } catch (e) {
        if (e.status !== 404) {
          toast(e.message, 'error');
          return;
        }
      }
      store.del(key);
    }
    store.del(`herald.inbox.${this.user.id}.app`);
    connectTo(this, '');
  }

  async start() {
    this.mount();
    this.loadAppNames();
    if (this.host) {
      try {
        const sub = await ensureSubscription(`herald.inbox.${this.user.id}.${this.host}.live`, this.host, { type: 'live' }, deviceName());
        this.sub = sub;
        replace(this.subInfo, `as “${sub.deviceName}”`);
      } catch (e) {
        replace(this.subInfo, h('span', { class: 'error-text' }, e.message));
        if (e.code === 'invalidRequest' || e.status === 404) {
          // The application is gone or never was: ask again.
          store.del(`herald.inbox.${this.user.id}.app`);
          toast(`This inbox cannot connect to ${this.host}: ${e.message}`, 'error');
        }
      }
      new Push(this.user.id, this.host, this.pushSlot).init();
    }
    // The SDK resumes after a drop from the last event the page applied
    // (Last-Event-ID); a stream that starts afresh (the first time, or
    // after the server said the cursor is too old) reloads the feed. A 401
    // that a refresh does not cure ends in onSignedOut.
    this.stream = herald.stream({
      subscriptionId: this.sub ? this.sub.id : undefined,
      onState: (s) => this.setState(s),
      onOpen: ({ resumed }) => { if (!resumed || !this.loaded) this.reload(); },
      onEvent: (type, data) => this.onEvent(type, data),
      // The stream keeps trying; a refusal that trying again will not
      // cure (two cookies of one name, one planted) is said once.
      onError: (e) => {
        if (e.status !== 403 || this.refused) return;
        this.refused = true;
        toast(inWords(e).message, 'error');
      },
    });
  }

  stop() {
    if (this.stream) this.stream.close();
  }

  setState(s) {
    const words = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', offline: 'Offline — will reconnect' };
    this.status.dataset.state = s;
    this.status.textContent = words[s] || s;
  }

  // reload reads the feed while the stream is open: events that arrive
  // meanwhile are held and applied on top, so nothing between the read
  // and the stream's start is lost.
  async reload() {
    this.pending = [];
    try {
      const page = await skipEmpty(await herald.notifications({ top: 50, targetHostName: this.host && this.sub ? this.host : undefined }));
      this.items.clear();
      for (const n of page.value) this.items.set(n.id, n);
      this.next = page['@odata.nextLink'] || null;
    } catch (e) {
      toast(`The inbox could not be loaded: ${e.message}`, 'error');
    }
    const held = this.pending;
    this.pending = null;
    for (const [type, data] of held) this.apply(type, data);
    this.loaded = true;
    this.list.dataset.loaded = 'true';
    this.render();
  }

  // loadMore shows the next page and moves the focus to its first card:
  // the button the keyboard user pressed may be gone (no more pages), and
  // the first older notification is where they were going.
  async loadMore() {
    if (!this.next) return;
    try {
      const page = await skipEmpty(await herald.request('GET', this.next));
      const added = [];
      for (const n of page.value) {
        if (!this.items.has(n.id)) {
          this.items.set(n.id, n);
          added.push(n.id);
        }
      }
      this.next = page['@odata.nextLink'] || null;
      this.render();
      const first = this.sorted().find((n) => added.includes(n.id) && this.cards.get(n.id) && this.cards.get(n.id).el.isConnected);
      if (first) this.cards.get(first.id).el.focus();
    } catch (e) {
      toast(e.message, 'error');
    }
  }

  onEvent(type, data) {
    if (this.pending) {
      this.pending.push([type, data]);
      return;
    }
    this.apply(type, data);
    this.render();
  }

  // apply merges one change. A change older than what the page holds (a
  // replay after a reconnect) is skipped, so the view never goes back.
  apply(type, n) {
    if (!n || !n.id) return;
    if (type === 'deleted' || n['@removed'] || n.status === 'deleted') {
      this.items.delete(n.id);
      return;
    }
    const have = this.items.get(n.id);
    if (have && have.lastModifiedDateTime > n.lastModifiedDateTime) return;
    if (this.host && this.sub && n.targetHostName !== this.host) return;
    this.items.set(n.id, n);
  }

  sorted() {
    return [...this.items.values()].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  }

  render() {
    const active = document.activeElement;
    const focusCard = active && active.closest ? active.closest('.notif') : null;
    const focusId = focusCard ? focusCard.dataset.id : null;
    const focusRole = active && active.dataset ? active.dataset.role : null;
    const focusIndex = focusCard ? [...this.list.children].indexOf(focusCard) : -1;

    const all = this.sorted();
    const shown = all.filter((n) => this.showDismissed || n.userActionState !== 'dismissed');
    const els = shown.map((n) => {
      const key = `${n.lastModifiedDateTime}|${n.readState}|${n.userActionState}`;
      let c = this.cards.get(n.id);
      if (!c || c.key !== key) {
        c = { key, el: this.card(n) };
        this.cards.set(n.id, c);
      }
      return c.el;
    });
    for (const id of this.cards.keys()) if (!this.items.has(id)) this.cards.delete(id);
    this.list.replaceChildren(...els);
    // Re-rendering replaces a changed card; keep the keyboard user's place:
    // the same button on the new card, or the card that took its place.
    if (focusId && !this.list.contains(document.activeElement)) {
      const c = this.cards.get(focusId);
      if (c && c.el.isConnected) (c.el.querySelector(`[data-role="${focusRole}"]`) || c.el).focus();
      else if (els.length) els[Math.min(focusIndex, els.length - 1)].focus();
    }

    const unread = all.filter((n) => n.readState === 'unread' && n.userActionState !== 'dismissed').length;
    this.count.textContent = String(unread);
    this.count.dataset.count = String(unread);
    this.count.setAttribute('aria-label', `${unread} unread`);
    this.markAll.disabled = unread === 0;
    document.title = unread ? `(${unread}) Inbox · Herald` : 'Inbox · Herald';
    if ('setAppBadge' in navigator) (unread ? navigator.setAppBadge(unread) : navigator.clearAppBadge()).catch(() => {});

    this.more.hidden = !this.next;
    this.renderEmpty(all, shown);
  }

  renderEmpty(all, shown) {
    if (!this.loaded || shown.length) {
      this.empty.hidden = true;
      return;
    }
    this.empty.hidden = false;
    if (all.length) {
      replace(this.empty, h('h2', 'All caught up'), h('p', 'You dismissed everything here. Use “Show dismissed” to see those notifications again.'));
      return;
    }
    replace(this.empty,
      h('h2', 'No notifications yet'),
      this.host
        ? h('p', `This inbox is connected to ${this.host}. When it sends you a notification, it appears here the moment it is sent; there is no need to reload.`)
        : h('p', 'Notifications that applications send you appear here the moment they are sent. Connect this inbox to an application above to receive its notifications as one of your devices.'),
      h('p', { class: 'muted' }, 'Waiting for a first one? Ask your admin to send you a test from the Herald console. Reading or dismissing a notification here does the same on your other devices.'));
  }

  card(n) {
    const unread = n.readState === 'unread';
    const dismissed = n.userActionState === 'dismissed';
    const t = titleOf(n);
    const act = (label, role, fn, cls = '') => h('button', {
      type: 'button', class: ['btn', 'btn-small', cls], dataset: { role }, 'aria-label': `${label}: ${t}`,
      on: { click: (e) => { e.stopPropagation(); busy(e.currentTarget, fn); } },
    }, label);
    const del = h('button', {
      type: 'button', class: 'btn btn-small btn-danger-outline', dataset: { role: 'delete' }, 'aria-label': `Delete: ${t}`,
      on: {
        click: (e) => {
          e.stopPropagation();
          // Deleting cannot be undone, so it takes a second press.
          // The button's name says so too (its aria-label, not only its
          // text), and the prompt is announced: a screen reader user hears
          // why nothing was deleted yet.
          if (del.dataset.armed) {
            busy(del, () => this.remove(n));
            return;
          }
          del.dataset.armed = 'true';
          del.textContent = 'Press again to delete';
          del.setAttribute('aria-label', `Press again to delete: ${t}`);
          toast(`Press Delete again to delete “${t}”.`);
          setTimeout(() => {
            if (del.isConnected) {
              delete del.dataset.armed;
              del.textContent = 'Delete';
              del.setAttribute('aria-label', `Delete: ${t}`);
            }
          }, 4000);
        },
      },
    }, 'Delete');
    const el = notificationCard(n, {
      appName: this.appNames.get(n.targetHostName),
      actions: [
        act(unread ? 'Mark read' : 'Mark unread', 'read', () => this.patch(n, { readState: unread ? 'read' : 'unread' })),
        dismissed
          ? act('Restore', 'dismiss', () => this.patch(n, { userActionState: 'noInteraction' }))
          : act('Dismiss', 'dismiss', () => this.patch(n, { userActionState: 'dismissed' })),
        del,
      ],
    });
    el.addEventListener('click', (e) => {
      if (!e.target.closest('button, a') && n.readState === 'unread') this.patch(n, { readState: 'read' });
    });
    return el;
  }

  // patch changes a notification; the answer is applied at once, and the
  // stream brings the same change to the user's other devices.
  async patch(n, change) {
    try {
      const updated = await herald.update(n.id, change);
      this.apply('updated', updated);
      this.render();
    } catch (e) {
      toast(e.status === 404 ? 'That notification was deleted on another device.' : e.message, 'error');
      if (e.status === 404) {
        this.items.delete(n.id);
        this.render();
      }
    }
  }

  async remove(n) {
    try {
      await herald.delete(n.id);
      this.items.delete(n.id);
      this.render();
      toast('Deleted.');
    } catch (e) {
      toast(e.message, 'error');
    }
  }

  async markAllRead() {
    const unread = this.sorted().filter((n) => n.readState === 'unread' && n.userActionState !== 'dismissed');
    await Promise.all(unread.map((n) => this.patch(n, { readState: 'read' })));
  }

  // keyboard adds shortcuts on top of the buttons, which work by Tab and
  // Enter anyway.
  keyboard() {
    if (Inbox.keysBound) return;
    Inbox.keysBound = true;
    document.addEventListener('keydown', (e) => {
      const inbox = current;
      if (!inbox || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.target.closest && e.target.closest('input, textarea, select, dialog')) return;
      const cards = [...inbox.list.querySelectorAll('.notif')];
      const at = e.target.closest ? e.target.closest('.notif') : null;
      const i = at ? cards.indexOf(at) : -1;
      const n = at ? inbox.items.get(at.dataset.id) : null;
      switch (e.key) {
        case 'j': case 'ArrowDown':
          if (cards.length && (at || e.key === 'j')) { cards[Math.min(cards.length - 1, i + 1)].focus(); e.preventDefault(); }
          break;
        case 'k': case 'ArrowUp':
          if (cards.length && (at || e.key === 'k')) { cards[Math.max(0, i - 1)].focus(); e.preventDefault(); }
          break;
        case 'r':
          if (n) inbox.patch(n, { readState: n.readState === 'unread' ? 'read' : 'unread' });
          break;
        case 'd':
          if (n) inbox.patch(n, { userActionState: n.userActionState === 'dismissed' ? 'noInteraction' : 'dismissed' });
          break;
        case 'Delete':
          if (n && at) at.querySelector('[data-role="delete"]').click();
          break;
        default:
      }
    });
  }
}

let current = null;

function connectTo(from, host) {
  if (host) store.set(`herald.inbox.${from.user.id}.app`, host);
  const url = new URL(location.href);
  if (host) url.searchParams.set('app', host);
  else url.searchParams.delete('app');
  history.replaceState(null, '', url);
  from.stop();
  current = new Inbox(from.user, host);
  current.start();
}

// start signs in (or picks up the sign-in) and opens the inbox. Several
// ways of noticing a sign-out may call it at once; they share one run.
let starting = null;
function start() {
  if (!starting) starting = run().finally(() => { starting = null; });
  return starting;
}

async function run() {
  let user;
  try {
    user = await herald.restore();
  } catch (e) {
    replace(root, h('div', { class: 'signin-wrap' }, h('div', { class: 'card notice notice-bad', role: 'alert' }, h('p', e.message),
      h('button', { type: 'button', class: 'btn', on: { click: start } }, 'Try again'))));
    return;
  }
  if (!user) {
    user = await signInForm(root, { title: 'Your inbox', intro: 'Sign in to see your notifications, live.',
      signIn: (username, password) => herald.signIn({ username, password }) });
  }
  const fromURL = new URLSearchParams(location.search).get('app');
  const host = (fromURL || store.get(`herald.inbox.${user.id}.app`) || '').trim().toLowerCase();
  if (fromURL) store.set(`herald.inbox.${user.id}.app`, host);
  current = new Inbox(user, host);
  current.start();
}

document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  const m = $('#main');
  if (m) m.focus();
});
// A tab coming back to the foreground reconnects at once rather than
// waiting out a retry delay.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && current && current.stream) current.stream.reconnect();
});
start();
