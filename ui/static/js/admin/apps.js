// Applications: register one, see its secret once, add and remove secrets,
// delete one, and hand users the link to an inbox connected to it.

import { h, replace, errorBox, field, toast, timeEl, copyButton, fmtTime, submitter } from '../dom.js';
import { api } from '../api.js';
import { pageHead, table, loading, failure, dialog, apps as loadApps } from './common.js';

// secretPanel shows a new secret: the only time Herald shows it.
function secretPanel(app, cred, onDone) {
  const code = h('code', { class: 'secret', id: 'secret-text' }, cred.secretText);
  const idCode = h('code', { id: 'secret-app-id' }, app.appId);
  const panel = h('section', { class: 'card notice notice-warn', id: 'secret-once', role: 'alert', tabindex: '-1' },
    h('h2', `Secret for ${app.displayName}`),
    h('p', 'Copy this secret now and store it with the application. Herald keeps only a hash: it is shown this once, never again.'),
    h('dl', { class: 'kv' },
      h('dt', 'Application (client) id'), h('dd', idCode, ' ', copyButton(app.appId, idCode)),
      h('dt', `Secret “${cred.displayName || 'secret'}”`), h('dd', code, ' ', copyButton(cred.secretText, code)),
      h('dt', 'Expires'), h('dd', fmtTime(cred.endDateTime))),
    h('p', { class: 'muted small' }, 'The application gets a token with grant_type=client_credentials, this client id and this secret.'),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'btn btn-primary', on: { click: () => { panel.remove(); onDone(); } } }, 'I have stored it')));
  return panel;
}

function inboxLink(host) {
  return new URL(`/ui/inbox/?app=${encodeURIComponent(host)}`, location.href).href;
}

function appCard(app, reload, showSecret) {
  const link = inboxLink(app.targetHostName);
  const linkCode = h('code', { class: 'wrap' }, link);
  const name = h('input', { name: 'displayName', placeholder: 'e.g. production', 'aria-label': `Name of the new secret for ${app.displayName}` });
  const add = h('button', { type: 'submit', class: 'btn btn-small' }, 'Add a secret');
  const err = errorBox();
  const creds = app.passwordCredentials || [];
  return h('article', { class: 'card app', 'data-host': app.targetHostName, 'aria-labelledby': `app-${app.id}` },
    h('header', { class: 'section-head' },
      h('div', h('h2', { id: `app-${app.id}` }, app.displayName), h('div', { class: 'muted mono small' }, app.targetHostName)),
      h('div', { class: 'stack' },
        h('span', { class: 'muted small' }, 'registered ', timeEl(app.createdDateTime)),
        h('button', {
          type: 'button', class: 'btn btn-small btn-danger-outline', 'aria-label': `Delete the application ${app.displayName}`,
          on: {
            click: () => dialog({
              title: `Delete ${app.displayName}?`, danger: true, submitLabel: 'Delete application',
              body: [h('p', `Services that use its client id can no longer get tokens, the tokens they hold stop working, and every subscription users registered for ${app.targetHostName} is removed. Notifications already in users’ feeds stay until they expire.`)],
              onSubmit: async () => {
                await api('DELETE', `/v1.0/applications/${encodeURIComponent(app.id)}`);
                toast(`${app.displayName} was deleted.`);
                await reload();
              },
            }),
          },
        }, 'Delete'))),
    h('dl', { class: 'kv' },
      h('dt', 'Client id'), h('dd', h('code', app.appId)),
      h('dt', 'Inbox link for users'), h('dd', linkCode, ' ', copyButton(link, linkCode))),
    h('h3', 'Secrets'),
    table([
      { label: 'Name', cell: (c) => c.displayName || '—' },
      { label: 'Hint', cell: (c) => h('code', `${c.hint || ''}…`) },
      { label: 'Expires', cell: (c) => fmtTime(c.endDateTime) },
      {
        label: 'Remove',
        cell: (c) => h('button', {
          type: 'button', class: 'btn btn-small btn-danger-outline', 'aria-label': `Remove the secret ${c.displayName || c.hint}`,
          on: {
            click: () => dialog({
              title: 'Remove this secret?', danger: true, submitLabel: 'Remove secret',
              body: [h('p', `Services that use the secret “${c.displayName || c.hint}” can no longer get tokens for ${app.displayName}. Tokens already issued stay valid until they expire.`)],
              onSubmit: async () => {
                await api('POST', `/v1.0/applications/${encodeURIComponent(app.id)}/removePassword`, { keyId: c.keyId });
                toast('The secret was removed.');
                await reload();
              },
            }),
          },
        }, 'Remove'),
      },
    ], creds, { caption: 'Secrets', empty: 'No secrets: the application cannot get tokens until it has one.' }),
    h('form', {
      class: 'inline-form',
      on: {
        submit: submitter(add, err, async () => {
          const cred = await api('POST', `/v1.0/applications/${encodeURIComponent(app.id)}/addPassword`, { displayName: name.value.trim() || 'secret' });
          name.value = '';
          showSecret(app, cred);
        }),
      },
    }, name, add),
    err);
}

export function view() {
  const list = h('div', loading());
  const secretSlot = h('div');
  async function load() {
    try {
      const apps = await loadApps();
      replace(list, apps.length
        ? apps.map((a) => appCard(a, load, showSecret))
        : h('div', { class: 'card empty' }, h('h2', 'No applications yet'),
          h('p', 'Register the services that send notifications. Each gets a client id and a secret, and users connect their inbox to it by its host name.')));
    } catch (e) {
      replace(list, failure(e, load));
    }
  }
  function showSecret(app, cred) {
    const p = secretPanel(app, cred, load);
    replace(secretSlot, p);
    p.focus();
    load();
  }

  const dn = h('input', { id: 'new-app-name', name: 'displayName', required: true, autocomplete: 'off' });
  const host = h('input', { id: 'new-app-host', name: 'targetHostName', required: true, autocapitalize: 'none', spellcheck: 'false', autocomplete: 'off' });
  const err = errorBox();
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'new-app-submit' }, 'Register application');
  const form = h('form', {
    class: 'card form-grid form-cols', 'aria-labelledby': 'new-app-h',
    on: {
      submit: submitter(submit, err, async () => {
        const app = await api('POST', '/v1.0/applications', { displayName: dn.value.trim(), targetHostName: host.value.trim().toLowerCase() });
        form.reset();
        showSecret(app, app.passwordCredentials[0]);
      }),
    },
  },
  h('h2', { id: 'new-app-h' }, 'Register an application'),
  field('Name', dn, 'What users and admins see, e.g. Contoso Tasks.'),
  field('Host name', host, 'The application’s DNS name in lower case, e.g. tasks.contoso.com. It cannot be changed later.'),
  err,
  h('div', { class: 'actions' }, submit));

  load();
  return {
    title: 'Applications',
    el: h('div', { class: 'view' },
      pageHead('Applications', 'Services that send notifications to users.'),
      secretSlot, form, list),
  };
}
