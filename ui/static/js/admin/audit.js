// The audit log: who did what, to what, when and from where, newest
// first. Failed sign-ins come one row per name, address and minute, with
// how many there were.

import { h, replace, fmtTime, relTime } from '../dom.js';
import { api } from '../api.js';
import { pageHead, pill, table, loading, failure, select } from './common.js';

const actions = [
  'signIn', 'signInFailure', 'refreshFailure', 'signOut', 'session.revoke',
  'user.create', 'user.update', 'user.rolesChange', 'user.passwordReset', 'user.enable', 'user.disable', 'user.delete',
  'application.create', 'application.update', 'application.delete', 'application.addPassword', 'application.removePassword',
  'cluster.addNode', 'cluster.removeNode', 'backup.download',
];

const periods = [
  { value: '', label: 'any time' },
  { value: '1h', label: 'the last hour' },
  { value: '24h', label: 'the last 24 hours' },
  { value: '7d', label: 'the last 7 days' },
];

function sinceOf(period) {
  const ms = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 }[period];
  return ms ? new Date(Date.now() - ms).toISOString() : '';
}

export function view({ params, go }) {
  const f = { actor: params.get('actor') || '', action: params.get('action') || '', period: params.get('period') || '' };
  const actor = h('input', { type: 'search', id: 'audit-actor', name: 'actor', value: f.actor, placeholder: 'name or id', autocomplete: 'off' });
  const action = select([{ value: '', label: 'any' }, ...actions], f.action, { id: 'audit-action', name: 'action' });
  const period = select(periods, f.period, { id: 'audit-period', name: 'period' });
  const apply = () => {
    const q = {};
    if (actor.value.trim()) q.actor = actor.value.trim();
    if (action.value) q.action = action.value;
    if (period.value) q.period = period.value;
    go('audit', q);
  };
  const controls = h('form', {
    class: 'card filters', 'aria-label': 'Filters',
    on: { submit: (e) => { e.preventDefault(); apply(); } },
  },
  h('label', 'Actor ', actor),
  h('label', 'Action ', action),
  h('label', 'During ', period),
  h('button', { type: 'submit', class: 'btn btn-small', id: 'audit-filter' }, 'Filter'));
  action.addEventListener('change', apply);
  period.addEventListener('change', apply);

  const tableSlot = h('div', loading());
  const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more');
  const el = h('div', { class: 'view' },
    pageHead('Audit log', 'Admin and security actions: who did what, to what, when and from where. Failed sign-ins are counted per name, address and minute.'),
    h('div', { class: 'view-body' }, controls, h('section', { class: 'card', 'aria-label': 'Audit records' }, tableSlot, more)));

  const q = new URLSearchParams({ $top: '50' });
  if (f.actor) q.set('actor', f.actor);
  if (f.action) q.set('action', f.action);
  const since = sinceOf(f.period);
  if (since) q.set('since', since);
  let next = `/v1.0/admin/auditLog?${q}`;
  const rows = [];
  async function page() {
    try {
      more.disabled = true;
      let p = await api('GET', next);
      // A page reads at most 5,000 records, so a rare action's page may be
      // empty with a nextLink; a few such pages are passed rather than
      // shown as "No records match." above "Load more".
      for (let i = 0; i < 5 && !p.value.length && p['@odata.nextLink']; i++) p = await api('GET', p['@odata.nextLink']);
      rows.push(...p.value);
      next = p['@odata.nextLink'];
      more.hidden = !next;
      replace(tableSlot, table([
        // An audit record is evidence: the exact time, with its zone, is
        // on the page (not only in a tooltip that a keyboard, a screen
        // reader or a phone never shows), and how long ago under it.
        { label: 'When', cell: (r) => h('div', h('time', { datetime: r.dateTime }, fmtTime(r.dateTime)), h('div', { class: 'muted small' }, relTime(r.dateTime))) },
        { label: 'Actor', cell: (r) => h('div', h('strong', r.actor.name || r.actor.id || '—'), h('div', { class: 'muted small' }, r.actor.type)) },
        { label: 'Action', cell: (r) => h('span', { class: 'mono' }, r.action) },
        { label: 'Target', cell: (r) => r.target || '—' },
        { label: 'From', cell: (r) => h('span', { class: 'mono' }, r.clientAddress || '—') },
        { label: 'Result', cell: (r) => pill(r.result, r.result === 'success' ? 'ok' : 'bad') },
        { label: 'Detail', cell: (r) => (r.detail ? h('span', { class: 'small' }, r.detail) : '—') },
      ], rows, {
        caption: 'Audit records',
        empty: 'No records match.',
        rowAttrs: (r) => ({ 'data-action': r.action, 'data-id': r.id }),
      }));
    } catch (e) {
      replace(tableSlot, failure(e, page));
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener('click', page);
  page();
  return { title: 'Audit log', el };
}
