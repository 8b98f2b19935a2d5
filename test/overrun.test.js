// Overruns reported at free (secure 4 and debug: mimalloc's padding check):
// every free of a block written past its requested size, by one byte or
// more, in the slack or through the canary, is EFAULT at that free, naming
// the block, its size and the first byte written; the block is freed before
// the report, so a throwing or re-entrant handler finds a consistent heap.
// Level 3 keeps the cheaper deferred check (README "Secure mode").
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator, AllocatorError } from '../dist/index.js';
import { MiB, hex, recording } from './lib/helpers.js';

/** The blocks a free can meet: fast-path sizes, generic sizes, medium, huge, aligned, realloc-moved. */
const CASES = [
  ['malloc(17)', (a) => [a.malloc(17), 17]],
  ['malloc(24)', (a) => [a.malloc(24), 24]],
  ['malloc(100)', (a) => [a.malloc(100), 100]],
  ['malloc(1000)', (a) => [a.malloc(1000), 1000]],
  ['malloc(5000)', (a) => [a.malloc(5000), 5000]],
  ['malloc(70000)', (a) => [a.malloc(70000), 70000]],
  ['malloc(600000)', (a) => [a.malloc(600000), 600000]],
  ['mallocAligned(100, 64)', (a) => [a.mallocAligned(100, 64), 100]],
  ['mallocAligned(5000, 4096)', (a) => [a.mallocAligned(5000, 4096), 5000]],
  ['mallocAligned(300, 1 << 17)', (a) => [a.mallocAligned(300, 1 << 17), 300]],
  ['zalloc(33)', (a) => [a.zalloc(33), 33]],
  ['realloc(malloc(10), 300)', (a) => [a.realloc(a.malloc(10), 300), 300]],
];

/** Slack bytes after a request of n bytes that carry the pattern: 16 in debug mode (as mimalloc), to the end of the request's 4-byte word at secure 4 (secure.ts). */
const CHECKED = (mode, n) => (mode.debug ? 16 : 4 - (n & 3));

/** What the report of a write `at` bytes past a request of n bytes with `slack` bytes of slack must say. */
function expectedText(n, at, slack, checked = 16) {
  if (at < slack && at < checked) return new RegExp(`of size ${n}: write after ${n + at + 1} bytes \\(byte ${n + at} is 0x`);
  // a write into the canary's last byte may have reached the size word after it: the size is not named then
  const size = at - slack === 3 ? '' : ` of size ${n}`;
  return new RegExp(`${size}: the padding canary after the block was overwritten \\(first changed byte at offset ${n + at}\\)`);
}

for (const mode of [{ secure: 4 }, { debug: true }]) {
  const name = mode.debug ? 'debug' : 'secure 4';
  describe(`overruns reported at free [${name}]`, () => {
    for (const [what, make] of CASES) {
      test(`${what}: a write one byte past the end is EFAULT at its free, naming block, size and byte; the block is freed`, () => {
        const { a, errors } = recording(64 * MiB, mode);
        const keep = a.malloc(40); // a neighbour that must survive
        a.u8.fill(0x77, keep, keep + 40);
        const [p, n] = make(a);
        assert.notEqual(p, 0);
        a.u8[p + n] ^= 0x5a; // the first byte past the request: slack, or the canary's first byte
        a.free(p);
        assert.equal(errors.length, 1, JSON.stringify(errors));
        assert.equal(errors[0].code, 'EFAULT');
        assert.equal(errors[0].address, p);
        assert.match(errors[0].message, new RegExp(`buffer overflow in block ${hex(p)} of size ${n}: `));
        assert.match(errors[0].message, new RegExp(`(write after ${n + 1} bytes \\(byte ${n} is 0x)|(first changed byte at offset ${n}\\))`));
        assert.match(errors[0].message, /freed/);
        // the block was freed: a second free is a double free (EINVAL for a singleton block, whose
        // page went back to the buffer: the README's documented limit), and the heap is consistent
        a.free(p);
        assert.equal(errors.length, 2);
        assert.ok(errors[1].code === 'EAGAIN' || (errors[1].code === 'EINVAL' && (n > 512 * 1024 || what.includes('1 << 17'))), errors[1].message);
        a.check();
        for (let i = 0; i < 40; i++) assert.equal(a.u8[keep + i], 0x77);
      });
    }

    // sizes whose slack is known (block = goodSize(n + 8) in these small bins): every checked byte
    for (const [n, slack] of [[17, 7], [100, 4], [300, 12], [1000, 16], [30, 2], [24, 0], [5, 3], [4, 4], [3, 5]]) {
      test(`malloc(${n}) (${slack} bytes of slack): a write at any checked slack byte or the canary is reported, naming that byte; unchecked slack is not`, () => {
        const checked = CHECKED(mode, n);
        for (let at = 0; at < slack + 4; at++) {
          const { a, errors } = recording(16 * MiB, mode);
          for (let i = 0; i < 3; i++) a.free(a.malloc(n)); // the fast paths too, once a block is reused
          const p = a.malloc(n);
          a.u8[p + n + at] ^= 0x21;
          a.free(p);
          if (at >= checked && at < slack) { // past the checked slack bytes, before the canary: found by nobody (as mimalloc past 16)
            assert.equal(errors.length, 0, `byte ${n + at}: ${JSON.stringify(errors)}`);
            continue;
          }
          assert.equal(errors.length, 1, `byte ${n + at}: ${JSON.stringify(errors)}`);
          assert.match(errors[0].message, expectedText(n, at, slack, checked), `byte ${n + at}`);
          a.check();
        }
      });
    }

    test('malloc(5000): slack bytes past the checked ones are not checked (as mimalloc past 16); the checked ones are', () => {
      const checked = CHECKED(mode, 5000);
      const { a, errors } = recording(16 * MiB, mode);
      const p = a.malloc(5000); // 112 bytes of slack
      a.u8[p + 5000 + checked] = 0x33; // the first unchecked slack byte
      a.free(p);
      assert.equal(errors.length, 0);
      const q = a.malloc(5000);
      a.u8[q + 5000 + checked - 1] = 0x33;
      a.free(q);
      assert.equal(errors.length, 1);
      assert.match(errors[0].message, expectedText(5000, checked - 1, 112, checked));
      a.check();
    });

    test('the default handler throws, and the block is free all the same (no block that can never be freed)', () => {
      const a = Allocator.create({ size: 32 * MiB, ...mode });
      const p = a.malloc(40);
      a.u8[p + 40] = 0x11;
      assert.throws(() => a.free(p), (e) => e instanceof AllocatorError && e.code === 'EFAULT' && e.address === p);
      a.check();
      assert.throws(() => a.free(p), (e) => e instanceof AllocatorError && e.code === 'EAGAIN');
      assert.throws(() => a.usableSize(p), (e) => e instanceof AllocatorError && e.code === 'EAGAIN');
      const q = a.malloc(40); // the block is reused, intact
      a.u8.fill(1, q, q + 40);
      a.free(q);
      a.check();
    });

    test('a handler that frees the reported block itself (re-entrant) leaves a consistent heap and no spurious report', () => {
      const errors = [];
      let a;
      const onError = (code, message, address) => {
        errors.push({ code, message, address });
        if (code === 'EFAULT') a.free(address); // the block is already free: a double free, reported as such
      };
      a = Allocator.create({ size: 32 * MiB, onError, ...mode });
      const p = a.malloc(56);
      a.u8[p + 56] = 1;
      a.free(p);
      assert.deepEqual(errors.map((e) => e.code), ['EFAULT', 'EAGAIN']);
      // reuse the block and its neighbours many times: no "write after free", no second overflow report
      const ps = [];
      for (let i = 0; i < 2000; i++) ps.push(a.malloc(56));
      for (const x of ps) a.free(x);
      a.check();
      assert.deepEqual(errors.map((e) => e.code), ['EFAULT', 'EAGAIN'], JSON.stringify(errors.slice(2)));
    });

    test('a remote free (another agent) reports the overrun at its free, and the block goes back to its owner', () => {
      const { a } = recording(32 * MiB, mode);
      const seen = [];
      const b = Allocator.attach(a.handle, { onError: (code, message, address) => seen.push({ code, message, address }) });
      const p = a.malloc(72);
      a.u8[p + 72] = 9;
      b.free(p);
      assert.equal(seen.length, 1);
      assert.equal(seen[0].code, 'EFAULT');
      assert.equal(seen[0].address, p);
      a.collect();
      a.check();
      b.detach();
      a.check();
    });

    test('realloc that moves an overrun block reports it before anything changes, then moves it', () => {
      const { a, errors } = recording(32 * MiB, mode);
      const p = a.malloc(30);
      a.u8.fill(3, p, p + 30);
      a.u8[p + 30] = 4;
      const q = a.realloc(p, 3000);
      assert.equal(errors.length, 1);
      assert.equal(errors[0].code, 'EFAULT');
      assert.notEqual(q, 0);
      for (let i = 0; i < 30; i++) assert.equal(a.u8[q + i], 3);
      a.free(q);
      a.check();
    });
  });
}

describe('secure 3 keeps the deferred check (documented)', () => {
  test('level 3: a slack overrun is not reported at the free; a canary overrun is reported when the block is reused', () => {
    const { a, errors } = recording(32 * MiB, { secure: 3 });
    const p = a.malloc(17); // 17 + 8 → a 32-byte block: 7 bytes of slack
    a.u8[p + 17] = 1; // the slack: level 3 keeps no pattern there
    a.free(p);
    assert.equal(errors.length, 0);
    const q = a.malloc(24); // 24 + 8 → 32: the canary follows at once
    a.u8[q + 24] ^= 1;
    a.free(q); // the fast free does not look (level 3)
    assert.equal(errors.length, 0);
    assert.throws(() => a.check(), /I5: .*buffer overflow: the canary after block/); // found by check(), at reuse or at page release
  });
});
