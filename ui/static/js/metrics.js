// Live figures for the dashboard, read from the node's Prometheus endpoint.
// /metrics is counters; rates come from the difference of two samples, so
// a sampler keeps a short history from the moment the console opened.

// parse reads the Prometheus text format into [{name, labels, value}].
export function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      for (const l of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    }
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function sum(series, name, keep = () => true) {
  let total = 0;
  let seen = false;
  for (const s of series) {
    if (s.name === name && keep(s.labels) && Number.isFinite(s.value)) {
      total += s.value;
      seen = true;
    }
  }
  return seen ? total : null;
}

// totals is what one sample of /metrics tells the dashboard.
export function totals(series) {
  return {
    notifications: sum(series, 'herald_notifications_total') ?? 0,
    deliveries: sum(series, 'herald_delivery_seconds_count') ?? 0,
    deliverySeconds: sum(series, 'herald_delivery_seconds_sum') ?? 0,
    failures: sum(series, 'herald_delivery_attempts_total', (l) => l.outcome && l.outcome !== 'delivered') ?? 0,
    streams: sum(series, 'herald_open_streams') ?? 0,
  };
}

// Sampler polls /metrics every interval and keeps about keep seconds of
// points: {t, rate, latencyMs, failures}. A counter that went down (the
// node restarted) starts a new baseline rather than a negative rate.
export class Sampler {
  constructor({ interval = 2000, keep = 300 } = {}) {
    this.interval = interval;
    this.keep = keep;
    this.samples = []; // {t, totals}
    this.points = [];
    this.subs = new Set();
    this.error = null;
    this.timer = 0;
  }

  start() {
    if (!this.timer) {
      this.tick();
      this.timer = setInterval(() => this.tick(), this.interval);
    }
  }

  stop() {
    clearInterval(this.timer);
    this.timer = 0;
  }

  subscribe(fn) {
    this.subs.add(fn);
    fn(this);
    return () => this.subs.delete(fn);
  }

  async tick() {
    try {
      const res = await fetch('/metrics', { cache: 'no-store', credentials: 'same-origin' });
      if (!res.ok) throw new Error(`The metrics endpoint answered HTTP ${res.status}.`);
      this.add(performance.now() / 1000, totals(parse(await res.text())));
      this.error = null;
    } catch (e) {
      this.error = e.message && !e.message.includes('fetch') ? e.message : 'The node’s metrics could not be read.';
    }
    for (const fn of this.subs) fn(this);
  }

  add(t, tot) {
    const prev = this.samples[this.samples.length - 1];
    if (prev && tot.notifications < prev.totals.notifications) this.samples = [];
    this.samples.push({ t, totals: tot });
    while (this.samples.length > 2 && t - this.samples[0].t > this.keep) this.samples.shift();
    if (prev && this.samples.length > 1) {
      const dt = t - prev.t;
      const dn = tot.deliveries - prev.totals.deliveries;
      this.points.push({
        t,
        rate: Math.max(0, (tot.notifications - prev.totals.notifications) / dt),
        latencyMs: dn > 0 ? ((tot.deliverySeconds - prev.totals.deliverySeconds) / dn) * 1000 : null,
        failures: Math.max(0, (tot.failures - prev.totals.failures) / dt),
      });
      while (this.points.length && t - this.points[0].t > this.keep) this.points.shift();
    }
  }

  latest() {
    return this.samples.length ? this.samples[this.samples.length - 1].totals : null;
  }

  // windowRate is the average rate of a counter over the last secs
  // seconds of samples: steadier than the last point, and still non-zero
  // for a while after a single notification.
  windowRate(key, secs = 60) {
    if (this.samples.length < 2) return null;
    const last = this.samples[this.samples.length - 1];
    let first = this.samples[0];
    for (const s of this.samples) {
      if (last.t - s.t <= secs) { first = s; break; }
    }
    if (first === last) first = this.samples[this.samples.length - 2];
    return Math.max(0, (last.totals[key] - first.totals[key]) / (last.t - first.t));
  }
}
