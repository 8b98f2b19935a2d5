/**
 * arena.ts — what an agent does to the arenas beyond reading them
 * (views.ts): growth (and a resizable ArrayBuffer's shrinking), and the
 * atomic slice bitmaps that pages are claimed from and returned to.
 *
 * Claiming is lock-free: find the lowest run of free slices (lowest first, so
 * the touched high-water mark stays low — there is no decommit inside a
 * SharedArrayBuffer), then clear its bits word by word with CAS, rolling back
 * on a lost race. Every claim and release is announced first in the agent's
 * *intent* record, so that whoever reaps a terminated agent can finish or
 * undo a multi-word update that agent died in the middle of (intent.ts
 * `recoverIntent`).
 *
 * Cost: a claim scans the free-slice bitmaps from the lowest slice, 32 slices
 * per word (a 1 GiB buffer is 2048 words), once per new page (≥ 16 KiB of
 * blocks), plus one CAS per bitmap word of the run.
 */
import { type ArenaLayout, Growth, arenaLayout, ctz, metaSlices, tableWord, wordMask } from './layout.js';
import { C } from './types.js';
import { ArenaViews } from './views.js';

/** One agent's Arena: its views (ArenaViews), growth, and the slice bitmaps. Every agent constructs its own. */
export class Arena extends ArenaViews {
  /** The agent this Arena object serves (each agent constructs its own): its record's word index (counters.ts). */
  agentBase = 0;
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
    const last = this.arenas[count - 1];
    if (last.end < last.cap) return this.regrow(last); // a resizable ArrayBuffer that shrank: its last arena first
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
      if (this.backing.growth === Growth.MEMORY) {
        const r = this.growMemory(count, st, en, want);
        if (r !== 0) return r > 0;
      } else {
        Atomics.store(m, h + C.H_GROW_START, st);
        Atomics.store(m, h + C.H_GROW_END, en);
        if (this.growBacking(en)) {
          this.publishArena(count, st, en);
          return true;
        }
      }
      if (t <= least) return false;
      t = Math.max(least, ((t >>> 1) + C.DIR_SLICES - 1) & ~(C.DIR_SLICES - 1));
    }
  }

  /**
   * A WebAssembly.Memory: grow it by enough pages for [st, en), then take
   * the pages `memory.grow` says were added (a module thread may have grown
   * it in between: what lies below them is the module's). 1: published, −1:
   * the pages came too late in the memory to hold the run (they stay unused),
   * 0: the memory refused (a smaller step may pass).
   */
  private growMemory(count: number, st: number, en: number, want: number): number {
    const mm = this.backing.memory!;
    const max = this.mem[this.hdr + C.H_MAX_SLICES];
    const cur = mm.buffer.byteLength;
    const delta = Math.ceil((en * C.SLICE_SIZE - cur) / 65536);
    let old: number;
    try {
      old = mm.grow(delta);
    } catch {
      return 0;
    }
    this.setViews(this.sliceCount); // a non-shared memory just detached the views this agent had
    this.onRefresh?.();
    const first = ((Math.ceil(old * 65536 / C.SLICE_SIZE)) + C.DIR_SLICES - 1) & ~(C.DIR_SLICES - 1);
    const last = Math.min(Math.floor((old + delta) * 65536 / C.SLICE_SIZE), max);
    if (last - first - metaSlices(last - first) < want) return -1;
    Atomics.store(this.mem, this.hdr + C.H_GROW_START, first);
    Atomics.store(this.mem, this.hdr + C.H_GROW_END, last);
    this.publishArena(count, first, last);
    return 1;
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
    Atomics.store(m, tw + C.T_CAP, en);
    Atomics.store(m, tw + C.T_END, en);
    Atomics.store(m, this.hdr + C.H_SLICE_COUNT, en);
    Atomics.store(m, this.hdr + C.H_ARENAS, index + 1);
    this.refresh();
  }

  /** Take a shrunk last arena back to its cap (resizable ArrayBuffer: one agent, nothing races). */
  private regrow(L: ArenaLayout): boolean {
    if (!this.growBacking(L.cap)) return false;
    this.setViews(L.cap);
    const m = this.mem;
    for (let s = L.end; s < L.cap; s++) m[this.fw(s)] |= 1 << (s & 31);
    m[tableWord(this.hdr) + (this.arenaCount - 1) * C.ARENA_WORDS + C.T_END] = L.cap;
    m[this.hdr + C.H_SLICE_COUNT] = L.cap;
    L.end = L.cap;
    this.sliceCount = L.cap;
    this.onRefresh?.();
    return true;
  }

  /**
   * Resizable ArrayBuffer: give the free tail of the buffer back
   * (`ArrayBuffer.prototype.resize`) once it has stayed free for
   * purgeDelay ms: the last arena shrinks to its highest page (rounded up
   * to 1 MiB), or goes whole if it holds none (the first keeps its created
   * size). Generic paths only; measures the tail only after a page release
   * (O(its bitmap words)), then looks at the clock until the delay passed.
   */
  maybePurge(): void {
    if (!this.purgeLook && this.purgeSince === 0) return;
    this.purgeLook = false;
    const count = this.arenaCount;
    const L = this.arenas[count - 1];
    const m = this.mem;
    let top = L.first; // end of the highest slice in use
    for (let s = L.end - 1; s >= L.first; s--) {
      const x = m[this.fw(s)];
      if (x === -1 && (s & 31) === 31 && s - 31 >= L.first) { s -= 31; continue; }
      if ((x & (1 << (s & 31))) === 0) { top = s + 1; break; }
    }
    let target = Math.max(count === 1 ? this.minEnd : L.first + 1, (top + C.DIR_SLICES - 1) & ~(C.DIR_SLICES - 1));
    if (count > 1 && top === L.first) target = L.start; // the whole arena
    if (target >= L.end) { this.purgeSince = 0; return; }
    const now = Date.now();
    if (this.purgeSince === 0) this.purgeSince = now;
    if (now - this.purgeSince < this.purgeDelay) return;
    this.purgeSince = 0;
    const h = this.hdr;
    let end = target;
    if (target === L.start) { // drop the arena: its bitmaps go with its memory
      this.arenas.pop();
      this.arenaCount = count - 1;
      this.setDirs(L.origin >>> C.DIR_SLICES_SHIFT, (L.cap + C.DIR_SLICES - 1) >>> C.DIR_SLICES_SHIFT, null);
      end = this.arenas[count - 2].end;
      m[h + C.H_ARENAS] = count - 1;
    } else { // the tail's slices stop being free (and dirty: they come back zero)
      for (let s = target; s < L.end; s++) {
        m[this.fw(s)] &= ~(1 << (s & 31));
        m[this.dmDir[s >>> C.DIR_SLICES_SHIFT] + (s >>> 5)] &= ~(1 << (s & 31));
      }
      m[tableWord(h) + (count - 1) * C.ARENA_WORDS + C.T_END] = target;
      L.end = target;
    }
    m[h + C.H_SLICE_COUNT] = end;
    if (m[h + C.H_COMMITTED] > end) m[h + C.H_COMMITTED] = end;
    this.sliceCount = end;
    (this.backing.buffer as ArrayBuffer & { resize(n: number): void }).resize(end * C.SLICE_SIZE);
    this.setViews(end);
    this.purgeLook = true; // the next generic call measures the new tail (its own delay)
    this.onRefresh?.();
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
    const hwm = n === 1 && align === 1 ? Atomics.load(this.mem, this.hdr + C.H_COMMITTED) : 0; // (a fence: only when used)
    for (let i = 0; i < this.arenaCount; i++) {
      const L = this.arenas[i];
      if (L.first < hwm) {
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
      if (this.tryClaim(agentBase, s, n)) return s;
    }
    return -1;
  }

  /** Claim [s, s+n) (one arena) if all of it is free, announced in the agent's intent first (cleared again if it fails). */
  private tryClaim(agentBase: number, s: number, n: number): boolean {
    const m = this.mem;
    Atomics.store(m, agentBase + C.A_INTENT_START, s);
    Atomics.store(m, agentBase + C.A_INTENT_COUNT, n);
    Atomics.store(m, agentBase + C.A_INTENT_OP, C.INTENT_CLAIM);
    if (this.tryClearRun(s, n)) {
      this.noteCommitted(s + n);
      return true;
    }
    Atomics.store(m, agentBase + C.A_INTENT_OP, C.INTENT_NONE);
    return false;
  }

  /**
   * Claim the n slices at s exactly (a huge page growing in place: malloc.ts
   * growHuge), if they are free and in one arena: the claim is announced as
   * claimSlices' is (the caller clears it). False, nothing changed, otherwise.
   */
  claimAt(agentBase: number, s: number, n: number): boolean {
    let inOne = false;
    for (let i = 0; i < this.arenaCount; i++) {
      const L = this.arenas[i];
      if (s >= L.first && s + n <= L.end) inOne = true;
    }
    return inOne && this.tryClaim(agentBase, s, n);
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
