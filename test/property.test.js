// Model-based property test: random sequences of malloc/calloc/zalloc/realloc/free/mallocAligned/expand
// against a model (address -> {requested size, usable size, fill byte, alignment}).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { KiB, MiB, recording } from './lib/helpers.js';

const HEAP = 64 * MiB;
const LIVE_LIMIT = 20 * MiB; // the model frees instead of allocating beyond this many live bytes
const NUM_RUNS = Number(process.env.PROPERTY_RUNS ?? 300);

const sizeArb = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 64 }), weight: 50 },
  { arbitrary: fc.integer({ min: 0, max: 2048 }), weight: 40 },
  { arbitrary: fc.integer({ min: 0, max: 300 * KiB }), weight: 8 },
  { arbitrary: fc.integer({ min: MiB, max: 3 * MiB }), weight: 1 },
);
const alignLogArb = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 12 }), weight: 10 },
  { arbitrary: fc.integer({ min: 13, max: 20 }), weight: 1 },
);

const opArb = fc.oneof(
  { weight: 28, arbitrary: fc.record({ t: fc.constant('malloc'), n: sizeArb }) },
  { weight: 7, arbitrary: fc.record({ t: fc.constant('calloc'), count: fc.integer({ min: 0, max: 16 }), n: sizeArb }) },
  { weight: 7, arbitrary: fc.record({ t: fc.constant('zalloc'), n: sizeArb }) },
  { weight: 15, arbitrary: fc.record({ t: fc.constant('realloc'), i: fc.nat(), n: sizeArb }) },
  { weight: 30, arbitrary: fc.record({ t: fc.constant('free'), i: fc.nat() }) },
  { weight: 8, arbitrary: fc.record({ t: fc.constant('aligned'), n: sizeArb, k: alignLogArb }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('expand'), i: fc.nat(), n: sizeArb }) },
);

function runOps(ops, { heap = HEAP, liveLimit = LIVE_LIMIT, allowNomem = false } = {}) {
  const LIVE_LIMIT = liveLimit;
  const { a, errors } = recording(heap);
  const u8 = a.u8;
  const live = new Map(); // address -> { n, u, fill, align }
  const order = []; // live addresses, for picking by index
  let liveBytes = 0;
  let fillSeq = 0;
  let step = -1;

  const fail = (msg) => assert.fail(`step ${step} (${JSON.stringify(ops[step])}): ${msg}`);
  const nextFill = () => (fillSeq++ % 255) + 1;

  function remove(p) {
    const b = live.get(p);
    live.delete(p);
    const j = order.indexOf(p);
    order[j] = order[order.length - 1];
    order.pop();
    liveBytes -= b.u;
  }

  function checkSampled(p, b) {
    const { u, fill } = b;
    if (u === 0) return;
    for (const off of [0, 1, 7, u >>> 1, u - 8, u - 1]) {
      if (off >= 0 && off < u && u8[p + off] !== fill) fail(`block @${p} (usable ${u}) byte ${off} = ${u8[p + off]}, expected ${fill}`);
    }
  }

  function checkAll(p, b, n = b.u) {
    for (let i = 0; i < n; i++) if (u8[p + i] !== b.fill) fail(`block @${p} (usable ${b.u}) byte ${i} = ${u8[p + i]}, expected ${b.fill}`);
  }

  /** With allowNomem, a NULL result must come with exactly one ENOMEM report; returns true if so. */
  function tolerated(p) {
    if (p !== 0 || !allowNomem) return false;
    if (errors.length !== 1 || errors[0].code !== 'ENOMEM') fail(`NULL without one ENOMEM report: ${JSON.stringify(errors)}`);
    errors.length = 0;
    return true;
  }

  /** Validates a fresh block p of requested size n and adds it to the model. */
  function admit(p, n, { align = 8, zero = false, bounded = false, ignore = -1 } = {}) {
    if (tolerated(p)) return null;
    if (p === 0) fail(`returned NULL with ${liveBytes} live bytes (errors: ${JSON.stringify(errors)})`);
    if (p % 8 !== 0) fail(`address ${p} not 8-byte aligned`);
    if (p % align !== 0) fail(`address ${p} not ${align}-aligned`);
    if (live.has(p) && p !== ignore) fail(`address ${p} is already live`);
    const u = a.usableSize(p);
    if (u < n) fail(`usableSize ${u} < requested ${n}`);
    if (bounded && u > n + Math.max(16, n / 4)) fail(`usableSize ${u} > ${n} + max(16, ${n}/4)`);
    if (p + u > u8.length) fail(`block ${p}+${u} beyond the buffer`);
    for (const [q, b] of live) {
      if (q === ignore) continue;
      if (p < q + b.u && q < p + u) fail(`block ${p}+${u} overlaps live block ${q}+${b.u}`);
    }
    if (zero) {
      for (let i = 0; i < n; i++) if (u8[p + i] !== 0) fail(`zeroed block @${p} byte ${i} of ${n} = ${u8[p + i]}`);
    }
    const b = { n, u, fill: nextFill(), align };
    u8.fill(b.fill, p, p + u);
    live.set(p, b);
    order.push(p);
    liveBytes += u;
    return b;
  }

  function freeIndex(i) {
    if (order.length === 0) return;
    const p = order[i % order.length];
    const b = live.get(p);
    checkSampled(p, b);
    a.free(p);
    remove(p);
  }

  for (step = 0; step < ops.length; step++) {
    const op = ops[step];
    const n = op.n ?? 0;
    switch (op.t) {
      case 'malloc':
      case 'zalloc':
      case 'calloc':
      case 'aligned': {
        if (liveBytes + n > LIVE_LIMIT) { freeIndex(n); break; }
        if (op.t === 'malloc') admit(a.malloc(n), n, { bounded: true });
        else if (op.t === 'zalloc') admit(a.zalloc(n), n, { zero: true, bounded: true });
        else if (op.t === 'calloc') {
          const size = op.count === 0 ? n : Math.floor(n / op.count);
          const total = op.count * size;
          admit(a.calloc(op.count, size), total, { zero: true, bounded: true });
        } else {
          const align = 2 ** op.k;
          admit(a.mallocAligned(n, align), n, { align });
        }
        break;
      }
      case 'free':
        freeIndex(op.i);
        break;
      case 'expand': {
        if (order.length === 0) break;
        const p = order[op.i % order.length];
        const b = live.get(p);
        const r = a.expand(p, n);
        if (n <= b.u ? r !== p : r !== 0) fail(`expand(${p} [usable ${b.u}], ${n}) = ${r}`);
        if (a.usableSize(p) !== b.u) fail('expand changed the usable size');
        break;
      }
      case 'realloc': {
        if (order.length === 0) {
          if (n <= LIVE_LIMIT) admit(a.realloc(0, n), n);
          break;
        }
        const p = order[op.i % order.length];
        const old = live.get(p);
        if (liveBytes + n > LIVE_LIMIT) { freeIndex(op.i); break; }
        checkSampled(p, old);
        const q = a.realloc(p, n);
        // in place within [usable / 2, usable]; a block on a page of its own (over 512 KiB, or
        // aligned to more than 64 KiB) may also grow in place to over 512 KiB (malloc.ts growHuge)
        const grown = q === p && n > old.u && n > 512 * 1024;
        const inPlace = (old.u / 2 <= n && n <= old.u) || grown;
        if (q === 0 && !inPlace && tolerated(q)) {
          // a failed realloc leaves the old block live and intact
          if (a.usableSize(p) !== old.u) fail(`failed realloc changed the block ${p}`);
          checkAll(p, old);
          break;
        }
        if (q === 0) fail(`realloc(${p}, ${n}) = 0 with ${liveBytes} live bytes (errors: ${JSON.stringify(errors)})`);
        if (inPlace && q !== p) fail(`realloc(${p} [usable ${old.u}], ${n}) moved to ${q}`);
        if (!inPlace && q === p) fail(`realloc(${p} [usable ${old.u}], ${n}) stayed in place`);
        const keep = Math.min(old.u, n);
        for (let i = 0; i < keep; i++) {
          if (u8[q + i] !== old.fill) fail(`realloc(${p} [usable ${old.u}], ${n}) -> ${q}: byte ${i} = ${u8[q + i]}, expected ${old.fill}`);
        }
        remove(p);
        if (!inPlace) {
          const uq = a.usableSize(q);
          if (q < p + old.u && p < q + uq) fail(`moved block ${q}+${uq} overlaps the old block ${p}+${old.u}`);
          // the old address is no longer live
          const e0 = errors.length;
          a.usableSize(p);
          if (errors.length !== e0 + 1 || !['EAGAIN', 'EINVAL'].includes(errors[e0].code)) {
            fail(`old address ${p} still live after realloc moved it (errors: ${JSON.stringify(errors.slice(e0))})`);
          }
          errors.length = e0;
        }
        const b = admit(q, n, { ignore: p });
        if (b === null) fail('unreachable');
        if (inPlace && !grown && b.u !== old.u) fail(`in-place realloc changed usable ${old.u} -> ${b.u}`);
        break;
      }
      default:
        throw new Error(`unknown op ${op.t}`);
    }
    if (errors.length) fail(`unexpected error reports: ${JSON.stringify(errors)}`);
    for (const [p, b] of live) checkSampled(p, b);
    if (step % 20 === 19) {
      a.check();
      const used = a.stats().used;
      if (used < liveBytes) fail(`stats().used ${used} < live usable bytes ${liveBytes}`);
    }
  }
  step = ops.length - 1;
  for (const [p, b] of live) checkAll(p, b);
  a.check();
  for (const p of [...order]) { a.free(p); remove(p); }
  if (errors.length) fail(`unexpected error reports: ${JSON.stringify(errors)}`);
  assert.equal(a.stats().used, 0, 'stats().used after freeing everything');
  a.check();
}

test('model-based: random operation sequences keep every block intact and disjoint', () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 600, size: 'max' }), (ops) => { runOps(ops); }),
    { numRuns: NUM_RUNS },
  );
});

test('model-based: small-only churn (many blocks per page)', () => {
  const smallOp = fc.oneof(
    { weight: 40, arbitrary: fc.record({ t: fc.constant('malloc'), n: fc.integer({ min: 0, max: 256 }) }) },
    { weight: 10, arbitrary: fc.record({ t: fc.constant('zalloc'), n: fc.integer({ min: 0, max: 256 }) }) },
    { weight: 15, arbitrary: fc.record({ t: fc.constant('realloc'), i: fc.nat(), n: fc.integer({ min: 0, max: 512 }) }) },
    { weight: 30, arbitrary: fc.record({ t: fc.constant('free'), i: fc.nat() }) },
    { weight: 5, arbitrary: fc.record({ t: fc.constant('aligned'), n: fc.integer({ min: 0, max: 256 }), k: fc.integer({ min: 0, max: 8 }) }) },
  );
  fc.assert(
    fc.property(fc.array(smallOp, { minLength: 100, maxLength: 1500, size: 'max' }), (ops) => { runOps(ops); }),
    { numRuns: Math.max(5, NUM_RUNS >> 2) },
  );
});

test('model-based: a tight 4 MiB heap where allocations may fail with ENOMEM', () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 600, size: 'max' }), (ops) => {
      runOps(ops, { heap: 4 * MiB, liveLimit: 64 * MiB, allowNomem: true });
    }),
    { numRuns: Math.max(10, NUM_RUNS >> 1) },
  );
});
