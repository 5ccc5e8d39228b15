// The API client of both pages. The session lives in HttpOnly cookies that
// this script cannot read; what it keeps is the CSRF token the server hands
// out with the session, sent as X-CSRF-Token on every request that changes
// something. Errors come back as ApiError with a message meant for people.

import { explain, unreachable } from './errors.js';

export const session = { user: null, csrf: null };

const listeners = new Set();

// onSignedOut registers fn to run when the session ends (expired, revoked,
// signed out in another tab).
export function onSignedOut(fn) {
  listeners.add(fn);
}

export class ApiError extends Error {
  constructor(status, code, message, extra = {}) {
    super(message);
    this.status = status;
    this.code = code;
    Object.assign(this, extra);
  }
}

async function toError(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    // Not JSON: a proxy's error page, or a file that is not there.
  }
  const retry = Number(res.headers.get('Retry-After')) || 0;
  const { code, message } = explain(res.status, body, retry);
  const e = body && body.error;
  return new ApiError(res.status, code, message, { target: e && typeof e.code === 'string' ? e.target : undefined, retryAfter: retry });
}

function networkError() {
  return new ApiError(0, 'network', unreachable);
}

// inflight holds the requests under way, so that signing out can let them
// finish rather than have the browser cancel them.
const inflight = new Set();

// onOrigin keeps a request on this page's origin. The server names its
// nextLinks by --public-url, else by the Host and scheme it saw, which
// behind a proxy that terminates TLS is http:// (or the proxy's name for
// the node); the session cookie and the CSP are for this origin alone.
function onOrigin(path) {
  const u = new URL(path, location.href);
  return u.pathname + u.search;
}

async function send(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  const req = fetch(onOrigin(path), {
    method, headers, credentials: 'same-origin', cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  inflight.add(req);
  try {
    return await req;
  } catch {
    throw networkError();
  } finally {
    inflight.delete(req);
  }
}

const quiet = new Set();

// beforeSignOut registers fn (it may return a promise) to stop what the
// page has under way (polling, a live stream) before the session ends.
export function beforeSignOut(fn) {
  quiet.add(fn);
}

// api calls the REST API. A 401 gets one silent refresh of the session and
// a retry; if the server refuses the refresh too, the session is over. A
// refresh that could not reach the server, or was answered 429 or 5xx,
// leaves the session and fails this call with its error.
export async function api(method, path, body) {
  let res = await send(method, path, body);
  if (res.status === 401 && session.user) {
    let renewed;
    try {
      renewed = await refresh();
    } catch (e) {
      await drain(res);
      throw e;
    }
    if (renewed) {
      await drain(res);
      res = await send(method, path, body);
    }
    if (res.status === 401) ended();
  }
  // A 403 on a write can mean this tab's CSRF token belongs to a session
  // that another tab replaced (signed out and in again): pick up the
  // current one and try once more.
  if (res.status === 403 && session.user && method !== 'GET' && await resync()) {
    res = await send(method, path, body);
  }
  if (!res.ok) throw await toError(res);
  if (res.status === 204) return drain(res);
  const ct = res.headers.get('Content-Type') || '';
  return ct.includes('json') ? res.json() : res.text();
}

// drain reads an answer's (empty) body to its end: a response left unread
// is cancelled by the browser when it is collected, and shows as a failed
// request.
async function drain(res) {
  try { await res.arrayBuffer(); } catch { /* nothing to read */ }
  return null;
}

// all follows @odata.nextLink up to max items.
export async function all(path, max = 1000) {
  const out = [];
  let next = path;
  while (next && out.length < max) {
    const page = await api('GET', next);
    out.push(...page.value);
    next = page['@odata.nextLink'];
  }
  return out;
}

let refreshing = null;
let timer = 0;

// The page takes a session only if this browser signed it in. Cookies are
// not kept apart by port, and a sibling subdomain, or anyone on the path
// of a plain-HTTP request, can set them for this host as well: planted,
// the cookies of an attacker's own session would sign the page in as the
// attacker, and the server cannot tell them from its own. What marks this
// browser's sign-in is kept in this origin's storage, which none of them
// can write (the CSRF token, which the page holds anyway). Without
// storage a sign-in lasts as long as the page.
const MARK = 'herald.session';

function marked() {
  try { return localStorage.getItem(MARK); } catch { return null; }
}

function mark(csrf) {
  try {
    if (csrf) localStorage.setItem(MARK, csrf);
    else localStorage.removeItem(MARK);
  } catch { /* no storage */ }
}

function ours(info) {
  return Boolean(info.csrfToken) && (info.csrfToken === session.csrf || info.csrfToken === marked());
}

function adopt(info) {
  session.user = info.user;
  session.csrf = info.csrfToken;
  // Refresh a minute before the access token expires, so that a live
  // stream that reconnects never finds its cookie gone.
  renewIn(Math.max(30, (info.expiresIn || 3600) - 60));
  return info.user;
}

// renewIn refreshes the session after sec seconds; a refresh the server
// could not answer for now is tried again in 30.
function renewIn(sec) {
  clearTimeout(timer);
  timer = setTimeout(() => refresh().catch((e) => { if (session.user && e.status !== 403) renewIn(30); }), sec * 1000);
}

// refresh rotates the session's tokens: true when the session goes on,
// false when the server ended it. An answer that says nothing of the
// session (unreachable, 429, 5xx, a 403 for a planted cookie) throws its
// ApiError and leaves the session as it was. Concurrent callers share one
// request.
export function refresh() {
  if (!refreshing) {
    const signedIn = session.user;
    refreshing = (async () => {
      try {
        let res;
        try {
          res = await fetch('/ui/session/refresh', { method: 'POST', credentials: 'same-origin' });
        } catch {
          throw networkError();
        }
        // A 403 is a refresh cookie planted beside this browser's (the
        // server takes neither): the session stands, and the page shows
        // the server's words, which say to clear the cookies.
        if (res.status === 403 || res.status === 429 || res.status >= 500) throw await toError(res);
        if (!res.ok) {
          await drain(res);
          return false;
        }
        const info = await res.json();
        // Signed out meanwhile (here or in another tab): that stands.
        if (signedIn && !session.user) return false;
        // Another tab signed in as someone else, or the cookies were
        // planted: they are not this sign-in's.
        if (!ours(info) || !sameUser(info.user)) {
          if (session.user) ended();
          return false;
        }
        adopt(info);
        return true;
      } finally {
        setTimeout(() => { refreshing = null; }, 0);
      }
    })();
  }
  return refreshing;
}

// Other tabs of this browser share the cookies; tell them at once when this
// one signs out, rather than at their next request.
const channel = 'BroadcastChannel' in self ? new BroadcastChannel('herald-session') : null;
if (channel) {
  channel.onmessage = (e) => {
    if (e.data === 'signed-out') ended();
    else if (typeof e.data === 'string' && e.data.startsWith('signed-in ') && !sameUser({ id: e.data.slice(10) })) ended();
  };
}

// sameUser reports whether user is the one this tab signed in (or it has
// none): another tab may have signed the browser in as someone else.
function sameUser(user) {
  return !session.user || Boolean(user && user.id === session.user.id);
}

function ended() {
  const was = session.user;
  session.user = null;
  session.csrf = null;
  clearTimeout(timer);
  if (was) for (const fn of listeners) fn();
}

// resync reports whether the session's CSRF token changed under this tab.
async function resync() {
  const before = session.csrf;
  try {
    const res = await fetch('/ui/session', { credentials: 'same-origin', cache: 'no-store' });
    if (!res.ok) return false;
    const info = await res.json();
    if (!info.user) return false;
    if (!ours(info) || !sameUser(info.user)) {
      if (session.user) ended();
      return false;
    }
    adopt(info);
  } catch {
    return false;
  }
  return session.csrf !== before;
}

// restore picks up an existing sign-in (after a reload); null when there
// is none. Signed out is an answer (200, user null), not an error, so a
// signed-out page load makes no failing request; the refresh is tried only
// when the server says the refresh cookie would work.
export async function restore() {
  let res;
  try {
    res = await fetch('/ui/session', { credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw networkError();
  }
  if (!res.ok) throw await toError(res);
  const info = await res.json();
  if (info.user) return ours(info) ? adopt(info) : null;
  if (info.refreshable && await refresh()) return session.user;
  return null;
}

export async function signIn(username, password) {
  const res = await send('POST', '/ui/session', { username, password });
  if (!res.ok) throw await toError(res);
  const info = await res.json();
  mark(info.csrfToken);
  const user = adopt(info);
  // The cookies are this user's now in every tab (the inbox's too).
  if (channel && user) channel.postMessage('signed-in ' + user.id);
  return user;
}

// signOut ends the session. A stale CSRF token (another tab refreshed the
// session) is picked up and the sign-out tried once more; if the server
// still refuses, the page says so and stays signed in, rather than showing
// a sign-in form over a session that is still valid.
//
// First the page stops its work and every request under way is let finish:
// ending the session under them would fail them, and replacing the page
// would have the browser cancel them.
export async function signOut() {
  await Promise.allSettled([...quiet].map(async (fn) => fn()));
  while (inflight.size) await Promise.allSettled([...inflight]);
  let res = await send('DELETE', '/ui/session');
  if (res.status === 403 && await resync()) {
    res = await send('DELETE', '/ui/session');
  } else if (res.status === 403 && !session.user) {
    // The cookies are another user's now (resync ended this tab's
    // sign-in): theirs is not this page's to end.
    await drain(res);
    return;
  }
  if (!res.ok && res.status !== 401) throw await toError(res);
  await drain(res);
  mark(null);
  ended();
  if (channel) channel.postMessage('signed-out');
}
