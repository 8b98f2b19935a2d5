// The A and R bitmaps at their granules (types.ts: A 8 bytes, R 16 bytes,
// MIN_BLOCK 16): every block, however small and wherever it starts, has bits
// of its own, so frees by another agent and their double frees are told apart
// exactly for neighbours 16 bytes apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../dist/index.js';
import { MiB } from './lib/helpers.js';

test('neighbouring small blocks freed by another agent: no false double free; a second free of each is EAGAIN', () => {
  const errors = [];
  const onError = (code, message) => { errors.push({ code, message }); };
  const a = Allocator.create({ size: 16 * MiB, onError });
  const b = Allocator.attach(a.handle, { onError });
  const blocks = [];
  for (let round = 0; round < 200; round++) {
    for (const n of [1, 5, 8, 9, 16, 17, 24, 33, 40]) blocks.push(a.malloc(n));
    blocks.push(a.mallocAligned(1 + (round % 8), 16 << (round % 4)));
  }
  assert.ok(blocks.every((p) => p !== 0));
  const sorted = [...blocks].sort((x, y) => x - y);
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i] - sorted[i - 1] >= 16, `blocks ${sorted[i - 1]} and ${sorted[i]} are under 16 bytes apart`);
  for (const p of blocks) b.free(p); // every block freed by the other agent, neighbours in turn
  assert.deepEqual(errors.map((e) => e.message), [], 'no free was taken for a double free');
  for (const p of blocks) b.free(p);
  assert.equal(errors.length, blocks.length, 'each second free is reported');
  assert.ok(errors.every((e) => e.code === 'EAGAIN'), errors.find((e) => e.code !== 'EAGAIN')?.message);
  a.check();
  b.detach();
  a.check();
  assert.equal(a.stats().used, 0);
});
