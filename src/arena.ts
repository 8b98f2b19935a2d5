/**
 * arena.ts — the buffer as one mimalloc arena: layout, views, and the atomic
 * slice bitmap that pages are claimed from and returned to.
 *
 * Claiming is lock-free: find the lowest run of free slices (lowest first, so
 * the touched high-water mark stays low — there is no decommit inside a
 * SharedArrayBuffer), then clear its bits word by word with CAS, rolling back
 * on a lost race. Every claim and release is announced first in the agent's
 * *intent* record, so that whoever reaps a terminated agent can finish or
 * undo a multi-word update that agent died in the middle of (see `recoverIntent`).
 *
 * Cost: a claim scans the free-slice bitmap from the lowest slice, 32 slices
 * per word (a 1 GiB buffer is 2048 words), once per new page (≥ 16 KiB of
 * blocks), plus one CAS per bitmap word of the run.
 */
import { C } from './types.js';

/** Word offsets of the header regions for a buffer of `sliceCount` slices. */
export interface Layout {
  sliceCount: number;
  sliceWords: number;
  agents: number;
  freeMap: number;
  dirtyMap: number;
  abandoned: number;
  pageMap: number;
  records: number;
  aBits: number;
  rBits: number;
  headerWords: number;
  headerSlices: number;
}

export function computeLayout(sliceCount: number): Layout {
  const sliceWords = (sliceCount + 31) >>> 5;
  const agents = C.H_FIXED_WORDS;
  const freeMap = agents + C.MAX_AGENTS * C.AGENT_WORDS;
  const dirtyMap = freeMap + sliceWords;
  const abandoned = dirtyMap + sliceWords;
  const pageMap = abandoned + C.ABANDONED_BINS * sliceWords;
  const records = (pageMap + sliceCount + C.REC_WORDS - 1) & ~(C.REC_WORDS - 1);
  const aBits = records + sliceCount * C.REC_WORDS;
  const rBits = aBits + (sliceCount << (C.SLICE_SHIFT - C.BITMAP_WORD_SHIFT)); // 64 words per slice
  const headerWords = rBits + (sliceCount << (C.SLICE_SHIFT - C.R_WORD_SHIFT)); // 32 per slice
  const headerSlices = Math.ceil((headerWords * 4) / (1 << C.SLICE_SHIFT));
  return { sliceCount, sliceWords, agents, freeMap, dirtyMap, abandoned, pageMap, records, aBits, rBits, headerWords, headerSlices };
}


/** Bits [i, hi) of the bitmap word holding bit i (hi ≤ the end of that word). */
function wordMask(i: number, hi: number): number {
  const cnt = hi - i;
  return cnt === 32 ? -1 : (((1 << cnt) - 1) << (i & 31));
}

function ctz(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/**
 * One agent's view of the shared arena. Every agent constructs its own over
 * the same buffer; the views are fixed-length (length-tracking views measured
 * 3.7x slower), and are rebuilt if the buffer is ever replaced.
 */
export class Arena {
  readonly buffer: ArrayBufferLike;
  readonly layout: Layout;
  /** The whole buffer as Int32 words (block links, header words). */
  readonly mem: Int32Array;
  /** The whole buffer as bytes. */
  readonly u8: Uint8Array;
  /** Page records: `meta[base + R_*]`, base = `rec(slice)`. The same array as `mem`. */
  readonly meta: Int32Array;
  /** Word index of the record of slice 0 (the always-empty record). */
  readonly recBase: number;
  /** slice → record base of the covering page, 0 if none. */
  readonly pageMap: Int32Array;
  /** A and R bitmaps, one bit per 8-byte (A) and 16-byte (R) granule of the whole buffer. */
  readonly aBits: Int32Array;
  readonly rBits: Int32Array;
  readonly sliceCount: number;
  readonly headerSlices: number;
  readonly size: number;
  /** Debug mode (a property of the buffer: every agent sees the header's OPT_DEBUG). */
  readonly debug: boolean;
  /** checkFree: false (OPT_NO_CHECK), for every agent of the buffer. */
  readonly noCheck: boolean;
  /** Secure level 0..4 (a property of the buffer, from the header). */
  readonly secure: number;
  /** Blocks carry padding (canary + requested size): debug mode or secure ≥ 3. */
  readonly padded: boolean;

  constructor(buffer: ArrayBufferLike) {
    const n = buffer.byteLength;
    if (!(n >= C.MIN_SIZE && n - (n % C.SLICE_SIZE) <= C.MAX_SIZE)) { // before any view: V8's messages say nothing of the limits
      throw new RangeError(`mimalloc-ts: a buffer of ${n} bytes cannot hold an allocator (${C.MIN_SIZE} to ${C.MAX_SIZE} bytes: 1 MiB to 4 GiB − 16 KiB)`);
    }
    this.buffer = buffer;
    const sliceCount = Math.floor(buffer.byteLength / (1 << C.SLICE_SHIFT));
    this.layout = computeLayout(sliceCount);
    const L = this.layout;
    this.mem = new Int32Array(buffer, 0, sliceCount << (C.SLICE_SHIFT - 2));
    this.u8 = new Uint8Array(buffer, 0, sliceCount * C.SLICE_SIZE);
    this.meta = this.mem;
    this.recBase = L.records;
    this.pageMap = new Int32Array(buffer, L.pageMap * 4, sliceCount);
    this.aBits = new Int32Array(buffer, L.aBits * 4, L.rBits - L.aBits);
    this.rBits = new Int32Array(buffer, L.rBits * 4, L.headerWords - L.rBits);
    this.sliceCount = sliceCount;
    this.headerSlices = L.headerSlices;
    this.size = sliceCount * (1 << C.SLICE_SHIFT);
    const formatted = Atomics.load(this.mem, C.H_MAGIC) === C.MAGIC;
    this.debug = formatted && (this.mem[C.H_OPTIONS] & C.OPT_DEBUG) !== 0;
    this.secure = formatted ? (this.mem[C.H_OPTIONS] >>> C.OPT_SECURE_SHIFT) & C.OPT_SECURE_MASK : 0;
    this.padded = this.debug || this.secure >= 3;
    this.noCheck = formatted && (this.mem[C.H_OPTIONS] & C.OPT_NO_CHECK) !== 0;
  }

  /** Record base of the page starting at slice s. */
  rec(s: number): number {
    return this.recBase + (s << C.REC_SHIFT);
  }

  /** Word index of agent record i (0 ≤ i < MAX_AGENTS): the one place the agent-record layout is spelled out. */
  agentRecord(i: number): number {
    return this.layout.agents + i * C.AGENT_WORDS;
  }

  /** Slice of a record base. */
  sliceOfRec(rb: number): number {
    return (rb - this.recBase) >>> C.REC_SHIFT;
  }

  /** Write a fresh header into the buffer (the creator does this once). */
  format(knownZero: boolean, debug = false, secure = 0, noCheck = false): void {
    const m = this.mem;
    const L = this.layout;
    if (!knownZero) m.fill(0, 0, L.headerWords); // a reused buffer: clear every header word
    m[C.H_SLICE_COUNT] = L.sliceCount;
    m[C.H_HEADER_SLICES] = L.headerSlices;
    m[C.H_OPTIONS] = (knownZero ? C.OPT_KNOWN_ZERO : 0) | (debug ? C.OPT_DEBUG : 0) | (secure << C.OPT_SECURE_SHIFT) |
      (noCheck ? C.OPT_NO_CHECK : 0);
    (this as { noCheck: boolean }).noCheck = noCheck;
    (this as { secure: number }).secure = secure;
    (this as { padded: boolean }).padded = debug || secure >= 3;
    (this as { debug: boolean }).debug = debug;
    m[C.H_VERSION] = C.VERSION;
    Atomics.store(m, C.H_COMMITTED, L.headerSlices);
    // every slice after the header starts free
    for (let s = L.headerSlices; s < L.sliceCount; s++) m[L.freeMap + (s >>> 5)] |= 1 << (s & 31);
    Atomics.store(m, C.H_MAGIC, C.MAGIC);
  }

  /** Check that the buffer holds a formatted arena of this version. */
  validateHeader(): void {
    const m = this.mem;
    if (Atomics.load(m, C.H_MAGIC) !== C.MAGIC) throw new Error('mimalloc-ts: buffer does not hold an allocator (bad magic)');
    if (m[C.H_VERSION] !== C.VERSION) throw new Error(`mimalloc-ts: buffer has format version ${m[C.H_VERSION]}, expected ${C.VERSION}`);
    if (m[C.H_SLICE_COUNT] !== this.sliceCount) throw new Error('mimalloc-ts: buffer size does not match its header');
  }

  // -------------------------------------------------------------------------
  // Slice bitmap
  // -------------------------------------------------------------------------

  isSliceFree(s: number): boolean {
    return (Atomics.load(this.mem, this.layout.freeMap + (s >>> 5)) & (1 << (s & 31))) !== 0;
  }

  /**
   * Lowest run of `n` free slices whose start is a multiple of `align`
   * (a power of two), or -1. Reads are a hint; the claim re-checks with CAS.
   */
  private findRun(n: number, align: number): number {
    const m = this.mem;
    const fm = this.layout.freeMap;
    const end = this.sliceCount;
    if (n === 1 && align === 1) {
      // A single slice prefers a group of 8 (one byte of the bitmap) that is
      // already partly used, so that wholly free, aligned groups stay whole
      // for medium (8-slice) and large (64-slice) pages: a light form of
      // mimalloc's chunk bins, against small pages fragmenting freed runs.
      // Only below the high-water mark: it must never raise it when a lower
      // slice is free.
      const hwm = Atomics.load(m, C.H_COMMITTED);
      const words = Math.min(this.layout.sliceWords, (hwm + 31) >>> 5);
      for (let w = this.headerSlices >>> 5; w < words; w++) {
        const x = m[fm + w];
        if (x === 0 || x === -1) continue;
        for (let g = 0; g < 32; g += 8) {
          const byte = (x >>> g) & 0xff;
          if (byte !== 0 && byte !== 0xff) {
            const s = (w << 5) + g + ctz(byte);
            if (s >= this.headerSlices && s < end && s < hwm) return s;
          }
        }
      }
    }
    let s = (this.headerSlices + align - 1) & -align;
    while (s + n <= end) {
      const w = s >>> 5;
      const bits = m[fm + w] & (-1 << (s & 31));
      if (bits === 0) { // no free slice from s to the end of this word
        s = (((w + 1) << 5) + align - 1) & -align;
        continue;
      }
      const first = (w << 5) + ctz(bits);
      if (first !== s) { s = (first + align - 1) & -align; continue; }
      // s is free: measure the run
      let len = 1;
      while (len < n) {
        const t = s + len;
        if ((t & 31) === 0 && len + 32 <= n && m[fm + (t >>> 5)] === -1) { len += 32; continue; }
        if ((m[fm + (t >>> 5)] & (1 << (t & 31))) === 0) break;
        len++;
      }
      if (len >= n) return s;
      s = (s + len + 1 + align - 1) & -align;
    }
    return -1;
  }

  /** Atomically clear the bits [s, s+n) if all are set; false (and nothing changed) otherwise. */
  private tryClearRun(s: number, n: number): boolean {
    const m = this.mem;
    const fm = this.layout.freeMap;
    let i = s;
    const end = s + n;
    while (i < end) {
      const w = i >>> 5;
      const hi = Math.min(end, (w + 1) << 5);
      const mask = wordMask(i, hi);
      for (;;) {
        const old = Atomics.load(m, fm + w);
        if ((old & mask) !== mask) { // lost a race: give back what we took
          if (i > s) this.setRun(s, i - s);
          return false;
        }
        if (Atomics.compareExchange(m, fm + w, old, old & ~mask) === old) break;
      }
      i = hi;
    }
    return true;
  }

  /** Set the free bits [s, s+n) (idempotent). */
  setRun(s: number, n: number): void {
    const m = this.mem;
    const fm = this.layout.freeMap;
    let i = s;
    const end = s + n;
    while (i < end) {
      const hi = Math.min(end, ((i >>> 5) + 1) << 5);
      Atomics.or(m, fm + (i >>> 5), wordMask(i, hi));
      i = hi;
    }
  }

  /**
   * Claim `n` contiguous free slices (start aligned to `align` slices) for the
   * agent whose record starts at word `agentBase`. Announces the intent first;
   * the caller clears it (`clearIntent`) once the page is fully recorded.
   * Returns the first slice, or -1 when no run is free.
   */
  claimSlices(agentBase: number, n: number, align: number): number {
    const m = this.mem;
    for (let tries = 0; tries < 1000; tries++) {
      const s = this.findRun(n, align);
      if (s < 0) return -1;
      Atomics.store(m, agentBase + C.A_INTENT_START, s);
      Atomics.store(m, agentBase + C.A_INTENT_COUNT, n);
      Atomics.store(m, agentBase + C.A_INTENT_OP, C.INTENT_CLAIM);
      if (this.tryClearRun(s, n)) {
        this.noteCommitted(s + n);
        return s;
      }
      Atomics.store(m, agentBase + C.A_INTENT_OP, C.INTENT_NONE);
    }
    return -1;
  }

  clearIntent(agentBase: number): void {
    Atomics.store(this.mem, agentBase + C.A_INTENT_OP, C.INTENT_NONE);
  }

  announceRelease(agentBase: number, s: number, n: number): void {
    const m = this.mem;
    Atomics.store(m, agentBase + C.A_INTENT_START, s);
    Atomics.store(m, agentBase + C.A_INTENT_COUNT, n);
    Atomics.store(m, agentBase + C.A_INTENT_OP, C.INTENT_RELEASE);
  }

  /** Raise the committed high-water mark (in slices) to at least `top`. */
  private noteCommitted(top: number): void {
    const m = this.mem;
    for (;;) {
      const cur = Atomics.load(m, C.H_COMMITTED);
      if (cur >= top || Atomics.compareExchange(m, C.H_COMMITTED, cur, top) === cur) return;
    }
  }

  /** True if every slice in [s, s+n) was never part of a page; marks them as used now. */
  takeFresh(s: number, n: number): boolean {
    const m = this.mem;
    const dm = this.layout.dirtyMap;
    const knownZero = (m[C.H_OPTIONS] & C.OPT_KNOWN_ZERO) !== 0;
    let fresh = knownZero;
    for (let i = s; i < s + n; i++) {
      const old = Atomics.or(m, dm + (i >>> 5), 1 << (i & 31));
      if ((old & (1 << (i & 31))) !== 0) fresh = false;
    }
    return fresh;
  }

  /** Is slice x inside the intent range of any live agent other than `exceptBase`? */
  private coveredByIntent(x: number, exceptBase: number): boolean {
    const m = this.mem;
    for (let i = 0; i < C.MAX_AGENTS; i++) {
      const b = this.agentRecord(i);
      if (b === exceptBase || Atomics.load(m, b + C.A_ID) === 0) continue;
      if (Atomics.load(m, b + C.A_INTENT_OP) === C.INTENT_NONE) continue;
      const s = Atomics.load(m, b + C.A_INTENT_START);
      const n = Atomics.load(m, b + C.A_INTENT_COUNT);
      if (x >= s && x < s + n) return true;
    }
    return false;
  }

  /**
   * Finish or undo the slice update a dead agent was in the middle of.
   *
   * A slice is the dead agent's to repair only if its free bit is clear and
   * nothing else accounts for it: no other agent's intent covers it and no
   * page of another agent is published on it. (Bits the dead agent had not
   * cleared, or had already set again, may meanwhile belong to someone
   * else's new page — possibly one starting at the same slice, so the page
   * map value alone proves nothing.) On those slices: a claim whose record
   * was completed (STATE=1, OWNER the dead agent) stands and the page scan
   * takes it over; anything else is unpublished and unmapped, and the
   * slices' free bits are set.
   */
  recoverIntent(deadBase: number): void {
    const m = this.mem;
    const op = Atomics.load(m, deadBase + C.A_INTENT_OP);
    if (op === C.INTENT_NONE) return;
    const deadTid = Atomics.load(m, deadBase + C.A_ID) << 2;
    const s = Atomics.load(m, deadBase + C.A_INTENT_START);
    const n = Atomics.load(m, deadBase + C.A_INTENT_COUNT);
    const rb = this.rec(s);
    const meta = this.meta;
    const pm = this.pageMap;
    const state = Atomics.load(meta, rb + C.R_STATE);
    const mine = (Atomics.load(meta, rb + C.R_OWNER) & C.OWNER_TID_MASK) === deadTid;
    if (op === C.INTENT_CLAIM && state === C.STATE_IN_USE && mine) {
      Atomics.store(m, deadBase + C.A_INTENT_OP, C.INTENT_NONE); // completed claim: the page scan takes it over
      return;
    }
    const held = (x: number): boolean => !this.isSliceFree(x) && !this.coveredByIntent(x, deadBase);
    // the record at s is the dead agent's if it named it, or if slice s is still held and no live page sits there
    if (mine || (held(s) && state !== C.STATE_IN_USE)) {
      Atomics.store(meta, rb + C.R_STATE, 0);
      Atomics.store(meta, rb + C.R_OWNER, 0);
    }
    for (let x = s; x < s + n && x < this.sliceCount; x++) {
      if (!held(x)) continue;
      const v = Atomics.load(pm, x);
      if (v !== 0 && v !== rb) continue; // another page covers x
      if (v === rb) {
        if (Atomics.load(meta, rb + C.R_STATE) === C.STATE_IN_USE) continue; // a live page at s (not the dead agent's)
        Atomics.store(pm, x, 0);
      }
      this.setRun(x, 1);
    }
    Atomics.store(m, deadBase + C.A_INTENT_OP, C.INTENT_NONE);
  }
}

// ---------------------------------------------------------------------------
// Reading a page record (any agent may: these fields are written once, by
// pageInit, before STATE publishes the page; see types.ts "who may touch")
// ---------------------------------------------------------------------------

/** First byte of the page whose record base is `rb`. */
export function pageStart(meta: Int32Array, rb: number): number {
  return meta[rb + C.R_START] >>> 0;
}

/** First slice of the page whose record base is `rb`. */
export function pageSlice(meta: Int32Array, rb: number): number {
  return meta[rb + C.R_START] >>> C.SLICE_SHIFT;
}

/** Bin of a page. */
export function pageBin(meta: Int32Array, rb: number): number {
  return meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK;
}

/** Start of the block containing address q (q inside the page). One division: aligned pages only. */
export function blockStartOf(meta: Int32Array, rb: number, q: number): number {
  const ps = pageStart(meta, rb);
  const bs = meta[rb + C.R_BLOCK_SIZE];
  return ps + Math.floor((q - ps) / bs) * bs;
}

/** Does the block at b (of size bs) have any A bit set (the block is live)? */
export function blockIsLive(aBits: Int32Array, b: number, bs: number, aligned: boolean): boolean {
  if (!aligned) return (aBits[b >>> C.BITMAP_WORD_SHIFT] & (1 << ((b >>> C.GRANULE_SHIFT) & 31))) !== 0;
  for (let g = b; g < b + bs; g += 8) {
    if ((aBits[g >>> C.BITMAP_WORD_SHIFT] & (1 << ((g >>> C.GRANULE_SHIFT) & 31))) !== 0) return true;
  }
  return false;
}
