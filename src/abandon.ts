/**
 * abandon.ts — pages without an owner: abandonment, reclaim, and taking over
 * the pages of a terminated agent (mimalloc v3 §5, adapted).
 *
 * Ownership protocol: the OWNER state machine is drawn in types.ts
 * ("Ownership"). Taking an abandoned page is one CAS ABANDONED → tid|HELD.
 *
 * mimalloc v3 folds ownership into bit 0 of `xthread_free` so that a remote
 * free and the claim are one CAS. Here ownership must name *who* holds the
 * page, so that a survivor can take over the pages of a killed agent; the
 * price is one extra load. settleHeld below is one half of a Dekker pair: it
 * stores OWNER = ABANDONED and then loads XTHREAD_FREE; the other half is
 * the remote free (free.ts, step 3), which pushes its block and then loads
 * OWNER. Atomics are sequentially consistent, so at least one of the two
 * sees the other: no block is left on an abandoned page that nobody will
 * look at.
 */
import type { Arena } from './arena.js';
import { pageBin, pageSlice } from './layout.js';
import { mapAbandoned, pageCollect, pageRebuild, pageRelease, unmapAbandoned } from './page.js';
import type { Theap } from './page-queue.js';
import { brokenCanary } from './secure.js';
import { gain, lose, poolGain, poolLose } from './counters.js';
import { C } from './types.js';

/** What abandon.ts needs of an agent. */
export interface AgentContext {
  readonly arena: Arena;
  readonly tid: number;
  readonly agentBase: number;
  /** This agent's theap for a heap, if it has one. */
  theapOf(heapId: number): Theap | null;
  /** Queue an EFAULT report of the overflow out of block b found when its page went back to the buffer. */
  reportReleasedOverflow(b: number, size: number): void;
}

/**
 * Return an empty held page to the buffer; at secure ≥ 3 its canaries are
 * checked first (brokenCanary) and a broken one queued for the agent to
 * report when its current call is complete (reportReleasedOverflow): a
 * throwing handler must not cut short the loops that release pages.
 */
export function releasePage(ag: AgentContext, rb: number): void {
  const a = ag.arena;
  if (a.secure >= 3) {
    const ps = a.meta[rb + C.R_START] >>> 0;
    const bs = a.meta[rb + C.R_BLOCK_SIZE];
    for (let b = brokenCanary(a, rb, 0); b !== 0; b = brokenCanary(a, rb, (b - ps) / bs + 1)) {
      ag.reportReleasedOverflow(b, bs - C.PADDING); // queued: reported when the agent's call is complete
    }
  }
  lose(a, rb);
  pageRelease(a, ag.agentBase, rb);
}

/**
 * The caller holds `rb` (OWNER = tid|HELD) and the page is in no queue:
 * collect it, then free it if empty, take it into the caller's theap if the
 * caller's theap made it (v3's reclaim-on-free into the originating theap),
 * or let it go: "mapped" (findable by its bin) when under 7/8 used, else
 * unmapped (a later free revives it).
 */
export function settleHeld(ag: AgentContext, rb: number, allowReclaim: boolean): void {
  const a = ag.arena;
  const meta = a.meta;
  for (;;) {
    pageCollect(a, rb);
    const used = meta[rb + C.R_USED];
    if (used === 0) {
      releasePage(ag, rb);
      return;
    }
    const bin = pageBin(meta, rb);
    if (allowReclaim && meta[rb + C.R_ORIGIN] === ag.tid && bin !== C.BIN_HUGE) {
      const th = ag.theapOf(meta[rb + C.R_HEAP]);
      if (th !== null) {
        unmapAbandoned(a, rb);
        Atomics.store(meta, rb + C.R_OWNER, ag.tid);
        th.pushBack(meta, bin, rb);
        return;
      }
    }
    const map = bin !== C.BIN_HUGE && used * 8 < meta[rb + C.R_RESERVED] * 7;
    const s = pageSlice(meta, rb);
    // let go first, then map: a claimer that finds the bit always finds the page claimable
    // (mapping first let a claimer clear the bit, fail its CAS and so hide the page)
    lose(a, rb); // into the pool before anyone can take it (counters.ts)
    poolGain(a, rb);
    Atomics.store(meta, rb + C.R_OWNER, C.OWNER_ABANDONED);
    if (map) mapAbandoned(a, s, bin);
    if (Atomics.load(meta, rb + C.R_XTHREAD_FREE) === 0) return;
    // a remote free raced with the release: take the page back and look again
    if (Atomics.compareExchange(meta, rb + C.R_OWNER, C.OWNER_ABANDONED, ag.tid | C.OWNER_HELD) !== C.OWNER_ABANDONED) return;
    poolLose(a, rb);
    gain(a, rb);
  }
}

/**
 * Find a mapped abandoned page of `bin` in `heapId` and take it into theap
 * `th` (mimalloc's `mi_arenas_page_try_find_abandoned`). A set bit is only a
 * hint: the claim is the OWNER CAS, and a page that turns out to be of
 * another bin or heap is let go again. Returns the record base, or 0.
 */
export function reclaimAbandoned(ag: AgentContext, th: Theap, bin: number): number {
  const a = ag.arena;
  const mem = a.mem;
  if (Atomics.load(mem, a.hdr + C.H_ABANDONED_COUNT + bin) <= 0) return 0;
  const meta = a.meta;
  for (let i = 0; i < a.arenaCount; i++) {
    const L = a.arenas[i];
    const base = L.abandoned + bin * L.sliceWords;
    for (let w = 0; w < L.sliceWords; w++) {
      let bits = Atomics.load(mem, base + w);
      while (bits !== 0) {
        const bit = bits & -bits;
        bits ^= bit;
        const old = Atomics.and(mem, base + w, ~bit);
        if ((old & bit) === 0) continue;
        Atomics.sub(mem, a.hdr + C.H_ABANDONED_COUNT + bin, 1);
        const rb = a.rec(L.origin + (w << 5) + (31 - Math.clz32(bit)));
        if (Atomics.compareExchange(meta, rb + C.R_OWNER, C.OWNER_ABANDONED, ag.tid | C.OWNER_HELD) !== C.OWNER_ABANDONED) continue;
        poolLose(a, rb);
        gain(a, rb);
        if (Atomics.load(meta, rb + C.R_STATE) !== C.STATE_IN_USE || pageBin(meta, rb) !== bin || meta[rb + C.R_HEAP] !== th.heapId) {
          settleHeld(ag, rb, false);
          continue;
        }
        pageCollect(a, rb);
        meta[rb + C.R_ORIGIN] = ag.tid;
        Atomics.store(meta, rb + C.R_OWNER, ag.tid);
        return rb;
      }
    }
  }
  return 0;
}

/**
 * Hand every page that names `tid` (queued or held) to the abandoned pool,
 * rebuilding each from the A bitmap first when its holder died (`rebuild`).
 * Cost: one pass over the page records (O(slices)); runs once per agent exit.
 */
export function abandonAllOf(ag: AgentContext, tid: number, rebuild: boolean): void {
  const a = ag.arena;
  const meta = a.meta;
  for (const L of a.arenas) {
    for (let s = L.first; s < L.end; s++) {
      const rb = a.rec(s);
      if (Atomics.load(meta, rb + C.R_STATE) !== C.STATE_IN_USE) continue;
      const slices = meta[rb + C.R_SLICES];
      const o = Atomics.load(meta, rb + C.R_OWNER);
      if ((o & C.OWNER_TID_MASK) === tid && Atomics.compareExchange(meta, rb + C.R_OWNER, o, ag.tid | C.OWNER_HELD) === o) {
        meta[rb + C.R_FLAGS] &= ~C.F_FULL;
        if (rebuild) pageRebuild(a, rb);
        if (tid !== ag.tid) gain(a, rb); // a dead agent's page: its counters went with its record
        settleHeld(ag, rb, false);
      }
      if (slices > 1) s += slices - 1;
    }
  }
}
