/**
 * counters.ts — statistics kept as counters, so that `stats()` reads
 * O(agents + tracked pages) words at any buffer size, and no fast path
 * counts anything (a per-operation increment measured +9–11 % on the
 * malloc/free loop: BENCHMARKS.md "Growable memory").
 *
 * A page's contribution (types.ts K_*: 1 page, its slices, USED blocks,
 * USED·size/8 words, CAPACITY·size/8 words, its kind) is counted in the
 * counter block of whoever holds it: its holder agent's (agent record,
 * A_STATS; plain stores, the agent alone writes them) or, while nobody
 * holds it, the abandoned pool's (header, H_POOL; Atomics). Ownership
 * moves it (`gain`, `lose`, `poolGain`, `poolLose`, at the OWNER
 * transitions of types.ts).
 *
 * USED changes while a page is held, on the fast paths too (CAPACITY only
 * on the generic path that extends a page, which counts it directly).
 * Instead of counting those changes, the holder *tracks* the page
 * (F_TRACKED, a list through R_TNEXT from A_THEAD): its counters then hold
 * the page's USED as of R_SYNCED, and a reader adds
 * USED − R_SYNCED for each tracked page (all in the record's first cache
 * line). Every path that changes USED tracks the page first: the generic ones call `ensureTracked`;
 * the malloc fast path pops only from direct pages, which are tracked when
 * they become direct (page-queue.ts updateDirect); the free fast path takes
 * only pages with F_TRACKED (its flag test has one more bit), so the first
 * free into an untracked page goes generic and tracks it. Past TRACK_MAX
 * tracked pages (or twice what the last fold kept) the list is folded
 * (`syncTracked`) and the pages not changed since the fold before leave it.
 *
 * Blocks freed by another agent stay in USED until the owner collects
 * them, as in mimalloc's `used`; the freer counts them (A_XFREED), the
 * collector too (A_COLLECTED), and `used` subtracts the difference.
 *
 * Exact when no agent is between two statements of an update (a reader
 * racing a writer may see one operation's counters half done), and, after
 * a worker was terminated, up to the blocks it was in the middle of.
 */
import type { Arena } from './arena.js';
import { C } from './types.js';

/** 0 small, 1 medium, 2 large, 3 huge (stats's page kinds: by block size). */
function kindOf(meta: Int32Array, rb: number): number {
  if ((meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK) === C.BIN_HUGE) return 3;
  const bs = meta[rb + C.R_BLOCK_SIZE];
  return bs <= C.SMALL_OBJ_SIZE_MAX ? 0 : bs <= C.MEDIUM_OBJ_SIZE_MAX ? 1 : 2;
}

/** Add (sign 1) or take away (sign −1) page rb's contribution, as it is now, at counter block k: an agent's (plain) or the pool (atomic). */
function contribute(a: Arena, k: number, rb: number, sign: number, atomic: boolean): void {
  const m = a.mem;
  const w = m[rb + C.R_BLOCK_SIZE] >>> 3;
  const used = m[rb + C.R_USED];
  const v0 = sign;
  const v1 = sign * m[rb + C.R_SLICES];
  const v2 = sign * used;
  const v3 = sign * used * w;
  const v4 = sign * m[rb + C.R_CAPACITY] * w;
  const kk = k + C.K_KIND + kindOf(m, rb);
  if (atomic) {
    Atomics.add(m, k + C.K_PAGES, v0);
    Atomics.add(m, k + C.K_SLICES, v1);
    Atomics.add(m, k + C.K_BLOCKS, v2);
    Atomics.add(m, k + C.K_WORDS, v3);
    Atomics.add(m, k + C.K_CAPW, v4);
    Atomics.add(m, kk, sign);
  } else {
    m[k + C.K_PAGES] += v0;
    m[k + C.K_SLICES] += v1;
    m[k + C.K_BLOCKS] += v2;
    m[k + C.K_WORDS] += v3;
    m[k + C.K_CAPW] += v4;
    m[kk] += sign;
  }
}

/** Fold a tracked page's changes since it was synced into its holder's counters. */
function fold(a: Arena, rb: number): void {
  const m = a.mem;
  const k = a.agentBase + C.A_STATS;
  const du = m[rb + C.R_USED] - m[rb + C.R_SYNCED];
  m[k + C.K_BLOCKS] += du;
  m[k + C.K_WORDS] += du * (m[rb + C.R_BLOCK_SIZE] >>> 3);
  m[rb + C.R_SYNCED] = m[rb + C.R_USED];
}

/** The holder extended page rb by n blocks (page.ts pageExtend, generic: counted directly). */
export function countExtended(a: Arena, rb: number, n: number): void {
  a.mem[a.agentBase + C.A_STATS + C.K_CAPW] += n * (a.mem[rb + C.R_BLOCK_SIZE] >>> 3);
}

/** The holder is about to change page rb's USED: make sure its counters see it (O(1); a fold of O(list) when the list has doubled). */
export function ensureTracked(a: Arena, rb: number): void {
  if ((a.mem[rb + C.R_FLAGS] & C.F_TRACKED) === 0) track(a, rb); // (the test inline, the rest out of line: callers stay small)
}

function track(a: Arena, rb: number): void {
  const m = a.mem;
  const ab = a.agentBase;
  if (m[ab + C.A_TCOUNT] >= Math.max(C.TRACK_MAX, m[ab + C.A_TLIMIT])) syncTracked(a);
  m[rb + C.R_SYNCED] = m[rb + C.R_USED];
  m[rb + C.R_TNEXT] = m[ab + C.A_THEAD];
  m[rb + C.R_FLAGS] |= C.F_TRACKED; // before the head names it: a reader that finds it reads a synced page
  m[ab + C.A_THEAD] = rb;
  m[ab + C.A_TCOUNT]++;
}

/**
 * Fold every tracked page; keep the direct ones (the malloc fast path
 * changes them) and those changed since the last fold (in use: untracking
 * them would send their next free to the generic path), let the others go.
 * The next fold comes when the list has doubled (at least TRACK_MAX), so a
 * program that frees into many pages at once folds O(1) times per page
 * tracked, and the list stays about twice the pages it frees into.
 */
export function syncTracked(a: Arena): void {
  const m = a.mem;
  const ab = a.agentBase;
  let rb = m[ab + C.A_THEAD];
  let head = 0;
  let n = 0;
  while (rb !== 0) {
    const next = m[rb + C.R_TNEXT];
    const hot = m[rb + C.R_USED] !== m[rb + C.R_SYNCED];
    fold(a, rb);
    if (hot || (m[rb + C.R_FLAGS] & C.F_DIRECT) !== 0) {
      m[rb + C.R_TNEXT] = head;
      head = rb;
      n++;
    } else {
      m[rb + C.R_FLAGS] &= ~C.F_TRACKED;
    }
    rb = next;
  }
  m[ab + C.A_THEAD] = head;
  m[ab + C.A_TCOUNT] = n;
  m[ab + C.A_TLIMIT] = Math.max(C.TRACK_MAX, 2 * n);
}

/** Take page rb (tracked) off the list, its changes folded. */
function untrack(a: Arena, rb: number): void {
  const m = a.mem;
  const ab = a.agentBase;
  fold(a, rb);
  m[rb + C.R_FLAGS] &= ~C.F_TRACKED;
  let prev = 0;
  for (let x = m[ab + C.A_THEAD], guard = m[ab + C.A_TCOUNT] + 1; x !== 0 && guard > 0; x = m[x + C.R_TNEXT], guard--) {
    if (x === rb) {
      if (prev === 0) m[ab + C.A_THEAD] = m[rb + C.R_TNEXT]; else m[prev + C.R_TNEXT] = m[rb + C.R_TNEXT];
      m[ab + C.A_TCOUNT]--;
      return;
    }
    prev = x;
  }
}

/** This agent now holds page rb (created, reclaimed, taken from a dead agent): its contribution as it is now. */
export function gain(a: Arena, rb: number): void {
  a.mem[rb + C.R_FLAGS] &= ~(C.F_TRACKED | C.F_DIRECT); // (set by a dead holder: its list went with it)
  contribute(a, a.agentBase + C.A_STATS, rb, 1, false);
}

/** This agent lets page rb go (released, abandoned). */
export function lose(a: Arena, rb: number): void {
  if ((a.mem[rb + C.R_FLAGS] & C.F_TRACKED) !== 0) untrack(a, rb);
  contribute(a, a.agentBase + C.A_STATS, rb, -1, false);
}

/** Page rb, held by nobody now, joins (or leaves) the abandoned pool. */
export function poolGain(a: Arena, rb: number): void {
  contribute(a, a.hdr + C.H_POOL, rb, 1, true);
}
export function poolLose(a: Arena, rb: number): void {
  contribute(a, a.hdr + C.H_POOL, rb, -1, true);
}

/** This agent freed a block of bs bytes into another agent's page (or the pool's). */
export function countRemoteFree(a: Arena, bs: number): void {
  const m = a.mem;
  const ab = a.agentBase;
  m[ab + C.A_XFREED] = (m[ab + C.A_XFREED] + 1) | 0;
  m[ab + C.A_XFREEDW] = (m[ab + C.A_XFREEDW] + (bs >>> 3)) | 0;
}

/** This agent took n blocks of bs bytes off a page's xthreadFree. */
export function countCollected(a: Arena, n: number, bs: number): void {
  const m = a.mem;
  const ab = a.agentBase;
  m[ab + C.A_COLLECTED] = (m[ab + C.A_COLLECTED] + n) | 0;
  m[ab + C.A_COLLECTEDW] = (m[ab + C.A_COLLECTEDW] + n * (bs >>> 3)) | 0;
}

/** An agent record goes (detach, or its reaper): what it freed remotely and collected stays in the totals. */
export function foldGone(a: Arena, rec: number): void {
  const m = a.mem;
  const h = a.hdr;
  Atomics.add(m, h + C.H_GONE_XFREED, m[rec + C.A_XFREED]);
  Atomics.add(m, h + C.H_GONE_XFREEDW, m[rec + C.A_XFREEDW]);
  Atomics.add(m, h + C.H_GONE_COLLECTED, m[rec + C.A_COLLECTED]);
  Atomics.add(m, h + C.H_GONE_COLLECTEDW, m[rec + C.A_COLLECTEDW]);
  for (let k = C.A_XFREED; k <= C.A_COLLECTEDW; k++) m[rec + k] = 0;
}

/** An agent's (or the pool's) counters as a reader sees them: the K_* block plus its tracked pages' changes. */
export interface CounterRead {
  pages: number;
  slices: number;
  blocks: number;
  words: number;
  capw: number;
  kinds: number[];
}

/**
 * Read the counter block k; `rec` ≥ 0: the agent record whose tracked list
 * to add (−1: the pool). O(its tracked pages). Plain loads: an aligned
 * Int32 never tears, and a reader racing a writer gets a count as of some
 * moment either way (an Atomics.load is a fence: ~12 ns each).
 */
export function readCounters(a: Arena, k: number, rec: number, r: CounterRead): void {
  const m = a.mem;
  r.pages += m[k + C.K_PAGES];
  r.slices += m[k + C.K_SLICES];
  r.blocks += m[k + C.K_BLOCKS];
  r.words += m[k + C.K_WORDS];
  r.capw += m[k + C.K_CAPW];
  for (let i = 0; i < 4; i++) r.kinds[i] += m[k + C.K_KIND + i];
  if (rec < 0) return;
  const limit = m.length - C.REC_WORDS;
  for (let x = m[rec + C.A_THEAD], guard = m[rec + C.A_TCOUNT] + C.TRACK_MAX; x > 0 && x < limit && guard > 0; guard--) {
    const du = m[x + C.R_USED] - m[x + C.R_SYNCED]; // (one cache line: words 1, 4, 12, 14)
    r.blocks += du;
    r.words += du * (m[x + C.R_BLOCK_SIZE] >>> 3);
    x = m[x + C.R_TNEXT];
  }
}

/** A zeroed CounterRead. */
export function counterRead(): CounterRead {
  return { pages: 0, slices: 0, blocks: 0, words: 0, capw: 0, kinds: [0, 0, 0, 0] };
}
