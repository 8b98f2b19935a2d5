// The abuse runner of test/abuse.test.js: executes an operation language of valid and invalid
// calls, made by two agents over one buffer (the creator `A` and `B = Allocator.attach(A.handle)`
// in the same thread), against a model, and asserts the README's error contract and DESIGN.md §4
// at every call. A helper module, not a test file: nothing runs when it is loaded.
//
// An operation is five integers [kind, agent, w1, w2, w3] (kind in [0, 1000), agent in [0, 5)),
// decoded at run time against the model state, so one seeded generator and one fast-check
// arbitrary share the language, and shrinking towards 0 gives simpler operations
// (0 = A.malloc(0)).
//
// The model: every block ever handed out is a record { addr, lo, hi, u, fill, live, singleton }
// (lo = the hidden block start of an aligned block, hi = addr + usable size). A shadow array
// holds, per 8-byte granule, +id of the live block covering it, -id of the freed block covering
// it (a freed block whose memory has not been handed out again), or 0. A new block that covers
// part of a freed block makes that freed block "stale": its memory was handed out again, so its
// address is no longer a freed block's address.
//
// Expected report of free/realloc/usableSize/expand of an address x that is not a live block:
//   x = a freed block's address                 → EAGAIN (singleton block: EAGAIN or EINVAL)
//   anything else (interior, never allocated,   → EINVAL, or EAGAIN when x is exactly the start
//     stale, header, free slice, out of range)     of a block slot in a page in use (documented)
//   interior of a live block                    → EINVAL
import assert from 'node:assert/strict';
import { Allocator, AllocatorError } from '../../dist/index.js';
import { C } from '../../dist/types.js';
import { KiB, MiB, hex as hexOf, captureWarnings, leakWarningProblem } from '../lib/helpers.js';
import * as O from './oracle.js';

export { KiB, MiB };

export const WRONG_TYPES = [null, undefined, '8', '', {}, [], [8], 8n, 0n, true, { valueOf: () => 8 }];
export const BAD_SIZE_NUMBERS = [NaN, -8, -1, -0.5, 1.5, 7.999, Infinity, -Infinity];
export const BAD_ADDRESS_NUMBERS = [NaN, -8, -1, 1.5, 8.5, Infinity, -Infinity, 2 ** 32, 2 ** 32 + 8, 2 ** 40];
export const HUGE_SIZES = [2 ** 31, 2 ** 31 + 8, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER];
export const BAD_ALIGNMENTS = [0, 3, 12, 24, 100, 65535, -8, -1, 1.5, NaN, Infinity, 2 ** 32, 2 ** 33];
/** count * size >= 2^32: EOVERFLOW */
export const CALLOC_OVERFLOW = [[2 ** 16, 2 ** 16], [2 ** 32, 1], [1, 2 ** 32], [Number.MAX_SAFE_INTEGER, 2], [3, 2 ** 31], [2 ** 20, 2 ** 12], [2 ** 40, 2 ** 40]];
/** 2^31 <= count * size < 2^32: ENOMEM */
export const CALLOC_NOMEM = [[2 ** 21, 2 ** 10], [1, 2 ** 31], [2 ** 31, 1], [2 ** 16, 2 ** 16 - 1]];

/** Operation kinds and their weights (per mille). */
export const KINDS = [
  ['malloc', 130], ['zalloc', 35], ['calloc', 35], ['aligned', 60], ['realloc', 90], ['free', 190],
  ['usable', 25], ['expand', 25], ['good', 15], ['collect', 5], ['rotate', 2],
  ['badAddr', 200], ['doubleFree', 120], ['badArg', 68],
];
const KIND_OF = new Array(1000);
{
  let k = 0;
  for (const [name, w] of KINDS) for (let i = 0; i < w; i++) KIND_OF[k++] = name;
  if (k !== 1000) throw new Error(`KINDS weights sum to ${k}`);
}

/** A request size from one random word: mostly small, some medium, a few large and huge. */
export function sizeOf(w) {
  const r = w % 1000;
  const v = Math.floor(w / 1000);
  if (r < 500) return v % 129;
  if (r < 800) return v % 2049;
  if (r < 950) return v % 10241;
  if (r < 995) return 10241 + (v % (300 * KiB));
  return 520 * KiB + ((v * 613) % (2 * MiB + 512 * KiB));
}

/** An alignment from one random word: powers of two 1 .. 1 MiB. */
export function alignOf(w) {
  const r = w % 100;
  const v = Math.floor(w / 100);
  if (r < 10) return 1 << (v % 4); // 1..8
  if (r < 55) return 1 << (4 + (v % 5)); // 16..256
  if (r < 80) return 1 << (9 + (v % 4)); // 512..4096
  if (r < 95) return 1 << (13 + (v % 4)); // 8K..64K
  return 1 << (17 + (v % 4)); // 128K..1M: singleton pages
}

/** n random operations from a seeded PRNG (see rng.js). */
export function genOps(rng, n) {
  const ops = new Array(n);
  for (let i = 0; i < n; i++) ops[i] = [rng.int(1000), rng.int(5), rng.u32(), rng.u32(), rng.u32()];
  return ops;
}

function fmt(v) {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(fmt).join(',')}]`;
  if (typeof v === 'object' && v !== null) return typeof v.valueOf === 'function' && v.valueOf !== Object.prototype.valueOf ? '{valueOf}' : '{}';
  return String(v);
}

const hex = (x) => (typeof x === 'number' && Number.isInteger(x) && x >= 0 ? hexOf(x) : fmt(x));

class IndexedSet {
  constructor() { this.arr = []; this.pos = new Map(); }
  get size() { return this.arr.length; }
  has(k) { return this.pos.has(k); }
  add(k) { if (!this.pos.has(k)) { this.pos.set(k, this.arr.length); this.arr.push(k); } }
  delete(k) {
    const i = this.pos.get(k);
    if (i === undefined) return;
    const last = this.arr.pop();
    if (i < this.arr.length) { this.arr[i] = last; this.pos.set(last, i); }
    this.pos.delete(k);
  }
  at(i) { return this.arr[i % this.arr.length]; }
}

/**
 * One run of an operation list.
 * opts: mode ({ name, opts } of MODES), handler ('record': a custom onError that records
 * (code, address) and returns; 'throw': the default handler), heap (bytes), liveLimit (bytes of
 * live blocks beyond which allocations turn into frees), collectMismatches (true: a wrong error
 * *code* is recorded and the run goes on, the caller asserts the list is empty at the end; false:
 * throw at once, for shrinking), checkEvery (ops between check() calls).
 * Anything other than a wrong code (a call accepted silently, a wrong return value, a lost byte,
 * a broken invariant, a wrong exception class) always throws at once.
 */
/**
 * End (exclusive) of the 8-byte granules a block [p, hi) occupies in the model's shadow: at least
 * one granule (debug mode hands out blocks of 0..7 usable bytes, and ends that are not multiples of 8).
 */
function granEnd(p, hi) {
  return (Math.max(hi, p + 1) + 7) >>> 3;
}

export class AbuseRun {
  constructor({ mode = { name: 'default', opts: {} }, handler = 'record', heap = 64 * MiB, liveLimit = 12 * MiB,
    collectMismatches = false, checkEvery = 500, label = '' } = {}) {
    this.mode = mode;
    /** debug mode and secure ≥ 3 pad every block: usableSize is exactly the request */
    this.exactUsable = mode.opts.debug === true || (mode.opts.secure ?? 0) >= 3;
    this.throwMode = handler === 'throw';
    this.liveLimit = liveLimit;
    this.collectMismatches = collectMismatches;
    this.checkEvery = checkEvery;
    this.label = label || `${mode.name}/${handler}`;
    this.reports = [];
    const onError = (code, message, address) => { this.reports.push({ code, message, address }); };
    this.onError = onError;
    this.a = Allocator.create({ size: heap, ...mode.opts, ...(this.throwMode ? {} : { onError }) });
    this.agents = [this.a, Allocator.attach(this.a.handle, this.throwMode ? {} : { onError })];
    this.size = this.a.buffer.byteLength;
    this.headerEnd = O.headerBytes(this.a);
    this.shadow = new Int32Array(this.size >>> 3);
    this.recs = [null]; // id -> record
    this.live = new IndexedSet(); // addresses of live blocks
    this.freed = new IndexedSet(); // addresses of freed, not stale, blocks
    this.byAddr = new Map(); // address -> record, live or freed (not stale)
    this.liveBytes = 0;
    this.maxEnd = this.headerEnd;
    this.fillSeq = 0;
    this.lastFreed = 0;
    this.step = -1;
    this.op = null;
    this.trace = []; // the resolved calls of this run, for failure messages
    this.log = []; // every reported error: `${step} ${call} ${code}`
    this.mismatches = [];
    this.counts = Object.create(null);
    this.sample = 0x12345;
  }

  // ------------------------------------------------------------------ failures

  fail(msg) {
    const tail = this.trace.slice(-12).map((t) => `    ${t}`).join('\n');
    assert.fail(`[${this.label}] step ${this.step} op ${JSON.stringify(this.op)}: ${msg}\n  last calls:\n${tail}`);
  }

  note(call) {
    this.trace.push(`#${this.step} ${call}`);
    if (this.trace.length > 4000) this.trace.splice(0, 2000);
  }

  /**
   * A wrong answer that changes no state (a wrong error code, a wrong goodSize): recorded and
   * the run goes on when collectMismatches, else a failure at once.
   */
  mismatch(cls, msg) {
    if (!this.collectMismatches) this.fail(msg);
    this.mismatches.push({ cls, msg: `step ${this.step}: ${msg}`, trace: this.trace.slice(-8) });
  }

  count(what) { this.counts[what] = (this.counts[what] ?? 0) + 1; }

  rand(n) {
    // xorshift for sampling only (does not touch the allocator, so runs stay comparable)
    let x = this.sample;
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    this.sample = x >>> 0;
    return n <= 0 ? 0 : this.sample % n;
  }

  agentName(g) { return g === 0 ? 'A' : 'B'; }

  // ------------------------------------------------------------------ model

  /** Validate and record a block just handed out at p for a request of n bytes. */
  admit(g, p, n, { align = 0, zero = false, what }) {
    const ag = this.agents[g];
    if (p === 0 && this.outOfMemory(what)) return null;
    if (typeof p !== 'number' || p === 0) this.fail(`${what} returned ${fmt(p)} (reports ${JSON.stringify(this.reports)})`);
    if (this.reports.length !== 0) this.fail(`${what}: valid call reported ${JSON.stringify(this.reports)}`);
    if (p % 8 !== 0) this.fail(`${what} = ${hex(p)} is not 8-byte aligned`);
    if (align > 0 && p % align !== 0) this.fail(`${what} = ${hex(p)} is not a multiple of ${align}`);
    if (p + n > this.size) this.fail(`${what} = ${hex(p)} runs past the buffer`);
    const u = ag.usableSize(p);
    if (this.reports.length !== 0) this.fail(`usableSize of fresh ${hex(p)} reported ${JSON.stringify(this.reports)}`);
    if (!(u >= n)) this.fail(`${what}: usableSize ${u} < ${n}`);
    if (align <= 8) {
      if (u > n + Math.max(16, n / 4)) this.fail(`${what}: usableSize ${u} > n + max(16, n/4)`);
      const gs = ag.goodSize(n);
      if (gs !== u) this.mismatch('goodSize(n) differs from usableSize(malloc(n))', `${what}: goodSize(${n}) = ${gs} but usableSize = ${u}`);
    }
    if (p + u > this.size) this.fail(`${what}: block ${hex(p)} + ${u} runs past the buffer`);
    const lo = O.blockStartOf(this.a, p);
    if (lo > p || (align <= 8 && lo !== p) || (align > 8 && p - lo >= align)) this.fail(`${what}: block start ${hex(lo)} for ${hex(p)}`);
    const hi = p + u;
    // no overlap with a live block; freed blocks covered by the new one become stale
    const sh = this.shadow;
    for (let gi = lo >>> 3, ge = granEnd(p, hi); gi < ge; gi++) {
      const v = sh[gi];
      if (v > 0) {
        const o = this.recs[v];
        this.fail(`${what} = ${hex(p)} [${hex(lo)}, ${hex(hi)}) overlaps live block ${hex(o.addr)} [${hex(o.lo)}, ${hex(o.hi)}) at ${hex(gi << 3)}`);
      }
      if (v < 0) this.makeStale(this.recs[-v]);
    }
    const old = this.byAddr.get(p);
    if (old !== undefined) this.makeStale(old);
    if (zero) {
      const u8 = ag.u8;
      for (let i = p; i < p + n; i++) if (u8[i] !== 0) this.fail(`${what}: byte ${i - p} of ${hex(p)} is ${u8[i]}, not zero`);
    }
    const fill = (this.fillSeq++ % 255) + 1;
    const id = this.recs.length;
    const rec = { id, addr: p, lo, hi, u, n, fill, align, live: true, owner: g, singleton: O.isSingleton(this.a, p) };
    this.recs.push(rec);
    sh.fill(id, lo >>> 3, granEnd(p, hi));
    ag.u8.fill(fill, p, hi);
    this.live.add(p);
    this.byAddr.set(p, rec);
    this.liveBytes += hi - lo;
    if (hi > this.maxEnd) this.maxEnd = hi;
    return rec;
  }

  makeStale(rec) {
    if (rec.live) this.fail(`model: live block ${hex(rec.addr)} made stale`);
    const sh = this.shadow;
    for (let gi = rec.lo >>> 3, ge = rec.hi >>> 3; gi < ge; gi++) if (sh[gi] === -rec.id) sh[gi] = 0;
    this.freed.delete(rec.addr);
    if (this.byAddr.get(rec.addr) === rec) this.byAddr.delete(rec.addr);
  }

  /** The model's side of a successful free (or a move by realloc). */
  retire(rec, g) {
    rec.live = false;
    rec.freedBy = g;
    this.live.delete(rec.addr);
    this.freed.add(rec.addr);
    this.shadow.fill(-rec.id, rec.lo >>> 3, granEnd(rec.addr, rec.hi));
    this.liveBytes -= rec.hi - rec.lo;
    this.lastFreed = rec.addr;
  }

  verifyFull(rec, what) {
    const { addr: p, u, fill } = rec;
    const u8 = this.a.u8;
    const u32 = this.a.u32;
    const word = (fill * 0x01010101) >>> 0;
    const e = (p + u) >>> 2;
    for (let i = p >>> 2; i < e; i++) {
      if (u32[i] !== word) {
        for (let j = i << 2; j < (i << 2) + 4; j++) if (u8[j] !== fill) this.fail(`${what}: live block ${hex(p)} (usable ${u}) lost byte ${j - p}: ${u8[j]}, expected ${fill}`);
      }
    }
    for (let j = e << 2; j < p + u; j++) if (u8[j] !== fill) this.fail(`${what}: live block ${hex(p)} lost byte ${j - p}`);
  }

  verifySampled(rec, what) {
    const { addr: p, u, fill } = rec;
    if (u === 0) return;
    const u8 = this.a.u8;
    for (const off of [0, u - 1, u >>> 1, this.rand(u)]) {
      if (u8[p + off] !== fill) this.fail(`${what}: live block ${hex(p)} (usable ${u}) lost byte ${off}: ${u8[p + off]}, expected ${fill}`);
    }
  }

  verifyAll(what) {
    for (const p of this.live.arr) this.verifyFull(this.byAddr.get(p), what);
  }

  /** Blocks sizes of the live blocks (what stats().used counts once remote frees are collected). */
  modelUsed() {
    let s = 0;
    for (const p of this.live.arr) { const r = this.byAddr.get(p); s += r.hi - r.lo; }
    return s;
  }

  /** What the model says of address x: { kind, rec }. */
  classify(x) {
    if (!(Number.isInteger(x) && x >= 0 && x < this.size)) return { kind: 'outside' };
    const v = this.shadow[x >>> 3];
    if (v > 0) {
      const r = this.recs[v];
      return r.addr === x ? { kind: 'live', rec: r } : { kind: 'liveInterior', rec: r };
    }
    if (v < 0) {
      const r = this.recs[-v];
      return r.addr === x ? { kind: 'freed', rec: r } : { kind: 'freedInterior', rec: r };
    }
    return { kind: x < this.headerEnd ? 'header' : 'none' };
  }

  /** The codes the contract allows for a free/realloc/usableSize/expand of non-live x. */
  allowed(c, x) {
    switch (c.kind) {
      // documented (the README's error contract): a second free is EAGAIN while the block's page is in use and the
      // address is the block's start; once every block of the page was freed and the page went back to
      // the buffer (or for an over-aligned address inside its block) nothing records it: EINVAL
      case 'freed': return c.rec.singleton || !O.isBlockStartInLivePage(this.a, x) ? ['EAGAIN', 'EINVAL'] : ['EAGAIN'];
      case 'liveInterior': case 'outside': case 'header': return ['EINVAL'];
      // (a pending remote free is a freed block the model may have lost track of: EAGAIN is right for it)
      default: return O.isBlockStartInLivePage(this.a, x) || O.isPendingRemoteFree(this.a, x) ? ['EINVAL', 'EAGAIN'] : ['EINVAL'];
    }
  }

  // ------------------------------------------------------------------ calls

  /** A call that must succeed without any report (an allocation may also return 0 with one ENOMEM). */
  valid(call, what, { mayFail = false } = {}) {
    this.reports.length = 0;
    let r;
    try {
      r = call();
    } catch (e) {
      this.fail(`${what}: valid call threw ${e?.name}: ${e?.message}`);
    }
    if (mayFail && r === 0) return 0;
    if (this.reports.length !== 0) this.fail(`${what}: valid call reported ${JSON.stringify(this.reports)}`);
    return r;
  }

  /**
   * A valid request returned NULL: legal when the buffer cannot supply it (fragmentation: the
   * model keeps live bytes far below the buffer size, so this stays rare; counted). It must come
   * with exactly one ENOMEM report (custom handler) and no throw.
   */
  outOfMemory(what) {
    if (!this.throwMode && (this.reports.length !== 1 || this.reports[0].code !== 'ENOMEM')) {
      this.fail(`${what} returned 0 with reports ${JSON.stringify(this.reports)}, expected one ENOMEM`);
    }
    this.count('ENOMEM for a valid size');
    this.note(`  → 0 (ENOMEM, live bytes ${this.liveBytes})`);
    return true;
  }

  /** An invalid-address call: exactly one EINVAL/EAGAIN report (or AllocatorError), a no-op return. */
  invalid(g, fn, x, n, c) {
    const ag = this.agents[g];
    const expected = this.allowed(c, x);
    const name = { free: 'free', realloc: 'realloc', usable: 'usableSize', expand: 'expand' }[fn];
    const call = `${this.agentName(g)}.${name}(${hex(x)}${fn === 'realloc' || fn === 'expand' ? `, ${n}` : ''}) [${c.kind}${c.rec ? ` of ${hex(c.rec.addr)}` : ''}]`;
    this.note(call);
    this.count(`invalid ${c.kind}`);
    if (c.kind === 'freed') {
      if (c.rec.freedBy !== g) this.count('double free by the other agent');
      if (c.rec.singleton) this.count('double free of a singleton block');
    }
    const used0 = this.liveBytes;
    this.reports.length = 0;
    let r;
    let code;
    let address;
    let threw = null;
    try {
      r = fn === 'free' ? ag.free(x) : fn === 'realloc' ? ag.realloc(x, n) : fn === 'usable' ? ag.usableSize(x) : ag.expand(x, n);
    } catch (e) {
      threw = e;
    }
    if (this.throwMode) {
      if (threw === null) this.fail(`${call} was accepted (returned ${fmt(r)}), expected AllocatorError ${expected.join('/')}`);
      if (!(threw instanceof AllocatorError)) this.fail(`${call} threw ${threw?.name}: ${threw?.message}, expected AllocatorError`);
      code = threw.code;
      address = threw.address;
    } else {
      if (threw !== null) this.fail(`${call} threw ${threw?.name}: ${threw?.message}; a returning handler makes it a no-op`);
      if (this.reports.length === 0) this.fail(`${call} was accepted without a report (returned ${fmt(r)}), expected ${expected.join('/')}`);
      if (this.reports.length !== 1) this.fail(`${call}: ${this.reports.length} reports ${JSON.stringify(this.reports)}`);
      code = this.reports[0].code;
      address = this.reports[0].address;
      const ret = fn === 'free' ? undefined : 0;
      if (r !== ret) this.fail(`${call} returned ${fmt(r)}, expected ${fmt(ret)}`);
      if (typeof this.reports[0].message !== 'string' || this.reports[0].message.length === 0) this.fail(`${call}: empty message`);
    }
    if (address !== x) this.fail(`${call}: reported address ${fmt(address)}, expected ${hex(x)}`);
    this.log.push(`${this.step} ${call} ${code}`);
    this.count(`${c.kind} → ${code}`);
    if (!expected.includes(code)) {
      const pg = O.pageAt(this.a, x);
      const where = pg === null ? 'no page in use there'
        : `page ${hex(pg.start)} block size ${pg.blockSize}${pg.aligned ? ' (aligned blocks)' : ''}${O.isBlockStartInLivePage(this.a, x) ? ', a block start' : ', not a block start'}`;
      let cls;
      if (c.kind === 'freed') {
        const samePage = pg !== null && pg.blockSize === c.rec.hi - c.rec.lo && O.isBlockStartInLivePage(this.a, c.rec.lo) &&
          (c.rec.lo === c.rec.addr || pg.aligned);
        cls = `double free/realloc/usableSize of a freed ${c.rec.singleton ? 'singleton ' : ''}block reported ${code}: ${pg === null ? 'its page was released' : samePage ? 'its page is still in use' : 'its page was released and the slices reused'}`;
      }
      else cls = `${c.kind} address reported ${code} (${pg === null ? 'no page' : pg.aligned ? 'page with aligned blocks' : 'page'}${O.isBlockStartInLivePage(this.a, x) ? ', block start' : ', not a block start'})`;
      this.mismatch(cls, `${call}: got ${code}, expected ${expected.join(' or ')}; ${where}`);
    }
    if (this.liveBytes !== used0) this.fail('model changed by an invalid call');
    // a target that is a live block's neighbour or interior must be untouched
    if (c.kind === 'liveInterior') {
      const u = this.valid(() => ag.usableSize(c.rec.addr), 'usableSize of the containing block');
      if (u !== c.rec.u) this.fail(`${call}: containing block ${hex(c.rec.addr)} usable ${u}, was ${c.rec.u}`);
      this.verifyFull(c.rec, call);
    }
  }

  /** A call that must throw exactly `Ctor` (TypeError / RangeError) before any change. */
  argError(g, call, what, Ctor, target) {
    this.note(`${this.agentName(g)}.${what} → ${Ctor.name}`);
    this.count(`argument ${Ctor.name}`);
    const s0 = this.a.stats();
    this.reports.length = 0;
    let threw = null;
    let r;
    try { r = call(); } catch (e) { threw = e; }
    if (threw === null) this.fail(`${what} returned ${fmt(r)}, expected ${Ctor.name}`);
    if (threw.constructor !== Ctor) this.fail(`${what} threw ${threw?.constructor?.name}: ${threw?.message}, expected ${Ctor.name}`);
    if (this.reports.length !== 0) this.fail(`${what}: ${Ctor.name} but also reported ${JSON.stringify(this.reports)}`);
    const s1 = this.a.stats();
    for (const k of ['used', 'committed', 'blocks', 'pages', 'capacityBytes']) if (s1[k] !== s0[k]) this.fail(`${what}: stats().${k} ${s0[k]} → ${s1[k]} after a ${Ctor.name}`);
    if (target) {
      const u = this.valid(() => this.agents[g].usableSize(target.addr), 'usableSize of the argument block');
      if (u !== target.u) this.fail(`${what}: block ${hex(target.addr)} usable ${u}, was ${target.u}`);
      this.verifyFull(target, what);
    }
  }

  /** A size the buffer cannot supply: returns 0, reports `code` (custom handler) and does not throw. */
  noMem(g, call, what, code, target) {
    this.note(`${this.agentName(g)}.${what} → ${code}`);
    this.count(`no memory ${code}`);
    this.reports.length = 0;
    let r;
    try { r = call(); } catch (e) { this.fail(`${what} threw ${e?.name}: ${e?.message}; ${code} must return 0`); }
    if (r !== 0) this.fail(`${what} returned ${fmt(r)}, expected 0 (${code})`);
    if (this.throwMode) {
      if (this.reports.length !== 0) this.fail('model: reports in throw mode');
    } else {
      if (this.reports.length !== 1) this.fail(`${what}: expected one ${code} report, got ${JSON.stringify(this.reports)}`);
      if (this.reports[0].code !== code) {
        this.mismatch(`${what.split('(')[0]} reported ${this.reports[0].code} instead of ${code}`, `${what}: got ${this.reports[0].code}, expected ${code}`);
      }
    }
    if (target) {
      const u = this.valid(() => this.agents[g].usableSize(target.addr), 'usableSize after a failed realloc');
      if (u !== target.u) this.fail(`${what}: block ${hex(target.addr)} usable ${u}, was ${target.u}`);
      this.verifyFull(target, what);
    }
  }

  // ------------------------------------------------------------------ valid operations

  allocOk(n) { return this.liveBytes + n + 2 * 64 * KiB <= this.liveLimit; }

  doAlloc(g, kind, n, w) {
    const ag = this.agents[g];
    if (kind === 'malloc') {
      const what = `${this.agentName(g)}.malloc(${n})`;
      this.note(what);
      return this.admit(g, this.valid(() => ag.malloc(n), what, { mayFail: true }), n, { what });
    }
    if (kind === 'zalloc') {
      const what = `${this.agentName(g)}.zalloc(${n})`;
      this.note(what);
      return this.admit(g, this.valid(() => ag.zalloc(n), what, { mayFail: true }), n, { zero: true, what });
    }
    if (kind === 'calloc') {
      // count * size = n, with the edge cases count = 0 or size = 0 and a huge other factor
      let c;
      let s;
      const r = w % 8;
      if (n === 0 && r < 2) { c = r === 0 ? 0 : 2 ** 40; s = r === 0 ? 2 ** 40 : 0; }
      else if (r < 4 && n % 8 === 0 && n > 0) { c = n / 8; s = 8; }
      else if (r < 6) { c = 1; s = n; }
      else { c = n; s = 1; }
      const what = `${this.agentName(g)}.calloc(${c}, ${s})`;
      this.note(what);
      return this.admit(g, this.valid(() => ag.calloc(c, s), what, { mayFail: true }), c * s, { zero: true, what });
    }
    const al = alignOf(w);
    const what = `${this.agentName(g)}.mallocAligned(${n}, ${al})`;
    this.note(what);
    return this.admit(g, this.valid(() => ag.mallocAligned(n, al), what, { mayFail: true }), n, { align: al, what });
  }

  doFree(g, rec) {
    const what = `${this.agentName(g)}.free(${hex(rec.addr)}) [live, owner ${this.agentName(rec.owner)}]`;
    this.note(what);
    this.verifyFull(rec, `before ${what}`);
    const r = this.valid(() => this.agents[g].free(rec.addr), what);
    if (r !== undefined) this.fail(`${what} returned ${fmt(r)}`);
    this.retire(rec, g);
    if (g !== rec.owner) this.count('cross-agent free');
  }

  doRealloc(g, rec, n) {
    const ag = this.agents[g];
    const u = rec.u;
    const inPlace = n > 0 && n <= u && n >= u / 2;
    if (!inPlace && !this.allocOk(n)) n = u >>> 1; // stay under the live limit: shrink instead
    const stays = n > 0 && n <= u && n >= u / 2;
    const what = `${this.agentName(g)}.realloc(${hex(rec.addr)}, ${n}) [live, usable ${u}]`;
    this.note(what);
    this.verifyFull(rec, `before ${what}`);
    const r = this.valid(() => ag.realloc(rec.addr, n), what, { mayFail: !stays });
    if (stays) {
      if (r !== rec.addr) this.fail(`${what} = ${fmt(r)}: must stay in place (usable/2 <= n <= usable)`);
      const u2 = this.valid(() => ag.usableSize(r), 'usableSize after realloc in place');
      // a shrink in place keeps the block's usable size, in every mode (debug/secure: the
      // requested size stays as it was, as in mimalloc's padded builds)
      if (u2 !== u) this.fail(`${what}: usable ${u} → ${u2} in place`);
      this.verifyFull(rec, `after ${what}`);
      return rec;
    }
    if (r === 0) { // a failed move leaves the block live and intact
      this.outOfMemory(what);
      const u2 = this.valid(() => ag.usableSize(rec.addr), 'usableSize after a failed realloc');
      if (u2 !== u) this.fail(`${what} failed but usable ${u} → ${u2}`);
      this.verifyFull(rec, `after failed ${what}`);
      return rec;
    }
    // (a block on a page of its own may grow in place to over 512 KiB: malloc.ts growHuge)
    if (r === rec.addr && !this.exactUsable && !(n > u && n > 512 * 1024)) this.fail(`${what} stayed in place outside usable/2 <= n <= usable`);
    // (debug mode may grow in place into the block's slack: usableSize is the request, not the block)
    const keep = Math.min(u, n);
    const u8 = ag.u8;
    for (let i = 0; i < keep; i++) if (u8[r + i] !== rec.fill) this.fail(`${what} = ${hex(r)}: copied byte ${i} is ${u8[r + i]}, expected ${rec.fill}`);
    this.retire(rec, g);
    if (g !== rec.owner) this.count('cross-agent realloc');
    return this.admit(g, r, n, { what, align: r === rec.addr ? rec.align : 0 });
  }

  /**
   * B.detach(), a valid call. A debug-mode agent prints a leak report (console.warn) when its
   * pages hold live blocks: captured, not printed, and checked: printed exactly then, once,
   * naming the agent and the blocks leakReport() found just before, each a live block of the
   * model with its usable (= requested, in debug mode) size. No other mode prints anything.
   */
  detachB(ag) {
    const what = 'B.detach()';
    const leaks = ag.debug ? ag.leakReport().blocks : [];
    for (const b of leaks) {
      const rec = this.byAddr.get(b.address);
      if (rec === undefined || !rec.live) this.fail(`${what}: the leak report names ${hex(b.address)} (${b.size} bytes), not a live block of the model`);
      if (b.size !== rec.u) this.fail(`${what}: the leak report gives ${hex(b.address)} ${b.size} bytes, the model ${rec.u}`);
    }
    const { warnings } = captureWarnings(() => this.valid(() => ag.detach(), what));
    if (leaks.length === 0) {
      if (warnings.length !== 0) this.fail(`${what} with no live block in its pages printed ${JSON.stringify(warnings)}`);
      return;
    }
    if (warnings.length !== 1) this.fail(`${what} with ${leaks.length} live blocks in its pages printed ${warnings.length} warnings, expected one leak report: ${JSON.stringify(warnings)}`);
    const problem = leakWarningProblem(warnings[0], ag.agentId, leaks);
    if (problem !== null) this.fail(`${what}: leak report ${problem}:\n${warnings[0]}`);
    this.count('leak report at detach');
  }

  // ------------------------------------------------------------------ the operation interpreter

  pickLive(w) { return this.live.size === 0 ? null : this.byAddr.get(this.live.at(w)); }

  /** Any free/realloc/usable/expand of x: the valid call when x is a live block, else the invalid one. */
  addrCall(g, fn, x, n) {
    const c = this.classify(x);
    if (c.kind === 'live') {
      if (fn === 'free') return this.doFree(g, c.rec);
      if (fn === 'realloc') return this.doRealloc(g, c.rec, n);
      if (fn === 'usable') return this.doUsable(g, c.rec);
      return this.doExpand(g, c.rec, n);
    }
    return this.invalid(g, fn, x, n, c);
  }

  doUsable(g, rec) {
    const what = `${this.agentName(g)}.usableSize(${hex(rec.addr)})`;
    this.note(what);
    const u = this.valid(() => this.agents[g].usableSize(rec.addr), what);
    if (u !== rec.u) this.fail(`${what} = ${u}, was ${rec.u}`);
  }

  doExpand(g, rec, n) {
    const what = `${this.agentName(g)}.expand(${hex(rec.addr)}, ${n}) [usable ${rec.u}]`;
    this.note(what);
    const r = this.valid(() => this.agents[g].expand(rec.addr, n), what);
    const want = n <= rec.u ? rec.addr : 0;
    if (r !== want) this.fail(`${what} = ${fmt(r)}, expected ${fmt(want)}`);
    this.verifySampled(rec, what);
  }

  exec(op) {
    const [k, agentSel, w1, w2, w3] = op;
    const kind = KIND_OF[k % 1000];
    const g = agentSel % 5 < 3 ? 0 : 1;
    const ag = this.agents[g];
    const name = this.agentName(g);
    switch (kind) {
      case 'malloc': case 'zalloc': case 'calloc': case 'aligned': {
        const n = sizeOf(w1);
        if (!this.allocOk(n) && this.live.size > 0) return this.doFree(g, this.pickLive(w2));
        return this.doAlloc(g, kind, n, w2);
      }
      case 'free': {
        const rec = this.pickLive(w2);
        if (rec === null) return this.doAlloc(g, 'malloc', sizeOf(w1), 0);
        return this.doFree(g, rec);
      }
      case 'realloc': {
        const rec = this.pickLive(w2);
        const sel = w1 % 6;
        if (rec === null || sel === 5) {
          let n = sizeOf(w3);
          if (!this.allocOk(n)) n = n % 129;
          const what = `${name}.realloc(0, ${n})`;
          this.note(what);
          return this.admit(g, this.valid(() => ag.realloc(0, n), what, { mayFail: true }), n, { what });
        }
        const u = rec.u;
        const n = sel === 0 ? Math.ceil(u / 2) + (w3 % (u - Math.ceil(u / 2) + 1)) // in place
          : sel === 1 ? u + 1 + (w3 % (u + 16)) // grow
            : sel === 2 ? 0
              : sel === 3 ? w3 % Math.max(1, Math.ceil(u / 2)) // shrink below half: moves
                : sizeOf(w3);
        return this.doRealloc(g, rec, n);
      }
      case 'usable': {
        const rec = this.pickLive(w2);
        if (rec !== null) this.doUsable(g, rec);
        return;
      }
      case 'expand': {
        const rec = this.pickLive(w2);
        if (rec !== null) this.doExpand(g, rec, w1 % 2 === 0 ? w3 % (rec.u + 1) : rec.u + 1 + (w3 % 100000));
        return;
      }
      case 'good': {
        const n = w1 % 10 === 0 ? HUGE_SIZES[w3 % HUGE_SIZES.length] : w1 % 10 === 1 ? 2 ** 31 - 64 * KiB - (w3 % 1000) : sizeOf(w3);
        const what = `${name}.goodSize(${n})`;
        this.note(what);
        const s = this.valid(() => ag.goodSize(n), what);
        if (!(Number.isInteger(s) && s >= n)) this.mismatch(`goodSize(n) < n for n = ${n >= 2 ** 32 ? 'n >= 2^32' : n}`, `${what} = ${s} < ${n}`);
        return;
      }
      case 'collect': {
        const force = w1 % 3 === 0;
        this.note(`${name}.collect(${force})`);
        this.valid(() => ag.collect(force), `collect(${force})`);
        return;
      }
      case 'rotate': {
        // B detaches (its pages are abandoned, its blocks stay live) and a new agent takes its place
        const old = this.agents[1];
        this.note('B.detach(); B = Allocator.attach(A.handle)');
        this.detachB(old);
        const rec = this.pickLive(w2);
        if (rec !== null) {
          assert.throws(() => old.free(rec.addr), (e) => !(e instanceof AllocatorError), 'a detached agent must throw (not report) on use');
          assert.throws(() => old.malloc(16));
        }
        this.agents[1] = Allocator.attach(this.a.handle, this.throwMode ? {} : { onError: this.onError });
        this.count('rotate');
        return;
      }
      case 'doubleFree': {
        if (this.freed.size === 0) {
          const rec = this.pickLive(w2);
          if (rec !== null) this.doFree(g, rec);
          return;
        }
        const x = w3 % 4 === 0 && this.freed.has(this.lastFreed) ? this.lastFreed : this.freed.at(w2);
        const f = w1 % 10;
        const fn = f < 6 ? 'free' : f < 8 ? 'realloc' : f < 9 ? 'usable' : 'expand';
        return this.addrCall(g, fn, x, (w3 >>> 4) % 300);
      }
      case 'badAddr': return this.badAddr(g, w1, w2, w3);
      case 'badArg': return this.badArg(g, w1, w2, w3);
      default: throw new Error(kind);
    }
  }

  badAddr(g, w1, w2, w3) {
    const f = w2 % 10;
    const fn = f < 4 ? 'free' : f < 6 ? 'realloc' : f < 8 ? 'usable' : 'expand';
    const n = (w3 >>> 5) % 200;
    const size = this.size;
    const sub = w1 % 12;
    const rec = this.pickLive(w2 >>> 4);
    let x;
    switch (sub) {
      case 0: x = (w3 % (size >>> 3)) * 8; break; // anywhere in the buffer
      case 1: x = this.headerEnd + (w3 % ((this.maxEnd - this.headerEnd) >>> 3 || 1)) * 8; break; // in the used region
      case 2: x = this.headerEnd + (w3 % (this.maxEnd - this.headerEnd || 1)); x += x % 8 === 0 ? 1 + (w3 % 7) : 0; break; // unaligned
      case 3: x = 8 * (1 + (w3 % ((this.headerEnd >>> 3) - 1))); break; // header
      case 4: x = size + (w3 % (2 ** 32 - size)); break; // beyond the buffer, below 2^32
      case 5: { // a slice no page covers
        const s = O.freeSliceFrom(this.a, this.a.arena.headerSlices + (w3 % this.a.arena.sliceCount));
        if (s < 0) return;
        x = s * C.SLICE_SIZE + ((w3 >>> 8) % (C.SLICE_SIZE / 8)) * 8;
        break;
      }
      case 6: case 7: { // interior of a live block
        if (rec === null) return;
        const u = rec.u;
        const offs = [8, u - 8, (u >>> 1) & ~7, 8 * (1 + ((w3 >>> 2) % Math.max(1, (u >>> 3) - 1)))].filter((o) => o > 0 && o < u);
        x = offs.length ? rec.addr + offs[w3 % offs.length] : rec.addr + 4;
        break;
      }
      case 8: if (rec === null) return; x = rec.addr + 1 + (w3 % 7); break; // unaligned
      case 9: { // the hidden start of an aligned block, or the addresses between it and the returned one
        let h = null;
        for (let i = 0; i < Math.min(64, this.live.size); i++) {
          const r = this.byAddr.get(this.live.at(w3 + i));
          if (r.lo !== r.addr) { h = r; break; }
        }
        if (h === null) { if (rec === null) return; x = rec.addr + 4; break; }
        this.count('hidden start or below');
        x = (w3 >>> 3) % 2 === 0 ? h.lo : h.lo + 8 * ((w3 >>> 4) % ((h.addr - h.lo) >>> 3));
        break;
      }
      case 10: { // interior (or hidden start) of a freed block
        if (this.freed.size === 0) return;
        const r = this.byAddr.get(this.freed.at(w3));
        const span = ((r.hi - r.lo) >>> 3) || 1; // (debug mode: a block may be shorter than 8 bytes)
        x = r.lo + 8 * ((w3 >>> 6) % span);
        if (x === r.addr) x = r.addr + (r.hi - r.addr > 8 ? 8 : 4);
        break;
      }
      default: { // near a live block
        if (rec === null) return;
        const d = 8 * (1 + ((w3 >>> 1) % 512));
        x = w3 % 2 === 0 ? rec.addr + d : rec.addr - d;
        if (x <= 0) x = rec.addr + d;
        break;
      }
    }
    if (x === 0) x = 8;
    return this.addrCall(g, fn, x, n);
  }

  badArg(g, w1, w2, w3) {
    const ag = this.agents[g];
    const name = this.agentName(g);
    const wt = WRONG_TYPES[w3 % WRONG_TYPES.length];
    const bs = BAD_SIZE_NUMBERS[w3 % BAD_SIZE_NUMBERS.length];
    const ba = BAD_ADDRESS_NUMBERS[w3 % BAD_ADDRESS_NUMBERS.length];
    const hs = HUGE_SIZES[w3 % HUGE_SIZES.length];
    const rec = this.pickLive(w2);
    // an address argument that would be fine or that would be reported: the argument error wins
    const someAddr = rec === null ? 0 : w2 % 3 === 0 && this.freed.size ? this.freed.at(w3) : w2 % 3 === 1 ? rec.addr + 8 : rec.addr;
    const target = rec;
    const two = (w2 >>> 3) % 2 === 0;
    switch (w1 % 14) {
      case 0: { const fn = two ? 'malloc' : 'zalloc'; return this.argError(g, () => ag[fn](wt), `${fn}(${fmt(wt)})`, TypeError); }
      case 1: { const fn = two ? 'malloc' : 'zalloc'; return this.argError(g, () => ag[fn](bs), `${fn}(${fmt(bs)})`, RangeError); }
      case 2: {
        const s = (w2 >>> 4) % 3;
        if (s === 0) return this.noMem(g, () => ag.malloc(hs), `malloc(${hs})`, 'ENOMEM');
        if (s === 1) return this.noMem(g, () => ag.zalloc(hs), `zalloc(${hs})`, 'ENOMEM');
        return this.noMem(g, () => ag.mallocAligned(hs, 16), `mallocAligned(${hs}, 16)`, 'ENOMEM');
      }
      case 3: return two ? this.argError(g, () => ag.calloc(wt, 8), `calloc(${fmt(wt)}, 8)`, TypeError)
        : this.argError(g, () => ag.calloc(8, wt), `calloc(8, ${fmt(wt)})`, TypeError);
      case 4: return two ? this.argError(g, () => ag.calloc(bs, 2 ** 20), `calloc(${fmt(bs)}, 2^20)`, RangeError)
        : this.argError(g, () => ag.calloc(2 ** 20, bs), `calloc(2^20, ${fmt(bs)})`, RangeError);
      case 5: { const [c, s] = CALLOC_OVERFLOW[w3 % CALLOC_OVERFLOW.length]; return this.noMem(g, () => ag.calloc(c, s), `calloc(${c}, ${s})`, 'EOVERFLOW'); }
      case 6: { const [c, s] = CALLOC_NOMEM[w3 % CALLOC_NOMEM.length]; return this.noMem(g, () => ag.calloc(c, s), `calloc(${c}, ${s})`, 'ENOMEM'); }
      case 7: case 8: {
        const v = w1 % 14 === 7 ? wt : ba;
        const Ctor = w1 % 14 === 7 ? TypeError : RangeError;
        const f = (w2 >>> 4) % 4;
        if (f === 0) return this.argError(g, () => ag.free(v), `free(${fmt(v)})`, Ctor, target);
        if (f === 1) return this.argError(g, () => ag.realloc(v, 16), `realloc(${fmt(v)}, 16)`, Ctor, target);
        if (f === 2) return this.argError(g, () => ag.usableSize(v), `usableSize(${fmt(v)})`, Ctor, target);
        return this.argError(g, () => ag.expand(v, 16), `expand(${fmt(v)}, 16)`, Ctor, target);
      }
      case 9: {
        const typ = two;
        const v = typ ? wt : bs;
        const Ctor = typ ? TypeError : RangeError;
        return (w2 >>> 4) % 2 === 0
          ? this.argError(g, () => ag.realloc(someAddr, v), `realloc(${hex(someAddr)}, ${fmt(v)})`, Ctor, target)
          : this.argError(g, () => ag.expand(someAddr, v), `expand(${hex(someAddr)}, ${fmt(v)})`, Ctor, target);
      }
      case 10: {
        if (rec === null) return;
        const what = `realloc(${hex(rec.addr)}, ${hs}) [live, usable ${rec.u}]`;
        return this.noMem(g, () => ag.realloc(rec.addr, hs), what, 'ENOMEM', rec);
      }
      case 11: {
        const s = (w2 >>> 4) % 4;
        const bal = BAD_ALIGNMENTS[w3 % BAD_ALIGNMENTS.length];
        if (s === 0) return this.argError(g, () => ag.mallocAligned(16, bal), `mallocAligned(16, ${fmt(bal)})`, RangeError);
        if (s === 1) return this.argError(g, () => ag.mallocAligned(16, wt), `mallocAligned(16, ${fmt(wt)})`, TypeError);
        if (s === 2) return this.argError(g, () => ag.mallocAligned(bs, 16), `mallocAligned(${fmt(bs)}, 16)`, RangeError);
        return this.argError(g, () => ag.mallocAligned(wt, 16), `mallocAligned(${fmt(wt)}, 16)`, TypeError);
      }
      case 12: return two ? this.argError(g, () => ag.goodSize(wt), `goodSize(${fmt(wt)})`, TypeError)
        : this.argError(g, () => ag.goodSize(bs), `goodSize(${fmt(bs)})`, RangeError);
      default: {
        const s = (w2 >>> 4) % 3;
        if (s === 0) return this.noMem(g, () => ag.mallocAligned(16, 2 ** 31), 'mallocAligned(16, 2^31)', 'ENOMEM');
        if (s === 1) return this.noMem(g, () => ag.mallocAligned(hs, 4096), `mallocAligned(${hs}, 4096)`, 'ENOMEM');
        if (rec === null) return;
        return this.noMem(g, () => ag.realloc(rec.addr, 2 ** 31 - (w3 % 64) * 8), `realloc(${hex(rec.addr)}, 2^31-${(w3 % 64) * 8})`, 'ENOMEM', rec);
      }
    }
  }

  // ------------------------------------------------------------------ driving

  checkpoint(what) {
    try { this.a.check(); } catch (e) { this.fail(`${what}: check() failed: ${e.message}`); }
    this.verifyAll(what);
  }

  /** Collect both agents' remote frees, then stats().used must be the live blocks' sizes. */
  checkUsed(what) {
    for (const ag of this.agents) this.valid(() => ag.collect(), 'collect()');
    const used = this.a.stats().used;
    const want = this.modelUsed();
    // debug mode: stats count whole blocks (padding included) while usableSize is the request
    const ok = this.exactUsable ? (this.live.size === 0 ? used === 0 : used >= want) : used === want;
    if (!ok) this.fail(`${what}: stats().used = ${used} after collect(), live blocks hold ${want}`);
  }

  runOps(ops) {
    for (let i = 0; i < ops.length; i++) {
      this.step = i;
      this.op = ops[i];
      this.exec(ops[i]);
      // every step: a sample of live blocks keeps its bytes
      for (let j = 0; j < 3 && this.live.size > 0; j++) this.verifySampled(this.byAddr.get(this.live.at(this.rand(1 << 30))), 'sample');
      if (this.checkEvery > 0 && (i + 1) % this.checkEvery === 0) this.checkpoint(`checkpoint after step ${i}`);
    }
    this.step = ops.length;
    this.op = 'end';
    this.checkpoint('end');
    this.checkUsed('end');
    return this;
  }

  /** Free every live block (alternating agents), double-free some, and expect an empty, consistent heap. */
  drain() {
    this.op = 'drain';
    const all = [...this.live.arr];
    all.forEach((p, i) => this.doFree(i % 2, this.byAddr.get(p)));
    const recent = this.freed.arr.slice(-40);
    recent.forEach((p, i) => this.addrCall((i + 1) % 2, 'free', p, 0));
    for (const ag of this.agents) this.valid(() => ag.collect(true), 'collect(true)');
    const s = this.a.stats();
    if (s.used !== 0) this.fail(`drained: stats().used = ${s.used}`);
    this.checkpoint('drained');
    this.detachB(this.agents[1]);
    this.checkpoint('after B.detach()');
    return this;
  }

  summary() {
    const byCls = new Map();
    for (const m of this.mismatches) {
      const e = byCls.get(m.cls) ?? { n: 0, first: m };
      e.n++;
      byCls.set(m.cls, e);
    }
    return [...byCls].map(([cls, { n, first }]) => `  ${n} × ${cls}\n    first: ${first.msg}\n${first.trace.map((t) => `      ${t}`).join('\n')}`).join('\n');
  }
}
