// The composer: send a test notification to a user, with a preview of how
// a device shows it.

import { h, replace, errorBox, field, busy } from '../dom.js';
import { api } from '../api.js';
import { pageHead, loading, failure, select, users as loadUsers, apps as loadApps, userOptions, appOptions } from './common.js';
import { notificationCard } from '../card.js';

const platforms = [
  { value: 'windows', label: 'Windows' },
  { value: 'ios', label: 'iOS' },
  { value: 'android', label: 'Android' },
  { value: 'webPush', label: 'Web' },
];

const lifetimes = [
  { value: '3600', label: '1 hour' },
  { value: '86400', label: '1 day' },
  { value: '604800', label: '7 days (default)' },
  { value: '2592000', label: '30 days' },
];

// expiry is the expirationDateTime for a lifetime in seconds: none for the
// server's default, and the 30-day maximum a few minutes short, so that a
// browser clock slightly ahead of the server's is not refused.
function expiry(secs) {
  if (secs === 604800) return undefined;
  const margin = secs >= 2592000 ? 300 : 0;
  return new Date(Date.now() + (secs - margin) * 1000).toISOString();
}

export function view({ params }) {
  const root = h('div', { class: 'view-body' }, loading());
  const el = h('div', { class: 'view' },
    pageHead('Composer', 'Send a test notification to a user, as one of the applications.'), root);

  async function load() {
    let users;
    let apps;
    try {
      [users, apps] = await Promise.all([loadUsers(params.get('user')), loadApps()]);
    } catch (e) {
      replace(root, failure(e, load));
      return;
    }
    if (!apps.length) {
      replace(root, h('div', { class: 'card empty' }, h('h2', 'Register an application first'),
        h('p', 'Every notification comes from an application. Register one, then come back to send.'),
        h('a', { class: 'btn btn-primary', href: '#/apps' }, 'Go to applications')));
      return;
    }
    const to = select(userOptions(users), params.get('user') || '', { id: 'compose-user', 'data-api': 'userId', required: true });
    const appSel = select(appOptions(apps), params.get('app') || (apps.length === 1 ? apps[0].targetHostName : ''), { id: 'compose-app', 'data-api': 'targetHostName', required: true });
    const title = h('input', { id: 'compose-title', 'data-api': 'payload.visualContent.title', required: true, maxlength: 500, autocomplete: 'off' });
    const body = h('textarea', { id: 'compose-body', 'data-api': 'payload.visualContent.body', rows: 3 });
    const priority = select(['High', 'None', 'Low'], 'High', { id: 'compose-priority', 'data-api': 'priority' });
    const group = h('input', { id: 'compose-group', 'data-api': 'groupName', maxlength: 256, autocomplete: 'off' });
    const appNid = h('input', { id: 'compose-appnid', 'data-api': 'appNotificationId', maxlength: 256, autocomplete: 'off' });
    const raw = h('textarea', { id: 'compose-raw', 'data-api': 'payload.rawContent', rows: 2, class: 'mono' });
    const ttl = select(lifetimes, '604800', { id: 'compose-ttl', 'data-api': 'expirationDateTime' });
    const boxes = platforms.map((p) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: p.value, name: 'platform' }), p.label));
    const err = errorBox();
    const result = h('div', { id: 'compose-result', 'aria-live': 'polite' });
    const send = h('button', { type: 'submit', class: 'btn btn-primary', id: 'compose-send' }, 'Send notification');
    const preview = h('div', { class: 'preview-slot' });
    const request = h('pre', { class: 'mono small request' });

    function payload() {
      const p = {};
      if (title.value.trim()) p.visualContent = { title: title.value.trim(), body: body.value.trim() || undefined };
      if (raw.value) p.rawContent = raw.value;
      const chosen = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      return {
        targetHostName: appSel.value,
        payload: p,
        priority: priority.value,
        groupName: group.value.trim() || undefined,
        appNotificationId: appNid.value.trim() || undefined,
        targetPolicy: chosen.length ? { platformTypes: chosen } : undefined,
        expirationDateTime: expiry(Number(ttl.value)),
      };
    }

    function update() {
      const b = payload();
      const app = apps.find((a) => a.targetHostName === appSel.value);
      replace(preview, notificationCard({
        id: 'preview', targetHostName: app ? app.displayName : 'Choose an application',
        payload: b.payload.visualContent ? b.payload : { visualContent: { title: 'Your title appears here', body: 'And the body here.' } },
        priority: b.priority, readState: 'unread', userActionState: 'noInteraction', createdDateTime: new Date().toISOString(),
        groupName: b.groupName,
      }, { preview: true }));
      const shown = { ...b, expirationDateTime: b.expirationDateTime && `now + ${ttl.selectedOptions[0].textContent}` };
      request.textContent = JSON.stringify(shown, null, 2);
    }

    const form = h('form', {
      class: 'card form-grid', 'aria-label': 'Notification',
      on: {
        input: update,
        change: update,
        submit: (e) => {
          e.preventDefault();
          err.show(null);
          busy(send, async () => {
            const user = users.find((u) => u.id === to.value);
            try {
              const n = await api('POST', `/v1.0/users/${encodeURIComponent(to.value)}/notifications`, payload());
              const q = `user=${encodeURIComponent(to.value)}&n=${encodeURIComponent(n.id)}`;
              replace(result, h('div', { class: 'card notice notice-ok', role: 'status' },
                h('p', h('strong', 'Sent. '), `“${n.payload.visualContent ? n.payload.visualContent.title : n.id}” is in the feed of ${user ? user.userPrincipalName : 'the user'} and on its way to their devices.`),
                h('p', { class: 'actions' },
                  h('a', { class: 'btn btn-small', href: `#/deliveries?${q}`, id: 'compose-deliveries' }, 'Delivery log'),
                  h('a', { class: 'btn btn-small', href: `#/feed?user=${encodeURIComponent(to.value)}` }, 'Feed'))));
              result.dataset.notificationId = n.id;
              // The notice says it (role=status); a toast as well would only
              // cover its buttons on a phone.
            } catch (ex) {
              err.show(ex);
            }
          });
        },
      },
    },
    field('To', to),
    field('From application', appSel),
    field('Title', title),
    field('Body', body),
    h('details', { class: 'more' }, h('summary', 'More options'),
      h('div', { class: 'form-grid' },
        field('Priority', priority),
        field('Expires after', ttl),
        field('Group', group, 'Notifications of one group can be removed together.'),
        field('App notification id', appNid, 'Sending again with the same id replaces the earlier notification.'),
        field('Raw content', raw, 'Data for the application on the device; not shown to the user.'),
        h('fieldset', { class: 'checks' }, h('legend', 'Platforms (none chosen: all)'), boxes))),
    err,
    h('div', { class: 'actions' }, send));

    update();
    replace(root, h('div', { class: 'compose' },
      h('div', form, result),
      h('aside', { class: 'card preview', 'aria-label': 'Preview' },
        h('h2', 'Preview'), preview,
        h('details', h('summary', 'Request body'), request))));
  }
  load();
  return { title: 'Composer', el };
}
