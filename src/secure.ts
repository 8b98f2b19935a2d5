/**
 * secure.ts — what secure mode adds (mimalloc's MI_SECURE, adapted): random
 * keys, free-list link encoding, the canary formula, randomised extension
 * order, and the canary scan of a page that goes back to the buffer.
 *
 * Levels: ≥ 1 guard space after every page's last block (page.ts pageInit,
 * check.ts S1); ≥ 2 new blocks threaded in a random order (`shuffled`);
 * ≥ 3 links encoded with per-page keys and every block ending in a canary
 * and its requested size (I5; the padding layout is debug.ts's). The
 * encoded fast paths are allocator.ts's SecureAllocator, which inlines the
 * formulas below.
 *
 * Link encoding: enc(p) = imul(p ^ KEY1, KEY0) with KEY0 odd, so
 * dec(x) = imul(x, KEY0⁻¹) ^ KEY1 (`oddInverse`); NULL is enc(0).
 * (mimalloc's rotl(p ^ k1, k0) + k0 compiles to two variable shifts here,
 * ~0.7 ns per link more than a multiplication, which also mixes every bit
 * into all higher ones.)
 */
import type { Arena } from './arena.js';
import { C } from './types.js';

/** A random 32-bit key (crypto.getRandomValues where present). */
export function randomKey(): number {
  if (keyPoolNext === keyPool.length) {
    // one getRandomValues call per 256 keys: a call costs a few µs, and
    // secure mode takes two keys for every page it initialises
    const c = (globalThis as { crypto?: { getRandomValues(a: Uint32Array): Uint32Array } }).crypto;
    if (c) c.getRandomValues(keyPool);
    else for (let i = 0; i < keyPool.length; i++) keyPool[i] = Math.random() * 4294967296;
    keyPoolNext = 0;
  }
  return keyPool[keyPoolNext++] | 0;
}
const keyPool = new Uint32Array(256);
let keyPoolNext = keyPool.length;

/**
 * The canary at padding address `pad` of a page whose canary key is `key`
 * (R_CANARY; types.ts I5): the one formula every path uses (page extension,
 * the release scan, debug.ts's padding checks; allocator.ts's secure malloc
 * writes it out, for the reason given there).
 * Its low byte is CANARY_LOW_BYTE, not 0 as mimalloc's (#951): a NUL written
 * just past a request with no slack must change it (types.ts I5).
 */
export function canary(pad: number, key: number): number {
  return ((pad ^ key) & ~0xff) | C.CANARY_LOW_BYTE;
}

/** The inverse of an odd k modulo 2^32 (Newton's iteration: each step doubles the correct low bits, 3 → 48); 0 for k = 0. */
export function oddInverse(k: number): number {
  if (k === 0) return 0;
  let x = k; // k·k ≡ 1 (mod 8)
  for (let i = 0; i < 4; i++) x = Math.imul(x, 2 - Math.imul(k, x));
  return x;
}

/** xorshift32 state for secure mode's shuffles, seeded from crypto. */
let shuffleState = randomKey() | 1;
const shuffleScratch = new Int32Array((C.EXTEND_BYTES >>> C.WORD_SHIFT) + 1);

/**
 * 0..k−1 in a random order (Fisher–Yates over a reused scratch array;
 * k ≤ 4096/8 + 1 < 2^16). Each xorshift32 draw serves two swaps, 16 bits
 * each, scaled by an integer multiply-high ((r · (i + 1)) >>> 16 ∈ [0, i]):
 * ~25 instructions per block, about half of a float-scaled draw per swap.
 */
export function shuffled(k: number): Int32Array {
  const a = shuffleScratch;
  for (let i = 0; i < k; i++) a[i] = i;
  let x = shuffleState;
  for (let i = k - 1; i > 0; i--) {
    if ((i & 1) !== 0 || i === k - 1) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; }
    const r = (i & 1) !== 0 ? x & 0xffff : x >>> 16;
    const j = (r * (i + 1)) >>> 16;
    const t = a[i]; a[i] = a[j]; a[j] = t;
  }
  shuffleState = x;
  return a;
}

/**
 * Secure ≥ 3 extension of k new blocks at `first`: thread them in `order`
 * (null: address order) with encoded links, and give each its canary (I5),
 * in one pass over the blocks' padding (setLink inlined, keys loaded once).
 */
export function threadEncoded(a: Arena, rb: number, first: number, bs: number, k: number, order: Int32Array | null): void {
  const mem = a.mem;
  const meta = a.meta;
  const key = meta[rb + C.R_CANARY];
  const k0 = meta[rb + C.R_KEY0];
  const k1 = meta[rb + C.R_KEY1];
  for (let i = 0; i < k; i++) {
    const b = first + (order === null ? i : order[i]) * bs;
    const next = i + 1 === k ? 0 : first + (order === null ? i + 1 : order[i + 1]) * bs;
    const pad = b + bs - C.PADDING;
    mem[pad >>> 2] = canary(pad, key);
    mem[(pad >>> 2) + 1] = Math.imul(next ^ k1, k0); // setLink, LINK_FROM_END = 4
  }
}

/**
 * Secure ≥ 3: the first block of the page at or after block index `from`
 * whose canary is broken (I5), as its address, or 0. Run when a page goes
 * back to the buffer: the free fast path does not look at canaries, so an
 * overflow out of a block that is never handed out again is found here at
 * the latest. Cost: one load per block, once per page life.
 */
export function brokenCanary(a: Arena, rb: number, from: number): number {
  const meta = a.meta;
  const mem = a.mem;
  const key = meta[rb + C.R_CANARY];
  const ps = meta[rb + C.R_START] >>> 0;
  const bs = meta[rb + C.R_BLOCK_SIZE];
  const cap = meta[rb + C.R_CAPACITY];
  for (let i = from, pad = ps + (from + 1) * bs - C.PADDING; i < cap; i++, pad += bs) {
    if (mem[pad >>> 2] !== canary(pad, key)) return pad + C.PADDING - bs;
  }
  return 0;
}

/*
 * Secure 4's slack pattern: DEBUG_PAD_BYTE from the request's end e to the
 * end of e's 4-byte word (1–4 bytes; fewer if the slack d is shorter, none
 * if d = 0, where the canary follows at once). Every contiguous overrun
 * writes byte e, so it is caught at the free of its block, with one store at
 * malloc and one load at free: the next word too (a 4-byte pattern) cost
 * ~0.8 ns/op more on (a), 16 bytes ~6 ns (BENCHMARKS.md "Secure mode
 * overhead"); mimalloc and debug mode check 16 bytes of slack. For
 * allocator.ts's Secure4Allocator, out of the fast paths' bodies so that
 * those stay under V8's inlining limit (460 bytes of bytecode: over it,
 * malloc and free are calls, +2.7 ns/op); branch-free.
 */

/**
 * One whole-word store at e's word sw: its bytes before e are the new
 * block's own, not yet written (zalloc zeroes them at this level); with no
 * slack, e's word is the canary's, and the canary is what is stored.
 */
export function fillSlack(mem: Int32Array, sw: number, d: number, canaryWord: number): void {
  const v = (C.PAD4 & ((-d) >> 31)) | (canaryWord & ~((-d) >> 31));
  mem[sw] = v;
}

/** Is the size word at pad + 4 inside the block, and the pattern after the request intact? */
export function slackIntact(mem: Int32Array, pad: number, bs: number): boolean {
  const d = mem[(pad >>> 2) + 1];
  const e = (pad - d) | 0;
  const sw = e >>> 2;
  const r = (e & 3) << 3;
  return (d >>> 0) <= ((bs - C.PADDING) >>> 0) && (((mem[sw] ^ C.PAD4) >>> r) & ((-d) >> 31)) === 0;
}
