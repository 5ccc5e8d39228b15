// The delivery log: every delivery of one notification, with its state,
// attempts and last error. It refreshes itself while deliveries are
// pending.

import { h, replace, timeEl, fmtTime } from '../dom.js';
import { api } from '../api.js';
import { pageHead, pill, table, loading, failure, select, users as loadUsers, userOptions } from './common.js';
import { titleOf } from '../card.js';

export function view({ params, go }) {
  const root = h('div', { class: 'view-body' }, loading());
  const el = h('div', { class: 'view' },
    pageHead('Delivery log', 'Where a notification went: each subscription, its state, attempts and errors.'), root);
  let timer = 0;
  let stopped = false;
  const user = params.get('user') || '';
  const nid = params.get('n') || '';

  async function load() {
    let users;
    try {
      users = await loadUsers(user);
    } catch (e) {
      replace(root, failure(e, load));
      return;
    }
    const pick = select(userOptions(users), user, { id: 'log-user' });
    pick.addEventListener('change', () => go('deliveries', pick.value ? { user: pick.value } : {}));
    const body = h('div');
    replace(root, h('div', { class: 'card filters' }, h('label', 'User ', pick)), body);
    if (!user) {
      replace(body, h('p', { class: 'muted' }, 'Choose a user, then one of their notifications.'));
      return;
    }
    if (!nid) {
      try {
        const p = await api('GET', `/v1.0/users/${encodeURIComponent(user)}/notifications?$top=25&status=any`);
        replace(body, h('section', { class: 'card' }, h('h2', 'Recent notifications'),
          p.value.length ? h('ul', { class: 'link-list' }, p.value.map((n) => h('li',
            h('a', { href: `#/deliveries?user=${encodeURIComponent(user)}&n=${encodeURIComponent(n.id)}` }, titleOf(n)),
            ' ', h('span', { class: 'muted small' }, n.targetHostName, ' · ', timeEl(n.createdDateTime)))))
            : h('p', { class: 'muted' }, 'This user has no notifications yet.')));
      } catch (e) {
        replace(body, failure(e, load));
      }
      return;
    }
    const summary = h('div');
    const log = h('div', loading());
    const refreshBtn = h('button', { type: 'button', class: 'btn btn-small', on: { click: () => refresh() } }, 'Refresh');
    const status = h('span', { class: 'muted small', 'aria-live': 'polite' });
    replace(body, h('section', { class: 'card' }, summary,
      h('div', { class: 'section-head' }, h('h2', 'Deliveries'), h('div', { class: 'actions' }, status, refreshBtn)), log));

    let subs = new Map();
    try {
      const [n, s] = await Promise.all([
        api('GET', `/v1.0/users/${encodeURIComponent(user)}/notifications/${encodeURIComponent(nid)}`),
        api('GET', `/v1.0/users/${encodeURIComponent(user)}/notificationSubscriptions`),
      ]);
      subs = new Map(s.value.map((x) => [x.id, x]));
      replace(summary, n
        ? h('div', h('h2', titleOf(n)), h('p', { class: 'muted' }, `${n.targetHostName} · sent ${fmtTime(n.createdDateTime)} · `, pill(n.readState), ' ', pill(n.userActionState), ' ', pill(n.status)),
          h('p', { class: 'muted small mono' }, n.id))
        : h('p', { class: 'muted mono' }, nid));
    } catch (e) {
      replace(summary, failure(e));
    }

    async function refresh() {
      clearTimeout(timer);
      let pending = false;
      try {
        const d = await api('GET', `/v1.0/users/${encodeURIComponent(user)}/notifications/${encodeURIComponent(nid)}/deliveries`);
        if (stopped) return;
        pending = d.value.some((x) => x.state === 'pending');
        replace(log, table([
          { label: 'Subscription', cell: (x) => { const s = subs.get(x.subscriptionId); return h('div', h('strong', s ? (s.deviceName || 'Unnamed device') : 'Removed subscription'), h('div', { class: 'muted small mono' }, x.subscriptionId)); } },
          { label: 'Channel', cell: (x) => x.channelType },
          { label: 'Platform', cell: (x) => x.platformType },
          { label: 'State', cell: (x) => pill(x.state) },
          { label: 'Attempts', cell: (x) => String(x.attempts), class: 'num' },
          { label: 'Last attempt', cell: (x) => (x.lastAttemptDateTime ? timeEl(x.lastAttemptDateTime) : '—') },
          { label: 'Delivered', cell: (x) => (x.deliveredDateTime ? timeEl(x.deliveredDateTime) : '—') },
          { label: 'Last error', cell: (x) => (x.lastError ? h('span', { class: 'error-text' }, x.lastError) : '—') },
          { label: 'Attempts in detail', cell: (x) => history(x.attemptHistory) },
        ], d.value, {
          caption: 'Deliveries',
          empty: 'No deliveries: when it was sent, the user had no active subscription that this notification targets. It is still in their feed.',
          rowAttrs: (x) => ({ 'data-subscription': x.subscriptionId, 'data-state': x.state }),
        }));
        status.textContent = pending ? 'Some deliveries are pending; refreshing every 2 seconds.' : `Updated ${new Date().toLocaleTimeString()}.`;
      } catch (e) {
        if (!stopped) replace(log, failure(e, refresh));
      }
      if (pending && !stopped) timer = setTimeout(refresh, 2000);
    }
    refresh();
  }
  // history lists each attempt: when, what came of it, and its error.
  function history(list) {
    if (!list || list.length === 0) return '—';
    return h('details', h('summary', `${list.length} attempt${list.length === 1 ? '' : 's'}`),
      h('ol', { class: 'attempts small' }, ...list.map((a) => h('li', timeEl(a.dateTime), ' ', pill(a.outcome),
        a.error ? h('span', { class: 'error-text' }, ' ', a.error) : null))));
  }
  load();
  return {
    title: 'Delivery log', el,
    dispose() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
