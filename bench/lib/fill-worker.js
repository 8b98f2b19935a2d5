// Worker of the "4 workers" column of `node bench/fill.js`: attaches to the
// shared mimalloc-ts allocator and runs the fill procedure on its own seed
// until it gets NULL or another worker got one. One worker serves many runs.
//
//   workerData: { w, distIndex }
//   -> { ready: 'loaded' }
//   <- { cmd: 'run', handle, ctl (Int32Array, shared), w, n, window, seed, mix, max, pattern }
//                                      (window > 0: paced, see runFill in fill-core.js)
//   -> { ready: 'attached' }           then waits until ctl[GO] !== 0, and spins
//                                      until all n workers are past GO (a run
//                                      can be over in a few ms: no worker
//                                      should miss it for being woken late)
//   -> { result: { live, blocks, steps, mallocs, frees, nullSize, stopped, agentId } }
//                                      (sets ctl[STOP] = 1 when it got NULL; detaches)
//   <- { cmd: 'exit' }
// Any error: -> { error: message }

import { parentPort, workerData } from 'node:worker_threads';
import { GO, MIXES, REGION, RUNNING, STOP, makeRng, runFill } from './fill-core.js';

const { distIndex } = workerData;
let Allocator;
try {
  ({ Allocator } = await import(distIndex));
  parentPort.postMessage({ ready: 'loaded' });
} catch (e) {
  parentPort.postMessage({ error: `cannot import ${distIndex}: ${e.message}` });
}

parentPort.on('message', (m) => {
  if (m.cmd === 'exit') {
    parentPort.close();
    return;
  }
  let a = null;
  try {
    a = Allocator.attach(m.handle);
    parentPort.postMessage({ ready: 'attached' });
    while (Atomics.load(m.ctl, GO) === 0) Atomics.wait(m.ctl, GO, 0, 1000);
    Atomics.add(m.ctl, RUNNING, 1);
    while (Atomics.load(m.ctl, RUNNING) < m.n && Atomics.load(m.ctl, STOP) === 0);
    const r = runFill(a, { pattern: m.pattern, sizeOf: MIXES[m.mix].make(m.max), rng: makeRng(m.seed), limit: REGION, stop: m.ctl,
      pace: m.window > 0 ? { self: m.w, n: m.n, window: m.window } : null });
    if (!r.stopped) Atomics.store(m.ctl, STOP, 1); // got NULL: the others stop at their next step
    r.agentId = a.agentId;
    a.detach();
    parentPort.postMessage({ result: r });
  } catch (e) {
    Atomics.store(m.ctl, STOP, 1);
    parentPort.postMessage({ error: e.stack ?? String(e) });
  }
});
