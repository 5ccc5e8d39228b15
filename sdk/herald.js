// Herald's browser SDK: an ES module, served by every Herald node at
// /sdk/herald.js, with no build step and no dependencies.
//
//   import { Herald } from '/sdk/herald.js';
//   const herald = await Herald.signIn({ username: 'alice', password: '...' });
//   const live = herald.stream({ onEvent: (type, n) => render(type, n) });
//   await herald.markRead(id); await herald.dismiss(id);
//
// Tokens stay in memory (never in storage), and a 401 is answered by one
// refresh with the rotated refresh token before it gives up; a refresh
// that could not reach the server, or that it answered 429 or 5xx, keeps
// the tokens for the next call. Live events
// come over Server-Sent Events (or a WebSocket), resumed after a drop from
// the last event's cursor, so nothing sent meanwhile is missed. Delta sync
// keeps a local copy in step across page loads. Web Push registration and
// a service-worker helper cover devices where no page is open.
//
// Cookie-session mode, for pages that Herald itself serves (its inbox, or
// a page behind the same origin through a reverse proxy):
//
//   const herald = new Herald({ session: true, onSignedOut: () => showSignIn() });
//   const user = (await herald.restore()) || (await herald.signIn({ username, password }));
//   ...
//   await herald.signOut();
//
// There the tokens are HttpOnly cookies that no script can read, set by
// the /ui/session endpoints: signIn is POST /ui/session, restore picks up
// a sign-in after a reload (GET /ui/session, refreshing when the server
// says the refresh cookie works), refresh is POST /ui/session/refresh
// (also run by itself a minute before the access cookie expires), and
// signOut ends the session on every node (DELETE /ui/session) after the
// requests under way have finished. Requests go with the cookies and no
// Authorization header; those that change something carry X-CSRF-Token,
// which the session endpoints hand out. A 401 gets one refresh and a
// retry; when the server refuses it the session is over and onSignedOut is called
// (once; also after signOut, and when another tab of this browser signs
// out, or signs in as another user, whose cookies these are then). A 403 on a change first picks up the session's current CSRF token
// (another tab may have signed in again) and retries once. The live stream
// reads Server-Sent Events with fetch, so that it can tell a 401 (refresh,
// then go on or end) from a 410 (cursor too old: resync) from a 429/503
// (wait for Retry-After); it resumes with a Last-Event-ID header. The
// cookies are SameSite=Strict and the server refuses them on requests from
// another origin, so this mode is for same-origin pages only. A session
// that this browser did not sign in (cookies planted from another port of
// the host or a sibling subdomain) is not taken: restore answers null, and
// a stream checks again before it reconnects.
//
// The API is the Graph-shaped one that /openapi.json describes; the
// reference is at /ui/api/.

/**
 * An error answered by the server, in the API's error shape. status is 0
 * (code 'network') when the server could not be reached. body is the
 * decoded answer (null when it was not JSON); retryAfter is the answer's
 * Retry-After in seconds (0 when none).
 */
export class HeraldError extends Error {
  constructor(status, body, requestId, retryAfter = 0) {
    const e = (body && body.error) || {};
    const msg = typeof e === 'object' ? e.message : body && body.error_description;
    super(msg || (status ? `HTTP ${status}` : 'Herald could not be reached.'));
    this.name = 'HeraldError';
    this.status = status;
    this.code = status ? (typeof e === 'object' ? e.code : e) : 'network';
    this.target = typeof e === 'object' ? e.target : undefined;
    this.requestId = requestId;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

// temporary reports whether err leaves a sign-in standing: the server was
// not reached, was busy (429) or failed (5xx), which says nothing of the
// tokens.
function temporary(err) {
  return err instanceof HeraldError && (err.status === 0 || err.status === 429 || err.status >= 500);
}

// retryWait is how long to wait before retrying a 429 or 503: its
// Retry-After (1 s when none, at most 30), spread by up to a quarter so
// that callers refused together do not come back together.
function retryWait(res) {
  const s = Math.min(30, Number(res.headers.get('Retry-After')) || 1);
  return s * 1000 * (1 + Math.random() / 4);
}

async function errorOf(res) {
  const body = await res.json().catch(() => null);
  return new HeraldError(res.status, body, res.headers.get('request-id'), Number(res.headers.get('Retry-After')) || 0);
}

// drain reads an answer's (empty) body to its end: a response left unread
// is cancelled when it is collected, which the browser logs as a failed
// request.
async function drain(res) {
  try { await res.arrayBuffer(); } catch { /* nothing to read */ }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const unsafe = (method) => !['GET', 'HEAD', 'OPTIONS'].includes(method.toUpperCase());

export class Herald {
  /**
   * @param {object} opts
   * @param {string} [opts.baseUrl] the server, e.g. 'https://herald.example.com'; default this page's origin
   * @param {string} [opts.accessToken]
   * @param {string} [opts.refreshToken]
   * @param {(t: {accessToken: string, refreshToken?: string}) => void} [opts.onTokens] told of rotated tokens
   * @param {boolean} [opts.session] cookie-session mode (see the top of this file)
   * @param {() => void} [opts.onSignedOut] called when the sign-in ends: a 401 that one refresh did not cure, signOut, another tab's sign-out
   */
  constructor({ baseUrl = '', accessToken, refreshToken, onTokens, session = false, onSignedOut } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.accessToken = accessToken;
    this.refreshToken = refreshToken;
    this.onTokens = onTokens;
    this.session = Boolean(session);
    this.onSignedOut = onSignedOut;
    /** In session mode, the signed-in user (null when signed out). */
    this.user = null;
    this._csrf = null;
    this._refreshing = null;
    // _gen counts the ends of sign-ins: an answer that arrives after the
    // sign-in it was asked for ended is not taken.
    this._gen = 0;
    this._timer = 0;
    this._inflight = new Set();
    this._streams = new Set();
    this._channel = null;
    if (this.session && 'BroadcastChannel' in globalThis) {
      // The cookies belong to the browser, shared by every tab of the
      // origin: one tab's sign-out ends the others' at once. Herald's own
      // pages use the same channel.
      this._channel = new BroadcastChannel('herald-session');
      this._channel.onmessage = (e) => {
        if (e.data === 'signed-out') this._ended();
        else if (typeof e.data === 'string' && e.data.startsWith('signed-in ') && !this._sameUser(e.data.slice(10))) this._ended();
      };
    }
  }

  /**
   * Signs a user in and answers the Herald: with the OAuth password grant,
   * or with {session: true} through POST /ui/session. opts are the
   * constructor's plus username and password.
   */
  static async signIn(opts = {}) {
    const h = new Herald(opts);
    await h.signIn(opts);
    return h;
  }

  /** Signs in this Herald; in session mode answers the user. */
  async signIn({ username, password } = {}) {
    if (!this.session) {
      await this._token({ grant_type: 'password', username, password });
      return undefined;
    }
    const res = await this._send('POST', this.baseUrl + '/ui/session', { username, password });
    if (!res.ok) throw await errorOf(res);
    const info = await res.json();
    mark(info.csrfToken);
    const user = this._adopt(info);
    // The cookies are this user's now in every tab; one signed in as
    // someone else must stop acting as them.
    if (this._channel && user) this._channel.postMessage('signed-in ' + user.id);
    return user;
  }

  /**
   * Session mode: picks up this browser's sign-in after a page load.
   * Answers the user, or null when signed out (which is not an error, and
   * makes no failing request). Throws a HeraldError when the server could
   * not be asked, or could not answer for now (429, 5xx), or refused the
   * browser's cookies as planted (403; its message says to clear them).
   */
  async restore() {
    const res = await this._fetch(this.baseUrl + '/ui/session', {});
    if (!res.ok) throw await errorOf(res);
    const info = await res.json();
    if (info.user) {
      if (this._ours(info) && this._sameUser(info.user.id)) return this._adopt(info);
      // Not this browser's sign-in, or another user's: a sign-in this
      // Herald held is over, as at a refresh.
      if (this.user) this._ended();
      return null;
    }
    if (info.refreshable && (await this.refresh())) return this.user;
    return null;
  }

  /**
   * Ends the sign-in. In session mode it closes this Herald's streams, lets
   * the requests under way finish (ending the session under them would
   * fail them), then revokes the session on the server and calls
   * onSignedOut; when the cookies have become another user's (another tab
   * signed in as them), it ends only this Herald's sign-in. With tokens it revokes its session on the server (the
   * one /v1.0/me/sessions marks current), forgets them and calls
   * onSignedOut; it throws when the server could not be told, after
   * forgetting them.
   */
  async signOut() {
    for (const s of [...this._streams]) s.close();
    if (!this.session) {
      while (this._inflight.size) await Promise.allSettled([...this._inflight]);
      let failed = null;
      if (this._signedIn()) {
        try {
          const list = await this.request('GET', '/v1.0/me/sessions');
          const mine = ((list && list.value) || []).find((x) => x.current);
          if (!mine) {
            throw new HeraldError(404, { error: { code: 'itemNotFound',
              message: 'The server holds no session for these tokens (issued before sessions were recorded?); they are forgotten here and stay valid until they expire.' } });
          }
          await this.request('DELETE', '/v1.0/me/sessions/' + encodeURIComponent(mine.id));
        } catch (e) {
          // 401: the session had ended already.
          if (!(e instanceof HeraldError && e.status === 401)) failed = e;
        }
      }
      this._ended();
      if (failed) throw failed;
      return;
    }
    while (this._inflight.size) await Promise.allSettled([...this._inflight]);
    let res = await this._send('DELETE', this.baseUrl + '/ui/session');
    if (res.status === 403 && (await this._resyncCsrf())) {
      await drain(res);
      res = await this._send('DELETE', this.baseUrl + '/ui/session');
    } else if (res.status === 403 && !this.user) {
      // The cookies are another user's now (_resyncCsrf ended this
      // sign-in): theirs is not this page's to end.
      await drain(res);
      return;
    }
    if (!res.ok && res.status !== 401) throw await errorOf(res);
    await drain(res);
    mark(null);
    this._ended();
    if (this._channel) this._channel.postMessage('signed-out');
  }

  // _fetchRetrying is _fetch, a 429 or 503 tried again after its
  // Retry-After up to retries times.
  async _fetchRetrying(url, init, retries) {
    for (let attempt = 0; ; attempt++) {
      const res = await this._fetch(url, init);
      if ((res.status !== 429 && res.status !== 503) || attempt >= retries) return res;
      await drain(res);
      await sleep(retryWait(res));
    }
  }

  // _token asks the token endpoint, retrying a 429 or 503 retries times.
  // False: the sign-in ended meanwhile, and the tokens were not taken.
  async _token(form, retries = 0) {
    const gen = this._gen;
    const res = await this._fetchRetrying(this.baseUrl + '/oauth2/v2.0/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form),
    }, retries);
    if (!res.ok) throw await errorOf(res);
    const body = await res.json().catch(() => null);
    if (gen !== this._gen) return false;
    this.accessToken = body.access_token;
    if (body.refresh_token) this.refreshToken = body.refresh_token;
    if (this.onTokens) this.onTokens({ accessToken: this.accessToken, refreshToken: this.refreshToken });
    return true;
  }

  /**
   * Rotates the tokens (in session mode, the cookies); true when the
   * sign-in goes on, false when the server ended it. A failure that says
   * nothing of the sign-in (the server unreachable, busy or failing; in
   * session mode a 403, cookies planted beside the browser's own, which
   * the user must clear) throws its HeraldError and keeps the tokens.
   * However many callers ask at a time, it runs once.
   */
  refresh() {
    if (!this._refreshing) {
      this._refreshing = this._rotate()
        .then((ok) => ok, (err) => {
          if (temporary(err) || (this.session && err.status === 403)) throw err;
          return false;
        })
        // Callers that arrive just after share the answer too, rather
        // than rotating again.
        .finally(() => setTimeout(() => { this._refreshing = null; }, 0));
    }
    return this._refreshing;
  }

  async _rotate() {
    if (!this.session) {
      if (!this.refreshToken) return false;
      return this._token({ grant_type: 'refresh_token', refresh_token: this.refreshToken }, 3);
    }
    const gen = this._gen;
    const res = await this._fetchRetrying(this.baseUrl + '/ui/session/refresh', { method: 'POST' }, 3);
    if (!res.ok) {
      const err = await errorOf(res);
      // A 403 is a refresh cookie planted beside this browser's (the
      // server takes neither): the session stands, but no refresh will
      // work until the user clears the cookies, which its words say.
      if (temporary(err) || res.status === 403) throw err;
      return false;
    }
    const info = await res.json();
    if (gen !== this._gen) return false;
    if (!this._ours(info) || !this._sameUser(info.user && info.user.id)) {
      // Another tab signed in as someone else, or the cookies were
      // planted: they are not this sign-in's.
      if (this.user) this._ended();
      return false;
    }
    this._adopt(info);
    return true;
  }

  // _ours tells whether a /ui/session answer is of this browser's sign-in
  // (see mark below).
  _ours(info) {
    return Boolean(info.csrfToken) && (info.csrfToken === this._csrf || info.csrfToken === marked());
  }

  // _sameUser reports whether the cookies' user, by id, is the one this
  // Herald signed in (or it has none).
  _sameUser(id) {
    return !this.user || this.user.id === id;
  }

  // _adopt takes a /ui/session answer: the user and the CSRF token. The
  // refresh runs a minute before the access cookie expires, so that a
  // stream that reconnects never finds it gone.
  _adopt(info) {
    this.user = info.user;
    this._csrf = info.csrfToken;
    this._renewIn(Math.max(30, (info.expiresIn || 3600) - 60));
    return this.user;
  }

  // _renewIn refreshes the session after sec seconds; a refresh that
  // could not reach the server or was refused for now tries again in 30.
  _renewIn(sec) {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.refresh().catch((e) => { if (this._signedIn() && temporary(e)) this._renewIn(30); }), sec * 1000);
  }

  // _resyncCsrf reports whether the session's CSRF token changed under
  // this page (another tab signed out and in again).
  async _resyncCsrf() {
    const before = this._csrf;
    try {
      const res = await this._fetch(this.baseUrl + '/ui/session', {});
      if (!res.ok) return false;
      const info = await res.json();
      if (!info.user) return false;
      if (!this._ours(info) || !this._sameUser(info.user.id)) {
        if (this.user) this._ended();
        return false;
      }
      this._adopt(info);
    } catch {
      return false;
    }
    return this._csrf !== before;
  }

  // _stillMine reports whether, in session mode, the cookies are still this
  // sign-in's; a stream asks before it reconnects. Another service on the
  // host can overwrite them while the page is open, and a stream reopened
  // on them would read the planter's feed into this page: cookies of
  // another session end the sign-in. A server that could not answer is not
  // a no (the reconnect meets the same).
  async _stillMine() {
    if (!this.session || !this.user) return true;
    await this._resyncCsrf();
    return Boolean(this.user);
  }

  _signedIn() {
    return this.session ? Boolean(this.user) : Boolean(this.accessToken || this.refreshToken);
  }

  // _ended is the end of the sign-in, however it was noticed: the streams
  // close and onSignedOut is told, once.
  _ended() {
    this._gen++;
    const was = this._signedIn();
    this.user = this._csrf = null;
    if (!this.session) this.accessToken = this.refreshToken = undefined;
    clearTimeout(this._timer);
    for (const s of [...this._streams]) s.close();
    if (was && this.onSignedOut) this.onSignedOut();
  }

  // _fetch is fetch with this mode's credentials; a request that never
  // reached the server is a HeraldError with status 0. Requests under way
  // are tracked, so that signOut can wait for them.
  _fetch(url, init) {
    if (this.session) init = { credentials: 'include', cache: 'no-store', ...init };
    const req = fetch(url, init).catch(() => { throw new HeraldError(0, null); });
    this._inflight.add(req);
    const done = () => this._inflight.delete(req);
    req.then(done, done);
    return req;
  }

  _send(method, url, body, headers = {}) {
    const h = { Accept: 'application/json', ...headers };
    if (!this.session && this.accessToken) h.Authorization = 'Bearer ' + this.accessToken;
    if (this.session && this._csrf && unsafe(method)) h['X-CSRF-Token'] = this._csrf;
    if (body !== undefined) h['Content-Type'] = 'application/json';
    return this._fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  }

  /**
   * Calls the API: path is '/v1.0/...' or an absolute link the server gave
   * (nextLink, deltaLink). Answers the decoded JSON, or null for 204. A 401
   * gets one refresh and a retry; a 429 or 503 is retried after its
   * Retry-After, a few times, but not a POST whose 503 says the cluster
   * may have taken it.
   */
  async request(method, path, body, headers = {}) {
    const url = /^https?:/.test(path) ? onBase(this.baseUrl, path) : this.baseUrl + path;
    let refreshed = false;
    let resynced = false;
    for (let attempt = 0; ; attempt++) {
      const res = await this._send(method, url, body, headers);
      if (res.status === 401 && this._signedIn()) {
        if (!refreshed) {
          refreshed = true;
          let renewed;
          try {
            renewed = await this.refresh();
          } catch (e) {
            await drain(res);
            throw e; // the sign-in stands: the caller may try again
          }
          if (renewed) {
            await drain(res);
            continue;
          }
        }
        const err = await errorOf(res);
        this._ended();
        throw err;
      }
      if (res.status === 403 && this.session && !resynced && unsafe(method)) {
        resynced = true;
        if (await this._resyncCsrf()) {
          await drain(res);
          continue;
        }
      }
      if ((res.status === 429 || res.status === 503) && attempt < 3) {
        if (res.status === 503 && method.toUpperCase() === 'POST') {
          // A create that the cluster may have taken is not sent again:
          // it would make a second one (docs/API-NOTES.md, "Writes
          // during a leader change").
          const err = await errorOf(res);
          if (/^The write (may have been|was) committed/.test(err.message)) throw err;
        } else {
          await drain(res);
        }
        await sleep(retryWait(res));
        continue;
      }
      if (!res.ok) throw await errorOf(res);
      if (res.status === 204) {
        await drain(res);
        return null;
      }
      return res.json().catch(() => null);
    }
  }

  me() { return this.request('GET', '/v1.0/me'); }

  /** Every item of a collection (e.g. '/v1.0/me/applications'), following nextLink, up to max. */
  async getAll(path, max = 1000) {
    const out = [];
    for (let next = path; next && out.length < max;) {
      const page = await this.request('GET', next);
      out.push(...page.value.slice(0, max - out.length));
      next = page['@odata.nextLink'];
    }
    return out;
  }

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
   * has that cursor, onResync() is called (resync with delta(), or reload
   * the feed) and the stream goes on live without one. onOpen({resumed})
   * is called on every (re)connection; resumed is false when the stream
   * started without a cursor. onState(s) is told 'connecting', 'live',
   * 'reconnecting' or 'offline'. Answers {close(), cursor(), reconnect()};
   * reconnect() skips a retry's wait (say, when the tab is shown again).
   *
   * @param {object} opts
   * @param {'sse'|'websocket'} [opts.transport]
   * @param {string} [opts.lastEventId] resume after this cursor
   * @param {string} [opts.subscriptionId] only what this UNSID receives
   */
  stream(opts = {}) {
    const { transport = 'sse' } = opts;
    const handle = this.session && transport === 'sse' ? this._fetchStream(opts) : this._browserStream(opts);
    this._streams.add(handle);
    const close = handle.close;
    handle.close = () => {
      this._streams.delete(handle);
      close();
    };
    return handle;
  }

  // _browserStream reads the stream with EventSource or WebSocket, which
  // carry the access token in the query (neither can set a header).
  _browserStream({ onEvent, onResync, onOpen, onError, onState, transport = 'sse', lastEventId, subscriptionId } = {}) {
    let cursor = lastEventId || '';
    let closed = false;
    let current = null;
    let failures = 0;
    let wake = null;
    const state = (s) => onState && onState(s);
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
    const opened = () => {
      state('live');
      if (onOpen) onOpen({ resumed: Boolean(cursor) });
    };
    const reopen = async (err) => {
      if (closed) return;
      state(navigator.onLine === false ? 'offline' : 'reconnecting');
      if (onError) onError(err);
      failures++;
      // A refused token (expired while the stream was down) is renewed
      // before the next try. EventSource and WebSocket hide a 401, but a
      // refresh the server refuses says the sign-in is over (a session
      // revoked from another device): then, as request() does, it ends
      // here rather than reconnecting for ever with dead tokens.
      if (failures > 1) {
        // Without a refresh token, refresh() answers false without asking.
        const asks = this.session || Boolean(this.refreshToken);
        if ((await this.refresh().catch(() => true)) === false && asks) {
          if (!closed) this._ended();
          return;
        }
      }
      await new Promise((r) => {
        wake = r;
        setTimeout(r, Math.min(30000, 500 * 2 ** Math.min(failures, 6)) * (0.5 + Math.random() / 2));
      });
      wake = null;
      if (!closed && (await this._stillMine()) && !closed) open();
    };
    const open = () => {
      state('connecting');
      if (transport === 'websocket') {
        const ws = new WebSocket(url());
        let up = false;
        current = ws;
        ws.onopen = () => {
          up = true;
          opened();
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
          if (!up && cursor && (await this._cursorGone(cursor))) resync();
          reopen(new Error('WebSocket closed: ' + e.code));
        };
        return;
      }
      const es = new EventSource(url());
      current = es;
      es.onopen = opened;
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
        if (wake) wake();
      },
      cursor: () => cursor,
      reconnect: () => { if (wake) wake(); },
    };
  }

  // _fetchStream reads Server-Sent Events with fetch, for session mode:
  // unlike EventSource it sees the status of a failed (re)connection, and
  // sends the cursor as Last-Event-ID.
  _fetchStream({ onEvent, onResync, onOpen, onError, onState, lastEventId, subscriptionId } = {}) {
    let cursor = lastEventId || '';
    let closed = false;
    let ctrl = null; // the connection under way; null while waiting to retry
    let timer = 0;
    let watchdog = 0;
    let failures = 0;
    let retryMs = 2000;
    const state = (s) => onState && onState(s);
    const q = subscriptionId ? '?' + new URLSearchParams({ subscriptionId }) : '';
    const url = this.baseUrl + '/v1.0/me/notifications/stream' + q;
    const backoff = () => {
      failures++;
      return Math.min(30000, retryMs * 2 ** Math.min(failures - 1, 4)) * (0.75 + Math.random() / 2);
    };
    const later = (ms, err) => {
      ctrl = null;
      if (closed) return;
      state(navigator.onLine === false ? 'offline' : 'reconnecting');
      if (err && onError) onError(err);
      clearTimeout(timer);
      timer = setTimeout(connect, ms);
    };
    // The server sends a comment every 25 s, so a minute of silence means
    // a connection that died without saying so (a phone that changed
    // networks).
    const alive = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => { if (ctrl) ctrl.abort(); }, 60000);
    };
    const resync = () => {
      cursor = '';
      const c = ctrl;
      ctrl = null;
      if (c) c.abort();
      if (onResync) onResync();
      connect();
    };
    const dispatch = (ev) => {
      const type = ev.type || 'message';
      if (type === 'resyncRequired') return resync();
      if (type !== 'created' && type !== 'updated' && type !== 'deleted') return; // 'shutdown': the stream ends and is reopened
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      try {
        if (onEvent) onEvent(type, data, ev.id || undefined);
      } catch (e) {
        // The page's bug must not stop the stream, nor replay the event
        // forever: it is reported as uncaught, and the stream goes on.
        setTimeout(() => { throw e; });
      }
      // The cursor moves once the event was handed on, so a reconnect
      // resumes right after the last event the page has.
      if (ev.id) cursor = ev.id;
    };
    const read = async (body) => {
      const reader = body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let ev = { type: '', data: '', id: '' };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        alive();
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          let line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (ev.data || ev.type) dispatch(ev);
            ev = { type: '', data: '', id: '' };
            continue;
          }
          if (line[0] === ':') continue; // a comment: connected, keep-alive
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'event') ev.type = val;
          else if (field === 'data') ev.data = ev.data ? ev.data + '\n' + val : val;
          else if (field === 'id') ev.id = val;
          else if (field === 'retry' && /^\d+$/.test(val)) retryMs = Number(val);
        }
      }
    };
    let again = false;
    const connect = async () => {
      if (closed) return;
      state(failures ? 'reconnecting' : 'connecting');
      const mine = new AbortController();
      ctrl = mine;
      if (again) {
        await this._stillMine();
        if (ctrl !== mine) return; // closed (the sign-in ended) or resynced meanwhile
      }
      again = true;
      const headers = { Accept: 'text/event-stream' };
      if (cursor) headers['Last-Event-ID'] = cursor;
      let res;
      try {
        res = await fetch(url, { headers, credentials: 'include', cache: 'no-store', signal: mine.signal });
      } catch (e) {
        if (ctrl === mine) later(backoff(), e);
        return;
      }
      if (ctrl !== mine) { // closed or resynced meanwhile
        mine.abort();
        return;
      }
      if (res.status === 401) {
        await drain(res);
        let renewed;
        try {
          renewed = await this.refresh();
        } catch (e) {
          later(e.retryAfter > 0 ? e.retryAfter * 1000 : backoff(), e); // the sign-in stands
          return;
        }
        if (renewed) later(0);
        else this._ended(); // closes this stream too
        return;
      }
      if (res.status === 410 && cursor) {
        await drain(res);
        resync();
        return;
      }
      if (!res.ok || !res.body) {
        const err = await errorOf(res);
        later(err.retryAfter > 0 ? err.retryAfter * 1000 : backoff(), err);
        return;
      }
      failures = 0;
      state('live');
      if (onOpen) onOpen({ resumed: Boolean(cursor) });
      alive();
      try {
        await read(res.body);
      } catch {
        // aborted, or the connection broke: either way, reconnect below
      }
      clearTimeout(watchdog);
      if (ctrl === mine) later(failures ? backoff() : retryMs, new Error('event stream dropped'));
    };
    const kick = () => {
      if (!closed && !ctrl) {
        clearTimeout(timer);
        connect();
      }
    };
    addEventListener('online', kick);
    connect();
    return {
      close: () => {
        closed = true;
        removeEventListener('online', kick);
        clearTimeout(timer);
        clearTimeout(watchdog);
        const c = ctrl;
        ctrl = null;
        if (c) c.abort();
      },
      cursor: () => cursor,
      reconnect: kick,
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
  subscription(id) { return this.request('GET', '/v1.0/me/notificationSubscriptions/' + encodeURIComponent(id)); }
  /** Changes a subscription, e.g. {expirationDateTime} to renew it. */
  updateSubscription(id, patch) { return this.request('PATCH', '/v1.0/me/notificationSubscriptions/' + encodeURIComponent(id), patch); }
  unsubscribe(id) { return this.request('DELETE', '/v1.0/me/notificationSubscriptions/' + encodeURIComponent(id)); }

  /** Where the user is signed in (API.md §2): {value: [session]}. */
  sessions() { return this.request('GET', '/v1.0/me/sessions'); }
  /** Signs out one of the user's sessions, on every node. */
  endSession(id) { return this.request('DELETE', '/v1.0/me/sessions/' + encodeURIComponent(id)); }

  /** The server's VAPID public key; a HeraldError 404 when Web Push is not set up. */
  async vapidPublicKey() {
    if (!this._vapid) this._vapid = (await this.request('GET', '/v1.0/webPush/vapidPublicKey')).publicKey;
    return this._vapid;
  }

  /**
   * The webPush channel of a service worker's registration, for subscribe:
   * asks for permission when it has not been given, and reuses the
   * browser's push subscription or makes one with the server's VAPID key.
   */
  async webPushChannel(registration) {
    if (Notification.permission !== 'granted' && (await Notification.requestPermission()) !== 'granted') {
      throw new Error('Notifications are not permitted on this device.');
    }
    // A registration just made has its worker still installing, and the
    // browser refuses to subscribe without an active one.
    await activeWorker(registration);
    const pm = registration.pushManager;
    const push = (await pm.getSubscription())
      || (await pm.subscribe({ userVisibleOnly: true, applicationServerKey: base64url(await this.vapidPublicKey()) }));
    const { endpoint, keys } = push.toJSON();
    return { type: 'webPush', endpoint, keys };
  }

  /**
   * Web Push: registers serviceWorker (a ServiceWorkerRegistration, or the
   * worker script's URL), subscribes with the server's VAPID key and
   * registers the push subscription with Herald. Answers the Herald
   * subscription (its id is the UNSID to hand to the application).
   */
  async registerWebPush({ targetHostName, serviceWorker, deviceName = navigator.userAgent.slice(0, 200), expirationDateTime } = {}) {
    const reg = typeof serviceWorker === 'string'
      ? await navigator.serviceWorker.register(serviceWorker, { type: 'module' })
      : serviceWorker || (await navigator.serviceWorker.ready);
    const channel = await this.webPushChannel(reg);
    return this.subscribe({ targetHostName, platformType: 'web', deviceName, channel, expirationDateTime });
  }
}

// In session mode the SDK takes a session only if this browser signed it
// in. Cookies are not kept apart by port, and a sibling subdomain, or
// anyone on the path of a plain-HTTP request, can set them for Herald's
// host as well: planted, the cookies of an attacker's own session would
// sign the page in as the attacker, and the server cannot tell them from
// its own. What marks this browser's sign-in is kept in the origin's
// storage, which none of them can write (the CSRF token, which the page
// holds anyway; Herald's own pages keep it under the same name). Without
// storage a sign-in lasts as long as the page.
const MARK = 'herald.session';

function marked() {
  try { return globalThis.localStorage.getItem(MARK); } catch { return null; }
}

function mark(csrf) {
  try {
    if (csrf) globalThis.localStorage.setItem(MARK, csrf);
    else globalThis.localStorage.removeItem(MARK);
  } catch { /* no storage */ }
}

// onBase is a link the server gave, on baseUrl, the server the SDK was
// given, so that its token or cookie never goes anywhere else, nor over
// plain HTTP. The server names its links by --public-url, else by the Host
// and scheme it saw: behind a proxy that terminates TLS that is http://,
// or the proxy's name for the node. A --public-url with a path (a proxy
// that serves the node under /herald) puts that path in the link, and
// baseUrl has it too: it is not repeated.
function onBase(baseUrl, link) {
  const u = new URL(link);
  const prefix = new URL(baseUrl || '/', 'http://base.invalid').pathname.replace(/\/+$/, '');
  const path = prefix && (u.pathname === prefix || u.pathname.startsWith(prefix + '/'))
    ? u.pathname.slice(prefix.length) : u.pathname;
  return baseUrl + path + u.search;
}

// activeWorker resolves once reg has an active worker; it rejects when the
// worker failed to install.
function activeWorker(reg) {
  return new Promise((resolve, reject) => {
    const w = reg.installing || reg.waiting;
    if (reg.active || !w) return resolve();
    const check = () => {
      if (reg.active) resolve();
      else if (w.state === 'redundant') reject(new Error('The service worker failed to install.'));
      else return;
      w.removeEventListener('statechange', check);
    };
    w.addEventListener('statechange', check);
  });
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
 * false to show nothing. Messages are handled one at a time, in the order
 * they arrive.
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
  // One message at a time, in arrival order: in a burst (created, then read
  // a moment later) the second must not look for the notification before
  // the first has shown it. Under load Chromium has also been seen to lose
  // a notification whose showNotification overlapped a getNotifications.
  let last = Promise.resolve();
  sw.addEventListener('push', (e) => {
    let m = null;
    try { m = e.data ? e.data.json() : null; } catch { m = null; }
    const done = last.then(() => handle(m));
    last = done.catch(() => {});
    e.waitUntil(done);
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
