// A reader of the live stream (Server-Sent Events) over fetch. EventSource
// would reconnect by itself, but it hides the HTTP status of a failed
// reconnect, and the inbox must tell "sign in again" (401) from "the
// cursor is too old, reload" (410) from "busy, wait" (429, 503). So this
// reads the same text/event-stream itself, sends Last-Event-ID on every
// reconnect, and resumes exactly after the last event it handed on.

export class LiveStream {
  // url: the stream's address; handlers: {event(type, data, id), state(s),
  // connected(resumed), resync(), unauthorized() -> Promise<bool>}.
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.cursor = null;
    this.retryMs = 2000;
    this.failures = 0;
    this.ctrl = null;
    this.closed = false;
    this.watchdog = 0;
    this.timer = 0;
    this.onOnline = () => this.kick();
    addEventListener('online', this.onOnline);
  }

  start(cursor = null) {
    this.cursor = cursor;
    this.connect();
  }

  close() {
    this.closed = true;
    removeEventListener('online', this.onOnline);
    clearTimeout(this.timer);
    clearTimeout(this.watchdog);
    if (this.ctrl) this.ctrl.abort();
  }

  // kick reconnects now if the stream is waiting to retry.
  kick() {
    if (!this.closed && !this.ctrl) {
      clearTimeout(this.timer);
      this.connect();
    }
  }

  state(s) {
    if (this.h.state) this.h.state(s);
  }

  later(ms) {
    this.ctrl = null;
    if (this.closed) return;
    this.state(navigator.onLine === false ? 'offline' : 'reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), ms);
  }

  backoff() {
    this.failures++;
    return Math.min(30000, this.retryMs * 2 ** Math.min(this.failures - 1, 4)) * (0.75 + Math.random() * 0.5);
  }

  // alive restarts the watchdog: the server sends a comment every 25 s,
  // so a minute of silence means the connection is dead without having
  // said so (a phone that changed networks).
  alive() {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => { if (this.ctrl) this.ctrl.abort(); }, 60000);
  }

  async connect() {
    if (this.closed) return;
    this.state(this.failures ? 'reconnecting' : 'connecting');
    const ctrl = new AbortController();
    this.ctrl = ctrl;
    const headers = { Accept: 'text/event-stream' };
    if (this.cursor) headers['Last-Event-ID'] = this.cursor;
    let res;
    try {
      res = await fetch(this.url, { headers, credentials: 'same-origin', cache: 'no-store', signal: ctrl.signal });
    } catch {
      this.later(this.backoff());
      return;
    }
    if (res.status === 401) {
      const again = await this.h.unauthorized();
      if (again) this.later(0);
      else this.close();
      return;
    }
    if (res.status === 410) {
      // The cursor's changes were trimmed: start over without one.
      this.cursor = null;
      this.ctrl = null;
      this.h.resync();
      return;
    }
    if (!res.ok || !res.body) {
      const ra = Number(res.headers.get('Retry-After'));
      this.later(ra > 0 ? ra * 1000 : this.backoff());
      return;
    }
    this.failures = 0;
    this.state('live');
    this.h.connected(Boolean(this.cursor));
    this.alive();
    try {
      await this.read(res.body);
    } catch {
      // aborted, or the connection broke: either way, reconnect below
    }
    clearTimeout(this.watchdog);
    if (this.ctrl === ctrl) this.later(this.failures ? this.backoff() : this.retryMs);
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let ev = { type: '', data: '', id: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      this.alive();
      buf += value;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (ev.data || ev.type) this.dispatch(ev);
          ev = { type: '', data: '', id: null };
          continue;
        }
        if (line[0] === ':') continue; // a comment: connected, keep-alive
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') ev.type = val;
        else if (field === 'data') ev.data = ev.data ? ev.data + '\n' + val : val;
        else if (field === 'id') ev.id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) this.retryMs = Number(val);
      }
    }
  }

  dispatch(ev) {
    const type = ev.type || 'message';
    if (type === 'shutdown') return; // the server is restarting; the stream ends and we reconnect
    if (type === 'resyncRequired') {
      this.cursor = null;
      if (this.ctrl) this.ctrl.abort();
      this.ctrl = null;
      this.h.resync();
      return;
    }
    let data = null;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return;
    }
    this.h.event(type, data, ev.id);
    // The cursor moves only after the event was handled, so a reconnect
    // resumes after the last event the page has applied.
    if (ev.id) this.cursor = ev.id;
  }
}
