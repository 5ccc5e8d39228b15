// A small SVG line chart of the sampler's points. The drawing stretches to
// its box (the stroke does not), and the numbers beside it are HTML, so
// the text stays crisp at any width.

import { h, s } from './dom.js';

export function lineChart({ title, unit, key, format, empty }) {
  const value = h('span', { class: 'chart-value', dataset: { metric: key } }, '—');
  const max = h('span', { class: 'chart-max' });
  const area = s('path', { class: 'chart-area' });
  const line = s('path', { class: 'chart-line', 'vector-effect': 'non-scaling-stroke' });
  const graph = s('svg', { viewBox: '0 0 300 80', preserveAspectRatio: 'none', class: 'chart-svg', 'aria-hidden': 'true' }, area, line);
  const note = h('p', { class: 'chart-note muted', hidden: true }, empty);
  const el = h('figure', { class: 'card chart' },
    h('figcaption', h('span', { class: 'chart-title' }, title), h('span', value, h('small', ' ' + unit))),
    h('div', { class: 'chart-plot' }, graph, max),
    note);

  el.update = (points, current) => {
    value.textContent = current == null ? '—' : format(current);
    const pts = points.filter((p) => p[key] != null);
    note.hidden = pts.length > 0;
    if (pts.length < 2) {
      line.setAttribute('d', '');
      area.setAttribute('d', '');
      max.textContent = '';
      return;
    }
    const t0 = pts[0].t;
    const t1 = pts[pts.length - 1].t;
    const top = Math.max(...pts.map((p) => p[key])) || 1;
    max.textContent = 'max ' + format(top);
    const x = (t) => ((t - t0) / Math.max(1e-9, t1 - t0)) * 300;
    const y = (v) => 78 - (v / top) * 72;
    const d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join('');
    line.setAttribute('d', d);
    area.setAttribute('d', `${d}L300,80L0,80Z`);
  };
  return el;
}
