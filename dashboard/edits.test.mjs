import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canEdit, canGrant, diffLines, majorToMinor, mergeDiff, minorToMajor } from './edits.js';

test('money is edited in major units', () => {
  assert.equal(minorToMajor(5000, 'usd'), '50.00');
  assert.equal(majorToMinor('25.5', 'usd'), 2550);
  assert.equal(majorToMinor('1,200.05', 'usd'), 120005);
  assert.equal(majorToMinor('500', 'jpy'), 500);
  assert.equal(majorToMinor('1.234', 'usd'), null);
  assert.equal(majorToMinor('ten', 'usd'), null);
});

test('the merge patch holds only what changed, null for removed keys', () => {
  assert.equal(mergeDiff({ a: 1 }, { a: 1 }), undefined);
  assert.deepEqual(mergeDiff({ a: 1, m: { x: 1, y: 2 } }, { a: 2, m: { x: 1 } }), { a: 2, m: { y: null } });
  assert.deepEqual(mergeDiff({ a: [1] }, { a: [1, 2], b: 'n' }), { a: [1, 2], b: 'n' });
});

test('what can be edited or granted', () => {
  const charge = { resource: 'stripe.charges', args: { amount: 5000, currency: 'usd' }, required_approvals: 1, grantable: true };
  assert.ok(canEdit(charge));
  assert.ok(canGrant(charge));
  assert.ok(!canEdit({ ...charge, resource: 'sql' }));
  assert.ok(!canEdit({ ...charge, required_approvals: 2 }));
  assert.ok(!canGrant({ ...charge, required_approvals: 2 }));
  assert.ok(!canGrant({ ...charge, grantable: undefined }));
  assert.deepEqual(diffLines(charge, { amount: 2500 }), [{ key: 'amount', before: '$50.00', after: '$25.00' }]);
});
