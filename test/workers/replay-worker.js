// Worker of test/replay.test.js (multi-worker trace replay): replays the
// events of one thread index of a trace prefix on an allocator attached to a
// shared buffer, in the trace's global order.
//
// Order: a global sequencer. ctl[0] is the index of the next event; worker t
// sleeps on ctl[TURN + t] until it is its turn, runs its consecutive events,
// then hands the turn to the thread of the next event (Atomics.store +
// notify). ctl[DONE] becomes 1 when the last event ran, ctl[FAILED] 1 when a
// worker failed; both wake everybody.
//
// Every new block is checked (non-zero, 8-aligned, aligned as asked,
// usableSize >= size, calloc zeroed, no overlap with any live block through
// the shared shadow map) and gets its id's pattern in its first and last 4
// bytes; frees and reallocs check the pattern first (objects made by another
// worker included, which is the point). The object -> address table is
// shared (with each object's usable size), so any worker can free any object.
//
// Does nothing when loaded on the main thread (test/replay.test.js imports
// its constants).

import { isMainThread, parentPort, workerData } from 'node:worker_threads';

export const SEQ = 0;
export const DONE = 1;
export const FAILED = 2;
export const TURN = 3; // ctl[TURN + t]: 1 = worker t's turn

if (!isMainThread && workerData?.kind === 'replay-test') {
  const { Allocator } = await import('../../dist/index.js');
  const { OP_ALIGNED, OP_CALLOC, OP_FREE, OP_MALLOC, OP_REALLOC } = await import('../../bench/lib/trace.js');
  const { checkPattern, makeShadow, writePattern } = await import('./replay-common.js');

  const { handle, t, threads, N, objects, slots: slotsBuf, usable: usableBuf, shadow: shadowBuf, ctl: ctlBuf } = workerData;
  const { op, tid, id, old, size, align } = workerData.arrays;
  const ctl = new Int32Array(ctlBuf);
  const slots = new Int32Array(slotsBuf); // id -> address
  const usableOf = new Int32Array(usableBuf); // id -> usableSize at allocation
  const shadow = makeShadow(new Int32Array(shadowBuf), true);

  // requested size and creating thread of every object, from the trace
  const req = new Uint32Array(objects + 1);
  const creator = new Uint8Array(objects + 1);
  for (let i = 0; i < N; i++) {
    if (op[i] !== OP_FREE) {
      req[id[i]] = size[i];
      creator[id[i]] = tid[i];
    }
  }

  const wakeAll = () => {
    for (let u = 0; u < threads; u++) {
      Atomics.store(ctl, TURN + u, 1);
      Atomics.notify(ctl, TURN + u);
    }
    Atomics.notify(ctl, DONE);
  };

  const a = Allocator.attach(handle);
  const u8 = a.u8;
  let ran = 0;
  let xfrees = 0;
  let xreallocs = 0;
  const fail = (i, msg) => {
    throw new Error(`worker ${t}: event ${i + 1} (${'?mcarf'[op[i]]}): ${msg}`);
  };

  function step(i) {
    const o = op[i];
    const k = id[i];
    if (o === OP_FREE) {
      const p = slots[k];
      if (p === 0) fail(i, `object ${k} has no address`);
      const bad = checkPattern(u8, p, req[k], k);
      if (bad) fail(i, `pattern broken before free: ${bad}`);
      const sbad = shadow.clear(p, usableOf[k], k);
      if (sbad) fail(i, `shadow: ${sbad}`);
      if (creator[k] !== t) xfrees++;
      a.free(p);
      slots[k] = 0;
      return;
    }
    const n = size[i];
    let p;
    if (o === OP_MALLOC) p = a.malloc(n);
    else if (o === OP_CALLOC) p = a.calloc(1, n);
    else if (o === OP_ALIGNED) p = a.mallocAligned(n, align[i]);
    else {
      const q = old[i];
      const op0 = slots[q];
      if (op0 === 0) fail(i, `object ${q} has no address`);
      const bad0 = checkPattern(u8, op0, req[q], q);
      if (bad0) fail(i, `pattern broken before realloc: ${bad0}`);
      if (creator[q] !== t) xreallocs++;
      p = a.realloc(op0, n);
      if (p === 0) fail(i, `realloc(${op0}, ${n}) returned NULL`);
      const bad = checkPattern(u8, p, req[q], q, Math.min(req[q], n));
      if (bad) fail(i, `realloc did not keep the contents: ${bad}`);
      const sbad = shadow.clear(op0, usableOf[q], q);
      if (sbad) fail(i, `shadow: ${sbad}`);
      slots[q] = 0;
    }
    if (p === 0) fail(i, `allocation of ${n} bytes returned NULL`);
    if (p % 8 !== 0) fail(i, `address ${p} is not 8-aligned`);
    if (o === OP_ALIGNED && p % align[i] !== 0) fail(i, `address ${p} is not a multiple of ${align[i]}`);
    const us = a.usableSize(p);
    if (us < n) fail(i, `usableSize ${us} < ${n}`);
    if (o === OP_CALLOC) for (let j = 0; j < n; j++) if (u8[p + j] !== 0) fail(i, `calloc block ${p}: byte ${j} is ${u8[p + j]}`);
    const other = shadow.mark(p, us, k);
    if (other !== null) fail(i, `block ${p} (${us} bytes) of object ${k} overlaps live object ${other}`);
    writePattern(u8, p, n, k);
    usableOf[k] = us;
    slots[k] = p;
  }

  try {
    for (;;) {
      while (Atomics.load(ctl, TURN + t) === 0) Atomics.wait(ctl, TURN + t, 0);
      Atomics.store(ctl, TURN + t, 0);
      if (Atomics.load(ctl, DONE) !== 0 || Atomics.load(ctl, FAILED) !== 0) break;
      let i = Atomics.load(ctl, SEQ);
      if (tid[i] !== t) throw new Error(`worker ${t} woken for event ${i + 1} of thread ${tid[i]}`);
      while (i < N && tid[i] === t) {
        step(i);
        ran++;
        i++;
      }
      Atomics.store(ctl, SEQ, i);
      if (i === N) {
        Atomics.store(ctl, DONE, 1);
        wakeAll();
        break;
      }
      Atomics.store(ctl, TURN + tid[i], 1);
      Atomics.notify(ctl, TURN + tid[i]);
    }
    a.detach();
    parentPort.postMessage({ ok: true, t, ran, xfrees, xreallocs });
  } catch (e) {
    Atomics.store(ctl, FAILED, 1);
    wakeAll();
    parentPort.postMessage({ ok: false, t, error: e?.stack ?? String(e) });
  }
}
