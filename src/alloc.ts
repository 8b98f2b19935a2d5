/**
 * alloc.ts — the Allocator: one agent's entry point (mimalloc's `alloc.c`,
 * `free.c`, `page.c` generic paths and the agent-local "thread" state).
 *
 * Hot paths (cost on the development machine, V8 on x64, in comments):
 * - `malloc(n ≤ 1 KiB)`: a type/range test, the `pagesFreeDirect` load, a
 *   free-list pop (refilled from LOCAL_FREE when FREE is empty), the A-bit
 *   set and USED increment — about 10 typed-array accesses, no Atomics, no
 *   allocation.
 * - `free(p)` of a block on a page this agent owns: the A-bit test (which is
 *   also the complete validity check: out of range, unaligned, interior,
 *   double and never-allocated addresses all have a clear A bit), the page
 *   map load, a compare of three words of the page record (owner, flags,
 *   an empty XTHREAD_FREE) and a push onto LOCAL_FREE — no Atomics, no
 *   division. (An `Atomics.load` here measured ~4 ns: V8 does not inline it
 *   as a plain load.)
 * Everything else goes through the generic paths below.
 */
import { AgentContext, abandonAllOf, findAgentRecord, reapAgent, reclaimAbandoned, releasePage, settleHeld } from './abandon.js';
import { Arena } from './arena.js';
import { BIN_BLOCK_SIZE, BIN_PAGE_SLICES, binOf, goodSizeOf } from './bins.js';
import { checkHeap } from './check.js';
import { canaryOf, checkFreed, checkPadding, fillFreed, paddingOf, repairCanary, requestedSize, setPadding } from './debug.js';
import {
  AllocatorError, ErrorCode, ErrorHandler, checkAddress, checkSize, defaultErrorHandler, hex,
} from './errors.js';
import {
  blockIsLive, blockStartOf, getLink, setLink, pageCollect, pageExtend, pageInit, pageStart,
} from './page.js';
import { LiveBlock, StatsSnapshot, collectStats, formatLeaks, formatStats, liveBlocks } from './stats.js';
import { Theap } from './theap.js';
import { C } from './types.js';

/** Options of `Allocator.create`. */
export interface AllocatorOptions {
  /** Bytes to reserve. Default 256 MiB; rounded up to a multiple of 64 KiB; 1 MiB ≤ size ≤ 4 GiB − 64 KiB. Untouched memory costs nothing. */
  size?: number;
  /** Default true: a SharedArrayBuffer that workers can attach to. false: a plain ArrayBuffer (this agent only). */
  shared?: boolean;
  /** Manage this existing buffer instead of creating one (its contents are overwritten). Its byteLength sets the size. */
  buffer?: SharedArrayBuffer | ArrayBuffer;
  /** Error handler `fn(code, message, address)`; default: throw AllocatorError for EINVAL/EAGAIN/EFAULT, return NULL quietly for ENOMEM/EOVERFLOW. */
  onError?: ErrorHandler;
  /**
   * Secure mode level, an integer 0..4 (default 0), mimalloc's ladder: ≥ 1 keeps at least
   * 16 bytes of guard space after the last block of every page, verified by check();
   * ≥ 2 threads new blocks onto free lists in a random order; ≥ 3 encodes free-list
   * links with per-page random keys (a corrupted link: EFAULT, list truncated) and ends
   * every block in a canary + requested size (usableSize = request), checked when the
   * block is handed out again, at a generic-path free, by check() and when its page is
   * returned; it has fast paths of its own. Level 4 = level 3. A property of the buffer.
   */
  secure?: number;
  /**
   * Record the JavaScript stack of every Nth allocation this agent makes: an
   * integer ≥ 0, default 0 (off); 1 records every allocation. `leakReport()`
   * (and debug mode's report at `detach()`) shows the stack with each live
   * block that has one. A debugging aid, per agent (stacks are JavaScript
   * objects, not in the buffer): each recorded allocation costs a stack
   * capture (a few µs), and while it is on this agent's calls take the
   * generic paths. The stack shown is that of the last recorded allocation
   * of the address by this agent.
   */
  allocStacks?: number;
  /**
   * Debug mode (default false, or true when the environment has MIMALLOC_DEBUG=1):
   * fresh blocks filled with 0xD0, freed ones with 0xDF (checked when reused:
   * EFAULT "write after free"), 8 bytes of padding after every block holding a
   * canary and the requested size (checked at free and by check(): EFAULT
   * "buffer overflow"), `usableSize` the exact requested size, and a leak
   * report at detach(). Costs the fast paths: everything takes the generic
   * path. A property of the buffer: agents that attach inherit it.
   */
  debug?: boolean;
  /**
   * Default true. false is a *measuring instrument* for the benchmarks only:
   * the fast paths then skip the allocation bitmap, so an invalid or double
   * free goes undetected and corrupts the heap, and `check()` reports stale
   * bits. It exists to measure what detection costs (BENCHMARKS.md). A
   * property of the buffer (agents that attach inherit it); ignored at
   * secure ≥ 3.
   */
  checkFree?: boolean;
}

/** Options of `Allocator.attach`. */
export interface AttachOptions {
  onError?: ErrorHandler;
  /** As AllocatorOptions.allocStacks, for the attaching agent. */
  allocStacks?: number;
}

/** What a worker needs to attach: structured-cloneable, postMessage it. */
export interface AllocatorHandle {
  readonly kind: 'mimalloc-ts';
  readonly buffer: SharedArrayBuffer;
}

const TWO_31 = 2147483648;

/** MIMALLOC_DEBUG=1 in Node's environment turns debug mode on by default. */
function envDebug(): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const v = env?.MIMALLOC_DEBUG;
  return v !== undefined && v !== '' && v !== '0';
}
const TWO_32 = 4294967296;

/**
 * The fast paths' refill: FREE ran dry, so LOCAL_FREE becomes the new FREE
 * (the part of mimalloc's `_mi_page_free_collect` that needs no atomics),
 * unless other agents' frees wait on XTHREAD_FREE, which the generic path
 * collects first. Returns the new FREE head, or 0. Under random frees a
 * page's FREE runs dry every few mallocs, and the generic path costs ~10x
 * this ((b): 4.8% of mallocs went there, 3.0% with the refill). A kill
 * between the stores leaves lists that pageRebuild replaces anyway.
 */
function takeLocalFree(mem: Int32Array, rb: number): number {
  const b = mem[rb + C.R_LOCAL_FREE];
  if (b === 0 || mem[rb + C.R_XTHREAD_FREE] !== 0) return 0;
  mem[rb + C.R_FREE] = b; // the pop overwrites it, unless its checks send the call to the generic path
  mem[rb + C.R_LOCAL_FREE] = 0;
  mem[rb + C.R_FLAGS] &= ~C.F_ZERO;
  return b;
}

function checkAllocStacks(v: unknown): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number') throw new TypeError(`options.allocStacks must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < 0 || v > TWO_31) throw new RangeError(`options.allocStacks must be an integer ≥ 0, got ${v}`);
  return v;
}

/**
 * This package's directory as it appears in stack frames, read off a stack
 * taken at load (no `import.meta`: the same source is also built as CommonJS).
 */
const OWN_DIR = ((): string => {
  const frame = (new Error().stack ?? '').split('\n').find((l) => /:\d+:\d+\)?\s*$/.test(l)) ?? '';
  const m = /([^\s(]*[\\/])[^\\/]*:\d+:\d+\)?\s*$/.exec(frame);
  return m !== null ? m[1] : '\u0000'; // unknown: keep every frame
})();

/** The frames of a recorded allocation stack outside this package: where the user allocated. */
function userFrames(e: Error): string {
  const lines = (e.stack ?? '').split('\n').slice(1);
  return lines.filter((l) => !l.includes(OWN_DIR)).slice(0, 10).map((l) => l.trim()).join('\n');
}

export class Allocator implements AgentContext {
  // --- hot fields (read by malloc/free on every call) ---
  protected direct: Int32Array;
  protected readonly meta: Int32Array;
  protected readonly mem: Int32Array;
  private readonly aBits: Int32Array;
  private readonly rBits: Int32Array;
  protected readonly pageMap: Int32Array;
  protected readonly size: number;
  /** Word offsets in `mem` of the A bitmap, the R bitmap and the page map (hot paths use `mem` alone). */
  protected readonly aBase: number;
  protected readonly rBase: number;
  protected readonly pmBase: number;
  /** Word index of the page records (record base = recBase + (slice << REC_SHIFT)). */
  private readonly recBase: number;
  /**
   * Per slice: heapId + 1 of the theap whose `retired` list holds the page
   * starting there, or 0. Agent-local (only this agent's theaps retire its
   * pages), so no entry is pushed twice into one list.
   */
  private readonly retiredIn: Int32Array;
  /**
   * Refills of a FREE list by the malloc fast paths (takeLocalFree). Every
   * 64th goes to the generic path instead, whose heartbeat counts retired
   * pages down: otherwise a program that stays on the fast paths would keep
   * the emptied pages of other size classes for ever.
   */
  protected refills = 0;
  /** tid while this agent is attached; -1 after detach, so the fast free path never matches. */
  protected fastTid: number;
  /**
   * Debug mode (the buffer's, so every agent agrees): fills, padding canaries
   * and write-after-free checks; every call takes the generic paths.
   */
  readonly debug: boolean;
  /** Blocks end in padding (canary + requested size): debug mode or secure ≥ 3. */
  protected readonly padded: boolean;
  /** false only in UncheckedAllocator, whose fast paths keep no allocation bits: the generic paths then trust addresses. */
  protected readonly checksFree: boolean = true;
  /** Overflows found when pages were released, to report when the current call is complete: (address, size) pairs. */
  private readonly pendingOverflows: number[] = [];
  /** allocStacks: address → Error captured at its allocation (null: off). */
  private stacks: Map<number, Error> | null = null;
  private stackEvery = 0;
  private stackCountdown = 0;
  private stackPruneAt = 1024;

  readonly arena: Arena;
  /** This agent's id (distinct per agent, never reused). */
  readonly agentId: number;
  /** agentId << 2: the value in OWNER of the pages this agent's theaps own. */
  readonly tid: number;
  /** Word index of this agent's record in the header. */
  readonly agentBase: number;
  private readonly theap: Theap;
  private readonly theaps: (Theap | null)[] = [];
  private errorHandler: ErrorHandler;
  private detached = false;

  private readonly _u8: Uint8Array;
  private readonly _u32: Uint32Array;
  private readonly _f64: Float64Array;
  private readonly _view: DataView;

  protected constructor(arena: Arena, onError: ErrorHandler | undefined) {
    this.arena = arena;
    this.mem = arena.mem;
    this.meta = arena.meta;
    this.aBits = arena.aBits;
    this.rBits = arena.rBits;
    this.pageMap = arena.pageMap;
    this.size = arena.size;
    this.aBase = arena.layout.aBits;
    this.rBase = arena.layout.rBits;
    this.pmBase = arena.layout.pageMap;
    this.recBase = arena.layout.records;
    this.retiredIn = new Int32Array(arena.layout.sliceCount);
    const buf = arena.buffer;
    this._u8 = new Uint8Array(buf, 0, arena.size);
    this._u32 = new Uint32Array(buf, 0, arena.size >>> 2);
    this._f64 = new Float64Array(buf, 0, arena.size >>> 3);
    this._view = new DataView(buf, 0, arena.size);
    this.errorHandler = onError ?? defaultErrorHandler;
    // register this agent: a never-reused id, and a free agent record
    const mem = arena.mem;
    const id = Atomics.add(mem, C.H_NEXT_AGENT_ID, 1) + 1;
    if (id >= 2 ** 29) throw new Error('mimalloc-ts: agent ids exhausted');
    let base = -1;
    for (let i = 0; i < C.MAX_AGENTS; i++) {
      const b = arena.layout.agents + i * C.AGENT_WORDS;
      if (Atomics.compareExchange(mem, b + C.A_ID, 0, id) === 0) { base = b; break; }
    }
    if (base < 0) throw new Error(`mimalloc-ts: more than ${C.MAX_AGENTS} agents attached; detach() or releaseAgent() some first`);
    for (let k = 2; k < C.AGENT_WORDS; k++) Atomics.store(mem, base + k, 0);
    Atomics.store(mem, base + C.A_STATE, C.AGENT_ALIVE);
    this.agentId = id;
    this.tid = id << 2;
    this.fastTid = this.tid;
    this.agentBase = base;
    this.theap = new Theap(0, arena.rec(0));
    this.theaps[0] = this.theap;
    this.direct = this.theap.direct;
    this.debug = arena.debug;
    this.padded = arena.padded;
    if (this.debug) { // the fast paths have no room for padding: never take them
      this.fastTid = -1;
      this.direct = new Int32Array(this.direct.length).fill(arena.rec(0));
    }
  }

  /** Create an allocator over a new (or the given) buffer; this agent is its first. */
  static create(opts: AllocatorOptions = {}): Allocator {
    if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object');
    let buffer: SharedArrayBuffer | ArrayBuffer;
    let knownZero: boolean;
    if (opts.buffer !== undefined) {
      const b = opts.buffer;
      const isSab = typeof SharedArrayBuffer !== 'undefined' && b instanceof SharedArrayBuffer;
      if (!isSab && !(b instanceof ArrayBuffer)) throw new TypeError('options.buffer must be a SharedArrayBuffer or ArrayBuffer');
      if (b.byteLength < C.MIN_SIZE) throw new RangeError(`options.buffer must hold at least ${C.MIN_SIZE} bytes`);
      buffer = b;
      knownZero = false;
    } else {
      let size = opts.size ?? C.DEFAULT_SIZE;
      if (typeof size !== 'number') throw new TypeError('options.size must be a number');
      if (!Number.isInteger(size) || size < C.MIN_SIZE || size > C.MAX_SIZE) {
        throw new RangeError(`options.size must be an integer in [${C.MIN_SIZE}, ${C.MAX_SIZE}], got ${size}`);
      }
      size = Math.ceil(size / C.SLICE_SIZE) * C.SLICE_SIZE;
      const shared = opts.shared ?? true;
      if (shared && typeof SharedArrayBuffer === 'undefined') {
        throw new Error('SharedArrayBuffer is not available here (cross-origin isolation?); pass shared: false');
      }
      buffer = shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size);
      knownZero = true;
    }
    if (opts.secure !== undefined && (!Number.isInteger(opts.secure) || opts.secure < 0 || opts.secure > 4)) {
      throw new RangeError('options.secure must be an integer 0..4');
    }
    if (opts.onError !== undefined && typeof opts.onError !== 'function') throw new TypeError('options.onError must be a function');
    const arena = new Arena(buffer);
    if (arena.headerSlices + 2 > arena.sliceCount) throw new RangeError('buffer too small for the header');
    if (opts.debug !== undefined && typeof opts.debug !== 'boolean') throw new TypeError('options.debug must be a boolean');
    const secure = opts.secure ?? 0;
    arena.format(knownZero, opts.debug ?? envDebug(), secure, opts.checkFree === false && secure < 3);
    const every = checkAllocStacks(opts.allocStacks);
    const al = Allocator.forArena(arena, opts.onError);
    if (every > 0) al.recordStacks(every);
    return al;
  }

  /** The buffer decides the fast paths: secure ≥ 3 needs the encoded ones, OPT_NO_CHECK the unchecked ones. */
  private static forArena(arena: Arena, onError: ErrorHandler | undefined): Allocator {
    if (arena.secure >= 3) return new SecureAllocator(arena, onError);
    if (arena.noCheck) return new UncheckedAllocator(arena, onError);
    return new Allocator(arena, onError);
  }

  /** In a worker (or any agent): attach to an allocator created elsewhere; this agent gets its own theaps. */
  static attach(handle: AllocatorHandle, opts: AttachOptions = {}): Allocator {
    if (handle === null || typeof handle !== 'object' || !(handle.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError('attach: expected the handle of an allocator (allocator.handle)');
    }
    if (opts === null || typeof opts !== 'object') throw new TypeError('options must be an object');
    const every = checkAllocStacks(opts.allocStacks);
    const arena = new Arena(handle.buffer);
    arena.validateHeader();
    const al = Allocator.forArena(arena, opts.onError);
    if (every > 0) al.recordStacks(every);
    return al;
  }

  /** allocStacks: record the stack of every `every`-th allocation (fast paths off). */
  private recordStacks(every: number): void {
    this.stacks = new Map();
    this.stackEvery = every;
    this.stackCountdown = 1;
    this.fastTid = -1;
    this.direct = new Int32Array(this.direct.length).fill(this.arena.rec(0));
  }

  /**
   * Drop the stacks of blocks no longer live (freed by other agents, which
   * cannot reach this map): keeps the map near the number of live sampled
   * blocks. Amortised: the threshold doubles with what survives.
   */
  private pruneStacks(): void {
    const st = this.stacks as Map<number, Error>;
    const aBits = this.aBits;
    for (const addr of st.keys()) {
      if ((aBits[addr >>> C.BITMAP_WORD_SHIFT] & (1 << ((addr >>> C.GRANULE_SHIFT) & 31))) === 0) st.delete(addr);
    }
    this.stackPruneAt = Math.max(1024, 2 * st.size);
  }

  /** A block was handed out at p: record its stack (sampled), or forget a stale one. */
  private noteAlloc(p: number): void {
    const st = this.stacks;
    if (st === null || p === 0) return;
    if (--this.stackCountdown <= 0) {
      this.stackCountdown = this.stackEvery;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = limit + 8; // room for our own frames, dropped when printed
      st.set(p, new Error('allocated')); // formatted only if a report prints it
      Error.stackTraceLimit = limit;
      if (st.size > this.stackPruneAt) this.pruneStacks();
    } else if (st.size !== 0) {
      st.delete(p);
    }
  }

  /** Structured-cloneable description of the allocator, for `Allocator.attach` in another agent. */
  get handle(): AllocatorHandle {
    const b = this.arena.buffer;
    if (!(typeof SharedArrayBuffer !== 'undefined' && b instanceof SharedArrayBuffer)) {
      throw new Error('handle: this allocator lives in an ArrayBuffer, which other agents cannot share (create it with shared: true)');
    }
    return { kind: 'mimalloc-ts', buffer: b };
  }

  // --- views: over the whole buffer, always current ---
  get buffer(): ArrayBufferLike { return this.arena.buffer; }
  get u8(): Uint8Array { return this._u8; }
  get i32(): Int32Array { return this.mem; }
  get u32(): Uint32Array { return this._u32; }
  get f64(): Float64Array { return this._f64; }
  get view(): DataView { return this._view; }

  setErrorHandler(fn: ErrorHandler | null): void {
    if (fn !== null && typeof fn !== 'function') throw new TypeError('setErrorHandler: expected a function or null');
    this.errorHandler = fn ?? defaultErrorHandler;
  }

  theapOf(heapId: number): Theap | null {
    return this.theaps[heapId] ?? null;
  }

  // =========================================================================
  // malloc
  // =========================================================================

  /**
   * Allocate `n` bytes; returns the address, or 0 (NULL) when out of memory.
   * Fast path (n ≤ 1 KiB, a page with a free block): ~10 typed-array
   * accesses, no Atomics.
   */
  malloc(n: number): number {
    if ((n >>> 0) === n && n <= C.SMALL_SIZE_MAX) {
      const mem = this.mem;
      const rb = this.direct[(n + 7) >>> 3] & C.REC_BASE_MASK; // (REC_BASE_MASK: see types.ts)
      let b = mem[rb + C.R_FREE];
      if (b === 0 && (++this.refills & 63) !== 0) b = takeLocalFree(mem, rb); // every 64th: generic (retire heartbeat)
      if (b !== 0) {
        mem[rb + C.R_FREE] = mem[b >>> 2];
        mem[rb + C.R_USED] = (mem[rb + C.R_USED] + 1) | 0; // `| 0`: no overflow check
        mem[this.aBase + (b >>> C.BITMAP_WORD_SHIFT)] |= 1 << ((b >>> C.GRANULE_SHIFT) & 31);
        mem[b >>> 2] = 0; // do not leak the free-list link
        return b >>> 0;
      }
    }
    return this.mallocGeneric(n);
  }

  protected mallocGeneric(n: unknown): number {
    const size = checkSize('size', n);
    this.assertAttached();
    if (this.pendingOverflows.length !== 0) this.flushOverflows(); // before anything changes: a throw loses nothing
    return this.allocSize(this.theap, size);
  }

  /** Generic allocation of a validated size in theap `th`. */
  private allocSize(th: Theap, size: number, note = true): number {
    if (size > TWO_31 - C.SLICE_SIZE - C.PADDING) return this.nomem(size);
    // The heartbeat: retired pages age by one per generic call, as in mimalloc (a fast path
    // that refills from localFree sends every 64th refill here, so calls keep coming). It
    // visits the retired pages only: O(retired pages), nothing when there are none. (Aging
    // only every 64th call let pages idle 16 × 64 calls: python-json's replay committed
    // 91 MiB for 41 MiB live; 59 MiB now.)
    if (th.retiredCount !== 0) this.collectRetired(th, false);
    const need = this.padded ? size + C.PADDING : size; // debug / secure ≥ 3: room for the padding
    let b: number;
    if (need > C.LARGE_OBJ_SIZE_MAX) {
      b = this.allocHuge(th, need, 1, size);
    } else {
      const bin = binOf(need);
      b = 0;
      for (let tries = 0; b === 0; tries++) { // popBlock gives 0 only for a corrupted list (secure ≥ 3), now truncated
        const rb = tries < 8 ? this.findPage(th, bin) : 0;
        if (rb === 0) return this.nomem(size);
        b = this.popBlock(rb, size);
      }
    }
    if (note && this.stacks !== null) this.noteAlloc(b);
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
  private popBlock(rb: number, size: number): number {
    const meta = this.meta;
    const mem = this.mem;
    const b = meta[rb + C.R_FREE];
    if (this.arena.secure >= 3 || this.debug) {
      // The fast path admits a decoded link after a range check only (a division per malloc would
      // cost more than the rest): a corrupted link that still lands inside the page, off a block
      // start, is caught here, before the canary repair below could write into a neighbour; and
      // one that lands on a live block (a copied link, or a stale one) is not handed out twice.
      // Debug mode (every malloc comes here) checks its plain links the same way.
      const off = (b - meta[rb + C.R_START]) >>> 0;
      const bs = meta[rb + C.R_BLOCK_SIZE];
      if (off % bs !== 0 || off / bs >= meta[rb + C.R_CAPACITY] ||
          (this.aBits[b >>> C.BITMAP_WORD_SHIFT] & (1 << ((b >>> C.GRANULE_SHIFT) & 31))) !== 0) { // I3: not live
        meta[rb + C.R_FREE] = 0; // truncated first: reported once, whatever the handler does
        this.report('EFAULT', `corrupted free list entry: ${hex(b)} in a page of ${bs}-byte blocks is not a free block of it (a write into a freed block's link?)`, b >>> 0);
        return 0;
      }
    }
    if (this.debug) { // write after free: the block's 0xDF fill changed while it was free
      const off = checkFreed(this.arena, b >>> 0, meta[rb + C.R_BLOCK_SIZE]);
      if (off >= 0) {
        this.report('EFAULT', `write after free: block ${hex(b)} (size ${meta[rb + C.R_BLOCK_SIZE]}) was modified at offset ${off} while it was free`, b >>> 0);
      }
    }
    if (this.arena.secure >= 3) { // I5: the free fast path does not check the canary; this is where it is checked
      const pad = ((b >>> 0) + meta[rb + C.R_BLOCK_SIZE] - C.PADDING) >>> 0;
      if (mem[pad >>> 2] !== canaryOf(this.arena, rb, pad)) {
        mem[pad >>> 2] = canaryOf(this.arena, rb, pad); // repaired first: reported once, whatever the handler does
        this.report('EFAULT', `buffer overflow in block ${hex(b)} (size ${meta[rb + C.R_BLOCK_SIZE] - C.PADDING}): the canary after it was overwritten (found when the block was to be handed out again; the write was made while it was live, or after it was freed)`, b >>> 0);
      }
    }
    let next = getLink(this.arena, rb, b >>> 0);
    if (next < 0) { // secure ≥ 3: a corrupted link is reported and the list truncated, never followed
      setLink(this.arena, rb, b >>> 0, 0); // truncated first: reported once, whatever the handler does
      this.report('EFAULT', `corrupted free list entry: free block ${hex(b)} (size ${meta[rb + C.R_BLOCK_SIZE]}) holds a link outside its page (a buffer overflow into a freed block?)`, b >>> 0);
      next = 0;
    }
    meta[rb + C.R_FREE] = next;
    meta[rb + C.R_USED]++;
    if (this.arena.secure < 3) mem[b >>> 2] = 0; // do not leak the link (secure ≥ 3: it is in the padding)
    if (this.padded) setPadding(this.arena, rb, b >>> 0, size, this.debug);
    this.aBits[b >>> C.BITMAP_WORD_SHIFT] |= 1 << ((b >>> C.GRANULE_SHIFT) & 31);
    return b >>> 0;
  }

  /**
   * mimalloc's `mi_find_free_page` + `mi_page_queue_find_free_ex`: walk the
   * bin's queue, collecting each page; extend where capacity remains; abandon
   * full pages beyond the retain budget; then reclaim an abandoned page of
   * this bin; then take fresh slices.
   */
  private findPage(th: Theap, bin: number): number {
    const a = this.arena;
    const meta = this.meta;
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
        Atomics.store(meta, rb + C.R_OWNER, this.tid | C.OWNER_HELD);
        settleHeld(this, rb, false);
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
      rb = reclaimAbandoned(this, th, bin);
      if (rb === 0) break;
      if (meta[rb + C.R_FREE] === 0 && meta[rb + C.R_CAPACITY] < meta[rb + C.R_RESERVED]) pageExtend(a, rb);
      if (meta[rb + C.R_FREE] !== 0) {
        th.pushFront(meta, bin, rb);
        return rb;
      }
      Atomics.store(meta, rb + C.R_OWNER, this.tid | C.OWNER_HELD);
      settleHeld(this, rb, false);
    }
    rb = this.freshPage(th, bin);
    if (rb === 0) return 0;
    pageExtend(a, rb);
    th.pushFront(meta, bin, rb);
    return rb;
  }

  /** Claim slices for a new page of `bin`; falls back to a smaller page when memory is short. */
  private freshPage(th: Theap, bin: number): number {
    const a = this.arena;
    const bs = BIN_BLOCK_SIZE[bin];
    let slices = BIN_PAGE_SLICES[bin];
    // medium and large pages sit on multiples of their size, so freed ones
    // leave aligned holes that the next page of that kind fits exactly
    let s = a.claimSlices(this.agentBase, slices, slices);
    if (s < 0 && slices > 1) s = a.claimSlices(this.agentBase, slices, 1);
    if (s < 0) {
      this.collectRetired(th, true);
      s = a.claimSlices(this.agentBase, slices, 1);
    }
    const guard = a.secure > 0 ? C.SECURE_GUARD : 0;
    if (s < 0 && slices > 1) { // memory is short: a page just big enough for one block
      slices = Math.max(1, Math.ceil((bs + guard) / C.SLICE_SIZE));
      s = a.claimSlices(this.agentBase, slices, 1);
    }
    if (s < 0) return 0;
    const fresh = a.takeFresh(s, slices);
    const rb = a.rec(s);
    const reserved = Math.floor((slices * C.SLICE_SIZE - guard) / bs); // ≥ 1: every bin's pages hold 6+ blocks
    pageInit(a, this.agentBase, s, slices, bin, bs, reserved, th.heapId, this.tid, this.tid, fresh);
    return rb;
  }

  /**
   * A singleton page of whole slices for one block (> 512 KiB, or alignment
   * > 64 KiB). v3 abandons singleton pages as soon as their block is handed
   * out: whichever agent frees the block takes the page and releases it.
   */
  private allocHuge(th: Theap, size: number, alignSlices: number, request: number): number {
    const a = this.arena;
    const guard = a.secure > 0 ? C.SECURE_GUARD : 0;
    const slices = Math.max(1, Math.ceil((size + guard) / C.SLICE_SIZE));
    let s = a.claimSlices(this.agentBase, slices, alignSlices);
    if (s < 0) {
      this.collectRetired(th, true);
      s = a.claimSlices(this.agentBase, slices, alignSlices);
    }
    if (s < 0) return this.nomem(size);
    const fresh = a.takeFresh(s, slices);
    const rb = a.rec(s);
    pageInit(a, this.agentBase, s, slices, C.BIN_HUGE, slices * C.SLICE_SIZE - guard, 1, th.heapId, this.tid | C.OWNER_HELD, this.tid, fresh);
    pageExtend(a, rb);
    const b = this.popBlock(rb, request);
    Atomics.store(this.meta, rb + C.R_OWNER, C.OWNER_ABANDONED);
    return b;
  }

  private nomem(size: number): number {
    this.report('ENOMEM', `unable to allocate ${size} bytes`, 0);
    return 0;
  }

  /** Allocate zero-initialised memory for `count` elements of `size` bytes. */
  calloc(count: number, size: number): number {
    const c = checkSize('count', count);
    const s = checkSize('size', size);
    const total = c * s;
    if (total >= TWO_32) {
      this.report('EOVERFLOW', `allocation request is too large (${c} * ${s} bytes)`, 0);
      return 0;
    }
    return this.zallocSize(this.theap, total);
  }

  /** Allocate `n` zero-initialised bytes. */
  zalloc(n: number): number {
    return this.zallocSize(this.theap, checkSize('size', n));
  }

  private zallocSize(th: Theap, n: number): number {
    const p = th === this.theap ? this.malloc(n) : this.allocSize(th, n);
    if (p === 0) return 0;
    // blocks from a page whose FREE list is known-zero are zero but for the link word, which malloc
    // cleared (secure ≥ 3: the link is in the padding, past the user's bytes; malloc clears nothing)
    const rb = this.pageMap[p >>> C.SLICE_SHIFT];
    if (((this.meta[rb + C.R_FLAGS] & C.F_ZERO) === 0 && (n > 4 || this.arena.secure >= 3)) || this.debug) this.zero(p, n);
    return p;
  }

  /**
   * Zero n bytes at p (8-aligned). Uint8Array.prototype.fill on a
   * SharedArrayBuffer goes a byte at a time (~2 GB/s here); 8-byte stores
   * reach ~6 GB/s for small blocks and Float64Array.fill ~12 GB/s for large.
   */
  private zero(p: number, n: number): void {
    const f64 = this._f64;
    const w0 = p >>> 3;
    const w1 = (p + n) >>> 3;
    if (n < 512) {
      for (let i = w0; i < w1; i++) f64[i] = 0;
    } else {
      f64.fill(0, w0, w1);
    }
    const u8 = this._u8;
    for (let i = w1 * 8, e = p + n; i < e; i++) u8[i] = 0; // the last < 8 bytes (debug: slack fill follows)
  }

  /**
   * Allocate `n` bytes at an address that is a multiple of `alignment` (a
   * power of two). Sizes whose bin block is a multiple of the alignment are
   * naturally aligned (pages start on 64 KiB); otherwise the block is
   * over-allocated and the page marked F_ALIGNED; alignments above 64 KiB get
   * a singleton page on an aligned slice.
   */
  mallocAligned(n: number, alignment: number): number {
    const size = checkSize('size', n);
    if (typeof alignment !== 'number') throw new TypeError(`alignment must be a number, got ${typeof alignment}`);
    if (!Number.isInteger(alignment) || alignment < 1 || alignment > TWO_31 || (alignment & (alignment - 1)) !== 0) {
      if (!(alignment === TWO_31)) throw new RangeError(`alignment must be a power of two in [1, 2^31], got ${alignment}`);
    }
    this.assertAttached();
    if (this.pendingOverflows.length !== 0) this.flushOverflows();
    return this.allocAligned(this.theap, size, alignment);
  }

  private allocAligned(th: Theap, size: number, alignment: number): number {
    if (alignment <= 8) return this.allocSize(th, size);
    const q = this.allocAlignedRaw(th, size, alignment);
    if (this.stacks !== null) this.noteAlloc(q);
    return q;
  }

  private allocAlignedRaw(th: Theap, size: number, alignment: number): number {
    if (size > TWO_31 - C.SLICE_SIZE - C.PADDING) return this.nomem(size);
    const need = this.padded ? size + C.PADDING : size;
    if (alignment > C.SLICE_SIZE) return this.allocHuge(th, need, alignment / C.SLICE_SIZE, size);
    if (need > C.LARGE_OBJ_SIZE_MAX) return this.allocHuge(th, need, 1, size);
    const want = Math.max(size, alignment);
    if (!this.padded && BIN_BLOCK_SIZE[binOf(want)] % alignment === 0) return this.allocSize(th, want, false);
    const over = size + alignment - 8; // allocSize adds the debug padding itself
    if (over + (need - size) > C.LARGE_OBJ_SIZE_MAX) return this.allocHuge(th, need, 1, size);
    const b = this.allocSize(th, over, false);
    if (b === 0) return 0;
    const q = Math.ceil(b / alignment) * alignment;
    const rb = this.pageMap[b >>> C.SLICE_SHIFT];
    if (q !== b) this.meta[rb + C.R_FLAGS] |= C.F_ALIGNED; // first: paddingOf(q) finds the block start by it
    // padded: the padding belongs after `size` bytes at the aligned address (written before the A bit moves there)
    if (this.padded) setPadding(this.arena, rb, q, size, this.debug);
    if (q !== b) {
      const aBits = this.aBits;
      aBits[b >>> C.BITMAP_WORD_SHIFT] &= ~(1 << ((b >>> C.GRANULE_SHIFT) & 31));
      aBits[q >>> C.BITMAP_WORD_SHIFT] |= 1 << ((q >>> C.GRANULE_SHIFT) & 31);
    }
    return q;
  }

  // =========================================================================
  // free
  // =========================================================================

  /**
   * Free a block; `free(0)` does nothing. Fast path (a block on a page this
   * agent owns): A-bit test, page-map load, owner compare, R-bit load, push.
   */
  free(p: number): void {
    if ((p >>> 0) === p && p < this.size && (p & 7) === 0) {
      const mem = this.mem;
      const w = p >>> C.BITMAP_WORD_SHIFT;
      const bit = 1 << ((p >>> C.GRANULE_SHIFT) & 31);
      const aw = mem[this.aBase + w];
      if ((aw & bit) !== 0) {
        const rb = mem[this.pmBase + (p >>> C.SLICE_SHIFT)] & C.REC_BASE_MASK;
        // No block of a page with an empty XTHREAD_FREE waits on a remote free
        // (its R bit is clear), so the R test is needed only when the list is
        // non-empty: the generic path does it. This keeps the fast path inside
        // the page record's cache line instead of touching the R bitmap.
        if (mem[rb + C.R_OWNER] === this.fastTid && (mem[rb + C.R_FLAGS] & (C.F_ALIGNED | C.F_FULL)) === 0 &&
            mem[rb + C.R_XTHREAD_FREE] === 0) {
          mem[this.aBase + w] = aw ^ bit;
          mem[p >>> 2] = mem[rb + C.R_LOCAL_FREE];
          mem[rb + C.R_LOCAL_FREE] = p;
          const used = (mem[rb + C.R_USED] - 1) | 0;
          mem[rb + C.R_USED] = used;
          if (used === 0) this.pageEmptied(rb);
          return;
        }
      }
    }
    this.freeGeneric(p);
  }

  protected freeGeneric(p: unknown): void {
    this.freeSlow(p);
    if (this.pendingOverflows.length !== 0) this.flushOverflows(); // the free is complete: a throw loses nothing
  }

  private freeSlow(p: unknown): void {
    const q = checkAddress(p);
    if (q === 0) return;
    this.assertAttached();
    const rb = this.validate(q, 'free');
    if (rb === 0) return;
    if (this.stacks !== null) this.stacks.delete(q);
    if (this.padded) { // reported before the free changes anything; a handler that returns lets the free go on
      const msg = checkPadding(this.arena, rb, q);
      if (msg !== null) {
        this.report('EFAULT', msg, q); // a throwing handler leaves the block live, the overflow in place
        repairCanary(this.arena, rb, q); // the free goes on: reported once, not again at reuse (I5)
      }
    }
    const meta = this.meta;
    const owner = Atomics.load(meta, rb + C.R_OWNER);
    if (owner === this.tid) {
      const err = this.freeHeld(rb, q);
      if (err !== null) { this.report('EAGAIN', err, q); return; }
      if ((meta[rb + C.R_FLAGS] & C.F_FULL) !== 0) { // a full page has a free block again
        const th = this.theapOf(meta[rb + C.R_HEAP]);
        const bin = meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK;
        if (th !== null) {
          th.remove(meta, bin + C.BIN_COUNT, rb);
          th.pushBack(meta, bin, rb);
        }
      }
      if (meta[rb + C.R_USED] === 0) this.pageEmptied(rb);
      return;
    }
    if (owner === C.OWNER_ABANDONED &&
        Atomics.compareExchange(meta, rb + C.R_OWNER, C.OWNER_ABANDONED, this.tid | C.OWNER_HELD) === C.OWNER_ABANDONED) {
      const err = this.freeHeld(rb, q);
      settleHeld(this, rb, true);
      if (err !== null) this.report('EAGAIN', err, q);
      return;
    }
    this.freeRemote(rb, q);
  }

  /** Free q on a page this agent holds. Returns an error message instead of reporting (the caller settles first). */
  private freeHeld(rb: number, q: number): string | null {
    const meta = this.meta;
    const w = q >>> C.BITMAP_WORD_SHIFT;
    const bit = 1 << ((q >>> C.GRANULE_SHIFT) & 31);
    if (((this.aBits[w] & bit) === 0 && this.checksFree) || (Atomics.load(this.rBits, w) & bit) !== 0) {
      return `double free of block ${hex(q)} (size ${meta[rb + C.R_BLOCK_SIZE]})`;
    }
    this.aBits[w] &= ~bit;
    const b = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0 ? blockStartOf(meta, rb, q) : q;
    if (this.debug) fillFreed(this.arena, b, meta[rb + C.R_BLOCK_SIZE]);
    setLink(this.arena, rb, b, meta[rb + C.R_LOCAL_FREE] >>> 0);
    meta[rb + C.R_LOCAL_FREE] = b;
    meta[rb + C.R_USED]--;
    return null;
  }

  /**
   * Free onto another agent's page (mimalloc's `mi_free_block_mt`): mark the
   * block with an atomic OR on its R bit (exact double-free detection across
   * agents: the second OR sees the bit), then one CAS push onto
   * XTHREAD_FREE; if the page is abandoned, take it and settle it.
   */
  private freeRemote(rb: number, q: number): void {
    const meta = this.meta;
    const w = q >>> C.BITMAP_WORD_SHIFT;
    const bit = 1 << ((q >>> C.GRANULE_SHIFT) & 31);
    const old = Atomics.or(this.rBits, w, bit);
    if ((old & bit) !== 0) {
      this.report('EAGAIN', `double free of block ${hex(q)} (size ${meta[rb + C.R_BLOCK_SIZE]}): already freed by another agent`, q);
      return;
    }
    if ((this.aBits[w] & bit) === 0 && this.checksFree) { // the owner collected an earlier free of it meanwhile
      Atomics.and(this.rBits, w, ~bit);
      this.report('EAGAIN', `double free of block ${hex(q)} (size ${meta[rb + C.R_BLOCK_SIZE]})`, q);
      return;
    }
    const b = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0 ? blockStartOf(meta, rb, q) : q;
    if (this.debug) fillFreed(this.arena, b, meta[rb + C.R_BLOCK_SIZE]);
    for (;;) {
      const head = Atomics.load(meta, rb + C.R_XTHREAD_FREE);
      setLink(this.arena, rb, b, head >>> 0);
      if (Atomics.compareExchange(meta, rb + C.R_XTHREAD_FREE, head, q | 0) === head) break;
    }
    if (Atomics.load(meta, rb + C.R_OWNER) === C.OWNER_ABANDONED &&
        Atomics.compareExchange(meta, rb + C.R_OWNER, C.OWNER_ABANDONED, this.tid | C.OWNER_HELD) === C.OWNER_ABANDONED) {
      settleHeld(this, rb, true);
    }
  }

  /** A local free made a queued page empty (mimalloc's `_mi_page_retire`). */
  protected pageEmptied(rb: number): void {
    const meta = this.meta;
    const th = this.theapOf(meta[rb + C.R_HEAP]);
    const bin = meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK;
    if (th === null || Atomics.load(meta, rb + C.R_XTHREAD_FREE) !== 0) return;
    // Every emptied page is kept a short while (mimalloc keeps only the last
    // page of a bin): a program that frees a batch and allocates the next one
    // then reuses its pages instead of returning and re-claiming slices
    // through the shared, atomic slice bitmap every round, which measured as
    // contention between workers. Expired pages go back on the heartbeat.
    const cycles = BIN_PAGE_SLICES[bin] === 1 ? C.RETIRE_CYCLES_SMALL : C.RETIRE_CYCLES_OTHER;
    meta[rb + C.R_FLAGS] = (meta[rb + C.R_FLAGS] & ~C.RETIRE_MASK) | (cycles << C.RETIRE_SHIFT);
    const s = (rb - this.recBase) >>> C.REC_SHIFT;
    if (this.retiredIn[s] !== th.heapId + 1) { // not in th's list yet (an entry elsewhere is dropped as stale)
      this.retiredIn[s] = th.heapId + 1;
      th.pushRetired(rb);
    }
  }

  /**
   * Count th's retired pages down by one; release those that expired (all of
   * them when `force`). An entry whose page is no longer a retired page
   * queued in th (used again, full, abandoned, taken by another theap or
   * released) is dropped. Cost: O(entries), no queue walks.
   */
  private collectRetired(th: Theap, force: boolean): void {
    const meta = this.meta;
    const list = th.retired;
    const n = th.retiredCount;
    const mine = th.heapId + 1;
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const rb = list[i];
      const s = (rb - this.recBase) >>> C.REC_SHIFT;
      const f = meta[rb + C.R_FLAGS];
      const cycles = (f & C.RETIRE_MASK) >>> C.RETIRE_SHIFT;
      if (this.retiredIn[s] !== mine) continue; // a later entry in another theap's list owns it
      if (cycles === 0 || meta[rb + C.R_OWNER] !== this.tid || meta[rb + C.R_HEAP] !== th.heapId ||
          Atomics.load(meta, rb + C.R_STATE) !== C.STATE_IN_USE || (f & C.F_FULL) !== 0) {
        this.retiredIn[s] = 0; // stale: the page is not a retired page in th's queues any more
        continue;
      }
      if (meta[rb + C.R_USED] !== 0) { // used again
        meta[rb + C.R_FLAGS] = f & ~C.RETIRE_MASK;
        this.retiredIn[s] = 0;
      } else if (force || cycles === 1) {
        this.retiredIn[s] = 0;
        th.remove(meta, f & C.FLAG_BIN_MASK, rb);
        releasePage(this, rb);
      } else {
        meta[rb + C.R_FLAGS] = (f & ~C.RETIRE_MASK) | ((cycles - 1) << C.RETIRE_SHIFT);
        list[kept++] = rb;
      }
    }
    th.retiredCount = kept;
  }

  /**
   * The page of a live block at q, or 0 after reporting why q is not one
   * (EINVAL: not a block address; EAGAIN: a block that is already free).
   */
  private validate(q: number, what: string): number {
    const meta = this.meta;
    if (!this.checksFree && (q & 7) === 0 && q < this.size) { // checkFree: false keeps no A bits: any address in a page passes
      const rb = this.pageMap[q >>> C.SLICE_SHIFT];
      if (rb !== 0 && Atomics.load(meta, rb + C.R_STATE) === C.STATE_IN_USE) return rb;
    }
    if ((q & 7) === 0 && q < this.size) {
      const w = q >>> C.BITMAP_WORD_SHIFT;
      const bit = 1 << ((q >>> C.GRANULE_SHIFT) & 31);
      if ((this.aBits[w] & bit) !== 0) {
        const rb = this.pageMap[q >>> C.SLICE_SHIFT];
        if (rb !== 0 && Atomics.load(meta, rb + C.R_STATE) === C.STATE_IN_USE) {
          if ((Atomics.load(this.rBits, w) & bit) === 0) return rb;
          this.report('EAGAIN', `${what}: block ${hex(q)} (size ${meta[rb + C.R_BLOCK_SIZE]}) was already freed by another agent`, q);
          return 0;
        }
      }
      const rb = this.pageMap[q >>> C.SLICE_SHIFT];
      if (rb !== 0 && Atomics.load(meta, rb + C.R_STATE) === C.STATE_IN_USE) {
        const bs = meta[rb + C.R_BLOCK_SIZE];
        const ps = pageStart(meta, rb);
        const aligned = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0;
        const b = blockStartOf(meta, rb, q);
        const idx = (b - ps) / bs;
        if (idx < meta[rb + C.R_CAPACITY] && b === q && !blockIsLive(this.aBits, b, bs, aligned)) {
          this.report('EAGAIN', `${what}: double free of block ${hex(q)} (size ${bs}): the block is not allocated`, q);
          return 0;
        }
        this.report('EINVAL', `${what}: invalid pointer ${hex(q)}: not the start of a live block (inside a block of size ${bs} at ${hex(b)})`, q);
        return 0;
      }
    }
    this.report('EINVAL', `${what}: invalid pointer ${hex(q)}: not an address of a block of this allocator`, q);
    return 0;
  }

  // =========================================================================
  // realloc, sizes
  // =========================================================================

  /** Usable bytes of the block at p (its block size, minus the offset of an aligned address). */
  usableSize(p: number): number {
    const q = checkAddress(p);
    if (q === 0) return 0;
    const rb = this.validate(q, 'usableSize');
    if (rb === 0) return 0;
    return this.usableOf(rb, q);
  }

  private usableOf(rb: number, q: number): number {
    if (this.padded) { // padded: exactly the size asked for (a broken size word: the whole block)
      const r = requestedSize(this.arena, rb, q);
      return r >= 0 ? r : paddingOf(this.arena, rb, q) - q;
    }
    const meta = this.meta;
    const bs = meta[rb + C.R_BLOCK_SIZE];
    if ((meta[rb + C.R_FLAGS] & C.F_ALIGNED) === 0) return bs;
    return blockStartOf(meta, rb, q) + bs - q;
  }

  /**
   * Resize: in place when usable/2 ≤ n ≤ usable, else move (copying
   * min(usable, n) bytes). A failed grow returns 0 and leaves p live and intact.
   */
  realloc(p: number, n: number): number {
    const q = checkAddress(p);
    const size = checkSize('size', n);
    if (q === 0) return this.malloc(size);
    this.assertAttached();
    const rb = this.validate(q, 'realloc');
    if (rb === 0) return 0;
    const usable = this.usableOf(rb, q);
    if (this.padded) {
      // the padding is checked whether the block stays or moves (the fast free does not look at it)
      const msg = checkPadding(this.arena, rb, q);
      if (msg !== null) {
        this.report('EFAULT', msg, q); // a throwing handler: nothing changed
        setPadding(this.arena, rb, q, usable, false); // it returned: repaired, reported once
      }
      const room = paddingOf(this.arena, rb, q) - q;
      if (size <= room && size >= usable / 2 && size > 0) {
        if (size > usable) { // grow in place: the padding moves to the new end first, then the new bytes are filled
          setPadding(this.arena, rb, q, size, false);
          if (this.debug) this._u8.fill(C.DEBUG_UNINIT_BYTE, q + usable, q + size);
        }
        // A shrink keeps the block's size (as mimalloc's padded builds do): were the
        // requested size lowered, repeated halvings would keep a block of any
        // size for a few bytes.
        return q;
      }
    } else if (size <= usable && size >= usable / 2 && size > 0) {
      return q;
    }
    const nb = this.malloc(size); // the fast path when it can: reallocs that move are common (ripgrep: 18% of calls)
    if (nb === 0) return 0;
    this._u8.copyWithin(nb, q, q + Math.min(usable, size));
    this.free(q);
    return nb;
  }

  /** Grow or shrink in place only: returns p if n fits in the block, else 0 (mimalloc's `mi_expand`). */
  expand(p: number, n: number): number {
    const q = checkAddress(p);
    const size = checkSize('size', n);
    if (q === 0) return 0;
    const rb = this.validate(q, 'expand');
    if (rb === 0) return 0;
    return size <= this.usableOf(rb, q) ? q : 0; // debug: the requested size (mimalloc's padding builds never expand)
  }

  /** The usable size a request of n bytes would get. */
  goodSize(n: number): number {
    const size = checkSize('size', n);
    if (this.padded) return size; // debug / secure ≥ 3: a block's usable size is exactly the request
    if (this.arena.secure > 0 && size > C.LARGE_OBJ_SIZE_MAX) return Math.ceil((size + C.SECURE_GUARD) / C.SLICE_SIZE) * C.SLICE_SIZE - C.SECURE_GUARD;
    return goodSizeOf(size);
  }

  /**
   * mimalloc's `mi_collect`: collect the cross-agent frees of every page of
   * this agent's theaps and release the pages that became empty (with
   * `force`, also the retired ones). Costs one pass over this agent's pages.
   */
  collect(force = false): void {
    this.assertAttached();
    const a = this.arena;
    const meta = this.meta;
    for (const th of this.theaps) {
      if (!th) continue;
      for (let q = 0; q < th.first.length; q++) {
        const bin = q % C.BIN_COUNT;
        let rb = th.first[q];
        while (rb !== 0) {
          const next = meta[rb + C.R_NEXT];
          pageCollect(a, rb);
          if (meta[rb + C.R_USED] === 0 && (force || q !== bin || th.count[bin] > 1)) {
            th.remove(meta, q, rb);
            releasePage(this, rb);
          } else if (q !== bin && meta[rb + C.R_FREE] !== 0) {
            th.remove(meta, q, rb);
            th.pushBack(meta, bin, rb);
          }
          rb = next;
        }
      }
      if (force) this.collectRetired(th, true);
    }
    if (this.pendingOverflows.length !== 0) this.flushOverflows();
  }

  // =========================================================================
  // agents
  // =========================================================================

  /**
   * This agent is done: every page of its theaps is collected, released if
   * empty, or abandoned for the other agents to reclaim. The object can no
   * longer allocate or free afterwards.
   */
  detach(): void {
    if (this.detached) return;
    if (this.debug) { // the leak report: blocks still live in this agent's pages
      const report = this.leakReport();
      if (report.blocks.length > 0) console.warn(`mimalloc-ts: agent ${this.agentId} detaches with ${report.text}`);
    }
    const meta = this.meta;
    for (const th of this.theaps) {
      if (!th) continue;
      for (let bin = 0; bin < th.first.length; bin++) {
        let rb = th.first[bin];
        while (rb !== 0) {
          const next = meta[rb + C.R_NEXT];
          th.remove(meta, bin, rb);
          Atomics.store(meta, rb + C.R_OWNER, this.tid | C.OWNER_HELD);
          settleHeld(this, rb, false);
          rb = next;
        }
      }
    }
    this.detached = true;
    this.theaps.length = 0;
    abandonAllOf(this, this.tid, false); // none should be left; a safety net
    this.fastTid = -1;
    this.direct = new Int32Array(this.direct.length).fill(this.arena.rec(0));
    // one store frees the agent record (a kill before it: releaseAgent finds the agent and finishes)
    Atomics.store(this.mem, this.agentBase + C.A_ID, 0);
    if (this.pendingOverflows.length !== 0) this.flushOverflows();
  }

  /**
   * Take over the pages of a terminated agent (call it from the Worker's
   * 'exit' event with the agentId the worker reported). Any multi-word update
   * the agent died in is finished or undone; each of its pages is rebuilt
   * from its allocation bitmap and abandoned for reclaim. Returns false if no
   * attached agent has that id (it detached, or was released already).
   * Only call it for an agent that can no longer run.
   */
  releaseAgent(id: number): boolean {
    if (typeof id !== 'number') throw new TypeError('releaseAgent: id must be a number');
    this.assertAttached();
    const r = reapAgent(this, id);
    if (this.pendingOverflows.length !== 0) this.flushOverflows();
    return r;
  }

  /** Is an agent with this id attached (alive or not yet released)? */
  isAgentAttached(id: number): boolean {
    return findAgentRecord(this.arena, id) >= 0;
  }

  /**
   * The live blocks in the pages this agent owns (by default), or in every
   * page (`all`), with their sizes (the requested sizes in debug mode), and
   * a printable summary. Debug mode prints it at detach() when not empty.
   */
  leakReport(opts: { all?: boolean } = {}): { blocks: LiveBlock[]; bytes: number; text: string } {
    const tid = this.tid;
    const all = opts.all === true;
    const blocks = liveBlocks(this.arena, (o) => all || (o & ~3) === tid, (rb, q) => this.usableOf(rb, q));
    const st = this.stacks;
    if (st !== null) {
      for (const b of blocks) {
        const e = st.get(b.address);
        if (e !== undefined) b.stack = userFrames(e);
      }
    }
    return { blocks, bytes: blocks.reduce((t, b) => t + b.size, 0), text: formatLeaks(blocks) };
  }

  private assertAttached(): void {
    if (this.detached) throw new Error('mimalloc-ts: this allocator object was detached');
  }

  // =========================================================================
  // errors, stats, check
  // =========================================================================

  /**
   * AgentContext: an overflow found by the canary scan of a page that went
   * back to the buffer. Queued, not reported: releases happen inside loops
   * over pages (reap, detach, collect, retire) that a throwing handler must
   * not cut short; flushOverflows reports them once the call is complete.
   */
  reportReleasedOverflow(b: number, size: number): void {
    this.pendingOverflows.push(b, size);
  }

  /** Report the queued overflows (one report per block; a throwing handler leaves the rest queued). */
  private flushOverflows(): void {
    const q = this.pendingOverflows;
    while (q.length !== 0) {
      const b = q.shift() as number;
      const size = q.shift() as number;
      this.report('EFAULT', `buffer overflow in block ${hex(b)} (size ${size}): the canary after it was overwritten (found when its page was returned to the buffer)`, b);
    }
  }

  private report(code: ErrorCode, message: string, address: number): void {
    this.errorHandler(code, message, address);
  }

  /** Counters: reserved, committed (high-water mark), used (bytes in live blocks), pages, agents… */
  stats(): StatsSnapshot {
    return collectStats(this.arena);
  }

  /** mimalloc-style statistics table (returned, and printed with console.log unless `print` is false). */
  printStats(print = true): string {
    const s = formatStats(this.stats());
    if (print) console.log(s);
    return s;
  }

  /** Verify every invariant of every page and bitmap; throws an Error naming the first broken one. Assumes no other agent mutates meanwhile. */
  check(): void {
    checkHeap(this.arena);
  }
}

/**
 * `checkFree: false`: the same fast paths without the allocation-bitmap
 * update and test. Only for measuring what detection costs; see AllocatorOptions.checkFree.
 */
class UncheckedAllocator extends Allocator {
  protected override readonly checksFree: boolean = false;

  override malloc(n: number): number {
    if ((n >>> 0) === n && n <= C.SMALL_SIZE_MAX) {
      const mem = this.mem;
      const rb = this.direct[(n + 7) >>> 3] & C.REC_BASE_MASK; // (REC_BASE_MASK: see types.ts)
      let b = mem[rb + C.R_FREE];
      if (b === 0 && (++this.refills & 63) !== 0) b = takeLocalFree(mem, rb); // every 64th: generic (retire heartbeat)
      if (b !== 0) {
        mem[rb + C.R_FREE] = mem[b >>> 2];
        mem[rb + C.R_USED] = (mem[rb + C.R_USED] + 1) | 0; // `| 0`: no overflow check
        mem[b >>> 2] = 0;
        return b >>> 0;
      }
    }
    return this.mallocGeneric(n);
  }

  override free(p: number): void {
    if ((p >>> 0) === p && p < this.size && (p & 7) === 0 && p !== 0) {
      const mem = this.mem;
      const rb = mem[this.pmBase + (p >>> C.SLICE_SHIFT)] & C.REC_BASE_MASK;
      if (mem[rb + C.R_OWNER] === this.fastTid && (mem[rb + C.R_FLAGS] & (C.F_ALIGNED | C.F_FULL)) === 0) {
        mem[p >>> 2] = mem[rb + C.R_LOCAL_FREE];
        mem[rb + C.R_LOCAL_FREE] = p;
        const used = (mem[rb + C.R_USED] - 1) | 0;
        mem[rb + C.R_USED] = used;
        if (used === 0) this.pageEmptied(rb);
        return;
      }
    }
    this.freeGeneric(p);
  }
}

/**
 * Secure level ≥ 3: the same fast paths with encoded free-list links
 * (page.ts getLink/setLink, inlined) in the blocks' padding: malloc decodes
 * the next link and checks the popped block's canary, and falls to the
 * generic path (which reports EFAULT and truncates, or repairs) when the link
 * decodes outside the page or the canary is broken; free encodes the link it
 * writes and reads nothing from the block. Cost over the default paths: a
 * multiply and an xor per link, the block-size, key and canary loads, the
 * range, canary and A-bit compares, the size store: ~40 instructions per
 * malloc+free pair (of ~260), measured ~2.5 ns (BENCHMARKS.md).
 */
class SecureAllocator extends Allocator {
  /*
   * Fast-path bins are small pages of one slice (asserted in bins.ts), so
   * "a link into this page" is "the same 64 KiB slice as the block, and
   * 8-byte aligned": one xor and one mask, no load. A link that passes but
   * is not a block start below capacity (the page's guard tail, a block not
   * yet extended) fails the canary check of the next pop, which goes to
   * popBlock; that check is against a per-page-life key (R_CANARY), so a
   * stale canary from an earlier page in the same slice does not pass.
   */
  override malloc(n: number): number {
    if ((n >>> 0) === n && n <= C.SMALL_SIZE_MAX - C.PADDING) {
      const mem = this.mem;
      const rb = this.direct[(n + 7 + C.PADDING) >>> 3] & C.REC_BASE_MASK; // room for the padding
      let b = mem[rb + C.R_FREE];
      if (b === 0 && (++this.refills & 63) !== 0) b = takeLocalFree(mem, rb); // every 64th: generic (retire heartbeat)
      if (b !== 0) {
        const bs = mem[rb + C.R_BLOCK_SIZE];
        // (the forms of padw and next measured fastest: ~0.6 ns each over (b >>> 2) + (bs >>> 2) − 2 and an int32 next)
        const padw = ((b >>> 0) + bs - C.PADDING) >>> 2; // the canary's word; the link (LINK_FROM_END = 4) follows
        const next = (Math.imul(mem[padw + 1], mem[rb + C.R_KEYINV]) ^ mem[rb + C.R_KEY1]) >>> 0; // page.ts getLink
        const aw = this.aBase + (b >>> C.BITMAP_WORD_SHIFT);
        const bit = 1 << ((b >>> C.GRANULE_SHIFT) & 31);
        const a = mem[aw];
        // a link into the page (or NULL), an intact canary (I5) and a block that is not live (a
        // corrupted link that lands on a live block must not make two owners), else the generic path reports
        if ((next === 0 || ((next ^ b) & C.SECURE_LINK_MASK) === 0) &&
            mem[padw] === (((padw << 2) ^ mem[rb + C.R_CANARY]) & ~0xff) && (a & bit) === 0) { // debug.ts canaryOf
          mem[rb + C.R_FREE] = next;
          mem[rb + C.R_USED] = (mem[rb + C.R_USED] + 1) | 0;
          mem[padw + 1] = (bs - C.PADDING - n) | 0; // the requested size over the link (debug.ts layout), before the A bit
          mem[aw] = a | bit;
          return b >>> 0;
        }
      }
    }
    return this.mallocGeneric(n);
  }

  override free(p: number): void {
    if ((p >>> 0) === p && p < this.size && (p & 7) === 0) {
      const mem = this.mem;
      const w = p >>> C.BITMAP_WORD_SHIFT;
      const bit = 1 << ((p >>> C.GRANULE_SHIFT) & 31);
      const aw = mem[this.aBase + w];
      if ((aw & bit) !== 0) {
        const rb = mem[this.pmBase + (p >>> C.SLICE_SHIFT)] & C.REC_BASE_MASK;
        if (mem[rb + C.R_OWNER] === this.fastTid && (mem[rb + C.R_FLAGS] & (C.F_ALIGNED | C.F_FULL)) === 0 &&
            mem[rb + C.R_XTHREAD_FREE] === 0) {
          // No load from the block: its canary is checked when it is handed out again (I5), so freeing
          // a cold block does not wait for memory (measured: +40 ns/op on (b) when checked here).
          const linkw = (p >>> 2) + (mem[rb + C.R_BLOCK_SIZE] >>> 2) - (C.LINK_FROM_END >>> 2);
          mem[this.aBase + w] = aw ^ bit;
          const local = mem[rb + C.R_LOCAL_FREE];
          mem[linkw] = Math.imul(local ^ mem[rb + C.R_KEY1], mem[rb + C.R_KEY0]); // setLink, over delta: one cache line per free
          mem[rb + C.R_LOCAL_FREE] = p;
          const used = (mem[rb + C.R_USED] - 1) | 0;
          mem[rb + C.R_USED] = used;
          if (used === 0) this.pageEmptied(rb);
          return;
        }
      }
    }
    this.freeGeneric(p);
  }
}

export { AllocatorError };
