/**
 * agents.ts — an agent (the main thread or one worker) and its record in the
 * buffer: registration, detach, and taking over a terminated agent
 * (mimalloc's thread-local data `mi_tld_t` and `_mi_thread_done`, plus what a
 * SharedArrayBuffer adds: an agent can be terminated between any two
 * statements, and a survivor must be able to finish what it was doing).
 *
 * ```
 *  header word  layout.agents + i·AGENT_WORDS   (Arena.agentRecord(i), i < MAX_AGENTS)
 *  ├ A_ID ┤ A_STATE ┤ A_INTENT_OP ┤ A_INTENT_START ┤ A_INTENT_COUNT ┤ A_REAPER ┤ … ┤
 *    id ≥ 1, 0 = free slot (a CAS 0 → id takes it; one store of 0 frees it)
 * ```
 *
 * The `Agent` object is this agent's private state: its theaps, the retire
 * bookkeeping, its error handler and the reports it owes. Everything another
 * agent may need (ownership, page contents) is in the buffer, never here.
 */
import { AgentContext, abandonAllOf, settleHeld } from './abandon.js';
import { Arena } from './arena.js';
import type { AllocStacks } from './debug.js';
import { ErrorCode, ErrorHandler, hex } from './errors.js';
import { Theap } from './page-queue.js';
import { C } from './types.js';

/** Agent ids stay below this so that tid = id << 2 is a positive int32. */
const MAX_AGENT_ID = 2 ** 29;

/**
 * One agent's state (mimalloc's `mi_tld_t` with its theaps). Owned by one
 * Allocator object; the generic paths (malloc.ts, free.ts, theap.ts) take it
 * as their first argument. No field is shared with another agent.
 */
export class Agent implements AgentContext {
  readonly arena: Arena;
  /** The whole buffer as Int32 words; page records are `meta[rb + R_*]` (the same array). */
  readonly mem: Int32Array;
  readonly meta: Int32Array;
  readonly aBits: Int32Array;
  readonly rBits: Int32Array;
  readonly pageMap: Int32Array;
  readonly u8: Uint8Array;
  readonly f64: Float64Array;
  readonly size: number;
  /** Word index of the page records (record base = recBase + (slice << REC_SHIFT)). */
  readonly recBase: number;
  /** This agent's id (≥ 1, distinct per agent, never reused). */
  readonly id: number;
  /** id << 2: the value in OWNER of the pages this agent's theaps own (types.ts OWNER). */
  readonly tid: number;
  /** Word index of this agent's record in the header. */
  readonly agentBase: number;
  /** The theap of the main heap (heap id 0). */
  readonly theap: Theap;
  /** Theaps by heap id. */
  readonly theaps: (Theap | null)[] = [];
  /**
   * Per slice: heapId + 1 of the theap whose `retired` list holds the page
   * starting there, or 0. Agent-local (only this agent's theaps retire its
   * pages), so no entry is pushed twice into one list.
   */
  readonly retiredIn: Int32Array;
  /** The buffer's modes (types.ts OPT_*: every agent of a buffer agrees). */
  readonly debug: boolean;
  readonly padded: boolean;
  readonly secure: number;
  /** false only with checkFree: false, whose fast paths keep no allocation bits: the generic paths then trust addresses. */
  readonly checksFree: boolean;
  errorHandler: ErrorHandler;
  detached = false;
  /** Overflows found when pages were released, to report when the current call is complete: (address, size) pairs. */
  readonly pendingOverflows: number[] = [];
  /** allocStacks: the recorder, or null (off). */
  stacks: AllocStacks | null = null;

  /** Register a new agent of `arena`: a never-reused id and a free agent record. */
  constructor(arena: Arena, onError: ErrorHandler) {
    this.arena = arena;
    this.mem = arena.mem;
    this.meta = arena.meta;
    this.aBits = arena.aBits;
    this.rBits = arena.rBits;
    this.pageMap = arena.pageMap;
    this.u8 = arena.u8;
    this.f64 = new Float64Array(arena.buffer, 0, arena.size >>> 3);
    this.size = arena.size;
    this.recBase = arena.recBase;
    this.retiredIn = new Int32Array(arena.sliceCount);
    this.debug = arena.debug;
    this.padded = arena.padded;
    this.secure = arena.secure;
    this.checksFree = !arena.noCheck;
    this.errorHandler = onError;
    const mem = arena.mem;
    const id = Atomics.add(mem, C.H_NEXT_AGENT_ID, 1) + 1;
    if (id >= MAX_AGENT_ID) throw new Error('mimalloc-ts: agent ids exhausted');
    let base = -1;
    for (let i = 0; i < C.MAX_AGENTS; i++) {
      const b = arena.agentRecord(i);
      if (Atomics.compareExchange(mem, b + C.A_ID, 0, id) === 0) { base = b; break; }
    }
    if (base < 0) throw new Error(`mimalloc-ts: more than ${C.MAX_AGENTS} agents attached; detach() or releaseAgent() some first`);
    for (let k = C.A_ID + 1; k < C.AGENT_WORDS; k++) Atomics.store(mem, base + k, 0);
    Atomics.store(mem, base + C.A_STATE, C.AGENT_ALIVE);
    this.id = id;
    this.tid = id << 2;
    this.agentBase = base;
    this.theap = new Theap(0, arena.rec(0));
    this.theaps[0] = this.theap;
  }

  /** This agent's theap for a heap, if it has one. */
  theapOf(heapId: number): Theap | null {
    return this.theaps[heapId] ?? null;
  }

  /**
   * AgentContext: an overflow found by the canary scan of a page that went
   * back to the buffer. Queued, not reported: releases happen inside loops
   * over pages (reap, detach, collect, retire) that a throwing handler must
   * not cut short; flushOverflows reports them once the call is complete.
   */
  reportReleasedOverflow(b: number, size: number): void {
    this.pendingOverflows.push(b, size);
  }

  /** Report the queued overflows (one report per block; a throwing handler leaves the rest queued). */
  flushOverflows(): void {
    const q = this.pendingOverflows;
    while (q.length !== 0) {
      const b = q.shift() as number;
      const size = q.shift() as number;
      this.report('EFAULT', `buffer overflow in block ${hex(b)} (size ${size}): the canary after it was overwritten (found when its page was returned to the buffer)`, b);
    }
  }

  report(code: ErrorCode, message: string, address: number): void {
    this.errorHandler(code, message, address);
  }

  assertAttached(): void {
    if (this.detached) throw new Error('mimalloc-ts: this allocator object was detached');
  }
}

/** Word index of the agent record holding `id` (≥ 1), or -1. */
export function findAgentRecord(a: Arena, id: number): number {
  if (!Number.isInteger(id) || id <= 0 || id >= MAX_AGENT_ID) return -1; // 0 marks a free record, not an agent
  const mem = a.mem;
  for (let i = 0; i < C.MAX_AGENTS; i++) {
    const b = a.agentRecord(i);
    if (Atomics.load(mem, b + C.A_ID) === id) return b;
  }
  return -1;
}

/** Agents attached and alive now (not being reaped). */
export function countAgents(a: Arena): number {
  let n = 0;
  for (let i = 0; i < C.MAX_AGENTS; i++) {
    const b = a.agentRecord(i);
    if (Atomics.load(a.mem, b + C.A_ID) !== 0 && Atomics.load(a.mem, b + C.A_STATE) === C.AGENT_ALIVE) n++;
  }
  return n;
}

/**
 * The agent is done (mimalloc's `_mi_thread_done`): every page of its
 * theaps is collected, released if empty, or abandoned for the other agents
 * to reclaim; then one store frees its record (a kill before that store:
 * releaseAgent finds the agent and finishes).
 */
export function detachAgent(ag: Agent): void {
  const meta = ag.meta;
  for (const th of ag.theaps) {
    if (!th) continue;
    for (let q = 0; q < th.first.length; q++) {
      let rb = th.first[q];
      while (rb !== 0) {
        const next = meta[rb + C.R_NEXT];
        th.remove(meta, q, rb);
        Atomics.store(meta, rb + C.R_OWNER, ag.tid | C.OWNER_HELD);
        settleHeld(ag, rb, false);
        rb = next;
      }
    }
  }
  ag.detached = true;
  ag.theaps.length = 0;
  abandonAllOf(ag, ag.tid, false); // none should be left; a safety net
  Atomics.store(ag.mem, ag.agentBase + C.A_ID, 0);
}

/**
 * Take over the pages of a terminated agent (`releaseAgent`). Finishes or
 * undoes the slice update it died in (its intent), then rebuilds and
 * abandons each of its pages. Returns false if no live agent has that id.
 */
export function reapAgent(ag: Agent, id: number): boolean {
  const a = ag.arena;
  const mem = a.mem;
  const b = findAgentRecord(a, id);
  if (b < 0 || b === ag.agentBase) return false;
  if (Atomics.compareExchange(mem, b + C.A_STATE, C.AGENT_ALIVE, C.AGENT_REAPING) !== C.AGENT_ALIVE) {
    // already being reaped: take over only if that reaper is gone (it was killed too and
    // has been released); every step below is idempotent
    if (Atomics.load(mem, b + C.A_STATE) !== C.AGENT_REAPING) return false;
    const reaper = Atomics.load(mem, b + C.A_REAPER);
    if (reaper !== 0 && findAgentRecord(a, reaper) >= 0) return false;
  }
  Atomics.store(mem, b + C.A_REAPER, ag.id);
  a.recoverIntent(b);
  abandonAllOf(ag, id << 2, true);
  Atomics.add(mem, C.H_REAPED, 1);
  // one store frees the record: a kill before it leaves the record REAPING (never reused), never half-freed
  Atomics.store(mem, b + C.A_ID, 0);
  return true;
}
