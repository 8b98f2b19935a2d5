// Zero-initialisation tests: a port of mimalloc's test/test-api-fill.c "zeroinit" cases,
// plus reuse of dirtied memory (catches a wrong "this memory is known to be zero" shortcut).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../dist/index.js';
import { KiB, MiB, recording } from './lib/helpers.js';

const SMALL = 512; // MI_SMALL_SIZE_MAX / 2
const LARGE = 2 * KiB; // 2 * MI_SMALL_SIZE_MAX
const HUGE = MiB;

/** Index of the first non-zero byte in [p, p+n), or -1. */
function firstNonZero(a, p, n) {
  const u8 = a.u8;
  // fast path: compare 8 bytes at a time where aligned
  let i = 0;
  const f64 = a.f64;
  while (i < n && ((p + i) & 7) !== 0) { if (u8[p + i] !== 0) return i; i++; }
  for (; i + 8 <= n; i += 8) {
    if (f64[(p + i) >>> 3] !== 0 || u8[p + i + 7] !== 0 || u8[p + i] !== 0) {
      for (let j = i; j < i + 8; j++) if (u8[p + j] !== 0) return j;
    }
  }
  for (; i < n; i++) if (u8[p + i] !== 0) return i;
  return -1;
}

function assertZero(a, p, n, what) {
  assert.notEqual(p, 0, `${what}: NULL`);
  const i = firstNonZero(a, p, n);
  if (i >= 0) assert.fail(`${what} @${p}: byte ${i} of ${n} is ${a.u8[p + i]}, expected 0`);
}

function assertFilled(a, p, n, byte, what) {
  const u8 = a.u8;
  for (let i = 0; i < n; i++) {
    if (u8[p + i] !== byte) assert.fail(`${what} @${p}: byte ${i} of ${n} is ${u8[p + i]}, expected ${byte}`);
  }
}

describe('zeroinit', () => {
  for (const [name, n] of [['small', SMALL], ['large', LARGE], ['huge', HUGE]]) {
    test(`zeroinit-zalloc-${name}`, () => {
      const { a, errors } = recording();
      const p = a.zalloc(n);
      assertZero(a, p, n, `zalloc(${n})`);
      a.free(p);
      assert.deepEqual(errors, []);
      a.check();
    });

    test(`zeroinit-calloc-${name}`, () => {
      const { a, errors } = recording();
      const p = a.calloc(n, 1);
      assertZero(a, p, n, `calloc(${n}, 1)`);
      const q = a.calloc(n / 8, 8);
      assertZero(a, q, n, `calloc(${n / 8}, 8)`);
      const r = a.calloc(1, n);
      assertZero(a, r, n, `calloc(1, ${n})`);
      a.free(p); a.free(q); a.free(r);
      assert.deepEqual(errors, []);
      a.check();
    });
  }

  test('zeroinit-zalloc-small1: zalloc of many tiny sizes', () => {
    const { a, errors } = recording();
    const ps = [];
    for (let n = 0; n <= 256; n++) {
      const p = a.zalloc(n);
      assertZero(a, p, n, `zalloc(${n})`);
      ps.push(p);
    }
    for (const p of ps) a.free(p);
    assert.deepEqual(errors, []);
    a.check();
  });

  test('realloc of a zalloc\'d block keeps the zero prefix (grow x3)', () => {
    const { a, errors } = recording();
    for (const n of [SMALL, LARGE]) {
      let p = a.zalloc(n);
      assertZero(a, p, n, 'zalloc');
      for (let k = 2; k <= 4; k++) {
        p = a.realloc(p, n * k);
        assertZero(a, p, n, `realloc to ${n * k}: old prefix`);
      }
      a.free(p);
    }
    assert.deepEqual(errors, []);
    a.check();
  });

  test('aligned blocks (align 32, 4096, 64 KiB, 1 MiB): written contents survive neighbours', () => {
    const { a, errors } = recording();
    for (const al of [32, 4096, 64 * KiB, MiB]) {
      for (const n of [SMALL, LARGE, HUGE]) {
        const p = a.mallocAligned(n, al);
        assert.notEqual(p, 0);
        assert.equal(p % al, 0);
        a.u8.fill(0xa7, p, p + n);
        const others = [];
        for (let i = 0; i < 20; i++) {
          const q = a.malloc(n);
          a.u8.fill(0x5e, q, q + a.usableSize(q));
          others.push(q);
        }
        const r = a.mallocAligned(n, al);
        a.u8.fill(0x3b, r, r + a.usableSize(r));
        assertFilled(a, p, n, 0xa7, `mallocAligned(${n}, ${al})`);
        for (const q of others) a.free(q);
        a.free(r);
        assertFilled(a, p, n, 0xa7, `mallocAligned(${n}, ${al}) after neighbours freed`);
        a.free(p);
      }
    }
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
  });
});

describe('zeroing after the memory was dirtied and freed', () => {
  // malloc, fill with 0xFF, free, then calloc/zalloc the same sizes: all zero.
  const sizes = [8, 16, 48, 64, 100, SMALL, 1000, LARGE, 5000, 16 * KiB, 40 * KiB, 100 * KiB, 300 * KiB, HUGE, 3 * MiB];

  for (const fn of ['zalloc', 'calloc']) {
    test(`${fn} after malloc/fill 0xFF/free of the same sizes`, () => {
      const { a, errors } = recording();
      for (const n of sizes) {
        const count = Math.max(2, Math.min(300, Math.floor(2 * MiB / Math.max(n, 1))));
        const ps = [];
        for (let i = 0; i < count; i++) {
          const p = a.malloc(n);
          assert.notEqual(p, 0);
          a.u8.fill(0xff, p, p + a.usableSize(p));
          ps.push(p);
        }
        // free in an interleaved order so free lists are not simply LIFO
        for (let i = 0; i < count; i += 2) a.free(ps[i]);
        for (let i = 1; i < count; i += 2) a.free(ps[i]);
        const qs = [];
        for (let i = 0; i < count; i++) {
          const q = fn === 'zalloc' ? a.zalloc(n) : a.calloc(1, n);
          assertZero(a, q, n, `${fn}(${n}) #${i} after dirty free`);
          a.u8.fill(0xff, q, q + a.usableSize(q)); // dirty again for the next size
          qs.push(q);
        }
        for (const q of qs) a.free(q);
      }
      assert.deepEqual(errors, []);
      assert.equal(a.stats().used, 0);
      a.check();
    });
  }

  test('calloc(count, size) form after dirty free', () => {
    const { a, errors } = recording();
    const ps = [];
    for (let i = 0; i < 200; i++) { const p = a.malloc(800); a.u8.fill(0xff, p, p + a.usableSize(p)); ps.push(p); }
    for (const p of ps) a.free(p);
    for (let i = 0; i < 200; i++) {
      const q = a.calloc(100, 8);
      assertZero(a, q, 800, `calloc(100, 8) #${i}`);
    }
    assert.deepEqual(errors, []);
    a.check();
  });

  test('dirty slices of a freed huge block reused by small and medium pages are zeroed', () => {
    const { a, errors } = recording(16 * MiB);
    const big = a.malloc(8 * MiB);
    assert.notEqual(big, 0);
    a.u8.fill(0xff, big, big + a.usableSize(big));
    a.free(big);
    const live = [];
    for (const n of [24, 200, 3000, 20 * KiB, 70 * KiB]) {
      const count = Math.floor(MiB / n);
      for (let i = 0; i < count; i++) {
        const q = i & 1 ? a.zalloc(n) : a.calloc(n, 1);
        assertZero(a, q, n, `${i & 1 ? 'zalloc' : 'calloc'}(${n})`);
        live.push(q);
      }
    }
    for (const q of live) a.free(q);
    assert.deepEqual(errors, []);
    a.check();
  });

  test('a dirty page of one size class reused by another size class is zeroed', () => {
    const { a, errors } = recording(8 * MiB);
    const rounds = [[32, 48], [48, 112], [1000, 24], [4096, 520], [520, 4096], [30000, 900]];
    for (const [n1, n2] of rounds) {
      const ps = [];
      for (let i = 0; i < Math.floor(512 * KiB / n1); i++) {
        const p = a.malloc(n1);
        a.u8.fill(0xff, p, p + a.usableSize(p));
        ps.push(p);
      }
      for (const p of ps) a.free(p);
      const qs = [];
      for (let i = 0; i < Math.floor(512 * KiB / n2); i++) {
        const q = a.zalloc(n2);
        assertZero(a, q, n2, `zalloc(${n2}) after ${n1}-byte blocks`);
        qs.push(q);
      }
      for (const q of qs) { a.u8.fill(0xff, q, q + a.usableSize(q)); a.free(q); }
    }
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('realloc-freed blocks are zeroed when handed out by zalloc', () => {
    const { a, errors } = recording();
    let p = a.malloc(16);
    for (let n = 16; n < 200 * KiB; n = Math.floor(n * 1.7) + 8) {
      p = a.realloc(p, n);
      a.u8.fill(0xff, p, p + a.usableSize(p));
    }
    a.free(p);
    const qs = [];
    for (let n = 16; n < 200 * KiB; n = Math.floor(n * 1.7) + 8) {
      const q = a.zalloc(n);
      assertZero(a, q, n, `zalloc(${n})`);
      qs.push(q);
    }
    for (const q of qs) a.free(q);
    assert.deepEqual(errors, []);
    a.check();
  });

  test('a buffer passed in with garbage contents: calloc/zalloc still zero', () => {
    for (const buf of [new SharedArrayBuffer(16 * MiB), new ArrayBuffer(16 * MiB)]) {
      new Uint8Array(buf).fill(0xee);
      const errors = [];
      const a = Allocator.create({ buffer: buf, onError: (c) => errors.push(c) });
      const ps = [];
      for (const n of [0, 8, 100, SMALL, LARGE, 10000, 70 * KiB, HUGE, 3 * MiB]) {
        const p = a.zalloc(n);
        assertZero(a, p, n, `zalloc(${n}) in dirty buffer`);
        const q = a.calloc(n, 1);
        assertZero(a, q, n, `calloc(${n}, 1) in dirty buffer`);
        ps.push(p, q);
      }
      for (const p of ps) a.free(p);
      assert.deepEqual(errors, []);
      a.check();
    }
  });
});
