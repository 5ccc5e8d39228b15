// The API reference page: it renders /openapi.json, the OpenAPI 3.1
// description the server serves, so the page and the description cannot
// disagree. Operations are grouped by tag in the document's order; schemas
// are linked by their #/components/schemas name.

import { h, replace } from './dom.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

// inline renders `code` spans of a description as <code>, the rest as text.
function inline(text) {
  return String(text || '').split('`').map((part, i) => (i % 2 ? h('code', part) : part));
}

// block renders a description: paragraphs and "- " lists.
function block(text) {
  if (!text) return null;
  const out = [];
  for (const para of String(text).split(/\n\s*\n/)) {
    const lines = para.split('\n').map((l) => l.trim()).filter(Boolean);
    if (lines.length && lines[0].startsWith('- ')) {
      const items = [];
      for (const l of lines) {
        if (l.startsWith('- ')) items.push(l.slice(2));
        else if (items.length) items[items.length - 1] += ' ' + l;
      }
      out.push(h('ul', items.map((i) => h('li', inline(i)))));
    } else if (lines.length) {
      out.push(h('p', inline(lines.join(' '))));
    }
  }
  return out;
}

const refName = (ref) => ref.replace('#/components/schemas/', '');
const anchor = (kind, name) => `${kind}-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;

// typeOf is a one-line summary of a schema, with links to named schemas.
function typeOf(schema, doc) {
  if (!schema) return 'any';
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return h('a', { href: '#' + anchor('schema', name) }, name);
  }
  if (schema.const !== undefined) return h('code', JSON.stringify(schema.const));
  if (schema.enum) return [h('span', 'one of '), schema.enum.map((v, i) => [i ? ', ' : '', h('code', JSON.stringify(v))])];
  for (const k of ['oneOf', 'anyOf', 'allOf']) {
    if (schema[k]) return schema[k].map((s, i) => [i ? (k === 'allOf' ? ' and ' : ' or ') : '', typeOf(s, doc)]);
  }
  const t = Array.isArray(schema.type) ? schema.type.join(' or ') : schema.type;
  if (t === 'array' || (Array.isArray(schema.type) && schema.type.includes('array'))) {
    return [t === 'array' ? 'array of ' : t + ', items ', typeOf(schema.items, doc)];
  }
  const extra = [];
  if (schema.format) extra.push(schema.format);
  if (schema.minimum !== undefined) extra.push('≥ ' + schema.minimum);
  if (schema.maximum !== undefined) extra.push('≤ ' + schema.maximum);
  if (schema.maxLength !== undefined) extra.push('≤ ' + schema.maxLength + ' chars');
  if (schema.minLength !== undefined && schema.minLength > 1) extra.push('≥ ' + schema.minLength + ' chars');
  return (t || 'object') + (extra.length ? ` (${extra.join(', ')})` : '');
}

// properties is a table of an object schema's properties; allOf parts are
// merged so composed schemas read as one object.
function properties(schema, doc) {
  const props = {};
  const required = new Set();
  const gather = (s) => {
    if (!s) return;
    if (s.$ref) return gather(doc.components.schemas[refName(s.$ref)]);
    Object.assign(props, s.properties || {});
    (s.required || []).forEach((r) => required.add(r));
    (s.allOf || []).forEach(gather);
  };
  gather(schema);
  const names = Object.keys(props);
  if (!names.length) return null;
  return h('table', { class: 'apiref-props' },
    h('thead', h('tr', h('th', 'property'), h('th', 'type'), h('th', 'notes'))),
    h('tbody', names.map((n) => h('tr',
      h('td', h('code', n), required.has(n) ? h('span', { class: 'apiref-req', title: 'required' }, ' *') : null),
      h('td', typeOf(props[n], doc)),
      h('td', inline(props[n].description))))));
}

function resolve(obj, doc) {
  if (!obj || !obj.$ref) return obj;
  const path = obj.$ref.replace('#/', '').split('/');
  return path.reduce((o, k) => (o ? o[k] : undefined), doc);
}

function schemaOfContent(content) {
  if (!content) return [];
  return Object.entries(content).map(([type, media]) => ({ type, schema: media.schema }));
}

function operation(method, path, op, shared, doc) {
  const params = [...(shared || []), ...(op.parameters || [])].map((p) => resolve(p, doc));
  const body = resolve(op.requestBody, doc);
  const security = (op.security || doc.security || [])
    .map((req) => Object.keys(req))
    .map((names) => (names.length ? names.join(' + ') : 'none'));
  return h('details', { class: 'apiref-op', id: anchor('op', op.operationId || method + path) },
    h('summary',
      h('span', { class: ['apiref-method', 'apiref-' + method] }, method.toUpperCase()),
      h('code', { class: 'apiref-path' }, path),
      h('span', { class: 'apiref-summary' }, inline(op.summary))),
    block(op.description),
    h('p', { class: 'muted' }, 'Authentication: ', security.join(', or ')),
    params.length ? [h('h4', 'Parameters'), h('table', { class: 'apiref-props' },
      h('thead', h('tr', h('th', 'name'), h('th', 'in'), h('th', 'type'), h('th', 'notes'))),
      h('tbody', params.map((p) => h('tr',
        h('td', h('code', p.name), p.required ? h('span', { class: 'apiref-req', title: 'required' }, ' *') : null),
        h('td', p.in), h('td', typeOf(p.schema, doc)), h('td', inline(p.description || (p.schema && p.schema.description)))))))] : null,
    body ? [h('h4', 'Request body'), schemaOfContent(body.content).map(({ type, schema }) =>
      h('p', h('code', type), ': ', typeOf(schema, doc)))] : null,
    h('h4', 'Responses'),
    h('ul', { class: 'apiref-responses' }, Object.entries(op.responses || {}).map(([status, r]) => {
      const res = resolve(r, doc);
      const headers = Object.keys(res.headers || {}).filter((n) => n !== 'request-id');
      return h('li', h('strong', status), ' ', inline(res.description),
        schemaOfContent(res.content).map(({ type, schema }) => [' — ', h('code', type), ' ', typeOf(schema, doc)]),
        headers.length ? [' — headers ', headers.map((n, i) => [i ? ', ' : '', h('code', n)])] : null);
    })));
}

function render(doc) {
  const byTag = new Map((doc.tags || []).map((t) => [t.name, { tag: t, ops: [] }]));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const m of METHODS) {
      const op = item[m];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || 'other';
      if (!byTag.has(tag)) byTag.set(tag, { tag: { name: tag }, ops: [] });
      byTag.get(tag).ops.push(operation(m, path, op, item.parameters, doc));
    }
  }
  const groups = [...byTag.values()].filter((g) => g.ops.length);
  const schemas = Object.entries(doc.components.schemas || {});
  const schemes = Object.entries(doc.components.securitySchemes || {});
  return [
    h('header', { class: 'apiref-head' },
      h('h1', doc.info.title, ' API ', h('span', { class: 'muted' }, doc.info.version)),
      h('p', inline(doc.info.summary)),
      h('p', 'The machine-readable description: ', h('a', { href: '/openapi.json' }, '/openapi.json'), ' (OpenAPI ', doc.openapi, ').')),
    h('nav', { class: 'apiref-nav', 'aria-label': 'Sections' },
      h('ul', groups.map((g) => h('li', h('a', { href: '#' + anchor('tag', g.tag.name) }, g.tag.name, ' (', String(g.ops.length), ')'))),
        h('li', h('a', { href: '#security' }, 'authentication')),
        h('li', h('a', { href: '#schemas' }, 'schemas')))),
    h('main', { id: 'main' },
      h('section', block(doc.info.description)),
      groups.map((g) => h('section', { id: anchor('tag', g.tag.name) },
        h('h2', g.tag.name), h('p', { class: 'muted' }, inline(g.tag.description)), g.ops)),
      h('section', { id: 'security' }, h('h2', 'Authentication'),
        h('dl', schemes.map(([name, s]) => [h('dt', h('code', name), ' — ', s.type, s.scheme ? ' ' + s.scheme : '',
          s.in ? ` (${s.in} ${s.name})` : ''), h('dd', block(s.description))]))),
      h('section', { id: 'schemas' }, h('h2', 'Schemas'),
        schemas.map(([name, s]) => h('div', { class: 'apiref-schema', id: anchor('schema', name) },
          h('h3', name), block(s.description), properties(s, doc) || h('p', typeOf(s, doc)))))),
  ];
}

async function main() {
  const app = document.getElementById('app');
  try {
    const res = await fetch('/openapi.json', { headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error(`/openapi.json answered ${res.status}`);
    const doc = await res.json();
    replace(app, render(doc));
    document.title = `${doc.info.title} API reference`;
    app.dataset.operations = String(app.querySelectorAll('.apiref-op').length);
    if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  } catch (err) {
    replace(app, h('p', { class: 'error', role: 'alert' }, 'The API description could not be loaded: ', String(err.message || err)));
  }
}

main();
