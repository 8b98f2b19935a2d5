// Bad input (DESIGN.md §4, the README's error contract): every bad call gets a clear error and
// loses nothing; the heap stays consistent and other blocks keep their contents.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator, AllocatorError } from '../dist/index.js';
import { KiB, MiB, recording } from './lib/helpers.js';

const WRONG_TYPES = ['8', '', null, undefined, {}, [], [8], 8n, 0n, { valueOf: () => 8 }];
const BAD_SIZES = [NaN, -1, -8, -0.5, 1.5, 7.999, Infinity, -Infinity];
const BAD_ADDRESS_NUMBERS = [NaN, -1, -8, 8.5, 0.5, Infinity, -Infinity, 2 ** 32, 2 ** 32 + 8, 2 ** 40];
const BAD_ALIGNMENTS = [0, 3, 6, 12, 24, 100, 65535, -8, -1, 1.5, NaN, Infinity, 2 ** 32, 2 ** 33];

function fmt(v) {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'object' && v !== null) return Array.isArray(v) ? `[${v}]` : 'object';
  return String(v);
}

/**
 * A heap with some live blocks filled with known bytes, a recording error handler, and a
 * `verify()` that asserts nothing changed since the fixture was made.
 */
function fixture() {
  const { a, errors } = recording(32 * MiB);
  const blocks = [];
  for (const [n, b] of [[8, 0x11], [64, 0x22], [100, 0x33], [3000, 0x44], [70 * KiB, 0x55], [MiB, 0x66]]) {
    const p = a.malloc(n);
    assert.notEqual(p, 0);
    const u = a.usableSize(p);
    a.u8.fill(b, p, p + u);
    blocks.push({ p, u, b });
  }
  const p64 = blocks[1].p;
  const s0 = a.stats();
  // `allocated`: the test made valid allocations too, so the committed high-water mark may have grown
  function verify(what, { allocated = false } = {}) {
    const s = a.stats();
    assert.equal(s.used, s0.used, `${what}: stats().used changed`);
    if (!allocated) assert.equal(s.committed, s0.committed, `${what}: stats().committed changed`);
    for (const { p, u, b } of blocks) {
      for (const off of [0, 1, u >>> 1, u - 1]) {
        if (a.u8[p + off] !== b) assert.fail(`${what}: block @${p} byte ${off} changed`);
      }
      assert.equal(a.usableSize(p), u, `${what}: block @${p} no longer live`);
    }
    a.check();
  }
  return { a, errors, blocks, p64, verify };
}

function expectThrows(fn, Ctor, what) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof Ctor, `${what}: threw ${e && e.constructor && e.constructor.name}: ${e && e.message}, expected ${Ctor.name}`);
    return true;
  }, `${what}: did not throw`);
}

describe('TypeError / RangeError before any change', () => {
  test('malloc and zalloc', () => {
    const { a, errors, verify } = fixture();
    for (const fn of ['malloc', 'zalloc']) {
      for (const v of WRONG_TYPES) expectThrows(() => a[fn](v), TypeError, `${fn}(${fmt(v)})`);
      for (const v of BAD_SIZES) expectThrows(() => a[fn](v), RangeError, `${fn}(${fmt(v)})`);
      expectThrows(() => a[fn](), TypeError, `${fn}()`);
    }
    assert.deepEqual(errors, []);
    verify('malloc/zalloc');
  });

  test('calloc (either argument)', () => {
    const { a, errors, verify } = fixture();
    for (const v of WRONG_TYPES) {
      expectThrows(() => a.calloc(v, 8), TypeError, `calloc(${fmt(v)}, 8)`);
      expectThrows(() => a.calloc(8, v), TypeError, `calloc(8, ${fmt(v)})`);
    }
    for (const v of BAD_SIZES) {
      expectThrows(() => a.calloc(v, 8), RangeError, `calloc(${fmt(v)}, 8)`);
      expectThrows(() => a.calloc(8, v), RangeError, `calloc(8, ${fmt(v)})`);
    }
    expectThrows(() => a.calloc(8), TypeError, 'calloc(8)');
    // a RangeError wins over an overflow: nothing is reported
    expectThrows(() => a.calloc(2 ** 20, -1), RangeError, 'calloc(2^20, -1)');
    assert.deepEqual(errors, []);
    verify('calloc');
  });

  test('realloc (address and size)', () => {
    const { a, errors, p64, verify } = fixture();
    for (const v of WRONG_TYPES) {
      expectThrows(() => a.realloc(v, 8), TypeError, `realloc(${fmt(v)}, 8)`);
      expectThrows(() => a.realloc(p64, v), TypeError, `realloc(p, ${fmt(v)})`);
      expectThrows(() => a.realloc(0, v), TypeError, `realloc(0, ${fmt(v)})`);
    }
    for (const v of BAD_ADDRESS_NUMBERS) expectThrows(() => a.realloc(v, 8), RangeError, `realloc(${fmt(v)}, 8)`);
    for (const v of BAD_SIZES) {
      expectThrows(() => a.realloc(p64, v), RangeError, `realloc(p, ${fmt(v)})`);
      expectThrows(() => a.realloc(0, v), RangeError, `realloc(0, ${fmt(v)})`);
    }
    expectThrows(() => a.realloc(p64), TypeError, 'realloc(p)');
    assert.deepEqual(errors, []);
    verify('realloc');
  });

  test('free', () => {
    const { a, errors, verify } = fixture();
    for (const v of WRONG_TYPES) expectThrows(() => a.free(v), TypeError, `free(${fmt(v)})`);
    for (const v of BAD_ADDRESS_NUMBERS) expectThrows(() => a.free(v), RangeError, `free(${fmt(v)})`);
    expectThrows(() => a.free(), TypeError, 'free()');
    assert.deepEqual(errors, []);
    verify('free');
  });

  test('mallocAligned (size and alignment)', () => {
    const { a, errors, verify } = fixture();
    for (const v of WRONG_TYPES) {
      expectThrows(() => a.mallocAligned(v, 16), TypeError, `mallocAligned(${fmt(v)}, 16)`);
      expectThrows(() => a.mallocAligned(16, v), TypeError, `mallocAligned(16, ${fmt(v)})`);
    }
    for (const v of BAD_SIZES) expectThrows(() => a.mallocAligned(v, 16), RangeError, `mallocAligned(${fmt(v)}, 16)`);
    for (const v of BAD_ALIGNMENTS) expectThrows(() => a.mallocAligned(16, v), RangeError, `mallocAligned(16, ${fmt(v)})`);
    expectThrows(() => a.mallocAligned(16), TypeError, 'mallocAligned(16)');
    assert.deepEqual(errors, []);
    verify('mallocAligned');
  });

  test('usableSize', () => {
    const { a, errors, verify } = fixture();
    for (const v of WRONG_TYPES) expectThrows(() => a.usableSize(v), TypeError, `usableSize(${fmt(v)})`);
    for (const v of BAD_ADDRESS_NUMBERS) expectThrows(() => a.usableSize(v), RangeError, `usableSize(${fmt(v)})`);
    assert.deepEqual(errors, []);
    verify('usableSize');
  });

  test('goodSize', () => {
    const { a, errors, verify } = fixture();
    for (const v of WRONG_TYPES) expectThrows(() => a.goodSize(v), TypeError, `goodSize(${fmt(v)})`);
    for (const v of BAD_SIZES) expectThrows(() => a.goodSize(v), RangeError, `goodSize(${fmt(v)})`);
    assert.deepEqual(errors, []);
    verify('goodSize');
  });

  test('expand (address and size)', () => {
    const { a, errors, p64, verify } = fixture();
    for (const v of WRONG_TYPES) {
      expectThrows(() => a.expand(v, 8), TypeError, `expand(${fmt(v)}, 8)`);
      expectThrows(() => a.expand(p64, v), TypeError, `expand(p, ${fmt(v)})`);
    }
    for (const v of BAD_ADDRESS_NUMBERS) expectThrows(() => a.expand(v, 8), RangeError, `expand(${fmt(v)}, 8)`);
    for (const v of BAD_SIZES) expectThrows(() => a.expand(p64, v), RangeError, `expand(p, ${fmt(v)})`);
    assert.deepEqual(errors, []);
    verify('expand');
  });

  test('the default handler does not change argument errors into AllocatorError', () => {
    const a = Allocator.create({ size: 4 * MiB });
    expectThrows(() => a.malloc('8'), TypeError, 'malloc("8")');
    expectThrows(() => a.malloc(-1), RangeError, 'malloc(-1)');
    expectThrows(() => a.free(null), TypeError, 'free(null)');
    expectThrows(() => a.free(-8), RangeError, 'free(-8)');
    assert.equal(a.stats().used, 0);
    a.check();
  });
});

describe('EINVAL: addresses that are not live blocks', () => {
  test('interior pointers of small, medium and huge blocks', () => {
    const { a, errors, blocks, verify } = fixture();
    for (const { p, u } of blocks) {
      const offsets = [1, 4, 8, 16, u >>> 1, (u >>> 1) & ~7, u - 8, u - 1].filter((o) => o > 0 && o < u);
      for (const off of new Set(offsets)) {
        const x = p + off;
        for (const [fn, call, ret] of [
          ['free', () => a.free(x), undefined],
          ['usableSize', () => a.usableSize(x), 0],
          ['realloc', () => a.realloc(x, 16), 0],
        ]) {
          const e0 = errors.length;
          assert.equal(call(), ret, `${fn}(p+${off})`);
          assert.equal(errors.length, e0 + 1, `${fn}(p+${off}) of a ${u}-byte block was not reported`);
          assert.equal(errors[e0].code, 'EINVAL', `${fn}(p+${off}) of a ${u}-byte block`);
          assert.equal(errors[e0].address, x);
        }
      }
    }
    verify('interior pointers');
  });

  test('out-of-range and header addresses', () => {
    const { a, errors, verify } = fixture();
    const len = a.buffer.byteLength;
    for (const x of [8, 16, 1024, len - 8, len, len + 8, 2 * len, 2 ** 31, 2 ** 32 - 8, 2 ** 32 - 1]) {
      for (const [fn, call, ret] of [
        ['free', () => a.free(x), undefined],
        ['usableSize', () => a.usableSize(x), 0],
        ['realloc', () => a.realloc(x, 16), 0],
      ]) {
        const e0 = errors.length;
        assert.equal(call(), ret, `${fn}(${x})`);
        assert.equal(errors.length, e0 + 1, `${fn}(${x}) was not reported`);
        assert.equal(errors[e0].code, 'EINVAL', `${fn}(${x})`);
        assert.equal(errors[e0].address, x);
      }
    }
    verify('out of range');
  });

  test('the hidden start of an aligned block and every other address inside it', () => {
    let hiddenSeen = 0;
    const cases = [[100, 64], [300, 128], [5000, 2048], [20000, 8192], [100, 4096], [3000, 1024], [5000, 64 * KiB], [200 * KiB, 256 * KiB]];
    for (const [n, al] of cases) {
      const errors = [];
      const a = Allocator.create({ size: 16 * MiB, onError: (code, message, address) => { errors.push({ code, address }); } });
      // Allocate aligned blocks until one does not start at its hidden block start (an
      // over-allocated block whose start is not aligned); the earlier ones stay live.
      const fillers = new Set();
      let q = 0;
      let uq = 0;
      let usedBefore = 0;
      let usedAfter = 0;
      let hidden = 0;
      for (let attempt = 0; attempt < 8; attempt++) {
        if (q !== 0) fillers.add(q);
        usedBefore = a.stats().used;
        q = a.mallocAligned(n, al);
        assert.notEqual(q, 0);
        assert.equal(q % al, 0);
        uq = a.usableSize(q);
        usedAfter = a.stats().used;
        // usableSize(q) runs to the end of the hidden block, whose size is the growth of `used`
        hidden = q + uq - (usedAfter - usedBefore);
        if (hidden !== q) break;
      }
      a.u8.fill(0x99, q, q + uq);
      if (hidden !== q) {
        hiddenSeen++;
        assert.ok(hidden < q && hidden > q - al - 8, `hidden start ${hidden} for q ${q}`);
        const e0 = errors.length;
        assert.equal(a.usableSize(hidden), 0);
        assert.equal(a.free(hidden), undefined);
        assert.equal(a.realloc(hidden, 8), 0);
        assert.deepEqual(errors.slice(e0).map((e) => e.code), ['EINVAL', 'EINVAL', 'EINVAL'], `hidden start q-${q - hidden} of (${n}, ${al})`);
      }
      // nothing below q within an alignment may be accepted (but the live fillers)
      for (let x = q - 8; x > 0 && x >= q - al - 64; x -= 8) {
        if (fillers.has(x)) continue;
        const e0 = errors.length;
        a.usableSize(x);
        a.free(x);
        if (errors.length !== e0 + 2) assert.fail(`address ${x} = q-${q - x} of mallocAligned(${n}, ${al}) accepted`);
        for (const e of errors.slice(e0)) assert.ok(['EINVAL', 'EAGAIN'].includes(e.code), `q-${q - x}: ${e.code}`);
      }
      // and nothing inside it but q
      for (let x = q + 8; x < q + uq; x += x - q < 256 ? 8 : 4096) {
        const e0 = errors.length;
        a.free(x);
        assert.equal(errors.length, e0 + 1, `free(q+${x - q}) accepted`);
        assert.equal(errors[e0].code, 'EINVAL');
      }
      assert.equal(a.stats().used, usedAfter);
      assert.equal(a.usableSize(q), uq);
      for (let i = 0; i < uq; i += 97) if (a.u8[q + i] !== 0x99) assert.fail(`aligned block byte ${i} changed`);
      a.check();
      a.free(q);
      for (const f of fillers) a.free(f);
      assert.deepEqual(errors.filter((e) => e.address === q), []);
      assert.equal(a.stats().used, 0);
      a.check();
    }
    // mimalloc's over-allocation strategy must have produced at least one hidden start
    assert.ok(hiddenSeen >= 1, 'no aligned block with a hidden start was produced; the test exercised nothing');
  });
});

describe('never handed out: block starts inside live pages', () => {
  test('every block-start address of a page that was not handed out is reported and ignored', () => {
    for (const [n, pageBytes] of [[64, 64 * KiB], [1000, 64 * KiB], [20000, 512 * KiB]]) {
      const errors = [];
      const a = Allocator.create({ size: 16 * MiB, onError: (code, message, address) => { errors.push({ code, address }); } });
      const live = new Set();
      for (let i = 0; i < 5; i++) { const p = a.malloc(n); live.add(p); a.u8.fill(0xc3, p, p + n); }
      const free1 = a.malloc(n);
      a.free(free1); // one genuinely freed block
      const bs = a.usableSize([...live][0]);
      const used = a.stats().used;
      const first = Math.min(...live);
      const pageStart = first - (first % pageBytes);
      let reported = 0;
      for (let x = pageStart; x < pageStart + pageBytes; x += 8) {
        if (live.has(x) || x === 0) continue;
        const e0 = errors.length;
        a.free(x);
        if (errors.length !== e0 + 1) assert.fail(`free(${x}) (page offset ${x - pageStart}, block size ${bs}) was accepted`);
        const code = errors[e0].code;
        if (code !== 'EINVAL' && code !== 'EAGAIN') assert.fail(`free(${x}): ${code}`);
        reported++;
      }
      assert.ok(reported > 1000);
      assert.equal(a.stats().used, used);
      a.check();
      for (const p of live) for (let i = 0; i < n; i++) if (a.u8[p + i] !== 0xc3) assert.fail(`live block ${p} changed`);
      // no block was put on a free list by mistake: allocate many, all distinct from the live ones
      const more = new Set();
      for (let i = 0; i < 300; i++) {
        const q = a.malloc(n);
        assert.ok(!live.has(q) && !more.has(q), `block ${q} handed out twice`);
        more.add(q);
      }
      for (const p of [...live, ...more]) a.free(p);
      assert.equal(a.stats().used, 0);
      a.check();
    }
  });
});

describe('EAGAIN: double free', () => {
  test('free, realloc and usableSize of a freed block (page kept alive)', () => {
    const { a, errors, verify } = fixture();
    for (const n of [8, 64, 100, 3000, 70 * KiB]) {
      const keep = a.malloc(n); // keeps the page live
      const p = a.malloc(n);
      a.free(p);
      for (const [fn, call, ret] of [
        ['free', () => a.free(p), undefined],
        ['usableSize', () => a.usableSize(p), 0],
        ['realloc', () => a.realloc(p, 8), 0],
        ['free again', () => a.free(p), undefined],
      ]) {
        const e0 = errors.length;
        assert.equal(call(), ret, fn);
        assert.equal(errors.length, e0 + 1, `${fn} of a freed ${n}-byte block was not reported`);
        assert.equal(errors[e0].code, 'EAGAIN', `${fn} of a freed ${n}-byte block`);
        assert.equal(errors[e0].address, p);
      }
      a.free(keep);
    }
    // the double frees did not put the block on a free list twice: two allocations differ
    const seen = new Set();
    for (let i = 0; i < 1000; i++) {
      const x = a.malloc(64);
      assert.ok(!seen.has(x), `block ${x} handed out twice`);
      seen.add(x);
    }
    for (const x of seen) a.free(x);
    verify('double free', { allocated: true });
  });

  test('double free of a huge block is reported (EAGAIN or EINVAL) and ignored', () => {
    const { a, errors, verify } = fixture();
    const p = a.malloc(2 * MiB);
    a.free(p);
    const e0 = errors.length;
    a.free(p);
    assert.equal(errors.length, e0 + 1);
    assert.ok(['EAGAIN', 'EINVAL'].includes(errors[e0].code), errors[e0].code);
    verify('huge double free', { allocated: true });
  });

  test('double free of an aligned block', () => {
    const { a, errors, verify } = fixture();
    const keep = a.mallocAligned(100, 256);
    const q = a.mallocAligned(100, 256);
    a.free(q);
    const e0 = errors.length;
    a.free(q);
    assert.equal(errors.length, e0 + 1);
    assert.equal(errors[e0].code, 'EAGAIN');
    a.free(keep);
    verify('aligned double free', { allocated: true });
  });
});

describe('error handlers', () => {
  test('default handler throws AllocatorError with .code and .address', () => {
    const a = Allocator.create({ size: 8 * MiB });
    const keep = a.malloc(64);
    a.u8.fill(0x12, keep, keep + 64);
    const p = a.malloc(64);
    const check = (code, addr) => (e) => {
      assert.ok(e instanceof AllocatorError, `not an AllocatorError: ${e}`);
      assert.ok(e instanceof Error);
      assert.equal(e.code, code);
      assert.equal(e.address, addr);
      assert.equal(typeof e.message, 'string');
      assert.ok(e.message.length > 0);
      return true;
    };
    assert.throws(() => a.free(p + 8), check('EINVAL', p + 8));
    assert.throws(() => a.usableSize(p + 8), check('EINVAL', p + 8));
    assert.throws(() => a.realloc(p + 8, 10), check('EINVAL', p + 8));
    const len = a.buffer.byteLength;
    assert.throws(() => a.free(len + 64), check('EINVAL', len + 64));
    a.free(p);
    assert.throws(() => a.free(p), check('EAGAIN', p));
    assert.throws(() => a.realloc(p, 100), check('EAGAIN', p));
    assert.throws(() => a.usableSize(p), check('EAGAIN', p));
    // heap consistent after the throws
    a.check();
    assert.equal(a.stats().used, a.usableSize(keep));
    for (let i = 0; i < 64; i++) assert.equal(a.u8[keep + i], 0x12);
    a.free(keep);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('ENOMEM and EOVERFLOW do not throw by default', () => {
    const a = Allocator.create({ size: 4 * MiB });
    assert.equal(a.malloc(2 ** 31), 0);
    assert.equal(a.malloc(16 * MiB), 0);
    assert.equal(a.zalloc(16 * MiB), 0);
    assert.equal(a.calloc(2 ** 16, 2 ** 16), 0);
    assert.equal(a.calloc(2 ** 12, 2 ** 12), 0);
    assert.equal(a.mallocAligned(16 * MiB, 16), 0);
    const p = a.malloc(8);
    const u = a.usableSize(p);
    assert.equal(a.realloc(p, 16 * MiB), 0);
    assert.equal(a.usableSize(p), u);
    a.free(p);
    a.check();
  });

  test('custom handler receives (code, message, address); ENOMEM / EOVERFLOW are reported', () => {
    const calls = [];
    const a = Allocator.create({ size: 4 * MiB, onError: (...args) => { calls.push(args); } });
    assert.equal(a.malloc(16 * MiB), 0);
    assert.equal(a.calloc(2 ** 16, 2 ** 16), 0);
    assert.equal(calls.length, 2);
    assert.equal(calls[0][0], 'ENOMEM');
    assert.equal(calls[1][0], 'EOVERFLOW');
    for (const c of calls) {
      assert.equal(c.length, 3);
      assert.equal(typeof c[1], 'string');
    }
    const p = a.malloc(40);
    const keep = a.malloc(40);
    calls.length = 0;
    assert.equal(a.free(p + 8), undefined);
    assert.equal(a.realloc(p + 8, 80), 0);
    assert.equal(a.usableSize(p + 8), 0);
    assert.deepEqual(calls.map((c) => [c[0], c[2]]), [['EINVAL', p + 8], ['EINVAL', p + 8], ['EINVAL', p + 8]]);
    assert.ok(calls.every((c) => typeof c[1] === 'string' && c[1].length > 0));
    // the calls were ignored: p is still live
    assert.ok(a.usableSize(p) >= 40);
    a.free(p);
    calls.length = 0;
    assert.equal(a.free(p), undefined);
    assert.equal(a.realloc(p, 80), 0);
    assert.equal(a.usableSize(p), 0);
    assert.deepEqual(calls.map((c) => [c[0], c[2]]), [['EAGAIN', p], ['EAGAIN', p], ['EAGAIN', p]]);
    a.free(keep);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('a handler that throws its own error propagates it, heap unchanged', () => {
    class Mine extends Error {}
    const a = Allocator.create({ size: 4 * MiB, onError: () => { throw new Mine('x'); } });
    const p = a.malloc(64);
    const u = a.usableSize(p);
    assert.throws(() => a.free(p + 8), Mine);
    assert.equal(a.usableSize(p), u);
    a.free(p);
    assert.throws(() => a.free(p), Mine);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('setErrorHandler switches between custom and default', () => {
    const a = Allocator.create({ size: 4 * MiB });
    const p = a.malloc(64);
    const codes = [];
    a.setErrorHandler((code) => codes.push(code));
    a.free(p + 16);
    assert.deepEqual(codes, ['EINVAL']);
    a.setErrorHandler(null);
    assert.throws(() => a.free(p + 16), AllocatorError);
    a.setErrorHandler((code) => codes.push(code));
    a.free(p + 16);
    assert.deepEqual(codes, ['EINVAL', 'EINVAL']);
    a.free(p);
    a.check();
  });
});
