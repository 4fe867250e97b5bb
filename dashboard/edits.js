// Pure helpers for approve-with-edits and standing grants (no DOM): which
// requests can be edited or granted, money as an operator types it, and the
// JSON merge patch (RFC 7386) between the arguments shown and the edited ones.
import { currencyDecimals, formatMoney, isAmountKey } from './render.js';

/** Grant lengths offered next to Approve: [value sent as `for`, label]. */
export const GRANT_CHOICES = [['15m', '15 min'], ['1h', '1 h'], ['8h', '8 h'], ['24h', '24 h']];

/** Approving may also make a standing grant (the server checks again). */
export function canGrant(req) {
  return req?.grantable === true && (Number(req.required_approvals) || 1) <= 1;
}

/** The request's arguments can be edited (SPEC §6.2; the server checks again). */
export function canEdit(req) {
  const r = String(req?.resource || '');
  const intents = Array.isArray(req?.intents) ? req.intents : [];
  return !req?.explicit && req?.method !== 'GOVERN'
    && (Number(req?.required_approvals) || 1) <= 1
    && intents.length <= 1 && r !== 'sql' && !r.startsWith('db.')
    && req?.args && typeof req.args === 'object' && !Array.isArray(req.args);
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A Stripe amount field shown (and edited) as money. */
export function isMoneyField(req, key) {
  return String(req?.resource || '').startsWith('stripe.') && isAmountKey(key)
    && typeof req.args?.[key] === 'number' && /^[A-Za-z]{3}$/.test(String(req.args?.currency || ''));
}

/** 5000, 'usd' → "50.00" (what the operator edits). */
export function minorToMajor(amount, currency) {
  const d = currencyDecimals(currency);
  return (amount / 10 ** d).toFixed(d);
}

/** "25.5", 'usd' → 2550; null when it is not an amount. */
export function majorToMinor(text, currency) {
  const t = String(text).trim().replace(/,/g, '');
  if (!/^-?\d+(\.\d+)?$/.test(t)) return null;
  const d = currencyDecimals(currency);
  const [whole, frac = ''] = t.replace('-', '').split('.');
  if (frac.length > d) return null;
  const minor = Number(whole) * 10 ** d + Number((frac + '0'.repeat(d)).slice(0, d) || 0);
  return t.startsWith('-') ? -minor : minor;
}

/** The RFC 7386 merge patch that turns `before` into `after`; undefined when equal. */
export function mergeDiff(before, after) {
  if (isPlainObject(before) && isPlainObject(after)) {
    const patch = {};
    for (const [k, v] of Object.entries(after)) {
      if (!(k in before)) patch[k] = v;
      else {
        const d = mergeDiff(before[k], v);
        if (d !== undefined) patch[k] = d;
      }
    }
    for (const k of Object.keys(before)) if (!(k in after)) patch[k] = null;
    return Object.keys(patch).length ? patch : undefined;
  }
  return JSON.stringify(before) === JSON.stringify(after) ? undefined : after;
}

function shown(req, key, v) {
  if (v === undefined || v === null) return '(removed)';
  if (isMoneyField(req, key) && typeof v === 'number') return formatMoney(v, req.args.currency);
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** [{key, before, after}] as an operator reads the change. */
export function diffLines(req, patch) {
  return Object.entries(patch || {}).map(([key, p]) => {
    const before = req.args?.[key];
    let after = p;
    if (isPlainObject(before) && isPlainObject(p)) {
      after = { ...before };
      for (const [k, v] of Object.entries(p)) { if (v === null) delete after[k]; else after[k] = v; }
    }
    return { key, before: shown(req, key, before), after: shown(req, key, after) };
  });
}
