// Pure formatters: no DOM access, so they can be unit-tested with `node --test`.
// Everything here returns plain strings or plain data; the views turn that into
// DOM nodes with textContent only.

import { mcpToolCalls } from './mcp.js';

// ---------------------------------------------------------------- money

// Stripe's zero-decimal and three-decimal currencies
// (https://docs.stripe.com/currencies#special-cases).
const ZERO_DECIMAL = new Set([
  'bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf',
  'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf',
]);
const THREE_DECIMAL = new Set(['bhd', 'jod', 'kwd', 'omr', 'tnd']);

export function currencyDecimals(currency) {
  const c = String(currency || '').toLowerCase();
  if (ZERO_DECIMAL.has(c)) return 0;
  if (THREE_DECIMAL.has(c)) return 3;
  return 2;
}

function toNumber(v) {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v.trim())) return Number(v);
  return null;
}

/**
 * Format an amount given in the currency's minor unit, the way Stripe sends it.
 * formatMoney(5000, 'usd') → "$50.00"; formatMoney(5000, 'jpy') → "¥5,000".
 * Returns null when `amount` is not a number.
 */
export function formatMoney(amount, currency) {
  const n = toNumber(amount);
  if (n === null) return null;
  const code = String(currency || '').trim();
  if (!/^[A-Za-z]{3}$/.test(code)) {
    return `${n.toLocaleString('en-US')} (minor units)`;
  }
  const decimals = currencyDecimals(code);
  const major = n / 10 ** decimals;
  try {
    return new Intl.NumberFormat('en-US', {
      style: 'currency',
      currency: code.toUpperCase(),
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
    }).format(major);
  } catch {
    return `${major.toFixed(decimals)} ${code.toUpperCase()}`;
  }
}

/** Stripe argument keys that hold an amount in minor units. */
export function isAmountKey(key) {
  return /(^|_)amount($|_)/.test(key) || key === 'unit_amount' || key === 'amount_off';
}

/** [{key, text}] for every top-level amount field of a Stripe args object. */
export function stripeAmounts(args) {
  if (!args || typeof args !== 'object') return [];
  const out = [];
  for (const [key, value] of Object.entries(args)) {
    if (!isAmountKey(key)) continue;
    const text = formatMoney(value, args.currency);
    if (text !== null) out.push({ key, text });
  }
  return out;
}

// ---------------------------------------------------------------- durations & time

/** 2m 13s, 45s, 1h 02m, 3d 4h. Negative values count as zero. */
export function formatDuration(ms) {
  let s = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

/** Time since an RFC 3339 instant: "2m 13s". */
export function formatElapsed(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '—';
  return formatDuration(now - t);
}

/** Countdown to an RFC 3339 instant: "4m 10s left" or "expired". */
export function formatCountdown(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return '—';
  const left = t - now;
  if (left <= 0) return 'expired';
  return `${formatDuration(left)} left`;
}

const pad = (n) => String(n).padStart(2, '0');

/** "2026-11-23 20:54:01" in local time (or UTC with utc=true). */
export function formatTimestamp(iso, utc = false) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const g = utc
    ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()]
    : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds()];
  return `${g[0]}-${pad(g[1])}-${pad(g[2])} ${pad(g[3])}:${pad(g[4])}:${pad(g[5])}`;
}

/**
 * A datetime-local input value ("2026-11-23T20:30", local time) to RFC 3339
 * UTC ("2026-11-23T19:30:00Z"). Empty or invalid → null.
 */
export function localInputToRfc3339(value) {
  if (!value) return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value);
  if (!m) return null;
  const d = new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  if (Number.isNaN(d.getTime())) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The reverse, to pre-fill a datetime-local input from an RFC 3339 value. */
export function rfc3339ToLocalInput(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return '';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function shortHash(hash, n = 12) {
  return typeof hash === 'string' ? hash.slice(0, n) : '—';
}

// ---------------------------------------------------------------- requests

export function approvalsRemaining(req) {
  const need = Number(req?.required_approvals) || 1;
  const have = Array.isArray(req?.approvals) ? new Set(req.approvals.map((a) => a.operator)).size : 0;
  return Math.max(0, need - have);
}

const RISKY_ACTION = /^(delete|drop|truncate|alter|grant|revoke|terminate|destroy|remove|purge|detach|disable|deregister|revoke|stop|reboot|cancel|refund|payout|transfer|update_without_where)/i;
const RISKY_AWS = /^(Delete|Terminate|Put\w*Policy|Attach\w*Policy|Detach|Revoke|Disable|Deregister|Stop|Reboot|Remove|Create(AccessKey|LoginProfile|User|Role)|UpdateAssumeRolePolicy|UpdateFunctionCode)/;

/** True for actions that destroy, escalate or move money: drawn in red. */
export function isRiskyAction(action, resource = '') {
  const a = String(action || '');
  if (String(resource).startsWith('aws.')) return RISKY_AWS.test(a);
  return RISKY_ACTION.test(a);
}

/** Which argument renderer fits a request. */
export function argsKind(req) {
  const r = String(req?.resource || '');
  if (mcpToolCalls(req).length > 0) return 'mcp';
  if (sqlStatements(req).length > 0) return 'sql';
  if (r.startsWith('stripe.')) return 'stripe';
  if (r.startsWith('aws.')) return 'aws';
  if (rawBodyText(req?.args) !== null) return 'body';
  return 'generic';
}

/** Longer than any parameter name a form or API uses. */
const MAX_NAME = 64;

/**
 * A body that is not a form (a git pack, binary data, plain text) but was
 * read as one: its "keys" are the text itself, with control characters or
 * of a length no parameter name has. Returns that text put back together
 * (`key=value&…`, as it was sent), or null for ordinary arguments.
 */
export function rawBodyText(args) {
  if (!args || typeof args !== 'object' || Array.isArray(args)) return null;
  const entries = Object.entries(args);
  const notAName = (k) => k.length > MAX_NAME || /[\u0000-\u0008\u000b-\u001f\u007f]|\n/.test(k);
  if (entries.length === 0 || !entries.some(([k]) => notAName(k))) return null;
  return entries.map(([k, v]) => {
    const value = v === '' || v === null || v === undefined ? '' : oneLine(v);
    return value === '' ? k : `${k}=${value}`;
  }).join('&');
}

/** The SQL statements of a request: each sql intent, else args.sql. */
export function sqlStatements(req) {
  const intents = Array.isArray(req?.intents) ? req.intents : [];
  const fromIntents = intents
    .filter((i) => i && i.resource === 'sql' && i.args && typeof i.args.sql === 'string')
    .map((i) => ({ sql: i.args.sql, action: i.action, has_where: i.args.has_where, tables: i.args.tables, params: i.args.params }));
  if (fromIntents.length > 0) return fromIntents;
  const a = req?.args;
  if (a && typeof a.sql === 'string') {
    return [{ sql: a.sql, action: req.action, has_where: a.has_where, tables: a.tables, params: a.params }];
  }
  return [];
}

const AWS_TARGET_KEYS = [
  ['bucket', 'Bucket'], ['key', 'Key'], ['Bucket', 'Bucket'], ['Key', 'Key'],
  ['TableName', 'Table'], ['InstanceId', 'Instance'], ['InstanceIds', 'Instances'],
  ['function_name', 'Function'], ['FunctionName', 'Function'], ['QueueUrl', 'Queue'],
  ['QueueName', 'Queue'], ['SecretId', 'Secret'], ['Name', 'Name'], ['RoleName', 'Role'],
  ['UserName', 'User'], ['GroupName', 'Group'], ['PolicyArn', 'Policy'],
  ['PolicyName', 'Policy name'], ['TopicArn', 'Topic'], ['StackName', 'Stack'],
  ['DBInstanceIdentifier', 'DB instance'], ['DBClusterIdentifier', 'DB cluster'],
  ['ClusterName', 'Cluster'], ['KeyId', 'KMS key'], ['VolumeId', 'Volume'],
  ['SnapshotId', 'Snapshot'], ['GroupId', 'Security group'], ['LogGroupName', 'Log group'],
  ['RepositoryName', 'Repository'], ['path', 'Path'],
];

/** [{label, key, value}] naming what an AWS call acts on (value stringified). */
export function awsTargets(args) {
  if (!args || typeof args !== 'object') return [];
  const out = [];
  for (const [key, label] of AWS_TARGET_KEYS) {
    if (!(key in args)) continue;
    const v = args[key];
    if (v === null || v === undefined || v === '') continue;
    let value;
    if (Array.isArray(v)) value = v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(', ');
    else if (typeof v === 'object') value = JSON.stringify(v);
    else value = String(v);
    out.push({ label, key, value });
  }
  return out;
}

/** The whole one-line rendering of an argument value. */
export function oneLine(v) {
  if (v === null) return 'null';
  if (v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'object') {
    try { return JSON.stringify(v); } catch { return String(v); }
  }
  return String(v);
}

/** One-line rendering of an argument value for a key/value list. */
export function compactValue(v, max = 160) {
  const s = oneLine(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

// ---------------------------------------------------------------- invisible characters

// Characters that reorder or hide text (bidi embeddings, overrides and
// isolates, marks, zero-width characters, joiners, the BOM) and control
// characters: shown as visible markers, the same as in Slack.
const INVISIBLE = /[\u0000-\u001F\u007F-\u009F\u00AD\u061C\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]/g;
const ESCAPES = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** The marker shown for an invisible or control character. */
export function markerFor(ch) {
  return ESCAPES[ch] || `[U+${ch.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}]`;
}

/**
 * Split text into [{text, marker}] segments: marker segments stand for one
 * invisible or control character each. keepNewlines keeps "\n" as text
 * (multi-line blocks such as SQL).
 */
export function visibleSegments(s, { keepNewlines = false } = {}) {
  const str = String(s ?? '');
  const out = [];
  let last = 0;
  for (const m of str.matchAll(INVISIBLE)) {
    if (keepNewlines && m[0] === '\n') continue;
    if (m.index > last) out.push({ text: str.slice(last, m.index), marker: false });
    out.push({ text: markerFor(m[0]), marker: true, code: m[0].codePointAt(0) });
    last = m.index + 1;
  }
  if (last < str.length) out.push({ text: str.slice(last), marker: false });
  return out;
}

/** The text with every invisible or control character as its marker. */
export function visibleText(s, opts) {
  return visibleSegments(s, opts).map((p) => p.text).join('');
}

export function prettyJson(v) {
  let text;
  try {
    text = JSON.stringify(v, null, 2) ?? 'null';
  } catch {
    return String(v);
  }
  // Still valid JSON: bidi and zero-width characters written as escapes.
  // (JSON.stringify already escaped control characters inside strings; the
  // newlines left are its own layout.)
  return text.replace(INVISIBLE, (ch) => (ch === '\n' ? ch : `\\u${ch.codePointAt(0).toString(16).padStart(4, '0')}`));
}

// ---------------------------------------------------------------- SQL

export const SQL_KEYWORDS = new Set(`
  select from where and or not in is null like ilike between exists as on join inner left right
  full outer cross natural using group by order having limit offset union all distinct intersect
  except insert into values update set delete drop truncate alter grant revoke create table view
  index schema database if cascade restrict primary key foreign references constraint unique
  default check column add rename to with returning case when then else end asc desc nulls first
  last begin commit rollback transaction replace temporary temp materialized sequence function
  procedure trigger execute exec call privileges public role user owner only lateral over
  partition window filter true false conflict do nothing upsert merge matched vacuum analyze
  explain copy lock pragma attach detach returning
`.trim().split(/\s+/));

const DANGER_VERBS = new Set(['drop', 'delete', 'truncate', 'alter', 'grant', 'revoke']);
const CLAUSE_BREAK = new Set(['from', 'where', 'group', 'order', 'having', 'limit', 'offset',
  'values', 'set', 'union', 'returning', 'join', 'inner', 'left', 'right', 'full', 'cross', 'on']);

/** Index just past the quoted run opening at `open`; doubled quotes stay
 * inside, and with `backslashes` so does a backslash-escaped character. */
function quotedEnd(s, open, quote, backslashes) {
  let i = open + 1;
  while (i < s.length) {
    if (s[i] === quote) {
      if (s[i + 1] === quote) { i += 2; continue; }
      return i + 1;
    }
    if (backslashes && s[i] === '\\') i++;
    i++;
  }
  return s.length;
}

/**
 * Split SQL into tokens: {type, text} with type one of
 * ws, comment, string, ident (quoted identifier), number, word, keyword, punct.
 */
export function tokenizeSql(sql) {
  const s = String(sql ?? '');
  const out = [];
  let i = 0;
  const push = (type, start) => out.push({ type, text: s.slice(start, i) });
  while (i < s.length) {
    const c = s[i];
    const start = i;
    if (/\s/.test(c)) {
      while (i < s.length && /\s/.test(s[i])) i++;
      push('ws', start);
    } else if (c === '-' && s[i + 1] === '-') {
      while (i < s.length && s[i] !== '\n') i++;
      push('comment', start);
    } else if (c === '/' && s[i + 1] === '*') {
      const end = s.indexOf('*/', i + 2);
      i = end === -1 ? s.length : end + 2;
      push('comment', start);
    } else if (c === "'" || c === '"' || c === '`') {
      // As PostgreSQL reads it (standard_conforming_strings): a backslash
      // is an ordinary character here; only E'…' strings (below) escape.
      i = quotedEnd(s, i, c, false);
      push(c === "'" ? 'string' : 'ident', start);
    } else if ((c === 'E' || c === 'e') && s[i + 1] === "'" && !/[A-Za-z0-9_$\u0080-\uffff]/.test(s[i - 1] || '')) {
      i = quotedEnd(s, i + 1, "'", true);
      push('string', start);
    } else if (c === '$' && /[A-Za-z_$]/.test(s[i + 1] || '')) {
      // $$ ... $$ or $tag$ ... $tag$ dollar quoting, or $1 parameters below
      const m = /^\$([A-Za-z_]\w*)?\$/.exec(s.slice(i));
      if (m) {
        const end = s.indexOf(m[0], i + m[0].length);
        i = end === -1 ? s.length : end + m[0].length;
        push('string', start);
      } else {
        i++;
        push('punct', start);
      }
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(s[i + 1] || ''))) {
      while (i < s.length && /[0-9._eE]/.test(s[i])) i++;
      push('number', start);
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      while (i < s.length && /[A-Za-z0-9_$\u0080-\uffff]/.test(s[i])) i++;
      const word = s.slice(start, i);
      out.push({ type: SQL_KEYWORDS.has(word.toLowerCase()) ? 'keyword' : 'word', text: word });
    } else {
      i++;
      push('punct', start);
    }
  }
  return out;
}

/**
 * Tokenize and lay out SQL for reading: whitespace collapsed, major clauses
 * on new lines, one statement per paragraph. Dangerous verbs get
 * type 'danger' (DROP, DELETE, TRUNCATE, ALTER, GRANT, REVOKE, and UPDATE
 * in a statement with no WHERE). Returns {tokens, danger: [VERB…]}.
 */
export function highlightSql(sql) {
  const raw = tokenizeSql(sql);
  // statement boundaries and per-statement facts
  const stmts = [];
  let cur = { tokens: [] };
  for (const t of raw) {
    cur.tokens.push(t);
    if (t.type === 'punct' && t.text === ';') { stmts.push(cur); cur = { tokens: [] }; }
  }
  if (cur.tokens.length) stmts.push(cur);

  const danger = [];
  const out = [];
  for (const st of stmts) {
    const words = st.tokens.filter((t) => t.type === 'keyword');
    const hasWhere = words.some((t) => t.text.toLowerCase() === 'where');
    let depth = 0;
    let prevSig = null; // previous non-ws, non-comment token
    let prevWasLineComment = false;
    const emitted = [];
    for (const t of st.tokens) {
      if (t.type === 'ws') {
        if (prevWasLineComment || (t.text.includes('\n') && prevSig && prevSig.type === 'comment')) {
          emitted.push({ type: 'ws', text: '\n' });
        } else if (emitted.length && emitted[emitted.length - 1].type !== 'ws') {
          emitted.push({ type: 'ws', text: ' ' });
        }
        prevWasLineComment = false;
        continue;
      }
      prevWasLineComment = t.type === 'comment' && t.text.startsWith('--');
      let tok = t;
      if (t.type === 'keyword') {
        const k = t.text.toLowerCase();
        const prevK = prevSig && prevSig.type === 'keyword' ? prevSig.text.toLowerCase() : '';
        let isDanger = false;
        if (DANGER_VERBS.has(k) && prevK !== 'on' && !(k === 'delete' && prevK === 'on')) isDanger = true;
        if (k === 'update' && !hasWhere && prevK !== 'on' && prevK !== 'for' && prevK !== 'do') isDanger = true;
        if (isDanger) {
          tok = { type: 'danger', text: t.text };
          const label = k === 'update' ? 'UPDATE without WHERE' : k.toUpperCase();
          if (!danger.includes(label)) danger.push(label);
        }
        // line break before a major clause at top level
        const isBreak = CLAUSE_BREAK.has(k) && depth === 0 && prevSig
          && !(k === 'on' && prevK === 'do') && !(k === 'join' && ['inner', 'left', 'right', 'full', 'cross', 'outer', 'natural'].includes(prevK))
          && !(k === 'set' && prevK !== '' && prevK !== 'update' && prevSig.type === 'keyword')
          && !(k === 'values' && prevK === 'default');
        if (isBreak) {
          if (emitted.length && emitted[emitted.length - 1].type === 'ws') emitted.pop();
          emitted.push({ type: 'ws', text: k === 'on' ? '\n  ' : '\n' });
        }
      }
      if (t.type === 'punct') {
        if (t.text === '(') depth++;
        else if (t.text === ')') depth = Math.max(0, depth - 1);
      }
      emitted.push(tok);
      prevSig = t;
    }
    while (emitted.length && emitted[emitted.length - 1].type === 'ws' && emitted[emitted.length - 1].text === ' ') emitted.pop();
    if (out.length) out.push({ type: 'ws', text: '\n\n' });
    while (emitted.length && emitted[0].type === 'ws') emitted.shift();
    out.push(...emitted);
  }
  return { tokens: out, danger };
}
