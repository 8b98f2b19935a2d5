/**
 * page-queue.ts — a theap's data: one agent's part of one heap (mimalloc v3's
 * `mi_theap_t`, with the queue operations of `page-queue.c`). What a theap
 * *does* (page search, fresh pages, retire, collect) is theap.ts.
 *
 * It owns a page queue per bin (doubly linked through the pages' NEXT/PREV
 * record words, which only the owner touches) and the `pagesFreeDirect`
 * table that makes small `malloc` a table load and a list pop. The queue
 * heads are agent-local: they are a cache of what the buffer says (a page
 * belongs to this theap iff its OWNER is this agent's tid and its HEAP is
 * this heap), which is all a reaper needs to take the pages over.
 */
import type { Arena } from './arena.js';
import { BIN_BLOCK_SIZE, WSIZE_BIN } from './bins.js';
import { ensureTracked } from './counters.js';
import { C } from './types.js';

/** For bins whose blocks are ≤ SMALL_SIZE_MAX: the wsize range [lo, hi] mapping to them. */
const DIRECT_LO = new Int32Array(C.BIN_COUNT).fill(-1);
const DIRECT_HI = new Int32Array(C.BIN_COUNT).fill(-2);
for (let w = 0; w <= C.SMALL_WSIZE_MAX; w++) {
  const b = WSIZE_BIN[w];
  if (DIRECT_LO[b] < 0) DIRECT_LO[b] = w;
  DIRECT_HI[b] = w;
}

/** F_FULL says which of its bin's two queues a page is in (the fast free path tests it). */
function setFull(meta: Int32Array, rb: number, full: boolean): void {
  meta[rb + C.R_FLAGS] = full ? meta[rb + C.R_FLAGS] | C.F_FULL : meta[rb + C.R_FLAGS] & ~C.F_FULL;
}

export class Theap {
  /** Heap id this theap belongs to (0 = the main heap). */
  readonly heapId: number;
  /**
   * Queue heads and tails (record bases; 0 = empty): index `bin` is the
   * bin's queue of pages with (or able to get) free blocks, index
   * `bin + BIN_COUNT` its queue of full pages.
   */
  readonly first = new Int32Array(2 * C.BIN_COUNT);
  readonly last = new Int32Array(2 * C.BIN_COUNT);
  readonly count = new Int32Array(2 * C.BIN_COUNT);
  /**
   * pagesFreeDirect: wsize (0..128) → record base of the first page of that
   * size's bin; then, at DIRECT_BINS + bin, the first page of every bin (the
   * malloc fast path above 1 KiB computes the bin). An empty queue's entries
   * hold `emptyRb`, the record of header slice 0, whose FREE is always 0, so
   * the fast path needs no "initialised?" test.
   */
  readonly direct = new Int32Array(C.DIRECT_BINS + C.BIN_COUNT);
  /**
   * Record bases of this theap's retired pages (emptied, kept a few generic
   * calls; see theap.ts pageEmptied), so the heartbeat visits those pages
   * only, not the queues they sit in. Entries can be stale (the page was
   * used again, abandoned or released meanwhile): the heartbeat checks each
   * against the page's record and drops it.
   */
  retired = new Int32Array(16);
  /**
   * Per bin: how many times the bin's next medium or large page is doubled
   * (0..GROW_MAX; theap.ts freshPage, types.ts GROW_MAX). Raised when the
   * retire heartbeat releases an emptied page of the bin, reset when a claim
   * of the grown size fails.
   */
  readonly grow = new Uint8Array(C.BIN_COUNT);
  /** Entries in use in `retired`. */
  retiredCount = 0;

  /** Append a retired page's record base (no allocation unless the list must grow). */
  pushRetired(rb: number): void {
    if (this.retiredCount === this.retired.length) {
      const grown = new Int32Array(this.retired.length * 2);
      grown.set(this.retired);
      this.retired = grown;
    }
    this.retired[this.retiredCount++] = rb;
  }

  /** Record base of the always-empty record (slice 0's): the `direct` entry of a bin without pages. */
  readonly emptyRb: number;

  constructor(heapId: number, emptyRb: number) {
    this.heapId = heapId;
    this.emptyRb = emptyRb;
    this.direct.fill(emptyRb);
  }

  /**
   * The arena whose counters a page that becomes its bin's direct page joins
   * (counters.ts: the malloc fast path changes its USED, so it must be
   * tracked); null for a theap without counters. A field, not a callback:
   * a closure per agent would be a different call target per allocator, and
   * V8 deoptimizes updateDirect each time it meets another (measured in a
   * cold replay: "wrong call target").
   */
  counters: Arena | null = null;

  /**
   * The direct entries of a bin follow its queue head (its DIRECT_BINS + bin
   * slot, and for a small bin its wsize range); F_DIRECT moves with them.
   */
  private updateDirect(meta: Int32Array, bin: number): void {
    if (bin >= C.BIN_COUNT) return; // a full queue
    const rb = this.first[bin] || this.emptyRb;
    const d = this.direct;
    const old = d[C.DIRECT_BINS + bin];
    if (old === rb) return;
    if (old !== this.emptyRb) meta[old + C.R_FLAGS] &= ~C.F_DIRECT; // (still held: it leaves the head before it leaves the theap)
    if (rb !== this.emptyRb) {
      meta[rb + C.R_FLAGS] |= C.F_DIRECT;
      if (this.counters !== null) ensureTracked(this.counters, rb);
    }
    d[C.DIRECT_BINS + bin] = rb;
    for (let w = DIRECT_LO[bin]; w <= DIRECT_HI[bin]; w++) d[w] = rb; // (none for a bin above SMALL_SIZE_MAX: LO −1, HI −2)
  }

  pushFront(meta: Int32Array, bin: number, rb: number): void {
    const head = this.first[bin];
    meta[rb + C.R_PREV] = 0;
    meta[rb + C.R_NEXT] = head;
    if (head !== 0) meta[head + C.R_PREV] = rb; else this.last[bin] = rb;
    this.first[bin] = rb;
    this.count[bin]++;
    setFull(meta, rb, bin >= C.BIN_COUNT);
    this.updateDirect(meta, bin);
  }

  pushBack(meta: Int32Array, bin: number, rb: number): void {
    const tail = this.last[bin];
    meta[rb + C.R_NEXT] = 0;
    meta[rb + C.R_PREV] = tail;
    if (tail !== 0) meta[tail + C.R_NEXT] = rb; else { this.first[bin] = rb; this.updateDirect(meta, bin); }
    this.last[bin] = rb;
    this.count[bin]++;
    setFull(meta, rb, bin >= C.BIN_COUNT);
  }

  remove(meta: Int32Array, bin: number, rb: number): void {
    const prev = meta[rb + C.R_PREV];
    const next = meta[rb + C.R_NEXT];
    if (prev !== 0) meta[prev + C.R_NEXT] = next; else this.first[bin] = next;
    if (next !== 0) meta[next + C.R_PREV] = prev; else this.last[bin] = prev;
    meta[rb + C.R_NEXT] = 0;
    meta[rb + C.R_PREV] = 0;
    setFull(meta, rb, false);
    this.count[bin]--;
    if (prev === 0) this.updateDirect(meta, bin);
  }

  /** Move a queued page to the front of its queue (it has blocks: the fast path should see it). */
  moveToFront(meta: Int32Array, bin: number, rb: number): void {
    if (this.first[bin] === rb) return;
    this.remove(meta, bin, rb);
    this.pushFront(meta, bin, rb);
  }
}
