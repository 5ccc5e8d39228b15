// The feed explorer: any user's notifications, filtered, newest first.

import { h, replace, timeEl } from '../dom.js';
import { api } from '../api.js';
import { pageHead, pill, table, loading, failure, select, users as loadUsers, apps as loadApps, userOptions } from './common.js';
import { titleOf, bodyOf } from '../card.js';

export function view({ params, go }) {
  const root = h('div', { class: 'view-body' }, loading());
  const el = h('div', { class: 'view' },
    pageHead('Feed explorer', 'What a user’s feed holds, as their devices see it.'), root);

  async function load() {
    let users;
    let apps;
    try {
      [users, apps] = await Promise.all([loadUsers(params.get('user')), loadApps()]);
    } catch (e) {
      replace(root, failure(e, load));
      return;
    }
    const f = {
      user: params.get('user') || '',
      readState: params.get('readState') || '',
      userActionState: params.get('userActionState') || '',
      status: params.get('status') || 'active',
      targetHostName: params.get('targetHostName') || '',
    };
    const controls = h('form', { class: 'card filters', 'aria-label': 'Filters', on: { submit: (e) => e.preventDefault() } },
      h('label', 'User ', select(userOptions(users), f.user, { id: 'feed-user', name: 'user' })),
      h('label', 'Read ', select([{ value: '', label: 'any' }, 'unread', 'read'], f.readState, { name: 'readState' })),
      h('label', 'Action ', select([{ value: '', label: 'any' }, 'noInteraction', 'activated', 'dismissed', 'snoozed'], f.userActionState, { name: 'userActionState' })),
      h('label', 'Status ', select(['active', 'deleted', 'any'], f.status, { name: 'status' })),
      h('label', 'Application ', select([{ value: '', label: 'any' }, ...apps.map((a) => ({ value: a.targetHostName, label: a.displayName }))], f.targetHostName, { name: 'targetHostName' })));
    controls.addEventListener('change', () => {
      const q = {};
      for (const s of controls.querySelectorAll('select')) if (s.value) q[s.name] = s.value;
      go('feed', q);
    });
    const results = h('div');
    replace(root, controls, h('section', { class: 'card', 'aria-label': 'Notifications' }, results));
    if (!f.user) {
      replace(results, h('p', { class: 'muted' }, 'Choose a user to see their feed.'));
      return;
    }
    const q = new URLSearchParams({ $top: '50' });
    for (const k of ['readState', 'userActionState', 'status', 'targetHostName']) if (f[k]) q.set(k, f[k]);
    const rows = [];
    const more = h('button', { type: 'button', class: 'btn', hidden: true }, 'Load more');
    const tableSlot = h('div');
    let next = `/v1.0/users/${encodeURIComponent(f.user)}/notifications?${q}`;
    async function page() {
      try {
        more.disabled = true;
        let p = await api('GET', next);
        // A page of a filtered feed reads at most 2,000 notifications and
        // may be empty with a nextLink: "No notifications match." above
        // "Load more" would mislead, so a few such pages are passed.
        for (let i = 0; i < 5 && !p.value.length && p['@odata.nextLink']; i++) p = await api('GET', p['@odata.nextLink']);
        rows.push(...p.value);
        next = p['@odata.nextLink'];
        more.hidden = !next;
        replace(tableSlot, table([
          { label: 'Sent', cell: (n) => timeEl(n.createdDateTime) },
          { label: 'Notification', cell: (n) => h('div', h('strong', titleOf(n)), bodyOf(n) ? h('div', { class: 'muted small clamp' }, bodyOf(n)) : null) },
          { label: 'Application', cell: (n) => n.targetHostName },
          { label: 'Read', cell: (n) => pill(n.readState) },
          { label: 'Action', cell: (n) => pill(n.userActionState) },
          { label: 'Status', cell: (n) => pill(n.status) },
          { label: 'Deliveries', cell: (n) => h('a', { class: 'btn btn-small', href: `#/deliveries?user=${encodeURIComponent(f.user)}&n=${encodeURIComponent(n.id)}` }, 'Delivery log') },
        ], rows, { caption: 'Notifications', empty: 'No notifications match.', rowAttrs: (n) => ({ 'data-id': n.id }) }));
      } catch (e) {
        replace(tableSlot, failure(e, page));
      } finally {
        more.disabled = false;
      }
    }
    more.addEventListener('click', page);
    replace(results, tableSlot, more);
    page();
  }
  load();
  return { title: 'Feed explorer', el };
}
