// Worker of `node bench/xfree.js` (what a cross-agent free costs). Two of
// these run at once; each attaches to the one shared mimalloc-ts allocator
// and is, at the same time, the producer of the blocks it sends to the other
// worker and the consumer of the blocks the other worker sends to it.
//
//   workerData: { idx (0 | 1), distIndex, rings (SharedArrayBuffer), scratch (SharedArrayBuffer),
//                 ctl (SharedArrayBuffer, barrier), window, burst, capacity, sizes (Uint32Array, 2^k entries), rounds_blocks }
//   <- { cmd: 'attach', handle }              -> { attached: agentId }
//   <- { cmd: 'run', mode, n, parties }        -> { t0, t1, waits, sched, batch }   (epoch ms after the barrier /
//                                                 at the end; Atomics.wait calls in the run; batch: entries taken per
//                                                 look at the ring (ring modes); sched: { run_ms, delay_ms },
//                                                 this thread's time on a CPU and time runnable but not running
//                                                 (preempted) over the run, from /proc/thread-self/schedstat; null
//                                                 where that is missing)
//        mode 'remote' | 'local' | 'none': n blocks produced and n consumed by each worker (ring modes, parties 2)
//        mode 'solo': n rounds of "malloc rounds_blocks blocks, free them in order", no ring (parties 1 or 2)
//   <- { cmd: 'exit' }                        -> { detached: true, agentId } then the thread ends by itself
//                                                (so that --cpu-prof in execArgv writes its profile)
// Any error: -> { error: stack }
//
// Ring i carries worker i's entries to worker 1 - i (single producer, single
// consumer). Layout in Int32 words from ring i's base: HEAD (consumer's
// count, its own 64-byte line), TAIL (producer's count, its own line), WAIT
// (consumer is, or is about to be, in Atomics.wait on TAIL), then `capacity`
// entries. Counts are int32 and wrap; slots are count & (capacity - 1).
//
// An entry is an address: a block of the producer's (bit 0 clear), or the
// return of one of the consumer's own blocks (bit 0 set; blocks are 8-byte
// aligned). Every block goes out on one ring and comes back, tagged, on the
// other: the ring traffic is the same in every mode; only who frees differs.
//   remote: the consumer reads the block's first word, frees it (a free into
//           the other agent's page), and returns the address
//   local:  the consumer reads the block's first word and returns the
//           address; the producer frees it when it comes back (a local free)
//   none:   no allocator: fake addresses in a scratch SharedArrayBuffer, the
//           same word written, read and returned
// Flow control: a worker has at most `window` of its blocks out (sent, not
// yet returned). A ring then never holds more than 2 x window entries
// (window of the producer's blocks + window returns of the consumer's), so
// with capacity >= 2 x window a push never finds the ring full (checked).
// Entries are published in bursts: a worker sends up to `burst` new blocks,
// then stores TAIL once; it consumes everything available, then stores HEAD
// and the TAIL of the returns it pushed (one cross-core handoff per burst,
// not per block, so the harness floor stays small next to a free).

import { readFileSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { barrier } from './workload.js';

const { idx, distIndex, window: W, burst: BURST, capacity: C, sizes, rounds_blocks: RB } = workerData;
const ring = new Int32Array(workerData.rings);
const scratchU32 = new Uint32Array(workerData.scratch);
const ctl = new Int32Array(workerData.ctl);
if ((C & (C - 1)) !== 0 || C < 2 * W) throw new Error(`ring capacity ${C} must be a power of two >= 2 x window ${W}`);
const MASK = C - 1;
const SMASK = sizes.length - 1;
const RING_WORDS = 48 + C;
const HEAD = 0;
const TAIL = 16;
const WAIT = 32;
const DATA = 48;
const OUT = idx * RING_WORDS; // the ring this worker produces into
const IN = (1 - idx) * RING_WORDS; // the ring this worker consumes from
// none mode: this worker's fake blocks, 2 x window slots of 256 bytes (a slot is reused
// only after its block came back, i.e. after the consumer read it)
const FAKE_BASE = 64 + idx * 2 * W * 256;
const FAKE_MASK = 2 * W - 1;
const SPIN = 20_000; // polls of an empty ring before Atomics.wait (1 ms timeout) with WAIT set

const REMOTE = 0;
const LOCAL = 1;
const NONE = 2;
const MODES = { remote: REMOTE, local: LOCAL, none: NONE };

let a = null; // the allocator, attached
// ring counts, kept across runs (each run leaves both rings empty)
let outTail = 0;
let outHeadSeen = 0;
let inHead = 0;
const counters = { waits: 0, drains: 0, drained: 0 };

/**
 * One ring run: produce n blocks (sizes from the fixed sequence), consume the
 * other worker's n blocks, and get all n own blocks back. One function for the
 * three modes: the branches on the constant `mode` are predictable and keep
 * the allocator's call sites monomorphic (none mode never reaches them).
 */
function ringRun(mode, n) {
  const al = a;
  const u32 = mode === NONE ? scratchU32 : a.u32; // the buffer is fixed-size: this view stays current
  let sent = 0;
  let back = 0; // own blocks returned
  let recv = 0; // the other worker's blocks consumed
  let tail = outTail;
  let headSeen = outHeadSeen;
  let head = inHead;
  while (back < n || recv < n) {
    // produce a burst of up to BURST blocks while the window allows, then publish them
    let k = 0;
    while (k < BURST && sent < n && sent - back < W) {
      let p;
      if (mode === NONE) p = FAKE_BASE + ((sent & FAKE_MASK) << 8);
      else {
        p = al.malloc(sizes[sent & SMASK]);
        if (p === 0) throw new Error('malloc returned 0');
      }
      u32[p >>> 2] = sent;
      if (((tail - headSeen) | 0) >= C) {
        headSeen = Atomics.load(ring, OUT + HEAD);
        if (((tail - headSeen) | 0) >= C) throw new Error('ring full (flow control broken)');
      }
      ring[OUT + DATA + (tail & MASK)] = p;
      tail = (tail + 1) | 0;
      sent++;
      k++;
    }
    if (k !== 0) {
      Atomics.store(ring, OUT + TAIL, tail);
      if (Atomics.load(ring, OUT + WAIT) !== 0) Atomics.notify(ring, OUT + TAIL);
    }
    // consume everything available
    let avail = Atomics.load(ring, IN + TAIL);
    if (avail === head) {
      if (sent < n && sent - back < W) continue;
      // nothing to send and nothing in: bounded spin, then wait (the producer notifies when WAIT is set)
      let s = 0;
      while (s < SPIN && (avail = Atomics.load(ring, IN + TAIL)) === head) s++; // wait
      if (avail === head) {
        Atomics.store(ring, IN + WAIT, 1);
        if (Atomics.load(ring, IN + TAIL) === head) {
          counters.waits++;
          Atomics.wait(ring, IN + TAIL, head, 1); // wait
        }
        Atomics.store(ring, IN + WAIT, 0);
        continue;
      }
    }
    const tail0 = tail;
    counters.drains++;
    counters.drained += (avail - head) | 0;
    while (head !== avail) {
      const v = ring[IN + DATA + (head & MASK)];
      head = (head + 1) | 0;
      if ((v & 1) !== 0) {
        // one of this worker's blocks came back
        if (mode === LOCAL) al.free(v - 1);
        back++;
      } else {
        // a block of the other worker's
        if (u32[v >>> 2] !== recv) throw new Error(`block ${v}: word ${u32[v >>> 2]}, expected ${recv}`);
        recv++;
        if (mode === REMOTE) al.free(v);
        if (((tail - headSeen) | 0) >= C) {
          headSeen = Atomics.load(ring, OUT + HEAD);
          if (((tail - headSeen) | 0) >= C) throw new Error('ring full (flow control broken)');
        }
        ring[OUT + DATA + (tail & MASK)] = v | 1;
        tail = (tail + 1) | 0;
      }
    }
    // HEAD before the returns' TAIL: the other worker sends new blocks into this
    // ring only after it saw a return, so the window bound holds for the published HEAD
    Atomics.store(ring, IN + HEAD, head);
    if (tail !== tail0) {
      Atomics.store(ring, OUT + TAIL, tail);
      if (Atomics.load(ring, OUT + WAIT) !== 0) Atomics.notify(ring, OUT + TAIL);
    }
  }
  outTail = tail;
  outHeadSeen = headSeen;
  inHead = head;
}

/** Scaling loop (no ring): n rounds of "malloc RB blocks, write a word, free them in order". */
const ptrs = new Uint32Array(RB);
function soloRun(n) {
  const al = a;
  const u32 = a.u32;
  let k = 0;
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < RB; i++) {
      const p = al.malloc(sizes[k & SMASK]);
      if (p === 0) throw new Error('malloc returned 0');
      u32[p >>> 2] = k++;
      ptrs[i] = p;
    }
    for (let i = 0; i < RB; i++) al.free(ptrs[i]);
  }
}

/** [ns on a CPU, ns runnable but waiting for one] of this thread (Linux schedstat), or null. */
function schedstat() {
  try {
    const f = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ');
    return [Number(f[0]), Number(f[1])];
  } catch {
    return null;
  }
}

let Allocator;
try {
  ({ Allocator } = await import(distIndex));
} catch (e) {
  parentPort.postMessage({ error: `cannot import ${distIndex}: ${e.message}` });
}

parentPort.on('message', (m) => {
  try {
    if (m.cmd === 'attach') {
      a = Allocator.attach(m.handle);
      parentPort.postMessage({ attached: a.agentId ?? null });
    } else if (m.cmd === 'run') {
      if (m.parties > 1) barrier(ctl, m.parties); // wait
      const s0 = schedstat();
      const w0 = counters.waits;
      const d0 = counters.drains;
      const e0 = counters.drained;
      const t0 = performance.timeOrigin + performance.now();
      if (m.mode === 'solo') soloRun(m.n);
      else ringRun(MODES[m.mode], m.n);
      const t1 = performance.timeOrigin + performance.now();
      const s1 = schedstat();
      const sched = s0 && s1 ? { run_ms: (s1[0] - s0[0]) / 1e6, delay_ms: (s1[1] - s0[1]) / 1e6 } : null;
      const batch = counters.drains > d0 ? (counters.drained - e0) / (counters.drains - d0) : 0;
      parentPort.postMessage({ t0, t1, waits: counters.waits - w0, sched, batch });
    } else if (m.cmd === 'exit') {
      const agentId = a?.agentId ?? null;
      if (a) a.detach();
      a = null;
      parentPort.postMessage({ detached: true, agentId, waits: counters.waits });
      parentPort.close();
    }
  } catch (e) {
    parentPort.postMessage({ error: e?.stack ?? String(e) });
  }
});
