// Unit tests for the API client's pure parts. Run: node --test dashboard/
import test from 'node:test';
import assert from 'node:assert/strict';
import { parseSse } from './api.js';

test('parseSse splits complete events and keeps the rest', () => {
  const { events, rest } = parseSse('event: request\ndata: {"id":"a"}\n\n: keep-alive\n\nevent: request\ndata: {"id"');
  assert.deepEqual(events, [{ event: 'request', data: '{"id":"a"}' }]);
  assert.equal(rest, 'event: request\ndata: {"id"');
  const more = parseSse(`${rest}:"b"}\n\n`);
  assert.deepEqual(more.events, [{ event: 'request', data: '{"id":"b"}' }]);
  assert.equal(more.rest, '');
});

test('parseSse joins data lines and reads CRLF', () => {
  const { events } = parseSse('data: a\r\ndata:b\r\n\r\n');
  assert.deepEqual(events, [{ event: 'message', data: 'a\nb' }]);
});
