// History: filters kept in the URL hash, a table, cursor paging.
import { h, clear, fill, timeEl, labelCells } from '../dom.js';
import { api } from '../api.js';
import { localInputToRfc3339, rfc3339ToLocalInput } from '../render.js';
import { statusBadge, decisionBadge, intentEl, errorBox } from './widgets.js';

const STATUSES = ['allowed', 'denied', 'pending', 'approved', 'rejected', 'expired', 'cancelled', 'completed', 'failed'];
const DECISIONS = ['ALLOW', 'DENY', 'REQUIRE_APPROVAL'];
const FILTERS = ['status', 'agent', 'resource', 'action', 'decision', 'since', 'until'];
const PAGE = 50;

function select(name, label, options, value) {
  const id = `f-${name}`;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('select', { id, name },
      h('option', { value: '' }, 'any'),
      options.map((o) => h('option', { value: o, selected: o === value || null }, o))));
}

function input(name, label, value, type = 'text', extra = {}) {
  const id = `f-${name}`;
  return h('div', { class: type === 'datetime-local' ? 'field when' : 'field' },
    h('label', { for: id }, label),
    h('input', { id, name, type, value: value || '', autocomplete: 'off', ...extra }));
}

export function historyView(root, ctx, params) {
  const f = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || '']));
  const cursor = params.get('cursor') || '';

  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter history' },
    select('status', 'Status', STATUSES, f.status),
    input('agent', 'Agent', f.agent),
    input('resource', 'Resource', f.resource, 'text', { placeholder: 'e.g. stripe.charges' }),
    input('action', 'Action', f.action),
    select('decision', 'Decision', DECISIONS, f.decision),
    input('since', 'Since', rfc3339ToLocalInput(f.since), 'datetime-local'),
    input('until', 'Until', rfc3339ToLocalInput(f.until), 'datetime-local'),
    h('div', { class: 'field actions' },
      h('button', { type: 'submit', class: 'btn primary' }, 'Apply'),
      h('button', { type: 'button', class: 'btn ghost', onclick: () => ctx.navigate('#/history') }, 'Reset')));

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const q = new URLSearchParams();
    for (const k of FILTERS) {
      let v = String(data.get(k) || '').trim();
      if ((k === 'since' || k === 'until') && v) v = localInputToRfc3339(v) || '';
      if (v) q.set(k, v);
    }
    const s = q.toString();
    ctx.navigate(`#/history${s ? `?${s}` : ''}`);
  });

  const tbody = h('tbody');
  const table = h('table', { class: 'table', 'data-testid': 'history-table' },
    h('thead', null, h('tr', null,
      ['Time', 'Agent', 'Intent', 'Decision', 'Status', 'Rule'].map((c) => h('th', { scope: 'col' }, c)))),
    tbody);
  const pager = h('nav', { class: 'pager', 'aria-label': 'History pages' });
  const status = h('div', { class: 'view-status muted', role: 'status' }, 'Loading…');

  const anyFilter = FILTERS.some((k) => f[k]);
  const wide = window.matchMedia('(min-width: 721px)').matches;
  fill(root,
    h('div', { class: 'view-head' }, h('h1', null, 'History'), status),
    h('details', { class: 'filters-box', open: wide || anyFilter || null },
      h('summary', null, anyFilter ? 'Filters (active)' : 'Filters'), form),
    h('div', { class: 'table-scroll' }, table),
    pager);

  function pageHref(nextCursor) {
    const q = new URLSearchParams();
    for (const k of FILTERS) if (f[k]) q.set(k, f[k]);
    if (nextCursor) q.set('cursor', nextCursor);
    const s = q.toString();
    return `#/history${s ? `?${s}` : ''}`;
  }

  function row(req) {
    const href = `#/requests/${encodeURIComponent(req.id)}`;
    const tr = h('tr', { 'data-testid': 'history-row', 'data-request-id': req.id, class: 'clickable' },
      h('td', { class: 'nowrap' }, h('a', { href }, timeEl(req.created_at))),
      h('td', null, req.agent || '—'),
      h('td', null, intentEl(req)),
      h('td', null, decisionBadge(req.decision)),
      h('td', null, statusBadge(req.status)),
      h('td', null, h('code', null, req.rule || '—')));
    tr.addEventListener('click', (ev) => {
      if (ev.target.closest('a')) return;
      if (window.getSelection && String(window.getSelection()).length) return;
      ctx.navigate(href);
    });
    return tr;
  }

  (async () => {
    try {
      const data = await api.listRequests({ ...f, limit: PAGE, cursor });
      const reqs = (data && data.requests) || [];
      fill(tbody, ...reqs.map(row));
      if (reqs.length === 0) {
        tbody.append(h('tr', null, h('td', { colspan: '6', class: 'empty-cell' },
          cursor ? 'No older requests.' : 'No requests match these filters.')));
      }
      labelCells(table);
      status.textContent = `${reqs.length} shown${cursor ? ' (older page)' : ''}`;
      clear(pager);
      if (cursor) pager.append(h('a', { class: 'btn ghost', href: pageHref('') }, '← Newest'));
      if (data && data.next_cursor) {
        pager.append(h('a', { class: 'btn', href: pageHref(data.next_cursor), 'data-testid': 'older-link' }, 'Older →'));
      }
    } catch (e) {
      status.textContent = '';
      fill(tbody, h('tr', null, h('td', { colspan: '6' }, errorBox(e, 'Could not load history'))));
    }
  })();

  return {};
}
