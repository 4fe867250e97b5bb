// Pending queue: live over SSE, newest first. A card leaves the moment its
// request leaves `pending`, whoever decided it.
import { h, fill, elapsedEl, countdownEl, timeEl } from '../dom.js';
import { api } from '../api.js';
import {
  decisionBadge, intentEl, methodUrl, argsView, approvalsEl,
  decideControls, canDecide, errorBox, headersView, visible,
} from './widgets.js';

export function pendingView(root, ctx) {
  const cards = new Map(); // id → {el, req, approvalsSlot}
  const list = h('div', { class: 'cards', 'data-testid': 'pending-list' });
  const empty = h('div', { class: 'empty', hidden: true, 'data-testid': 'pending-empty' },
    h('p', { class: 'empty-title' }, 'Nothing waiting for approval.'),
    h('p', { class: 'muted' }, 'Held calls appear here the moment an agent makes them.'));
  const status = h('div', { class: 'view-status muted', role: 'status' }, 'Loading…');
  const notice = h('div', { class: 'notice', role: 'status', 'aria-live': 'polite' });

  fill(root,
    h('div', { class: 'view-head' },
      h('h1', null, 'Pending approval'),
      status),
    notice, empty, list);

  let noticeTimer = null;
  function flash(text) {
    notice.textContent = text;
    notice.classList.add('show');
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => notice.classList.remove('show'), 4000);
  }

  function byNewest(a, b) {
    return String(b.created_at).localeCompare(String(a.created_at));
  }

  function buildCard(req) {
    const approvalsSlot = h('div', { class: 'approvals-slot' }, approvalsEl(req));
    const el = h('article', {
      class: 'card', 'data-testid': 'pending-card', 'data-request-id': req.id, 'aria-labelledby': `t-${req.id}`,
      'data-created-at': String(req.created_at),
    },
    h('header', { class: 'card-head' },
      h('div', { class: 'card-title', id: `t-${req.id}` },
        h('span', { class: 'agent', title: 'agent' }, req.agent ? visible(req.agent) : '?'),
        intentEl(req)),
      h('div', { class: 'card-times' },
        h('span', { class: 'waited' }, 'waiting ', elapsedEl(req.created_at)),
        h('span', { class: 'left' }, countdownEl(req.expires_at)))),
    methodUrl(req),
    headersView(req),
    argsView(req),
    h('div', { class: 'rule-line' },
      decisionBadge(req.decision),
      h('span', { class: 'rule' }, 'rule ', h('code', null, req.rule || '—')),
      req.reason ? h('span', { class: 'reason-text' }, req.reason) : null),
    approvalsSlot,
    h('footer', { class: 'card-foot' },
      canDecide(ctx)
        ? decideControls(req, ctx, (updated) => onDecided(req.id, updated))
        : h('p', { class: 'muted' }, 'View only: your role cannot approve.'),
      h('a', { class: 'details-link', href: `#/requests/${encodeURIComponent(req.id)}` }, 'Details and audit →'),
      h('span', { class: 'created muted' }, 'held since ', timeEl(req.created_at))));
    return { el, req, approvalsSlot };
  }

  function onDecided(id, updated) {
    if (!updated) { remove(id, 'That request was already decided by someone else.'); refresh(); return; }
    upsert(updated);
  }

  function updateEmpty() {
    empty.hidden = cards.size > 0;
    status.textContent = (cards.size === 1 ? '1 request waiting' : `${cards.size || 'No'} requests waiting`)
      + (truncated ? ' (newest 500 loaded; see History for older ones)' : '');
  }

  function remove(id, why) {
    const c = cards.get(id);
    if (!c) return;
    cards.delete(id);
    c.el.classList.add('leaving');
    c.el.removeAttribute('data-testid'); // stop matching as a live card right away
    // keep focus somewhere sensible if it was inside the card
    const hadFocus = c.el.contains(document.activeElement);
    setTimeout(() => c.el.remove(), 180);
    if (hadFocus) list.focus();
    if (why) flash(why);
    updateEmpty();
  }

  function insertSorted(card) {
    // the list is kept newest first: insert before the first older card
    const key = String(card.req.created_at);
    for (const el of list.children) {
      if (el.dataset.createdAt !== undefined && el.dataset.createdAt.localeCompare(key) < 0) {
        list.insertBefore(card.el, el);
        return;
      }
    }
    list.append(card.el);
  }

  function upsert(req) {
    if (req.status !== 'pending') {
      if (cards.has(req.id)) {
        const by = req.status === 'rejected' && req.rejected_by ? ` by ${req.rejected_by}`
          : req.status === 'approved' && req.approvals?.length ? ` by ${req.approvals.map((a) => a.operator).join(', ')}` : '';
        remove(req.id, `${req.agent} · ${req.resource} · ${req.action}: ${req.status}${by}`);
      }
      return;
    }
    const existing = cards.get(req.id);
    if (existing) {
      // update in place so a half-typed reason or a confirmation survives
      existing.req = req;
      fill(existing.approvalsSlot, approvalsEl(req));
      return;
    }
    const card = buildCard(req);
    cards.set(req.id, card);
    insertSorted(card);
    updateEmpty();
  }

  let seq = 0;
  let truncated = false;
  async function refresh() {
    const mine = ++seq;
    // A card that arrives over SSE while the list is in flight is newer than
    // the list: only cards known before the fetch may be dropped by it.
    const known = new Set(cards.keys());
    try {
      const data = await api.listRequests({ status: 'pending', limit: 500 });
      if (mine !== seq) return;
      const reqs = (data && data.requests) || [];
      const ids = new Set(reqs.map((r) => r.id));
      for (const id of [...cards.keys()]) if (!ids.has(id) && known.has(id)) remove(id);
      reqs.sort(byNewest).forEach(upsert);
      truncated = !!(data && data.next_cursor);
      updateEmpty();
    } catch (e) {
      if (mine !== seq) return;
      status.textContent = '';
      fill(notice, errorBox(e, 'Could not load pending requests'));
      notice.classList.add('show');
    }
  }
  list.tabIndex = -1;
  refresh();

  return {
    onRequest: upsert,
    onReconnect: refresh,
    unmount() { clearTimeout(noticeTimer); },
  };
}
