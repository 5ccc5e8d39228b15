// Users: create, disable or enable, reset a password, change the role,
// delete; and one user's
// subscriptions with their last delivery, and their sign-in sessions.

import { h, replace, errorBox, field, busy, toast, timeEl, fmtTime, submitter } from '../dom.js';
import { api } from '../api.js';
import { pageHead, pill, table, loading, failure, select, dialog, userLabel } from './common.js';

function resetPassword(u) {
  const pw = h('input', { type: 'password', name: 'password', minlength: 8, required: true, autocomplete: 'new-password' });
  dialog({
    title: `Reset the password of ${u.userPrincipalName}`,
    body: [field('New password', pw, 'At least 8 characters. The user is signed out everywhere.')],
    submitLabel: 'Reset password',
    onSubmit: async () => {
      await api('PATCH', `/v1.0/users/${encodeURIComponent(u.id)}`, { password: pw.value });
      toast(`The password of ${u.userPrincipalName} was reset.`);
    },
  });
}

// setEnabled enables an account at once. Disabling signs the user out of
// every device, so it asks first; the answer is awaited, so that the list
// is redrawn before the dialog hands the focus back.
function setEnabled(u, enabled, after) {
  const done = () => toast(enabled ? `${u.userPrincipalName} can sign in again.` : `${u.userPrincipalName} is disabled and signed out everywhere.`);
  const change = () => api('PATCH', `/v1.0/users/${encodeURIComponent(u.id)}`, { accountEnabled: enabled });
  if (enabled) {
    return change().then(() => { done(); return after(); }, (e) => toast(e.message, 'error'));
  }
  dialog({
    title: `Disable ${u.userPrincipalName}?`,
    body: [h('p', `${userLabel(u)} is signed out on every device at once and cannot sign in until an admin enables the account again. Their notifications and subscriptions are kept.`)],
    submitLabel: 'Disable',
    danger: true,
    returnTo: () => document.querySelector(`#main [data-enable="${CSS.escape(u.id)}"]`),
    onSubmit: async () => {
      await change();
      done();
      await after();
    },
  });
  return null;
}

// deleteUser asks, then deletes u for good; afterDelete runs once it is
// gone (the list reloads; a user's own page goes back to the list).
function deleteUser(u, afterDelete) {
  dialog({
    title: `Delete ${u.userPrincipalName}?`,
    body: [h('p', `${userLabel(u)} is signed out on every device, and their notifications, subscriptions and sessions are removed for good. To keep them, disable the account instead.`)],
    submitLabel: 'Delete user',
    danger: true,
    onSubmit: async () => {
      await api('DELETE', `/v1.0/users/${encodeURIComponent(u.id)}`);
      toast(`${u.userPrincipalName} was deleted.`);
      await afterDelete();
    },
  });
}

function changeRole(u, after) {
  const current = (u.roles || []).includes('admin') ? 'admin' : 'user';
  const role = select([{ value: 'user', label: 'User' }, { value: 'admin', label: 'Admin' }], current, { name: 'role' });
  dialog({
    title: `Change the role of ${u.userPrincipalName}`,
    body: [field('Role', role, 'Admins manage users, applications and the cluster; users read their own notifications.')],
    submitLabel: 'Save role',
    onSubmit: async () => {
      const updated = await api('PATCH', `/v1.0/users/${encodeURIComponent(u.id)}`, { roles: [role.value] });
      toast(`${u.userPrincipalName} is now ${(updated.roles || [role.value]).join(', ')}.`);
      await after();
    },
  });
}

function actions(u, go, after, afterDelete = after) {
  const enabled = u.accountEnabled;
  return h('div', { class: 'row-actions' },
    h('a', { class: 'btn btn-small', href: `#/users/${encodeURIComponent(u.userPrincipalName)}` }, 'Subscriptions'),
    h('a', { class: 'btn btn-small', href: `#/compose?user=${encodeURIComponent(u.id)}` }, 'Send'),
    h('a', { class: 'btn btn-small', href: `#/feed?user=${encodeURIComponent(u.id)}` }, 'Feed'),
    h('button', {
      type: 'button', class: ['btn', 'btn-small', enabled ? 'btn-danger-outline' : ''], 'aria-label': `${enabled ? 'Disable' : 'Enable'} ${u.userPrincipalName}`,
      dataset: { enable: u.id },
      on: { click: (e) => (enabled ? setEnabled(u, false, after) : busy(e.currentTarget, () => setEnabled(u, true, after))) },
    }, enabled ? 'Disable' : 'Enable'),
    h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Reset the password of ${u.userPrincipalName}`, on: { click: () => resetPassword(u) } }, 'Reset password'),
    h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Change the role of ${u.userPrincipalName}`, on: { click: () => changeRole(u, after) } }, 'Role'),
    h('button', { type: 'button', class: 'btn btn-small btn-danger-outline', 'aria-label': `Delete ${u.userPrincipalName}`, on: { click: () => deleteUser(u, afterDelete) } }, 'Delete'));
}

function createForm(onCreated) {
  const upn = h('input', { id: 'new-user-upn', name: 'userPrincipalName', required: true, autocapitalize: 'none', spellcheck: 'false', autocomplete: 'off' });
  const name = h('input', { id: 'new-user-name', name: 'displayName', autocomplete: 'off' });
  const pw = h('input', { id: 'new-user-password', name: 'password', type: 'password', minlength: 8, required: true, autocomplete: 'new-password' });
  const role = select([{ value: 'user', label: 'User' }, { value: 'admin', label: 'Admin' }], 'user', { id: 'new-user-role' });
  const err = errorBox();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'new-user-submit' }, 'Create user');
  const form = h('form', {
    class: 'card form-grid form-cols', 'aria-labelledby': 'new-user-h',
    on: {
      submit: submitter(submit, err, async () => {
        const u = await api('POST', '/v1.0/users', {
          userPrincipalName: upn.value.trim(), displayName: name.value.trim() || upn.value.trim(),
          password: pw.value, roles: [role.value],
        });
        toast(`${u.userPrincipalName} was created.`);
        form.reset();
        onCreated(u);
      }),
    },
  },
  h('h2', { id: 'new-user-h' }, 'Add a user'),
  field('User name', upn, 'What they sign in with, e.g. alice or alice@example.com.'),
  field('Display name', name),
  field('Password', pw, 'At least 8 characters.'),
  field('Role', role),
  err,
  h('div', { class: 'actions' }, submit));
  return form;
}

export function list({ go }) {
  const body = h('div', loading());
  const more = h('button', { type: 'button', class: 'btn', id: 'users-more', hidden: true }, 'Load more');
  let rows = [];
  let next = '';
  // A page of 200 at a time: a large tenant's tens of thousands of users
  // took 25 requests before the list showed anything, and every user past
  // the 5,000th was missing from it.
  async function page() {
    try {
      more.disabled = true;
      const p = await api('GET', next);
      rows.push(...p.value);
      next = p['@odata.nextLink'];
      more.hidden = !next;
      replace(body, table([
        { label: 'User', cell: (u) => h('div', h('strong', u.displayName || u.userPrincipalName), h('div', { class: 'muted small' }, u.userPrincipalName)) },
        { label: 'Roles', cell: (u) => (u.roles || []).join(', ') },
        { label: 'Status', cell: (u) => pill(u.accountEnabled ? 'enabled' : 'disabled') },
        { label: 'Created', cell: (u) => timeEl(u.createdDateTime) },
        { label: 'Actions', cell: (u) => actions(u, go, load) },
      ], rows, { caption: 'Users', empty: 'No users yet.', rowAttrs: (u) => ({ 'data-upn': u.userPrincipalName }) }));
    } catch (e) {
      replace(body, failure(e, page));
    } finally {
      more.disabled = false;
    }
  }
  async function load() {
    rows = [];
    next = '/v1.0/users?$top=200';
    more.hidden = true;
    await page();
  }
  more.addEventListener('click', page);
  load();
  return {
    title: 'Users',
    el: h('div', { class: 'view' },
      pageHead('Users', 'People who sign in to Herald and receive notifications.'),
      createForm(load),
      h('section', { class: 'card', 'aria-label': 'All users' }, body, more)),
  };
}

function channelText(c) {
  if (!c) return '—';
  if (c.type === 'webhook' && c.url) return `webhook → ${c.url}`;
  if (c.type === 'webPush' && c.endpoint) return `Web Push → ${new URL(c.endpoint).host}`;
  return c.type;
}

function lastDeliveryCell(d) {
  if (!d) return h('span', { class: 'muted' }, 'none yet');
  return h('div', { class: 'stack' },
    h('span', pill(d.state), ' ', timeEl(d.deliveredDateTime || d.lastAttemptDateTime)),
    d.lastError ? h('span', { class: 'small error-text' }, d.lastError) : null,
    h('a', { class: 'small', href: `#/deliveries?user=${encodeURIComponent(d.userId || '')}&n=${encodeURIComponent(d.notificationId)}` }, 'Delivery log'));
}

// endSession asks, then ends one of u's sessions: its tokens stop working
// on every node at once.
function endSession(u, sess, done) {
  dialog({
    title: `End this session of ${u.userPrincipalName}?`,
    body: [h('p', `Signed in ${fmtTime(sess.createdDateTime)} from ${sess.clientAddress || 'an unknown address'}. The device is signed out at once; the user can sign in again.`)],
    submitLabel: 'End session',
    danger: true,
    onSubmit: async () => {
      await api('DELETE', `/v1.0/users/${encodeURIComponent(u.id)}/sessions/${encodeURIComponent(sess.id)}`);
      toast('The session was ended.');
      await done();
    },
  });
}

export function detail({ parts }) {
  const id = parts[1];
  const head = h('div', pageHead('User', 'Loading…'));
  const body = h('div', loading());
  async function load() {
    try {
      const u = await api('GET', `/v1.0/users/${encodeURIComponent(id)}`);
      const [subs, last, sessions] = await Promise.all([
        api('GET', `/v1.0/users/${encodeURIComponent(u.id)}/notificationSubscriptions`),
        api('GET', `/v1.0/admin/users/${encodeURIComponent(u.id)}/lastDeliveries`),
        api('GET', `/v1.0/users/${encodeURIComponent(u.id)}/sessions`),
      ]);
      const byID = new Map(last.value.map((d) => [d.subscriptionId, { ...d, userId: u.id }]));
      replace(head, pageHead(userLabel(u), `${(u.roles || []).join(', ')} · ${u.accountEnabled ? 'enabled' : 'disabled'} · created ${new Date(u.createdDateTime).toLocaleDateString()}`,
        actions(u, null, load, () => { location.hash = '#/users'; })));
      replace(body,
        h('h2', 'Subscriptions'),
        h('p', { class: 'muted' }, 'Each device or endpoint that registered for this user’s notifications.'),
        table([
          { label: 'Device', cell: (s) => h('div', h('strong', s.deviceName || 'Unnamed device'), h('div', { class: 'muted small mono' }, s.id)) },
          { label: 'Application', cell: (s) => s.targetHostName },
          { label: 'Channel', cell: (s) => channelText(s.channel) },
          { label: 'Platform', cell: (s) => s.platformType },
          { label: 'Status', cell: (s) => h('div', { class: 'stack' }, pill(s.status), s.statusReason ? h('span', { class: 'small muted' }, s.statusReason) : null) },
          { label: 'Expires', cell: (s) => timeEl(s.expirationDateTime) },
          { label: 'Last delivery', cell: (s) => lastDeliveryCell(byID.get(s.id)) },
        ], subs.value, { caption: 'Subscriptions', empty: 'This user has no subscriptions. They get one by opening their inbox, or when an app on their device registers.' }),
        h('h2', 'Sessions'),
        h('p', { class: 'muted' }, 'Each sign-in of this user that is still valid. Ending one signs that device out everywhere at once.'),
        table([
          { label: 'Signed in', cell: (x) => timeEl(x.createdDateTime) },
          { label: 'Last used', cell: (x) => timeEl(x.lastUsedDateTime) },
          { label: 'From', cell: (x) => h('span', { class: 'mono' }, x.clientAddress || '—') },
          { label: 'Client', cell: (x) => h('span', { class: 'small' }, x.userAgent || '—', x.current ? h('span', ' ', pill('this session', 'accent')) : null) },
          { label: 'Actions', cell: (x) => h('button', { type: 'button', class: 'btn btn-small btn-danger-outline', 'aria-label': `End the session from ${x.clientAddress} signed in ${x.createdDateTime}`, on: { click: () => endSession(u, x, load) } }, 'End session') },
        ], sessions.value, { caption: 'Sessions', empty: 'This user is not signed in anywhere.', rowAttrs: (x) => ({ 'data-session': x.id }) }));
    } catch (e) {
      replace(body, failure(e, load));
    }
  }
  load();
  return { title: 'User', el: h('div', { class: 'view' }, head, h('section', { class: 'card' }, body)) };
}
