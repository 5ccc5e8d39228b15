// How a notification looks: in the inbox, in the composer's preview and in
// the feed explorer alike.

import { h, timeEl } from './dom.js';

export function titleOf(n) {
  const vc = n.payload && n.payload.visualContent;
  if (vc && vc.title) return vc.title;
  return n.payload && n.payload.rawContent ? 'Data notification' : 'Notification';
}

export function bodyOf(n) {
  const vc = n.payload && n.payload.visualContent;
  return vc && vc.body ? vc.body : '';
}

// notificationCard builds the card; actions, when given, go in its footer.
export function notificationCard(n, { preview = false, actions = null, appName } = {}) {
  const unread = n.readState === 'unread';
  const dismissed = n.userActionState === 'dismissed';
  const title = titleOf(n);
  const body = bodyOf(n);
  const headingId = `n-${n.id}-title`;
  return h('article', {
    class: ['notif', unread ? 'is-unread' : 'is-read', dismissed ? 'is-dismissed' : '', preview ? 'is-preview' : ''],
    'aria-labelledby': headingId,
    tabindex: preview ? null : '0',
    dataset: { id: n.id, read: n.readState, action: n.userActionState, title },
  },
  h('header', { class: 'notif-head' },
    h('span', { class: 'notif-app', title: n.targetHostName }, appName || n.targetHostName),
    unread ? h('span', { class: 'dot', title: 'Unread' }, h('span', { class: 'sr-only' }, 'Unread')) : null,
    h('span', { class: 'notif-time' }, timeEl(n.createdDateTime))),
  h('h3', { id: headingId, class: 'notif-title' }, title),
  body ? h('p', { class: 'notif-body' }, body) : null,
  // High is the default for anything with a title, so only Low is worth
  // a tag.
  (n.priority === 'Low' || n.groupName || dismissed)
    ? h('p', { class: 'notif-tags' },
      n.priority === 'Low' ? h('span', { class: 'tag' }, 'Low priority') : null,
      n.groupName ? h('span', { class: 'tag' }, n.groupName) : null,
      dismissed ? h('span', { class: 'tag' }, 'Dismissed') : null)
    : null,
  actions ? h('footer', { class: 'notif-actions' }, actions) : null);
}
