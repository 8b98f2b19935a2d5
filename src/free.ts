/**
 * free.ts — generic free (mimalloc's `free.c`): validation of the address,
 * the free of a block on a page this agent holds, the free onto another
 * agent's page, and the usable size of a live block.
 *
 * ## Validation
 *
 * The A bitmap (types.ts) is the complete test: `p` is a live block as
 * returned to the user iff its A bit is set and its R bit is clear. Out of
 * range, unaligned, interior, never-allocated and double frees all fail it;
 * `validate` then says which (EINVAL or EAGAIN) and nothing changes.
 *
 * ## The cross-agent free protocol
 *
 * A block of a page another agent owns is freed in three steps, each a
 * single atomic operation, so that a kill between any two loses at most
 * that one block (check() allows one leaked R bit per reaped agent):
 *
 * 1. `Atomics.or` of the block's R bit. The old bit decides double frees
 *    exactly, across agents: of two racing frees of one block, one sees
 *    the other's bit. The owner still counts the block as used (I2).
 * 2. A CAS push onto the page's XTHREAD_FREE list (the link is written into
 *    the block first; encoded at secure ≥ 3).
 * 3. A load of OWNER: if the page is ABANDONED, claim it (CAS ABANDONED →
 *    tid|HELD) and settle it (abandon.ts), which collects the block. This
 *    is one half of a Dekker pair with settleHeld, which stores ABANDONED
 *    and then loads XTHREAD_FREE: Atomics are sequentially consistent, so
 *    the freer sees ABANDONED or the releasing holder sees the block. No
 *    block stays on a page nobody will look at.
 *
 * The owner takes the list later (page.ts collectXthread: one CAS for the
 * whole list) and, per block, clears A (plain: it holds the page) before R
 * (atomic). A second free racing with that collection therefore sees R
 * still set (step 1 fails: double free) or A already clear (the test after
 * step 1 fails, and it undoes its R bit): never a block freed twice.
 *
 * Reads without holding the page: ALIGNED (F_ALIGNED's copy) and BLOCK_SIZE are
 * written before the page is published (STATE) and ALIGNED is only ever
 * set, before the A bit of the aligned block that makes it matter; a live
 * block (A set) keeps its page in use, so neither changes while the freer
 * looks (types.ts, "who may touch").
 *
 * Cost: a remote free is ~4 Atomics operations (the R-bit OR, a load and a
 * CAS on XTHREAD_FREE, the OWNER load); collecting it costs the owner one
 * `Atomics.and` per block.
 */
import { settleHeld } from './abandon.js';
import type { Agent } from './agents.js';
import { blockIsLive, blockStartOf, pageStart } from './layout.js';
import { checkPadding, fillFreed, paddingOf, repairCanary, requestedSize } from './debug.js';
import { checkAddress, hex } from './errors.js';
import { setLink } from './page.js';
import { countRemoteFree, ensureTracked, gain, poolLose } from './counters.js';
import { pageEmptied, unfull } from './theap.js';
import { C } from './types.js';

/** `free(p)` after the fast path declined: the free, then the reports it owes (a throw then loses nothing). */
export function freeGeneric(ag: Agent, p: unknown): void {
  freeSlow(ag, p);
  if (ag.pendingOverflows.length !== 0) ag.flushOverflows();
}

function freeSlow(ag: Agent, p: unknown): void {
  const q = checkAddress(p);
  if (q === 0) return;
  ag.assertAttached();
  const rb = validate(ag, q, 'free');
  if (rb === 0) return;
  if (ag.stacks !== null) ag.stacks.map.delete(q);
  // Padded modes: an overrun is found here (the canary, and in debug and secure 4
  // the slack), the canary repaired (I5: reported once, not again at reuse), the
  // block freed, and only then reported: a handler that throws, or that calls the
  // allocator (freeing the block itself, say), finds a consistent heap and a
  // block that is free, not one that can never be freed.
  let overrun: string | null = null;
  if (ag.padded) {
    overrun = checkPadding(ag.arena, rb, q);
    if (overrun !== null) repairCanary(ag.arena, rb, q);
  }
  freeLive(ag, rb, q);
  if (overrun !== null) ag.report('EFAULT', `${overrun}; found when it was freed, and freed`, q);
}

/** Free the live block q of page rb, whoever owns the page. */
function freeLive(ag: Agent, rb: number, q: number): void {
  const meta = ag.meta;
  const owner = Atomics.load(meta, rb + C.R_OWNER);
  if (owner === ag.tid) {
    const err = freeHeld(ag, rb, q);
    if (err !== null) { ag.report('EAGAIN', err, q); return; }
    if ((meta[rb + C.R_FLAGS] & C.F_FULL) !== 0) unfull(ag, rb); // a full page has a free block again
    if (meta[rb + C.R_USED] === 0) pageEmptied(ag, rb);
    return;
  }
  if (owner === C.OWNER_ABANDONED && freeAbandoned(ag, rb, q)) return;
  freeRemote(ag, rb, q);
}

/**
 * A free into an abandoned page: take it (false if another agent took it
 * first), free, settle. Out of line: freeLive stays small enough for V8 to
 * inline the common cases into freeGeneric.
 */
function freeAbandoned(ag: Agent, rb: number, q: number): boolean {
  if (Atomics.compareExchange(ag.meta, rb + C.R_OWNER, C.OWNER_ABANDONED, ag.tid | C.OWNER_HELD) !== C.OWNER_ABANDONED) return false;
  poolLose(ag.arena, rb);
  gain(ag.arena, rb);
  const err = freeHeld(ag, rb, q);
  settleHeld(ag, rb, true);
  if (err !== null) ag.report('EAGAIN', err, q);
  return true;
}

/** Free q on a page this agent holds. Returns an error message instead of reporting (the caller settles first). */
function freeHeld(ag: Agent, rb: number, q: number): string | null {
  const meta = ag.meta;
  const a = ag.arena;
  const w = a.aw(q);
  const bit = 1 << ((q >>> C.GRANULE_SHIFT) & 31);
  if (((ag.mem[w] & bit) === 0 && ag.checksFree) || (Atomics.load(ag.mem, a.rw(q)) & (1 << ((q >>> C.R_GRANULE_SHIFT) & 31))) !== 0) {
    return `double free of block ${hex(q)} (size ${meta[rb + C.R_BLOCK_SIZE]})`;
  }
  ensureTracked(a, rb); // (counters.ts)
  ag.mem[w] &= ~bit;
  const b = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0 ? blockStartOf(meta, rb, q) : q;
  if (ag.debug) fillFreed(ag.arena, b, meta[rb + C.R_BLOCK_SIZE]);
  setLink(ag.arena, rb, b, meta[rb + C.R_LOCAL_FREE] >>> 0);
  meta[rb + C.R_LOCAL_FREE] = b;
  meta[rb + C.R_USED]--;
  return null;
}

/**
 * The free fast path's other cases for a live block q of page rb (its A bit
 * is set), out of line. A page this agent holds that is full (a local free
 * moves it back to its bin's queue) is freed here without the generic
 * path's validation; another agent's page gets the remote free after what a
 * generic call checks first (this agent was not released meanwhile, its
 * views are current): ~90 → ~60 ns per remote free. Anything else (aligned
 * blocks, untracked pages, pending remote frees, fast paths off): generic.
 */
export function freeLiveFast(ag: Agent, rb: number, q: number, fastTid: number): void {
  const meta = ag.meta;
  const owner = meta[rb + C.R_OWNER];
  if (fastTid < 0) {
    freeGeneric(ag, q);
  } else if (owner === fastTid) {
    if ((meta[rb + C.R_FLAGS] & (C.F_ALIGNED | C.F_FULL | C.F_TRACKED)) === (C.F_FULL | C.F_TRACKED) && meta[rb + C.R_XTHREAD_FREE] === 0 && freeHeld(ag, rb, q) === null) {
      unfull(ag, rb);
      if (meta[rb + C.R_USED] === 0) pageEmptied(ag, rb);
    } else {
      freeGeneric(ag, q);
    }
  } else {
    ag.assertAttached(false);
    freeRemote(ag, rb, q);
    if (ag.pendingOverflows.length !== 0) ag.flushOverflows();
  }
}

/** Free onto another agent's page (mimalloc's `mi_free_block_mt`): the three steps above. */
function freeRemote(ag: Agent, rb: number, q: number): void {
  const meta = ag.meta;
  const mem = ag.mem;
  const w = ag.arena.aw(q);
  const bit = 1 << ((q >>> C.GRANULE_SHIFT) & 31);
  const rw = ag.arena.rw(q);
  const rbit = 1 << ((q >>> C.R_GRANULE_SHIFT) & 31);
  const old = Atomics.or(mem, rw, rbit); // 1.
  if ((old & rbit) !== 0) {
    ag.report('EAGAIN', `double free of block ${hex(q)} (size ${meta[rb + C.R_BLOCK_SIZE]}): already freed by another agent`, q);
    return;
  }
  if ((mem[w] & bit) === 0 && ag.checksFree) { // the owner collected an earlier free of it meanwhile
    Atomics.and(mem, rw, ~rbit);
    ag.report('EAGAIN', `double free of block ${hex(q)} (size ${meta[rb + C.R_BLOCK_SIZE]})`, q);
    return;
  }
  const b = meta[rb + C.R_ALIGNED] !== 0 ? blockStartOf(meta, rb, q) : q; // (not FLAGS: the line the holder writes at every malloc)
  if (ag.debug) fillFreed(ag.arena, b, meta[rb + C.R_BLOCK_SIZE]);
  for (;;) { // 2.
    const head = Atomics.load(meta, rb + C.R_XTHREAD_FREE);
    setLink(ag.arena, rb, b, head >>> 0);
    if (Atomics.compareExchange(meta, rb + C.R_XTHREAD_FREE, head, q | 0) === head) break;
  }
  countRemoteFree(ag.arena, meta[rb + C.R_BLOCK_SIZE]);
  if (Atomics.load(meta, rb + C.R_OWNER) === C.OWNER_ABANDONED && // 3.
      Atomics.compareExchange(meta, rb + C.R_OWNER, C.OWNER_ABANDONED, ag.tid | C.OWNER_HELD) === C.OWNER_ABANDONED) {
    poolLose(ag.arena, rb);
    gain(ag.arena, rb);
    settleHeld(ag, rb, true);
  }
}

/**
 * The page of a live block at q, or 0 after reporting why q is not one
 * (EINVAL: not a block address; EAGAIN: a block that is already free).
 * `what` names the call in the message.
 */
export function validate(ag: Agent, q: number, what: string): number {
  const a = ag.arena;
  if (a.stale()) a.refresh(); // another agent grew the buffer (q may be in the new arena), or the views were detached
  const meta = ag.meta;
  if (!ag.checksFree && (q & 7) === 0 && q < ag.size) { // checkFree: false keeps no A bits: any address in a page passes
    const rb = meta[a.pm(q >>> C.SLICE_SHIFT)];
    if (rb !== 0 && Atomics.load(meta, rb + C.R_STATE) === C.STATE_IN_USE) return rb;
  }
  if ((q & 7) === 0 && q < ag.size) {
    const bit = 1 << ((q >>> C.GRANULE_SHIFT) & 31);
    if ((meta[a.aw(q)] & bit) !== 0) {
      const rb = meta[a.pm(q >>> C.SLICE_SHIFT)];
      if (rb !== 0 && Atomics.load(meta, rb + C.R_STATE) === C.STATE_IN_USE) {
        if ((Atomics.load(meta, a.rw(q)) & (1 << ((q >>> C.R_GRANULE_SHIFT) & 31))) === 0) return rb;
        ag.report('EAGAIN', `${what}: block ${hex(q)} (size ${meta[rb + C.R_BLOCK_SIZE]}) was already freed by another agent`, q);
        return 0;
      }
    }
    const rb = meta[a.pm(q >>> C.SLICE_SHIFT)];
    if (rb !== 0 && Atomics.load(meta, rb + C.R_STATE) === C.STATE_IN_USE) {
      const bs = meta[rb + C.R_BLOCK_SIZE];
      const ps = pageStart(meta, rb);
      const aligned = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0;
      const b = blockStartOf(meta, rb, q);
      const idx = (b - ps) / bs;
      if (idx < meta[rb + C.R_CAPACITY] && b === q && !blockIsLive(a, b, bs, aligned)) {
        ag.report('EAGAIN', `${what}: double free of block ${hex(q)} (size ${bs}): the block is not allocated`, q);
        return 0;
      }
      ag.report('EINVAL', `${what}: invalid pointer ${hex(q)}: not the start of a live block (inside a block of size ${bs} at ${hex(b)})`, q);
      return 0;
    }
  }
  ag.report('EINVAL', `${what}: invalid pointer ${hex(q)}: not an address of a block of this allocator`, q);
  return 0;
}

/**
 * Usable bytes of the live block at q in page rb (mimalloc's
 * `_mi_usable_size`): the block size minus the offset of an aligned
 * address; padded modes: exactly the size asked for (a broken size word:
 * up to the padding).
 */
export function usableOf(ag: Agent, rb: number, q: number): number {
  if (ag.padded) {
    const r = requestedSize(ag.arena, rb, q);
    return r >= 0 ? r : paddingOf(ag.arena, rb, q) - q;
  }
  const meta = ag.meta;
  const bs = meta[rb + C.R_BLOCK_SIZE];
  if ((meta[rb + C.R_FLAGS] & C.F_ALIGNED) === 0) return bs;
  return blockStartOf(meta, rb, q) + bs - q;
}
