// Pieces the console's views share.

import { h, errorBox, submitter } from '../dom.js';
import { all, api } from '../api.js';

// users is the pickers' list: the first 5,000 users, and the one that
// chosen (an id from a link, such as the Users page's Send and Feed) names
// if it is past them, so that a large tenant's later users can be chosen.
export async function users(chosen) {
  const list = await all('/v1.0/users?$top=200', 5000);
  if (!chosen || list.some((u) => u.id === chosen)) return list;
  try {
    return [...list, await api('GET', `/v1.0/users/${encodeURIComponent(chosen)}`)];
  } catch {
    return list;
  }
}
export const apps = () => all('/v1.0/applications?$top=200', 5000);

// pageHead is a view's heading; the router focuses the h1 after a
// navigation, so keyboard and screen-reader users land on the new view.
export function pageHead(title, intro, ...actions) {
  return h('header', { class: 'page-head' },
    h('div', h('h1', { tabindex: '-1' }, title), intro ? h('p', { class: 'muted' }, intro) : null),
    actions.length ? h('div', { class: 'actions' }, actions) : null);
}

const tones = {
  active: 'ok', delivered: 'ok', enabled: 'ok', leader: 'accent', follower: 'ok', healthy: 'ok', unread: 'accent',
  pending: 'warn', candidate: 'warn', expired: 'muted', skipped: 'muted', read: 'muted', noInteraction: 'muted',
  disabled: 'bad', failed: 'bad', unreachable: 'bad', deleted: 'bad', dismissed: 'muted', activated: 'ok', snoozed: 'warn',
};

export function pill(text, tone) {
  return h('span', { class: ['pill', 'pill-' + (tone || tones[text] || 'muted')] }, text);
}

// table renders rows with columns [{label, cell(row), class}]. On a phone
// each row becomes a card that labels its cells (CSS reads data-label).
export function table(columns, rows, { empty = 'Nothing to show.', caption, rowAttrs } = {}) {
  if (!rows.length) return h('p', { class: 'empty-inline muted' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'data' },
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', h('tr', columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
      h('tbody', rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : null,
        columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(r))))))));
}

export function loading(what = 'Loading…') {
  return h('p', { class: 'loading muted', role: 'status' }, what);
}

// failure shows an API error in words with a way to try again.
export function failure(err, retry) {
  return h('div', { class: 'card notice notice-bad', role: 'alert' },
    h('p', err.message || String(err)),
    retry ? h('button', { type: 'button', class: 'btn', on: { click: retry } }, 'Try again') : null);
}

export function select(options, value, attrs = {}) {
  return h('select', attrs, options.map((o) => {
    const opt = typeof o === 'string' ? { value: o, label: o } : o;
    return h('option', { value: opt.value, selected: opt.value === value }, opt.label);
  }));
}

export function userOptions(list, placeholder = 'Choose a user…') {
  return [{ value: '', label: placeholder }, ...list.map((u) => ({
    value: u.id, label: u.displayName && u.displayName !== u.userPrincipalName ? `${u.displayName} (${u.userPrincipalName})` : u.userPrincipalName,
  }))];
}

export function appOptions(list, placeholder = 'Choose an application…') {
  return [{ value: '', label: placeholder }, ...list.map((a) => ({ value: a.targetHostName, label: `${a.displayName} — ${a.targetHostName}` }))];
}

// dialog opens a modal form: showModal traps focus inside and Escape
// closes it. onSubmit returns a promise; an error stays in the dialog.
// The dialog is named by its title, and on closing gives the focus back to
// the control that opened it, or, when the view was redrawn meanwhile, to
// the control that took its place (returnTo, else the same name) or the
// view's heading: a keyboard user never lands at the top of the page.
let dialogs = 0;
export function dialog({ title, body = [], submitLabel = 'Save', danger = false, onSubmit, returnTo }) {
  const opener = document.activeElement;
  const openerName = opener && opener.getAttribute ? opener.getAttribute('aria-label') : null;
  const titleId = `dialog-title-${++dialogs}`;
  const err = errorBox();
  const ok = h('button', { type: 'submit', class: ['btn', danger ? 'btn-danger' : 'btn-primary'] }, submitLabel);
  const cancel = h('button', { type: 'button', class: 'btn', on: { click: () => d.close() } }, 'Cancel');
  const form = h('form', {
    method: 'dialog',
    on: {
      submit: submitter(ok, err, async () => {
        await onSubmit(form);
        d.close();
      }),
    },
  }, h('h2', { id: titleId }, title), body, err, h('div', { class: 'actions' }, cancel, ok));
  const d = h('dialog', {
    class: 'modal', 'aria-labelledby': titleId,
    on: {
      close: () => {
        d.remove();
        // Signed out meanwhile: the sign-in form has the focus.
        if (!document.querySelector('#main')) return;
        let to = opener && opener.isConnected && !opener.disabled ? opener : null;
        if (!to && returnTo) to = returnTo();
        if (!to && openerName) to = [...document.querySelectorAll('#main [aria-label]')].find((x) => x.getAttribute('aria-label') === openerName);
        if (!to) to = document.querySelector('#main h1');
        if (to) to.focus();
      },
    },
  }, form);
  document.body.append(d);
  d.showModal();
  const first = form.querySelector('input, select, textarea');
  (first || ok).focus();
  return d;
}

// closeDialogs closes every open dialog: when the session ends, what they
// were about to do cannot be done any more, and they would cover the
// sign-in form.
export function closeDialogs() {
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
}

export function userLabel(u) {
  return u.displayName && u.displayName !== u.userPrincipalName ? `${u.displayName} (${u.userPrincipalName})` : u.userPrincipalName;
}
