// Read-only peeks at page records, used by test/abuse.test.js only to *define* the two
// documented exceptions of the error contract (docs/API-NOTES.md "Errors"):
//  - "an address that was never handed out but sits exactly on a free block's start inside a
//    live page may be reported as EAGAIN"  → isBlockStartInLivePage()
//  - "a second free of a huge (singleton) block whose page was returned reports EINVAL"
//                                          → isSingleton() at allocation time
// It never decides what the allocator should report otherwise. Layout from src/types.ts
// (page records: REC_WORDS words per slice; R_STATE 0, R_BLOCK_SIZE 1, R_CAPACITY 17,
// R_FLAGS 13 with the bin in bits 0-7 and F_ALIGNED 1<<10, R_START 20; BIN_HUGE 73; 64 KiB slices).
// No module side effects: node --test also runs this file as a test file.

const SLICE_SHIFT = 16;
const R_STATE = 0;
const R_BLOCK_SIZE = 1;
const R_CAPACITY = 17;
const R_FLAGS = 13;
const R_START = 20;
const STATE_IN_USE = 1;
const FLAG_BIN_MASK = 0xff;
const BIN_HUGE = 73;
const F_ALIGNED = 1 << 10;

/** The page in use that covers address x, or null. */
export function pageAt(a, x) {
  const arena = a.arena;
  if (!(x >= 0 && x < arena.size)) return null;
  const rb = arena.pageMap[x >>> SLICE_SHIFT];
  if (rb === 0) return null;
  const mem = arena.mem;
  if (Atomics.load(mem, rb + R_STATE) !== STATE_IN_USE) return null;
  return {
    start: mem[rb + R_START] >>> 0,
    blockSize: mem[rb + R_BLOCK_SIZE],
    capacity: mem[rb + R_CAPACITY],
    bin: mem[rb + R_FLAGS] & FLAG_BIN_MASK,
    aligned: (mem[rb + R_FLAGS] & F_ALIGNED) !== 0, // for failure messages only
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
  return pg !== null && pg.bin === BIN_HUGE;
}

/** The first slice at or after `from` (cyclically, after the header) that no page covers, or -1. */
export function freeSliceFrom(a, from) {
  const arena = a.arena;
  const h = arena.headerSlices;
  const n = arena.sliceCount - h;
  for (let i = 0; i < n; i++) {
    const s = h + ((from - h + i) % n + n) % n;
    if (arena.pageMap[s] === 0) return s;
  }
  return -1;
}

export function headerBytes(a) {
  return a.arena.headerSlices << SLICE_SHIFT;
}

/** x is a block freed by another agent and not yet collected by its owner (its A and R bits are both set). */
export function isPendingRemoteFree(a, x) {
  if (!(x >= 0 && x < a.arena.size) || x % 8 !== 0) return false;
  const w = x >>> 8;
  const bit = 1 << ((x >>> 3) & 31);
  return (a.arena.aBits[w] & bit) !== 0 && (Atomics.load(a.arena.rBits, w) & bit) !== 0;
}
