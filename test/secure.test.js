// Secure mode, levels 1–2 (guard space after every page's last block, checked
// by check(); randomised free-list extension). Levels 3–4's encoded free lists
// and canaries are not implemented yet: those options are accepted and act as 2.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../dist/index.js';

const MiB = 1 << 20;

function pageOf(p) { return p >>> 16; }

describe('secure mode', () => {
  test('level 2 hands out a fresh page in a random order; levels 0 and 1 in address order', () => {
    const order = (secure) => {
      const a = Allocator.create({ size: 16 * MiB, secure });
      const ps = Array.from({ length: 60 }, () => a.malloc(64));
      a.check();
      return ps.map((p) => (p & 0xffff) >>> 6);
    };
    const inOrder = (xs) => xs.every((x, i) => i === 0 || x === xs[i - 1] + 1);
    assert.ok(inOrder(order(0)), 'secure 0: sequential');
    assert.ok(inOrder(order(1)), 'secure 1: sequential');
    const r1 = order(2);
    const r2 = order(2);
    assert.ok(!inOrder(r1), `secure 2: ${r1.slice(0, 10)}`);
    assert.notDeepEqual(r1, r2, 'two allocators draw different orders');
    assert.equal(new Set(r1).size, r1.length, 'no block twice');
  });

  for (const [what, n] of [['8-byte', 8], ['1 KiB', 1024], ['medium (20 KiB)', 20000], ['large (200 KiB)', 200000], ['huge (700 KB)', 700000]]) {
    test(`level 1: an overrun past the last ${what} block of a page is found by check()`, () => {
      const a = Allocator.create({ size: 64 * MiB, secure: 1 });
      // blocks of a fresh page are handed out contiguously (secure 1: address order); the
      // first one that does not follow its predecessor starts another page
      const blocks = [a.malloc(n)];
      let last = blocks[0];
      for (let i = 0; i < 20000 && n < 600000; i++) {
        const p = a.malloc(n);
        blocks.push(p);
        if (p !== last + a.usableSize(last)) break;
        last = p;
      }
      const end = last + a.usableSize(last);
      a.check();
      const saved = a.u8[end];
      a.u8[end] = saved ^ 0xff;
      assert.throws(() => a.check(), /S1: page \d+: guard space after its last block .* overwritten 0 bytes past the end/);
      a.u8[end] = saved;
      a.check();
      for (const p of blocks) a.free(p);
      a.check();
    });
  }

  test('secure options are validated and recorded in the buffer (attached agents inherit them)', () => {
    assert.throws(() => Allocator.create({ size: MiB * 16, secure: 5 }), RangeError);
    assert.throws(() => Allocator.create({ size: MiB * 16, secure: 1.5 }), RangeError);
    const a = Allocator.create({ size: 16 * MiB, secure: 2 });
    const b = Allocator.attach(a.handle);
    const ps = Array.from({ length: 40 }, () => b.malloc(64));
    const slots = ps.map((p) => (p & 0xffff) >>> 6);
    assert.ok(!slots.every((x, i) => i === 0 || x === slots[i - 1] + 1), 'the attached agent extends pages in random order too');
    for (const p of ps) a.free(p);
    b.detach();
    a.check();
  });
});
