// Unit tests for the MCP tool-call formatters. Run: node --test dashboard/
import test from 'node:test';
import assert from 'node:assert/strict';
import { mcpToolCall, mcpToolCalls, argumentRows } from './mcp.js';
import { argsKind } from './render.js';

test('a tool call names its server and tool', () => {
  const req = { resource: 'mcp.github.tools', action: 'create_issue', args: { title: 'Bug' } };
  assert.deepEqual(mcpToolCall(req), { server: 'github', tool: 'create_issue', args: { title: 'Bug' } });
  assert.equal(mcpToolCall({ resource: 'mcp.mcp.example.com.tools', action: 'x' }).server, 'mcp.example.com');
  assert.equal(argsKind(req), 'mcp');
});

test('other MCP methods and other resources are not tool calls', () => {
  for (const resource of ['mcp.github', 'mcp.tools', 'http.mcp.tools', 'stripe.charges', '', undefined]) {
    assert.equal(mcpToolCall({ resource, action: 'initialize', args: {} }), null, String(resource));
  }
  assert.equal(argsKind({ resource: 'mcp.github', action: 'tools/list', args: {} }), 'generic');
});

test('a batch lists every tool call', () => {
  const req = {
    resource: 'mcp.h.tools', action: 'delete_repo', args: { repo: 'a' },
    intents: [
      { resource: 'mcp.h', action: 'tools/list', args: {} },
      { resource: 'mcp.h.tools', action: 'read_file', args: { path: '/a' } },
      { resource: 'mcp.h.tools', action: 'delete_repo', args: { repo: 'a' } },
    ],
  };
  assert.deepEqual(mcpToolCalls(req).map((c) => c.tool), ['read_file', 'delete_repo']);
});

test('arguments become one row per leaf, with unambiguous paths', () => {
  const rows = argumentRows({
    amount: 250, to: { iban: 'DE89', name: 'Ada' }, items: [{ sku: 'a' }, 'b'],
    'to.iban': 'FAKE', empty: {}, none: null,
  });
  assert.deepEqual(rows, [
    { path: 'amount', value: 250 },
    { path: 'to.iban', value: 'DE89' },
    { path: 'to.name', value: 'Ada' },
    { path: 'items[0].sku', value: 'a' },
    { path: 'items[1]', value: 'b' },
    { path: '["to.iban"]', value: 'FAKE' },
    { path: 'empty', value: {} },
    { path: 'none', value: null },
  ]);
  assert.deepEqual(argumentRows({}), []);
  assert.deepEqual(argumentRows(undefined), []);
});

test('very many arguments are cut with a count', () => {
  const many = Object.fromEntries(Array.from({ length: 205 }, (_, i) => [`k${i}`, i]));
  const rows = argumentRows(many);
  assert.equal(rows.length, 201);
  assert.deepEqual(rows[200], { path: '…', value: '5 more' });
});
