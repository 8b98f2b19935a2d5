// Secure mode: level 1 guard space after every page's last block (checked by
// check()); level 2 randomised free-list extension; level 3+ free-list links
// encoded with per-page random keys, a corrupted link reported (EFAULT) and the
// list truncated instead of followed, and a canary after every block (with the
// requested size, as debug mode's padding) checked when the block is reused, at
// a generic-path free, by check() and when its page is returned.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../dist/index.js';
import { C } from '../dist/types.js';
import { MiB, asTerminated, recording } from './lib/helpers.js';

/** The slice of p (a small page is one slice). */
function pageOf(p) { return p >>> C.SLICE_SHIFT; }

describe('secure mode', () => {
  test('level 2 hands out a fresh page in a random order; levels 0 and 1 in address order', () => {
    const order = (secure) => {
      const a = Allocator.create({ size: 16 * MiB, secure });
      const ps = Array.from({ length: 60 }, () => a.malloc(64));
      a.check();
      return ps.map((p) => (p & (C.SLICE_SIZE - 1)) >>> 6);
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

  test('level 3: free-list links are encoded; an overwritten link is reported as EFAULT and never followed', () => {
    const { a, errors } = recording(16 * MiB, { secure: 3 });
    const keep = a.malloc(64);
    const p = a.malloc(64);
    const q = a.malloc(64);
    a.free(q);
    a.free(p); // localFree: p → q
    // the link lives in the last word of the block (size 80: 64 + 8 bytes of padding, binned)
    const link = (p + 80 - 4) >>> 2;
    assert.ok(![q, 0].includes(a.u32[link]), 'the link in a free block is not the plain next address');
    a.u32[p >>> 2] = 0x41414141; // a use-after-free write at the start of the block leaves the list alone
    a.check();
    a.u32[link] = 0x41414141; // a user's overrun (or use after free) into the freed block's link
    assert.throws(() => a.check(), /corrupted localFree entry/);
    const got = new Set();
    for (let i = 0; i < 300; i++) {
      const x = a.malloc(64);
      assert.ok(x > 0 && x < a.u8.length, 'every address handed out is in the buffer');
      assert.ok(!got.has(x), 'no block twice');
      got.add(x);
    }
    const e = errors.filter((x) => x.code === 'EFAULT');
    assert.equal(e.length, 1, JSON.stringify(errors));
    assert.match(e[0].message, /corrupted free list entry: free block 0x[0-9a-f]+ \(size 80\)/);
    assert.equal(e[0].address, p);
    for (const x of got) a.free(x);
    a.free(keep);
  });

  test('level 3: cross-agent frees use encoded links too', () => {
    const a = Allocator.create({ size: 16 * MiB, secure: 3 });
    const b = Allocator.attach(a.handle);
    const ps = Array.from({ length: 200 }, (_, i) => a.malloc(16 + (i % 7) * 40));
    for (const p of ps) b.free(p);
    a.check();
    a.collect();
    assert.equal(a.stats().used, 0);
    b.detach();
    a.check();
  });

  test('level 3: a canary at the end of every block catches an overflow: at free (generic path), at reuse (fast path), by check(), at page release', () => {
    for (const n of [1, 24, 100, 1000, 5000, 100000, 700000]) {
      const { a, errors } = recording(16 * MiB, { secure: 3 });
      const keep = a.malloc(n);
      const p = a.malloc(n);
      assert.equal(a.usableSize(p), n, 'usableSize is the requested size');
      a.u8.fill(7, p, p + n); // in bounds: no report
      a.free(p);
      assert.equal(errors.length, 0, `clean free of ${n} bytes`);
      a.check();
      const q = a.malloc(n);
      // overrun to the end of the block, where the canary sits (secure mode does not check the slack
      // between the requested size and the canary; debug mode does): the block size is the bin of
      // n + 8, which an allocator without padding reports as goodSize(n + 8) (huge blocks: with guard space)
      const binEnd = q + Allocator.create({ size: 1 << 20, secure: 1 }).goodSize(n + 8);
      a.u8.fill(7, q, binEnd);
      assert.throws(() => a.check(), /buffer overflow/, 'check() sees the live block\'s broken canary');
      a.free(q);
      if (errors.length === 0) {
        // the free fast path loads nothing from the block: the canary is checked when the block is handed out again
        assert.throws(() => a.check(), new RegExp(`I5: .*the canary after block 0x${q.toString(16)} `));
        const got = [];
        for (let i = 0; i < 5000 && errors.length === 0; i++) got.push(a.malloc(n));
        assert.equal(got.at(-1), q, `the report comes with block ${q} handed out again`);
        for (const x of got) a.free(x);
      }
      assert.equal(errors.length, 1, `overflow of a ${n}-byte block: ${JSON.stringify(errors)}`);
      assert.equal(errors[0].code, 'EFAULT');
      assert.equal(errors[0].address, q);
      assert.match(errors[0].message, /buffer overflow in block/);
      a.check(); // reported once, repaired
      void keep;
    }
  });

  test('level 3: an overflow out of a block that is never handed out again is reported when its page goes back to the buffer', () => {
    const { a, errors } = recording(16 * MiB, { secure: 3 });
    const ps = Array.from({ length: 50 }, () => a.malloc(200));
    const q = ps[17];
    const r = ps[30];
    const bs = Allocator.create({ size: 1 << 20 }).goodSize(208); // the block: 200 bytes + 8 of padding, binned
    a.u8.fill(0x41, q, q + bs); // 200 bytes, the slack, the canary and size
    a.u8.fill(0x41, r, r + bs);
    for (const p of ps) a.free(p);
    assert.equal(errors.length, 0, 'the fast path free does not look');
    a.collect(true); // the emptied page goes back to the buffer
    assert.equal(errors.length, 2, JSON.stringify(errors));
    assert.deepEqual(errors.map((e) => e.address).sort((x, y) => x - y), [q, r].sort((x, y) => x - y), 'every broken block is reported');
    errors.sort((x, y) => (x.address === q ? -1 : 1));
    assert.equal(errors[0].code, 'EFAULT');
    assert.equal(errors[0].address, q);
    assert.match(errors[0].message, new RegExp(`buffer overflow in block 0x${q.toString(16)} \\(size ${bs - 8}\\).*returned to the buffer`));
    a.check();
  });
});

describe('secure mode: reports that must not cut an operation short or repeat', () => {
  test('a broken canary in a dead agent\'s emptied page: releaseAgent finishes the reap, then reports (default handler throws)', () => {
    const a = Allocator.create({ size: 8 * MiB, secure: 3 });
    const b = Allocator.attach(a.handle);
    const x = b.malloc(24);
    const keep = b.malloc(200); // another page, stays live
    b.u8.fill(0x41, x, x + 28); // an overrun through x's canary
    b.free(x); // fast path: the canary is not read; the page is now empty
    // b dies here (no detach)
    assert.throws(() => a.releaseAgent(asTerminated(b)), (e) => e.code === 'EFAULT' && e.address === x && /returned to the buffer/.test(e.message));
    assert.equal(a.isAgentAttached(b.agentId), false, 'the reap finished before the report');
    a.check();
    a.free(keep); // the dead agent's live block, adopted
    a.check();
  });

  for (const [mode, opts, linkAt] of [['secure 4', { secure: 4 }, 28], ['debug', { debug: true }, 0]]) test(`${mode}: a link copied from another free block that leads to a live block is reported, and the live block is not handed out twice`, () => {
    const { a, errors } = recording(8 * MiB, opts);
    const keep = a.malloc(24);
    const p = a.malloc(24);
    const q = a.malloc(24);
    const r = a.malloc(24);
    assert.equal(pageOf(p), pageOf(r), 'one page (one set of keys)');
    const linkOf = (x) => (x + linkAt) >>> 2; // 24 + 8 bytes of padding: 32-byte blocks; secure: link in the last word
    a.free(q);
    a.free(p); // localFree p → q: p's link is enc(q)
    const encQ = a.u32[linkOf(p)];
    const live = new Set([keep, r]);
    while (!live.has(p) || !live.has(q)) live.add(a.malloc(24)); // p and q are live again
    a.free(r);
    live.delete(r);
    a.u32[linkOf(r)] = encQ; // an attacker who copies a valid encoded link: r → q, which is live
    for (let i = 0; i < 200; i++) {
      const x = a.malloc(24);
      assert.ok(!live.has(x), `block ${x} handed out while live`);
      live.add(x);
    }
    const e = errors.filter((x) => x.code === 'EFAULT');
    assert.equal(e.length, 1, JSON.stringify(errors));
    assert.match(e[0].message, /corrupted free list entry/);
    assert.equal(e[0].address, q);
    for (const x of live) a.free(x);
    a.check();
  });

  test('a corrupted link with a throwing handler is reported once, and the list is truncated', () => {
    const a = Allocator.create({ size: 8 * MiB, secure: 3 });
    const y = a.malloc(24);
    const held = [];
    a.free(y);
    let p;
    while ((p = a.malloc(24)) !== y) held.push(p); // FREE drained until y (refilled from localFree) comes back
    a.free(y); // y is the head of a list again, its link in its last word
    a.u32[(y + 24) >>> 2] = 0x41414141; // over y's canary
    a.u32[(y + 28) >>> 2] = 0x41414141; // and its link
    const reports = [];
    for (let i = 0; i < 6; i++) {
      try { held.push(a.malloc(24)); } catch (e) { reports.push(e.message.slice(0, 40)); }
    }
    assert.equal(reports.length, 2, JSON.stringify(reports)); // the canary, then the link: each once
    assert.match(reports[0], /buffer overflow in block/);
    assert.match(reports[1], /corrupted free list entry/);
    for (const q of held) a.free(q);
    a.check();
  });

  test('realloc checks the padding whether the block stays or moves, and copies the whole block when the size word is gone', () => {
    const errors = [];
    const a = Allocator.create({ size: 8 * MiB, secure: 3, onError: (code, message, address) => errors.push({ code, address }) });
    const p = a.malloc(24);
    a.u8.fill(0x5a, p, p + 24);
    a.u8.fill(0xff, p + 24, p + 32); // canary and size word
    const q = a.realloc(p, 200);
    assert.notEqual(q, p);
    assert.deepEqual(errors, [{ code: 'EFAULT', address: p }]);
    assert.ok(a.u8.subarray(q, q + 24).every((x) => x === 0x5a), 'the contents moved');
    a.free(q);
    assert.equal(errors.length, 1);
    a.check();
  });
});

describe('checkFree: false is a property of the buffer', () => {
  test('an attached agent frees blocks the creator\'s unchecked fast path handed out', () => {
    const a = Allocator.create({ size: 8 * MiB, checkFree: false });
    const b = Allocator.attach(a.handle);
    const ps = Array.from({ length: 100 }, () => a.malloc(64));
    for (const p of ps) b.free(p); // remote frees: no allocation bit to find, and none needed
    a.collect();
    assert.equal(a.stats().used, 0);
    const q = b.malloc(64);
    a.free(q);
    b.detach();
  });
});
