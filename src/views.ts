/**
 * views.ts — one agent's view of the arenas (layout.ts): fixed-length views
 * over the buffer and the directories that find an address's metadata,
 * refreshed when another agent grew the buffer; the header written at
 * creation and checked at attach. arena.ts adds growth and the slice
 * bitmaps (class Arena extends ArenaViews).
 */
import { type ArenaLayout, type Backing, arenaLayout, headerWord, tableWord, zeroWord } from './layout.js';
import { C } from './types.js';

/**
 * One agent's view of the shared arenas. Every agent constructs its own over
 * the same memory; the views are fixed-length (length-tracking views measured
 * 3.7x slower) and end where the buffer ended when this agent last looked
 * (`refresh`, which every generic path runs when H_ARENAS moved).
 */
export class ArenaViews {
  readonly backing: Backing;
  /** The buffer the views are over (a grown shared memory hands out a new object; a non-shared one detaches the old). */
  buffer: ArrayBufferLike;
  /** The buffer as Int32 words (block links, header words, page records: `mem[rb + R_*]`), [0, size). */
  mem: Int32Array;
  /** The same array as `mem` (page records, by name). */
  meta: Int32Array;
  /** The buffer as bytes. */
  u8: Uint8Array;
  /** Bytes the views cover: the end of the last arena this agent knows. */
  size: number;
  /** End slice of the last known arena. */
  sliceCount: number;
  /** Word index of the header (its words are `mem[hdr + H_*]`). */
  readonly hdr: number;
  /** First slice of the first arena, and the first slice after its metadata. */
  readonly baseSlice: number;
  headerSlices: number;
  /** The end slice growth may reach (= sliceCount when the buffer cannot grow). */
  maxSlices: number;
  /** Arenas this agent knows, in address order. */
  arenas: ArenaLayout[] = [];
  arenaCount = 0;
  /**
   * Directories, one entry per MiB of addresses (DIR_SHIFT): the word in
   * `mem` of a slice's or an address's metadata is the entry plus the
   * global index (`aw`, `rw`, `pm`, `rec`, `fw`, `dw`, `abw` below). Agent-local
   * copies of what the arena table says; 0 where no arena is known.
   */
  readonly rDir: Int32Array;
  readonly recDir: Int32Array;
  readonly fmDir: Int32Array;
  readonly dmDir: Int32Array;
  readonly abDir: Int32Array;
  readonly abStride: Int32Array;
  /**
   * The A-bitmap and page-map directories, interleaved (entries 2d, 2d + 1):
   * the free fast path reads both for one address from one line.
   */
  readonly fdir: Int32Array;
  /** A record that is always empty (the first arena's first slice holds metadata, never a page): the direct table's "no page". */
  emptyRec = 0;
  /**
   * Resizable ArrayBuffer only (one agent): shrink the tail once it has
   * been free for this many ms (mimalloc's purge_delay; −1: never), down to
   * no less than the size it was created with (`minEnd`). `purgeSince`: when
   * the free tail was first seen (0: not pending); `purgeLook`: a page was
   * released since the tail was last measured.
   */
  purgeDelay = -1;
  minEnd = 0;
  purgeSince = 0;
  purgeLook = false;
  /** Called when the views are replaced (refresh, growth, purge): the agent takes the new ones. */
  onRefresh: (() => void) | null = null;
  /** Debug mode (a property of the buffer: every agent sees the header's OPT_DEBUG). */
  readonly debug: boolean;
  /** checkFree: false (OPT_NO_CHECK), for every agent of the buffer. */
  readonly noCheck: boolean;
  /** Secure level 0..4 (a property of the buffer, from the header). */
  readonly secure: number;
  /** Blocks carry padding (canary + requested size): debug mode or secure ≥ 3. */
  readonly padded: boolean;

  constructor(backing: Backing) {
    this.backing = backing;
    this.baseSlice = backing.baseSlice;
    this.hdr = headerWord(backing.baseSlice);
    const buf = this.currentBuffer();
    const n = buf.byteLength;
    const ceiling = Math.min(n - (n % C.SLICE_SIZE), C.MAX_SIZE);
    if (!(ceiling >= (this.hdr + C.H_FIXED_WORDS) * 4)) { // before any view: V8's messages say nothing of the limits
      throw new RangeError(`mimalloc-ts: a buffer of ${n} bytes cannot hold an allocator`);
    }
    this.buffer = buf;
    this.mem = new Int32Array(buf, 0, ceiling >>> 2);
    this.meta = this.mem;
    this.u8 = new Uint8Array(buf, 0, ceiling);
    this.size = ceiling;
    this.sliceCount = ceiling >>> C.SLICE_SHIFT;
    this.headerSlices = this.sliceCount;
    this.maxSlices = this.sliceCount;
    const dirs = (C.MAX_SIZE >>> C.DIR_SHIFT) + 1;
    this.rDir = new Int32Array(dirs);
    this.recDir = new Int32Array(dirs);
    this.fmDir = new Int32Array(dirs);
    this.dmDir = new Int32Array(dirs);
    this.abDir = new Int32Array(dirs);
    this.abStride = new Int32Array(dirs);
    this.fdir = new Int32Array(2 * dirs);
    this.setDirs(0, dirs, null); // no arena known: the zero region
    const m = this.mem;
    const h = this.hdr;
    const formatted = Atomics.load(m, h + C.H_MAGIC) === C.MAGIC;
    this.debug = formatted && (m[h + C.H_OPTIONS] & C.OPT_DEBUG) !== 0;
    this.secure = formatted ? (m[h + C.H_OPTIONS] >>> C.OPT_SECURE_SHIFT) & C.OPT_SECURE_MASK : 0;
    this.padded = this.debug || this.secure >= 3;
    this.noCheck = formatted && (m[h + C.H_OPTIONS] & C.OPT_NO_CHECK) !== 0;
  }

  /** The backing's buffer now (a WebAssembly.Memory's changes object when it grows). */
  currentBuffer(): ArrayBufferLike {
    const mm = this.backing.memory;
    return mm !== null ? mm.buffer : this.backing.buffer;
  }

  /** Record base of the page starting at slice s. */
  rec(s: number): number {
    return this.recDir[s >>> C.DIR_SLICES_SHIFT] + (s << C.REC_SHIFT);
  }

  /** Word of the page map entry of slice s. */
  pm(s: number): number {
    return this.fdir[((s >>> C.DIR_SLICES_SHIFT) << 1) + 1] + s;
  }

  /** Word of the A bitmap holding address q's bit (`1 << ((q >>> 3) & 31)`). */
  aw(q: number): number {
    return this.fdir[(q >>> C.DIR_SHIFT) << 1] + (q >>> C.BITMAP_WORD_SHIFT);
  }

  /** Word of the R bitmap holding address q's bit (`1 << ((q >>> 4) & 31)`). */
  rw(q: number): number {
    return this.rDir[q >>> C.DIR_SHIFT] + (q >>> C.R_WORD_SHIFT);
  }

  /** Word of the free-slice bitmap holding slice s's bit (`1 << (s & 31)`). */
  fw(s: number): number {
    return this.fmDir[s >>> C.DIR_SLICES_SHIFT] + (s >>> 5);
  }

  /** Word of the abandoned bitmap of `bin` holding slice s's bit. */
  abw(bin: number, s: number): number {
    const d = s >>> C.DIR_SLICES_SHIFT;
    return this.abDir[d] + bin * this.abStride[d] + (s >>> 5);
  }

  /** Word index of agent record i (0 ≤ i < MAX_AGENTS): the one place the agent-record layout is spelled out. */
  agentRecord(i: number): number {
    return this.hdr + C.H_FIXED_WORDS + i * C.AGENT_WORDS;
  }

  /**
   * Slice of the record at rb, from where the record lies (no load from the
   * record itself: the heartbeat visits retired pages by record base, and
   * START is in the record's second cache line). O(arenas); −1 if none.
   */
  sliceOfRecord(rb: number): number {
    for (let i = 0; i < this.arenaCount; i++) {
      const L = this.arenas[i];
      const d = rb - L.records;
      if (d >= 0 && d < L.aBits - L.records) return L.origin + (d >>> C.REC_SHIFT);
    }
    return -1;
  }

  /** Directory entries [d0, d1) (MiB numbers): arena L's regions, or (null) the zero region (no arena there). */
  protected setDirs(d0: number, d1: number, L: ArenaLayout | null): void {
    const z = zeroWord(this.hdr);
    for (let d = d0; d < d1; d++) {
      if (L === null) {
        this.fdir[2 * d] = z - (d << (C.DIR_SHIFT - C.BITMAP_WORD_SHIFT));
        this.fdir[2 * d + 1] = z - (d << C.DIR_SLICES_SHIFT);
        this.rDir[d] = z - (d << (C.DIR_SHIFT - C.R_WORD_SHIFT));
        continue;
      }
      const o = L.origin;
      this.fdir[2 * d] = L.aBits - (o << 6);
      this.fdir[2 * d + 1] = L.pageMap - o;
      this.rDir[d] = L.rBits - (o << 5);
      this.recDir[d] = L.records - (o << C.REC_SHIFT);
      this.fmDir[d] = L.freeMap - (o >>> 5);
      this.dmDir[d] = L.dirtyMap - (o >>> 5);
      this.abDir[d] = L.abandoned - (o >>> 5);
      this.abStride[d] = L.sliceWords;
    }
  }

  /** Is the arena table ahead of this agent (another agent grew the buffer), or the views detached? One load. */
  stale(): boolean {
    return this.mem[this.hdr + C.H_ARENAS] !== this.arenaCount;
  }

  /** Replace the views by views over [0, end·16K) of the buffer as it is now. */
  protected setViews(end: number): void {
    const buf = this.currentBuffer();
    const bytes = Math.min(end << C.SLICE_SHIFT, buf.byteLength - (buf.byteLength % C.SLICE_SIZE)) >>> 0;
    this.buffer = buf;
    this.mem = new Int32Array(buf, 0, bytes >>> 2);
    this.meta = this.mem;
    this.u8 = new Uint8Array(buf, 0, bytes);
    this.size = bytes;
  }

  /**
   * Catch up with the arena table: new arenas (grown by any agent) get
   * directory entries and the views are rebuilt to cover them. Generic
   * paths only; returns true if anything changed (`onRefresh` was called).
   */
  refresh(): boolean {
    let changed = false;
    if (this.mem.length === 0 || this.buffer !== this.currentBuffer()) { this.setViews(this.sliceCount); changed = true; } // detached or replaced
    const m = this.mem;
    const h = this.hdr;
    const count = Atomics.load(m, h + C.H_ARENAS);
    if (count !== this.arenaCount) {
      const tw = tableWord(h);
      for (let i = this.arenaCount; i < count; i++) {
        const t = tw + i * C.ARENA_WORDS;
        const L = arenaLayout(Atomics.load(m, t + C.T_START), Atomics.load(m, t + C.T_CAP), i === 0 ? h : -1);
        L.end = Atomics.load(m, t + C.T_END);
        this.arenas.push(L);
        this.setDirs(L.origin >>> C.DIR_SLICES_SHIFT, (L.cap + C.DIR_SLICES - 1) >>> C.DIR_SLICES_SHIFT, L);
      }
      this.arenaCount = count;
      const first = this.arenas[0];
      this.headerSlices = first.first;
      this.emptyRec = this.rec(first.origin);
      this.sliceCount = this.arenas[count - 1].end;
      this.maxSlices = m[h + C.H_MAX_SLICES];
      this.setViews(this.sliceCount);
      changed = true;
    }
    if (changed) this.onRefresh?.();
    return changed;
  }

  /**
   * Write a fresh header and the first arena, [baseSlice, end), into the
   * buffer (the creator does this once). `maxEnd`: the end slice growth may
   * reach.
   */
  format(end: number, maxEnd: number, knownZero: boolean, debug = false, secure = 0, noCheck = false): void {
    const h = this.hdr;
    const L = arenaLayout(this.baseSlice, end, h);
    if (L.first + 2 > end) throw new RangeError(`mimalloc-ts: ${(end - this.baseSlice) * C.SLICE_SIZE} bytes cannot hold the allocator's header (${L.first - this.baseSlice} slices) and a page`);
    const m = this.mem;
    if (!knownZero) m.fill(0, (this.baseSlice << (C.SLICE_SHIFT - 2)), L.metaEnd); // a reused buffer: the guard and every header word
    m[h + C.H_SLICE_COUNT] = end;
    m[h + C.H_HEADER_SLICES] = L.first;
    m[h + C.H_BASE_SLICE] = this.baseSlice;
    m[h + C.H_MAX_SLICES] = maxEnd;
    m[h + C.H_OPTIONS] = (knownZero ? C.OPT_KNOWN_ZERO : 0) | (debug ? C.OPT_DEBUG : 0) | (secure << C.OPT_SECURE_SHIFT) |
      (noCheck ? C.OPT_NO_CHECK : 0);
    (this as { noCheck: boolean }).noCheck = noCheck;
    (this as { secure: number }).secure = secure;
    (this as { padded: boolean }).padded = debug || secure >= 3;
    (this as { debug: boolean }).debug = debug;
    m[h + C.H_VERSION] = C.VERSION;
    Atomics.store(m, h + C.H_COMMITTED, L.first);
    const tw = tableWord(h);
    m[tw + C.T_START] = this.baseSlice;
    m[tw + C.T_CAP] = end;
    m[tw + C.T_END] = end;
    this.minEnd = end;
    for (let s = L.first; s < end; s++) m[L.freeMap + ((s - L.origin) >>> 5)] |= 1 << (s & 31);
    m[h + C.H_ARENAS] = 1;
    Atomics.store(m, h + C.H_MAGIC, C.MAGIC);
    this.refresh();
  }

  /** Check that the buffer holds a formatted allocator of this version, and read its arenas. */
  validateHeader(): void {
    const m = this.mem;
    const h = this.hdr;
    if (Atomics.load(m, h + C.H_MAGIC) !== C.MAGIC) throw new Error('mimalloc-ts: buffer does not hold an allocator (bad magic)');
    if (m[h + C.H_VERSION] !== C.VERSION) throw new Error(`mimalloc-ts: buffer has format version ${m[h + C.H_VERSION]}, expected ${C.VERSION}`);
    const end = Atomics.load(m, h + C.H_SLICE_COUNT); // (may be past this.sliceCount: grown since the views were made)
    if (m[h + C.H_BASE_SLICE] !== this.baseSlice || end <= m[h + C.H_HEADER_SLICES]) {
      throw new Error(`mimalloc-ts: buffer size does not match its header (base slice ${m[h + C.H_BASE_SLICE]}, expected ${this.baseSlice}; end ${end}, header ${m[h + C.H_HEADER_SLICES]})`);
    }
    this.refresh();
  }
}
