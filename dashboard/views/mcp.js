// An MCP tool call on a card: the server, the tool (red when it destroys or
// moves money), and its arguments as a table. Text only, never HTML.
import { h } from '../dom.js';
import { compactValue, isRiskyAction } from '../render.js';
import { mcpToolCalls, argumentRows } from '../mcp.js';

function argumentTable(args) {
  const rows = argumentRows(args);
  if (rows.length === 0) return h('p', { class: 'muted' }, 'No arguments.');
  return h('div', { class: 'table-scroll' },
    h('table', { class: 'table mcp-args', 'data-testid': 'mcp-args' },
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'argument'), h('th', { scope: 'col' }, 'value'))),
      h('tbody', null, rows.map((r) => h('tr', null,
        h('td', null, h('code', null, r.path)),
        h('td', { class: 'mcp-value' }, compactValue(r.value, 500)))))));
}

export function mcpArgs(req) {
  const calls = mcpToolCalls(req);
  return calls.map((c, i) => h('section', { class: 'mcp-call', 'data-testid': 'mcp-call' },
    calls.length > 1 ? h('div', { class: 'stmt-label' }, `Tool call ${i + 1} of ${calls.length}`) : null,
    h('dl', { class: 'kv' },
      h('dt', null, 'MCP server'), h('dd', { 'data-testid': 'mcp-server' }, c.server),
      h('dt', null, 'tool'),
      h('dd', { 'data-testid': 'mcp-tool', class: isRiskyAction(c.tool) ? 'action risky' : 'action' }, c.tool)),
    argumentTable(c.args)));
}
