// Debug mode: fills (0xD0 fresh, 0xDF freed, 0xDE slack), padding with a canary
// and the requested size (checked at free and by check()), exact usableSize,
// write-after-free detection on reuse, leak reports, MIMALLOC_DEBUG=1.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Allocator, AllocatorError, goodSize } from '../dist/index.js';
import { MiB, hex, recording as recordingHeap, captureWarnings } from './lib/helpers.js';

/** A debug-mode allocator whose error reports are recorded. */
const recording = (extra = {}) => recordingHeap(32 * MiB, { debug: true, ...extra });

function every(u8, from, to, byte) {
  for (let i = from; i < to; i++) if (u8[i] !== byte) return `byte ${i - from} is ${hex(u8[i])}`;
  return true;
}

describe('debug mode fills', () => {
  test('malloc, mallocAligned and realloc growth are filled with 0xD0; zalloc/calloc with 0', () => {
    const { a, errors } = recording();
    for (const n of [1, 7, 8, 17, 100, 512, 2048, 20000, 300000, 700000]) {
      const p = a.malloc(n);
      assert.equal(every(a.u8, p, p + n, 0xd0), true, `malloc(${n})`);
      const q = a.mallocAligned(n, 64);
      assert.equal(q % 64, 0);
      assert.equal(every(a.u8, q, q + n, 0xd0), true, `mallocAligned(${n}, 64)`);
      const z = a.zalloc(n);
      assert.equal(every(a.u8, z, z + n, 0), true, `zalloc(${n})`);
      const c = a.calloc(n, 1);
      assert.equal(every(a.u8, c, c + n, 0), true, `calloc(${n}, 1)`);
      a.u8.fill(0x11, p, p + n);
      const r = a.realloc(p, n * 3);
      assert.equal(every(a.u8, r, r + n, 0x11), true, 'realloc keeps the old bytes');
      assert.equal(every(a.u8, r + n, r + 3 * n, 0xd0), true, `realloc(${n} → ${3 * n}) fills the growth`);
      for (const x of [r, q, z, c]) a.free(x);
    }
    assert.deepEqual(errors, []);
    a.check();
  });

  test('freed blocks are filled with 0xDF after their link word', () => {
    const { a, errors } = recording();
    for (const n of [16, 100, 512, 2048, 30000]) {
      const keep = a.malloc(n); // keeps the page alive
      const p = a.malloc(n);
      a.free(p);
      assert.equal(every(a.u8, p + 8, p + n, 0xdf), true, `freed ${n}-byte block`);
      a.free(keep);
    }
    assert.deepEqual(errors, []);
  });

  test('the slack after the requested size holds 0xDE and usableSize is the requested size', () => {
    const { a } = recording();
    for (const n of [0, 1, 5, 17, 33, 1000, 70000, 600000]) {
      const p = a.malloc(n);
      assert.equal(a.usableSize(p), n, `usableSize(malloc(${n}))`);
      assert.ok(a.expand(p, n) === p && a.expand(p, n + 1) === 0, 'expand goes only as far as the requested size');
      const slackEnd = Math.min(p + n + 16, p + a.goodSize(n + 8) - 8);
      assert.equal(every(a.u8, p + n, slackEnd, 0xde), true, `slack of malloc(${n})`);
      a.free(p);
    }
    a.check();
  });
});

describe('debug mode detection', () => {
  test('a write past the requested size is reported at free as EFAULT naming block, size and offset', () => {
    const { a, errors } = recording();
    const p = a.malloc(17);
    a.u8[p + 17] = 0;
    a.free(p);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'EFAULT');
    assert.equal(errors[0].address, p);
    assert.match(errors[0].message, new RegExp(`buffer overflow in block 0x${p.toString(16)} of size 17: write after 18 bytes`));
    a.check(); // the handler returned: the block was freed anyway, the heap is consistent
  });

  test('an overwritten canary is reported after the block is freed: a throwing handler leaves no block that cannot be freed', () => {
    const a = Allocator.create({ size: 32 * MiB, debug: true });
    const p = a.malloc(24); // block of 32: slack 0, the canary follows at once
    a.u32[(p + 24) >>> 2] ^= 0x1000;
    assert.throws(() => a.free(p), (e) => e instanceof AllocatorError && e.code === 'EFAULT' && /buffer overflow/.test(e.message) &&
      /first changed byte at offset 25/.test(e.message) && /freed/.test(e.message));
    a.check(); // the block is free and the heap consistent
    assert.throws(() => a.free(p), (e) => e instanceof AllocatorError && e.code === 'EAGAIN'); // a second free is a double free
    const q = a.malloc(24);
    a.free(q);
    a.check();
  });

  test('check() finds an overflow of a live block', () => {
    const { a } = recording();
    const p = a.malloc(100);
    a.check();
    a.u8[p + 101] = 0x42;
    assert.throws(() => a.check(), /D1: buffer overflow in block 0x[0-9a-f]+ of size 100: write after 102 bytes/);
  });

  test('a write after free is reported when the block is handed out again, and by check()', () => {
    const { a, errors } = recording();
    const p = a.malloc(48);
    a.free(p);
    a.u8[p + 30] = 1; // use after free
    assert.throws(() => a.check(), /write after free: block 0x[0-9a-f]+ \(size 56\)/);
    const got = [];
    let q = 0;
    for (let i = 0; i < 10000 && q !== p; i++) { q = a.malloc(48); got.push(q); }
    assert.equal(q, p, 'the freed block is handed out again');
    const e = errors.filter((x) => x.code === 'EFAULT');
    assert.equal(e.length, 1);
    assert.match(e[0].message, /write after free: block 0x[0-9a-f]+ \(size 56\) was modified at offset 30/);
    for (const x of got) a.free(x);
    a.check();
  });

  test('remote frees fill and check too', () => {
    const { a, errors } = recording();
    const b = Allocator.attach(a.handle, { onError: (code, message, address) => errors.push({ code, message, address, who: 'b' }) });
    assert.equal(b.debug, true, 'an attached agent inherits debug mode from the buffer');
    const keep = a.malloc(64);
    const p = a.malloc(64);
    const q = a.malloc(64);
    b.free(p);
    assert.equal(every(a.u8, p + 8, p + 64, 0xdf), true);
    a.u8[q + 64] = 1;
    b.free(q);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].who, 'b');
    assert.equal(errors[0].code, 'EFAULT');
    a.free(keep);
    b.detach();
    a.check();
  });

  test('leak report lists live blocks with their requested sizes; detach prints it', () => {
    const { a } = recording();
    const p = a.malloc(13);
    const q = a.malloc(2000);
    const r = a.malloc(50);
    a.free(r);
    const rep = a.leakReport();
    assert.deepEqual(rep.blocks.map((x) => [x.address, x.size]).sort((x, y) => x[0] - y[0]), [[p, 13], [q, 2000]].sort((x, y) => x[0] - y[0]));
    assert.equal(rep.bytes, 2013);
    assert.match(rep.text, /2 live blocks, 2013 bytes/);
    const { warnings: warned } = captureWarnings(() => a.detach());
    assert.equal(warned.length, 1);
    assert.match(warned[0], /detaches with 2 live blocks, 2013 bytes/);
  });

  test('MIMALLOC_DEBUG=1 turns debug mode on by default', () => {
    const code = "import('" + new URL('../dist/index.js', import.meta.url).href + "').then(({ Allocator }) => { const a = Allocator.create({ size: 1 << 24 }); const p = a.malloc(5); console.log(a.debug, a.usableSize(p)); })";
    const on = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, MIMALLOC_DEBUG: '1' }, encoding: 'utf8' });
    assert.equal(on.stdout.trim(), 'true 5', on.stderr);
    const off = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, MIMALLOC_DEBUG: '' }, encoding: 'utf8' });
    assert.equal(off.stdout.trim(), `false ${goodSize(5)}`, off.stderr); // (16: the smallest block, types.ts MIN_BLOCK)
  });
});

describe('allocation-site stacks in the leak report (allocStacks)', () => {
  function allocateInNamedFunction(a, n) {
    return a.malloc(n);
  }

  test('allocStacks: 1 records every allocation; the report shows the user frames, not the allocator\'s', () => {
    for (const opts of [{}, { debug: true }, { secure: 4 }]) {
      const a = Allocator.create({ size: 16 * MiB, allocStacks: 1, ...opts });
      const p = allocateInNamedFunction(a, 100);
      const q = a.mallocAligned(40, 4096);
      const r = allocateInNamedFunction(a, 30);
      a.free(r);
      const rep = a.leakReport();
      assert.deepEqual(rep.blocks.map((b) => b.address).sort((x, y) => x - y), [p, q].sort((x, y) => x - y), JSON.stringify(opts));
      const bp = rep.blocks.find((b) => b.address === p);
      assert.match(bp.stack, /^at allocateInNamedFunction \(.*debug\.test\.js:\d+:\d+\)/);
      assert.doesNotMatch(bp.stack, /dist\/alloc\.js/, 'the allocator\'s own frames are dropped');
      assert.match(rep.blocks.find((b) => b.address === q).stack, /debug\.test\.js/);
      assert.match(rep.text, /allocateInNamedFunction/);
      a.free(p);
      a.free(q);
      assert.equal(a.leakReport().blocks.length, 0);
    }
  });

  test('allocStacks: N samples every Nth allocation; a stack never outlives its block', () => {
    const a = Allocator.create({ size: 16 * MiB, allocStacks: 3 });
    const ps = Array.from({ length: 9 }, () => allocateInNamedFunction(a, 64));
    const withStack = a.leakReport().blocks.filter((b) => b.stack !== undefined).map((b) => b.address);
    assert.deepEqual(withStack.sort((x, y) => x - y), [ps[0], ps[3], ps[6]].sort((x, y) => x - y));
    for (const p of ps) a.free(p);
    // a freed address handed out again by an unsampled allocation shows no stale stack
    const c = Allocator.create({ size: 16 * MiB, allocStacks: 1000 }); // the 1st, 1001st, … are recorded
    const p = allocateInNamedFunction(c, 64);
    assert.match(c.leakReport().blocks[0].stack, /allocateInNamedFunction/);
    c.free(p);
    let q = 0;
    for (let i = 0; i < 900 && q !== p; i++) q = c.malloc(64);
    assert.equal(q, p, 'the freed block is handed out again');
    const blk = c.leakReport().blocks.find((b) => b.address === p);
    assert.equal(blk.stack, undefined);
  });

  test('allocStacks works for attached agents and is validated', () => {
    const a = Allocator.create({ size: 16 * MiB });
    const b = Allocator.attach(a.handle, { allocStacks: 1 });
    const p = allocateInNamedFunction(b, 10);
    assert.match(b.leakReport().blocks[0].stack, /allocateInNamedFunction/);
    assert.equal(a.leakReport({ all: true }).blocks[0].stack, undefined, 'stacks belong to the agent that recorded them');
    b.free(p);
    b.detach();
    for (const bad of [-1, 1.5, NaN]) assert.throws(() => Allocator.create({ size: 16 * MiB, allocStacks: bad }), RangeError);
    assert.throws(() => Allocator.create({ size: 16 * MiB, allocStacks: '2' }), TypeError);
    assert.throws(() => Allocator.attach(a.handle, { allocStacks: true }), TypeError);
  });
});

describe('debug mode: links are checked too', () => {
  test('a use-after-free write over a free block\'s link is reported, and its value never handed out', () => {
    const { a, errors } = recording({ size: 16 * MiB });
    const p = a.malloc(40);
    a.free(p);
    a.u32[p >>> 2] = 0x41414140; // the link word (first word of the free block), 8-aligned, outside the page
    const got = [];
    for (let i = 0; i < 300; i++) got.push(a.malloc(40));
    assert.ok(!got.includes(0x41414140), 'the overwritten link is not followed');
    const e = errors.filter((x) => x.code === 'EFAULT');
    assert.equal(e.length, 1, JSON.stringify(errors));
    assert.match(e[0].message, /corrupted free list entry/);
    for (const q of got) a.free(q);
    a.check();
  });
});
