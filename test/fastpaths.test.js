// The fast paths above 1 KiB (allocator.ts directSlot, page-queue.ts `direct[DIRECT_BINS + bin]`)
// and the local free into a full page (theap.ts unfull): the malloc fast path must pick the page of
// exactly the request's bin for every size up to LARGE_OBJ_SIZE_MAX, and a free into a full page
// must put the page back where the next malloc of its bin finds it, in every variant.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../dist/index.js';
import { MiB, KiB, asTerminated } from './lib/helpers.js';
import { C } from '../dist/types.js';
import { walkStats } from '../dist/stats.js';

const VARIANTS = [{}, { checkFree: false }, { secure: 1 }, { secure: 3 }, { secure: 4 }];

test('every request up to 512 KiB gets a block of its own bin, from the fast path too (the second malloc of a size)', () => {
  const a = Allocator.create({ size: 256 * MiB });
  for (let n = 1; n <= 512 * KiB; n += n < 4096 ? 1 : n < 65536 ? 7 : 61) {
    const p = a.malloc(n); // generic the first time a bin is met (a fresh page), fast afterwards
    const q = a.malloc(n); // fast: the bin's page is in direct[]
    assert.ok(p !== 0 && q !== 0, `malloc(${n})`);
    assert.equal(a.usableSize(q), a.goodSize(n), `malloc(${n}) came from a page of another bin`);
    assert.equal(a.usableSize(p), a.goodSize(n));
    a.free(q);
    a.free(p);
  }
  assert.equal(a.stats().used, 0);
  a.check();
});

for (const mode of VARIANTS) {
  test(`${JSON.stringify(mode)}: a free into a full page puts it back in its bin: the next malloc takes the freed block, no new page`, () => {
    const a = Allocator.create({ size: 64 * MiB, ...mode });
    const n = 20000; // a medium page (128 KiB) holds six
    const blocks = [];
    const pagesOf = () => a.stats().pages;
    blocks.push(a.malloc(n));
    const pages1 = pagesOf();
    for (let i = 0; i < 64 && pagesOf() === pages1; i++) blocks.push(a.malloc(n)); // until the first page is full and a second one is taken
    const pages2 = pagesOf();
    assert.equal(pages2, pages1 + 1, 'a second page was needed: the first is full');
    const onFirst = blocks.slice(0, -1);
    assert.ok(onFirst.length >= 2, `${onFirst.length} blocks per page`);
    for (let i = 1; i < onFirst.length; i++) blocks.push(a.malloc(n)); // the second page holds as many: full too
    assert.equal(pagesOf(), pages2);
    const victim = onFirst[1];
    a.free(victim); // a local free into a full page (the fast path in the default and unchecked variants)
    const again = a.malloc(n);
    assert.equal(again, victim, 'the freed block of the full page is reused');
    assert.equal(pagesOf(), pages2, 'no new page');
    for (const p of blocks) if (p !== victim) a.free(p);
    a.free(again);
    assert.equal(a.stats().used, 0);
    if (mode.checkFree !== false) a.check(); // (checkFree: false keeps no allocation bits for check() to verify)
  });
}

for (const mode of VARIANTS) {
  test(`${JSON.stringify(mode)}: realloc keeps every byte, NaN bit patterns included, for every length across the copy's 64-byte switch`, () => {
    const errors = [];
    const a = Allocator.create({ size: 16 * MiB, ...mode, onError: (code, msg) => errors.push(`${code} ${msg}`) });
    const u8 = a.u8;
    for (let n = 1; n <= 300; n++) {
      let p = a.malloc(n);
      for (let i = 0; i < n; i++) u8[p + i] = (i * 37 + n) & 255;
      if (n >= 8) { u8.set([1, 0, 0, 0, 0, 0, 0xf4, 0x7f], p); } // a signalling NaN in the first 8 bytes
      const want = u8.slice(p, p + n);
      p = a.realloc(p, n * 3 + 5); // moves (the block is too small)
      assert.deepEqual(u8.slice(p, p + n), want, `grown from ${n}`);
      const q = a.realloc(p, n); // shrinks: in place when n ≥ half the block, else moves
      assert.deepEqual(u8.slice(q, q + n), want, `shrunk back to ${n}`);
      a.free(q);
    }
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    if (mode.checkFree !== false) a.check();
  });
}

test('realloc in place when the size stays within [usable / 2, usable]; a double free after a realloc that moved is caught', () => {
  const a = Allocator.create({ size: 16 * MiB });
  const p = a.malloc(1000); // a 1024-byte block
  assert.equal(a.realloc(p, 1024), p);
  assert.equal(a.realloc(p, 512), p);
  const q = a.realloc(p, 511); // below half: moves to a smaller block
  assert.notEqual(q, p);
  assert.throws(() => a.free(p), /double free|not allocated|invalid/);
  assert.throws(() => a.realloc(p, 100), /double free|not allocated|invalid|already/);
  a.free(q);
  a.check();
});

test('a holder terminated while collecting remote frees (A bits cleared, R bits not yet: they are cleared a word at a time): the reaper finishes, check() holds, no false double free after', () => {
  const a = Allocator.create({ size: 16 * MiB });
  const b = Allocator.attach(a.handle);
  const ps = Array.from({ length: 40 }, () => b.malloc(48)); // one page, several R words (512 bytes each)
  for (const p of ps) a.free(p); // remote frees (a's fast path): b's XTHREAD_FREE list
  const ar = a.arena;
  const meta = ar.meta;
  const mem = a.i32;
  const rb = meta[ar.pm(ps[0] >>> C.SLICE_SHIFT)];
  assert.notEqual(Atomics.load(meta, rb + C.R_XTHREAD_FREE), 0);
  // what page.ts collectXthread / drainCollect does, stopped after 5 blocks (b dies there)
  let q = Atomics.load(meta, rb + C.R_XTHREAD_FREE) >>> 0;
  meta[rb + C.R_COLLECT] = q;
  Atomics.store(meta, rb + C.R_XTHREAD_FREE, 0);
  for (let k = 0; k < 5; k++) {
    const next = mem[q >>> 2] >>> 0; // (default mode: plain links)
    mem[ar.aw(q)] &= ~(1 << ((q >>> C.GRANULE_SHIFT) & 31)); // A cleared; its R bit stays (cleared with its word's)
    meta[rb + C.R_COLLECT] = next;
    mem[q >>> 2] = meta[rb + C.R_LOCAL_FREE];
    meta[rb + C.R_LOCAL_FREE] = q;
    meta[rb + C.R_USED]--;
    q = next;
  }
  assert.equal(a.releaseAgent(asTerminated(b)), true);
  a.check();
  assert.equal(walkStats(a.arena).used, 0, 'every block free (the pages say; the counters may be off by the dead holder\'s half-made update)');
  // the blocks are allocated again and freed by another agent: no R bit left to take for a double free
  const c = Allocator.attach(a.handle);
  const again = Array.from({ length: 200 }, () => a.malloc(48));
  for (const p of again) c.free(p);
  a.free(a.malloc(48)); // a collects
  a.check();
  assert.equal(walkStats(a.arena).used, 0);
  c.detach();
});

for (const mode of [{}, { secure: 1 }]) {
  test(`${JSON.stringify(mode)}: realloc grows a block over 512 KiB in place into the free slices after it (contents kept, no copy), and moves it when they are taken`, () => {
    const a = Allocator.create({ size: 64 * MiB, ...mode });
    let p = a.malloc(600 * KiB);
    const u8 = a.u8;
    for (let i = 0; i < 600 * KiB; i += 4093) u8[p + i] = i & 255;
    const q = a.realloc(p, 1536 * KiB);
    assert.equal(q, p, 'grown in place');
    assert.ok(a.usableSize(q) >= 1536 * KiB);
    for (let i = 0; i < 600 * KiB; i += 4093) assert.equal(u8[q + i], i & 255);
    u8[q + 1536 * KiB - 1] = 7; // the new end is the block's
    a.check(); // (page map, slices, counters, the guard of secure mode)
    const r = a.realloc(q, 3 * MiB);
    assert.equal(r, q, 'and again');
    const wall = a.malloc(600 * KiB); // takes the slices after it
    p = a.realloc(r, 8 * MiB);
    assert.notEqual(p, r, 'moved: the slices after it are taken');
    assert.equal(u8[p + 1536 * KiB - 1], 7);
    a.free(wall);
    a.free(p);
    assert.equal(a.stats().used, 0);
    a.check();
  });
}

test('an agent terminated while growing a singleton page in place (slices claimed and mapped, SLICES not yet written): the reaper gives the slices back, check() holds', () => {
  const a = Allocator.create({ size: 32 * MiB });
  const b = Allocator.attach(a.handle);
  const p = b.malloc(600 * KiB);
  const ar = a.arena;
  const meta = ar.meta;
  const rb = meta[ar.pm(p >>> C.SLICE_SHIFT)];
  const s0 = ar.sliceOfRecord(rb);
  const e = s0 + meta[rb + C.R_SLICES];
  // what malloc.ts growHuge does, stopped before the page's SLICES (b dies there)
  assert.equal(Atomics.compareExchange(meta, rb + C.R_OWNER, C.OWNER_ABANDONED, b.ag.tid | C.OWNER_HELD), C.OWNER_ABANDONED);
  assert.ok(ar.claimAt(b.ag.agentBase, e, 20));
  for (let x = e; x < e + 20; x++) meta[ar.pm(x)] = rb;
  assert.equal(a.releaseAgent(asTerminated(b)), true);
  a.check();
  for (let x = e; x < e + 20; x++) assert.ok(ar.isSliceFree(x), `slice ${x} given back`);
  a.free(p);
  a.check();
  assert.equal(walkStats(ar).used, 0); // (the pages say; counters may be off by the dead agent's half-made update)
});
