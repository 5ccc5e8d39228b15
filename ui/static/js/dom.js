// Small DOM helpers. Every page builds its elements through h(), which sets
// text with textContent and never parses HTML, so content from the API
// (titles, names, errors) cannot inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// h builds an HTML element: h('button', {class: 'btn', on: {click}}, 'Save').
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs instanceof Node || typeof attrs !== 'object' || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = null;
  }
  apply(el, attrs);
  append(el, children);
  return el;
}

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

// ---- times

// An exact time always names its zone: an admin reading the audit log on a
// server in another zone, or comparing with a log file in UTC, must not
// have to guess. (dateStyle cannot be combined with timeZoneName, so the
// fields are spelt out.)
const absFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
});

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : absFmt.format(d);
}

const rel = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

export function relTime(iso) {
  if (!iso) return '';
  const secs = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  const a = Math.abs(secs);
  if (a < 45) return 'just now';
  if (a < 3600) return rel.format(Math.round(secs / 60), 'minute');
  if (a < 86400) return rel.format(Math.round(secs / 3600), 'hour');
  return rel.format(Math.round(secs / 86400), 'day');
}

// timeEl is a <time> showing a relative time, with the exact one on hover.
// The relative text is kept current: a page left open (an inbox on a second
// screen, the console's deliveries) would otherwise say "just now" for ever.
export function timeEl(iso) {
  keepTimesCurrent();
  return h('time', { datetime: iso, title: fmtTime(iso), 'data-rel': '' }, relTime(iso) || '—');
}

// refreshTimes rewrites every relative time on the page.
export function refreshTimes() {
  for (const t of document.querySelectorAll('time[data-rel]')) {
    const text = relTime(t.getAttribute('datetime')) || '—';
    if (t.textContent !== text) t.textContent = text;
  }
}

let refreshing = false;

// keepTimesCurrent refreshes the page's relative times every 30 s, the
// finest step relTime shows being a minute, and at once when a hidden tab
// comes back (browsers slow a hidden tab's timers down).
function keepTimesCurrent() {
  if (refreshing) return;
  refreshing = true;
  setInterval(() => { if (!document.hidden) refreshTimes(); }, 30000);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshTimes(); });
}

// ---- announcements

let region;

// toast shows a short message in a live region, which screen readers read
// out, and removes it after a while.
export function toast(message, kind = 'info') {
  if (!region) {
    region = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(region);
  }
  const t = h('div', { class: ['toast', 'toast-' + kind] }, message);
  region.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4000);
}

// inFormWords rewrites the API's property names in an error message
// (`userPrincipalName must be…`) as the labels the person sees on the form
// (“User name” must be…). A control says which property it fills with its
// name attribute, or data-api when that is a path (payload.visualContent.title).
export function inFormWords(message, form) {
  if (!form || !message) return message;
  const names = [];
  for (const c of form.querySelectorAll('[name], [data-api]')) {
    const api = c.dataset.api || c.getAttribute('name');
    const label = c.id ? form.querySelector(`label[for="${CSS.escape(c.id)}"]`) : null;
    const text = (label && label.textContent.trim()) || c.getAttribute('aria-label');
    if (api && text) names.push([api, text]);
  }
  // Longer names first, so that a path wins over its last segment.
  names.sort((a, b) => b[0].length - a[0].length);
  for (const [api, text] of names) {
    const re = new RegExp(`(^|[^\\w.])${api.replace(/[.]/g, '\\.')}(?![\\w.])`, 'g');
    message = message.replace(re, (_, pre) => `${pre}“${text}”`);
  }
  return message;
}

// errorBox is an inline, announced error message. Inside a form, it names
// fields by their labels rather than by the API's property names.
export function errorBox() {
  const el = h('p', { class: 'form-error', role: 'alert', hidden: true });
  el.show = (err) => {
    const msg = err ? (err.message || String(err)) : '';
    el.textContent = inFormWords(msg, el.closest('form'));
    el.hidden = !err;
  };
  return el;
}

// field is a labelled form control.
export function field(label, control, hint) {
  const id = control.id || ('f-' + Math.random().toString(36).slice(2, 9));
  control.id = id;
  const kids = [h('label', { for: id }, label), control];
  if (hint) {
    const hid = id + '-hint';
    control.setAttribute('aria-describedby', hid);
    kids.push(h('small', { id: hid, class: 'hint' }, hint));
  }
  return h('div', { class: 'field' }, kids);
}

// busy disables a button while fn runs, so a double click sends once.
export async function busy(button, fn) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

// submitter is a form's submit handler: it keeps the page where it is,
// clears the form's error, and runs fn with the button busy, showing in
// err whatever fn throws.
export function submitter(button, err, fn) {
  return (e) => {
    e.preventDefault();
    err.show(null);
    busy(button, async () => {
      try {
        await fn();
      } catch (ex) {
        err.show(ex);
      }
    });
  };
}

// copyButton copies text; where the clipboard API is unavailable (plain
// HTTP on a non-local host) it selects the text for the user to copy.
export function copyButton(text, target) {
  return h('button', {
    type: 'button', class: 'btn btn-small',
    on: {
      click: async () => {
        try {
          await navigator.clipboard.writeText(text);
          toast('Copied.');
        } catch {
          if (target) {
            const r = document.createRange();
            r.selectNodeContents(target);
            const sel = getSelection();
            sel.removeAllRanges();
            sel.addRange(r);
          }
          toast('Press Ctrl+C (or ⌘C) to copy the selected text.');
        }
      },
    },
  }, 'Copy');
}
