// Loaded policy: version, files, last reload error, rules.
import { h, fill, timeEl, labelCells } from '../dom.js';
import { api } from '../api.js';
import { compactValue } from '../render.js';
import { decisionBadge, errorBox } from './widgets.js';

// A rule's own `reply_after`, as written: when a held call is answered `pending`.
function replyAfter(text) {
  return /^0+([a-z]+)?$/.test(String(text)) ? 'waits for the decision' : `pending answer after ${text}`;
}

function globs(v) {
  if (v === null || v === undefined || v === '') return h('span', { class: 'muted' }, '*');
  return h('code', null, Array.isArray(v) ? v.join(', ') : String(v));
}

export function policyView(root) {
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  fill(root, h('div', { class: 'view-head' }, h('h1', null, 'Policy')), body);

  function render(p) {
    const rules = Array.isArray(p.rules) ? p.rules : [];
    const filter = h('input', {
      type: 'search', id: 'rule-filter', placeholder: 'Filter rules', autocomplete: 'off',
    });
    const tbody = h('tbody');
    const rows = rules.map((r, i) => {
      // Narrowing beyond resource/action: a rule limited to one host or
      // agent must not look broader than it is.
      const scope = ['agent', 'host', 'method', 'path'].filter((k) => Array.isArray(r[k]) && r[k].length);
      const text = [r.name, r.description, r.resource, r.action, r.decision, r.condition, r.reason, r.file,
        ...scope.map((k) => r[k])]
        .map((x) => compactValue(x ?? '', 1000)).join(' ').toLowerCase();
      const tr = h('tr', { class: r.mode === 'report' ? 'report' : null },
        h('td', { class: 'num' }, String(i + 1)),
        h('td', null, h('div', { class: 'rule-name' }, r.name || '?'),
          r.description ? h('div', { class: 'muted small' }, r.description) : null),
        h('td', null, globs(r.resource),
          scope.map((k) => h('div', { class: 'scope small' }, h('span', { class: 'muted' }, `${k} `), globs(r[k])))),
        h('td', null, globs(r.action)),
        h('td', null, decisionBadge(r.decision),
          r.mode === 'report' ? h('span', { class: 'badge neutral' }, 'report') : null),
        h('td', null, r.condition ? h('code', { class: 'cond' }, r.condition) : h('span', { class: 'muted' }, '—')),
        h('td', null, r.reason || ''),
        h('td', { class: 'nowrap small' },
          r.decision === 'REQUIRE_APPROVAL' ? `${r.approvals || 1}× ${r.timeout ? `· ${r.timeout}` : ''}` : '',
          r.reply_after ? h('div', { class: 'muted' }, replyAfter(r.reply_after)) : null),
        // the full paths are listed above; the file name is enough here
        h('td', { class: 'nowrap small muted', title: r.file ? `${r.file}${r.line ? `:${r.line}` : ''}` : null },
          r.file ? `${String(r.file).split('/').pop()}${r.line ? `:${r.line}` : ''}` : ''));
      return { tr, text };
    });
    tbody.append(...rows.map((r) => r.tr));
    filter.addEventListener('input', () => {
      const q = filter.value.trim().toLowerCase();
      for (const r of rows) r.tr.hidden = q !== '' && !r.text.includes(q);
    });

    fill(body, 
      p.last_error ? h('div', { class: 'alert big', role: 'alert', 'data-testid': 'policy-error' },
        h('strong', null, 'Last reload failed — the previous policy is still in force.'),
        h('pre', null, String(p.last_error))) : null,
      h('section', { class: 'panel' },
        h('dl', { class: 'fields' },
          h('dt', null, 'Version'), h('dd', null, h('code', { class: 'hash', 'data-testid': 'policy-version' }, p.version || '—')),
          h('dt', null, 'Loaded'), h('dd', null, timeEl(p.loaded_at)),
          h('dt', null, 'Files'), h('dd', null, Array.isArray(p.files) && p.files.length
            ? h('ul', { class: 'files' }, p.files.map((f) => h('li', null, h('code', null, String(f)))))
            : h('span', { class: 'muted' }, 'built-in')),
          h('dt', null, 'Rules'), h('dd', null, `${rules.length}, first match wins; no match → DENY`))),
      h('section', { class: 'panel' },
        h('div', { class: 'panel-head' }, h('h2', null, 'Rules'),
          h('label', { for: 'rule-filter', class: 'sr-only' }, 'Filter rules'), filter),
        h('div', { class: 'table-scroll' },
          labelCells(h('table', { class: 'table rules', 'data-testid': 'policy-rules' },
            h('thead', null, h('tr', null, ['#', 'Name', 'Resource', 'Action', 'Decision', 'Condition', 'Reason', 'Approvals', 'Source']
              .map((c) => h('th', { scope: 'col' }, c)))),
            tbody)))));
  }

  api.policy().then(render, (e) => fill(body, errorBox(e, 'Could not load policy')));
  return {};
}
