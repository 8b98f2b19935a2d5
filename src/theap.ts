/**
 * theap.ts — what a theap does with its pages (mimalloc's `page.c`): find a
 * page with a free block for a bin, take fresh slices for a new page, keep
 * emptied pages a short while (the retire list), and collect.
 *
 * The theap's data (queues, `pagesFreeDirect`, the retired list) is
 * page-queue.ts. Everything here runs in the agent that owns the theap, on
 * generic paths only.
 *
 * Costs: `findPage` walks the bin's queue (pages that turn out full leave
 * it for the full queue, so a walk passes each full page once), then polls
 * the bin's full queue (a plain load per page, at most PAGE_FULL_KEEP),
 * then tries up to 4 abandoned pages, then claims slices (arena.ts). The
 * retire heartbeat is O(retired pages) per generic call.
 */
import { reclaimAbandoned, releasePage, settleHeld } from './abandon.js';
import type { Agent } from './agents.js';
import { BIN_BLOCK_SIZE, BIN_FIRST_PAGE_SLICES, BIN_PAGE_SLICES, BIN_PAGE_SLICES_GUARDED } from './bins.js';
import { pageCollect, pageExtend, pageInit } from './page.js';
import type { Theap } from './page-queue.js';
import { gain } from './counters.js';
import { C } from './types.js';

/**
 * mimalloc's `mi_find_free_page` + `mi_page_queue_find_free_ex`: walk the
 * bin's queue, collecting each page; extend where capacity remains; park
 * full pages (abandon them beyond the retain budget); poll the full pages
 * for remote frees; then reclaim an abandoned page of this bin; then take
 * fresh slices. Returns the record base of a page with FREE ≠ 0, or 0.
 */
export function findPage(ag: Agent, th: Theap, bin: number): number {
  const a = ag.arena;
  const meta = ag.meta;
  let rb = th.first[bin];
  while (rb !== 0) {
    const next = meta[rb + C.R_NEXT];
    if (meta[rb + C.R_FREE] === 0) pageCollect(a, rb);
    if (meta[rb + C.R_FREE] === 0 && meta[rb + C.R_CAPACITY] < meta[rb + C.R_RESERVED]) pageExtend(a, rb);
    if (meta[rb + C.R_FREE] !== 0) {
      meta[rb + C.R_FLAGS] &= ~C.RETIRE_MASK;
      th.moveToFront(meta, bin, rb);
      return rb;
    }
    // full: park it in the bin's full queue, or, past PAGE_FULL_KEEP, abandon it (v3)
    th.remove(meta, bin, rb);
    if (th.count[bin + C.BIN_COUNT] < C.PAGE_FULL_KEEP) {
      th.pushBack(meta, bin + C.BIN_COUNT, rb);
    } else {
      Atomics.store(meta, rb + C.R_OWNER, ag.tid | C.OWNER_HELD);
      settleHeld(ag, rb, false);
    }
    rb = next;
  }
  // poll the full pages for frees other agents made into them (a plain load each)
  rb = th.first[bin + C.BIN_COUNT];
  while (rb !== 0) {
    const next = meta[rb + C.R_NEXT];
    if (meta[rb + C.R_XTHREAD_FREE] !== 0) {
      pageCollect(a, rb);
      if (meta[rb + C.R_FREE] !== 0) {
        th.remove(meta, bin + C.BIN_COUNT, rb);
        th.pushFront(meta, bin, rb);
        return rb;
      }
    }
    rb = next;
  }
  for (let tries = 0; tries < 4; tries++) {
    rb = reclaimAbandoned(ag, th, bin);
    if (rb === 0) break;
    if (meta[rb + C.R_FREE] === 0 && meta[rb + C.R_CAPACITY] < meta[rb + C.R_RESERVED]) pageExtend(a, rb);
    if (meta[rb + C.R_FREE] !== 0) {
      th.pushFront(meta, bin, rb);
      return rb;
    }
    Atomics.store(meta, rb + C.R_OWNER, ag.tid | C.OWNER_HELD);
    settleHeld(ag, rb, false);
  }
  rb = freshPage(ag, th, bin);
  if (rb === 0) return 0;
  pageExtend(a, rb);
  th.pushFront(ag.meta, bin, rb); // (ag.meta, not meta: the claim may have grown the buffer, and a view made before it ends before the new page)
  return rb;
}

/**
 * Claim slices for a new page of `bin`; falls back to a smaller page when
 * memory is short. 0 when none.
 *
 * Page size, by the buffer's high-water mark (a cheap, shared measure of how
 * full it is; H_COMMITTED):
 * - in its last eighth (types.ts TIGHT_SHIFT) the smallest page that serves:
 *   one block's slices, a single slice for small bins (below secure 3; one
 *   slice measured +1.5–2 points over the first-page size in the 64 KiB
 *   rows with four workers): near the end of a bounded buffer every
 *   agent's partly used page per size class is what is lost at the first
 *   NULL (bench:fill), and more claims are the lesser cost;
 * - else the bin's (bins.ts), but a small bin's first page in this theap is
 *   smaller (BIN_FIRST_PAGE_SLICES, below secure 3): most of the ~36 small
 *   bins an agent touches hold a few blocks, and four agents kept 4–7 MiB of
 *   a 64 MiB buffer in such pages at the first NULL;
 * - while the mark is below half the buffer, medium and large pages doubled
 *   th.grow[bin] times (types.ts GROW_MAX: a bin whose emptied pages were
 *   released is claiming again; a bigger page amortises the claim).
 * Small pages sit on a multiple of their size, within a SMALL_PAGE_SIZE
 * boundary (types.ts SECURE_LINK_MASK: at secure ≥ 3 always whole).
 */
function freshPage(ag: Agent, th: Theap, bin: number): number {
  const a = ag.arena;
  const bs = BIN_BLOCK_SIZE[bin];
  const guard = a.secure > 0 ? C.SECURE_GUARD : 0;
  const small = bs <= C.SMALL_OBJ_SIZE_MAX; // (a large bin may have pages of SMALL_PAGE_SLICES too)
  const shrink = small && a.secure < 3; // small pages may be smaller than SMALL_PAGE_SLICES
  const one = Math.max(1, Math.ceil((bs + guard) / C.SLICE_SIZE)); // a page for one block
  const base = a.secure > 0 ? BIN_PAGE_SLICES_GUARDED[bin] : BIN_PAGE_SLICES[bin];
  // measured against the end growth may reach: a buffer that can grow is not short of slices
  const hwm = a.committedSlices();
  const top = a.maxSlices;
  let slices = base;
  if (hwm >= top - (top >>> C.TIGHT_SHIFT)) {
    if (!small || shrink) slices = one;
  } else if (small) {
    if (shrink && th.count[bin] === 0 && th.count[bin + C.BIN_COUNT] === 0) slices = BIN_FIRST_PAGE_SLICES[bin];
  } else if (hwm < top >>> 1) {
    for (let g = th.grow[bin]; g > 0 && slices * 2 <= C.GROW_MAX_SLICES; g--) slices *= 2;
  }
  // pages of a power-of-two size sit on multiples of it, so freed ones leave
  // aligned holes that the next page of that size fits exactly
  let s = a.claimSlices(ag.agentBase, slices, (slices & (slices - 1)) === 0 ? slices : 1);
  if (s < 0 && slices > base) { // memory is short: forget the growth
    th.grow[bin] = 0;
    slices = base;
    s = a.claimSlices(ag.agentBase, slices, (slices & (slices - 1)) === 0 ? slices : 1);
  }
  if (s < 0 && slices > 1 && !small) s = a.claimSlices(ag.agentBase, slices, 1);
  if (s < 0) {
    collectRetired(ag, th, true);
    s = a.claimSlices(ag.agentBase, slices, small ? slices : 1);
  }
  if (s < 0 && slices > one && (!small || shrink)) { // memory is short: a page just big enough for one block
    slices = one;
    s = a.claimSlices(ag.agentBase, slices, 1);
  }
  if (s < 0) return 0;
  const fresh = a.takeFresh(s, slices);
  const rb = a.rec(s);
  const reserved = Math.floor((slices * C.SLICE_SIZE - guard) / bs); // ≥ 1: every page holds a block
  pageInit(a, ag.agentBase, s, slices, bin, bs, reserved, th.heapId, ag.tid, ag.tid, fresh);
  gain(a, rb);
  return rb;
}

/**
 * A local free into a full page (F_FULL): the page leaves its bin's full
 * queue for the back of the bin's queue (v2's `_mi_page_unfull`). O(1);
 * called by the free fast paths, so a bin whose pages hold a few big
 * blocks each does not send every other free to the generic path.
 */
export function unfull(ag: Agent, rb: number): void {
  const meta = ag.meta;
  const th = ag.theapOf(meta[rb + C.R_HEAP]);
  if (th === null) return;
  const bin = meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK;
  th.remove(meta, bin + C.BIN_COUNT, rb);
  th.pushBack(meta, bin, rb);
}

/**
 * A free made a queued page empty (mimalloc's `_mi_page_retire`): keep it a
 * few generic calls (RETIRE_CYCLES_*) on its theap's retired list. Called
 * by the fast free path too: O(1), no Atomics but one load.
 */
export function pageEmptied(ag: Agent, rb: number): void {
  const meta = ag.meta;
  const th = ag.theapOf(meta[rb + C.R_HEAP]);
  const bin = meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK;
  if (th === null || Atomics.load(meta, rb + C.R_XTHREAD_FREE) !== 0) return;
  // Every emptied page is kept a short while (mimalloc keeps only the last
  // page of a bin): a program that frees a batch and allocates the next one
  // then reuses its pages instead of returning and re-claiming slices
  // through the shared, atomic slice bitmap every round, which measured as
  // contention between workers. Expired pages go back on the heartbeat.
  const cycles = BIN_BLOCK_SIZE[bin] <= C.SMALL_OBJ_SIZE_MAX ? C.RETIRE_CYCLES_SMALL : C.RETIRE_CYCLES_OTHER;
  meta[rb + C.R_FLAGS] = (meta[rb + C.R_FLAGS] & ~C.RETIRE_MASK) | (cycles << C.RETIRE_SHIFT);
  const s = ag.arena.sliceOfRecord(rb);
  if (ag.retiredIn[s] !== th.heapId + 1) { // not in th's list yet (an entry elsewhere is dropped as stale)
    ag.retiredIn[s] = th.heapId + 1;
    th.pushRetired(rb);
  }
}

/**
 * The heartbeat: count th's retired pages down by one; release those that
 * expired (all of them when `force`). An entry whose page is no longer a
 * retired page queued in th (used again, full, abandoned, taken by another
 * theap or released) is dropped. Cost: O(entries), no queue walks.
 */
export function collectRetired(ag: Agent, th: Theap, force: boolean): void {
  const meta = ag.meta;
  const list = th.retired;
  const n = th.retiredCount;
  const mine = th.heapId + 1;
  let kept = 0;
  for (let i = 0; i < n; i++) {
    const rb = list[i];
    const s = ag.arena.sliceOfRecord(rb);
    const f = meta[rb + C.R_FLAGS];
    const cycles = (f & C.RETIRE_MASK) >>> C.RETIRE_SHIFT;
    if (ag.retiredIn[s] !== mine) continue; // a later entry in another theap's list owns it
    if (cycles === 0 || meta[rb + C.R_OWNER] !== ag.tid || meta[rb + C.R_HEAP] !== th.heapId ||
        Atomics.load(meta, rb + C.R_STATE) !== C.STATE_IN_USE || (f & C.F_FULL) !== 0) {
      ag.retiredIn[s] = 0; // stale: the page is not a retired page in th's queues any more
      continue;
    }
    if (meta[rb + C.R_USED] !== 0) { // used again
      meta[rb + C.R_FLAGS] = f & ~C.RETIRE_MASK;
      ag.retiredIn[s] = 0;
    } else if (force || cycles === 1) {
      ag.retiredIn[s] = 0;
      const bin = f & C.FLAG_BIN_MASK;
      if (!force && th.grow[bin] < C.GROW_MAX) th.grow[bin]++; // turnover: this bin's next page is bigger
      th.remove(meta, bin, rb);
      releasePage(ag, rb);
    } else {
      meta[rb + C.R_FLAGS] = (f & ~C.RETIRE_MASK) | ((cycles - 1) << C.RETIRE_SHIFT);
      list[kept++] = rb;
    }
  }
  th.retiredCount = kept;
}

/**
 * mimalloc's `mi_collect` for one theap: collect the cross-agent frees of
 * every page and release the pages that became empty (with `force`, also
 * the retired ones; without, the last page of a bin stays). One pass over
 * the theap's pages.
 */
export function theapCollect(ag: Agent, th: Theap, force: boolean): void {
  const a = ag.arena;
  const meta = ag.meta;
  for (let q = 0; q < th.first.length; q++) {
    const bin = q % C.BIN_COUNT;
    let rb = th.first[q];
    while (rb !== 0) {
      const next = meta[rb + C.R_NEXT];
      pageCollect(a, rb);
      if (meta[rb + C.R_USED] === 0 && (force || q !== bin || th.count[bin] > 1)) {
        th.remove(meta, q, rb);
        releasePage(ag, rb);
      } else if (q !== bin && meta[rb + C.R_FREE] !== 0) {
        th.remove(meta, q, rb);
        th.pushBack(meta, bin, rb);
      }
      rb = next;
    }
  }
  if (force) collectRetired(ag, th, true);
}
