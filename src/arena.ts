/**
 * arena.ts — one agent's view of the arenas (layout.ts): fixed-length views
 * and directories, refreshed when another agent grew the buffer; growth; and
 * the atomic slice bitmaps that pages are claimed from and returned to.
 *
 * Claiming is lock-free: find the lowest run of free slices (lowest first, so
 * the touched high-water mark stays low — there is no decommit inside a
 * SharedArrayBuffer), then clear its bits word by word with CAS, rolling back
 * on a lost race. Every claim and release is announced first in the agent's
 * *intent* record, so that whoever reaps a terminated agent can finish or
 * undo a multi-word update that agent died in the middle of (agents.ts
 * `recoverIntent`).
 *
 * Cost: a claim scans the free-slice bitmaps from the lowest slice, 32 slices
 * per word (a 1 GiB buffer is 2048 words), once per new page (≥ 16 KiB of
 * blocks), plus one CAS per bitmap word of the run.
 */
import { type ArenaLayout, type Backing, Growth, arenaLayout, ctz, headerWord, metaSlices, tableWord, wordMask, zeroWord } from './layout.js';
import { C } from './types.js';

/**
 * One agent's view of the shared arenas. Every agent constructs its own over
 * the same memory; the views are fixed-length (length-tracking views measured
 * 3.7x slower) and end where the buffer ended when this agent last looked
 * (`refresh`, which every generic path runs when H_ARENAS moved).
 */
export class Arena {
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
  readonly aDir: Int32Array;
  readonly rDir: Int32Array;
  readonly pmDir: Int32Array;
  readonly recDir: Int32Array;
  readonly fmDir: Int32Array;
  readonly dmDir: Int32Array;
  readonly abDir: Int32Array;
  readonly abStride: Int32Array;
  /**
   * aDir and pmDir interleaved (entry 2d, 2d + 1): the free fast path reads
   * both for one address, from one line and one field load.
   */
  readonly fdir: Int32Array;
  /** A record that is always empty (the first arena's first slice holds metadata, never a page): the direct table's "no page". */
  emptyRec = 0;
  /** Bumped whenever the views are replaced; `onRefresh` is called then. */
  epoch = 0;
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
    this.aDir = new Int32Array(dirs);
    this.rDir = new Int32Array(dirs);
    this.pmDir = new Int32Array(dirs);
    this.recDir = new Int32Array(dirs);
    this.fmDir = new Int32Array(dirs);
    this.dmDir = new Int32Array(dirs);
    this.abDir = new Int32Array(dirs);
    this.abStride = new Int32Array(dirs);
    this.fdir = new Int32Array(2 * dirs);
    const z = zeroWord(this.hdr);
    for (let d = 0; d < dirs; d++) { // no arena known: the zero region
      this.aDir[d] = z - (d << (C.DIR_SHIFT - C.BITMAP_WORD_SHIFT));
      this.rDir[d] = z - (d << (C.DIR_SHIFT - C.R_WORD_SHIFT));
      this.pmDir[d] = z - (d << C.DIR_SLICES_SHIFT);
      this.fdir[2 * d] = this.aDir[d];
      this.fdir[2 * d + 1] = this.pmDir[d];
    }
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
    return this.pmDir[s >>> C.DIR_SLICES_SHIFT] + s;
  }

  /** Word of the A bitmap holding address q's bit (`1 << ((q >>> 3) & 31)`). */
  aw(q: number): number {
    return this.aDir[q >>> C.DIR_SHIFT] + (q >>> C.BITMAP_WORD_SHIFT);
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

  /** Slice of a page's record base (the page's START field: records of pages in use only). */
  sliceOfRec(rb: number): number {
    return this.meta[rb + C.R_START] >>> C.SLICE_SHIFT;
  }

  /** Is the arena table ahead of this agent (another agent grew the buffer), or the views detached? One load. */
  stale(): boolean {
    return this.mem[this.hdr + C.H_ARENAS] !== this.arenaCount;
  }

  /** Replace the views by views over [0, end·16K) of the buffer as it is now. */
  private setViews(end: number): void {
    const buf = this.currentBuffer();
    const bytes = Math.min(end << C.SLICE_SHIFT, buf.byteLength - (buf.byteLength % C.SLICE_SIZE)) >>> 0;
    this.buffer = buf;
    this.mem = new Int32Array(buf, 0, bytes >>> 2);
    this.meta = this.mem;
    this.u8 = new Uint8Array(buf, 0, bytes);
    this.size = bytes;
    this.epoch++;
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
        const L = arenaLayout(Atomics.load(m, tw + i * C.ARENA_WORDS + C.T_START), Atomics.load(m, tw + i * C.ARENA_WORDS + C.T_END), i === 0 ? h : -1);
        this.arenas.push(L);
        const o = L.origin;
        for (let d = o >>> C.DIR_SLICES_SHIFT; d < (L.end + C.DIR_SLICES - 1) >>> C.DIR_SLICES_SHIFT; d++) {
          this.aDir[d] = L.aBits - (o << 6);
          this.rDir[d] = L.rBits - (o << 5);
          this.pmDir[d] = L.pageMap - o;
          this.recDir[d] = L.records - (o << C.REC_SHIFT);
          this.fmDir[d] = L.freeMap - (o >>> 5);
          this.dmDir[d] = L.dirtyMap - (o >>> 5);
          this.abDir[d] = L.abandoned - (o >>> 5);
          this.abStride[d] = L.sliceWords;
          this.fdir[2 * d] = this.aDir[d];
          this.fdir[2 * d + 1] = this.pmDir[d];
        }
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
    m[tw + C.T_END] = end;
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

  // -------------------------------------------------------------------------
  // Growth
  // -------------------------------------------------------------------------

  /**
   * Add an arena with room for a run of n slices aligned to `align`, if the
   * buffer may grow; true if the caller should look for its run again
   * (this agent or another grew the buffer). Holds H_GROW_LOCK while it
   * grows; an agent that finds it held waits for it (growth takes
   * microseconds: the new memory is zero and only its free bits are set).
   */
  grow(agentBase: number, n: number, align: number): boolean {
    if (this.backing.growth === Growth.FIXED) return false;
    const h = this.hdr;
    const tid = Atomics.load(this.mem, agentBase + C.A_ID) << 2;
    if (Atomics.compareExchange(this.mem, h + C.H_GROW_LOCK, 0, tid) !== 0) {
      for (let i = 0; i < 1e8 && Atomics.load(this.mem, h + C.H_GROW_LOCK) !== 0; i++) { /* spin */ }
      return this.stale() || Atomics.load(this.mem, h + C.H_GROW_LOCK) === 0;
    }
    let grew = false;
    try {
      grew = this.growLocked(n, align);
    } finally {
      Atomics.store(this.mem, h + C.H_GROW_LOCK, 0);
    }
    return grew;
  }

  private growLocked(n: number, align: number): boolean {
    const h = this.hdr;
    const m = this.mem;
    const count = Atomics.load(m, h + C.H_ARENAS);
    if (count !== this.arenaCount) return true; // someone grew since this agent looked: look again
    if (count >= C.MAX_ARENAS) return false;
    const end = Atomics.load(m, h + C.H_SLICE_COUNT);
    const max = m[h + C.H_MAX_SLICES];
    let from = end;
    if (this.backing.growth === Growth.MEMORY) { // memory the module grew itself is the module's
      const cur = this.currentBuffer().byteLength;
      from = Math.max(from, Math.ceil(cur / C.SLICE_SIZE));
    }
    const st = (from + C.DIR_SLICES - 1) & ~(C.DIR_SLICES - 1);
    const want = n + align - 1;
    let t = Math.max(C.DIR_SLICES, ((end - this.baseSlice) >>> C.GROW_SHIFT) + C.DIR_SLICES - 1) & ~(C.DIR_SLICES - 1);
    while (t - metaSlices(t) < want) t += C.DIR_SLICES;
    let least = C.DIR_SLICES; // the smallest arena that holds the run
    while (least - metaSlices(least) < want) least += C.DIR_SLICES;
    // a backing at its own maximum (a memory's, which JavaScript cannot read) refuses a
    // big step: halve it down to the least that serves
    for (;;) {
      const en = Math.min(st + t, max);
      if (en - st - metaSlices(en - st) < want) return false;
      Atomics.store(m, h + C.H_GROW_START, st);
      Atomics.store(m, h + C.H_GROW_END, en);
      if (this.growBacking(en)) {
        this.publishArena(count, st, en);
        return true;
      }
      if (t <= least) return false;
      t = Math.max(least, ((t >>> 1) + C.DIR_SLICES - 1) & ~(C.DIR_SLICES - 1));
    }
  }

  /** Make the backing at least end·16K bytes long; false if it cannot grow so far. */
  private growBacking(end: number): boolean {
    const bytes = end * C.SLICE_SIZE;
    const b = this.backing;
    try {
      const cur = this.currentBuffer().byteLength;
      if (cur >= bytes) return true;
      if (b.growth === Growth.SAB) (b.buffer as SharedArrayBuffer & { grow(n: number): void }).grow(bytes);
      else if (b.growth === Growth.RAB) (b.buffer as ArrayBuffer & { resize(n: number): void }).resize(bytes);
      else if (b.growth === Growth.MEMORY) b.memory!.grow(Math.ceil((bytes - cur) / 65536));
      else return false;
    } catch {
      return false; // at the backing's maximum, or the platform refused the memory
    }
    return this.currentBuffer().byteLength >= bytes;
  }

  /** Format arena `index` = [st, en) (its memory is there and zero) and publish it. Idempotent until published. */
  private publishArena(index: number, st: number, en: number): void {
    this.setViews(en);
    const m = this.mem;
    const L = arenaLayout(st, en, -1);
    for (let s = L.first; s < en; s++) {
      const w = L.freeMap + ((s - L.origin) >>> 5);
      m[w] |= 1 << (s & 31);
    }
    const tw = tableWord(this.hdr) + index * C.ARENA_WORDS;
    Atomics.store(m, tw + C.T_START, st);
    Atomics.store(m, tw + C.T_END, en);
    Atomics.store(m, this.hdr + C.H_SLICE_COUNT, en);
    Atomics.store(m, this.hdr + C.H_ARENAS, index + 1);
    this.refresh();
  }

  /**
   * A reaper's part of growth: if the dead agent (tid) held the grow lock,
   * publish the arena it was adding when its memory is all there (else drop
   * it), and free the lock.
   */
  recoverGrow(deadTid: number): void {
    const h = this.hdr;
    if (Atomics.load(this.mem, h + C.H_GROW_LOCK) !== deadTid) return;
    this.refresh();
    const m = this.mem;
    const count = Atomics.load(m, h + C.H_ARENAS);
    const st = Atomics.load(m, h + C.H_GROW_START);
    const en = Atomics.load(m, h + C.H_GROW_END);
    const last = this.arenas[count - 1];
    if (count < C.MAX_ARENAS && st >= last.end && en > st && this.currentBuffer().byteLength >= en * C.SLICE_SIZE) {
      this.publishArena(count, st, en);
    }
    Atomics.compareExchange(this.mem, h + C.H_GROW_LOCK, deadTid, 0);
  }

  // -------------------------------------------------------------------------
  // Slice bitmaps
  // -------------------------------------------------------------------------

  isSliceFree(s: number): boolean {
    return (Atomics.load(this.mem, this.fw(s)) & (1 << (s & 31))) !== 0;
  }

  /**
   * Lowest run of `n` free slices whose start is a multiple of `align`
   * (a power of two), in the known arenas in address order, or -1. Reads
   * are a hint; the claim re-checks with CAS.
   */
  private findRun(n: number, align: number): number {
    const hwm = Atomics.load(this.mem, this.hdr + C.H_COMMITTED);
    for (let i = 0; i < this.arenaCount; i++) {
      const L = this.arenas[i];
      if (n === 1 && align === 1 && L.first < hwm) {
        const s = this.findPartlyUsedGroup(L, hwm);
        if (s >= 0) return s;
      }
      const s = this.findRunIn(L, n, align);
      if (s >= 0) return s;
    }
    return -1;
  }

  /**
   * A single slice prefers a group of 8 (one byte of the bitmap) that is
   * already partly used, so that wholly free, aligned groups stay whole for
   * medium (8-slice) and larger pages: a light form of mimalloc's chunk
   * bins, against small pages fragmenting freed runs. Only below the
   * high-water mark: it must never raise it when a lower slice is free.
   */
  private findPartlyUsedGroup(L: ArenaLayout, hwm: number): number {
    const m = this.mem;
    const fm = L.freeMap;
    const o = L.origin;
    const words = Math.min(L.sliceWords, (Math.min(hwm, L.end) - o + 31) >>> 5);
    for (let w = (L.first - o) >>> 5; w < words; w++) {
      const x = m[fm + w];
      if (x === 0 || x === -1) continue;
      for (let g = 0; g < 32; g += 8) {
        const byte = (x >>> g) & 0xff;
        if (byte !== 0 && byte !== 0xff) {
          const s = o + (w << 5) + g + ctz(byte);
          if (s >= L.first && s < L.end && s < hwm) return s;
        }
      }
    }
    return -1;
  }

  private findRunIn(L: ArenaLayout, n: number, align: number): number {
    const m = this.mem;
    const fm = L.freeMap - (L.origin >>> 5);
    const end = L.end;
    let s = (L.first + align - 1) & -align;
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

  /** Atomically clear the bits [s, s+n) (one arena) if all are set; false (and nothing changed) otherwise. */
  private tryClearRun(s: number, n: number): boolean {
    const m = this.mem;
    let i = s;
    const end = s + n;
    while (i < end) {
      const w = this.fw(i);
      const hi = Math.min(end, ((i >>> 5) + 1) << 5);
      const mask = wordMask(i, hi);
      for (;;) {
        const old = Atomics.load(m, w);
        if ((old & mask) !== mask) { // lost a race: give back what we took
          if (i > s) this.setRun(s, i - s);
          return false;
        }
        if (Atomics.compareExchange(m, w, old, old & ~mask) === old) break;
      }
      i = hi;
    }
    return true;
  }

  /** Set the free bits [s, s+n) (one arena; idempotent). */
  setRun(s: number, n: number): void {
    const m = this.mem;
    let i = s;
    const end = s + n;
    while (i < end) {
      const hi = Math.min(end, ((i >>> 5) + 1) << 5);
      Atomics.or(m, this.fw(i), wordMask(i, hi));
      i = hi;
    }
  }

  /**
   * Claim `n` contiguous free slices (start aligned to `align` slices) for the
   * agent whose record starts at word `agentBase`, growing the buffer when
   * no known arena has such a run and it may grow. Announces the intent
   * first; the caller clears it (`clearIntent`) once the page is fully
   * recorded. Returns the first slice, or -1. May replace the views
   * (`refresh`): callers re-read `mem` after it.
   */
  claimSlices(agentBase: number, n: number, align: number): number {
    for (let tries = 0; tries < 1000; tries++) {
      const s = this.findRun(n, align);
      if (s < 0) {
        if (this.stale()) { this.refresh(); continue; }
        if (this.grow(agentBase, n, align)) { this.refresh(); continue; }
        return -1;
      }
      const m = this.mem;
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
    const w = this.hdr + C.H_COMMITTED;
    for (;;) {
      const cur = Atomics.load(m, w);
      if (cur >= top || Atomics.compareExchange(m, w, cur, top) === cur) return;
    }
  }

  /** High-water mark of slices handed to pages (a slice number: arenas below it count whole). */
  committedSlices(): number {
    return Atomics.load(this.mem, this.hdr + C.H_COMMITTED);
  }

  /** Bytes of the known arenas' slices below the high-water mark, metadata excluded (stats `committed`). */
  committedBytes(): number {
    const hwm = this.committedSlices();
    let n = 0;
    for (let i = 0; i < this.arenaCount; i++) {
      const L = this.arenas[i];
      n += Math.max(0, Math.min(hwm, L.end) - L.first);
    }
    return n * C.SLICE_SIZE;
  }

  /** Bytes of metadata of the known arenas (header, bitmaps, page records; the NULL guard included). */
  metadataBytes(): number {
    let n = 0;
    for (let i = 0; i < this.arenaCount; i++) n += this.arenas[i].first - this.arenas[i].start;
    return n * C.SLICE_SIZE;
  }

  /** True if every slice in [s, s+n) was never part of a page; marks them as used now. */
  takeFresh(s: number, n: number): boolean {
    const m = this.mem;
    const knownZero = (m[this.hdr + C.H_OPTIONS] & C.OPT_KNOWN_ZERO) !== 0;
    let fresh = knownZero;
    for (let i = s; i < s + n; i++) {
      const old = Atomics.or(m, this.dmDir[i >>> C.DIR_SLICES_SHIFT] + (i >>> 5), 1 << (i & 31));
      if ((old & (1 << (i & 31))) !== 0) fresh = false;
    }
    return fresh;
  }
}
