// What an approval can add: a standing grant ("approve and allow this for
// 15 min / 1 h / 8 h / 24 h", optional max uses) and edits to the arguments
// the card shows (amounts as money, JSON for nested fields), with the diff
// shown before confirming.
import { h, fill } from '../dom.js';
import {
  GRANT_CHOICES, isMoneyField, majorToMinor, mergeDiff, minorToMajor, diffLines,
} from '../edits.js';

/** A grant picker: {el, value() → {"for", "max_uses"?} | null, label()}. */
export function grantPicker(req) {
  const id = `grant-${req.id}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const select = h('select', { id, class: 'grant-for', 'data-testid': 'grant-for' },
    h('option', { value: '' }, 'just this call'),
    GRANT_CHOICES.map(([v, label]) => h('option', { value: v }, `and allow for ${label}`)));
  const uses = h('input', {
    type: 'number', min: '1', step: '1', class: 'grant-uses', 'data-testid': 'grant-max-uses',
    placeholder: 'max uses', 'aria-label': 'Most uses of the grant (optional)', hidden: true,
  });
  select.addEventListener('change', () => { uses.hidden = !select.value; });
  const el = h('span', { class: 'grant-pick', title: 'Also let this agent make the same kind of call (same resource and action) without asking, for a while' },
    h('label', { class: 'sr-only', for: id }, 'Standing grant'), select, uses);
  return {
    el,
    value() {
      if (!select.value) return null;
      const g = { for: select.value };
      const n = Number(uses.value);
      if (uses.value.trim() !== '' && Number.isInteger(n) && n > 0) g.max_uses = n;
      return g;
    },
    label() {
      const c = GRANT_CHOICES.find(([v]) => v === select.value);
      return c ? c[1] : '';
    },
  };
}

function fieldInput(req, key, value) {
  const common = { 'data-testid': 'edit-field', 'data-key': key, 'aria-label': key };
  if (isMoneyField(req, key)) {
    const input = h('input', { ...common, type: 'text', inputmode: 'decimal', class: 'edit-money', value: minorToMajor(value, req.args.currency) });
    return { el: h('span', { class: 'money-edit' }, input, h('span', { class: 'muted' }, String(req.args.currency).toUpperCase())),
      read: () => majorToMinor(input.value, req.args.currency) ?? Symbol.for('bad') };
  }
  if (value !== null && typeof value === 'object') {
    const ta = h('textarea', { ...common, rows: '3', class: 'edit-json' });
    ta.value = JSON.stringify(value, null, 2);
    return { el: ta, read: () => { try { return JSON.parse(ta.value); } catch { return Symbol.for('bad'); } } };
  }
  if (typeof value === 'boolean') {
    const box = h('input', { ...common, type: 'checkbox' });
    box.checked = value;
    return { el: box, read: () => box.checked };
  }
  const input = h('input', { ...common, type: 'text', value: value === null ? '' : String(value) });
  return { el: input, read: () => (typeof value === 'number' ? (Number.isFinite(Number(input.value)) && input.value.trim() !== '' ? Number(input.value) : Symbol.for('bad')) : input.value) };
}

/**
 * The edit mode: one input per argument, then the diff. {el, open(),
 * close(), patch() → {patch} | {error}, showDiff(patch)}.
 */
export function editPanel(req) {
  const args = req.args || {};
  // Path parameters (Stripe's `id`) are not body fields: not offered.
  const keys = Object.keys(args).filter((k) => !(k === 'id' && String(req.resource || '').startsWith('stripe.')));
  const inputs = keys.map((k) => [k, fieldInput(req, k, args[k])]);
  const diff = h('div', { class: 'edit-diff', 'data-testid': 'edit-diff', hidden: true });
  const el = h('fieldset', { class: 'edit-panel', 'data-testid': 'edit-panel', hidden: true },
    h('legend', null, 'Edit the arguments, then approve the edited call'),
    h('dl', { class: 'kv edit-kv' }, inputs.map(([k, f]) => [h('dt', null, k), h('dd', null, f.el)])),
    diff);
  return {
    el,
    isOpen: () => !el.hidden,
    open() { el.hidden = false; const first = el.querySelector('input,textarea'); if (first) first.focus(); },
    close() { el.hidden = true; diff.hidden = true; },
    hideDiff() { diff.hidden = true; },
    patch() {
      const edited = {};
      for (const [k, f] of inputs) {
        const v = f.read();
        if (v === Symbol.for('bad')) return { error: `${k}: not a valid value` };
        edited[k] = v;
      }
      const all = { ...args };
      for (const k of keys) all[k] = edited[k];
      const patch = mergeDiff(args, all);
      return patch ? { patch } : { error: 'Nothing was changed.' };
    },
    showDiff(patch) {
      fill(diff, h('p', { class: 'edit-diff-title' }, 'Changes to approve:'),
        h('ul', null, diffLines(req, patch).map((l) => h('li', { 'data-testid': 'edit-diff-line' },
          h('code', null, l.key), ': ', h('del', null, l.before), ' → ', h('ins', null, l.after)))));
      diff.hidden = false;
    },
  };
}
