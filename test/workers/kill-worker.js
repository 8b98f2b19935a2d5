// Worker of test/workers-kill.test.js.
//
// mode 'loop': allocate, fill, verify and free blocks in a tight loop, and
// exchange some through the shared transfer array, until the main thread
// either terminates this worker (at any point) or sets the stop flag (then
// verify and free everything held, detach, report, exit).
//
// Every block this worker holds is recorded in its row of the shared `held`
// table, so that after a kill the main thread can verify and free the dead
// worker's blocks. The protocol keeps every published address pointing at a
// complete object, whatever statement the worker is killed after:
//   allocate -> fill -> Atomics.store(held[i], p)             (publish)
//   verify -> Atomics.store(held[i], 0) -> free               (unpublish first)
//   Atomics.store(held[i], 0) -> old = Atomics.exchange(transfer[j], p)
//        -> verify(old) -> Atomics.store(held[i], old)
// A kill between two steps can at worst leak the one block in hand.
//
// mode 'hold': allocate K blocks of the given sizes, fill them, report their
// addresses, then idle until terminated. Modes 'churn', 'multi' and 'detach':
// see below.

import { isMainThread, workerData, parentPort } from 'node:worker_threads';

if (!isMainThread) {
  const { Allocator } = await import('../../dist/index.js');
  const { makeRng, fillBlock, verifyBlock } = await import('./common.js');
  const a = Allocator.attach(workerData.handle);

  if (workerData.mode === 'churn') {
    // Attach and detach many agents in turn (agent records must be reused).
    const ids = [];
    for (let i = 0; i < workerData.count; i++) {
      const b = Allocator.attach(workerData.handle);
      const p = b.malloc(64);
      fillBlock(b.u32, p, 64);
      ids.push(b.agentId);
      b.free(p);
      b.detach();
    }
    a.detach();
    parentPort.postMessage({ type: 'done', ids });
  } else if (workerData.mode === 'multi') {
    // Several agents in one worker, each holding blocks; then idle until killed.
    const agents = [a];
    for (let i = 1; i < workerData.agents; i++) agents.push(Allocator.attach(workerData.handle));
    const blocks = [];
    agents.forEach((b, i) => {
      for (let k = 0; k < workerData.blocksPerAgent; k++) {
        const n = workerData.sizes[(i + k) % workerData.sizes.length];
        const p = b.malloc(n);
        if (p === 0) throw new Error(`malloc(${n}) returned 0`);
        fillBlock(b.u32, p, n);
        blocks.push([p, n]);
      }
    });
    parentPort.postMessage({ type: 'ready', ids: agents.map((b) => b.agentId), blocks });
    setInterval(() => {}, 1 << 30);
  } else if (workerData.mode === 'detach') {
    // Allocate across many bins, free half, report the live blocks, wait for
    // the go signal, then detach (the main thread kills us at some point).
    const { sizes, count, ctrlSab } = workerData;
    const ctrl = new Int32Array(ctrlSab);
    const all = [];
    for (let i = 0; i < count; i++) {
      const n = sizes[i % sizes.length];
      const p = a.malloc(n);
      if (p === 0) throw new Error(`malloc(${n}) returned 0`);
      fillBlock(a.u32, p, n);
      all.push([p, n]);
    }
    const live = [];
    all.forEach(([p, n], i) => { if (i % 2 === 0) a.free(p); else live.push([p, n]); });
    parentPort.postMessage({ type: 'ready', agentId: a.agentId, blocks: live });
    Atomics.wait(ctrl, 0, 0);
    Atomics.store(ctrl, 1, 2);
    a.detach();
    Atomics.store(ctrl, 1, 1);
    parentPort.postMessage({ type: 'detached' });
  } else if (workerData.mode === 'hold') {
    const blocks = [];
    for (const n of workerData.sizes) {
      const p = a.malloc(n);
      if (p === 0) throw new Error(`malloc(${n}) returned 0`);
      fillBlock(a.u32, p, n);
      blocks.push([p, n]);
    }
    parentPort.postMessage({ type: 'ready', agentId: a.agentId, blocks });
    setInterval(() => {}, 1 << 30); // idle in the event loop until terminated
  } else {
    const { ctrlSab, transferSab, slot, seed, rowWords, sizes, maxBytes, progressIndex, stopIndex, heldBase } = workerData;
    const ctrl = new Int32Array(ctrlSab);
    const transfer = new Uint32Array(transferSab);
    const row = heldBase + slot * rowWords;
    const rnd = makeRng(seed);
    const where = `kill-worker slot ${slot} agent ${a.agentId}`;

    parentPort.postMessage({ type: 'ready', agentId: a.agentId });

    let iterations = 0;
    let transfers = 0;
    while (Atomics.load(ctrl, stopIndex) === 0) {
      const r = rnd();
      const i = row + (r % rowWords);
      const p = Atomics.load(ctrl, i) >>> 0;
      if (p === 0) {
        const n = sizes[(r >>> 8) % sizes.length];
        const q = a.malloc(n);
        if (q === 0) throw new Error(`${where}: malloc(${n}) returned 0`);
        fillBlock(a.u32, q, n);
        Atomics.store(ctrl, i, q | 0);
      } else {
        const op = (r >>> 16) % 100;
        if (op < 45) {
          verifyBlock(a.u32, p, maxBytes, where);
          Atomics.store(ctrl, i, 0);
          a.free(p);
        } else if (op < 75) {
          Atomics.store(ctrl, i, 0);
          const j = (r >>> 3) % transfer.length;
          const old = Atomics.exchange(transfer, j, p);
          if (old !== 0) {
            verifyBlock(a.u32, old, maxBytes, `${where} (from transfer slot ${j})`);
            Atomics.store(ctrl, i, old | 0);
          }
          transfers++;
        } else {
          verifyBlock(a.u32, p, maxBytes, where);
        }
      }
      iterations++;
      Atomics.add(ctrl, progressIndex, 1);
    }

    // Stopped: verify and free everything held, then leave cleanly.
    let verified = 0;
    for (let k = 0; k < rowWords; k++) {
      const p = Atomics.exchange(ctrl, row + k, 0) >>> 0;
      if (p !== 0) {
        verifyBlock(a.u32, p, maxBytes, `${where} (final)`);
        a.free(p);
        verified++;
      }
    }
    a.detach();
    parentPort.postMessage({ type: 'done', verified, iterations, transfers });
  }
}
