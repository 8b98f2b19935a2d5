// Read-only peeks at page records, used by test/abuse.test.js only to *define* the two
// documented exceptions of the README's error contract:
//  - "an address that was never handed out but sits exactly on a free block's start inside a
//    live page may be reported as EAGAIN"  → isBlockStartInLivePage()
//  - "a second free of a huge (singleton) block whose page was returned reports EINVAL"
//                                          → isSingleton() at allocation time
// It never decides what the allocator should report otherwise. The layout (page-record
// offsets R_*, flags, bins, slice and bitmap geometry) is the build's: `C` of dist/types.js
// (the const enum of src/types.ts, emitted at run time by preserveConstEnums). The arrays are
// the allocator's internal `arena` (mem, its directory lookups pm/aw/rw, size, arenas).
// A helper module, not a test file: nothing runs when it is loaded.
import { C } from '../../dist/types.js';

/** The page in use that covers address x, or null. */
export function pageAt(a, x) {
  const arena = a.arena;
  if (!(x >= 0 && x < arena.size)) return null;
  const rb = arena.mem[arena.pm(x >>> C.SLICE_SHIFT)];
  if (rb === 0) return null;
  const mem = arena.mem;
  if (Atomics.load(mem, rb + C.R_STATE) !== C.STATE_IN_USE) return null;
  return {
    start: mem[rb + C.R_START] >>> 0,
    blockSize: mem[rb + C.R_BLOCK_SIZE],
    capacity: mem[rb + C.R_CAPACITY],
    bin: mem[rb + C.R_FLAGS] & C.FLAG_BIN_MASK,
    aligned: (mem[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0, // for failure messages only
  };
}

/** x is exactly the start of an initialised block slot (below capacity) of a page in use. */
export function isBlockStartInLivePage(a, x) {
  if (x % 8 !== 0) return false;
  const pg = pageAt(a, x);
  if (pg === null) return false;
  const off = x - pg.start;
  return off >= 0 && off % pg.blockSize === 0 && off / pg.blockSize < pg.capacity;
}

/** The hidden block start of the block containing q (q itself unless q is an aligned address inside it). */
export function blockStartOf(a, q) {
  const pg = pageAt(a, q);
  if (pg === null) return q;
  return pg.start + Math.floor((q - pg.start) / pg.blockSize) * pg.blockSize;
}

/** q lies in a singleton (huge) page. */
export function isSingleton(a, q) {
  const pg = pageAt(a, q);
  return pg !== null && pg.bin === C.BIN_HUGE;
}

/** The first slice at or after `from` (cyclically, over the arenas' page slices) that no page covers, or -1. */
export function freeSliceFrom(a, from) {
  const arena = a.arena;
  const slices = [];
  for (const L of arena.arenas) for (let s = L.first; s < L.end; s++) slices.push(s);
  const n = slices.length;
  const k = slices.findIndex((s) => s >= from);
  for (let i = 0; i < n; i++) {
    const s = slices[((k < 0 ? 0 : k) + i) % n];
    if (arena.mem[arena.pm(s)] === 0) return s;
  }
  return -1;
}

export function headerBytes(a) {
  return a.arena.headerSlices * C.SLICE_SIZE;
}

/** x is a block freed by another agent and not yet collected by its owner (its A and R bits are both set). */
export function isPendingRemoteFree(a, x) {
  if (!(x >= 0 && x < a.arena.size) || x % 8 !== 0) return false;
  const arena = a.arena;
  const bit = 1 << ((x >>> C.GRANULE_SHIFT) & 31);
  const rbit = 1 << ((x >>> C.R_GRANULE_SHIFT) & 31);
  return (arena.mem[arena.aw(x)] & bit) !== 0 && (Atomics.load(arena.mem, arena.rw(x)) & rbit) !== 0;
}
