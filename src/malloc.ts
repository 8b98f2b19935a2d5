/**
 * malloc.ts — generic allocation (mimalloc's `alloc.c` slow paths and
 * `_mi_malloc_generic`): size to bin, page search (theap.ts), the checked
 * pop of a block, singleton (huge) pages, aligned blocks and zeroing.
 *
 * Everything that is not the allocator.ts fast path comes here: requests
 * over SMALL_SIZE_MAX, a bin whose first page has no free block, debug mode,
 * allocation stacks, and every call after a fast-path check failed. Each
 * call first runs the retire heartbeat (theap.ts collectRetired).
 */
import type { Agent } from './agents.js';
import { BIN_BLOCK_SIZE, binOf } from './bins.js';
import { ensureTracked, gain, lose, poolGain, poolLose } from './counters.js';
import { canaryOf, checkFreed, checkPadding, paddingOf, setPadding } from './debug.js';
import { checkSize, hex } from './errors.js';
import { freeGeneric, usableOf } from './free.js';
import { fillGuard, getLink, pageExtend, pageInit, setLink } from './page.js';
import type { Theap } from './page-queue.js';
import { collectRetired, findPage } from './theap.js';
import { C } from './types.js';

/** Largest request the generic paths try (larger ones: ENOMEM): a block of 2^31 bytes minus a slice and the padding. */
const REQUEST_MAX = 2 ** 31 - C.SLICE_SIZE - C.PADDING;

/** `malloc(n)` after the fast path declined: validate, flush owed reports, allocate from the main theap. */
export function mallocGeneric(ag: Agent, n: unknown): number {
  const size = checkSize('size', n);
  ag.assertAttached();
  if (ag.pendingOverflows.length !== 0) ag.flushOverflows(); // before anything changes: a throw loses nothing
  return allocSize(ag, ag.theap, size, true);
}

/** Generic allocation of a validated size in theap `th`; `note`: record its stack (allocStacks). */
export function allocSize(ag: Agent, th: Theap, size: number, note: boolean): number {
  if (size > REQUEST_MAX) return nomem(ag, size);
  // The heartbeat: retired pages age by one per generic call, as in mimalloc (a fast path
  // that refills from localFree sends every 64th refill here, so calls keep coming). It
  // visits the retired pages only: O(retired pages), nothing when there are none. (Aging
  // only every 64th call let pages idle 16 × 64 calls: python-json's replay committed
  // 91 MiB for 41 MiB live; 59 MiB now.)
  if (th.retiredCount !== 0) collectRetired(ag, th, false);
  const need = ag.padded ? size + C.PADDING : size; // debug / secure ≥ 3: room for the padding
  let b: number;
  if (need > C.LARGE_OBJ_SIZE_MAX) {
    b = allocHuge(ag, th, need, 1, size);
  } else {
    const bin = binOf(need);
    b = 0;
    for (let tries = 0; b === 0; tries++) { // popBlock gives 0 only for a corrupted list (secure ≥ 3), now truncated
      const rb = tries < 8 ? findPage(ag, th, bin) : 0;
      if (rb === 0) return nomem(ag, size);
      b = popBlock(ag, rb, size);
    }
  }
  if (note && ag.stacks !== null) ag.stacks.noteAlloc(b, ag.arena);
  return b;
}

/**
 * Pop a block from a page known to have FREE ≠ 0, for a request of `size`
 * bytes; 0 when FREE held no block of the page (secure ≥ 3: reported, and
 * the list dropped). The padding (debug, secure ≥ 3) is written before the allocation
 * bit: a kill between two statements then never leaves a block marked
 * live whose padding is not (check() verifies the padding of every live
 * block, leaked ones included).
 */
function popBlock(ag: Agent, rb: number, size: number): number {
  const a = ag.arena;
  const b = ag.meta[rb + C.R_FREE];
  if ((ag.secure >= 3 || ag.debug) && !popChecks(ag, rb, b)) return 0;
  // (views read after the checks and after any report: a handler may call the allocator, which may grow the buffer)
  let next = getLink(a, rb, b >>> 0);
  if (next < 0) next = corruptLink(ag, rb, b);
  const meta = ag.meta;
  const mem = ag.mem;
  meta[rb + C.R_FREE] = next;
  ensureTracked(a, rb); // (counters.ts)
  meta[rb + C.R_USED]++;
  if (ag.secure < 3) mem[b >>> 2] = 0; // do not leak the link (secure ≥ 3: it is in the padding)
  if (ag.padded) setPadding(a, rb, b >>> 0, size, ag.debug);
  mem[a.aw(b)] |= 1 << ((b >>> C.GRANULE_SHIFT) & 31);
  return b >>> 0;
}

/** Secure ≥ 3: a link outside the page is reported and the list truncated, never followed; returns the new next (0). */
function corruptLink(ag: Agent, rb: number, b: number): number {
  setLink(ag.arena, rb, b >>> 0, 0); // truncated first: reported once, whatever the handler does
  ag.report('EFAULT', `corrupted free list entry: free block ${hex(b)} (size ${ag.meta[rb + C.R_BLOCK_SIZE]}) holds a link outside its page (a buffer overflow into a freed block?)`, b >>> 0);
  return 0;
}

/**
 * Debug and secure ≥ 3: the checks of the block b about to be popped (out
 * of line, so that popBlock stays small for the default modes). False when
 * it must not be handed out now: a corrupted list (truncated, reported), or
 * a handler that allocated meanwhile (pop again).
 */
function popChecks(ag: Agent, rb: number, b: number): boolean {
  const a = ag.arena;
  let meta = ag.meta;
  let mem = ag.mem;
  // The fast path admits a decoded link after a range check only (a division per malloc would
  // cost more than the rest): a corrupted link that still lands inside the page, off a block
  // start, is caught here, before the canary repair below could write into a neighbour; and
  // one that lands on a live block (a copied link, or a stale one) is not handed out twice.
  // Debug mode (every malloc comes here) checks its plain links the same way.
  const off = (b - meta[rb + C.R_START]) >>> 0;
  const bs = meta[rb + C.R_BLOCK_SIZE];
  if (off % bs !== 0 || off / bs >= meta[rb + C.R_CAPACITY] ||
      (mem[a.aw(b)] & (1 << ((b >>> C.GRANULE_SHIFT) & 31))) !== 0) { // I3: not live
    meta[rb + C.R_FREE] = 0; // truncated first: reported once, whatever the handler does
    ag.report('EFAULT', `corrupted free list entry: ${hex(b)} in a page of ${bs}-byte blocks is not a free block of it (a write into a freed block's link?)`, b >>> 0);
    return false;
  }
  if (ag.debug) { // write after free: the block's 0xDF fill changed while it was free
    const o = checkFreed(a, b >>> 0, bs);
    if (o >= 0) {
      ag.report('EFAULT', `write after free: block ${hex(b)} (size ${bs}) was modified at offset ${o} while it was free`, b >>> 0);
      meta = ag.meta;
      mem = ag.mem;
      if (meta[rb + C.R_FREE] !== b) return false; // the handler allocated meanwhile (perhaps b itself): pop again
    }
  }
  if (ag.secure >= 3) { // I5: the free fast path does not check the canary; this is where it is checked
    const pad = ((b >>> 0) + bs - C.PADDING) >>> 0;
    if (mem[pad >>> 2] !== canaryOf(a, rb, pad)) {
      mem[pad >>> 2] = canaryOf(a, rb, pad); // repaired first: reported once, whatever the handler does
      ag.report('EFAULT', `buffer overflow in block ${hex(b)} (size ${bs - C.PADDING}): the canary after it was overwritten (found when the block was to be handed out again; the write was made while it was live, or after it was freed)`, b >>> 0);
      if (ag.meta[rb + C.R_FREE] !== b) return false; // the handler allocated meanwhile (perhaps b itself): pop again
    }
  }
  return true;
}

/**
 * A singleton page of whole slices for one block (> 512 KiB, or alignment
 * > 64 KiB). v3 abandons singleton pages as soon as their block is handed
 * out: whichever agent frees the block takes the page and releases it.
 */
function allocHuge(ag: Agent, th: Theap, size: number, alignSlices: number, request: number): number {
  const a = ag.arena;
  const guard = a.secure > 0 ? C.SECURE_GUARD : 0;
  const slices = Math.max(1, Math.ceil((size + guard) / C.SLICE_SIZE));
  let s = a.claimSlices(ag.agentBase, slices, alignSlices);
  if (s < 0) {
    collectRetired(ag, th, true);
    s = a.claimSlices(ag.agentBase, slices, alignSlices);
  }
  if (s < 0) return nomem(ag, size);
  const fresh = a.takeFresh(s, slices);
  const rb = a.rec(s);
  pageInit(a, ag.agentBase, s, slices, C.BIN_HUGE, slices * C.SLICE_SIZE - guard, 1, th.heapId, ag.tid | C.OWNER_HELD, ag.tid, fresh);
  gain(a, rb);
  pageExtend(a, rb);
  const b = popBlock(ag, rb, request);
  lose(a, rb); // into the pool before anyone can take it (counters.ts)
  poolGain(a, rb);
  Atomics.store(ag.meta, rb + C.R_OWNER, C.OWNER_ABANDONED);
  return b;
}

/**
 * realloc of the block of a singleton page to more than it holds: the page
 * grows into the free slices right after it, when there are enough (a
 * quarter more than asked when that is free too: a buffer grown step by step
 * then grows in place again). No copy, and the new bytes cost nothing until
 * the program writes them: a moved 1 MiB block costs a copy at ~12 GB/s
 * (copyWithin on a SharedArrayBuffer) and the faults of 1 MiB of fresh
 * memory (~0.5 ms per MiB here). dlmalloc extends its top chunk the same
 * way; mimalloc moves. True if the page grew.
 *
 * The page is abandoned (singleton pages are, once their block is out), so
 * it is taken (CAS) while it changes. Kill-safe: the claim is announced as
 * any (intent.ts), the page map of the new slices is written before the
 * page's SLICES, and recoverIntent gives back slices mapped to a page that
 * does not cover them.
 */
function growHuge(ag: Agent, rb: number, size: number): boolean {
  const a = ag.arena;
  let meta = ag.meta;
  const guard = a.secure > 0 ? C.SECURE_GUARD : 0;
  const slices = meta[rb + C.R_SLICES];
  const need = Math.ceil((size + guard) / C.SLICE_SIZE) - slices;
  const s0 = a.sliceOfRecord(rb);
  const e = s0 + slices;
  if (Atomics.compareExchange(meta, rb + C.R_OWNER, C.OWNER_ABANDONED, ag.tid | C.OWNER_HELD) !== C.OWNER_ABANDONED) return false;
  let got = need + (need >>> 2);
  if (!a.claimAt(ag.agentBase, e, got)) {
    got = need;
    if (!a.claimAt(ag.agentBase, e, got)) {
      Atomics.store(meta, rb + C.R_OWNER, C.OWNER_ABANDONED);
      return false;
    }
  }
  a.takeFresh(e, got);
  meta = ag.meta;
  poolLose(a, rb); // its contribution goes with its old size (counters.ts)
  for (let x = e; x < e + got; x++) meta[a.pm(x)] = rb;
  const bs = (slices + got) * C.SLICE_SIZE - guard;
  meta[rb + C.R_BLOCK_SIZE] = bs;
  meta[rb + C.R_EXTENT] = bs;
  if (guard !== 0) fillGuard(a, s0 * C.SLICE_SIZE + bs, (s0 + slices + got) * C.SLICE_SIZE); // (in the new slices: a kill before SLICES gives them back whole)
  meta[rb + C.R_SLICES] = slices + got; // last: until here, recoverIntent gives the slices back
  a.clearIntent(ag.agentBase);
  poolGain(a, rb);
  Atomics.store(meta, rb + C.R_OWNER, C.OWNER_ABANDONED);
  return true;
}

/** calloc's byte count c·s, or −1 after reporting EOVERFLOW (c·s ≥ 2^32). */
export function callocSize(ag: Agent, c: number, s: number): number {
  const total = c * s;
  if (total < 4294967296) return total;
  ag.report('EOVERFLOW', `allocation request is too large (${c} * ${s} bytes)`, 0);
  return -1;
}

/** Out of memory: report ENOMEM (the default handler returns quietly) and return NULL. */
export function nomem(ag: Agent, size: number): number {
  ag.report('ENOMEM', `unable to allocate ${size} bytes`, 0);
  return 0;
}

/**
 * zalloc/calloc after the allocation: zero the block at p unless its page
 * knows it is zero. Blocks from a page whose FREE list is known-zero are
 * zero but for the link word, which malloc cleared (secure ≥ 3: the link is
 * in the padding, past the user's bytes; malloc clears nothing).
 */
export function zeroNew(ag: Agent, p: number, n: number): void {
  const rb = ag.meta[ag.arena.pm(p >>> C.SLICE_SHIFT)];
  if (((ag.meta[rb + C.R_FLAGS] & C.F_ZERO) === 0 && (n > 4 || ag.secure >= 3)) || ag.debug) {
    zero(ag, p, n);
  } else if (ag.secure >= 4) { // a known-zero block but for the request's last word, which the fast malloc's slack store covers
    const u8 = ag.u8;
    for (let i = p + n - ((p + n) & 3); i < p + n; i++) u8[i] = 0;
  }
}

/**
 * Zero n bytes at p (8-aligned). Uint8Array.prototype.fill on a
 * SharedArrayBuffer goes a byte at a time (~2 GB/s here); 8-byte stores
 * reach ~6 GB/s for small blocks and Float64Array.fill ~12 GB/s for large.
 */
function zero(ag: Agent, p: number, n: number): void {
  const f64 = ag.f64;
  const w0 = p >>> 3;
  const w1 = (p + n) >>> 3;
  if (n < 512) {
    for (let i = w0; i < w1; i++) f64[i] = 0;
  } else {
    f64.fill(0, w0, w1);
  }
  const u8 = ag.u8;
  for (let i = w1 * 8, e = p + n; i < e; i++) u8[i] = 0; // the last < 8 bytes (debug: slack fill follows)
}

/**
 * `n` bytes at a multiple of `alignment` (a power of two, validated) in
 * theap th. Sizes whose bin block is a multiple of the alignment are
 * naturally aligned where their page starts on a multiple of the alignment
 * (checked; always so up to a slice, 16 KiB); otherwise the block is
 * over-allocated and the page marked F_ALIGNED; alignments above 64 KiB get
 * a singleton page on an aligned slice.
 */
export function allocAligned(ag: Agent, th: Theap, size: number, alignment: number): number {
  if (alignment <= C.WORD) return allocSize(ag, th, size, true);
  const q = allocAlignedRaw(ag, th, size, alignment);
  if (ag.stacks !== null) ag.stacks.noteAlloc(q, ag.arena);
  return q;
}

function allocAlignedRaw(ag: Agent, th: Theap, size: number, alignment: number): number {
  if (size > REQUEST_MAX) return nomem(ag, size);
  const need = ag.padded ? size + C.PADDING : size;
  const alignSlices = alignment > C.SLICE_SIZE ? alignment / C.SLICE_SIZE : 1; // a singleton page starts on a slice
  if (alignment > C.SMALL_PAGE_SIZE) return allocHuge(ag, th, need, alignSlices, size);
  if (need > C.LARGE_OBJ_SIZE_MAX) return allocHuge(ag, th, need, alignSlices, size);
  const want = Math.max(size, alignment);
  if (!ag.padded && BIN_BLOCK_SIZE[binOf(want)] % alignment === 0) {
    const b = allocSize(ag, th, want, false);
    // aligned if its page starts on a multiple of the alignment: always up to
    // a slice; above, usually (pages of 2^k slices are claimed on a multiple of
    // their size, theap.ts freshPage), not when memory was short
    if (b === 0 || (b & (alignment - 1)) === 0) return b;
    freeGeneric(ag, b);
  }
  // allocSize adds the padding itself; at least MIN_BLOCK bytes from q to the block's end, so
  // that the next block's start has an R granule of its own (types.ts MIN_BLOCK)
  const over = Math.max(size, C.MIN_BLOCK) + alignment - C.WORD;
  if (over + (need - size) > C.LARGE_OBJ_SIZE_MAX) return allocHuge(ag, th, need, alignSlices, size);
  const b = allocSize(ag, th, over, false);
  if (b === 0) return 0;
  const q = Math.ceil(b / alignment) * alignment;
  const rb = ag.meta[ag.arena.pm(b >>> C.SLICE_SHIFT)];
  if (q !== b) { // first: paddingOf(q) finds the block start by it
    ag.meta[rb + C.R_FLAGS] |= C.F_ALIGNED;
    ag.meta[rb + C.R_ALIGNED] = 1; // (the copy in the record's second line: free.ts freeRemote)
  }
  // padded: the padding belongs after `size` bytes at the aligned address (written before the A bit moves there)
  if (ag.padded) setPadding(ag.arena, rb, q, size, ag.debug);
  if (q !== b) {
    const mem = ag.mem;
    mem[ag.arena.aw(b)] &= ~(1 << ((b >>> C.GRANULE_SHIFT) & 31));
    mem[ag.arena.aw(q)] |= 1 << ((q >>> C.GRANULE_SHIFT) & 31);
  }
  return q;
}

/**
 * realloc's decision for the live block q of page rb: −2 if the error
 * handler freed it while an overrun was reported, −1 if it stays (in
 * place when usable/2 ≤ size ≤ usable; padded modes also grow into the
 * block's slack, moving the padding first), else the usable bytes the move
 * copies. Padded modes check the padding either way (the fast free may not
 * have): an overrun is reported before anything changes (a throwing handler
 * leaves the block as it was), then repaired so it is reported once.
 */
export function reallocInPlace(ag: Agent, rb: number, q: number, size: number): number {
  const usable = usableOf(ag, rb, q);
  if (!ag.padded) {
    if (size <= usable && size >= usable / 2 && size > 0) return -1;
    // (to a size over 512 KiB only: a page grows by 16 KiB slices, a small singleton page's
    // block would get more than a bin's quarter of room)
    if (size > usable && size > C.LARGE_OBJ_SIZE_MAX && size <= REQUEST_MAX && (ag.meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK) === C.BIN_HUGE && growHuge(ag, rb, size)) return -1;
    return usable;
  }
  const a = ag.arena;
  const msg = checkPadding(a, rb, q);
  if (msg !== null) {
    setPadding(a, rb, q, usable, false); // repaired first: a free by the handler does not report it again
    ag.report('EFAULT', msg, q); // a throwing handler: the block stays live, as it was but for its padding
    // A handler that returns may have freed the block (it is told its address): then there is
    // nothing left to resize, and realloc returns NULL. (One that frees it and gets the same
    // address back from malloc is not told apart from one that did nothing.)
    const bit = 1 << ((q >>> C.GRANULE_SHIFT) & 31);
    if ((ag.mem[a.aw(q)] & bit) === 0 || (Atomics.load(ag.mem, a.rw(q)) & (1 << ((q >>> C.R_GRANULE_SHIFT) & 31))) !== 0) return -2;
  }
  const room = paddingOf(a, rb, q) - q;
  if (size > room || size < usable / 2 || size === 0) return usable;
  if (size > usable) { // grow in place: the padding moves to the new end first, then the new bytes are filled
    setPadding(a, rb, q, size, false);
    if (ag.debug) ag.u8.fill(C.DEBUG_UNINIT_BYTE, q + usable, q + size);
  }
  // A shrink keeps the block's size (as mimalloc's padded builds do): were the
  // requested size lowered, repeated halvings would keep a block of any size
  // for a few bytes.
  return -1;
}
