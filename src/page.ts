/**
 * page.ts — one page: initialisation, lazy extension, collection of the
 * free lists, release of its slices, and the rebuild a reaper performs.
 *
 * All functions here run in the agent that *holds* the page (OWNER is its
 * tid, or tid|HELD): only the holder writes a page's plain fields, so none
 * of this needs Atomics except XTHREAD_FREE, OWNER, STATE and the R bitmap.
 */
import type { Arena } from './arena.js';
import { countCollected, countExtended, ensureTracked } from './counters.js';
import { blockIsLive, blockStartOf, pageBin, pageSlice, pageStart } from './layout.js';
import { fillFreed } from './debug.js';
import { oddInverse, randomKey, shuffled, threadEncoded } from './secure.js';
import { C } from './types.js';

/**
 * The free-list link of free block b of page rb: the next block's address,
 * or 0. Levels < 3 keep it in the block's first word (mimalloc's layout).
 * Secure ≥ 3 keeps it in the block's last word, inside the padding (types.ts
 * LINK_FROM_END), so malloc and free touch one cache line per block, and
 * encodes it with the page's random keys (secure.ts). A write into a free block's link is detected when it is
 * read: a link that decodes outside the page returns -1 (corrupt) and the
 * caller truncates the list there.
 */
export function getLink(a: Arena, rb: number, b: number): number {
  const meta = a.meta;
  if (a.secure < 3) {
    const p = a.mem[b >>> 2] >>> 0;
    // debug mode (all paths generic) checks plain links too: a use-after-free write over a
    // link must not hand out its value
    if (a.debug && p !== 0 && (((p - (meta[rb + C.R_START] >>> 0)) >>> 0) >= (meta[rb + C.R_EXTENT] >>> 0) || (p & 7) !== 0)) return -1;
    return p;
  }
  const raw = a.mem[(b + meta[rb + C.R_BLOCK_SIZE] - C.LINK_FROM_END) >>> 2];
  const p = (Math.imul(raw, meta[rb + C.R_KEYINV]) ^ meta[rb + C.R_KEY1]) >>> 0;
  if (p === 0) return 0; // the encoded NULL
  const start = meta[rb + C.R_START] >>> 0;
  if (((p - start) >>> 0) >= (meta[rb + C.R_EXTENT] >>> 0) || (p & 7) !== 0) return -1;
  return p;
}

/** Store `next` (an address in the page, or 0) as the link of free block b (encoded at secure ≥ 3). */
export function setLink(a: Arena, rb: number, b: number, next: number): void {
  if (a.secure < 3) { a.mem[b >>> 2] = next; return; }
  const meta = a.meta;
  a.mem[(b + meta[rb + C.R_BLOCK_SIZE] - C.LINK_FROM_END) >>> 2] = Math.imul(next ^ meta[rb + C.R_KEY1], meta[rb + C.R_KEY0]);
}

/** Secure ≥ 1: SECURE_GUARD_BYTE in the first SECURE_GUARD_FILL bytes after a page's last block, g0, up to its end (S1). */
export function fillGuard(a: Arena, g0: number, end: number): void {
  const u8 = a.u8;
  for (let i = g0, e = Math.min(g0 + C.SECURE_GUARD_FILL, end); i < e; i++) u8[i] = C.SECURE_GUARD_BYTE;
}

/**
 * Publish a page: every field, then the page map, then STATE last, so that a
 * reaper recovering a half-done claim can tell complete from incomplete.
 */
export function pageInit(
  a: Arena, agentBase: number, s: number, slices: number, bin: number, blockSize: number,
  reserved: number, heap: number, owner: number, origin: number, fresh: boolean,
): void {
  const meta = a.meta;
  const rb = a.rec(s);
  meta[rb + C.R_START] = s * C.SLICE_SIZE;
  meta[rb + C.R_BLOCK_SIZE] = blockSize;
  meta[rb + C.R_RESERVED] = reserved;
  meta[rb + C.R_EXTENT] = blockSize * reserved;
  meta[rb + C.R_CAPACITY] = 0;
  meta[rb + C.R_USED] = 0;
  meta[rb + C.R_FREE] = 0;
  meta[rb + C.R_LOCAL_FREE] = 0;
  meta[rb + C.R_HEAP] = heap;
  meta[rb + C.R_SLICES] = slices;
  meta[rb + C.R_NEXT] = 0;
  meta[rb + C.R_PREV] = 0;
  meta[rb + C.R_FLAGS] = bin | (fresh ? C.F_FRESH : 0);
  meta[rb + C.R_ALIGNED] = 0;
  meta[rb + C.R_COLLECT] = 0;
  meta[rb + C.R_ORIGIN] = origin;
  meta[rb + C.R_ADELTA] = a.fdir[(s >>> C.DIR_SLICES_SHIFT) << 1];
  const k0 = a.secure >= 3 ? randomKey() | 1 : 0;
  meta[rb + C.R_KEY0] = k0;
  meta[rb + C.R_KEYINV] = oddInverse(k0);
  meta[rb + C.R_KEY1] = a.secure >= 3 ? randomKey() : 0;
  meta[rb + C.R_CANARY] = a.padded ? randomKey() : 0; // written before any block of the page exists (I5)
  Atomics.store(meta, rb + C.R_XTHREAD_FREE, 0);
  Atomics.store(meta, rb + C.R_OWNER, owner);
  for (let x = s; x < s + slices; x++) meta[a.pm(x)] = rb;
  if (a.secure > 0) fillGuard(a, s * C.SLICE_SIZE + reserved * blockSize, (s + slices) * C.SLICE_SIZE);
  Atomics.store(meta, rb + C.R_STATE, C.STATE_IN_USE);
  a.clearIntent(agentBase);
}

/**
 * Lazy extension (mimalloc's `mi_page_extend_free`): thread about 4 KiB worth
 * of new blocks onto the empty FREE list, in address order (secure ≥ 2: in a
 * random order). Cost: one store per new block (secure ≥ 3: two, link and
 * canary). Precondition: FREE is empty and CAPACITY < RESERVED.
 */
export function pageExtend(a: Arena, rb: number): void {
  const meta = a.meta;
  const bs = meta[rb + C.R_BLOCK_SIZE];
  const cap = meta[rb + C.R_CAPACITY];
  const res = meta[rb + C.R_RESERVED];
  let k = bs >= C.EXTEND_BYTES ? 1 : (C.EXTEND_BYTES / bs) | 0;
  if (k > res - cap) k = res - cap;
  const first = pageStart(meta, rb) + cap * bs;
  if (a.debug) for (let i = 0; i < k; i++) fillFreed(a, first + i * bs, bs); // checked when handed out
  let head = first;
  if (a.secure >= 2 && k > 1) {
    // secure ≥ 2: the new blocks are threaded in a random order (mimalloc's
    // mi_page_free_list_extend_secure), so addresses are not predictable
    const order = shuffled(k);
    head = first + order[0] * bs;
    if (a.secure >= 3) {
      threadEncoded(a, rb, first, bs, k, order);
    } else {
      const mem = a.mem; // plain links (setLink inlined)
      for (let i = 1; i < k; i++) mem[(first + order[i - 1] * bs) >>> 2] = first + order[i] * bs;
      mem[(first + order[k - 1] * bs) >>> 2] = 0;
    }
  } else if (a.secure >= 3) {
    threadEncoded(a, rb, first, bs, k, null);
  } else {
    const mem = a.mem;
    let b = first;
    for (let i = 1; i < k; i++) {
      const nx = b + bs;
      mem[b >>> 2] = nx;
      b = nx;
    }
    mem[b >>> 2] = 0;
  }
  meta[rb + C.R_FREE] = head;
  meta[rb + C.R_CAPACITY] = cap + k;
  countExtended(a, rb, k); // (counters.ts: the holder extends)
  const f = meta[rb + C.R_FLAGS];
  meta[rb + C.R_FLAGS] = (f & C.F_FRESH) !== 0 && !a.debug ? f | C.F_ZERO : f & ~C.F_ZERO;
}


/**
 * Take the XTHREAD_FREE list (one CAS) and move its blocks to LOCAL_FREE.
 * The taken list is parked in COLLECT first, so a kill mid-way loses nothing:
 * the reaper finishes COLLECT. Per block: clear A (plain, we hold the page)
 * before R (atomic): a concurrent second free of the block then sees either
 * R still set or A already clear (see free.ts). The R bits are cleared per
 * R word, not per block: consecutive blocks of the list that share a word
 * (512 bytes of the page) cost one `Atomics.and` (a list freed in address
 * order: one per 512 bytes; measured ~12 ns per block before).
 */
export function collectXthread(a: Arena, rb: number): void {
  const meta = a.meta;
  let head = Atomics.load(meta, rb + C.R_XTHREAD_FREE);
  if (head === 0) return;
  for (;;) {
    Atomics.store(meta, rb + C.R_COLLECT, head);
    const cur = Atomics.compareExchange(meta, rb + C.R_XTHREAD_FREE, head, 0);
    if (cur === head) break;
    head = cur;
  }
  drainCollect(a, rb);
}

/** Move the blocks parked in COLLECT to LOCAL_FREE (see collectXthread). */
function drainCollect(a: Arena, rb: number): void {
  const meta = a.meta;
  const mem = a.mem;
  ensureTracked(a, rb); // USED changes (counters.ts)
  const used0 = meta[rb + C.R_USED];
  const aligned = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0;
  let q = meta[rb + C.R_COLLECT] >>> 0;
  let guard = meta[rb + C.R_CAPACITY] + 1;
  let rw = -1; // the R word whose bits `rbits` are still to clear (a kill leaves them: pageRebuild clears R bits of free blocks)
  let rbits = 0;
  while (q !== 0 && guard-- > 0) {
    const b = aligned ? blockStartOf(meta, rb, q) : q;
    let next = getLink(a, rb, b);
    if (next < 0) next = 0; // corrupted link (secure ≥ 3): truncate; the rest of the list leaks
    const bit = 1 << ((q >>> C.GRANULE_SHIFT) & 31);
    mem[a.aw(q)] &= ~bit;
    const w = a.rw(q);
    if (w !== rw) {
      if (rbits !== 0) Atomics.and(mem, rw, ~rbits);
      rw = w;
      rbits = 0;
    }
    rbits |= 1 << ((q >>> C.R_GRANULE_SHIFT) & 31);
    meta[rb + C.R_COLLECT] = next;
    setLink(a, rb, b, meta[rb + C.R_LOCAL_FREE] >>> 0);
    meta[rb + C.R_LOCAL_FREE] = b;
    meta[rb + C.R_USED]--;
    q = next;
  }
  if (rbits !== 0) Atomics.and(mem, rw, ~rbits);
  meta[rb + C.R_COLLECT] = 0;
  countCollected(a, used0 - meta[rb + C.R_USED], meta[rb + C.R_BLOCK_SIZE]);
}

/**
 * Full collect: remote frees to LOCAL_FREE, then LOCAL_FREE onto FREE if FREE
 * is empty (mimalloc moves local frees over only when FREE runs out, which
 * keeps the fast path's list short and gives a deterministic heartbeat).
 */
export function pageCollect(a: Arena, rb: number): void {
  const meta = a.meta;
  if (Atomics.load(meta, rb + C.R_XTHREAD_FREE) !== 0) collectXthread(a, rb);
  if (meta[rb + C.R_FREE] === 0 && meta[rb + C.R_LOCAL_FREE] !== 0) {
    meta[rb + C.R_FREE] = meta[rb + C.R_LOCAL_FREE];
    meta[rb + C.R_LOCAL_FREE] = 0;
    meta[rb + C.R_FLAGS] &= ~C.F_ZERO;
  }
}

/** Clear the page's bit in its bin's abandoned bitmap, keeping the count in step. */
export function unmapAbandoned(a: Arena, rb: number): void {
  const bin = pageBin(a.meta, rb);
  if (bin <= 0 || bin > C.BIN_LARGE_MAX) return; // never mapped
  const s = pageSlice(a.meta, rb);
  const idx = a.abw(bin, s);
  const bit = 1 << (s & 31);
  const old = Atomics.and(a.mem, idx, ~bit);
  if ((old & bit) !== 0) Atomics.sub(a.mem, a.hdr + C.H_ABANDONED_COUNT + bin, 1);
}

/**
 * Set bit s of bin's abandoned bitmap ("mapped"): claimers searching that bin
 * will find the page at slice s. The count goes up first, so a kill between
 * the two leaves it too high (a wasted search), never too low (a hidden page).
 */
export function mapAbandoned(a: Arena, s: number, bin: number): void {
  const idx = a.abw(bin, s);
  const bit = 1 << (s & 31);
  Atomics.add(a.mem, a.hdr + C.H_ABANDONED_COUNT + bin, 1);
  const old = Atomics.or(a.mem, idx, bit);
  if ((old & bit) !== 0) Atomics.sub(a.mem, a.hdr + C.H_ABANDONED_COUNT + bin, 1);
}

/**
 * Return an empty page's slices to the arena. Precondition: held by the
 * caller, USED = 0, not in any queue. STATE and OWNER go first so a stale
 * claimer's CAS on OWNER fails; the slices are freed last.
 */
export function pageRelease(a: Arena, agentBase: number, rb: number): void {
  const meta = a.meta;
  const s = pageSlice(meta, rb);
  const n = meta[rb + C.R_SLICES];
  a.announceRelease(agentBase, s, n);
  unmapAbandoned(a, rb);
  Atomics.store(meta, rb + C.R_STATE, 0);
  Atomics.store(meta, rb + C.R_OWNER, 0);
  for (let x = s; x < s + n; x++) meta[a.pm(x)] = 0;
  a.setRun(s, n);
  a.clearIntent(agentBase);
  a.purgeLook = true; // (a resizable ArrayBuffer measures its free tail at the next generic call)
}


/**
 * Rebuild FREE, LOCAL_FREE and USED of a page whose holder was terminated,
 * from the A bitmap, which is the one source of truth: whatever statement the
 * holder died after, a block is live iff its A bit is set. Blocks on
 * XTHREAD_FREE keep A set, so their links are left alone; blocks parked in
 * COLLECT are finished first. The only loss is a block whose A bit was set
 * but whose address never reached the caller.
 */
export function pageRebuild(a: Arena, rb: number): void {
  const meta = a.meta;
  const aligned = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0;
  const bs = meta[rb + C.R_BLOCK_SIZE];
  const cap = meta[rb + C.R_CAPACITY];
  // 0. COLLECT is written before the CAS that takes XTHREAD_FREE: if the
  //    holder died between the two, the parked head is still on XTHREAD_FREE
  //    (the reaper holds the page, so the list only grows at its head)
  const parkedHead = meta[rb + C.R_COLLECT] >>> 0;
  if (parkedHead !== 0) {
    let x = Atomics.load(meta, rb + C.R_XTHREAD_FREE) >>> 0;
    for (let guard = cap + 1; x !== 0 && guard > 0; guard--) {
      if (x === parkedHead) { meta[rb + C.R_COLLECT] = 0; break; }
      x = Math.max(0, getLink(a, rb, aligned ? blockStartOf(meta, rb, x) : x));
    }
  }
  // 1. blocks parked in COLLECT: read the chain before any link is rewritten
  const parked: number[] = [];
  let q = meta[rb + C.R_COLLECT] >>> 0;
  for (let guard = cap + 1; q !== 0 && guard > 0; guard--) {
    parked.push(q);
    const b = aligned ? blockStartOf(meta, rb, q) : q;
    q = Math.max(0, getLink(a, rb, b));
  }
  for (const p of parked) {
    const bit = 1 << ((p >>> C.GRANULE_SHIFT) & 31);
    a.mem[a.aw(p)] &= ~bit;
    Atomics.and(a.mem, a.rw(p), ~(1 << ((p >>> C.R_GRANULE_SHIFT) & 31)));
  }
  meta[rb + C.R_COLLECT] = 0;
  countCollected(a, parked.length, bs); // (remote frees: the freers counted them)
  // 1b. R bits left on blocks whose A bit the collection had cleared (drainCollect clears R
  //     bits a word at a time): such a block is free, its R bit goes (the A bit of its
  //     address is at the granule or 8 bytes on: blocks are 8-aligned, 16 bytes apart at least)
  const mem = a.mem;
  const r0 = meta[rb + C.R_START] >>> 0;
  for (let p = r0, e = r0 + meta[rb + C.R_EXTENT]; p < e; p += 1 << C.R_WORD_SHIFT) {
    const w = a.rw(p);
    let stale = 0;
    for (let v = Atomics.load(mem, w); v !== 0; v &= v - 1) {
      const g = (p + ((31 - Math.clz32(v & -v)) << C.R_GRANULE_SHIFT)) >>> 0;
      if ((mem[a.aw(g)] & (3 << ((g >>> C.GRANULE_SHIFT) & 31))) === 0) stale |= v & -v;
    }
    if (stale !== 0) Atomics.and(mem, w, ~stale);
  }
  // 2. every block below capacity whose A bit is clear is free
  const ps = pageStart(meta, rb);
  let free = 0;
  let used = 0;
  for (let i = cap - 1; i >= 0; i--) {
    const b = ps + i * bs;
    if (blockIsLive(a, b, bs, aligned)) { used++; continue; }
    if (a.debug) fillFreed(a, b, bs);
    setLink(a, rb, b, free);
    free = b;
  }
  meta[rb + C.R_FREE] = free;
  meta[rb + C.R_LOCAL_FREE] = 0;
  meta[rb + C.R_USED] = used;
  meta[rb + C.R_FLAGS] &= ~C.F_ZERO;
}

/**
 * The fast paths' refill: FREE ran dry, so LOCAL_FREE becomes the new FREE
 * (the part of mimalloc's `_mi_page_free_collect` that needs no atomics),
 * unless other agents' frees wait on XTHREAD_FREE, which the generic path
 * collects first. Returns the new FREE head, or 0. Under random frees a
 * page's FREE runs dry every few mallocs, and the generic path costs ~10x
 * this ((b): 4.8% of mallocs went there, 3.0% with the refill). A kill
 * between the stores leaves lists that pageRebuild replaces anyway.
 */
export function takeLocalFree(mem: Int32Array, rb: number): number {
  const b = mem[rb + C.R_LOCAL_FREE];
  if (b === 0 || mem[rb + C.R_XTHREAD_FREE] !== 0) return 0;
  mem[rb + C.R_FREE] = b; // the pop overwrites it, unless its checks send the call to the generic path
  mem[rb + C.R_LOCAL_FREE] = 0;
  mem[rb + C.R_FLAGS] &= ~C.F_ZERO;
  return b;
}
