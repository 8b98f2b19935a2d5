/**
 * agents.ts — an agent (the main thread or one worker) and its record in the
 * buffer: registration, detach, and taking over a terminated agent
 * (mimalloc's thread-local data `mi_tld_t` and `_mi_thread_done`, plus what a
 * SharedArrayBuffer adds: an agent can be terminated between any two
 * statements, and a survivor must be able to finish what it was doing).
 *
 * ```
 *  header word  hdr + H_FIXED_WORDS + i·AGENT_WORDS   (Arena.agentRecord(i), i < MAX_AGENTS)
 *  ├ A_ID ┤ A_STATE ┤ A_INTENT_OP ┤ A_INTENT_START ┤ A_INTENT_COUNT ┤ A_REAPER ┤ A_THREAD ┤ A_NONCE ┤ … ┤
 *    id ≥ 1, 0 = free slot (a CAS 0 → id takes it; one store of 0 frees it,
 *    after A_THREAD is cleared: a record being taken never names a thread
 *    before its new agent writes its own)
 * ```
 *
 * The `Agent` object is this agent's private state: its theaps, the retire
 * bookkeeping, its error handler and the reports it owes. Everything another
 * agent may need (ownership, page contents) is in the buffer, never here.
 *
 * Releasing an agent that can still run hands its pages to others while it
 * goes on using them. What can be known is refused (`reapAgent`): the
 * caller's own id, and any agent whose Allocator object is alive in the
 * caller's realm (`liveHere`, a registry of WeakRefs by A_NONCE). What cannot
 * be known (an agent of another thread that is still running) is detected by
 * the released agent itself at its next generic call (`Agent.assertAttached`:
 * its record no longer holds its id, or is being reaped), which throws and
 * switches its fast paths off; until then its fast malloc may still pop
 * blocks of pages that are no longer its own.
 *
 * Workers that end without detach(): `watchWorker` / `terminateWorker`
 * release every agent whose A_THREAD names the ended thread (Node's
 * `threadId`, read at attach through `process.getBuiltinModule`; elsewhere a
 * token that the handle from `watch()` carries).
 */
import { AgentContext, abandonAllOf, settleHeld } from './abandon.js';
import { Arena } from './arena.js';
import { foldGone } from './counters.js';
import { recoverIntent } from './intent.js';
import { clearNullGuard, nullGuardWrite } from './layout.js';
import type { AllocStacks } from './debug.js';
import { ErrorCode, ErrorHandler, hex, show } from './errors.js';
import type { AllocatorHandle, WatchableWorker } from './options.js';
import { Theap } from './page-queue.js';
import { C } from './types.js';

/** Agent ids stay below this so that tid = id << 2 is a positive int32. */
const MAX_AGENT_ID = 2 ** 29;

/**
 * This realm's Agent objects that may still run (attached, not detached, not
 * known to be released), by the nonce of their record (A_NONCE). WeakRefs: an
 * Allocator object dropped without detach() can never run again, so once it
 * is garbage-collected its agent may be released like a dead worker's.
 */
const liveHere = new Map<number, WeakRef<Agent>[]>();
const collected = new FinalizationRegistry<number>((nonce) => forgetHere(nonce, null));

function forgetHere(nonce: number, ag: Agent | null): void {
  const refs = liveHere.get(nonce);
  if (refs === undefined) return;
  const keep = refs.filter((r) => { const x = r.deref(); return x !== undefined && x !== ag && !x.detached; });
  if (keep.length === 0) liveHere.delete(nonce);
  else liveHere.set(nonce, keep);
}

/** The Agent object of this realm that holds record b with this id and may still run, or null. */
function liveHereAt(a: Arena, b: number, id: number): Agent | null {
  const refs = liveHere.get(Atomics.load(a.mem, b + C.A_NONCE));
  if (refs === undefined) return null;
  for (const r of refs) {
    const x = r.deref();
    if (x !== undefined && !x.detached && x.id === id && x.agentBase === b) return x;
  }
  return null;
}

/** @internal Tests: treat an agent of this realm as if its thread had ended (it must never be used again). */
export function forgetLiveAgent(ag: Agent): void {
  forgetHere(ag.nonce, ag);
}

/**
 * The thread this code runs on, as A_THREAD records it: Node's
 * `worker_threads.threadId` (0 on the main thread), read lazily through
 * `process.getBuiltinModule` (Node ≥ 20.16; nothing is imported, so browsers
 * load this module as it is); undefined where there is none.
 */
let ownThread: number | undefined | null = null;
function ownThreadId(): number | undefined {
  if (ownThread === null) {
    const p = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
    const wt = typeof p?.getBuiltinModule === 'function' ? p.getBuiltinModule('node:worker_threads') as { threadId?: unknown } | undefined : undefined;
    ownThread = typeof wt?.threadId === 'number' && Number.isInteger(wt.threadId) ? wt.threadId : undefined;
  }
  return ownThread;
}

/**
 * One agent's state (mimalloc's `mi_tld_t` with its theaps). Owned by one
 * Allocator object; the generic paths (malloc.ts, free.ts, theap.ts) take it
 * as their first argument. No field is shared with another agent.
 */
export class Agent implements AgentContext {
  readonly arena: Arena;
  /**
   * The arena's views (the whole buffer as Int32 words; page records are
   * `meta[rb + R_*]`, the same array), replaced when the buffer grows
   * (`syncViews`, called by the arena's refresh): code that may claim
   * slices re-reads them after the claim.
   */
  mem!: Int32Array;
  meta!: Int32Array;
  u8!: Uint8Array;
  f64!: Float64Array;
  u32!: Uint32Array;
  view!: DataView;
  size!: number;
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
  retiredIn = new Int32Array(0);
  /** The buffer's modes (types.ts OPT_*: every agent of a buffer agrees). */
  readonly debug: boolean;
  readonly padded: boolean;
  readonly secure: number;
  /** false only with checkFree: false, whose fast paths keep no allocation bits: the generic paths then trust addresses. */
  readonly checksFree: boolean;
  errorHandler: ErrorHandler;
  /** No call may touch the buffer any more: detached, or found released by another agent. */
  detached = false;
  /** Set when this agent finds it was released (releaseAgent) while still running: what every later call throws. */
  releasedMessage: string | null = null;
  /** Called once when this agent finds it was released: its Allocator switches the fast paths off. */
  onReleased: (() => void) | null = null;
  /** This record's A_NONCE (the registry key of this realm's live agents). */
  readonly nonce: number;
  /** Overflows found when pages were released, to report when the current call is complete: (address, size) pairs. */
  readonly pendingOverflows: number[] = [];
  /** NULL-guard words checked per generic call (0: off), and where the next check starts (nullGuardStep). */
  readonly guardWords: number;
  private guardTurn = 0;
  /** allocStacks: the recorder, or null (off). */
  stacks: AllocStacks | null = null;

  /** Register a new agent of `arena`: a never-reused id and a free agent record. */
  constructor(arena: Arena, onError: ErrorHandler) {
    this.arena = arena;
    this.syncViews();
    this.debug = arena.debug;
    this.padded = arena.padded;
    this.secure = arena.secure;
    this.checksFree = !arena.noCheck;
    this.guardWords = arena.debug ? C.NULL_GUARD_WORDS : arena.secure > 0 ? C.NULL_GUARD_WORDS >>> 6 : 0;
    this.errorHandler = onError;
    const mem = arena.mem;
    const id = Atomics.add(mem, arena.hdr + C.H_NEXT_AGENT_ID, 1) + 1;
    if (id >= MAX_AGENT_ID) throw new Error('mimalloc-ts: agent ids exhausted');
    let base = -1;
    for (let i = 0; i < C.MAX_AGENTS; i++) {
      const b = arena.agentRecord(i);
      if (Atomics.compareExchange(mem, b + C.A_ID, 0, id) === 0) {
        base = b;
        Atomics.or(mem, arena.hdr + C.H_AGENT_BITS + (i >>> 5), 1 << (i & 31));
        break;
      }
    }
    if (base < 0) throw new Error(`mimalloc-ts: more than ${C.MAX_AGENTS} agents attached; detach() or releaseAgent() some first`);
    for (let k = C.A_ID + 1; k < C.AGENT_WORDS; k++) Atomics.store(mem, base + k, 0);
    this.nonce = (Math.random() * 4294967296) | 0;
    Atomics.store(mem, base + C.A_THREAD, ownThreadId() ?? 0);
    Atomics.store(mem, base + C.A_NONCE, this.nonce);
    Atomics.store(mem, base + C.A_STATE, C.AGENT_ALIVE);
    this.id = id;
    this.tid = id << 2;
    this.agentBase = base;
    arena.agentBase = base;
    this.theap = new Theap(0, arena.emptyRec);
    this.theap.counters = arena; // the malloc fast path changes direct pages (counters.ts)
    this.theaps[0] = this.theap;
    const refs = liveHere.get(this.nonce);
    if (refs === undefined) liveHere.set(this.nonce, [new WeakRef(this)]);
    else refs.push(new WeakRef(this));
    collected.register(this, this.nonce, this);
  }

  /** Take the arena's views again (it grew, or a non-shared memory detached the old buffer). Generic paths only. */
  syncViews(): void {
    const a = this.arena;
    this.mem = a.mem;
    this.meta = a.meta;
    this.u8 = a.u8;
    this.f64 = new Float64Array(a.buffer, 0, a.size >>> 3);
    this.u32 = new Uint32Array(a.buffer, 0, a.size >>> 2);
    this.view = new DataView(a.buffer, 0, a.size);
    this.size = a.size;
    if (this.retiredIn.length < a.sliceCount) {
      const r = new Int32Array(a.sliceCount);
      r.set(this.retiredIn);
      this.retiredIn = r;
    }
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

  /**
   * Every generic entry: this object has not detached, and its record still
   * holds its id and is not being reaped (plain loads: a stale value only
   * defers the detection to the next call, and an Atomics.load, which V8
   * does not inline, measured ~4 ns on every generic call). REAPING counts only once a reaper has named itself: a
   * reaper that lost a race sets REAPING on a record reused by a new agent
   * for an instant, before it sees the new id and gives the state back, and
   * the new agent must not take that for its own release. A released agent
   * throws here, before touching anything, from now on.
   */
  assertAttached(generic = true): void {
    if (this.detached) throw new Error(this.releasedMessage ?? 'mimalloc-ts: this allocator object was detached');
    if (this.arena.stale()) this.arena.refresh(); // another agent grew the buffer, or this agent's views were detached
    const base = this.agentBase;
    const m = this.mem;
    if (m[base + C.A_ID] !== this.id ||
        (m[base + C.A_STATE] !== C.AGENT_ALIVE && m[base + C.A_REAPER] !== 0)) this.released();
    if (!generic) return; // (isAttached: a question, not a generic call)
    if (this.guardWords !== 0) this.nullGuardStep();
    if (this.arena.purgeDelay >= 0) this.arena.maybePurge();
  }

  /**
   * Debug and secure modes, on every generic call: the next guardWords words
   * of the NULL guard (all of it every NULL_GUARD_WORDS / guardWords calls:
   * 64 in secure mode, every call in debug mode). A write there is cleared,
   * then reported (EFAULT): once, whatever the handler does.
   */
  private nullGuardStep(): void {
    const from = this.guardTurn;
    this.guardTurn = (from + this.guardWords) & (C.NULL_GUARD_WORDS - 1);
    const msg = nullGuardWrite(this.arena, from, from + this.guardWords);
    if (msg === null) return;
    clearNullGuard(this.arena);
    this.report('EFAULT', msg, 0);
  }

  /** Is this object still attached (not detached, not released)? Notes a release as assertAttached does, without throwing. */
  isAttached(): boolean {
    try { this.assertAttached(false); return true; } catch { return false; }
  }

  /**
   * This agent was released by another while it still ran: name the reaper
   * while the record is not reused (reapAgent writes A_REAPER before it
   * frees the record), stop the fast paths, forget this object, throw.
   */
  private released(): never {
    const m = this.mem;
    const base = this.agentBase;
    const now = Atomics.load(m, base + C.A_ID);
    const reaper = now === this.id || now === 0 ? Atomics.load(m, base + C.A_REAPER) : 0;
    this.releasedMessage = `mimalloc-ts: this agent was released by ${reaper > 0 ? `agent ${reaper}` : 'another agent'} (releaseAgent) ` +
      `while it was still running: agent ${this.id}'s pages belong to other agents now, and this allocator object can no longer allocate or free`;
    this.detached = true;
    this.theaps.length = 0;
    forgetHere(this.nonce, this);
    collected.unregister(this); // (see detachAgent)
    const off = this.onReleased;
    this.onReleased = null;
    if (off !== null) off();
    throw new Error(this.releasedMessage);
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
  ag.assertAttached(); // released by another agent: throws, touching nothing (its pages are others' now)
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
  forgetHere(ag.nonce, ag);
  // Nothing left for the registry to do once it is collected. (And Node 20 aborts in a Worker
  // terminated while a registry has a dead entry to clean and an optimizing compile is in
  // flight — "Assertion failed: (data.first) != nullptr" in NodePlatform::ForIsolate — which
  // prime.ts's detached scratch agents made likely: test/torture.test.js hit it.)
  collected.unregister(ag);
  abandonAllOf(ag, ag.tid, false); // none should be left; a safety net
  foldGone(ag.arena, ag.agentBase);
  Atomics.store(ag.mem, ag.agentBase + C.A_THREAD, 0);
  agentBitOff(ag.arena, ag.agentBase);
  Atomics.store(ag.mem, ag.agentBase + C.A_ID, 0);
}

/**
 * Take over the pages of a terminated agent (`releaseAgent`). Finishes or
 * undoes the slice update it died in (its intent), then rebuilds and
 * abandons each of its pages. Returns false if no agent with that id is
 * attached. Throws, changing nothing, for an agent known to be running: the
 * caller itself, or an agent whose Allocator object is alive in this realm.
 */
export function reapAgent(ag: Agent, id: number): boolean {
  const a = ag.arena;
  const b = findAgentRecord(a, id);
  if (b < 0) return false;
  if (b === ag.agentBase) {
    throw new Error(`mimalloc-ts: releaseAgent(${id}) is this agent's own id: an agent cannot release itself (detach() it)`);
  }
  if (liveHereAt(a, b, id) !== null) {
    throw new Error(`mimalloc-ts: releaseAgent(${id}): agent ${id} is attached in this thread and its allocator object has not detached: ` +
      'only an agent that can no longer run may be released (detach() it instead)');
  }
  return takeOver(ag, b, id);
}

/** reapAgent's work, for record b holding `id`: false if another live reaper has it. */
function takeOver(ag: Agent, b: number, id: number): boolean {
  const a = ag.arena;
  const mem = a.mem;
  const won = Atomics.compareExchange(mem, b + C.A_STATE, C.AGENT_ALIVE, C.AGENT_REAPING) === C.AGENT_ALIVE;
  if (!won) {
    // already being reaped: take over only if that reaper is gone (it was killed too and
    // has been released); every step below is idempotent
    if (Atomics.load(mem, b + C.A_STATE) !== C.AGENT_REAPING) return false;
    const reaper = Atomics.load(mem, b + C.A_REAPER);
    if (reaper !== 0 && findAgentRecord(a, reaper) >= 0) return false;
  }
  if (Atomics.load(mem, b + C.A_ID) !== id) {
    // another reaper finished first and the record was taken by a new agent: give its state back
    // (pre-existing narrow race: a reaper descheduled between finding the record and the CAS)
    if (won) Atomics.compareExchange(mem, b + C.A_STATE, C.AGENT_REAPING, C.AGENT_ALIVE);
    return false;
  }
  Atomics.store(mem, b + C.A_REAPER, ag.id);
  recoverIntent(a, b);
  a.recoverGrow(id << 2); // (may replace the views: a.mem below)
  abandonAllOf(ag, id << 2, true);
  foldGone(a, b);
  Atomics.add(a.mem, a.hdr + C.H_REAPED, 1);
  Atomics.store(a.mem, b + C.A_THREAD, 0);
  // one store frees the record: a kill before it leaves the record REAPING (never reused), never half-freed
  agentBitOff(a, b);
  Atomics.store(a.mem, b + C.A_ID, 0);
  return true;
}

/**
 * Release every agent whose record names `thread` (A_THREAD), a thread that
 * has ended; agents alive in this realm are skipped (a token handle used in
 * the wrong thread). A watcher that has detached (or was released) since
 * does it through a temporary agent. Reports are made once every agent is
 * released. Returns how many were.
 */
export function reapThread(ag: Agent, thread: number, flush = true): number {
  if (thread === 0) return 0;
  if (!ag.isAttached()) {
    // an Arena of its own: an Arena object serves one agent (its agentBase, views, tracked list)
    const ta = new Arena(ag.arena.backing);
    ta.validateHeader();
    const tmp = new Agent(ta, ag.errorHandler);
    ta.onRefresh = () => tmp.syncViews();
    try {
      return reapThread(tmp, thread, flush);
    } finally {
      if (!tmp.detached) detachAgent(tmp);
      ag.pendingOverflows.push(...tmp.pendingOverflows); // (unflushed: the caller's to report)
    }
  }
  const a = ag.arena;
  const mem = a.mem;
  let n = 0;
  for (let i = 0; i < C.MAX_AGENTS; i++) {
    const b = a.agentRecord(i);
    const id = Atomics.load(mem, b + C.A_ID);
    if (id === 0 || b === ag.agentBase || Atomics.load(mem, b + C.A_THREAD) !== thread) continue;
    if (liveHereAt(a, b, id) === null && takeOver(ag, b, id)) n++;
  }
  if (flush && ag.pendingOverflows.length !== 0) ag.flushOverflows();
  return n;
}

/**
 * The exit listener of watch(): no caller to throw to (the default handler
 * throws for EFAULT: an uncaught exception would end the process), so the
 * reports of the release wait for the watcher's next call, as reports of
 * page releases do; a watcher that has detached cannot report: a warning.
 */
function reapAtExit(ag: Agent, thread: number): number {
  let n = 0;
  try {
    n = reapThread(ag, thread, false);
  } catch (e) { // (a detached watcher with every agent record taken: no agent to release with)
    console.warn(`mimalloc-ts: the agents of exited thread ${thread} could not be released: ${(e as Error).message}`);
  }
  if (!ag.isAttached() && ag.pendingOverflows.length !== 0) {
    const q = ag.pendingOverflows.splice(0);
    for (let i = 0; i < q.length; i += 2) {
      console.warn(`mimalloc-ts: buffer overflow in block ${hex(q[i])} (size ${q[i + 1]}) found when an exited worker's pages were released (the watching agent has detached: nobody to report it to)`);
    }
  }
  return n;
}

// ---------------------------------------------------------------------------
// watch(worker) / terminate(worker)
// ---------------------------------------------------------------------------

/**
 * attach with a handle from `watch()`: a token (< 0, a Web Worker's) names
 * the worker the handle was made for; a Node thread id stands in only where
 * this runtime cannot tell its own (Node < 20.16), as a forwarded handle
 * would name the wrong thread.
 */
export function recordHandleThread(ag: Agent, thread: number): void {
  if (thread < 0 || ownThreadId() === undefined) Atomics.store(ag.mem, ag.agentBase + C.A_THREAD, thread);
}

/** What a watcher remembers of a worker: the thread its agents name, and how many the exit listener released. */
interface Watch {
  thread: number;
  released: number;
  handle: AllocatorHandle;
}

/** Per watching agent, the workers it watches (a WeakMap: a dropped Worker object is forgotten). */
const watches = new WeakMap<Agent, WeakMap<object, Watch>>();

/** After a Web Worker's terminate(): a page gets no signal when the worker has stopped. */
const WEB_TERMINATE_GRACE_MS = 100;

function isNodeWorker(w: WatchableWorker): boolean {
  return typeof w.threadId === 'number';
}

function checkWorker(w: unknown, what: string): WatchableWorker {
  if (w === null || typeof w !== 'object' || typeof (w as WatchableWorker).terminate !== 'function') {
    throw new TypeError(`${what}: expected a Worker (node:worker_threads or a Web Worker), got ${show(w)}`);
  }
  return w as WatchableWorker;
}

/**
 * `watch(worker)`: a Node worker's agents are released at its 'exit' event
 * (every agent whose A_THREAD is its threadId); a Web Worker gets a token
 * (< 0, from H_NEXT_TOKEN) in the returned handle, recorded by attach, for
 * `terminate`. Returns the handle to post to the worker. Idempotent.
 */
export function watchWorker(ag: Agent, worker: unknown, handle: AllocatorHandle): AllocatorHandle {
  const w = checkWorker(worker, 'watch');
  let mine = watches.get(ag);
  const known = mine?.get(w);
  if (known !== undefined) return known.handle;
  let thread: number;
  if (isNodeWorker(w)) {
    thread = w.threadId as number;
    if (!(thread > 0)) throw new Error(`watch: this worker has already exited (threadId ${thread}); watch a worker when it is created`);
    if (typeof w.once !== 'function') throw new TypeError('watch: a worker with a threadId needs once(\'exit\', fn), as node:worker_threads has');
  } else {
    thread = -(Atomics.add(ag.mem, ag.arena.hdr + C.H_NEXT_TOKEN, 1) + 1);
  }
  const entry: Watch = { thread, released: 0, handle: { kind: handle.kind, buffer: handle.buffer, thread } };
  if (mine === undefined) watches.set(ag, mine = new WeakMap());
  mine.set(w, entry);
  if (isNodeWorker(w)) (w.once as (e: 'exit', f: () => void) => unknown).call(w, 'exit', () => { entry.released += reapAtExit(ag, thread); });
  return entry.handle;
}

/**
 * `terminate(worker)`: terminate it and, once it has stopped, release its
 * agents. Node: after the Promise of `worker.terminate()` (the worker has
 * exited). Web Worker: after WEB_TERMINATE_GRACE_MS, as a page gets no
 * signal; it must have been watched (its agents carry the token).
 * Arguments are checked before the worker is touched.
 */
export function terminateWorker(ag: Agent, worker: unknown): Promise<number> {
  const w = checkWorker(worker, 'terminate');
  const entry = watches.get(ag)?.get(w);
  let thread = entry?.thread;
  if (thread === undefined) {
    if (!isNodeWorker(w)) throw new Error('terminate: watch(worker) first: a Web Worker has no thread id, so its agents are known by the token of the handle watch() returns');
    if (!((w.threadId as number) > 0)) throw new Error(`terminate: this worker has already exited (threadId ${w.threadId}) and was not watched: release its agents with releaseAgent(id)`);
    thread = w.threadId as number;
  }
  const t = thread;
  const stopping = w.terminate();
  const stopped = isNodeWorker(w) ? Promise.resolve(stopping) : new Promise((resolve) => setTimeout(resolve, WEB_TERMINATE_GRACE_MS));
  return stopped.then(() => {
    const before = entry?.released ?? 0;
    const n = reapThread(ag, t);
    return n + before;
  });
}

/** Clear the H_AGENT_BITS bit of the agent record at word b (before the record is freed). */
function agentBitOff(a: Arena, b: number): void {
  const i = (b - a.agentRecord(0)) / C.AGENT_WORDS;
  Atomics.and(a.mem, a.hdr + C.H_AGENT_BITS + (i >>> 5), ~(1 << (i & 31)));
}
