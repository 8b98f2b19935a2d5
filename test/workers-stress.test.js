// Multi-worker stress test: a port of mimalloc's test/test-stress.c to workers.
//
// WORKERS workers attach to one allocator and run a deterministic
// allocate / verify / free / transfer loop (test/workers/stress-worker.js).
// Objects migrate between workers through a 1000-slot transfer array and
// outlive the workers that allocated them. Each round the workers detach and
// exit, the main thread frees about half of the transfer slots, and new
// workers attach for the next round. Every object is zero-checked when it is
// allocated (calloc) and verified word by word when it is freed.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../dist/index.js';
import { makeRng, writeItems, verifyItems, runWorker } from './workers/common.js';

const WORKER = new URL('./workers/stress-worker.js', import.meta.url);
const TRANSFER_SLOTS = 1000;

async function stress(t, { workers, rounds, scale, size, reuseFactor, large = false }) {
  const a = Allocator.create({ size });
  const used0 = a.stats().used;
  const transferSab = new SharedArrayBuffer(TRANSFER_SLOTS * 4);
  const transfer = new Uint32Array(transferSab);

  // The main thread's own live blocks: they must survive every round intact.
  const own = [];
  for (let k = 1; k <= 40; k++) {
    const n = (k * 7) % 61 + 1;
    const p = a.calloc(n, 8);
    assert.notEqual(p, 0);
    writeItems(a.u32, p, n);
    own.push(p);
  }
  const baseline = a.stats().used;
  assert.ok(baseline > used0, 'used grows with the main thread\'s live blocks');

  const rnd = makeRng(0x5eed);
  let totalBytes = 0;
  let totalObjects = 0;
  let totalReallocs = 0;
  let mainFreed = 0;

  for (let round = 0; round < rounds; round++) {
    const last = round === rounds - 1;
    const runs = [];
    for (let tid = 0; tid < workers; tid++) {
      runs.push(runWorker(WORKER, { handle: a.handle, transferSab, tid, round, scale, large }, 120_000));
    }
    const results = (await Promise.all(runs)).map((m) => m[0]);
    const ids = new Set([a.agentId]);
    for (const r of results) {
      assert.ok(Number.isInteger(r.agentId) && r.agentId > 0, `agentId ${r.agentId} is a positive integer`);
      assert.ok(!ids.has(r.agentId), `agentId ${r.agentId} is distinct among live agents`);
      ids.add(r.agentId);
      totalBytes += r.allocatedBytes;
      totalObjects += r.allocated;
      totalReallocs += r.reallocs;
    }

    // All workers of the round have detached; free ~half of the transfer slots
    // (all of them after the last round), verifying every object.
    for (let i = 0; i < TRANSFER_SLOTS; i++) {
      if (last || rnd() % 2 === 0) {
        const p = Atomics.exchange(transfer, i, 0);
        if (p !== 0) {
          verifyItems(a.u32, p, `main, round ${round}, slot ${i}`);
          a.free(p);
          mainFreed++;
        }
      }
    }
    a.check();
    for (const p of own) verifyItems(a.u32, p, 'main thread own block');
  }

  for (let i = 0; i < TRANSFER_SLOTS; i++) assert.equal(transfer[i], 0, `transfer slot ${i} is empty`);
  a.check();
  const st = a.stats();
  assert.equal(st.used, baseline, 'used returns to the baseline of the main thread\'s own live blocks');
  // Memory is reused: the high-water mark stays far below the bytes allocated.
  t.diagnostic(`${workers} workers x ${rounds} rounds: ${totalObjects} objects, ${totalBytes} bytes allocated, ${totalReallocs} reallocs, ` +
    `${mainFreed} freed by main from transfer slots, committed ${st.committed}`);
  assert.ok(totalBytes > reuseFactor * st.committed,
    `committed ${st.committed} should be far below the ${totalBytes} bytes allocated (${totalObjects} objects)`);

  for (const p of own) {
    verifyItems(a.u32, p, 'main thread own block');
    a.free(p);
  }
  a.check();
  assert.equal(a.stats().used, used0, 'used returns to its initial value once everything is freed');
  return { totalBytes, totalObjects, mainFreed, committed: st.committed };
}

test('stress: 4 workers x 10 rounds, objects migrate between workers and outlive them', { timeout: 180_000 }, async (t) => {
  const r = await stress(t, { workers: 4, rounds: 10, scale: 100, size: 256 << 20, reuseFactor: 6 });
  assert.ok(r.mainFreed > 0, 'some objects outlived their workers in the transfer array');
});

test('stress: 8 workers x 3 rounds (more agents than cores)', { timeout: 120_000 }, async (t) => {
  await stress(t, { workers: 8, rounds: 3, scale: 30, size: 128 << 20, reuseFactor: 2 });
});

test('stress: 4 workers x 8 rounds with huge objects (singleton pages)', { timeout: 180_000 }, async (t) => {
  await stress(t, { workers: 4, rounds: 8, scale: 50, size: 512 << 20, reuseFactor: 2, large: true });
});
