// The admin console: sign-in, the shell and a hash router over the views.
// Routes look like #/users/alice or #/feed?user=alice, so every view has an
// address that survives a reload and can be shared.

import { h, replace, $, toast, busy } from '../dom.js';
import { restore, onSignedOut, beforeSignOut, signOut, signIn, session } from '../api.js';
import { signInForm } from '../signin.js';
import { Sampler } from '../metrics.js';
import { failure, closeDialogs } from './common.js';
import * as dashboard from './dashboard.js';
import * as users from './users.js';
import * as apps from './apps.js';
import * as compose from './compose.js';
import * as feed from './feed.js';
import * as deliveries from './deliveries.js';
import * as audit from './audit.js';

const nav = [
  { path: 'dashboard', label: 'Dashboard', view: dashboard.view },
  { path: 'users', label: 'Users', view: users.list },
  { path: 'apps', label: 'Applications', view: apps.view },
  { path: 'compose', label: 'Composer', view: compose.view },
  { path: 'feed', label: 'Feed explorer', view: feed.view },
  { path: 'deliveries', label: 'Delivery log', view: deliveries.view },
  { path: 'audit', label: 'Audit', view: audit.view },
];

const root = $('#app');
// The sampler runs while the console is open, whatever the view, so the
// dashboard's charts have a history when the admin comes back to them.
const sampler = new Sampler({ interval: 2000, keep: 300 });
let current = null;
let links = [];

// decode leaves a segment that is not valid percent-encoding as it is: a
// mistyped or truncated link must still open a view.
function decode(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function parseHash() {
  const raw = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  const [path, query] = raw.split('?');
  const parts = (path || 'dashboard').split('/').map(decode);
  return { parts, params: new URLSearchParams(query || '') };
}

// go navigates to a view, e.g. go('users', 'alice') or go('feed', {user}).
export function go(...segments) {
  let params = '';
  if (segments.length && typeof segments[segments.length - 1] === 'object') {
    params = '?' + new URLSearchParams(segments.pop()).toString();
  }
  location.hash = '#/' + segments.map(encodeURIComponent).join('/') + params;
}

// keepFocus gives the focus back to the control that had it before the
// view was redrawn for a new address of the same view: a filter that
// changed the address (an arrow key on a select changes it at once). The
// view may draw its controls only after loading, so this waits for them.
let refocus = null;
function keepFocus(main, active) {
  const sel = active.id ? `#${CSS.escape(active.id)}` : `${active.tagName.toLowerCase()}[name="${CSS.escape(active.name)}"]`;
  const tryFocus = () => {
    const el = main.querySelector(sel);
    if (!el) return false;
    el.focus({ preventScroll: true });
    return true;
  };
  if (tryFocus()) return;
  const obs = new MutationObserver(() => { if (tryFocus()) stop(); });
  const t = setTimeout(() => stop(), 10000);
  function stop() {
    obs.disconnect();
    clearTimeout(t);
    refocus = null;
  }
  obs.observe(main, { childList: true, subtree: true });
  refocus = stop;
}

let routed = '';
function route() {
  const { parts, params } = parseHash();
  let entry = nav.find((n) => n.path === parts[0]);
  let view = entry ? entry.view : null;
  if (parts[0] === 'users' && parts[1]) view = users.detail;
  if (!view) {
    entry = nav[0];
    view = entry.view;
  }
  for (const a of links) {
    if (a.dataset.path === (entry ? entry.path : parts[0])) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (refocus) refocus();
  const main = $('#main');
  // Only the query changed (a filter), and the focus is on one of the
  // view's named controls: it stays there.
  const place = parts.join('/');
  const active = document.activeElement;
  const stay = route.painted && place === routed && active && main.contains(active) && active !== main &&
    (active.id || active.name) && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(active.tagName) ? active : null;
  routed = place;
  if (current && current.dispose) current.dispose();
  try {
    current = view({ parts, params, sampler, go });
  } catch (e) {
    current = { el: failure(e) };
  }
  replace(main, current.el);
  document.title = `${current.title || (entry && entry.label) || 'Herald'} · Herald admin`;
  if (stay) {
    keepFocus(main, stay);
    return;
  }
  // Move focus to the new view's heading, unless this is the first paint.
  if (route.painted) {
    const h1 = main.querySelector('h1');
    if (h1) h1.focus({ preventScroll: false });
  }
  route.painted = true;
  window.scrollTo(0, 0);
}

function shell(user) {
  links = nav.map((n) => h('a', { href: '#/' + n.path, dataset: { path: n.path } }, n.label));
  const menu = h('button', {
    type: 'button', class: 'btn btn-ghost nav-toggle', 'aria-expanded': 'false', 'aria-controls': 'nav',
    on: {
      click: () => {
        const open = menu.getAttribute('aria-expanded') !== 'true';
        menu.setAttribute('aria-expanded', String(open));
        $('#nav').classList.toggle('open', open);
      },
    },
  }, 'Menu');
  const out = h('button', {
    type: 'button', class: 'btn btn-ghost', id: 'signout',
    on: { click: (e) => busy(e.currentTarget, () => signOut().catch((ex) => toast(ex.message, 'error'))) },
  }, 'Sign out');
  replace(root,
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: '#/dashboard' }, h('img', { src: '/ui/icon.svg', alt: '', width: 28, height: 28 }), 'Herald'),
      menu,
      h('nav', { id: 'nav', 'aria-label': 'Console' }, h('ul', links.map((a) => h('li', a)),
        // On a phone the header has no room for it, so the menu carries it.
        h('li', { class: 'nav-phone' }, h('a', { href: '/ui/inbox/' }, 'My inbox')))),
      h('div', { class: 'whoami' },
        h('span', { class: 'muted', title: user.userPrincipalName }, user.displayName || user.userPrincipalName),
        h('a', { class: 'btn btn-ghost inbox-link', href: '/ui/inbox/' }, 'My inbox'),
        out)),
    h('main', { id: 'main', tabindex: '-1' }));
  // Close the phone menu after picking a view.
  $('#nav').addEventListener('click', (e) => {
    if (e.target.closest('a')) {
      menu.setAttribute('aria-expanded', 'false');
      $('#nav').classList.remove('open');
    }
  });
}

async function signedIn(user) {
  if (!(user.roles || []).includes('admin')) {
    replace(root, h('div', { class: 'signin-wrap' }, h('div', { class: 'card signin' },
      h('h1', 'This console is for admins'),
      h('p', `You are signed in as ${user.userPrincipalName}, which is not an admin account. Your notifications are in your inbox.`),
      h('div', { class: 'actions' },
        h('a', { class: 'btn btn-primary', href: '/ui/inbox/' }, 'Open my inbox'),
        h('button', { type: 'button', class: 'btn', on: { click: () => signOut() } }, 'Sign out')))));
    return;
  }
  shell(user);
  sampler.start();
  route();
}

async function start() {
  let user = null;
  try {
    user = await restore();
  } catch (e) {
    replace(root, h('div', { class: 'signin-wrap' }, failure(e, () => start())));
    return;
  }
  if (!user) {
    user = await signInForm(root, { title: 'Admin console', intro: 'Sign in with an admin account to manage users, applications and deliveries.', signIn });
  }
  signedIn(user);
}

// Signing out stops the polling first and lets its requests finish.
beforeSignOut(() => {
  sampler.stop();
  if (current && current.dispose) current.dispose();
  current = null;
});
onSignedOut(() => {
  closeDialogs();
  sampler.stop();
  if (current && current.dispose) current.dispose();
  current = null;
  start();
});
// Only the console's shell has views to route to: a user who is not an
// admin sees a page without it, whatever the hash says.
window.addEventListener('hashchange', () => { if (session.user && $('#main') && location.hash.startsWith('#/')) route(); });
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  const m = $('#main');
  if (m) m.focus();
});
start();
