/**
 * layout.ts — the buffer as a list of mimalloc arenas: where each arena's
 * metadata lies (arena.ts reads it through per-agent views and
 * directories, grows the buffer and claims slices), and the readers of a
 * page record's init fields.
 *
 * ```
 *  0     base                                            H_SLICE_COUNT·16K     maxSize
 *  ├ (the module's, with `memory`) ┤├ arena 0 ─────────┤├ arena 1 ──────┤ … ┤ (growth) ┤
 *  arena 0: ├ NULL guard 4K ┤ fixed words │ agents │ arena table │ its regions ┤ slices … ┤
 *  arena i: ├ its regions ────────────────────────────────────────────────────┤ slices … ┤
 *  regions: free slices │ dirty slices │ abandoned bitmaps │ page map │ page records │ A │ R
 * ```
 *
 * Every arena carries the metadata of its own slices (types.ts lists the
 * regions), so a buffer that starts at 1 MiB and grows to 4 GiB never needs
 * a header sized for 4 GiB. Addresses and slice numbers stay global: slice
 * s is the bytes [s·16K, (s+1)·16K) of the buffer whatever arena holds it.
 * An agent finds the metadata of slice s or address q through per-1 MiB
 * directories (`fdir[(q >>> 20) << 1] + (q >>> 8)` is q's A-bitmap word in `mem`):
 * one load from a small agent-local table more than a fixed base would
 * cost, on the free fast path only (BENCHMARKS.md "Growable memory").
 *
 * Growth (mimalloc's arena reservation, here `SharedArrayBuffer.grow`,
 * `ArrayBuffer.resize` or `WebAssembly.Memory.grow`) is one agent at a time
 * (H_GROW_LOCK) and appends an arena of at least a quarter of what exists;
 * its memory is fresh (zero), so formatting it is setting its free bits.
 * It is published by H_ARENAS last. Other agents see it at their next
 * generic call (`refresh`): their fixed-length views end where the buffer
 * ended when they last looked, and the fast paths never reach past them
 * (`p < size`).

 */
import { C } from './types.js';

/** Word offsets (absolute, in `mem`) of one arena's regions. */
export interface ArenaLayout {
  /**
   * First slice (of its metadata), end slice, first slice pages may use,
   * and the end its metadata covers (end < cap only after a resizable
   * ArrayBuffer shrank; growth first takes the arena back to cap).
   */
  start: number;
  end: number;
  cap: number;
  first: number;
  /** The slice its bitmaps and tables count from: `start` rounded down to 1 MiB. */
  origin: number;
  sliceWords: number;
  freeMap: number;
  dirtyMap: number;
  abandoned: number;
  pageMap: number;
  records: number;
  aBits: number;
  rBits: number;
  /** First word after its metadata. */
  metaEnd: number;
}

/** Word index of the header of an allocator whose first arena starts at slice s0. */
export function headerWord(s0: number): number {
  return (s0 << (C.SLICE_SHIFT - 2)) + C.NULL_GUARD_WORDS;
}

/** Word index of the arena table. */
export function tableWord(hdr: number): number {
  return hdr + C.H_FIXED_WORDS + C.MAX_AGENTS * C.AGENT_WORDS;
}

/**
 * Word index of the zero region: ZERO_WORDS words in the first arena's
 * header that nothing ever writes. The directories of addresses no arena
 * covers (below `base`, in a gap left by growth) point into it, so an A-bit
 * test of such an address reads 0 and its page map entry reads "no page",
 * on the fast paths too, with no range check beyond `p < size`.
 */
export function zeroWord(hdr: number): number {
  return tableWord(hdr) + C.MAX_ARENAS * C.ARENA_WORDS;
}

/** The layout of the arena [start, end); `hdr` ≥ 0 if it is the first (the header precedes its regions). */
export function arenaLayout(start: number, end: number, hdr: number): ArenaLayout {
  const origin = start & ~(C.DIR_SLICES - 1);
  // to the end of its last MiB: the directory sends that whole MiB here, so an address past
  // `end` in it (a gap before the next arena) must find zero A bits, not the next region
  const n = ((end + C.DIR_SLICES - 1) & ~(C.DIR_SLICES - 1)) - origin;
  const sliceWords = (n + 31) >>> 5;
  const freeMap = hdr >= 0 ? zeroWord(hdr) + C.ZERO_WORDS : start << (C.SLICE_SHIFT - 2);
  const dirtyMap = freeMap + sliceWords;
  const abandoned = dirtyMap + sliceWords;
  const pageMap = abandoned + C.ABANDONED_BINS * sliceWords;
  const records = (pageMap + n + C.REC_WORDS - 1) & ~(C.REC_WORDS - 1);
  const aBits = records + n * C.REC_WORDS;
  const rBits = aBits + (n << (C.SLICE_SHIFT - C.BITMAP_WORD_SHIFT)); // 64 words per slice
  const metaEnd = rBits + (n << (C.SLICE_SHIFT - C.R_WORD_SHIFT)); // 32 per slice
  const first = Math.ceil(metaEnd / (1 << (C.SLICE_SHIFT - 2)));
  return { start, end, cap: end, first, origin, sliceWords, freeMap, dirtyMap, abandoned, pageMap, records, aBits, rBits, metaEnd };
}

/** Metadata slices of an arena of n slices that is not the first (~3.2 %). */
export function metaSlices(n: number): number {
  const L = arenaLayout(0, n, -1);
  return L.first;
}

/** Bits [i, hi) of the bitmap word holding bit i (hi ≤ the end of that word). */
export function wordMask(i: number, hi: number): number {
  const cnt = hi - i;
  return cnt === 32 ? -1 : (((1 << cnt) - 1) << (i & 31));
}

export function ctz(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** Set bits of a 32-bit word. */
export function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** How the buffer can grow. */
export const enum Growth {
  FIXED = 0,
  /** A growable SharedArrayBuffer (`grow`). */
  SAB = 1,
  /** A resizable ArrayBuffer (`resize`). */
  RAB = 2,
  /** A WebAssembly.Memory (`grow`, in 64 KiB pages; a non-shared one detaches its old buffer). */
  MEMORY = 3,
}

/** The part of a WebAssembly.Memory used here (the build has no wasm typings; options.ts WasmMemory). */
export interface MemoryLike {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(deltaPages: number): number;
}

/** What an agent's Arena is built over. */
export interface Backing {
  /** The buffer as given (for MEMORY: the memory's buffer when the Arena was made). */
  buffer: ArrayBufferLike;
  memory: MemoryLike | null;
  growth: Growth;
  /** First slice of the first arena (ceil(base / 16 KiB)). */
  baseSlice: number;
}

// ---------------------------------------------------------------------------
// Reading a page record (any agent may: these fields are written once, by
// pageInit, before STATE publishes the page; see types.ts "who may touch")
// ---------------------------------------------------------------------------

/** First byte of the page whose record base is `rb`. */
export function pageStart(meta: Int32Array, rb: number): number {
  return meta[rb + C.R_START] >>> 0;
}

/** First slice of the page whose record base is `rb`. */
export function pageSlice(meta: Int32Array, rb: number): number {
  return meta[rb + C.R_START] >>> C.SLICE_SHIFT;
}

/** Bin of a page. */
export function pageBin(meta: Int32Array, rb: number): number {
  return meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK;
}

/** Start of the block containing address q (q inside the page). One division: aligned pages only. */
export function blockStartOf(meta: Int32Array, rb: number, q: number): number {
  const ps = pageStart(meta, rb);
  const bs = meta[rb + C.R_BLOCK_SIZE];
  return ps + Math.floor((q - ps) / bs) * bs;
}

/** Does the block at b (of size bs) have any A bit set (the block is live)? */
export function blockIsLive(a: { readonly mem: Int32Array; aw(q: number): number }, b: number, bs: number, aligned: boolean): boolean {
  const m = a.mem;
  if (!aligned) return (m[a.aw(b)] & (1 << ((b >>> C.GRANULE_SHIFT) & 31))) !== 0;
  for (let g = b; g < b + bs; g += 8) {
    if ((m[a.aw(g)] & (1 << ((g >>> C.GRANULE_SHIFT) & 31))) !== 0) return true;
  }
  return false;
}

/** What the NULL-guard readers need of an Arena. */
export interface GuardView {
  readonly mem: Int32Array;
  readonly u8: Uint8Array;
  readonly baseSlice: number;
}

/**
 * Words [from, to) of the NULL guard (the first NULL_GUARD bytes of the
 * first arena, which hold nothing): its first non-zero byte described, or
 * null. With base 0 that is a write through a NULL pointer (`f64[p >>> 3]
 * = x` after malloc returned 0): it corrupts nothing. `clearNullGuard`
 * zeroes it again, so that it is reported once.
 */
export function nullGuardWrite(a: GuardView, from: number, to: number): string | null {
  const mem = a.mem;
  const w0 = a.baseSlice << (C.SLICE_SHIFT - 2);
  for (let w = w0 + from; w < w0 + to; w++) {
    if (mem[w] === 0) continue;
    let off = w * 4;
    while (a.u8[off] === 0) off++;
    const what = `byte 0x${a.u8[off].toString(16)}`;
    return a.baseSlice === 0
      ? `write through NULL at offset ${off} (${what}): the first ${C.NULL_GUARD} bytes of the buffer hold no allocator state and no block`
      : `write at 0x${off.toString(16)} (${what}), in the ${C.NULL_GUARD} bytes at the start of the allocator's region that hold no state and no block`;
  }
  return null;
}

/** Zero the NULL guard again (after its write was reported: reported once). */
export function clearNullGuard(a: GuardView): void {
  const w0 = a.baseSlice << (C.SLICE_SHIFT - 2);
  a.mem.fill(0, w0, w0 + C.NULL_GUARD_WORDS);
}
