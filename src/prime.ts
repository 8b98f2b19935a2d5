/**
 * prime.ts — before the first allocator of a mode in a thread is handed out,
 * every path runs a few times on a scratch buffer of 8 MiB.
 *
 * Why: V8 optimizes a function with the type feedback its calls gathered so
 * far, and a call or operation that never ran has none. When optimized code
 * first meets one it deoptimizes the function and everything it was inlined
 * into, and runs them unoptimized until they are hot again and recompiled
 * (allocSize: 18 ms of compiling on this machine). A program meets its first
 * huge block, aligned block or remote free long after the common paths were
 * optimized: measured on a cold replay of node-tsc (DESIGN.md §6: a fresh
 * worker, 250 ms of warm-up on a synthetic mix), mallocGeneric and
 * allocSize deoptimized at its first huge block and findPage, freshPage and
 * the page queue ran unoptimized for tens of milliseconds. Primed, they meet
 * nothing new.
 *
 * Cost: once per thread and mode (secure level, checkFree, shared or not),
 * a few milliseconds and an 8 MiB buffer that is garbage afterwards (its
 * pages are touched only where the sequence allocates). Never for debug
 * mode or allocStacks (every call is generic and slow there anyway). A
 * failure here is an allocator bug; it is not reported at create (the
 * allocator asked for does not depend on the scratch one): test/prime.test.js
 * runs the sequence strictly.
 */
import { Allocator, primer } from './allocator.js';
import type { AllocatorOptions } from './options.js';

/** Modes primed in this thread (secure·4 + noCheck·2 + shared). */
const done = new Set<number>();

/** Rounds of the sequence: V8 allocates a function's feedback vector after its first few calls, so one round is not enough. */
const ROUNDS = 4;
/** Sizes one round allocates: every page kind (small, medium, large, huge) and both sides of 1 KiB. */
const SIZES = [8, 40, 200, 1000, 1500, 5000, 20000, 70000, 200000, 600000];

function register(secure: number, noCheck: boolean, shared: boolean): void {
  const key = secure * 4 + (noCheck ? 2 : 0) + (shared ? 1 : 0);
  if (done.has(key)) return;
  done.add(key); // first: the scratch allocator's own create must not prime again
  try {
    primeMode({ secure: secure as AllocatorOptions['secure'], checkFree: !noCheck, shared }).detach();
  } catch {
    // (see the header)
  }
}

/**
 * @internal The sequence, on a scratch allocator of the given mode, with a second
 * agent for the remote paths (none without shared memory). Returns the
 * first agent's allocator, every block freed and the second agent detached
 * (test/prime.test.js checks it).
 */
export function primeMode(mode: AllocatorOptions): Allocator {
  const a = Allocator.create({ size: 8 << 20, ...mode });
  const b = mode.shared === false ? null : Allocator.attach(a.handle);
  const held: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const n of SIZES) {
      held.push(a.malloc(n), a.malloc(n), a.calloc(1, n), a.zalloc(n >>> 1));
      a.usableSize(held[held.length - 1]);
    }
    held.push(a.mallocAligned(100, 64), a.mallocAligned(3000, 4096), a.mallocAligned(100, 128 << 10));
    let p = a.realloc(0, 16);
    p = a.realloc(p, 24); // in place
    p = a.realloc(p, 5000); // moves
    p = a.realloc(p, 3000); // shrinks in place
    p = a.realloc(p, 700000); // to a huge block
    p = a.realloc(p, 100); // from one
    held.push(p);
    const full: number[] = [];
    for (let i = 0; i < 8; i++) full.push(a.malloc(20000)); // a full medium page, then a free into it
    for (const q of full) a.free(q);
    if (b !== null) {
      const mine: number[] = [];
      for (let i = 0; i < 16; i++) mine.push(b.malloc(SIZES[i % SIZES.length]));
      for (const q of mine) a.free(q); // remote frees into b's pages
      for (let i = 0; i < 8; i++) b.free(b.malloc(SIZES[i % 4])); // b collects them
      b.collect(false);
    }
    for (const q of held) a.free(q);
    held.length = 0;
    if ((r & 3) === 3) a.collect(true); // retired pages go back to the slices
  }
  if (b !== null) b.detach();
  return a;
}

primer.run = register;
