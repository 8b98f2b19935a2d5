/**
 * allocator.ts — the public class: one agent's entry point, its thin API
 * methods, `create` / `attach`, and the fast paths.
 *
 * ## Fast-path variants
 *
 * The buffer decides which class an agent gets (`forArena`): every agent of
 * a buffer runs the same variant, and each variant's `malloc` and `free`
 * stay monomorphic. The secure ones are in secure-paths.ts, registered
 * into `secureVariants` when index.ts loads it (a subclass in a module this
 * one imported would meet an uninitialised class at load). Whatever a fast path declines goes
 * to the generic paths (malloc.ts `mallocGeneric`, free.ts `freeGeneric`),
 * which serve every variant and every mode.
 *
 * | step                               | Allocator (default) | SecureAllocator (secure 3) | Secure4Allocator (secure 4) | UncheckedAllocator (checkFree: false) |
 * |------------------------------------|:---:|:---:|:---:|:---:|
 * | malloc: size ≤                     | 512 KiB | 1024 − 8 (padding) | 1024 − 8 | 512 KiB |
 * | malloc: direct-table load (> 1 KiB: the bin by clz), pop | ✓ | ✓ (link decoded, checked to stay in the slice) | ✓ (the same) | ✓ |
 * | malloc: refill FREE from LOCAL_FREE| ✓ (63 of 64; the 64th: generic) | ✓ | ✓ | ✓ |
 * | malloc: canary + A-bit test        |   | ✓ | ✓ | |
 * | malloc: set A bit                  | ✓ | ✓ | ✓ | |
 * | malloc: clear the link word        | ✓ | (requested size over the link) | (the same) | ✓ |
 * | malloc: 0xDE to the end of the request's word |   |   | ✓ | |
 * | free: A-bit test (the whole validity check) | ✓ | ✓ | ✓ | |
 * | free: owner, F_ALIGNED/F_FULL test | ✓ | ✓ | ✓ | ✓ |
 * | free: XTHREAD_FREE empty test      | ✓ | ✓ | ✓ | |
 * | free: canary, size word and slack  |   | (deferred: at reuse) | ✓ | |
 * | free: push on LOCAL_FREE           | ✓ | ✓ (link encoded, in the padding) | ✓ (the same) | ✓ |
 * | free: empty page → pageEmptied     | ✓ | ✓ | ✓ | ✓ |
 * | free: full page → unfull; another agent's page → remote free (one call: free.ts freeLiveFast) | ✓ | (generic) | (generic) | (full: inline) |
 * | realloc: in place, or malloc + copy + free fast paths | ✓ | | | |
 *
 * Debug mode and `allocStacks` use the default class with the fast paths
 * switched off (`direct` points every size at the empty record, `fastTid`
 * is −1): every call is generic.
 *
 * Costs (V8 on x64; BENCHMARKS.md): `malloc(n ≤ 512 KiB)` about 10
 * typed-array accesses, no Atomics, no allocation; `free(p)` of a block on
 * a page this agent owns the same (an `Atomics.load` here measured ~4 ns:
 * V8 does not inline it as a plain load). Every other call is generic.
 */
import { Agent, detachAgent, findAgentRecord, reapAgent, recordHandleThread, terminateWorker, watchWorker } from './agents.js';
import { Arena } from './arena.js';
import { goodSizeIn } from './bins.js';
import { checkHeap } from './check.js';
import { AllocStacks } from './debug.js';
import { AllocatorError, ErrorHandler, checkAddress, checkAlignment, checkSize, defaultErrorHandler, show } from './errors.js';
import { freeGeneric, freeLiveFast, usableOf, validate } from './free.js';
import { takeLocalFree } from './page.js';
import { allocAligned, callocSize, mallocGeneric, reallocInPlace, zeroNew } from './malloc.js';
import {
  AllocatorHandle, AllocatorOptions, AttachOptions, WatchableWorker, handleOf, parseAttachOptions, parseCreateOptions, parseLeakReportOptions,
} from './options.js';
import { LeakReport, StatsSnapshot, collectStats, formatStats, leakReportOf, warnLeaks } from './stats.js';
import { pageEmptied, theapCollect, unfull } from './theap.js';
import { C } from './types.js';

/**
 * The `direct` slot of a request 1 KiB < n ≤ LARGE_OBJ_SIZE_MAX:
 * DIRECT_BINS + its bin (bins.ts binOfWsize, its branch for wsize > 8;
 * test/bins.test.js checks they agree). A clz and a few shifts.
 */
function directSlot(n: number): number {
  const w = ((n + 7) >>> C.WORD_SHIFT) - 1;
  const b = 31 - Math.clz32(w);
  return C.DIRECT_BINS + (b < C.FINE_LOG
    ? (b << 2) + ((w >>> (b - 2)) & 3) - 3
    : (C.FINE_LOG << 2) - 3 + ((b - C.FINE_LOG) << 3) + ((w >>> (b - 3)) & 7));
}

/**
 * Copy n bytes from block q to block nb (both 8-aligned). Below 64 bytes
 * 4-byte loads and stores, then the last n % 4 bytes one by one (not a
 * byte more: in padded modes the new block's slack and canary follow);
 * copyWithin costs ~33 ns for 16 bytes on a SharedArrayBuffer, the loop
 * ~16. From 64 bytes copyWithin (~10-15 GB/s). (Not Float64Array: a NaN
 * may be stored with other bits, ECMA-262 SetValueInBuffer.)
 */
function copyBlock(ag: Agent, nb: number, q: number, n: number): void {
  if (n < 64) {
    const mem = ag.mem;
    const words = n >>> 2;
    for (let i = q >>> 2, j = nb >>> 2, e = (q >>> 2) + words; i < e; i++, j++) mem[j] = mem[i];
    const u8 = ag.u8;
    for (let k = words << 2; k < n; k++) u8[nb + k] = u8[q + k];
  } else {
    ag.u8.copyWithin(nb, q, q + n);
  }
}

export class Allocator {
  // --- hot fields (read by the fast paths on every call) ---
  /** @internal pagesFreeDirect of the main theap, or an all-empty table while the fast paths are off. */
  protected direct: Int32Array;
  /** @internal The whole buffer as Int32 words (page records too: `mem[rb + R_*]`); replaced when the buffer grows. */
  protected mem: Int32Array;
  /** @internal Bytes `mem` covers: the fast paths take only addresses below it. */
  protected size: number;
  /** @internal The arena's directories of the A bitmap and the page map, interleaved (arena.ts `fdir`). */
  protected readonly fdir: Int32Array;
  /**
   * @internal The first arena (all of a fixed buffer): its first byte, its
   * length and its A-bitmap and page-map bases, so that its addresses skip
   * the directory (one load on the free fast path; measured +2–5 % on the
   * replays with it). Fixed: the first arena never moves or changes size.
   */
  protected readonly lo0: number;
  protected readonly len0: number;
  protected readonly aBase0: number;
  protected readonly pmBase0: number;
  /** @internal Blocks without padding (not debug, secure < 3): realloc's fast path knows a block's usable size from its page. */
  protected readonly plainBlocks: boolean;
  /** @internal tid while the fast paths are on; −1 (never an OWNER value) after detach, in debug mode or with allocStacks. */
  protected fastTid: number;
  /**
   * @internal Refills of a FREE list by the malloc fast paths (takeLocalFree).
   * Every 64th goes to the generic path instead, whose heartbeat counts
   * retired pages down: otherwise a program that stays on the fast paths
   * would keep the emptied pages of other size classes for ever.
   */
  protected refills = 0;
  /** @internal This agent's state, for the generic paths. */
  protected readonly ag: Agent;
  /** @internal The buffer's layout and views (tests read page records through it). */
  readonly arena: Arena;

  /** Debug mode (the buffer's: every agent agrees). */
  readonly debug: boolean;
  /** This agent's id (≥ 1, distinct per agent, never reused); pass it to `releaseAgent` if the agent is terminated. */
  readonly agentId: number;


  /** @internal Use `Allocator.create()` or `Allocator.attach(handle)`. */
  protected constructor(arena: Arena, onError: ErrorHandler | undefined) {
    if (!(arena instanceof Arena)) {
      throw new TypeError('mimalloc-ts: use Allocator.create(options) or Allocator.attach(handle), not new Allocator()');
    }
    const ag = new Agent(arena, onError ?? defaultErrorHandler);
    this.ag = ag;
    ag.onReleased = () => this.fastPathsOff(); // found released by another agent: its generic paths throw from then on
    this.arena = arena;
    this.mem = arena.mem;
    this.size = arena.size;
    this.fdir = arena.fdir;
    const first = arena.arenas[0];
    this.lo0 = first.first << C.SLICE_SHIFT >>> 0;
    this.len0 = (first.end - first.first) << C.SLICE_SHIFT >>> 0;
    this.aBase0 = arena.fdir[(first.first >>> C.DIR_SLICES_SHIFT) << 1];
    this.pmBase0 = arena.fdir[((first.first >>> C.DIR_SLICES_SHIFT) << 1) + 1];
    this.agentId = ag.id;
    this.fastTid = ag.tid;
    this.direct = ag.theap.direct;
    this.debug = arena.debug;
    this.plainBlocks = !ag.padded;
    arena.onRefresh = () => { ag.syncViews(); this.mem = arena.mem; this.size = arena.size; }; // new views (growth, detach)
    if (this.debug) this.fastPathsOff(); // the fast paths have no room for debug mode's fills
  }

  /** Create an allocator over a new (or the given) buffer; this agent is its first. */
  static create(opts: AllocatorOptions = {}): Allocator {
    const cfg = parseCreateOptions(opts); // every option checked before the buffer is touched
    if (primer.run !== null && !cfg.debug && cfg.allocStacks === 0) primer.run(cfg.secure, !cfg.checkFree && cfg.secure < 3, isShared(cfg.backing.buffer));
    const arena = new Arena(cfg.backing);
    arena.format(cfg.end, cfg.maxEnd, cfg.knownZero, cfg.debug, cfg.secure, !cfg.checkFree && cfg.secure < 3);
    arena.purgeDelay = cfg.purgeDelay;
    const al = Allocator.forArena(arena, cfg.onError);
    if (cfg.allocStacks > 0) al.recordStacks(cfg.allocStacks);
    return al;
  }

  /** In a worker (or any agent): attach to an allocator created elsewhere; this agent gets its own theaps. */
  static attach(handle: AllocatorHandle, opts: AttachOptions = {}): Allocator {
    const cfg = parseAttachOptions(handle, opts);
    const arena = new Arena(cfg.backing);
    arena.validateHeader();
    if (primer.run !== null && !arena.debug && cfg.allocStacks === 0) primer.run(arena.secure, arena.noCheck, isShared(cfg.backing.buffer));
    const al = Allocator.forArena(arena, cfg.onError);
    if (cfg.thread !== undefined) recordHandleThread(al.ag, cfg.thread); // a handle from watch(worker)
    if (cfg.allocStacks > 0) al.recordStacks(cfg.allocStacks);
    return al;
  }

  /** @internal The buffer decides the fast paths: secure 3 and 4 need encoded ones, OPT_NO_CHECK the unchecked ones. */
  private static forArena(arena: Arena, onError: ErrorHandler | undefined): Allocator {
    if (arena.secure >= 3) {
      const make = secureVariants[arena.secure >= 4 ? 1 : 0];
      if (make !== null) return make(arena, onError);
      const al = new Allocator(arena, onError); // (secure-paths.ts not loaded: the generic paths serve every mode)
      al.fastPathsOff();
      return al;
    }
    if (arena.noCheck) return new UncheckedAllocator(arena, onError);
    return new Allocator(arena, onError);
  }

  /** @internal Every call of this agent takes the generic paths from now on. */
  protected fastPathsOff(): void {
    this.fastTid = -1;
    this.direct = new Int32Array(this.direct.length).fill(this.arena.emptyRec);
  }

  /** @internal allocStacks: record the stack of every `every`-th allocation (fast paths off). */
  private recordStacks(every: number): void {
    this.ag.stacks = new AllocStacks(every);
    this.fastPathsOff();
  }

  /** Structured-cloneable description of the allocator, for `Allocator.attach` in another agent. */
  get handle(): AllocatorHandle {
    return handleOf(this.arena);
  }

  // --- views: over the whole buffer, current after any growth (a load and a compare: cache them between growths) ---
  get buffer(): ArrayBufferLike { this.current(); return this.arena.buffer; }
  get u8(): Uint8Array { this.current(); return this.ag.u8; }
  get i32(): Int32Array { this.current(); return this.mem; }
  get u32(): Uint32Array { this.current(); return this.ag.u32; }
  get f64(): Float64Array { this.current(); return this.ag.f64; }
  get view(): DataView { this.current(); return this.ag.view; }

  /** @internal The views cover every arena (another agent may have grown the buffer; a non-shared memory may have detached). */
  private current(): void {
    if (this.arena.stale()) this.arena.refresh();
  }

  /** Replace the error handler; null restores the default. */
  setErrorHandler(fn: ErrorHandler | null): void {
    if (fn !== null && typeof fn !== 'function') throw new TypeError(`setErrorHandler: expected a function or null, got ${show(fn)}`);
    this.ag.errorHandler = fn ?? defaultErrorHandler;
  }

  // =========================================================================
  // the fast paths (see the table above)
  // =========================================================================

  /**
   * Allocate `n` bytes; returns the address, or 0 (NULL) when out of memory.
   * Fast path (n ≤ 1 KiB, a page with a free block): ~10 typed-array
   * accesses, no Atomics. (`typeof` first: a BigInt must reach the generic
   * path's TypeError, not throw V8's at `>>>`; free for a number.)
   */
  malloc(n: number): number {
    if (typeof n === 'number' && (n >>> 0) === n && n <= C.LARGE_OBJ_SIZE_MAX) {
      const mem = this.mem;
      const rb = this.direct[n <= C.SMALL_SIZE_MAX ? (n + 7) >>> 3 : directSlot(n)] & C.REC_BASE_MASK; // (REC_BASE_MASK: see types.ts)
      let b = mem[rb + C.R_FREE] | 0; // (| 0: over a detached buffer, undefined → the generic path, which refreshes)
      if (b === 0 && (++this.refills & 63) !== 0) b = takeLocalFree(mem, rb); // every 64th: generic (retire heartbeat)
      if (b !== 0) {
        mem[rb + C.R_FREE] = mem[b >>> 2];
        mem[rb + C.R_USED] = (mem[rb + C.R_USED] + 1) | 0; // `| 0`: no overflow check
        mem[mem[rb + C.R_ADELTA] + (b >>> C.BITMAP_WORD_SHIFT)] |= 1 << ((b >>> C.GRANULE_SHIFT) & 31);
        mem[b >>> 2] = 0; // do not leak the free-list link
        return b >>> 0;
      }
    }
    return mallocGeneric(this.ag, n);
  }

  /**
   * Free a block; `free(0)` does nothing. Fast path (a block on a page this
   * agent owns): A-bit test, page-map load, owner compare, push; a page
   * that leaves the full queue or empties calls out of line.
   */
  free(p: number): void {
    if (typeof p === 'number' && (p >>> 0) === p && p < this.size && (p & 7) === 0) {
      const mem = this.mem;
      const w = p >>> C.BITMAP_WORD_SHIFT;
      const bit = 1 << ((p >>> C.GRANULE_SHIFT) & 31);
      let ai: number;
      let pb: number;
      if (((p - this.lo0) >>> 0) < this.len0) { // the first arena (all of a fixed buffer): its bases, no directory load
        ai = this.aBase0 + w;
        pb = this.pmBase0;
      } else {
        const d = (p >>> C.DIR_SHIFT) << 1;
        ai = this.fdir[d] + w;
        pb = this.fdir[d + 1];
      }
      const aw = mem[ai];
      if ((aw & bit) !== 0) {
        const rb = mem[pb + (p >>> C.SLICE_SHIFT)] & C.REC_BASE_MASK;
        // No block of a page with XTHREAD_FREE = 0 waits on a remote free (its R bit is
        // clear), so the R test is needed only when it is set: the generic path does it.
        // (OWNER first: a remote free reads only the record's second line.)
        if (mem[rb + C.R_OWNER] === this.fastTid && (mem[rb + C.R_FLAGS] & (C.F_ALIGNED | C.F_FULL | C.F_TRACKED)) === C.F_TRACKED &&
            mem[rb + C.R_XTHREAD_FREE] === 0) {
          mem[ai] = aw ^ bit;
          mem[p >>> 2] = mem[rb + C.R_LOCAL_FREE];
          mem[rb + C.R_LOCAL_FREE] = p;
          const used = (mem[rb + C.R_USED] - 1) | 0;
          mem[rb + C.R_USED] = used;
          if (used === 0) pageEmptied(this.ag, rb);
          return;
        }
        // a full page of this agent, or another agent's page: one call out of line (with those
        // cases inline, V8 stopped inlining free into its callers: +13 instructions per free)
        freeLiveFast(this.ag, rb, p, this.fastTid);
        return;
      }
    }
    freeGeneric(this.ag, p);
  }

  // =========================================================================
  // the rest of the API: argument checks, then the generic paths
  // =========================================================================

  /** Allocate zero-initialised memory for `count` elements of `size` bytes; EOVERFLOW (and 0) if count·size ≥ 2^32. */
  calloc(count: number, size: number): number {
    const total = callocSize(this.ag, checkSize('count', count), checkSize('size', size));
    return total < 0 ? 0 : this.zalloc(total);
  }

  /** Allocate `n` zero-initialised bytes. */
  zalloc(n: number): number {
    const size = checkSize('size', n);
    const p = this.malloc(size);
    if (p !== 0) zeroNew(this.ag, p, size);
    return p;
  }

  /**
   * Allocate `n` bytes at an address that is a multiple of `alignment` (a
   * power of two up to 2^31). Only the returned address is valid for
   * free/realloc/usableSize.
   */
  mallocAligned(n: number, alignment: number): number {
    const size = checkSize('size', n);
    checkAlignment(alignment);
    const ag = this.ag;
    ag.assertAttached();
    if (ag.pendingOverflows.length !== 0) ag.flushOverflows();
    return allocAligned(ag, ag.theap, size, alignment);
  }

  /** Usable bytes of the block at p (its block size, minus the offset of an aligned address; padded modes: the request). */
  usableSize(p: number): number {
    const q = checkAddress(p);
    if (q === 0) return 0;
    const rb = validate(this.ag, q, 'usableSize');
    if (rb === 0) return 0;
    return usableOf(this.ag, rb, q);
  }

  /**
   * Resize: in place when usable/2 ≤ n ≤ usable, or when a block over
   * 512 KiB can grow into the free slices after its page (malloc.ts
   * growHuge); else move (copying min(usable, n) bytes). A failed grow
   * returns 0 and leaves p live and intact.
   */
  realloc(p: number, n: number): number {
    // Fast path (a live block of a page this agent holds, no padding): the free fast path's
    // A-bit test, then in place, or the malloc fast path, a copy and the free fast path.
    if (typeof p === 'number' && typeof n === 'number' && (p >>> 0) === p && (n >>> 0) === n && p < this.size && (p & 7) === 0 && this.plainBlocks) {
      const mem = this.mem;
      const lo = ((p - this.lo0) >>> 0) < this.len0;
      const d = (p >>> C.DIR_SHIFT) << 1;
      if ((mem[(lo ? this.aBase0 : this.fdir[d]) + (p >>> C.BITMAP_WORD_SHIFT)] & (1 << ((p >>> C.GRANULE_SHIFT) & 31))) !== 0) {
        const rb = mem[(lo ? this.pmBase0 : this.fdir[d + 1]) + (p >>> C.SLICE_SHIFT)] & C.REC_BASE_MASK;
        // (an empty XTHREAD_FREE: no block of the page waits on a remote free, so p is live, as in free)
        if (mem[rb + C.R_OWNER] === this.fastTid && (mem[rb + C.R_FLAGS] & C.F_ALIGNED) === 0 && mem[rb + C.R_XTHREAD_FREE] === 0) {
          const bs = mem[rb + C.R_BLOCK_SIZE];
          if (n <= bs && n >= (bs >>> 1) && n !== 0) return p;
          const nb = this.malloc(n);
          if (nb === 0) return 0; // (ENOMEM reported by malloc; p stays live and intact)
          copyBlock(this.ag, nb, p, n < bs ? n : bs);
          this.free(p);
          return nb;
        }
      }
    }
    return this.reallocGeneric(p, n);
  }

  /** @internal realloc after the fast path declined: every mode, every check. */
  private reallocGeneric(p: unknown, n: unknown): number {
    const q = checkAddress(p);
    const size = checkSize('size', n);
    if (q === 0) return this.malloc(size);
    const ag = this.ag;
    ag.assertAttached();
    const rb = validate(ag, q, 'realloc');
    if (rb === 0) return 0;
    const usable = reallocInPlace(ag, rb, q, size);
    if (usable < 0) return usable === -1 ? q : 0;
    const nb = this.malloc(size); // the fast path when it can: reallocs that move are common (ripgrep: 18% of calls)
    if (nb === 0) return 0;
    copyBlock(this.ag, nb, q, Math.min(usable, size));
    this.free(q);
    return nb;
  }

  /** Grow or shrink in place only: returns p if n fits in the block, else 0 (mimalloc's `mi_expand`). */
  expand(p: number, n: number): number {
    const q = checkAddress(p);
    const size = checkSize('size', n);
    if (q === 0) return 0;
    const rb = validate(this.ag, q, 'expand');
    if (rb === 0) return 0;
    return size <= usableOf(this.ag, rb, q) ? q : 0; // padded: the requested size (mimalloc's padding builds never expand)
  }

  /** The usable size a request of n bytes would get. */
  goodSize(n: number): number {
    return goodSizeIn(this.ag.padded, this.ag.secure, checkSize('size', n));
  }

  /**
   * mimalloc's `mi_collect`: collect the cross-agent frees of every page of
   * this agent's theaps and release the pages that became empty (with
   * `force`, also the retired ones). Costs one pass over this agent's pages.
   */
  collect(force = false): void {
    if (typeof force !== 'boolean') throw new TypeError(`collect: force must be a boolean, got ${show(force)}`);
    const ag = this.ag;
    ag.assertAttached();
    for (const th of ag.theaps) if (th) theapCollect(ag, th, force);
    if (ag.pendingOverflows.length !== 0) ag.flushOverflows();
  }

  // =========================================================================
  // agents
  // =========================================================================

  /**
   * This agent is done: every page of its theaps is collected, released if
   * empty, or abandoned for the other agents to reclaim. The object can no
   * longer allocate or free afterwards. Debug mode prints a leak report
   * (console.warn) if this agent's pages still hold live blocks.
   */
  detach(): void {
    const ag = this.ag;
    if (ag.detached) return;
    this.current();
    if (this.debug) warnLeaks(ag); // debug mode's leak report: blocks still live in this agent's pages
    detachAgent(ag);
    this.fastPathsOff();
    if (ag.pendingOverflows.length !== 0) ag.flushOverflows();
  }

  /**
   * Take over the pages of a terminated agent (call it from the Worker's
   * 'exit' event with the agentId the worker reported). Any multi-word update
   * the agent died in is finished or undone; each of its pages is rebuilt
   * from its allocation bitmap and abandoned for reclaim. Returns false if no
   * attached agent has that id (it detached, or was released already).
   * Only for an agent that can no longer run: throws, changing nothing, for
   * this agent's own id and for an agent attached in this thread and not detached.
   */
  releaseAgent(id: number): boolean {
    if (typeof id !== 'number') throw new TypeError(`releaseAgent: id must be a number, got ${show(id)}`);
    const ag = this.ag;
    ag.assertAttached();
    const r = reapAgent(ag, id);
    if (ag.pendingOverflows.length !== 0) ag.flushOverflows();
    return r;
  }

  /** Is an agent with this id attached (alive, or terminated and not yet released)? */
  isAgentAttached(id: number): boolean {
    if (typeof id !== 'number') throw new TypeError(`isAgentAttached: id must be a number, got ${show(id)}`);
    this.current();
    return findAgentRecord(this.arena, id) >= 0;
  }

  /** Release the agents `worker` leaves attached when it ends (Node: at its 'exit'); returns the handle to post to it (README, "Workers that end"). */
  watch(worker: WatchableWorker): AllocatorHandle { return watchWorker(this.ag, worker, this.handle); }

  /** `worker.terminate()`, then release its agents; resolves to how many were released (README, "Workers that end"). */
  terminate(worker: WatchableWorker): Promise<number> { return terminateWorker(this.ag, worker); }

  /**
   * The live blocks in the pages this agent owns (by default), or in every
   * page (`all`), with their sizes (the requested sizes in padded modes),
   * and a printable summary; with `allocStacks`, where each was allocated.
   */
  leakReport(opts: { all?: boolean } = {}): LeakReport {
    const all = parseLeakReportOptions(opts);
    this.current();
    return leakReportOf(this.ag, all);
  }

  // =========================================================================
  // stats, check
  // =========================================================================

  /** Counters: reserved, committed (high-water mark), used (bytes in live blocks), pages, agents… */
  stats(): StatsSnapshot {
    this.current();
    return collectStats(this.arena);
  }

  /** mimalloc-style statistics table (returned, and printed with console.log unless `print` is false). */
  printStats(print = true): string {
    if (typeof print !== 'boolean') throw new TypeError(`printStats: print must be a boolean, got ${show(print)}`);
    const s = formatStats(this.stats());
    if (print) console.log(s);
    return s;
  }

  /** Verify every invariant of every page and bitmap; throws an Error naming the first broken one. Assumes no other agent mutates meanwhile. */
  check(): void {
    this.current();
    checkHeap(this.arena);
  }
}

/**
 * `checkFree: false`: the same fast paths without the allocation-bitmap
 * update and test. Only for measuring what detection costs; see AllocatorOptions.checkFree.
 */
class UncheckedAllocator extends Allocator {
  override malloc(n: number): number {
    if (typeof n === 'number' && (n >>> 0) === n && n <= C.LARGE_OBJ_SIZE_MAX) {
      const mem = this.mem;
      const rb = this.direct[n <= C.SMALL_SIZE_MAX ? (n + 7) >>> 3 : directSlot(n)] & C.REC_BASE_MASK; // (REC_BASE_MASK: see types.ts)
      let b = mem[rb + C.R_FREE] | 0; // (| 0: over a detached buffer, undefined → the generic path, which refreshes)
      if (b === 0 && (++this.refills & 63) !== 0) b = takeLocalFree(mem, rb); // every 64th: generic (retire heartbeat)
      if (b !== 0) {
        mem[rb + C.R_FREE] = mem[b >>> 2];
        mem[rb + C.R_USED] = (mem[rb + C.R_USED] + 1) | 0; // `| 0`: no overflow check
        mem[b >>> 2] = 0;
        return b >>> 0;
      }
    }
    return mallocGeneric(this.ag, n);
  }

  override free(p: number): void {
    if (typeof p === 'number' && (p >>> 0) === p && p < this.size && (p & 7) === 0 && p !== 0) {
      const mem = this.mem;
      const pb = ((p - this.lo0) >>> 0) < this.len0 ? this.pmBase0 : this.fdir[((p >>> C.DIR_SHIFT) << 1) + 1];
      const rb = mem[pb + (p >>> C.SLICE_SHIFT)] & C.REC_BASE_MASK;
      const flags = mem[rb + C.R_FLAGS];
      if (mem[rb + C.R_OWNER] === this.fastTid && (flags & (C.F_ALIGNED | C.F_TRACKED)) === C.F_TRACKED) {
        mem[p >>> 2] = mem[rb + C.R_LOCAL_FREE];
        mem[rb + C.R_LOCAL_FREE] = p;
        const used = (mem[rb + C.R_USED] - 1) | 0;
        mem[rb + C.R_USED] = used;
        if ((flags & C.F_FULL) !== 0) unfull(this.ag, rb);
        if (used === 0) pageEmptied(this.ag, rb);
        return;
      }
    }
    freeGeneric(this.ag, p);
  }
}

/**
 * @internal The secure fast-path classes (level 3, level 4), registered by
 * secure-paths.ts, which index.ts loads: a subclass cannot live in a module
 * this one imports (the import cycle would make `extends` meet an
 * uninitialised class at load).
 */
export const secureVariants: [((a: Arena, e: ErrorHandler | undefined) => Allocator) | null, ((a: Arena, e: ErrorHandler | undefined) => Allocator) | null] = [null, null];

/**
 * @internal prime.ts (loaded by index.ts) sets `run`: it primes V8's type
 * feedback of every path before the first allocator of a mode in a thread.
 */
export const primer: { run: ((secure: number, noCheck: boolean, shared: boolean) => void) | null } = { run: null };

function isShared(b: ArrayBufferLike): boolean {
  return typeof SharedArrayBuffer === 'function' && b instanceof SharedArrayBuffer;
}

export { AllocatorError };
