// Worker of test/workers-stress.test.js: one thread of mimalloc's test-stress,
// written anew for this allocator. It attaches to the allocator, runs a
// deterministic allocate / free / transfer loop, frees everything it still
// holds locally, detaches and exits. Objects it leaves in the shared transfer
// array outlive it and are freed by other workers or by the main thread.

import { isMainThread, workerData, parentPort } from 'node:worker_threads';

if (!isMainThread) {
  const { Allocator } = await import('../../dist/index.js');
  const { makeRng, writeItems, verifyItems, ITEM_COOKIE, ITEM_COOKIE2, ITEM_MAX_WORDS } = await import('./common.js');

  const { handle, transferSab, tid, round, scale, large } = workerData;
  const a = Allocator.attach(handle);
  const agentId = a.agentId;
  const transfer = new Uint32Array(transferSab);
  const rnd = makeRng(Math.imul(tid + 1, 43) + Math.imul(round, 1000003));
  const chance = (pct) => rnd() % 100 <= pct;

  let allocated = 0; // objects
  let allocatedBytes = 0; // requested bytes
  let freed = 0;
  let exchanged = 0;
  let reallocs = 0;

  const allocItems = (items) => {
    if (chance(1)) {
      // ~1% large objects; with `large` (test-stress's ALLOW_LARGE) some of
      // them huge (x1000) or giant (x10000): singleton pages.
      if (large && chance(1)) items *= 10000;
      else if (large && chance(10)) items *= 1000;
      else items *= 100;
    }
    if (items >= 32 && items <= 40) items *= 2;
    const p = a.calloc(items, 8);
    if (p === 0) throw new Error(`out of memory: calloc(${items}, 8) returned 0 (worker ${tid}, round ${round})`);
    if (p % 8 !== 0) throw new Error(`calloc returned a misaligned block ${p}`);
    const u32 = a.u32;
    const w = p >>> 2;
    for (let k = 0; k < items * 2; k++) {
      if (u32[w + k] !== 0) throw new Error(`calloc(${items}, 8) = ${p}: byte ${4 * k} is not zero`);
    }
    writeItems(u32, p, items);
    allocated++;
    allocatedBytes += items * 8;
    return p;
  };

  const freeItems = (p) => {
    if (p === 0) return;
    const n = verifyItems(a.u32, p, `worker ${tid} round ${round}`);
    const us = a.usableSize(p);
    if (us < n * 8) throw new Error(`usableSize(${p}) = ${us} < ${n * 8}`);
    a.free(p);
    freed++;
  };

  let allocs = 100 * scale * ((tid % 8) + 1);
  let retain = allocs >>> 1;
  const data = [];
  const retained = [];
  while (allocs > 0 || retain > 0) {
    if (retain === 0 || (allocs > 0 && chance(50))) {
      data.push(allocItems(1 << (rnd() % 5)));
      allocs--;
    } else {
      retained.push(allocItems(1 << (rnd() % 7)));
      retain--;
    }
    if (chance(66) && data.length > 0) {
      const i = rnd() % data.length;
      freeItems(data[i]);
      data[i] = 0;
    }
    if (chance(2) && data.length > 0) {
      // realloc an object (maybe allocated by another worker): the prefix moves with it
      const i = rnd() % data.length;
      const p = data[i];
      if (p !== 0) {
        const n = verifyItems(a.u32, p, `worker ${tid} round ${round} (before realloc)`);
        const m = Math.min(ITEM_MAX_WORDS, 1 + (rnd() % (2 * n + 8)));
        const q = a.realloc(p, m * 8);
        if (q === 0) throw new Error(`realloc(${p}, ${m * 8}) returned 0`);
        const u32 = a.u32;
        for (let k = 0, w = q >>> 2; k < Math.min(n, m); k++, w += 2) {
          if (u32[w] !== (((n - k) ^ ITEM_COOKIE) >>> 0) || u32[w + 1] !== (((p + k * 8) ^ ITEM_COOKIE2) >>> 0)) {
            throw new Error(`realloc(${p}, ${m * 8}) = ${q} lost word ${k} of ${n}`);
          }
        }
        writeItems(u32, q, m);
        data[i] = q;
        reallocs++;
      }
    }
    if (chance(25) && data.length > 0) {
      const i = rnd() % data.length;
      const j = rnd() % transfer.length;
      // The object is completely written before it is published here.
      data[i] = Atomics.exchange(transfer, j, data[i]);
      exchanged++;
    }
  }
  for (const p of retained) freeItems(p);
  for (const p of data) freeItems(p);

  a.detach();
  parentPort.postMessage({ tid, agentId, allocated, allocatedBytes, freed, exchanged, reallocs });
}
