// Shared building blocks: badges, intent, human-readable arguments, approvals,
// and the approve/reject control with its confirmation step.
import { h, fill, timeEl } from '../dom.js';
import {
  argsKind, sqlStatements, highlightSql, stripeAmounts, isAmountKey, awsTargets,
  oneLine, prettyJson, isRiskyAction, approvalsRemaining, visibleSegments, rawBodyText,
} from '../render.js';
import { api } from '../api.js';
import { mcpArgs } from './mcp.js';
import { canEdit, canGrant } from '../edits.js';
import { grantPicker, editPanel } from './approve-extras.js';

export function statusBadge(status, testid = true) {
  const s = String(status || 'unknown');
  return h('span', { class: `badge status-${s.replace(/[^a-z_]/g, '')}`, 'data-testid': testid ? 'status-badge' : null, 'data-status': s }, s);
}

export function decisionBadge(decision) {
  const d = String(decision || '—');
  const cls = { ALLOW: 'allow', DENY: 'deny', REQUIRE_APPROVAL: 'approval' }[d] || 'neutral';
  return h('span', { class: `badge decision-${cls}` }, d === 'REQUIRE_APPROVAL' ? 'APPROVAL' : d);
}

/**
 * Agent-supplied text as DOM nodes: bidi controls, zero-width and control
 * characters become visible markers, so nothing can reorder or hide what
 * the operator reads (e.g. an account number shown reversed).
 */
export function visible(s, opts) {
  return visibleSegments(s, opts).map((p) => (p.marker
    ? h('span', { class: 'invisible-char', 'data-testid': 'invisible-char', title: `hidden character ${p.text}` }, p.text)
    : p.text));
}

/**
 * A value on one line, cut at `max` characters with a button that shows it
 * all (and back): the operator can always read every character.
 */
export function valueEl(v, max = 160) {
  const full = oneLine(v);
  if (full.length <= max) return h('span', { class: 'val' }, visible(full));
  const shown = h('span', { class: 'val' });
  const count = `${full.length.toLocaleString('en-US')} characters`;
  let open = false;
  const toggle = h('button', {
    type: 'button', class: 'btn ghost small expand', 'data-testid': 'expand-value', 'aria-expanded': 'false',
  });
  const draw = () => {
    fill(shown, visible(open ? full : `${full.slice(0, max - 1)}…`));
    toggle.textContent = open ? 'show less' : `show all ${count}`;
    toggle.setAttribute('aria-expanded', String(open));
  };
  toggle.addEventListener('click', () => { open = !open; draw(); });
  draw();
  return h('span', { class: 'val-wrap' }, shown, ' ', toggle);
}

/** resource · action, with risky actions in red. */
export function intentEl(req) {
  const risky = isRiskyAction(req.action, req.resource);
  return h('span', { class: 'intent' },
    h('span', { class: 'resource' }, req.resource ? visible(req.resource) : '—'),
    h('span', { class: 'sep', 'aria-hidden': 'true' }, ' · '),
    h('span', { class: risky ? 'action risky' : 'action' }, req.action ? visible(req.action) : '—'));
}

export function methodUrl(req) {
  return h('div', { class: 'method-url' },
    h('span', { class: `method m-${String(req.method || '').toLowerCase().replace(/[^a-z]/g, '')}` }, req.method || '?'),
    ' ',
    h('span', { class: 'url', title: req.url || '' }, visible(req.url || '')));
}

/** Headers that change what the upstream runs (Stripe-Account, …). */
export function headersView(req) {
  const hs = req.headers && typeof req.headers === 'object' ? Object.entries(req.headers) : [];
  if (hs.length === 0) return null;
  return h('div', { class: 'req-headers', 'data-testid': 'request-headers' },
    h('span', { class: 'req-headers-title' }, 'Headers that change what runs'),
    kvList(hs.map(([k, v]) => [k, v])));
}

function kvList(pairs) {
  if (pairs.length === 0) return null;
  return h('dl', { class: 'kv' }, pairs.map(([k, v, cls]) => [
    h('dt', null, visible(k)),
    h('dd', { class: cls || null }, v instanceof Node ? v : valueEl(v)),
  ]));
}

export function rawJson(value, summary = 'Raw JSON', open = false) {
  return h('details', { class: 'raw', open: open || null },
    h('summary', null, summary),
    h('pre', { class: 'json' }, prettyJson(value)));
}

export function sqlBlock(sql) {
  const { tokens, danger } = highlightSql(sql);
  const code = h('code', null, tokens.map((t) => (t.type === 'ws' ? t.text
    : h('span', { class: `sql-${t.type}` }, visible(t.text, { keepNewlines: true })))));
  return h('div', { class: 'sql-wrap' },
    danger.length ? h('div', { class: 'danger-line' }, danger.map((d) => h('span', { class: 'danger-chip' }, d))) : null,
    h('pre', { class: 'sql' }, code));
}

function sqlArgs(req) {
  const stmts = sqlStatements(req);
  const a = req.args || {};
  const out = [];
  stmts.forEach((st, i) => {
    if (stmts.length > 1) {
      out.push(h('div', { class: 'stmt-label' }, `Statement ${i + 1} of ${stmts.length}`,
        st.action ? [' · ', h('span', { class: isRiskyAction(st.action, 'sql') ? 'action risky' : 'action' }, st.action)] : null));
    }
    out.push(sqlBlock(st.sql));
    if (st.has_where === false && /^(update|delete)$/i.test(st.action || '')) {
      out.push(h('div', { class: 'warn' }, `No WHERE clause: affects every row`));
    }
  });
  const meta = [];
  const tables = [...new Set(stmts.flatMap((s) => (Array.isArray(s.tables) ? s.tables : [])))];
  if (tables.length) meta.push(['tables', tables.join(', ')]);
  // Bind parameters change what runs as much as the SQL text does.
  const params = stmts.find((s) => Array.isArray(s.params) && s.params.length)?.params
    || (Array.isArray(a.params) ? a.params : []);
  params.forEach((p, i) => meta.push([`$${i + 1}`, p, 'param']));
  if (a.database) meta.push(['database', a.database]);
  out.push(kvList(meta));
  return out;
}

function stripeArgs(req) {
  const a = req.args || {};
  const amounts = stripeAmounts(a);
  const rest = Object.entries(a).filter(([k]) => !(isAmountKey(k) && amounts.some((m) => m.key === k)) && k !== 'currency');
  return [
    amounts.length ? h('div', { class: 'money-row' }, amounts.map((m) => h('div', { class: 'money' },
      h('span', { class: 'money-value' }, m.text),
      m.key !== 'amount' ? h('span', { class: 'money-key' }, m.key.replace(/_/g, ' ')) : null))) : null,
    kvList(rest.map(([k, v]) => [k, v])),
  ];
}

function awsArgs(req) {
  const a = req.args || {};
  const targets = awsTargets(a);
  const used = new Set(['region', ...targets.map((t) => t.key)]);
  const pairs = [
    ['operation', h('span', { class: isRiskyAction(req.action, req.resource) ? 'action risky' : 'action' }, req.action || '—')],
    ['service', String(req.resource || '').replace(/^aws\./, '')],
  ];
  if (a.region) pairs.push(['region', a.region]);
  for (const t of targets) pairs.push([t.label, t.value, 'target']);
  const rest = Object.entries(a).filter(([k]) => !used.has(k));
  return [kvList(pairs), rest.length ? kvList(rest) : null];
}

function genericArgs(req) {
  const a = req.args;
  if (!a || typeof a !== 'object' || Object.keys(a).length === 0) return h('p', { class: 'muted' }, 'No arguments.');
  return kvList(Object.entries(a).map(([k, v]) => [k, v]));
}

/** Shown at first of a body that is not a form; the rest on request. */
const BODY_SHOWN = 2000;

/**
 * A body that is not a form (git pack, binary, text), as the text it is:
 * wrapped, control characters as visible markers, long ones cut with a
 * button that shows all of it.
 */
function bodyArgs(req) {
  const text = rawBodyText(req.args) ?? '';
  const pre = h('pre', { class: 'body-text', 'data-testid': 'body-text' });
  const note = h('p', { class: 'muted' },
    `Body (${text.length.toLocaleString('en-US')} characters), not form or JSON arguments; shown as text.`);
  if (text.length <= BODY_SHOWN) {
    fill(pre, visible(text, { keepNewlines: true }));
    return [note, pre];
  }
  let open = false;
  const toggle = h('button', { type: 'button', class: 'btn ghost small expand', 'data-testid': 'expand-value' });
  const draw = () => {
    fill(pre, visible(open ? text : `${text.slice(0, BODY_SHOWN)}…`, { keepNewlines: true }));
    toggle.textContent = open ? 'show less' : `show all ${text.length.toLocaleString('en-US')} characters`;
  };
  toggle.addEventListener('click', () => { open = !open; draw(); });
  draw();
  return [note, pre, toggle];
}

/** Arguments rendered for a human, plus the raw JSON collapsed. */
export function argsView(req, { raw = true } = {}) {
  const kind = argsKind(req);
  const body = {
    sql: sqlArgs, stripe: stripeArgs, aws: awsArgs, mcp: mcpArgs, body: bodyArgs, generic: genericArgs,
  }[kind](req);
  return h('div', { class: `args args-${kind}` }, body, raw ? rawJson(req.args ?? {}, 'Arguments as JSON') : null);
}

export function approvalsEl(req) {
  const approvals = Array.isArray(req.approvals) ? req.approvals : [];
  const need = approvalsRemaining(req);
  const required = Number(req.required_approvals) || 1;
  let summary;
  if (req.status === 'pending') {
    summary = h('span', { class: need > 0 ? 'need' : 'need done' },
      need > 0 ? `${need} of ${required} approval${required === 1 ? '' : 's'} still needed` : 'Approvals complete');
  } else {
    summary = h('span', { class: 'muted' },
      approvals.length ? `${approvals.length} of ${required} approval${required === 1 ? '' : 's'} given` : 'No approvals');
  }
  return h('div', { class: 'approvals' }, summary,
    approvals.length ? h('ul', { class: 'approvers' }, approvals.map((ap) => h('li', null,
      h('span', { class: 'who' }, ap.operator || '?'), ' ', timeEl(ap.at, 'muted'),
      ap.reason ? [' — ', h('q', null, ap.reason)] : null))) : null);
}

/**
 * Approve / Reject with an optional reason and a confirmation step; where
 * the rule allows it, approve with a standing grant or with edits (the diff
 * is shown in the confirmation step).
 * onResult(updatedRequest) after the server accepted; on 409 onResult(null).
 */
export function decideControls(req, ctx, onResult) {
  const me = ctx.session.operator?.name;
  let alreadyApproved = (req.approvals || []).some((a) => a.operator === me);
  const reasonId = `reason-${req.id}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const reason = h('input', {
    type: 'text', id: reasonId, class: 'reason', 'data-testid': 'reason-input',
    placeholder: 'Reason (optional)', maxlength: '500', autocomplete: 'off',
  });
  const msg = h('div', { class: 'decide-msg', role: 'status', 'aria-live': 'polite' });
  const bar = h('div', { class: 'decide-bar' });
  bar.addEventListener('keydown', (ev) => {
    const cancel = bar.querySelector('[data-testid=cancel-btn]');
    if (ev.key === 'Escape' && cancel && !cancel.disabled) cancel.click();
  });
  const grant = canGrant(req) ? grantPicker(req) : null;
  const edit = canEdit(req) ? editPanel(req) : null;
  const box = h('div', { class: 'decide' },
    edit ? edit.el : null,
    h('label', { class: 'sr-only', for: reasonId }, 'Reason'), reason, bar, msg);

  function setMsg(text, kind = '') {
    msg.textContent = text;
    msg.className = `decide-msg ${kind}`;
  }

  function initial() {
    fill(bar,
      h('button', {
        type: 'button', class: 'btn approve', 'data-testid': 'approve-btn', disabled: alreadyApproved || null,
        title: alreadyApproved ? 'You already approved this request' : null,
        onclick: () => confirmStep('approve'),
      }, alreadyApproved ? 'Approved by you' : (edit?.isOpen() ? 'Approve edited' : 'Approve')),
      grant && !alreadyApproved ? grant.el : null,
      h('button', { type: 'button', class: 'btn reject', 'data-testid': 'reject-btn', onclick: () => confirmStep('reject') }, 'Reject'),
      edit && !alreadyApproved ? h('button', {
        type: 'button', class: 'btn ghost', 'data-testid': 'edit-btn', 'aria-expanded': String(edit.isOpen()),
        onclick: () => { if (edit.isOpen()) edit.close(); else edit.open(); initial(); if (edit.isOpen()) edit.el.querySelector('input,textarea')?.focus(); },
      }, edit.isOpen() ? 'Cancel edits' : 'Edit') : null);
  }

  /** What Approve sends besides the reason: {extra, question} or {error}. */
  function approveExtras() {
    const extra = {};
    let question = 'Approve and forward this call';
    if (edit?.isOpen()) {
      const p = edit.patch();
      if (p.error) return { error: p.error };
      extra.edits = p.patch;
      edit.showDiff(p.patch);
      question += ' with these changes';
    }
    const g = grant?.value();
    if (g) {
      extra.grant = g;
      question += `, and allow it for ${grant.label()}${g.max_uses ? ` (at most ${g.max_uses} uses)` : ''}`;
    }
    return { extra, question: `${question}?` };
  }

  function confirmStep(kind) {
    let extras = { extra: {}, question: 'Reject this call?' };
    if (kind === 'approve') {
      extras = approveExtras();
      if (extras.error) { setMsg(extras.error, 'err'); return; }
    }
    setMsg('');
    const confirm = h('button', {
      type: 'button', class: `btn ${kind} confirm`, 'data-testid': 'confirm-btn', 'data-action': kind,
      onclick: () => send(kind, confirm, cancel, extras.extra),
    }, kind === 'approve' ? 'Confirm approve' : 'Confirm reject');
    const cancel = h('button', { type: 'button', class: 'btn ghost', 'data-testid': 'cancel-btn', onclick: () => { edit?.hideDiff(); initial(); reason.focus(); } }, 'Cancel');
    fill(bar, h('span', { class: `confirm-q ${kind}`, 'data-testid': 'confirm-question' }, extras.question), confirm, cancel);
    confirm.focus();
  }

  async function send(kind, confirm, cancel, extra) {
    confirm.disabled = true;
    cancel.disabled = true;
    reason.disabled = true;
    setMsg(kind === 'approve' ? 'Approving…' : 'Rejecting…');
    try {
      const updated = kind === 'approve'
        ? await api.approve(req.id, reason.value.trim(), extra)
        : await api.reject(req.id, reason.value.trim());
      if (updated && updated.status === 'pending') {
        alreadyApproved = kind === 'approve';
        reason.disabled = false;
        reason.value = '';
        initial();
        setMsg('Your approval is recorded; more approvers are needed.', 'ok');
      } else {
        setMsg(kind === 'approve' ? 'Approved.' : 'Rejected.', 'ok');
      }
      onResult(updated);
    } catch (e) {
      reason.disabled = false;
      initial();
      // A refused grant or edit leaves the request pending: say why, keep the card.
      const decided = e.status === 409 && /not pending/.test(e.message);
      if (decided) { setMsg('Already decided by someone else.', 'err'); onResult(null); }
      else if (e.status === 409 || e.status === 400) setMsg(`Not approved: ${e.message}`, 'err');
      else if (e.status === 403) setMsg(`Not allowed: ${e.message}`, 'err');
      else setMsg(`Failed: ${e.message}`, 'err');
    }
  }

  initial();
  return box;
}

export function canDecide(ctx) {
  const role = ctx.session.operator?.role;
  return role === 'approver' || role === 'admin';
}

export function errorBox(e, what = 'Could not load') {
  return h('div', { class: 'alert', role: 'alert' }, `${what}: ${e && e.message ? e.message : e}`);
}
