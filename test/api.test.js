// Single-agent API tests: a port of mimalloc's test/test-api.c cases that apply to a
// 32-bit byte-offset allocator, plus the contract in the README.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator, AllocatorError } from '../dist/index.js';
import { C } from '../dist/types.js';
import { KiB, MiB, asTerminated, recording } from './lib/helpers.js';

function maxUsable(n) {
  return n + Math.max(16, n / 4);
}

function fillBlock(a, p, n, byte) {
  a.u8.fill(byte, p, p + n);
}

function expectFilled(a, p, n, byte, what = 'block') {
  const u8 = a.u8;
  for (let i = 0; i < n; i++) {
    if (u8[p + i] !== byte) {
      assert.fail(`${what} @${p}: byte ${i} of ${n} is ${u8[p + i]}, expected ${byte}`);
    }
  }
}

/** Asserts that `fn` reports exactly one error with `code` (through the recording handler). */
function expectReport(errors, code, fn) {
  const before = errors.length;
  const r = fn();
  assert.equal(errors.length, before + 1, `expected one ${code} report, got ${JSON.stringify(errors.slice(before))}`);
  assert.equal(errors[errors.length - 1].code, code);
  return r;
}

describe('exports and creation', () => {
  test('Allocator and AllocatorError are exported', () => {
    assert.equal(typeof Allocator, 'function');
    assert.equal(typeof Allocator.create, 'function');
    assert.equal(typeof Allocator.attach, 'function');
    assert.equal(typeof AllocatorError, 'function');
    const e = new AllocatorError('EINVAL', 'x', 8);
    assert.ok(e instanceof Error);
  });

  test('default size is 256 MiB, shared', () => {
    const a = Allocator.create();
    assert.ok(a.buffer instanceof SharedArrayBuffer);
    assert.equal(a.buffer.byteLength, 256 * MiB);
    assert.equal(a.stats().reserved, 256 * MiB);
  });

  test('size is rounded up to a multiple of 16 KiB (a slice)', () => {
    const a = Allocator.create({ size: MiB + 1 });
    assert.equal(a.buffer.byteLength, MiB + 16 * KiB);
    const b = Allocator.create({ size: 3 * MiB + 16 * KiB - 7 });
    assert.equal(b.buffer.byteLength, 3 * MiB + 16 * KiB);
    const c = Allocator.create({ size: 2 * MiB });
    assert.equal(c.buffer.byteLength, 2 * MiB);
  });

  test('shared: false uses a plain ArrayBuffer and has no handle', () => {
    const a = Allocator.create({ size: 4 * MiB, shared: false });
    assert.ok(a.buffer instanceof ArrayBuffer);
    assert.ok(!(a.buffer instanceof SharedArrayBuffer));
    assert.throws(() => a.handle);
    const p = a.malloc(100);
    assert.notEqual(p, 0);
    a.u8[p] = 7;
    assert.equal(a.u8[p], 7);
    a.free(p);
    a.check();
  });

  test('buffer option: manages the given SharedArrayBuffer / ArrayBuffer', () => {
    const sab = new SharedArrayBuffer(4 * MiB);
    const a = Allocator.create({ buffer: sab });
    assert.ok(a.buffer === sab);
    assert.ok(a.u8.buffer === sab);
    assert.equal(a.stats().reserved, 4 * MiB);
    const p = a.malloc(1000);
    assert.notEqual(p, 0);
    assert.ok(p + 1000 <= sab.byteLength);
    a.free(p);
    a.check();

    const ab = new ArrayBuffer(2 * MiB);
    const b = Allocator.create({ buffer: ab });
    assert.ok(b.buffer === ab);
    const q = b.malloc(64);
    assert.notEqual(q, 0);
    b.free(q);
    b.check();
  });

  test('secure and debug options are accepted', () => {
    for (const opts of [{ secure: 0 }, { secure: 1 }, { debug: true }, { secure: 2, debug: false }]) {
      const a = Allocator.create({ size: 4 * MiB, ...opts });
      const p = a.malloc(40);
      assert.notEqual(p, 0);
      a.free(p);
      a.check();
    }
  });

  test('agentId is a positive integer, distinct per allocator object', () => {
    const a = Allocator.create({ size: 4 * MiB });
    const b = Allocator.create({ size: 4 * MiB });
    assert.ok(Number.isInteger(a.agentId) && a.agentId > 0);
    assert.ok(Number.isInteger(b.agentId) && b.agentId > 0);
  });
});

describe('views', () => {
  test('u8/i32/u32/f64/view cover the whole buffer', () => {
    const a = Allocator.create({ size: 8 * MiB });
    const len = a.buffer.byteLength;
    assert.equal(len, 8 * MiB);
    assert.ok(a.u8 instanceof Uint8Array);
    assert.ok(a.i32 instanceof Int32Array);
    assert.ok(a.u32 instanceof Uint32Array);
    assert.ok(a.f64 instanceof Float64Array);
    assert.ok(a.view instanceof DataView);
    for (const v of [a.u8, a.i32, a.u32, a.f64, a.view]) {
      assert.ok(v.buffer === a.buffer);
      assert.equal(v.byteOffset, 0);
      assert.equal(v.byteLength, len);
    }
    assert.equal(a.u8.length, len);
    assert.equal(a.i32.length, len / 4);
    assert.equal(a.u32.length, len / 4);
    assert.equal(a.f64.length, len / 8);
  });

  test('views alias the same bytes of a block (f64[p >>> 3] works)', () => {
    const a = Allocator.create({ size: 8 * MiB });
    const p = a.malloc(64);
    a.f64[p >>> 3] = 1.5;
    assert.equal(a.view.getFloat64(p, true), 1.5);
    a.u32[(p + 8) >>> 2] = 0xdeadbeef;
    assert.equal(a.i32[(p + 8) >>> 2], 0xdeadbeef | 0);
    assert.equal(a.view.getUint32(p + 8, true), 0xdeadbeef);
    assert.equal(a.u8[p + 8], 0xef);
    a.free(p);
  });
});

describe('test-api port', () => {
  test('malloc-zero: malloc(0) returns a unique non-NULL block', () => {
    const { a, errors } = recording();
    const ps = new Set();
    for (let i = 0; i < 100; i++) {
      const p = a.malloc(0);
      assert.notEqual(p, 0);
      assert.equal(p % 8, 0);
      assert.ok(!ps.has(p), `malloc(0) returned ${p} twice`);
      ps.add(p);
    }
    for (const p of ps) a.free(p);
    assert.deepEqual(errors, []);
    a.check();
  });

  test('malloc-nomem: sizes >= 2^31 return 0 and report ENOMEM (default handler does not throw)', () => {
    const { a, errors } = recording();
    for (const n of [2 ** 31, 2 ** 31 + 8, 2 ** 32 - 1, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
      const r = expectReport(errors, 'ENOMEM', () => a.malloc(n));
      assert.equal(r, 0, `malloc(${n})`);
      assert.equal(expectReport(errors, 'ENOMEM', () => a.zalloc(n)), 0, `zalloc(${n})`);
    }
    // more than the buffer can supply
    assert.equal(expectReport(errors, 'ENOMEM', () => a.malloc(100 * MiB)), 0);
    assert.equal(expectReport(errors, 'ENOMEM', () => a.malloc(64 * MiB)), 0);
    // default handler: no throw
    const b = Allocator.create({ size: 4 * MiB });
    assert.equal(b.malloc(2 ** 31), 0);
    assert.equal(b.malloc(8 * MiB), 0);
    assert.equal(b.zalloc(2 ** 31), 0);
    assert.equal(b.stats().used, 0);
    b.check();
    a.check();
  });

  test('malloc-free-null: free(0) is a no-op', () => {
    const { a, errors } = recording();
    const p = a.malloc(32);
    const before = a.stats();
    assert.equal(a.free(0), undefined);
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, before.used);
    a.free(p);
    a.check();
    // default handler: no throw
    Allocator.create({ size: 2 * MiB }).free(0);
  });

  test('malloc-free-invalid-low: free of a foreign / never-allocated address is EINVAL and ignored', () => {
    const { a, errors } = recording();
    const live = [];
    for (let i = 0; i < 10; i++) {
      const p = a.malloc(100);
      fillBlock(a, p, 100, 0x11 + i);
      live.push(p);
    }
    const used = a.stats().used;
    const len = a.buffer.byteLength;
    // 0x3990080 is mimalloc's "foreign low address" (issue #1087); here it lies
    // high in the 64 MiB buffer, in slices that no page uses yet.
    for (const bad of [0x3990080, 8, 64, 4096, len - 8, len, len + 8, 2 ** 32 - 8]) {
      assert.equal(expectReport(errors, 'EINVAL', () => a.free(bad)), undefined, `free(${bad})`);
      assert.equal(errors.at(-1).address, bad);
      assert.equal(expectReport(errors, 'EINVAL', () => a.usableSize(bad)), 0, `usableSize(${bad})`);
      assert.equal(expectReport(errors, 'EINVAL', () => a.realloc(bad, 16)), 0, `realloc(${bad})`);
    }
    assert.equal(a.stats().used, used);
    live.forEach((p, i) => expectFilled(a, p, 100, 0x11 + i));
    a.check();
    for (const p of live) a.free(p);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('calloc-overflow: count*size >= 2^32 returns 0 with EOVERFLOW (no throw by default)', () => {
    const { a, errors } = recording();
    const cases = [
      [2 ** 16, 2 ** 16],
      [2 ** 20, Math.floor((2 ** 32 - 1) / 1000)],
      [2 ** 32, 1],
      [1, 2 ** 32],
      [3, 2 ** 31],
      [2 ** 31, 2 ** 31],
      [65537, 65537],
    ];
    for (const [count, size] of cases) {
      const r = expectReport(errors, 'EOVERFLOW', () => a.calloc(count, size));
      assert.equal(r, 0, `calloc(${count}, ${size})`);
    }
    // products in [2^31, 2^32) do not overflow: they are ENOMEM
    assert.equal(expectReport(errors, 'ENOMEM', () => a.calloc(2 ** 16, 2 ** 15)), 0);
    assert.equal(expectReport(errors, 'ENOMEM', () => a.calloc(3, 2 ** 30)), 0);
    const b = Allocator.create({ size: 4 * MiB });
    assert.equal(b.calloc(2 ** 16, 2 ** 16), 0);
    assert.equal(b.calloc(2 ** 16, 2 ** 15), 0);
    assert.equal(b.stats().used, 0);
    b.check();
    a.check();
  });

  test('calloc0: calloc(0, 1000) is a non-NULL block with usableSize <= 16', () => {
    const { a, errors } = recording();
    const p = a.calloc(0, 1000);
    assert.notEqual(p, 0);
    assert.ok(a.usableSize(p) <= 16, `usableSize ${a.usableSize(p)}`);
    const q = a.calloc(1000, 0);
    assert.notEqual(q, 0);
    assert.notEqual(q, p);
    assert.ok(a.usableSize(q) <= 16);
    // a zero product never overflows, however large the other factor
    const r = a.calloc(2 ** 40, 0);
    assert.notEqual(r, 0);
    assert.ok(a.usableSize(r) <= 16);
    a.free(r);
    a.free(p);
    a.free(q);
    assert.deepEqual(errors, []);
    a.check();
  });

  test('malloc-large: 16 MiB and 32 MiB + 8 in a 64 MiB allocator', () => {
    const { a, errors } = recording();
    for (const n of [16 * MiB, 32 * MiB + 8]) {
      const p = a.malloc(n);
      assert.notEqual(p, 0, `malloc(${n})`);
      assert.equal(p % 8, 0);
      const u = a.usableSize(p);
      assert.ok(u >= n && u <= maxUsable(n), `usableSize ${u} for ${n}`);
      assert.ok(p + u <= a.buffer.byteLength);
      a.u8[p] = 1;
      a.u8[p + n - 1] = 2;
      a.u8[p + (n >>> 1)] = 3;
      assert.equal(a.u8[p] + a.u8[p + n - 1] + a.u8[p + (n >>> 1)], 6);
      a.check();
      a.free(p);
      a.check();
    }
    assert.equal(a.stats().used, 0);
    assert.deepEqual(errors, []);
  });

  describe('malloc-aligned', () => {
    const isAligned = (p, al) => p % al === 0;

    test('1, 2, 3, 12: (32,32), (48,32) x2, (0x100,0x100)', () => {
      const { a, errors } = recording();
      const ps = [a.mallocAligned(32, 32), a.mallocAligned(48, 32), a.mallocAligned(48, 32), a.mallocAligned(0x100, 0x100)];
      const al = [32, 32, 32, 0x100];
      const sz = [32, 48, 48, 0x100];
      ps.forEach((p, i) => {
        assert.notEqual(p, 0);
        assert.ok(isAligned(p, al[i]), `${p} % ${al[i]}`);
        assert.ok(a.usableSize(p) >= sz[i]);
      });
      assert.equal(new Set(ps).size, 4);
      for (const p of ps) a.free(p);
      assert.deepEqual(errors, []);
      assert.equal(a.stats().used, 0);
      a.check();
    });

    test('4: 8 x (8, 16)', () => {
      const { a, errors } = recording();
      const ps = [];
      for (let i = 0; i < 8; i++) {
        const p = a.mallocAligned(8, 16);
        assert.notEqual(p, 0);
        assert.ok(isAligned(p, 16));
        ps.push(p);
      }
      assert.equal(new Set(ps).size, 8);
      for (const p of ps) a.free(p);
      assert.deepEqual(errors, []);
      a.check();
    });

    test('5: (4097, 4096) usable in [4097, 16000)', () => {
      const { a, errors } = recording();
      const p = a.mallocAligned(4097, 4096);
      assert.notEqual(p, 0);
      assert.ok(isAligned(p, 4096));
      const u = a.usableSize(p);
      assert.ok(u >= 4097 && u < 16000, `usable ${u}`);
      a.free(p);
      assert.deepEqual(errors, []);
      a.check();
    });

    test('6: size 13*a for every alignment a up to 2^22 (128 MiB allocator)', () => {
      const { a, errors } = recording(128 * MiB);
      for (let al = 1; al <= 2 ** 22; al *= 2) {
        const n = 13 * al;
        const p = a.mallocAligned(n, al);
        assert.notEqual(p, 0, `mallocAligned(${n}, ${al})`);
        assert.ok(isAligned(p, al), `${p} % ${al}`);
        assert.ok(a.usableSize(p) >= n);
        a.u8[p] = 0x5a;
        a.u8[p + n - 1] = 0xa5;
        a.free(p);
      }
      assert.deepEqual(errors, []);
      assert.equal(a.stats().used, 0);
      a.check();
    });

    test('7, 8: (1024, n * 64 KiB) for n = 1, 2, 4, 8, 16', () => {
      const { a, errors } = recording();
      const ps = [];
      for (const k of [1, 2, 4, 8, 16]) {
        const al = k * 64 * KiB;
        const p = a.mallocAligned(1024, al);
        assert.notEqual(p, 0);
        assert.ok(isAligned(p, al), `${p} % ${al}`);
        fillBlock(a, p, 1024, k);
        ps.push([p, k]);
      }
      for (const [p, k] of ps) expectFilled(a, p, 1024, k);
      for (const [p] of ps) a.free(p);
      assert.deepEqual(errors, []);
      assert.equal(a.stats().used, 0);
      a.check();
    });

    test('9: every alignment 2^0..2^22 x sizes {8, 512, 1 MiB, 64 KiB, 64 KiB+1, 128 KiB, 512 KiB, 0}', () => {
      const { a, errors } = recording();
      const sizes = [8, 512, MiB, 64 * KiB, 64 * KiB + 1, 128 * KiB, 512 * KiB, 0];
      for (let k = 0; k <= 22; k++) {
        const al = 2 ** k;
        const ps = [];
        for (const n of sizes) {
          const p = a.mallocAligned(n, al);
          assert.notEqual(p, 0, `mallocAligned(${n}, 2^${k})`);
          assert.ok(isAligned(p, al) && isAligned(p, 8), `${p} % ${al}`);
          assert.ok(a.usableSize(p) >= n);
          if (n > 0) { a.u8[p] = k; a.u8[p + n - 1] = k; }
          ps.push([p, n]);
        }
        for (const [p, n] of ps) if (n > 0) assert.ok(a.u8[p] === k && a.u8[p + n - 1] === k);
        for (const [p] of ps) a.free(p);
      }
      assert.deepEqual(errors, []);
      assert.equal(a.stats().used, 0);
      a.check();
    });

    test('10: size 43+a for a = 1..1024, freed in reverse', () => {
      const { a, errors } = recording();
      const ps = [];
      for (let al = 1; al <= 1024; al *= 2) {
        const p = a.mallocAligned(43 + al, al);
        assert.notEqual(p, 0);
        assert.ok(isAligned(p, al));
        fillBlock(a, p, 43 + al, al & 0xff || 1);
        ps.push([p, al]);
      }
      for (const [p, al] of ps) expectFilled(a, p, 43 + al, al & 0xff || 1);
      for (let i = ps.length - 1; i >= 0; i--) a.free(ps[i][0]);
      assert.deepEqual(errors, []);
      assert.equal(a.stats().used, 0);
      a.check();
    });

    test('13: every size 1..2048 x every power-of-two alignment <= size, 10 allocations each', () => {
      const { a, errors } = recording();
      for (let n = 1; n <= 2048; n++) {
        for (let al = 1; al <= n; al *= 2) {
          const ps = [];
          for (let i = 0; i < 10; i++) {
            const p = a.mallocAligned(n, al);
            if (p === 0 || p % al !== 0 || p % 8 !== 0) {
              assert.fail(`mallocAligned(${n}, ${al}) = ${p}`);
            }
            ps.push(p);
          }
          for (const p of ps) a.free(p);
        }
      }
      assert.deepEqual(errors, []);
      assert.equal(a.stats().used, 0);
      a.check();
    });

    test('alignment 2^31 cannot be supplied by a 64 MiB buffer: 0 and ENOMEM', () => {
      const { a, errors } = recording();
      assert.equal(expectReport(errors, 'ENOMEM', () => a.mallocAligned(8, 2 ** 31)), 0);
      assert.equal(expectReport(errors, 'ENOMEM', () => a.mallocAligned(2 ** 31, 8)), 0);
      a.check();
    });

    test('aligned blocks do not overlap each other or plain blocks', () => {
      const { a, errors } = recording();
      const blocks = [];
      let seed = 12345;
      const rnd = (m) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % m; };
      for (let i = 0; i < 2000; i++) {
        const n = rnd(3000);
        const al = 2 ** rnd(14);
        const p = i % 3 === 0 ? a.malloc(n) : a.mallocAligned(n, al);
        assert.notEqual(p, 0);
        if (i % 3 !== 0) assert.equal(p % al, 0);
        const u = a.usableSize(p);
        assert.ok(u >= n);
        blocks.push([p, u, (i % 251) + 1]);
        fillBlock(a, p, u, (i % 251) + 1);
      }
      const sorted = [...blocks].sort((x, y) => x[0] - y[0]);
      for (let i = 1; i < sorted.length; i++) {
        assert.ok(sorted[i - 1][0] + sorted[i - 1][1] <= sorted[i][0], `overlap at ${sorted[i][0]}`);
      }
      for (const [p, u, b] of blocks) expectFilled(a, p, u, b);
      for (const [p] of blocks) a.free(p);
      assert.deepEqual(errors, []);
      assert.equal(a.stats().used, 0);
      a.check();
    });
  });

  test('realloc-null, realloc-null-sizezero, realloc-sizezero', () => {
    const { a, errors } = recording();
    const p = a.realloc(0, 4);
    assert.notEqual(p, 0);
    assert.ok(a.usableSize(p) >= 4);
    const q = a.realloc(0, 0);
    assert.notEqual(q, 0);
    assert.notEqual(q, p);
    const r = a.malloc(100);
    const ur = a.usableSize(r);
    const used = a.stats().used;
    const r2 = a.realloc(r, 0);
    assert.notEqual(r2, 0);
    assert.ok(a.usableSize(r2) <= 16);
    // r was freed: used dropped by r's block and grew by r2's block
    assert.equal(a.stats().used, used - ur + a.usableSize(r2));
    for (const x of [p, q, r2]) a.free(x);
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('realloc-guarded: 64 rounds through sizes 0, 64, ..., 1023*64, contents preserved', () => {
    const { a, errors } = recording();
    let p = a.malloc(0);
    for (let round = 0; round < 64; round++) {
      let prevN = 0;
      for (let i = 0; i < 1024; i++) {
        const n = i * 64;
        const q = a.realloc(p, n);
        assert.notEqual(q, 0);
        if (prevN > 0 && n >= prevN) {
          if (a.u8[q] !== ((i - 1) & 0xff) || a.u8[q + prevN - 1] !== ((i + 100) & 0xff)) {
            assert.fail(`round ${round}: realloc ${prevN} -> ${n} lost contents`);
          }
        }
        p = q;
        if (n > 0) {
          a.u8[p] = i & 0xff;
          a.u8[p + n - 1] = (i + 101) & 0xff;
        }
        prevN = n;
      }
    }
    a.free(p);
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
  });
});

describe('sizes', () => {
  function sizeList() {
    const ns = [];
    for (let n = 0; n <= 4200; n++) ns.push(n);
    for (let k = 12; k <= 24; k++) {
      const b = 2 ** k;
      ns.push(b - 1, b, b + 1, b + 8, b + b / 8, b + b / 4 + 1, b + b / 2 - 1, b + b / 2 + 1, b * 2 - 9);
    }
    let s = 7;
    for (let i = 0; i < 500; i++) { s = (s * 1664525 + 1013904223) >>> 0; ns.push(s % (600 * KiB)); }
    return ns;
  }

  test('n <= usableSize(malloc(n)) <= n + max(16, n/4), 8-byte aligned', () => {
    const { a, errors } = recording();
    for (const n of sizeList()) {
      const p = a.malloc(n);
      if (p === 0) assert.fail(`malloc(${n}) = 0`);
      const u = a.usableSize(p);
      if (!(u >= n && u <= maxUsable(n))) assert.fail(`usableSize(malloc(${n})) = ${u}`);
      if (p % 8 !== 0) assert.fail(`malloc(${n}) = ${p} not 8-byte aligned`);
      if (p + u > a.buffer.byteLength) assert.fail(`malloc(${n}) = ${p} + ${u} beyond buffer`);
      a.free(p);
    }
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('zalloc and calloc obey the same usable-size bounds', () => {
    const { a, errors } = recording();
    for (const n of [0, 1, 7, 8, 9, 100, 1000, 4096, 5000, 70000, 300000, 2 * MiB + 3]) {
      for (const p of [a.zalloc(n), a.calloc(1, n), a.calloc(n, 1)]) {
        assert.notEqual(p, 0);
        const u = a.usableSize(p);
        assert.ok(u >= n && u <= maxUsable(n), `usable ${u} for ${n}`);
        assert.equal(p % 8, 0);
        a.free(p);
      }
    }
    assert.deepEqual(errors, []);
    a.check();
  });

  test('goodSize(n) >= n, and == usableSize(malloc(n)) for small sizes', () => {
    const { a, errors } = recording();
    for (let n = 0; n <= 8192; n++) {
      const g = a.goodSize(n);
      const p = a.malloc(n);
      const u = a.usableSize(p);
      if (g !== u || g < n) assert.fail(`goodSize(${n}) = ${g}, usableSize(malloc(${n})) = ${u}`);
      a.free(p);
    }
    for (const n of sizeList()) {
      const g = a.goodSize(n);
      if (!(Number.isInteger(g) && g >= n)) assert.fail(`goodSize(${n}) = ${g}`);
    }
    assert.deepEqual(errors, []);
    a.check();
  });

  test('every block is 8-byte aligned and addresses are unique (no overlap)', () => {
    // 128 MiB: large pages are 4 MiB per size class, so ~35 MiB of live blocks spread
    // over many classes can commit more than 64 MiB.
    const { a, errors } = recording(128 * MiB);
    let s = 99;
    const rnd = (m) => { s = (s * 1664525 + 1013904223) >>> 0; return s % m; };
    const blocks = [];
    for (let i = 0; i < 6000; i++) {
      const r = rnd(100);
      // about 30 MiB live in total: 60% tiny, 35% small, 4% up to 64 KiB, 1% up to 1 MiB
      const n = r < 60 ? rnd(65) : r < 95 ? rnd(4097) : r < 99 ? rnd(64 * KiB) : rnd(MiB);
      const how = rnd(3);
      const p = how === 0 ? a.malloc(n) : how === 1 ? a.zalloc(n) : a.calloc(1, n);
      assert.notEqual(p, 0);
      assert.equal(p % 8, 0);
      const u = a.usableSize(p);
      const b = (i % 253) + 1;
      fillBlock(a, p, u, b);
      blocks.push([p, u, b]);
    }
    const sorted = [...blocks].sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i - 1][0] + sorted[i - 1][1] > sorted[i][0]) {
        assert.fail(`blocks ${sorted[i - 1][0]}+${sorted[i - 1][1]} and ${sorted[i][0]} overlap`);
      }
    }
    for (const [p, u, b] of blocks) expectFilled(a, p, u, b);
    a.check();
    for (const [p] of blocks) a.free(p);
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
  });
});

describe('expand and realloc', () => {
  test('expand returns p when n fits the block, else 0; never moves', () => {
    const { a, errors } = recording();
    for (const n0 of [0, 1, 24, 100, 1000, 5000, 70000, 600 * KiB, 3 * MiB]) {
      const p = a.malloc(n0);
      const u = a.usableSize(p);
      fillBlock(a, p, u, 0x3c);
      assert.equal(a.expand(p, u), p);
      assert.equal(a.expand(p, n0), p);
      assert.equal(a.expand(p, 0), p);
      assert.equal(a.expand(p, u >>> 1), p);
      assert.equal(a.expand(p, u + 1), 0);
      assert.equal(a.expand(p, u + 4096), 0);
      assert.equal(a.expand(p, 2 ** 31), 0);
      assert.equal(a.usableSize(p), u);
      expectFilled(a, p, u, 0x3c);
      a.free(p);
    }
    assert.ok(errors.every((e) => e.code === 'ENOMEM'), JSON.stringify(errors));
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('realloc stays in place when usable/2 <= n <= usable', () => {
    const { a, errors } = recording();
    for (const n0 of [1, 8, 16, 17, 100, 512, 1000, 4000, 9000, 40000, 100000, 300000, 700 * KiB, 3 * MiB]) {
      const p = a.malloc(n0);
      const u = a.usableSize(p);
      fillBlock(a, p, u, 0x77);
      for (const n of [u, Math.ceil(u / 2), Math.ceil(u / 2) + 1, Math.floor(3 * u / 4), u - 1, n0]) {
        if (n < u / 2 || n > u) continue;
        const q = a.realloc(p, n);
        assert.equal(q, p, `realloc(malloc(${n0}) [usable ${u}], ${n}) moved`);
        assert.equal(a.usableSize(p), u);
      }
      expectFilled(a, p, u, 0x77);
      a.free(p);
    }
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('realloc outside [usable/2, usable] moves, preserves min(old usable, n) bytes, and frees the old block', () => {
    const { a, errors } = recording();
    const pin = a.malloc(16); // keeps small pages alive
    for (const [n0, n1] of [[8, 100], [100, 1000], [1000, 100], [500, 5000], [4000, 70000], [70000, 4000],
      [100000, 800 * KiB], [800 * KiB, 2 * MiB], [2 * MiB, 1000], [3000, 0]]) {
      const p = a.malloc(n0);
      const u = a.usableSize(p);
      for (let i = 0; i < u; i++) a.u8[p + i] = (i * 7 + 3) & 0xff;
      const usedBefore = a.stats().used;
      const q = a.realloc(p, n1);
      assert.notEqual(q, 0);
      if (q === p) { // only a block over 512 KiB grows in place (into the free slices after its page)
        assert.ok(n0 > 512 * KiB && n1 > u, `realloc(${n0} -> ${n1}) stayed in place`);
        a.free(q);
        continue;
      }
      const keep = Math.min(u, n1);
      for (let i = 0; i < keep; i++) {
        if (a.u8[q + i] !== ((i * 7 + 3) & 0xff)) assert.fail(`realloc ${n0} -> ${n1}: byte ${i} lost`);
      }
      const uq = a.usableSize(q);
      assert.ok(uq >= n1);
      assert.equal(a.stats().used, usedBefore - u + uq);
      // the old address is no longer live
      const e0 = errors.length;
      assert.equal(a.usableSize(p), 0);
      assert.equal(errors.length, e0 + 1);
      assert.ok(['EAGAIN', 'EINVAL'].includes(errors.at(-1).code));
      errors.length = 0;
      a.free(q);
    }
    a.free(pin);
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('a failed grow returns 0 and leaves the block live and intact', () => {
    const { a, errors } = recording();
    const p = a.malloc(1000);
    const u = a.usableSize(p);
    fillBlock(a, p, u, 0x42);
    const big = a.malloc(40 * MiB);
    assert.notEqual(big, 0);
    const used = a.stats().used;
    for (const n of [2 ** 31, 2 ** 32, 30 * MiB, 64 * MiB]) {
      assert.equal(expectReport(errors, 'ENOMEM', () => a.realloc(p, n)), 0, `realloc(p, ${n})`);
      assert.equal(a.usableSize(p), u);
      expectFilled(a, p, u, 0x42);
      assert.equal(a.stats().used, used);
    }
    // also a failed grow of the huge block (more than the free slices after it: not in place either)
    assert.equal(expectReport(errors, 'ENOMEM', () => a.realloc(big, 63 * MiB)), 0);
    assert.ok(a.usableSize(big) >= 40 * MiB);
    a.check();
    // the block is still live: it can be reallocated and freed
    const q = a.realloc(p, 2000);
    assert.notEqual(q, 0);
    expectFilled(a, q, u, 0x42);
    a.free(q);
    a.free(big);
    assert.equal(a.stats().used, 0);
    // default handler: no throw on ENOMEM
    const b = Allocator.create({ size: 4 * MiB });
    const r = b.malloc(64);
    const ur = b.usableSize(r);
    assert.equal(b.realloc(r, 2 ** 31), 0);
    assert.equal(b.realloc(r, 8 * MiB), 0);
    assert.equal(b.usableSize(r), ur);
    b.free(r);
    b.check();
  });
});

describe('more coverage', () => {
  test('exhausting a 1 MiB allocator with small blocks: 0 + ENOMEM, then recovery', () => {
    const { a, errors } = recording(MiB);
    const ps = [];
    for (;;) {
      const p = a.malloc(200);
      if (p === 0) break;
      a.u8.fill(ps.length & 0xff, p, p + 200);
      ps.push(p);
      if (ps.length > MiB / 200) assert.fail('more blocks than the buffer can hold');
    }
    assert.ok(ps.length > 100, `only ${ps.length} blocks fit`);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'ENOMEM');
    assert.equal(new Set(ps).size, ps.length);
    for (const p of ps) assert.ok(p + 200 <= a.buffer.byteLength);
    ps.forEach((p, i) => { for (const off of [0, 199]) if (a.u8[p + off] !== (i & 0xff)) assert.fail(`block ${i} corrupted`); });
    a.check();
    // free half, allocate again
    for (let i = 0; i < ps.length; i += 2) a.free(ps[i]);
    for (let i = 0; i < ps.length; i += 2) { ps[i] = a.malloc(200); assert.notEqual(ps[i], 0); }
    a.check();
    for (const p of ps) a.free(p);
    assert.equal(a.stats().used, 0);
    a.check();
    // the memory of the small pages can now serve one big block
    const big = a.malloc(512 * KiB);
    assert.notEqual(big, 0);
    a.free(big);
    a.check();
  });

  test('realloc and expand of an aligned block', () => {
    const { a, errors } = recording();
    const keep = [];
    for (const [n, al] of [[100, 64], [300, 128], [5000, 2048], [1000, 4096], [3000, 128 * KiB]]) {
      for (let k = 0; k < 3; k++) {
        const q = a.mallocAligned(n, al);
        assert.equal(q % al, 0);
        const u = a.usableSize(q);
        assert.ok(u >= n);
        for (let i = 0; i < u; i++) a.u8[q + i] = (i * 13 + k) & 0xff;
        assert.equal(a.expand(q, u), q);
        assert.equal(a.expand(q, u + 1), 0);
        // in place within [u/2, u]
        assert.equal(a.realloc(q, u), q);
        assert.equal(a.realloc(q, Math.ceil(u / 2)), q);
        assert.equal(a.usableSize(q), u);
        // grow: moves (a block on a page of its own may grow in place) and keeps all u bytes
        const r = a.realloc(q, 4 * u + 64);
        assert.notEqual(r, 0);
        for (let i = 0; i < u; i++) if (a.u8[r + i] !== ((i * 13 + k) & 0xff)) assert.fail(`(${n}, ${al}) byte ${i} lost`);
        if (r === q) {
          assert.ok(al > 64 * KiB, `(${n}, ${al}) stayed in place`);
        } else {
          const e0 = errors.length;
          a.usableSize(q);
          assert.equal(errors.length, e0 + 1, 'old aligned address still live');
          errors.length = e0;
        }
        keep.push(r);
      }
    }
    for (const p of keep) a.free(p);
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
  });

  test('addresses above 2 GiB work everywhere (3 GiB allocator)', () => {
    const { a, errors } = recording(3 * 1024 * MiB);
    const low = a.malloc(2 ** 31 - 64 * MiB); // pushes everything else above 2 GiB
    assert.notEqual(low, 0);
    const ps = [];
    for (let i = 0; i < 3000; i++) {
      const p = i % 4 === 0 ? a.zalloc(i % 300) : i % 4 === 1 ? a.calloc(3, i % 100) : i % 4 === 2 ? a.mallocAligned(i % 500, 2 ** (i % 13)) : a.malloc(i % 5000);
      assert.notEqual(p, 0);
      assert.ok(p > 0 && Number.isInteger(p));
      if (i % 4 === 2) assert.equal(p % 2 ** (i % 13), 0);
      ps.push(p);
    }
    const huge = a.malloc(20 * MiB);
    ps.push(huge);
    assert.ok(ps.filter((p) => p >= 2 ** 31).length >= ps.length - 10, 'blocks did not land above 2 GiB');
    for (const p of ps) {
      const u = a.usableSize(p);
      a.u8.fill((p >>> 3) & 0xff, p, p + u);
    }
    const sorted = ps.map((p) => [p, a.usableSize(p)]).sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i - 1][0] + sorted[i - 1][1] <= sorted[i][0], 'overlap');
    for (const p of ps) {
      const u = a.usableSize(p);
      for (const off of [0, u >>> 1, u - 1]) if (u > 0 && a.u8[p + off] !== ((p >>> 3) & 0xff)) assert.fail(`block ${p} corrupted`);
    }
    // views and f64[p >>> 3] at a high address
    const hp = ps.find((p, i) => i % 4 === 3 && a.usableSize(p) >= 64); // a plain malloc of >= 64 bytes
    a.f64[hp >>> 3] = 2.25;
    assert.equal(a.view.getFloat64(hp, true), 2.25);
    // errors at high addresses
    const e0 = errors.length;
    a.free(hp + 8);
    a.free(2 ** 32 - 8);
    assert.deepEqual(errors.slice(e0).map((e) => [e.code, e.address]), [['EINVAL', hp + 8], ['EINVAL', 2 ** 32 - 8]]);
    errors.length = e0;
    // realloc at high addresses
    for (let i = 0; i < ps.length; i += 7) {
      const u = a.usableSize(ps[i]);
      const r = a.realloc(ps[i], u * 3 + 100);
      assert.notEqual(r, 0);
      for (const off of [0, u - 1]) if (u > 0 && a.u8[r + off] !== ((ps[i] >>> 3) & 0xff)) assert.fail('realloc lost bytes');
      ps[i] = r;
    }
    a.check();
    const dup = ps[10];
    for (const p of ps) a.free(p);
    a.free(low);
    assert.deepEqual(errors, []);
    assert.equal(a.stats().used, 0);
    a.check();
    a.setErrorHandler(null);
    assert.throws(() => a.free(dup), (e) => e instanceof AllocatorError && ['EAGAIN', 'EINVAL'].includes(e.code) && e.address === dup);
  });
});

describe('stats and check', () => {
  test('fresh allocator: reserved = buffer size, used = 0, committed within reserved', () => {
    const a = Allocator.create({ size: 32 * MiB });
    const s = a.stats();
    assert.equal(s.reserved, 32 * MiB);
    assert.equal(s.used, 0);
    assert.ok(s.committed >= 0 && s.committed <= s.reserved);
    assert.equal(a.check(), undefined);
  });

  test('an emptied page goes back to the buffer after a few generic-path calls (retire heartbeat), not hundreds', () => {
    const a = Allocator.create({ size: 64 * MiB });
    const keep = a.malloc(2000); // the page the generic calls below allocate from
    const before = a.stats().pagesBytes;
    const big = a.malloc(100 * KiB); // a block in a page of its own size class
    const withBig = a.stats().pagesBytes;
    const pageBytes = withBig - before;
    assert.ok(pageBytes >= 100 * KiB, `a page of its own: ${pageBytes} bytes`);
    a.free(big); // the page is empty: retired, kept a few heartbeats in case its size class comes back
    assert.equal(a.stats().pagesBytes, withBig, 'kept a while');
    let calls = 0;
    while (a.stats().pagesBytes > before && calls < 200) {
      a.free(a.mallocAligned(2000, 16)); // an alignment above 8: every call takes the generic path
      calls++;
    }
    assert.ok(a.stats().pagesBytes <= before, `the large page went back after ${calls} generic calls`);
    assert.ok(calls <= 8, `released after ${calls} generic calls (mimalloc counts retired pages down at every generic call)`);
    a.free(keep);
    a.check();
  });

  test('used follows live block sizes; committed is a high-water mark', () => {
    const { a, errors } = recording();
    const s0 = a.stats();
    const p = a.malloc(100);
    const s1 = a.stats();
    assert.equal(s1.used, a.usableSize(p));
    assert.ok(s1.committed > s0.committed || s0.committed > 0);
    assert.ok(s1.committed >= s1.used);
    const ps = [];
    for (let i = 0; i < 1000; i++) ps.push(a.malloc(48));
    assert.equal(a.stats().used, s1.used + ps.reduce((t, q) => t + a.usableSize(q), 0));
    const usedBeforeBig = a.stats().used;
    const big = a.malloc(16 * MiB);
    const s2 = a.stats();
    assert.ok(s2.used >= s1.used + 16 * MiB);
    assert.ok(s2.committed >= s2.used);
    assert.ok(s2.committed >= 16 * MiB);
    assert.ok(s2.committed <= s2.reserved);
    a.free(big);
    const s3 = a.stats();
    assert.equal(s3.used, usedBeforeBig);
    assert.equal(s3.committed, s2.committed, 'committed must not drop after free');
    // re-allocating the same size reuses the freed slices: the high-water mark stays put
    const big2 = a.malloc(16 * MiB);
    assert.equal(a.stats().committed, s2.committed);
    a.free(big2);
    for (const q of ps) a.free(q);
    a.free(p);
    const s4 = a.stats();
    assert.equal(s4.used, 0);
    assert.equal(s4.committed, s2.committed);
    assert.equal(s4.reserved, 64 * MiB);
    assert.deepEqual(errors, []);
    a.check();
  });

  test('used counts aligned and huge blocks and returns to 0', () => {
    const { a, errors } = recording();
    const ps = [a.mallocAligned(100, 4096), a.mallocAligned(5000, 65536), a.malloc(3 * MiB), a.zalloc(700 * KiB), a.calloc(10, 10)];
    const s = a.stats();
    assert.ok(s.used >= 100 + 5000 + 3 * MiB + 700 * KiB + 100);
    for (const p of ps) a.free(p);
    assert.equal(a.stats().used, 0);
    assert.deepEqual(errors, []);
    a.check();
  });

  test('check() throws an Error naming the broken invariant for a corrupted free list', () => {
    // a use-after-free write over the free-list link of a freed block
    for (const variant of ['outside the page', 'a live block', 'itself']) {
      const a = Allocator.create({ size: 4 * MiB });
      const ps = [];
      for (let i = 0; i < 10; i++) ps.push(a.malloc(64));
      a.free(ps[3]);
      a.free(ps[5]);
      a.check();
      const v = variant === 'outside the page' ? 0xfffffff8 : variant === 'a live block' ? ps[0] : ps[5];
      a.u32[ps[5] >>> 2] = v;
      a.u32[(ps[5] + 4) >>> 2] = v;
      assert.throws(() => a.check(), (e) => e instanceof Error && typeof e.message === 'string' && e.message.length > 10, variant);
    }
  });

  test('check() passes after a mixed workload and returns nothing', () => {
    const { a, errors } = recording();
    const live = [];
    let s = 5;
    const rnd = (m) => { s = (s * 1664525 + 1013904223) >>> 0; return s % m; };
    for (let i = 0; i < 20000; i++) {
      const r = rnd(10);
      if (r < 4 || live.length === 0) {
        live.push(a.malloc(rnd(10) === 0 ? rnd(100000) : rnd(1000)));
      } else if (r < 7) {
        a.free(live.splice(rnd(live.length), 1)[0]);
      } else if (r < 9) {
        const j = rnd(live.length);
        live[j] = a.realloc(live[j], rnd(3000));
      } else {
        live.push(a.mallocAligned(rnd(500), 2 ** rnd(12)));
      }
      if (i % 2000 === 0) assert.equal(a.check(), undefined);
    }
    assert.equal(a.check(), undefined);
    for (const p of live) a.free(p);
    assert.equal(a.stats().used, 0);
    assert.equal(a.check(), undefined);
    assert.deepEqual(errors, []);
  });
});

describe('error handler plumbing', () => {
  test('setErrorHandler installs a handler; null restores the default (throwing) one', () => {
    const a = Allocator.create({ size: 4 * MiB });
    const p = a.malloc(64);
    const keep = a.malloc(64);
    a.free(p);
    assert.throws(() => a.free(p), (e) => e instanceof AllocatorError && e.code === 'EAGAIN');
    const seen = [];
    a.setErrorHandler((code, message, address) => { seen.push([code, typeof message, address]); });
    assert.equal(a.free(p), undefined);
    assert.deepEqual(seen, [['EAGAIN', 'string', p]]);
    a.setErrorHandler(null);
    assert.throws(() => a.free(p), (e) => e instanceof AllocatorError && e.code === 'EAGAIN' && e.address === p);
    a.free(keep);
    a.check();
  });
});

describe('handle, attach, detach, releaseAgent (same thread)', () => {
  test('handle is structured-cloneable', () => {
    const a = Allocator.create({ size: 4 * MiB });
    const h = structuredClone(a.handle);
    assert.ok(h !== null && typeof h === 'object');
  });

  test('attach refuses a buffer of another format version, and leaves it untouched', () => {
    const a = Allocator.create({ size: 4 * MiB });
    const p = a.malloc(40);
    const version = a.u32[a.arena.hdr + C.H_VERSION]; // header word: the format version
    a.u32[a.arena.hdr + C.H_VERSION] = version + 1;
    const before = a.u8.slice(0, 65536);
    assert.throws(() => Allocator.attach(structuredClone(a.handle)), new RegExp(`format version ${version + 1}, expected ${version}`));
    assert.deepEqual(a.u8.slice(0, 65536), before);
    a.u32[a.arena.hdr + C.H_VERSION] = version;
    a.free(p);
    a.check();
  });

  test('attach gives a second heap over the same memory; cross-heap free works', () => {
    const a = Allocator.create({ size: 16 * MiB });
    const b = Allocator.attach(structuredClone(a.handle));
    assert.notEqual(b.agentId, a.agentId);
    assert.ok(Number.isInteger(b.agentId) && b.agentId > 0);
    assert.equal(b.buffer.byteLength, a.buffer.byteLength);
    const pa = a.malloc(100);
    const pb = b.malloc(100);
    assert.notEqual(pa, pb);
    a.u8[pb] = 9;
    assert.equal(b.u8[pb], 9);
    a.free(pb); // remote free into b's page
    b.free(pa); // remote free into a's page
    b.detach();
    assert.throws(() => b.malloc(8));
    a.check();
    // the remotely freed blocks are reusable: allocating many more 100-byte blocks works
    const ps = [];
    for (let i = 0; i < 2000; i++) ps.push(a.malloc(100));
    assert.equal(new Set(ps).size, 2000);
    for (const p of ps) a.free(p);
    a.check();
  });

  test('stats().used drops when a block is freed by another agent (it is no longer live)', () => {
    const a = Allocator.create({ size: 16 * MiB });
    const b = Allocator.attach(structuredClone(a.handle));
    const pa = a.malloc(100);
    const usedA = a.stats().used;
    assert.equal(usedA, a.usableSize(pa));
    b.free(pa); // remote free into a's page
    assert.equal(a.stats().used, 0, 'block freed by agent b still counted as used');
    assert.equal(b.stats().used, 0);
    b.detach();
    a.check();
  });

  test('releaseAgent takes over an agent that never detached; unknown id returns false', () => {
    const a = Allocator.create({ size: 16 * MiB });
    const b = Allocator.attach(structuredClone(a.handle));
    const ps = [];
    for (let i = 0; i < 50; i++) { const p = b.malloc(200); a.u8.fill(i + 1, p, p + 200); ps.push(p); }
    const id = asTerminated(b); // b is now treated as killed: it is never used again
    assert.equal(a.releaseAgent(id), true);
    a.check();
    ps.forEach((p, i) => expectFilled(a, p, 200, i + 1));
    for (const p of ps) a.free(p);
    assert.equal(a.stats().used, 0);
    assert.equal(a.releaseAgent(987654), false);
    a.check();
  });

  test('detach: the object throws on further use', () => {
    const a = Allocator.create({ size: 4 * MiB });
    const p = a.malloc(10);
    a.detach();
    assert.throws(() => a.malloc(8));
    assert.throws(() => a.free(p));
  });
});

describe('checkFree: false (the benchmarks\' measuring instrument)', () => {
  test('realloc, usableSize, zalloc and frees into full pages work without allocation bits', () => {
    const a = Allocator.create({ size: 32 * MiB, checkFree: false });
    const ps = [];
    for (let i = 0; i < 3000; i++) ps.push(a.malloc(24 + (i % 5) * 40));
    assert.equal(a.usableSize(ps[1]), 64);
    a.u32[ps[1] >>> 2] = 0xabcdef;
    const q = a.realloc(ps[1], 400);
    assert.ok(q !== 0 && q !== ps[1]);
    assert.equal(a.u32[q >>> 2], 0xabcdef, 'realloc moved the contents');
    ps[1] = q;
    const z = a.zalloc(100);
    assert.ok(a.u8.subarray(z, z + 100).every((x) => x === 0));
    ps.push(z);
    for (const p of ps) a.free(p); // pages filled up: some frees take the generic path
    assert.equal(a.stats().used, 0);
  });
});
