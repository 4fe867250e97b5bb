// Unit tests for the pure formatters. Run: node --test dashboard/
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  formatMoney, currencyDecimals, stripeAmounts, formatDuration, formatElapsed,
  formatCountdown, formatTimestamp, localInputToRfc3339, rfc3339ToLocalInput, shortHash,
  approvalsRemaining, isRiskyAction, argsKind, sqlStatements, awsTargets, compactValue,
  tokenizeSql, highlightSql, visibleSegments, visibleText, prettyJson, oneLine, rawBodyText,
} from './render.js';

test('money: minor units with currency', () => {
  assert.equal(formatMoney(5000, 'usd'), '$50.00');
  assert.equal(formatMoney(5000, 'USD'), '$50.00');
  assert.equal(formatMoney(123456789, 'usd'), '$1,234,567.89');
  assert.equal(formatMoney(5, 'usd'), '$0.05');
  assert.equal(formatMoney(-2500, 'usd'), '-$25.00');
  assert.equal(formatMoney('2500', 'eur'), '€25.00');
});

test('money: zero- and three-decimal currencies', () => {
  assert.equal(currencyDecimals('jpy'), 0);
  assert.equal(currencyDecimals('KRW'), 0);
  assert.equal(currencyDecimals('kwd'), 3);
  assert.equal(currencyDecimals('gbp'), 2);
  assert.equal(formatMoney(5000, 'jpy'), '¥5,000');
  assert.match(formatMoney(1500, 'kwd'), /1\.500/);
});

test('money: bad input', () => {
  assert.equal(formatMoney('lots', 'usd'), null);
  assert.equal(formatMoney(undefined, 'usd'), null);
  assert.equal(formatMoney(5000, undefined), '5,000 (minor units)');
  assert.equal(formatMoney(5000, '<b>'), '5,000 (minor units)');
  // unknown but well-formed ISO-like code: Intl still formats it
  assert.match(formatMoney(5000, 'xyz'), /50\.00/);
});

test('stripeAmounts picks amount fields', () => {
  const a = stripeAmounts({ amount: 5000, currency: 'usd', application_fee_amount: 100, customer: 'cus_1' });
  assert.deepEqual(a, [{ key: 'amount', text: '$50.00' }, { key: 'application_fee_amount', text: '$1.00' }]);
  assert.deepEqual(stripeAmounts(null), []);
});

test('durations', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(45_000), '45s');
  assert.equal(formatDuration(133_000), '2m 13s');
  assert.equal(formatDuration(3_600_000 + 2 * 60_000), '1h 02m');
  assert.equal(formatDuration(3 * 86_400_000 + 4 * 3_600_000), '3d 4h');
  assert.equal(formatDuration(-5000), '0s');
  const now = Date.parse('2026-01-01T00:02:13Z');
  assert.equal(formatElapsed('2026-01-01T00:00:00Z', now), '2m 13s');
  assert.equal(formatElapsed('garbage', now), '—');
  assert.equal(formatCountdown('2026-01-01T00:05:00Z', now), '2m 47s left');
  assert.equal(formatCountdown('2026-01-01T00:00:00Z', now), 'expired');
});

test('timestamps', () => {
  assert.equal(formatTimestamp('2026-11-23T20:54:01Z', true), '2026-11-23 20:54:01');
  assert.equal(formatTimestamp(null), '—');
  assert.equal(shortHash('a'.repeat(64)), 'aaaaaaaaaaaa');
  assert.equal(shortHash(null), '—');
});

test('datetime-local ↔ RFC 3339 UTC', () => {
  const local = '2026-11-23T20:30';
  const iso = localInputToRfc3339(local);
  assert.match(iso, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:00Z$/);
  assert.equal(new Date(iso).getTime(), new Date(2026, 10, 23, 20, 30).getTime());
  assert.equal(rfc3339ToLocalInput(iso), local);
  assert.equal(localInputToRfc3339(''), null);
  assert.equal(localInputToRfc3339('nonsense'), null);
});

test('approvals remaining counts distinct operators', () => {
  assert.equal(approvalsRemaining({ required_approvals: 2, approvals: [] }), 2);
  assert.equal(approvalsRemaining({ required_approvals: 2, approvals: [{ operator: 'a' }, { operator: 'a' }] }), 1);
  assert.equal(approvalsRemaining({ required_approvals: 1, approvals: [{ operator: 'a' }] }), 0);
  assert.equal(approvalsRemaining({}), 1);
});

test('risky actions', () => {
  assert.ok(isRiskyAction('DeleteTable', 'aws.dynamodb'));
  assert.ok(isRiskyAction('TerminateInstances', 'aws.ec2'));
  assert.ok(isRiskyAction('PutBucketPolicy', 'aws.s3'));
  assert.ok(!isRiskyAction('GetObject', 'aws.s3'));
  assert.ok(isRiskyAction('drop', 'sql'));
  assert.ok(isRiskyAction('delete', 'stripe.customers'));
  assert.ok(!isRiskyAction('select', 'sql'));
  assert.ok(!isRiskyAction('create', 'stripe.charges'));
});

test('argsKind and sqlStatements', () => {
  assert.equal(argsKind({ resource: 'stripe.charges', args: {} }), 'stripe');
  assert.equal(argsKind({ resource: 'aws.s3', args: {} }), 'aws');
  assert.equal(argsKind({ resource: 'sql', args: { sql: 'select 1' } }), 'sql');
  assert.equal(argsKind({ resource: 'http.example.com', args: {} }), 'generic');
  const req = {
    resource: 'sql', action: 'drop', args: { sql: 'SELECT 1; DROP TABLE t' },
    intents: [
      { resource: 'sql', action: 'select', args: { sql: 'SELECT 1', has_where: false } },
      { resource: 'sql', action: 'drop', args: { sql: 'DROP TABLE t', tables: ['t'] } },
    ],
  };
  assert.deepEqual(sqlStatements(req).map((s) => s.sql), ['SELECT 1', 'DROP TABLE t']);
  assert.deepEqual(sqlStatements({ resource: 'sql', args: { sql: 'x' } }).map((s) => s.sql), ['x']);
  assert.deepEqual(sqlStatements({ resource: 'aws.s3', args: {} }), []);
});

test('awsTargets', () => {
  assert.deepEqual(awsTargets({ bucket: 'b', key: 'k', region: 'us-east-1' }).map((t) => [t.label, t.value]),
    [['Bucket', 'b'], ['Key', 'k']]);
  assert.deepEqual(awsTargets({ InstanceIds: ['i-1', 'i-2'] }).map((t) => t.value), ['i-1, i-2']);
  assert.deepEqual(awsTargets(undefined), []);
});

test('compactValue', () => {
  assert.equal(compactValue('x'), 'x');
  assert.equal(compactValue({ a: 1 }), '{"a":1}');
  assert.equal(compactValue(null), 'null');
  assert.equal(compactValue('a'.repeat(200), 10), 'aaaaaaaaa…');
});

test('tokenizeSql keeps every character and classifies', () => {
  const sql = "SELECT 'a''b', \"Col\" FROM t -- note\nWHERE x = 1.5 /* c */;";
  const toks = tokenizeSql(sql);
  assert.equal(toks.map((t) => t.text).join(''), sql);
  const types = Object.fromEntries(toks.filter((t) => t.type !== 'ws').map((t) => [t.text, t.type]));
  assert.equal(types.SELECT, 'keyword');
  assert.equal(types["'a''b'"], 'string');
  assert.equal(types['"Col"'], 'ident');
  assert.equal(types['-- note'], 'comment');
  assert.equal(types['1.5'], 'number');
  assert.equal(types['/* c */'], 'comment');
  assert.equal(types.t, 'word');
});

test('highlightSql marks dangerous verbs', () => {
  const dangerOf = (s) => highlightSql(s).danger;
  assert.deepEqual(dangerOf('DROP TABLE users'), ['DROP']);
  assert.deepEqual(dangerOf('delete from t where id = 1'), ['DELETE']);
  assert.deepEqual(dangerOf('TRUNCATE t'), ['TRUNCATE']);
  assert.deepEqual(dangerOf('GRANT ALL ON t TO bob'), ['GRANT']);
  assert.deepEqual(dangerOf('UPDATE t SET a = 1'), ['UPDATE without WHERE']);
  assert.deepEqual(dangerOf('UPDATE t SET a = 1 WHERE id = 2'), []);
  assert.deepEqual(dangerOf('SELECT 1; DROP TABLE t'), ['DROP']);
  assert.deepEqual(dangerOf("SELECT 'drop table x' FROM t"), []);
  assert.deepEqual(dangerOf('SELECT 1 -- DROP TABLE t'), []);
  assert.deepEqual(dangerOf('CREATE TABLE a (id int REFERENCES b ON DELETE CASCADE)'), []);
  const { tokens } = highlightSql('DROP TABLE t');
  assert.equal(tokens[0].type, 'danger');
});

test('highlightSql lays out clauses and keeps comments safe', () => {
  const out = highlightSql('select a,   b from t   where x=1 order by a').tokens.map((t) => t.text).join('');
  assert.equal(out, 'select a, b\nfrom t\nwhere x=1\norder by a');
  const two = highlightSql('SELECT 1; SELECT 2').tokens.map((t) => t.text).join('');
  assert.equal(two, 'SELECT 1;\n\nSELECT 2');
  // a line comment must still end its line, or it would swallow code
  const c = highlightSql('SELECT 1 -- c\n, 2').tokens.map((t) => t.text).join('');
  assert.match(c, /-- c\n/);
});

test('SQL strings end where PostgreSQL ends them (standard_conforming_strings)', () => {
  const types = (sql) => tokenizeSql(sql).filter((t) => t.type !== 'ws').map((t) => [t.type, t.text]);
  // A backslash is an ordinary character in '…': the string ends at \' and
  // OR true is code.
  assert.deepEqual(types("WHERE n = 'x\\' OR true").slice(-3),
    [['string', "'x\\'"], ['keyword', 'OR'], ['keyword', 'true']]);
  // Only E'…' strings take backslash escapes.
  assert.deepEqual(types("SELECT E'x\\'; DROP'"), [['keyword', 'SELECT'], ['string', "E'x\\'; DROP'"]]);
  assert.deepEqual(types("SELECT e'a\\\\'"), [['keyword', 'SELECT'], ['string', "e'a\\\\'"]]);
  // A word ending in e is not a prefix.
  assert.deepEqual(types("one'b'"), [['word', 'one'], ['string', "'b'"]]);
  // Doubled quotes stay inside; every character is kept.
  const sql = "SELECT 'it''s', E'\\'', \"a\\\" FROM t";
  assert.equal(tokenizeSql(sql).map((t) => t.text).join(''), sql);
});

test('destructive verbs after a backslash-quote are flagged', () => {
  assert.deepEqual(highlightSql("SELECT 'x\\'; DROP TABLE users; SELECT 'oops").danger, ['DROP']);
  assert.deepEqual(highlightSql("SELECT E'x\\'; DROP TABLE users'").danger, []);
  const { tokens } = highlightSql("SELECT 'x\\'; DELETE FROM t");
  assert.ok(tokens.some((t) => t.type === 'danger' && t.text === 'DELETE'));
});

test('invisible and control characters are shown as markers', () => {
  assert.equal(visibleText('DE89\u202E4321\u202C\u200B'), 'DE89[U+202E]4321[U+202C][U+200B]');
  assert.equal(visibleText('a\nb\tc\u0007'), 'a\\nb\\tc[U+0007]');
  assert.equal(visibleText('a\nb', { keepNewlines: true }), 'a\nb');
  assert.deepEqual(visibleSegments('x\u2066y').map((p) => p.marker), [false, true, false]);
  assert.equal(visibleText('plain'), 'plain');
  assert.equal(prettyJson({ a: 'x\u202E' }), '{\n  "a": "x\\u202e"\n}');
  assert.equal(oneLine({ a: [1] }), '{"a":[1]}');
});

test('args: a body that is not a form is shown as its text', () => {
  // A git receive-pack body as the form decoder reads it: one long key.
  const pack = '00980000000000000000000000000000000000000000 a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 refs/heads/main\u0000 report-status side-band-64k agent';
  const req = { resource: 'http.git.example.com', args: { [pack]: 'git/2.39.2\n0000PACK\u0000\u0000' } };
  assert.equal(argsKind(req), 'body');
  assert.equal(rawBodyText(req.args), `${pack}=git/2.39.2\n0000PACK\u0000\u0000`);
  assert.equal(rawBodyText({ 'hello world, plain text': '' }), null, 'a short text key is still a name');
  assert.equal(rawBodyText({ ['x'.repeat(65)]: '' }), 'x'.repeat(65));
  // Ordinary arguments stay a key/value list.
  assert.equal(argsKind({ resource: 'http.api.example.com', args: { amount: 5, name: 'Full Name' } }), 'generic');
  assert.equal(rawBodyText({}), null);
});
