// Request detail: every field, arguments (human + raw), approvals, rejection,
// upstream result and the hash-chained audit trail.
import { h, fill, labelCells, timeEl, elapsedEl, countdownEl } from '../dom.js';
import { api } from '../api.js';
import { shortHash, formatDuration } from '../render.js';
import {
  statusBadge, decisionBadge, intentEl, methodUrl, argsView, approvalsEl, rawJson,
  decideControls, canDecide, errorBox, valueEl, headersView, visible,
} from './widgets.js';

const COMMON = new Set(['seq', 'time', 'type', 'request_id', 'agent', 'operator', 'prev_hash', 'hash']);
// Already shown in the panels above; still in each event's JSON.
const SHOWN_ABOVE = new Set(['args', 'intents', 'request', 'method', 'url', 'resource', 'action']);

function isEmpty(v) {
  if (v === null || v === undefined || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  return typeof v === 'object' && Object.keys(v).length === 0;
}

function eventFields(ev) {
  const out = [];
  for (const [k, v] of Object.entries(ev)) {
    if (COMMON.has(k) || SHOWN_ABOVE.has(k) || isEmpty(v)) continue;
    let text = valueEl(v, 200);
    let title = null;
    if (k === 'duration_ms' && typeof v === 'number') text = v < 1000 ? `${Math.round(v * 10) / 10} ms` : formatDuration(v);
    else if (typeof v === 'string' && /^[0-9a-f]{40,}$/i.test(v)) { text = shortHash(v); title = v; }
    out.push(h('span', { class: `ef${k === 'error' ? ' err' : ''}`, title }, h('span', { class: 'ek' }, k), ' ', text));
  }
  out.push(rawJson(ev, 'JSON'));
  return out;
}

function eventsTable(events) {
  if (!Array.isArray(events) || events.length === 0) {
    return h('p', { class: 'muted', 'data-testid': 'detail-events' }, 'No audit events.');
  }
  const sorted = [...events].sort((a, b) => (Number(a.seq) || 0) - (Number(b.seq) || 0));
  return h('div', { class: 'table-scroll' },
    labelCells(h('table', { class: 'table events', 'data-testid': 'detail-events' },
      h('thead', null, h('tr', null, ['#', 'Time', 'Event', 'Operator', 'Details', 'Hash'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', null, sorted.map((ev) => h('tr', { 'data-event-type': ev.type || '' },
        h('td', { class: 'num' }, String(ev.seq ?? '')),
        h('td', { class: 'nowrap' }, timeEl(ev.time)),
        h('td', null, h('span', { class: `etype t-${String(ev.type || '').split('.').pop().replace(/[^a-z_]/g, '')}` }, ev.type || '?')),
        h('td', null, ev.operator || h('span', { class: 'muted' }, '—')),
        h('td', { class: 'efields' }, eventFields(ev)),
        h('td', { class: 'mono', title: `hash ${ev.hash || ''}\nprev ${ev.prev_hash || ''}` }, shortHash(ev.hash))))))));
}

function field(label, value) {
  return [h('dt', null, label), h('dd', null, value === null || value === undefined || value === '' ? h('span', { class: 'muted' }, '—') : value)];
}

export function detailView(root, ctx, params, id) {
  const body = h('div', { class: 'detail' }, h('p', { class: 'muted' }, 'Loading…'));
  fill(root,
    h('div', { class: 'view-head' },
      h('h1', null, 'Request ', h('code', { class: 'req-id' }, id)),
      h('a', { href: '#/history', class: 'muted' }, '← History')),
    body);

  let current = null;
  let busy = false;

  function render(req) {
    current = req;
    const intents = Array.isArray(req.intents) ? req.intents : [];
    const pending = req.status === 'pending';
    fill(body, 
      h('section', { class: 'panel summary' },
        h('div', { class: 'summary-top' },
          statusBadge(req.status), decisionBadge(req.decision),
          h('span', { class: 'agent' }, req.agent || '?'), intentEl(req)),
        methodUrl(req),
        headersView(req),
        req.reason ? h('p', { class: 'reason-text' }, req.reason) : null,
        pending ? h('p', { class: 'times' }, 'waiting ', elapsedEl(req.created_at), ' · ', countdownEl(req.expires_at)) : null,
        pending && canDecide(ctx) ? decideControls(req, ctx, () => load()) : null),
      h('section', { class: 'panel' },
        h('h2', null, 'Arguments'),
        argsView(req)),
      intents.length > 1 ? h('section', { class: 'panel' },
        h('h2', null, `Intents (${intents.length})`),
        h('ol', { class: 'intents' }, intents.map((it) => h('li', null, intentEl(it), ' ', h('code', null, valueEl(it.args, 200)))))) : null,
      h('section', { class: 'panel' },
        h('h2', null, 'Decision'),
        h('dl', { class: 'fields' },
          field('ID', h('code', null, req.id)),
          field('Created', timeEl(req.created_at)),
          field('Agent', req.agent ? visible(req.agent) : null),
          field('Method', req.method),
          field('URL', h('span', { class: 'url' }, visible(req.url || ''))),
          field('Resource', req.resource),
          field('Action', req.action),
          field('Decision', decisionBadge(req.decision)),
          field('Rule', req.rule ? h('code', null, req.rule) : null),
          field('Reason', req.reason),
          field('Status', statusBadge(req.status, false)),
          field('Expires', req.expires_at ? timeEl(req.expires_at) : null),
          field('Upstream status', req.upstream_status != null ? String(req.upstream_status) : null),
          field('Completed', req.completed_at ? timeEl(req.completed_at) : null))),
      h('section', { class: 'panel' },
        h('h2', null, 'Approvals'),
        req.decision === 'REQUIRE_APPROVAL' || (req.approvals || []).length ? approvalsEl(req) : h('p', { class: 'muted' }, 'Not an approval request.'),
        req.rejected_by || req.status === 'rejected' ? h('div', { class: 'rejection' },
          h('strong', null, 'Rejected by '), h('span', { class: 'who' }, req.rejected_by || 'unknown'),
          req.rejected_reason ? [': ', h('q', null, req.rejected_reason)] : ' (no reason given)') : null),
      h('section', { class: 'panel' },
        h('h2', null, 'Audit trail'),
        eventsTable(req.events)),
      h('section', { class: 'panel' }, rawJson(req, 'Whole record as JSON')));
  }

  let again = false;
  async function load() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      render(await api.getRequest(id));
    } catch (e) {
      fill(body, errorBox(e, e.status === 404 ? 'No such request' : 'Could not load request'));
    } finally {
      busy = false;
      if (again) { again = false; load(); }
    }
  }
  load();

  return {
    onRequest(req) {
      if (req.id !== id) return;
      // keep a half-typed reason: only reload when the status changed or approvals moved
      if (!current || current.status !== req.status
        || (current.approvals || []).length !== (req.approvals || []).length) load();
    },
    onReconnect: load,
  };
}
