/**
 * bins.ts — mimalloc's size classes: four bins per power of two, counted in
 * 8-byte words, with every word size up to 64 B a bin of its own; eight per
 * power of two above 16 KiB.
 *
 *   wsize = ⌈n / 8⌉ (0 counts as 1)
 *   wsize ≤ 8            → bin = max(wsize, 2) (16, 24, … 64 B; types.ts MIN_BLOCK)
 *   wsize > 65536 words  → BIN_HUGE (singleton pages)
 *   otherwise            w = wsize − 1, b = ⌊log2 w⌋,
 *     b < FINE_LOG       → bin = 4b + ((w >> (b−2)) & 3) − 3
 *     b ≥ FINE_LOG       → bin = 4·FINE_LOG − 3 + 8(b − FINE_LOG) + ((w >> (b−3)) & 7)
 *
 * The block size of a bin is the largest request that maps to it, so the
 * waste of a block is below 1/4 of the request (≤ 12.5 % on average), above
 * 16 KiB below 1/8 (≤ 6 %). Why finer there: those blocks sit in pages of
 * 1–8 blocks (bins.ts fittedPageSlices), so more bins add little partly used
 * space per agent, while in a bounded buffer filled with blocks up to
 * 256 KiB the rounding was the largest loss left (bench:fill: +1.5–2.5 points
 * with one agent, about +1 with four; sixteen per power of two lost with four).
 */
import { checkSize } from './errors.js';
import { C } from './types.js';

/** @internal Bin of a request of `wsize` 8-byte words (wsize ≥ 0). */
export function binOfWsize(wsize: number): number {
  // mimalloc's 64-bit build rounds to even word counts here (bins 3, 5, 7
  // unused) to give every block 16-byte alignment; blocks here promise 8, and
  // the odd bins save a quarter to a third of the memory of 17..24, 33..40
  // and 49..56-byte requests (and of 9..16-byte ones with secure padding)
  if (wsize <= 8) return wsize <= 2 ? 2 : wsize; // (bin 1, 8-byte blocks, unused: types.ts MIN_BLOCK)
  if (wsize > C.LARGE_OBJ_WSIZE_MAX) return C.BIN_HUGE;
  const w = wsize - 1;
  const b = 31 - Math.clz32(w);
  if (b < C.FINE_LOG) return ((b << 2) + ((w >>> (b - 2)) & 3)) - 3;
  return (C.FINE_LOG << 2) - 3 + ((b - C.FINE_LOG) << 3) + ((w >>> (b - 3)) & 7);
}

/** @internal Bin of a request of `size` bytes. */
export function binOf(size: number): number {
  return binOfWsize((size + 7) >>> C.WORD_SHIFT);
}

/** @internal Block size in bytes of each bin (0 for unused bins and the huge/full bins). */
export const BIN_BLOCK_SIZE = new Int32Array(C.BIN_COUNT);
/** @internal Slices of a fresh page for each bin (small 4, medium 8, large fitted: bins.ts fittedPageSlices). */
export const BIN_PAGE_SLICES = new Int32Array(C.BIN_COUNT);
/**
 * @internal Slices of the first page a theap takes for a small bin (types.ts
 * FIRST_PAGE_BLOCKS): the fewest of 1, 2, 4 that hold FIRST_PAGE_BLOCKS blocks.
 */
export const BIN_FIRST_PAGE_SLICES = new Int32Array(C.BIN_COUNT);
/** @internal The same with SECURE_GUARD bytes kept after the last block (secure ≥ 1): an exact fit would hold one block less. */
export const BIN_PAGE_SLICES_GUARDED = new Int32Array(C.BIN_COUNT);
/** @internal For the fast path: bin of each wsize 0..SMALL_WSIZE_MAX. */
export const WSIZE_BIN = new Uint8Array(C.SMALL_WSIZE_MAX + 1);

(function initBins(): void {
  for (let w = 1; w <= C.LARGE_OBJ_WSIZE_MAX; w++) {
    const b = binOfWsize(w);
    BIN_BLOCK_SIZE[b] = w << C.WORD_SHIFT; // increasing w: the last write is the largest
  }
  for (let b = 0; b < C.BIN_COUNT; b++) {
    const bs = BIN_BLOCK_SIZE[b];
    if (bs === 0) continue;
    BIN_PAGE_SLICES[b] = bs <= C.SMALL_OBJ_SIZE_MAX ? C.SMALL_PAGE_SLICES
      : bs <= C.MEDIUM_OBJ_SIZE_MAX ? C.MEDIUM_PAGE_SLICES : fittedPageSlices(bs, 0);
    BIN_PAGE_SLICES_GUARDED[b] = bs <= C.MEDIUM_OBJ_SIZE_MAX ? BIN_PAGE_SLICES[b] : fittedPageSlices(bs, C.SECURE_GUARD);
    let first = 1;
    while (first < C.SMALL_PAGE_SLICES && first * C.SLICE_SIZE < C.FIRST_PAGE_BLOCKS * bs) first *= 2;
    BIN_FIRST_PAGE_SLICES[b] = bs <= C.SMALL_OBJ_SIZE_MAX ? first : BIN_PAGE_SLICES[b];
  }
  for (let w = 0; w <= C.SMALL_WSIZE_MAX; w++) WSIZE_BIN[w] = binOfWsize(w);
  // load-time checks of what types.ts cannot derive
  // the secure fast path's link check (types.ts SECURE_LINK_MASK) relies on it
  if (BIN_PAGE_SLICES[WSIZE_BIN[C.SMALL_WSIZE_MAX]] !== C.SMALL_PAGE_SLICES || BIN_PAGE_SLICES_GUARDED[WSIZE_BIN[C.SMALL_WSIZE_MAX]] !== C.SMALL_PAGE_SLICES) {
    throw new Error('invariant: fast-path bins live in small pages');
  }
  if (binOfWsize(C.LARGE_OBJ_WSIZE_MAX) !== C.BIN_LARGE_MAX) throw new Error('invariant: BIN_LARGE_MAX is the bin of LARGE_OBJ_SIZE_MAX');
  if (binOfWsize(C.LARGE_OBJ_WSIZE_MAX + 1) !== C.BIN_HUGE) throw new Error('invariant: larger requests map to BIN_HUGE');
  if (C.H_ABANDONED_COUNT + C.ABANDONED_BINS > C.H_FIXED_WORDS) throw new Error('invariant: the abandoned counters fit in the fixed header words');
  for (let b = 0; b < C.BIN_COUNT; b++) { // every page holds a block, guard or not
    const bs = BIN_BLOCK_SIZE[b];
    if (bs === 0) continue;
    if (BIN_PAGE_SLICES[b] * C.SLICE_SIZE < bs || BIN_PAGE_SLICES_GUARDED[b] * C.SLICE_SIZE < bs + C.SECURE_GUARD) {
      throw new Error(`invariant: the pages of bin ${b} hold a block of ${bs} bytes`);
    }
  }
})();

/**
 * Slices of a page for blocks of bs > MEDIUM_OBJ_SIZE_MAX bytes: the fewest
 * (searching up to GROW_MAX_SLICES) whose tail after the last block is at
 * most an eighth of the page, else the one with the smallest tail. In a
 * bounded buffer every slice a page reserves is gone for everything else,
 * and each agent keeps a partly used page per size class: mimalloc's
 * 4 MiB large pages kept most of a 64 MiB buffer in pages with a few
 * blocks each (bench:fill). Block sizes here are multiples of 4 KiB or
 * finer, so a few slices usually hold whole blocks with no tail at all
 * (28 KiB blocks: 7 slices, 4 blocks; 96 KiB: 6 slices, 1 block). Cost:
 * more page initialisations per block (a page holds 1–8 blocks instead of
 * v3's 8–170), which theap.ts freshPage buys back for bins that churn by
 * growing their pages (types.ts GROW_MAX).
 */
function fittedPageSlices(bs: number, guard: number): number {
  let best = 0;
  let bestTail = 1;
  const least = Math.max(1, Math.ceil((bs + guard) / C.SLICE_SIZE));
  for (let n = least; n <= Math.max(least, C.GROW_MAX_SLICES); n++) {
    const bytes = n * C.SLICE_SIZE;
    const tail = (bytes - Math.floor((bytes - guard) / bs) * bs) / bytes;
    if (tail <= 1 / 8) return n;
    if (best === 0 || tail < bestTail) { best = n; bestTail = tail; }
  }
  return best;
}

/** @internal Bytes per block in a singleton page for a request of `size` bytes: whole slices. */
export function hugeBlockSize(size: number): number {
  return Math.ceil(Math.max(size, 1) / C.SLICE_SIZE) * C.SLICE_SIZE;
}

/** @internal mimalloc's `mi_good_size` of a validated size, in default mode. */
export function goodSizeOf(size: number): number {
  if (size > C.LARGE_OBJ_SIZE_MAX) return hugeBlockSize(size); // (binOf works on u32 sizes only)
  const bin = binOf(size);
  return bin === C.BIN_HUGE ? hugeBlockSize(size) : BIN_BLOCK_SIZE[bin];
}

/**
 * @internal The usable size a validated request of `size` bytes gets in an
 * allocator's modes: padded modes (debug, secure ≥ 3) give exactly the
 * request; secure ≥ 1 keeps a guard after a singleton block.
 */
export function goodSizeIn(padded: boolean, secure: number, size: number): number {
  if (padded) return size;
  if (secure > 0 && size > C.LARGE_OBJ_SIZE_MAX) return Math.ceil((size + C.SECURE_GUARD) / C.SLICE_SIZE) * C.SLICE_SIZE - C.SECURE_GUARD;
  return goodSizeOf(size);
}

/**
 * mimalloc's `mi_good_size`: the usable size a request of `n` bytes gets from
 * an allocator in default mode (no padding, no guard; `Allocator.goodSize`
 * answers for a given allocator's modes). TypeError / RangeError for
 * anything but a non-negative integer, as every method.
 */
export function goodSize(n: number): number {
  return goodSizeOf(checkSize('size', n));
}
