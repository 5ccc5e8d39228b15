// The dashboard: the cluster drawn as a picture, and live charts from the
// node's metrics.

import { h, s, replace } from '../dom.js';
import { api } from '../api.js';
import { lineChart } from '../chart.js';
import { pageHead, pill, table, failure } from './common.js';

const num = new Intl.NumberFormat();
const fixed = (d) => (v) => v.toLocaleString(undefined, { minimumFractionDigits: d, maximumFractionDigits: d });

// healthy: the node answers and, if a follower, heard from the leader
// recently.
function health(n) {
  if (n.state === 'unreachable') return 'unreachable';
  if (n.state === 'leader') return 'healthy';
  return n.lastContactMs >= 0 && n.lastContactMs < 5000 ? 'healthy' : 'lagging';
}

const ringR = 26;
const ringC = 2 * Math.PI * ringR;

// picture draws each node as a tile: role, health, applied index, owned
// slots (the ring) and open streams, with a line from the leader to every
// follower.
function picture(c) {
  const nodes = c.nodes || [];
  const cols = Math.min(Math.max(nodes.length, 1), 3);
  const rows = Math.ceil(nodes.length / cols) || 1;
  const W = 230;
  const H = 150;
  const gap = 30;
  const width = cols * W + (cols - 1) * gap;
  const height = rows * H + (rows - 1) * gap;
  const pos = nodes.map((_, i) => ({ x: (i % cols) * (W + gap), y: Math.floor(i / cols) * (H + gap) }));
  const leader = nodes.findIndex((n) => n.id === c.leaderId);
  const lines = leader < 0 ? [] : nodes.map((n, i) => (i === leader ? null : s('line', {
    class: ['link', n.state === 'unreachable' ? 'link-bad' : ''],
    x1: pos[leader].x + W / 2, y1: pos[leader].y + H / 2, x2: pos[i].x + W / 2, y2: pos[i].y + H / 2,
  })));
  const tiles = nodes.map((n, i) => {
    const hl = health(n);
    const share = c.slotCount ? n.slots / c.slotCount : 0;
    const { x, y } = pos[i];
    return s('g', { class: ['node', 'node-' + n.state, 'health-' + hl], transform: `translate(${x},${y})`, 'data-node-id': n.id },
      s('rect', { class: 'node-box', width: W, height: H, rx: 14 }),
      s('rect', { class: 'node-band', width: W, height: 8, rx: 4 }),
      s('circle', { class: 'health-dot', cx: 20, cy: 30, r: 6 }),
      s('text', { class: 'node-name', x: 34, y: 35 }, n.id.length > 20 ? n.id.slice(0, 19) + '…' : n.id),
      s('text', { class: 'node-role', x: 20, y: 60 }, `${n.state}${n.voter ? '' : ' (non-voter)'} · ${hl}`),
      s('text', { class: 'node-stat', x: 20, y: 88 }, `applied ${num.format(n.appliedIndex)}`),
      s('text', { class: 'node-stat', x: 20, y: 110 }, `${num.format(n.liveConnections)} open stream${n.liveConnections === 1 ? '' : 's'}`),
      s('text', { class: 'node-stat muted-svg', x: 20, y: 132 }, n.httpAddr || n.raftAddr),
      s('g', { transform: `translate(${W - 46},${H / 2 + 6})` },
        s('circle', { class: 'ring-bg', r: ringR }),
        s('circle', { class: 'ring', r: ringR, 'stroke-dasharray': `${(share * ringC).toFixed(1)} ${ringC.toFixed(1)}`, transform: 'rotate(-90)' }),
        s('text', { class: 'ring-label', 'text-anchor': 'middle', y: 4 }, num.format(n.slots)),
        s('text', { class: 'ring-sub', 'text-anchor': 'middle', y: ringR + 16 }, 'slots')));
  });
  const summary = nodes.map((n) => `${n.id}: ${n.state}, ${health(n)}, applied index ${n.appliedIndex}, ${n.slots} slots, ${n.liveConnections} open streams`).join('; ');
  // Drawn at its natural size, and scaled down (CSS max-width) on a narrow
  // screen.
  return s('svg', {
    class: 'cluster-svg', viewBox: `-4 -4 ${width + 8} ${height + 8}`, width: width + 8, height: height + 8, role: 'img',
    'aria-label': `Cluster of ${nodes.length} node${nodes.length === 1 ? '' : 's'}. ${summary}`,
  }, lines, tiles);
}

export function view({ sampler }) {
  const clusterBox = h('div', { class: 'cluster-picture' }, h('p', { class: 'muted' }, 'Reading the cluster…'));
  const clusterFacts = h('div', { class: 'cluster-facts' });
  const nodeTable = h('div');
  const rateNow = h('span', { id: 'rate-1m', class: 'stat-value', dataset: { value: '0' } }, '—');
  const totalEl = h('span', { class: 'stat-value', id: 'notifications-total' }, '—');
  const streamsEl = h('span', { class: 'stat-value', id: 'open-streams' }, '—');
  const metricsErr = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const charts = {
    rate: lineChart({ title: 'Notifications', unit: 'per second', key: 'rate', format: fixed(2), empty: 'Waiting for the second sample…' }),
    latency: lineChart({ title: 'Delivery latency', unit: 'ms, average', key: 'latencyMs', format: fixed(1), empty: 'No deliveries through Web Push, webhooks, FCM or APNs in this period.' }),
    failures: lineChart({ title: 'Delivery failures', unit: 'per second', key: 'failures', format: fixed(2), empty: 'Waiting for the second sample…' }),
  };

  const el = h('div', { class: 'view dashboard' },
    pageHead('Dashboard', 'The cluster and what it is doing, refreshed every few seconds.'),
    h('section', { class: 'stats', 'aria-label': 'Totals' },
      h('div', { class: 'card stat' }, h('span', { class: 'stat-label' }, 'Notifications per second, last minute'), rateNow),
      h('div', { class: 'card stat' }, h('span', { class: 'stat-label' }, 'Notifications accepted by this node'), totalEl),
      h('div', { class: 'card stat' }, h('span', { class: 'stat-label' }, 'Open live streams on this node'), streamsEl)),
    h('section', { class: 'card', 'aria-labelledby': 'cluster-h' },
      h('div', { class: 'section-head' }, h('h2', { id: 'cluster-h' }, 'Cluster'), clusterFacts),
      clusterBox,
      h('details', { class: 'node-details' }, h('summary', 'Node details'), nodeTable)),
    h('section', { 'aria-labelledby': 'charts-h' },
      h('h2', { id: 'charts-h' }, 'Live'),
      metricsErr,
      h('div', { class: 'charts' }, charts.rate, charts.latency, charts.failures),
      h('p', { class: 'muted small' }, 'Figures are this node’s, from /metrics, sampled every 2 seconds since the console was opened.')));

  let ticks = 0;
  const unsub = sampler.subscribe((smp) => {
    el.dataset.samples = String(++ticks); // lets tests wait for the next sample
    metricsErr.hidden = !smp.error;
    metricsErr.textContent = smp.error || '';
    const r = smp.windowRate('notifications', 60);
    rateNow.textContent = r == null ? '—' : fixed(2)(r);
    rateNow.dataset.value = r == null ? '0' : String(r);
    const last = smp.latest();
    if (last) {
      totalEl.textContent = num.format(last.notifications);
      streamsEl.textContent = num.format(last.streams);
    }
    const pts = smp.points;
    const lastPt = pts[pts.length - 1];
    charts.rate.update(pts, lastPt ? lastPt.rate : null);
    const lat = [...pts].reverse().find((p) => p.latencyMs != null);
    charts.latency.update(pts, lat ? lat.latencyMs : null);
    charts.failures.update(pts, lastPt ? lastPt.failures : null);
  });

  let timer = 0;
  let stopped = false;
  async function poll() {
    try {
      const c = await api('GET', '/v1.0/admin/cluster');
      if (stopped) return;
      replace(clusterBox, picture(c));
      replace(clusterFacts,
        h('span', `term ${num.format(c.term)}`), h('span', `commit index ${num.format(c.commitIndex)}`),
        h('span', `${num.format(c.slotCount)} slots`));
      replace(nodeTable, table([
        { label: 'Node', cell: (n) => n.id },
        { label: 'Role', cell: (n) => pill(n.state) },
        { label: 'Health', cell: (n) => pill(health(n), health(n) === 'healthy' ? 'ok' : 'bad') },
        { label: 'Applied index', cell: (n) => num.format(n.appliedIndex), class: 'num' },
        { label: 'Slots', cell: (n) => num.format(n.slots), class: 'num' },
        { label: 'Open streams', cell: (n) => num.format(n.liveConnections), class: 'num' },
        { label: 'HTTP', cell: (n) => n.httpAddr || '—' },
        { label: 'Raft', cell: (n) => n.raftAddr },
      ], c.nodes, { caption: 'Nodes of the cluster' }));
    } catch (e) {
      if (!stopped) replace(clusterBox, failure(e));
    }
    if (!stopped) timer = setTimeout(poll, 3000);
  }
  poll();

  return {
    el, title: 'Dashboard',
    dispose() {
      stopped = true;
      clearTimeout(timer);
      unsub();
    },
  };
}
