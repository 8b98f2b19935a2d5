// Worker of test/agents.test.js: attaches `agents` agents (Allocator.attach of
// workerData.handle, which may be a handle from watch()), each allocating
// `blocks` blocks of each size in `sizes` (default [size]; filled), reports
// { type: 'ready', ids, blocks: [[p, n], ...], threadId } (or, if a malloc
// returns 0, { type: 'ready', nomem: true, ... } and idles), and then, by `end`:
//   'exit'  - waits for the go word (ctl[0] = 1), then process.exit(0): the
//             worker ends without detach() and without releaseAgent;
//   'idle'  - idles in the event loop until the main thread terminates it;
//   'spin'  - waits for the go word, then mallocs (and frees every other block)
//             until a call throws; reports { type: 'threw', message, calls }
//             and exits (the main thread releases this live agent meanwhile).
// Does nothing when loaded on the main thread.

import { isMainThread, parentPort, threadId, workerData } from 'node:worker_threads';

if (!isMainThread) {
  const { Allocator } = await import('../../dist/index.js');
  const { fillBlock } = await import('./common.js');
  const { handle, agents = 1, blocks: count = 0, size = 256, sizes = [size], end, ctlSab } = workerData;
  const ctl = ctlSab ? new Int32Array(ctlSab) : null;
  const all = [];
  const blocks = [];
  let nomem = false;
  for (let i = 0; i < agents && !nomem; i++) {
    const a = Allocator.attach(handle);
    all.push(a);
    for (let k = 0; k < count && !nomem; k++) {
      for (const n of sizes) {
        const p = a.malloc(n);
        if (p === 0) { nomem = true; break; }
        fillBlock(a.u32, p, n);
        blocks.push([p, n]);
      }
    }
  }
  parentPort.postMessage({ type: 'ready', ids: all.map((a) => a.agentId), blocks, threadId, nomem });
  if (end === 'idle' || nomem) {
    setInterval(() => {}, 1 << 30);
  } else {
    Atomics.wait(ctl, 0, 0);
    if (end === 'exit') process.exit(0);
    // 'spin': this agent was released while it runs; go on until a call throws
    const a = all[0];
    let calls = 0;
    let message = null;
    try {
      for (let i = 0; i < 20_000; i++) {
        const p = a.malloc(size);
        calls++;
        if ((i & 1) === 0) { a.free(p); calls++; }
      }
    } catch (e) {
      message = e.message;
    }
    parentPort.postMessage({ type: 'threw', message, calls });
  }
}
