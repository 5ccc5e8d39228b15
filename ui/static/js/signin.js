// The sign-in form that both pages show when nobody is signed in.

import { h, replace, errorBox, field, busy } from './dom.js';

// signInForm fills root with the form and resolves with the user once
// signIn(username, password) succeeds. The page passes its own client's
// sign-in: the console's api.js, the inbox's SDK.
export function signInForm(root, { title, intro, signIn }) {
  return new Promise((resolve) => {
    const user = h('input', { id: 'signin-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
    const pass = h('input', { id: 'signin-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const err = errorBox();
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'signin-submit' }, 'Sign in');
    const form = h('form', {
      class: 'signin card', 'aria-labelledby': 'signin-title',
      on: {
        submit: (e) => {
          e.preventDefault();
          err.show(null);
          busy(submit, async () => {
            try {
              resolve(await signIn(user.value.trim(), pass.value));
            } catch (ex) {
              err.show(ex);
              pass.select();
            }
          });
        },
      },
    },
    h('div', { class: 'brand brand-large' }, h('img', { src: '/ui/icon.svg', alt: '', width: 36, height: 36 }), 'Herald'),
    h('h1', { id: 'signin-title' }, title),
    h('p', { class: 'muted' }, intro),
    field('User name', user),
    field('Password', pass),
    err,
    submit);
    replace(root, h('div', { class: 'signin-wrap' }, form));
    user.focus();
  });
}
