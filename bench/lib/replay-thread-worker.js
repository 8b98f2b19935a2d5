// Worker of `node bench/replay.js --threads`: replays the events of ONE
// thread index of a trace on a mimalloc-ts buffer shared with the workers of
// the other thread indices. See bench/lib/replay-threads.js for the streams
// and the synchronisation (trace2wl-style: wait only where an object made by
// another thread ends).
//
//   workerData: { t, arrays: { op, id, old, size, align } (shared),
//                 stream, depThread, depNeed, publish (shared, this thread's),
//                 slots (Int32Array, shared: id -> address), ctl (Int32Array, shared) }
//   -> { ok: true, loaded: true, t }
//   <- { cmd: 'run', handle, gen }  attach, then wait for ctl[GO] === gen
//   -> { ok: true, attached: true, t }
//                                    replay, detach
//   -> { ok: true, t, start, end, waits, waitMs }   (start/end: ms since the epoch, from performance.timeOrigin)
//   <- { cmd: 'exit' }

import { parentPort, workerData } from 'node:worker_threads';
import { OP_ALIGNED, OP_CALLOC, OP_FREE, OP_MALLOC } from './trace.js';
import { TOUCH_LIMIT, TOUCH_STRIDE } from './replay-core.js';

export const GO = 0; // generation number of the rep that may start
export const FINISHED = 2; // workers done with their stream
export const FAILED = 3; // a worker failed: the others stop waiting
export const PROG = 4; // ctl[PROG + t]: events of thread t done (published only where another thread waits for them)
export const NO_DEP = 255;

const { t, arrays, stream, depThread, depNeed, publish, slots, ctl, distIndex } = workerData ?? {};

let waitMs = 0;

/** Wait until ctl[PROG + c] >= need: spin briefly, then sleep. Returns 1 if it had to sleep. */
function waitFor(c, need) {
  const cell = PROG + c;
  for (let s = 0; s < 200; s++) if (Atomics.load(ctl, cell) >= need) return 0;
  const t0 = performance.now();
  let v;
  while ((v = Atomics.load(ctl, cell)) < need) {
    if (Atomics.load(ctl, FAILED) !== 0) throw new Error(`thread ${t}: stopped, another worker failed`);
    Atomics.wait(ctl, cell, v, 1000);
  }
  waitMs += performance.now() - t0;
  return 1;
}

function runStream(al, u8, u32) {
  const { op, id, old, size, align } = arrays;
  const len = stream.length;
  const progCell = PROG + t;
  let waits = 0;
  for (let j = 0; j < len; j++) {
    const dt = depThread[j];
    if (dt !== NO_DEP) waits += waitFor(dt, depNeed[j]);
    const i = stream[j];
    const o = op[i];
    const k = id[i];
    if (o === OP_FREE) {
      al.free(slots[k]);
      slots[k] = 0;
      continue;
    }
    const n = size[i];
    let p;
    if (o === OP_MALLOC) p = al.malloc(n);
    else if (o === OP_CALLOC) p = al.calloc(1, n);
    else if (o === OP_ALIGNED) p = al.mallocAligned(n, align[i]);
    else {
      const q = old[i];
      p = al.realloc(slots[q], n);
      if (p !== 0) slots[q] = 0;
    }
    if (p === 0) throw new Error(`thread ${t}: event ${i + 1} (${n} bytes) returned NULL`);
    slots[k] = p;
    if (n >= 4) {
      const lim = (n < TOUCH_LIMIT ? n : TOUCH_LIMIT) - 4;
      for (let off = 0; off <= lim; off += TOUCH_STRIDE) u32[(p + off) >>> 2] = k;
    } else if (n > 0) u8[p] = k;
    if (publish[j] !== 0) {
      Atomics.store(ctl, progCell, j + 1);
      Atomics.notify(ctl, progCell);
    }
  }
  return waits;
}

if (parentPort && workerData?.kind === 'replay-thread') {
  const { Allocator } = await import(distIndex);
  parentPort.on('message', (m) => {
    if (m.cmd === 'exit') {
      parentPort.close();
      return;
    }
    try {
      const a = Allocator.attach(m.handle);
      parentPort.postMessage({ ok: true, attached: true, t });
      while (Atomics.load(ctl, GO) !== m.gen) Atomics.wait(ctl, GO, Atomics.load(ctl, GO));
      const start = performance.timeOrigin + performance.now();
      waitMs = 0;
      const waits = runStream(a, a.u8, a.u32);
      const end = performance.timeOrigin + performance.now();
      a.detach();
      Atomics.add(ctl, FINISHED, 1);
      Atomics.notify(ctl, FINISHED);
      parentPort.postMessage({ ok: true, t, start, end, waits, waitMs });
    } catch (e) {
      Atomics.store(ctl, FAILED, 1);
      for (let c = PROG; c < ctl.length; c++) Atomics.notify(ctl, c);
      Atomics.add(ctl, FINISHED, 1);
      Atomics.notify(ctl, FINISHED);
      parentPort.postMessage({ ok: false, t, error: e?.stack ?? String(e) });
    }
  });
  parentPort.postMessage({ ok: true, loaded: true, t });
}
