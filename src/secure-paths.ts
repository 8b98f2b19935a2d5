/**
 * secure-paths.ts — the fast paths of secure levels 3 and 4 (allocator.ts
 * draws every variant's steps side by side), registered into
 * `secureVariants` when this module loads (index.ts imports it).
 */
import { Allocator, secureVariants } from './allocator.js';
import type { Arena } from './arena.js';
import type { ErrorHandler } from './errors.js';
import { freeGeneric } from './free.js';
import { mallocGeneric } from './malloc.js';
import { takeLocalFree } from './page.js';
import { fillSlack, slackIntact } from './secure.js';
import { pageEmptied } from './theap.js';
import { C } from './types.js';

/**
 * Secure level 3: the same fast paths with encoded free-list links (page.ts
 * getLink/setLink, inlined) in the blocks' padding: malloc decodes the next
 * link and checks the popped block's canary, else the generic path reports
 * EFAULT and truncates or repairs; free encodes its link and reads nothing
 * from the block (the canary waits for the block's reuse: I5). ~40
 * instructions per malloc+free pair over the default paths (BENCHMARKS.md).
 *
 * Fast-path bins are small pages, whole and on a 64 KiB boundary at secure
 * ≥ 3 (asserted in bins.ts, kept by theap.ts freshPage), so "a link into
 * this page" is "8-byte aligned, in the block's 64 KiB region": an xor and
 * a mask (types.ts SECURE_LINK_MASK). A link that passes but is no block
 * start below capacity fails the next pop's canary check (a per-page-life key: a stale canary of an earlier
 * page in the slice does not pass).
 *
 * (*) secure.ts `canary(pad, key)`, written out (here and in Secure4Allocator):
 * an imported call costs a module-cell load and a hole check per malloc
 * (+0.4–0.6 ns/op, ~5% of (a), bench:secure --dists). Were the two to differ,
 * every pop would fall to popBlock, whose canaryOf check reports EFAULT.
 */
class SecureAllocator extends Allocator {
  static make(a: Arena, e: ErrorHandler | undefined): Allocator { return new SecureAllocator(a, e); }

  override malloc(n: number): number {
    if (typeof n === 'number' && (n >>> 0) === n && n <= C.SMALL_SIZE_MAX - C.PADDING) {
      const mem = this.mem;
      const rb = this.direct[(n + 7 + C.PADDING) >>> 3] & C.REC_BASE_MASK; // room for the padding
      let b = mem[rb + C.R_FREE] | 0; // (| 0: over a detached buffer, undefined → the generic path, which refreshes)
      if (b === 0 && (++this.refills & 63) !== 0) b = takeLocalFree(mem, rb); // every 64th: generic (retire heartbeat)
      if (b !== 0) {
        const bs = mem[rb + C.R_BLOCK_SIZE];
        // (the forms of padw and next measured fastest: ~0.6 ns each over (b >>> 2) + (bs >>> 2) − 2 and an int32 next)
        const padw = ((b >>> 0) + bs - C.PADDING) >>> 2; // the canary's word; the link (LINK_FROM_END = 4) follows
        const next = (Math.imul(mem[padw + 1], mem[rb + C.R_KEYINV]) ^ mem[rb + C.R_KEY1]) >>> 0; // page.ts getLink
        const aw = mem[rb + C.R_ADELTA] + (b >>> C.BITMAP_WORD_SHIFT);
        const bit = 1 << ((b >>> C.GRANULE_SHIFT) & 31);
        const a = mem[aw];
        // a link into the page (or NULL), an intact canary (I5) and a block that is not live (a
        // corrupted link that lands on a live block must not make two owners), else the generic path reports
        if ((next === 0 || ((next ^ b) & C.SECURE_LINK_MASK) === 0) &&
            mem[padw] === ((((padw << 2) ^ mem[rb + C.R_CANARY]) & ~0xff) | C.CANARY_LOW_BYTE) && (a & bit) === 0) { // (*)
          mem[rb + C.R_FREE] = next;
          mem[rb + C.R_USED] = (mem[rb + C.R_USED] + 1) | 0;
          mem[padw + 1] = (bs - C.PADDING - n) | 0; // the requested size over the link (debug.ts layout), before the A bit
          mem[aw] = a | bit;
          return b >>> 0;
        }
      }
    }
    return mallocGeneric(this.ag, n);
  }

  override free(p: number): void {
    if (typeof p === 'number' && (p >>> 0) === p && p < this.size && (p & 7) === 0) {
      const mem = this.mem;
      const w = p >>> C.BITMAP_WORD_SHIFT;
      const bit = 1 << ((p >>> C.GRANULE_SHIFT) & 31);
      let ai: number;
      let pb: number;
      if (((p - this.lo0) >>> 0) < this.len0) { // the first arena (all of a fixed buffer): its bases, no directory load
        ai = this.aBase0 + w;
        pb = this.pmBase0;
      } else {
        const d = (p >>> C.DIR_SHIFT) << 1;
        ai = this.fdir[d] + w;
        pb = this.fdir[d + 1];
      }
      const aw = mem[ai];
      if ((aw & bit) !== 0) {
        const rb = mem[pb + (p >>> C.SLICE_SHIFT)] & C.REC_BASE_MASK;
        if (mem[rb + C.R_OWNER] === this.fastTid && (mem[rb + C.R_FLAGS] & (C.F_ALIGNED | C.F_FULL | C.F_TRACKED)) === C.F_TRACKED &&
            mem[rb + C.R_XTHREAD_FREE] === 0) {
          // No load from the block: its canary is checked when it is handed out again (I5), so freeing
          // a cold block does not wait for memory (measured: +40 ns/op on (b) when checked here).
          const linkw = (p >>> 2) + (mem[rb + C.R_BLOCK_SIZE] >>> 2) - (C.LINK_FROM_END >>> 2);
          mem[ai] = aw ^ bit;
          const local = mem[rb + C.R_LOCAL_FREE];
          mem[linkw] = Math.imul(local ^ mem[rb + C.R_KEY1], mem[rb + C.R_KEY0]); // setLink, over delta: one cache line per free
          mem[rb + C.R_LOCAL_FREE] = p;
          const used = (mem[rb + C.R_USED] - 1) | 0;
          mem[rb + C.R_USED] = used;
          if (used === 0) pageEmptied(this.ag, rb);
          return;
        }
      }
    }
    freeGeneric(this.ag, p);
  }
}

/**
 * Secure level 4: level 3's fast paths plus mimalloc's padding check at every
 * free (MI_PADDING_CHECK): malloc writes 0xDE from the request's end to the
 * end of its 4-byte word (secure.ts fillSlack), and every free, this one
 * included, checks the canary, the size word and those bytes, so a one-byte
 * overrun is found at the free of its block (the generic path names the
 * first byte written, frees the block, then reports). Over level 3: a store
 * at malloc, two loads at free (BENCHMARKS.md "Secure mode overhead").
 */
class Secure4Allocator extends Allocator {
  static make(a: Arena, e: ErrorHandler | undefined): Allocator { return new Secure4Allocator(a, e); }

  override malloc(n: number): number {
    if (typeof n === 'number' && (n >>> 0) === n && n <= C.SMALL_SIZE_MAX - C.PADDING) {
      const mem = this.mem;
      const rb = this.direct[(n + 7 + C.PADDING) >>> 3] & C.REC_BASE_MASK; // room for the padding
      let b = mem[rb + C.R_FREE] | 0; // (| 0: over a detached buffer, undefined → the generic path, which refreshes)
      if (b === 0 && (++this.refills & 63) !== 0) b = takeLocalFree(mem, rb); // every 64th: generic (retire heartbeat)
      if (b !== 0) {
        const bs = mem[rb + C.R_BLOCK_SIZE];
        const padw = ((b >>> 0) + bs - C.PADDING) >>> 2;
        const next = (Math.imul(mem[padw + 1], mem[rb + C.R_KEYINV]) ^ mem[rb + C.R_KEY1]) >>> 0; // page.ts getLink
        const aw = mem[rb + C.R_ADELTA] + (b >>> C.BITMAP_WORD_SHIFT);
        const bit = 1 << ((b >>> C.GRANULE_SHIFT) & 31);
        const a = mem[aw];
        const cv = mem[padw];
        if ((next === 0 || ((next ^ b) & C.SECURE_LINK_MASK) === 0) &&
            cv === ((((padw << 2) ^ mem[rb + C.R_CANARY]) & ~0xff) | C.CANARY_LOW_BYTE) && (a & bit) === 0) { // secure.ts canary, as SecureAllocator
          mem[rb + C.R_FREE] = next;
          mem[rb + C.R_USED] = (mem[rb + C.R_USED] + 1) | 0;
          const d = (bs - C.PADDING - n) | 0;
          mem[padw + 1] = d; // the size word, then the slack pattern, then the A bit
          fillSlack(mem, ((b + n) | 0) >>> 2, d, cv);
          mem[aw] = a | bit;
          return b >>> 0;
        }
      }
    }
    return mallocGeneric(this.ag, n);
  }

  override free(p: number): void {
    if (typeof p === 'number' && (p >>> 0) === p && p < this.size && (p & 7) === 0) {
      const mem = this.mem;
      const w = p >>> C.BITMAP_WORD_SHIFT;
      const bit = 1 << ((p >>> C.GRANULE_SHIFT) & 31);
      let ai: number;
      let pb: number;
      if (((p - this.lo0) >>> 0) < this.len0) { // the first arena (all of a fixed buffer): its bases, no directory load
        ai = this.aBase0 + w;
        pb = this.pmBase0;
      } else {
        const d = (p >>> C.DIR_SHIFT) << 1;
        ai = this.fdir[d] + w;
        pb = this.fdir[d + 1];
      }
      const aw = mem[ai];
      if ((aw & bit) !== 0) {
        const rb = mem[pb + (p >>> C.SLICE_SHIFT)] & C.REC_BASE_MASK;
        if (mem[rb + C.R_OWNER] === this.fastTid && (mem[rb + C.R_FLAGS] & (C.F_ALIGNED | C.F_FULL | C.F_TRACKED)) === C.F_TRACKED &&
            mem[rb + C.R_XTHREAD_FREE] === 0) {
          const bs = mem[rb + C.R_BLOCK_SIZE];
          const pad = (p + bs - C.PADDING) | 0;
          const padw = pad >>> 2;
          // the canary (secure.ts canary, written out), a size word inside the block, the slack: else generic
          if (mem[padw] === (((pad ^ mem[rb + C.R_CANARY]) & ~0xff) | C.CANARY_LOW_BYTE) && slackIntact(mem, pad, bs)) {
            mem[ai] = aw ^ bit;
            const local = mem[rb + C.R_LOCAL_FREE];
            mem[padw + 1] = Math.imul(local ^ mem[rb + C.R_KEY1], mem[rb + C.R_KEY0]); // setLink, over the size word
            mem[rb + C.R_LOCAL_FREE] = p;
            const used = (mem[rb + C.R_USED] - 1) | 0;
            mem[rb + C.R_USED] = used;
            if (used === 0) pageEmptied(this.ag, rb);
            return;
          }
        }
      }
    }
    freeGeneric(this.ag, p);
  }
}

secureVariants[0] = SecureAllocator.make;
secureVariants[1] = Secure4Allocator.make;
