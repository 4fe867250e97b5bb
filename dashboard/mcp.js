// MCP tool calls (SPEC §4.9) for a human: which server, which tool, and the
// tool's arguments as the rows of a table. Pure: no DOM access, so it can be
// unit-tested with `node --test`.

const PREFIX = 'mcp.';
const SUFFIX = '.tools';

/** {server, tool, args} when an intent is an MCP tool call, else null. */
export function mcpToolCall(intent) {
  const r = String(intent?.resource || '');
  if (!r.startsWith(PREFIX) || !r.endsWith(SUFFIX) || r.length <= PREFIX.length + SUFFIX.length) return null;
  const a = intent.args;
  return {
    server: r.slice(PREFIX.length, -SUFFIX.length),
    tool: String(intent.action ?? ''),
    args: a && typeof a === 'object' && !Array.isArray(a) ? a : {},
  };
}

/** Every tool call of a request: each intent (a batch has several), else the request's own. */
export function mcpToolCalls(req) {
  const intents = Array.isArray(req?.intents) ? req.intents : [];
  const calls = intents.map(mcpToolCall).filter(Boolean);
  if (calls.length > 0) return calls;
  const own = mcpToolCall(req);
  return own ? [own] : [];
}

const PLAIN_KEY = /^[A-Za-z_$][\w$-]*$/;

/** `.name` for plain keys, `["odd.key"]` otherwise, so no key can pose as a path. */
function step(key, first) {
  if (PLAIN_KEY.test(key)) return first ? key : `.${key}`;
  return `[${JSON.stringify(key)}]`;
}

/**
 * One row per leaf value: nested objects and arrays become paths
 * (`to.iban`, `items[0].sku`); empty objects and arrays are leaves. At most
 * `maxRows` rows; then a last row {path: '…', value: 'N more'}.
 */
export function argumentRows(args, maxRows = 200) {
  const rows = [];
  let hidden = 0;
  const walk = (v, path) => {
    const container = v !== null && typeof v === 'object';
    const entries = !container ? [] : Array.isArray(v)
      ? v.map((x, i) => [`[${i}]`, x])
      : Object.entries(v).map(([k, x]) => [step(k, path === ''), x]);
    if (entries.length === 0) {
      if (rows.length < maxRows) rows.push({ path: path || '(arguments)', value: v });
      else hidden += 1;
      return;
    }
    for (const [s, x] of entries) walk(x, path + s);
  };
  if (args && typeof args === 'object' && Object.keys(args).length > 0) walk(args, '');
  if (hidden > 0) rows.push({ path: '…', value: `${hidden} more` });
  return rows;
}
