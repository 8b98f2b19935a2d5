// Growable backings (issue 12): a growable SharedArrayBuffer, a resizable ArrayBuffer, a
// WebAssembly.Memory (shared or not) from a base; growth seen by every agent; growth that
// fails at the maximum (NULL and ENOMEM, nothing lost); a reaper finishing a growth its agent
// died in; and the NULL guard (a write through NULL corrupts nothing and is reported).

import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../dist/index.js';
import { C } from '../dist/types.js';
import { fillBlock, verifyBlock, Remote } from './workers/common.js';
import { MiB, asTerminated } from './lib/helpers.js';

const CMD = new URL('./workers/cmd-worker.js', import.meta.url);
afterEach(() => Remote.killAll());

/** Sizes (multiples of 8, as fillBlock wants) from 16 B to ~200 KiB, log-spread. */
function sizeAt(i) {
  const x = ((i * 2654435761) >>> 0) / 2 ** 32;
  return Math.max(16, Math.floor(Math.exp(Math.log(16) + x * Math.log(200_000 / 16)) / 8) * 8);
}

/** Allocate and fill blocks until `bytes` are live or malloc returns NULL; the views are re-read after every call. */
function fill(a, bytes, start = 0) {
  const blocks = [];
  let live = 0;
  for (let i = start; live < bytes; i++) {
    const n = sizeAt(i);
    const p = a.malloc(n);
    if (p === 0) return { blocks, live, full: true };
    fillBlock(a.u32, p, n);
    blocks.push([p, n]);
    live += n;
  }
  return { blocks, live, full: false };
}

function verifyAll(a, blocks, where) {
  const u32 = a.u32;
  for (const [p] of blocks) verifyBlock(u32, p, 1 << 20, where);
}

function assertDisjoint(blocks) {
  const s = [...blocks].sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < s.length; i++) assert.ok(s[i - 1][0] + s[i - 1][1] <= s[i][0], `blocks ${s[i - 1][0]} and ${s[i][0]} overlap`);
}

describe('growable buffers', () => {
  test('create({ size: 1 MiB, maxSize: 2^32 − 64 KiB }) works from its first malloc and stays 1 MiB until it needs more', () => {
    const a = Allocator.create({ size: 1 << 20, maxSize: 2 ** 32 - 65536 });
    assert.equal(a.buffer.byteLength, 1 << 20);
    const p = a.malloc(100);
    assert.notEqual(p, 0);
    a.f64[p >>> 3] = 1.5;
    const q = a.malloc(200_000);
    assert.notEqual(q, 0);
    assert.equal(a.buffer.byteLength, 1 << 20, 'a 1 MiB buffer holds 200 KB without growing');
    assert.equal(a.stats().reserved, 1 << 20);
    a.free(p);
    a.free(q);
    a.check();
  });

  for (const shared of [true, false]) {
    test(`${shared ? 'a growable SharedArrayBuffer' : 'a resizable ArrayBuffer (shared: false)'} grows on demand; blocks survive every growth`, () => {
      const a = Allocator.create({ size: 1 << 20, maxSize: 96 * MiB, shared });
      const buf = a.buffer;
      assert.equal(shared ? buf.growable : buf.resizable, true);
      const { blocks, live, full } = fill(a, 40 * MiB);
      assert.equal(full, false, `NULL after ${live} bytes of a buffer that may grow to 96 MiB`);
      assert.equal(a.buffer, buf, 'the same buffer object, grown');
      assert.ok(a.buffer.byteLength >= 40 * MiB && a.buffer.byteLength <= 96 * MiB, `byteLength ${a.buffer.byteLength}`);
      assert.equal(a.u8.length, a.stats().reserved, 'the views cover the grown buffer');
      assertDisjoint(blocks);
      verifyAll(a, blocks, 'after growth');
      a.check();
      for (const [p] of blocks) a.free(p);
      a.check();
      assert.equal(a.stats().used, 0);
    });
  }

  test('growth stops at maxSize: NULL and ENOMEM, every block intact, and memory is reused after frees', () => {
    const errors = [];
    const a = Allocator.create({ size: 1 << 20, maxSize: 24 * MiB, onError: (code, message) => errors.push({ code, message }) });
    const { blocks, live, full } = fill(a, 64 * MiB);
    assert.equal(full, true);
    assert.ok(a.buffer.byteLength <= 24 * MiB, `byteLength ${a.buffer.byteLength} ≤ maxSize`);
    assert.ok(errors.length >= 1 && errors.every((e) => e.code === 'ENOMEM'), JSON.stringify(errors.slice(0, 3)));
    // the fill-to-NULL utilization holds at the maximum size too (bench:fill's one-agent floor is higher; blocks here reach 200 KB)
    assert.ok(live / (24 * MiB) > 0.7, `live ${live} of 24 MiB at the first NULL`);
    verifyAll(a, blocks, 'at the maximum');
    a.check();
    for (let i = 0; i < blocks.length; i += 2) a.free(blocks[i][0]);
    const again = fill(a, 4 * MiB, 1_000_000);
    assert.equal(again.full, false, 'freed memory is allocated again');
    verifyAll(a, blocks.filter((_, i) => i % 2 === 1), 'after reuse');
    a.check();
  });

  test('create({ buffer }) with a growable SharedArrayBuffer or a resizable ArrayBuffer grows that buffer (maxSize caps it)', () => {
    for (const buffer of [new SharedArrayBuffer(2 * MiB, { maxByteLength: 64 * MiB }), new ArrayBuffer(2 * MiB, { maxByteLength: 64 * MiB })]) {
      const a = Allocator.create({ buffer, maxSize: 16 * MiB });
      const { blocks, full } = fill(a, 64 * MiB);
      assert.equal(full, true);
      assert.ok(buffer.byteLength > 8 * MiB && buffer.byteLength <= 16 * MiB, `byteLength ${buffer.byteLength}`);
      verifyAll(a, blocks, 'given buffer');
      a.check();
    }
  });

  test('a resizable ArrayBuffer gives its free tail back after purgeDelay (stats().reserved shows it) and grows again', async () => {
    for (const delay of [0, 40, -1]) {
      const a = Allocator.create({ size: 2 * MiB, maxSize: 128 * MiB, shared: false, purgeDelay: delay });
      const keep = fill(a, 256 * 1024); // blocks in the first arena, which keeps its created size
      const { blocks } = fill(a, 48 * MiB, 5000);
      const grown = a.buffer.byteLength;
      assert.ok(grown > 48 * MiB);
      for (const [p] of blocks) a.free(p);
      a.collect(true); // the emptied pages go back to the slices now
      const generic = () => { for (let i = 0; i < 40; i++) a.free(a.mallocAligned(5000, 16)); }; // (an alignment above 8: generic calls)
      generic();
      if (delay > 0) {
        assert.equal(a.buffer.byteLength, grown, 'not before the delay');
        await new Promise((r) => setTimeout(r, delay + 20));
        for (let k = 0; k < 30; k++) { generic(); await new Promise((r) => setTimeout(r, delay + 5)); } // one arena per delay
      } else {
        for (let k = 0; k < 30; k++) generic();
      }
      if (delay < 0) {
        assert.equal(a.buffer.byteLength, grown, 'purgeDelay −1: never');
      } else {
        assert.equal(a.buffer.byteLength, 2 * MiB, `purgeDelay ${delay}: back to the created size`);
        assert.equal(a.stats().reserved, 2 * MiB);
      }
      a.check();
      verifyAll(a, keep.blocks, 'kept blocks');
      const again = fill(a, 24 * MiB, 9000);
      assert.equal(again.full, false, 'grows again after shrinking');
      verifyAll(a, again.blocks, 'after regrowth');
      verifyAll(a, keep.blocks, 'kept blocks after regrowth');
      a.check();
    }
  });

  test('a first arena that ends inside a MiB: addresses in the gap before the next arena are invalid, and nothing is written', () => {
    const errors = [];
    const a = Allocator.create({ size: 1536 * 1024, maxSize: 64 * MiB, onError: (code) => errors.push(code) });
    const small = Array.from({ length: 3000 }, (_, i) => a.malloc(16 + 8 * (i % 8))); // in the first arena
    const b = Allocator.attach(a.handle);
    for (const p of small) b.free(p); // remote frees: R bits set, waiting for a to collect them
    const { blocks } = fill(a, 8 * MiB);
    assert.ok(a.arena.arenaCount >= 2);
    const gapEnd = a.arena.arenas[1].start * C.SLICE_SIZE;
    assert.ok(gapEnd > 1536 * 1024, 'a gap');
    const ar = a.arena; // no address of the gap may read a set allocation bit (its MiB's metadata must cover it)
    for (let q = 1536 * 1024; q < gapEnd; q += 8) assert.equal(ar.mem[ar.aw(q)] & (1 << ((q >>> 3) & 31)), 0, `A bit of ${q}`);
    a.u8.fill(0x55, 1536 * 1024, gapEnd); // whatever is there must stay
    errors.length = 0;
    for (let q = 1536 * 1024; q < gapEnd; q += 4096 + 8) a.free(q);
    assert.ok(errors.length > 100 && errors.every((c) => c === 'EINVAL'), `${errors.length}: ${[...new Set(errors)]}`);
    assert.ok(a.u8.subarray(1536 * 1024, gapEnd).every((x) => x === 0x55));
    verifyAll(a, blocks, 'after the gap frees');
    a.check();
    b.detach();
  });

  test('an error handler that allocates (and grows a non-shared memory) inside a malloc: no block handed out twice', () => {
    const memory = new WebAssembly.Memory({ initial: 16, maximum: 2000 });
    const a = Allocator.create({ memory, secure: 3 });
    const p = a.malloc(100);
    const ar = a.arena;
    const rb = ar.mem[ar.pm(p >>> 14)];
    const b = ar.mem[rb + C.R_FREE] >>> 0; // the next block malloc(100) hands out
    a.u8[b + ar.mem[rb + C.R_BLOCK_SIZE] - 8] ^= 0x10; // an overrun broke its canary
    let nested = 0;
    a.setErrorHandler((code) => { if (code === 'EFAULT' && nested++ === 0) { a.malloc(2 * MiB); a.malloc(100); } });
    const x = a.malloc(100);
    const y = a.malloc(100);
    assert.equal(nested, 1, 'the overrun was reported');
    assert.notEqual(x, y);
    a.setErrorHandler(null);
    a.check();
  });

  test('maxSize is checked: below size, above 4 GiB − 16 KiB, or not an integer', () => {
    assert.throws(() => Allocator.create({ size: 4 * MiB, maxSize: 2 * MiB }), RangeError);
    assert.throws(() => Allocator.create({ size: 4 * MiB, maxSize: 2 ** 32 }), RangeError);
    assert.throws(() => Allocator.create({ size: 4 * MiB, maxSize: '8' }), TypeError);
    assert.throws(() => Allocator.create({ base: 4096 }), TypeError); // base needs memory or buffer
  });
});

describe('WebAssembly.Memory from a base', () => {
  for (const shared of [true, false]) {
    test(`${shared ? 'shared' : 'non-shared'} memory: nothing below base is written, growth by memory.grow, views current after it`, () => {
      const memory = new WebAssembly.Memory({ initial: 18, maximum: 600, shared }); // 18 pages: the module's 1.1 MB and a little
      const base = 1_100_000; // past the first MiB: addresses below the first arena's first MiB have no arena at all
      new Uint8Array(memory.buffer).fill(0x55, 0, base); // the module's data and stack
      const errors = [];
      const a = Allocator.create({ memory, base, onError: (code) => errors.push(code) });
      const { blocks, live, full } = fill(a, 64 * MiB);
      assert.equal(full, true, 'stops at the memory\'s maximum');
      assert.deepEqual([...new Set(errors)], ['ENOMEM']);
      assert.ok(live > 20 * MiB, `live ${live} in a memory of at most 600 pages`);
      assert.ok(blocks.every(([p]) => p >= base), 'every block above base');
      assert.equal(a.u8.buffer, memory.buffer, 'the views are over the memory\'s current buffer');
      assert.equal(a.u8.length, memory.buffer.byteLength - (memory.buffer.byteLength % (16 * 1024)));
      // addresses in the module's part (its bytes look like allocation bits: 0x55): invalid, and nothing written
      errors.length = 0;
      for (let q = 8; q < base; q += 4096 + 8) {
        a.free(q);
        assert.equal(a.usableSize(q), 0);
      }
      assert.ok(errors.length > 20 && errors.every((c) => c === 'EINVAL'), `${errors.length} reports: ${[...new Set(errors)]}`);
      const below = new Uint8Array(memory.buffer, 0, base);
      assert.ok(below.every((x) => x === 0x55), 'the bytes below base are the module\'s, untouched');
      verifyAll(a, blocks, 'memory');
      a.check();
      for (const [p] of blocks) a.free(p);
      a.check();
    });
  }

  test('a non-shared memory the module grows itself: the detached views are renewed on the next call, nothing lost', () => {
    const memory = new WebAssembly.Memory({ initial: 32, maximum: 1000 });
    const a = Allocator.create({ memory });
    const { blocks } = fill(a, 512 * 1024);
    const old = a.u8;
    memory.grow(1); // the module's own growth detaches every view of the old buffer
    assert.equal(old.length, 0);
    for (let i = 0; i < 200; i++) { // the fast paths meet a detached buffer first
      const p = a.malloc(24);
      assert.notEqual(p, 0);
      a.free(p);
    }
    verifyAll(a, blocks, 'after the module grew the memory');
    for (const [p] of blocks) a.free(p);
    a.check();
  });

  test('options.memory is checked', () => {
    assert.throws(() => Allocator.create({ memory: new ArrayBuffer(8) }), TypeError);
    assert.throws(() => Allocator.create({ memory: new WebAssembly.Memory({ initial: 1 }), size: 4 * MiB }), TypeError);
    assert.throws(() => Allocator.create({ memory: new WebAssembly.Memory({ initial: 1, maximum: 4 }) }), RangeError); // cannot reach 1 MiB
  });
});

describe('growth across agents', () => {
  test('a worker grows the buffer; the main thread reads, frees and allocates in the new arena; a late attach sees it all', { timeout: 60_000 }, async () => {
    const a = Allocator.create({ size: 1 << 20, maxSize: 256 * MiB });
    const w = new Remote(CMD, { handle: a.handle });
    const sizes = Array.from({ length: 200 }, (_, i) => 40_000 + 8 * i); // ~9 MiB: beyond the first arena
    const ps = await w.call('malloc', sizes);
    assert.ok(ps.every((p) => p !== 0));
    assert.ok(ps.some((p) => p >= 1 << 20), 'the worker allocated beyond the first MiB');
    verifyAll(a, ps.map((p, i) => [p, sizes[i]]), 'main reads the worker\'s blocks');
    for (const p of ps.slice(0, 100)) a.free(p); // remote frees into the new arena
    const mine = fill(a, 8 * MiB, 77);
    assert.equal(mine.full, false);
    const b = Allocator.attach(a.handle); // attaches after growth: reads the current size
    assert.equal(b.u8.length, a.u8.length);
    for (const p of ps.slice(100, 150)) b.free(p);
    b.detach();
    assert.equal(await w.call('verifyAndFree', ps.slice(150), 1 << 20), 50);
    verifyAll(a, mine.blocks, 'main');
    assert.equal(await w.close(), 0);
    a.check();
  });

  test('a shared WebAssembly.Memory from a base: a worker attaches with the handle, grows the memory, the main thread reads and frees its blocks', { timeout: 60_000 }, async () => {
    const memory = new WebAssembly.Memory({ initial: 40, maximum: 4000, shared: true });
    const base = 200_000;
    const a = Allocator.create({ memory, base });
    assert.equal(a.handle.memory, memory);
    const w = new Remote(CMD, { handle: a.handle });
    const sizes = Array.from({ length: 3000 }, (_, i) => 5000 + 8 * i);
    const ps = await w.call('malloc', sizes);
    assert.ok(ps.every((p) => p >= base));
    assert.ok(memory.buffer.byteLength > 40 * 65536, 'the worker grew the memory');
    verifyAll(a, ps.map((p, i) => [p, sizes[i]]), 'main reads the worker\'s blocks');
    for (const p of ps) a.free(p);
    assert.equal(await w.close(), 0);
    a.check();
    assert.equal(a.stats().used, 0);
  });

  test('two workers grow the buffer at once: disjoint blocks, every one intact', { timeout: 60_000 }, async () => {
    for (let round = 0; round < 3; round++) await growTogether();
  });

  async function growTogether() {
    const a = Allocator.create({ size: 1 << 20, maxSize: 512 * MiB });
    const w1 = new Remote(CMD, { handle: a.handle });
    const w2 = new Remote(CMD, { handle: a.handle });
    const sizes = Array.from({ length: 600 }, (_, i) => sizeAt(i));
    const [p1, p2] = await Promise.all([w1.call('malloc', sizes), w2.call('malloc', sizes)]);
    const blocks = [...p1.map((p, i) => [p, sizes[i]]), ...p2.map((p, i) => [p, sizes[i]])];
    assert.ok(blocks.every(([p]) => p !== 0));
    assertDisjoint(blocks);
    verifyAll(a, blocks, 'two growers');
    assert.equal(await w1.call('verifyAndFree', p1, 1 << 20), p1.length);
    assert.equal(await w2.call('verifyAndFree', p2, 1 << 20), p2.length);
    assert.equal(await w1.close(), 0);
    assert.equal(await w2.close(), 0);
    a.check();
    assert.equal(a.stats().used, 0);
  }

  for (const grown of [true, false]) {
    test(`an agent terminated while growing: releaseAgent ${grown ? 'publishes the arena whose memory is there' : 'drops the growth that never happened'} and frees the lock`, () => {
      const a = Allocator.create({ size: 2 * MiB, maxSize: 64 * MiB });
      const b = Allocator.attach(a.handle);
      const h = a.arena.hdr;
      const i32 = a.i32;
      const end = i32[h + C.H_SLICE_COUNT];
      const st = (end + C.DIR_SLICES - 1) & ~(C.DIR_SLICES - 1);
      const en = st + 2 * C.DIR_SLICES;
      // b died holding the lock, after recording the arena it was adding (and, if grown, after the buffer grew)
      Atomics.store(i32, h + C.H_GROW_START, st);
      Atomics.store(i32, h + C.H_GROW_END, en);
      Atomics.store(i32, h + C.H_GROW_LOCK, b.agentId << 2);
      if (grown) a.buffer.grow(en * C.SLICE_SIZE);
      const arenas = a.arena.arenaCount;
      assert.equal(a.releaseAgent(asTerminated(b)), true);
      assert.equal(Atomics.load(a.i32, h + C.H_GROW_LOCK), 0, 'the lock is free');
      assert.equal(a.arena.arenaCount, arenas + (grown ? 1 : 0));
      a.check();
      const { blocks, full } = fill(a, 16 * MiB);
      assert.equal(full, false, 'growth goes on');
      verifyAll(a, blocks, 'after the reaper');
      a.check();
    });
  }
});

describe('the NULL guard', () => {
  test('a write through NULL corrupts nothing; check() reports it with its offset', () => {
    const a = Allocator.create({ size: 4 * MiB });
    const p = a.malloc(100);
    a.u8[12] = 7; // a NULL struct's field
    a.f64[0] = 1.5; // f64[p >>> 3] = x after malloc returned 0 (1.5: its non-zero bytes are 6 and 7)
    assert.throws(() => a.check(), /write through NULL at offset 6 \(byte 0xf8\)/);
    const b = Allocator.attach(a.handle); // the header is intact: another agent attaches
    const q = b.malloc(100);
    a.free(p);
    b.free(q);
    b.detach();
    a.u8.fill(0, 0, C.NULL_GUARD);
    a.check();
  });

  for (const mode of [{ debug: true }, { secure: 1 }, { secure: 3 }]) {
    test(`${JSON.stringify(mode)}: the generic paths report a write through NULL (EFAULT), once`, () => {
      const errors = [];
      const a = Allocator.create({ size: 4 * MiB, ...mode, onError: (code, message, address) => errors.push({ code, message, address }) });
      a.u8[4000] = 1;
      for (let i = 0; i < 70; i++) a.free(a.mallocAligned(5000, 16)); // generic calls (an alignment above 8)
      assert.equal(errors.length, 1, JSON.stringify(errors));
      assert.equal(errors[0].code, 'EFAULT');
      assert.match(errors[0].message, /write through NULL at offset 4000/);
      assert.equal(a.u8[4000], 0, 'cleared after the report');
      a.check();
    });
  }
});
