// One operation sequence, run on every allocator variant, results compared.
//
// Each variant has fast paths of its own (src/allocator.ts, the table in its header) or none:
//   default            Allocator, fast paths on
//   checkFree: false   UncheckedAllocator: the same fast paths without allocation bits
//   allocStacks: 1     Allocator with the fast paths off: every call generic
//   secure: 1, 2       Allocator (guard space; 2: random free-list order)
//   secure: 3, 4       SecureAllocator: encoded links, padding after every block
//   debug: true        Allocator with the fast paths off, padding, fills
// A sequence of ~20k deterministic operations (seeded) runs on each against a shadow model
// (contents, zeroing, alignment, usable sizes, which reallocs stay in place, stats), and the
// results are compared between the variants wherever the design says they agree.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator, goodSize } from '../dist/index.js';
import { C } from '../dist/types.js';
import { MiB, hex, captureWarnings } from './lib/helpers.js';

const OPS = 20000;
const SEED = Number(process.env.VARIANTS_SEED ?? 0x5eed1); // another seed: VARIANTS_SEED=n node --test test/variants.test.js
const CHECKPOINT = 5000;
const LARGE_OBJ_SIZE_MAX = 512 * 1024; // larger requests get singleton (huge) pages
const PADDING = 8; // debug and secure ≥ 3: canary and requested size after every block

/** mulberry32: a small seeded generator of floats in [0, 1). */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The operation sequence. Every op names a slot (the index of the op that allocated it); the
 * generator tracks which slots are live and their requested sizes, so the sequence does not
 * depend on any allocator's answers. Phases of 4000 ops alternate between growing towards
 * 3000 live blocks and shrinking towards 50 (pages fill, empty, retire, are reused). About
 * 0.5 % of the ops must fail in every variant (ENOMEM, EOVERFLOW: a NULL result that is part
 * of the comparison); they allocate no slot. At the end every block that mallocAligned made is
 * freed (`tail`), so that the final stats have a model (an aligned block's size is internal).
 */
function generate(seed, count) {
  const r = rng(seed);
  const int = (lo, hi) => lo + Math.floor(r() * (hi - lo + 1));
  const size = () => {
    const x = r();
    if (x < 0.6) return int(0, 128);
    if (x < 0.85) return int(129, 1024);
    if (x < 0.97) return int(1025, 2000);
    if (r() < 0.8) return Math.round(2048 * Math.pow(256, r())); // 2 KiB .. 512 KiB, log-uniform: medium and large pages
    return int(LARGE_OBJ_SIZE_MAX + 1, 600 * 1024); // huge: singleton pages
  };
  const ops = [];
  const live = []; // slots
  const sizeOf = new Map();
  const aligned = new Set();
  const take = () => {
    const k = int(0, live.length - 1);
    const s = live[k];
    live[k] = live[live.length - 1];
    live.pop();
    return s;
  };
  const add = (i, n) => { live.push(i); sizeOf.set(i, n); };
  let target = 3000;
  for (let i = 0; i < count; i++) {
    if (i % 4000 === 0) target = (i / 4000) % 2 === 0 ? 3000 : 50;
    const pFree = live.length === 0 ? 0 : Math.min(0.9, 0.45 * live.length / target);
    if (r() < pFree) {
      const s = take();
      aligned.delete(s);
      ops.push({ op: 'free', slot: s });
      continue;
    }
    const y = r();
    if (y < 0.005) { // must fail everywhere
      const k = int(0, 3);
      if (k === 0) ops.push({ op: 'malloc', slot: -1, n: 2 ** 31 + int(0, 2 ** 20), fails: 'ENOMEM' });
      else if (k === 1) ops.push({ op: 'calloc', slot: -1, count: 65536, size: 65536 + int(0, 99), fails: 'EOVERFLOW' });
      else if (k === 2) ops.push({ op: 'mallocAligned', slot: -1, n: 2 ** 31, align: 1 << int(4, 12), fails: 'ENOMEM' });
      else if (live.length > 0) ops.push({ op: 'realloc', slot: live[int(0, live.length - 1)], n: 2 ** 32 + int(0, 99), fails: 'ENOMEM' });
      continue;
    }
    if (live.length > 0 && y < 0.15) {
      const s = live[int(0, live.length - 1)];
      const old = sizeOf.get(s);
      const z = r();
      const n = z < 0.4 ? size() : z < 0.6 ? int(0, 64) : Math.max(0, old + int(-(old >>> 1) - 8, (old >>> 2) + 8));
      ops.push({ op: 'realloc', slot: s, n });
      sizeOf.set(s, n);
      continue;
    }
    if (live.length > 0 && y < 0.25) { ops.push({ op: 'usableSize', slot: live[int(0, live.length - 1)] }); continue; }
    if (y < 0.32) { const n = size(); ops.push({ op: 'zalloc', slot: i, n }); add(i, n); continue; }
    if (y < 0.38) {
      const c = int(0, 64);
      const e = int(0, 64);
      ops.push({ op: 'calloc', slot: i, count: c, size: e, n: c * e });
      add(i, c * e);
      continue;
    }
    if (y < 0.45) {
      const n = r() < 0.9 ? int(0, 2000) : size();
      ops.push({ op: 'mallocAligned', slot: i, n, align: 1 << int(4, 12) });
      add(i, n);
      aligned.add(i);
      continue;
    }
    const n = size();
    ops.push({ op: 'malloc', slot: i, n });
    add(i, n);
  }
  for (const s of aligned) ops.push({ op: 'free', slot: s, tail: true });
  return ops;
}

// --- contents: every block holds a pattern of its slot at every byte offset ---

function word(tag, k) {
  return (Math.imul(tag ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(k + 1, 0x85ebca77)) | 0;
}

function fill(a, p, n, tag) {
  const i32 = a.i32;
  const w0 = p >>> 2;
  const words = n >>> 2;
  for (let k = 0; k < words; k++) i32[w0 + k] = word(tag, k);
  const u8 = a.u8;
  for (let i = words << 2; i < n; i++) u8[p + i] = word(tag, i >>> 2) >>> ((i & 3) << 3);
}

/** The offset of the first byte of [p, p+n) that is not the slot's pattern, or -1. */
function firstBad(a, p, n, tag) {
  const i32 = a.i32;
  const w0 = p >>> 2;
  const words = n >>> 2;
  for (let k = 0; k < words; k++) {
    if (i32[w0 + k] !== word(tag, k)) {
      for (let i = k << 2; ; i++) if (a.u8[p + i] !== ((word(tag, k) >>> ((i & 3) << 3)) & 255)) return i;
    }
  }
  for (let i = words << 2; i < n; i++) if (a.u8[p + i] !== ((word(tag, i >>> 2) >>> ((i & 3) << 3)) & 255)) return i;
  return -1;
}

function firstNonZero(a, p, n) {
  const u8 = a.u8;
  for (let i = 0; i < n; i++) if (u8[p + i] !== 0) return i;
  return -1;
}

// --- the variants ---

const VARIANTS = [
  { name: 'default', opts: {} },
  { name: 'checkFree: false', opts: { checkFree: false }, staleBits: true },
  { name: 'allocStacks: 1', opts: { allocStacks: 1 } },
  { name: 'secure: 1', opts: { secure: 1 } },
  { name: 'secure: 2', opts: { secure: 2 } },
  { name: 'secure: 3', opts: { secure: 3 }, padded: true },
  { name: 'secure: 4', opts: { secure: 4 }, padded: true },
  { name: 'debug: true', opts: { debug: true }, padded: true },
];

/**
 * The block size (what stats().used counts) a request of n bytes gets, from public answers:
 * unpadded modes: the allocator's goodSize; padded modes: the request plus the padding,
 * rounded as an unpadded allocator with the same guard space rounds (secure ≥ 3: a secure: 1
 * allocator; debug: the default mode's goodSize).
 */
function blockSizeModel(a, v) {
  if (!v.padded) return (n) => a.goodSize(n);
  if (v.opts.debug) return (n) => goodSize(n + PADDING);
  const guarded = Allocator.create({ size: MiB, secure: 1, debug: false });
  return (n) => guarded.goodSize(n + PADDING);
}

/**
 * Runs `ops` on a new allocator of variant v against the shadow model; every disagreement
 * with the model is an assertion failure naming the op. Returns what the comparisons use:
 *   addresses[i]   the address op i returned (0 for NULL and for free / usableSize)
 *   trace[i]       the result in terms every variant of a group shares: 'ok' / 'NULL' for an
 *                  allocation, 'same' / 'moved' / 'NULL' for a realloc, the value of usableSize;
 *                  'aligned' for a realloc or (unpadded) usableSize of a slot mallocAligned
 *                  made: an over-allocated block's usable size is its end minus the aligned
 *                  address, which depends on where the block landed (secure 2 shuffles the
 *                  blocks; fast and generic paths may pick another page), and so does whether
 *                  a realloc of it fits in place. Each run still checks them against its model.
 *   errors         the reports, as 'op index: code'
 *   checkpoints    stats().blocks at every checkpoint (stats().used is compared at the end
 *                  only: while blocks of mallocAligned are live it depends on whether their
 *                  reallocs fitted in place, which depends on where they landed)
 */
function runVariant(v, ops) {
  const errors = [];
  let opIndex = -1;
  const a = Allocator.create({
    size: 64 * MiB,
    debug: false, // (not MIMALLOC_DEBUG's default: the variants are the options given)
    ...v.opts,
    onError: (code) => { errors.push(`${opIndex}: ${code}`); },
  });
  const blockOf = blockSizeModel(a, v);
  // slot → { p, n, tag, usable (expected usableSize, -1: unknown), block (model size, -1: unknown),
  //          aligned (the block mallocAligned made), fromAligned (the slot began with mallocAligned) }
  const shadow = new Map();
  const owner = new Map(); // address → slot
  const addresses = new Float64Array(ops.length);
  const trace = new Array(ops.length);
  const checkpoints = [];
  const where = (i) => `${v.name}: op ${i} ${JSON.stringify(ops[i])}`;

  const verify = (s, i, what) => {
    const e = shadow.get(s);
    const bad = firstBad(a, e.p, e.n, e.tag);
    if (bad >= 0) assert.fail(`${where(i)}: ${what}: block ${hex(e.p)} (slot ${s}, ${e.n} bytes) changed at offset ${bad}`);
  };
  const placed = (i, p, o) => {
    if (p % 8 !== 0) assert.fail(`${where(i)}: ${hex(p)} is not 8-aligned`);
    if (owner.has(p)) assert.fail(`${where(i)}: ${hex(p)} is already the live block of slot ${owner.get(p)}`);
  };
  const allocated = (i, o, p, zero) => {
    addresses[i] = p;
    if (p === 0) {
      trace[i] = 'NULL';
      if (!o.fails) assert.fail(`${where(i)}: NULL`);
      return;
    }
    trace[i] = 'ok';
    if (o.fails) assert.fail(`${where(i)}: expected NULL, got ${hex(p)}`);
    placed(i, p, o);
    if (o.align !== undefined && p % o.align !== 0) assert.fail(`${where(i)}: ${hex(p)} is not ${o.align}-aligned`);
    if (zero) {
      const nz = firstNonZero(a, p, o.n);
      if (nz >= 0) assert.fail(`${where(i)}: ${o.op} block ${hex(p)} not zero at offset ${nz}`);
    }
    const isAligned = o.align !== undefined;
    const usable = v.padded ? o.n : isAligned ? -1 : a.goodSize(o.n);
    shadow.set(o.slot, { p, n: o.n, tag: o.slot, usable, block: isAligned ? -1 : blockOf(o.n), aligned: isAligned, fromAligned: isAligned });
    owner.set(p, o.slot);
    fill(a, p, o.n, o.slot);
  };
  const checkpoint = (i) => {
    for (const s of shadow.keys()) verify(s, i, 'checkpoint');
    const st = a.stats();
    if (st.blocks !== shadow.size) assert.fail(`${v.name}: after op ${i}: stats().blocks ${st.blocks}, ${shadow.size} live`);
    if (!v.staleBits) { // checkFree: false keeps no allocation bits: check() and the leak report read stale ones
      a.check();
      const rep = a.leakReport({ all: true });
      const got = rep.blocks.map((b) => b.address).sort((x, y) => x - y);
      const want = [...owner.keys()].sort((x, y) => x - y);
      assert.deepEqual(got, want, `${v.name}: after op ${i}: leakReport({ all: true }) lists the live blocks`);
      for (const b of rep.blocks) {
        const e = shadow.get(owner.get(b.address));
        if (b.size !== a.usableSize(b.address) || (e.usable >= 0 && b.size !== e.usable)) {
          assert.fail(`${v.name}: after op ${i}: leakReport size ${b.size} of ${hex(b.address)}, usableSize ${a.usableSize(b.address)}, model ${e.usable}`);
        }
      }
    }
    checkpoints.push({ op: i, blocks: st.blocks });
  };

  for (let i = 0; i < ops.length; i++) {
    opIndex = i;
    const o = ops[i];
    const reported = errors.length;
    switch (o.op) {
      case 'malloc': allocated(i, o, a.malloc(o.n), false); break;
      case 'zalloc': allocated(i, o, a.zalloc(o.n), true); break;
      case 'calloc': allocated(i, o, a.calloc(o.count, o.size), true); break;
      case 'mallocAligned': allocated(i, o, a.mallocAligned(o.n, o.align), false); break;
      case 'free': {
        const e = shadow.get(o.slot);
        verify(o.slot, i, 'at free');
        a.free(e.p);
        shadow.delete(o.slot);
        owner.delete(e.p);
        trace[i] = '-';
        break;
      }
      case 'usableSize': {
        const e = shadow.get(o.slot);
        const u = a.usableSize(e.p);
        if (u < e.n) assert.fail(`${where(i)}: usableSize ${u} < ${e.n} requested`);
        if (e.usable >= 0 && u !== e.usable) assert.fail(`${where(i)}: usableSize ${u}, expected ${e.usable}`);
        trace[i] = e.fromAligned && !v.padded ? 'aligned' : u;
        break;
      }
      case 'realloc': {
        const e = shadow.get(o.slot);
        verify(o.slot, i, 'before realloc');
        // Stays in place exactly when usable/2 ≤ n ≤ usable (padded: n ≤ the room before the
        // padding, the block's size minus PADDING) and n > 0 (realloc(p, 0) moves to a new
        // minimal block). Predicted where the model knows the block (not an aligned one).
        let inPlace = null;
        if (!e.aligned) {
          const room = v.padded ? e.block - PADDING : e.usable;
          inPlace = !o.fails && o.n > 0 && o.n >= e.usable / 2 && o.n <= room;
        }
        const q = a.realloc(e.p, o.n);
        // (a block on a page of its own may also grow in place to over 512 KiB, where the slices
        // after it are free: malloc.ts growHuge, not padded modes)
        if (inPlace === false && q === e.p && !v.padded && o.n > e.usable && o.n > 512 * 1024) inPlace = true;
        addresses[i] = q;
        if (q === 0) {
          trace[i] = 'NULL';
          if (!o.fails) assert.fail(`${where(i)}: NULL`);
          verify(o.slot, i, 'after a failed realloc (the block must stay live and intact)');
          break;
        }
        if (o.fails) assert.fail(`${where(i)}: expected NULL, got ${hex(q)}`);
        trace[i] = e.fromAligned ? 'aligned' : q === e.p ? 'same' : 'moved';
        if (inPlace !== null && (q === e.p) !== inPlace) {
          assert.fail(`${where(i)}: ${q === e.p ? 'stayed in place' : 'moved'} (usable ${e.usable}, block ${e.block}, ${e.n} → ${o.n} bytes)`);
        }
        const kept = Math.min(e.n, o.n);
        if (q !== e.p) {
          placed(i, q, o);
          owner.delete(e.p);
          owner.set(q, o.slot);
          e.p = q;
          e.aligned = false;
          e.usable = v.padded ? o.n : a.goodSize(o.n);
          e.block = blockOf(o.n);
        } else if (v.padded) {
          e.usable = Math.max(e.usable, o.n); // a grow moves the padding; a shrink keeps the block's size
        } else if (o.n > e.usable) { // grown in place (growHuge): its page is bigger now
          e.usable = a.usableSize(q);
          e.block = e.usable;
        }
        const bad = firstBad(a, q, kept, e.tag);
        if (bad >= 0) assert.fail(`${where(i)}: realloc lost the contents: offset ${bad} of ${kept} kept bytes`);
        e.n = o.n;
        fill(a, q, o.n, e.tag);
        break;
      }
      default: throw new Error(`unknown op ${o.op}`);
    }
    // the ops that must fail report it once, with their code; no other op reports anything
    const want = o.fails ? [`${i}: ${o.fails}`] : [];
    if (errors.length !== reported + want.length || errors[reported] !== want[0]) {
      assert.fail(`${where(i)}: reported ${JSON.stringify(errors.slice(reported))}, expected ${JSON.stringify(want)}`);
    }
    if (i % CHECKPOINT === CHECKPOINT - 1) checkpoint(i);
  }
  opIndex = ops.length;
  checkpoint(ops.length - 1);
  // the aligned blocks were freed by the tail: every live block's size has a model
  let model = 0;
  for (const e of shadow.values()) {
    assert.ok(!e.aligned);
    model += e.block;
  }
  const st = a.stats();
  assert.equal(st.used, model, `${v.name}: stats().used is the sum of the live blocks' sizes`);
  const final = { live: shadow.size, used: st.used, stats: st };
  // everything freed: nothing left, and debug mode's detach has nothing to report
  for (const [s, e] of shadow) {
    verify(s, ops.length, 'at the final free');
    a.free(e.p);
  }
  assert.equal(a.stats().blocks, 0, `${v.name}: no block left`);
  assert.equal(a.stats().used, 0, `${v.name}: nothing used`);
  if (!v.staleBits) a.check();
  const { warnings } = captureWarnings(() => a.detach());
  assert.deepEqual(warnings, [], `${v.name}: detach with nothing live reports nothing`);
  return { a, addresses, trace, errors, checkpoints, final };
}

function firstDifference(x, y) {
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function assertSame(ops, what, x, y, nameX, nameY) {
  const i = firstDifference(x, y);
  if (i >= 0) {
    assert.fail(`${what}: ${nameX} and ${nameY} differ first at op ${i} ${JSON.stringify(ops[i])}: ${x[i]} vs ${y[i]}`);
  }
}

describe('one operation sequence on every variant', () => {
  const ops = generate(SEED, OPS);
  const results = new Map();
  const get = (name) => {
    const r = results.get(name);
    if (r === undefined) assert.fail(`the run of ${name} failed (see its test)`);
    return r;
  };

  test('the sequence covers what it should', () => {
    const count = {};
    for (const o of ops) count[o.op] = (count[o.op] ?? 0) + 1;
    for (const k of ['malloc', 'free', 'realloc', 'zalloc', 'calloc', 'mallocAligned', 'usableSize']) {
      assert.ok(count[k] >= 300, `${k}: ${count[k]} ops`);
    }
    assert.ok(ops.filter((o) => o.fails).length >= 50, 'ops that fail everywhere');
    assert.ok(ops.filter((o) => o.n > LARGE_OBJ_SIZE_MAX && !o.fails).length >= 10, 'huge blocks');
    assert.ok(ops.filter((o) => o.n > 10240 && o.n <= LARGE_OBJ_SIZE_MAX).length >= 100, 'medium and large blocks');
  });

  for (const v of VARIANTS) {
    test(`${v.name}: the sequence against the shadow model`, () => {
      results.set(v.name, runVariant(v, ops));
    });
  }

  test('every variant: the same NULL results and the same error reports', () => {
    const base = get('default');
    const nulls = (r) => ops.map((o, i) => (o.op === 'free' || o.op === 'usableSize' ? '-' : r.addresses[i] === 0 ? 'NULL' : 'ok'));
    assert.ok(base.errors.length >= 50 && base.errors.every((e) => /: (ENOMEM|EOVERFLOW)$/.test(e)), base.errors.slice(0, 5).join(', '));
    for (const v of VARIANTS) {
      const r = get(v.name);
      assertSame(ops, 'NULL results', nulls(base), nulls(r), 'default', v.name);
      assert.deepEqual(r.errors, base.errors, `${v.name}: error reports`);
      assert.equal(r.final.live, base.final.live, `${v.name}: live blocks at the end`);
    }
  });

  // Identical addresses: default and checkFree: false. Their fast paths differ only in the
  // allocation bits, and their generic paths make the same choices, so every op returns the
  // same address and the heaps end alike.
  //
  // Not so with allocStacks: 1, whose every call is generic. An emptied page is retired for
  // RETIRE_CYCLES_SMALL (16) or _OTHER (4) heartbeats, and the heartbeat runs on generic calls
  // only (malloc.ts allocSize; mimalloc ages retired pages in _mi_malloc_generic the same way):
  // with the fast paths on, most mallocs do not tick it (a fast-path refill sends every 64th
  // to the generic path), so the retired page lives longer and the next new page of another
  // bin (or a huge block) comes from fresh slices instead of its slices. In this sequence the
  // two agree through the growth phase and first differ at op 4939, in the first shrinking
  // phase: a malloc of a huge block gets 0x1930000 on the default variant, 0x1380000 on the
  // generic-only one, which had by then given back two emptied large pages (56 pages, 25.6 MB,
  // against 58 pages, 30.3 MB; the same live blocks and stats().used). The test after this
  // describe shows that the fast and the generic paths agree address for address as long as
  // no page is emptied. What still holds across the three (the next tests): the NULL results,
  // every usableSize answer, which reallocs stay in place (both but for blocks of
  // mallocAligned: see runVariant's trace), stats().blocks at every checkpoint and
  // stats().used at the end (the same requests get the same blocks).
  test('default and checkFree: false return identical addresses for every op', () => {
    const d = get('default');
    const u = get('checkFree: false');
    const addrs = (r) => Array.from(r.addresses, (p) => hex(p));
    assertSame(ops, 'addresses', addrs(d), addrs(u), 'default', 'checkFree: false');
    const { agents: _a1, ...sd } = d.final.stats;
    const { agents: _a2, ...su } = u.final.stats;
    assert.deepEqual(su, sd, 'the same stats at the end');
  });

  const groups = [
    // same bins, no guard, no padding
    ['default', 'checkFree: false', 'allocStacks: 1'],
    // guard space after the last block of every page: the same bins, huge blocks 16 bytes shorter
    ['secure: 1', 'secure: 2'],
    // padded (secure 4 = 3)
    ['secure: 3', 'secure: 4'],
  ];
  for (const g of groups) {
    test(`${g.join(', ')}: the same usable sizes, in-place reallocs and stats`, () => {
      const base = get(g[0]);
      for (const name of g.slice(1)) {
        const r = get(name);
        assertSame(ops, 'results', base.trace, r.trace, g[0], name);
        assert.deepEqual(r.checkpoints, base.checkpoints, `${name}: stats().blocks at the checkpoints`);
        assert.equal(r.final.used, base.final.used, `${name}: stats().used at the end (no block of mallocAligned live)`);
      }
    });
  }

  test('padded variants (debug, secure 3 and 4): usableSize is the request, the same in each', () => {
    // (whether a grow of a huge block stays in place depends on the guard space, but either way
    // its usable size becomes the new request, and a shrink stays in place in each)
    const only = (r) => r.trace.map((t, i) => (ops[i].op === 'usableSize' ? t : '-'));
    assertSame(ops, 'usableSize', only(get('debug: true')), only(get('secure: 3')), 'debug: true', 'secure: 3');
    assertSame(ops, 'usableSize', only(get('debug: true')), only(get('secure: 4')), 'debug: true', 'secure: 4');
  });
});

/**
 * Runs a sequence that never empties a page (the first block handed out in each slice
 * is pinned: never freed nor reallocated; no huge blocks, which are freed straight back) on
 * `a`, choosing frees and reallocs among the other blocks; returns the ops with the addresses.
 */
function pinnedSequence(a, seed, count) {
  const r = rng(seed);
  const int = (lo, hi) => lo + Math.floor(r() * (hi - lo + 1));
  // (no large sizes: a large page of 4 MiB per bin, never emptied, would fill the buffer)
  const size = () => (r() < 0.97 ? int(0, r() < 0.7 ? 256 : 2000) : int(2048, 60000));
  const slices = new Set();
  const free = []; // slots that may be freed
  const at = new Map(); // slot → address
  const ops = [];
  const got = (i, p) => {
    assert.notEqual(p, 0, `op ${i}: NULL`);
    if (slices.has(p >>> C.SLICE_SHIFT)) free.push(i); else slices.add(p >>> C.SLICE_SHIFT);
    at.set(i, p);
  };
  for (let i = 0; i < count; i++) {
    const x = r();
    const pFree = Math.min(0.8, 0.4 * free.length / 1500);
    if (free.length > 0 && x < pFree) {
      const k = int(0, free.length - 1);
      const s = free[k];
      free[k] = free[free.length - 1];
      free.pop();
      ops.push({ op: 'free', slot: s });
      a.free(at.get(s));
      at.delete(s);
    } else if (free.length > 0 && x < pFree + 0.1) {
      const k = int(0, free.length - 1);
      const s = free[k];
      free[k] = free[free.length - 1];
      free.pop();
      const o = { op: 'realloc', slot: s, n: size() };
      ops.push(o);
      const q = a.realloc(at.get(s), o.n);
      at.delete(s);
      o.p = q;
      got(s, q); // a block in a new slice is pinned there instead
    } else if (x < pFree + 0.2) {
      const o = { op: 'mallocAligned', slot: i, n: int(0, 2000), align: 1 << int(4, 12) };
      ops.push(o);
      o.p = a.mallocAligned(o.n, o.align);
      got(i, o.p);
    } else {
      const o = { op: 'malloc', slot: i, n: size() };
      ops.push(o);
      o.p = a.malloc(o.n);
      got(i, o.p);
    }
  }
  return ops;
}

test('the fast and the generic paths hand out the same addresses while no page is emptied', () => {
  const fast = Allocator.create({ size: 64 * MiB, debug: false });
  const ops = pinnedSequence(fast, SEED + 1, 20000);
  fast.check();
  assert.ok(ops.filter((o) => o.op === 'free').length > 5000);
  const generic = Allocator.create({ size: 64 * MiB, debug: false, allocStacks: 1 });
  const at = new Map();
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i];
    let p;
    if (o.op === 'free') { generic.free(at.get(o.slot)); at.delete(o.slot); continue; }
    if (o.op === 'realloc') p = generic.realloc(at.get(o.slot), o.n);
    else if (o.op === 'mallocAligned') p = generic.mallocAligned(o.n, o.align);
    else p = generic.malloc(o.n);
    if (p !== o.p) assert.fail(`op ${i} ${JSON.stringify(o)}: the generic paths gave ${hex(p)}, the fast paths ${hex(o.p)}`);
    at.set(o.slot, p);
  }
  generic.check();
  assert.deepEqual(generic.stats(), fast.stats());
});
