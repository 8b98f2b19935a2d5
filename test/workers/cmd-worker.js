// Worker of test/workers-xfree.test.js: attaches to the allocator and performs
// the operations the main thread asks for, one message at a time, answering
// each with { id, result } (or { id, fail } for an unexpected exception).
// Allocator errors are caught and reported as data, so that the main thread
// can assert on them.

import { isMainThread, workerData, parentPort } from 'node:worker_threads';

if (!isMainThread) {
  const { Allocator, AllocatorError } = await import('../../dist/index.js');
  const { fillBlock, verifyBlock } = await import('./common.js');
  const a = Allocator.attach(workerData.handle);

  const describe = (e) => ({
    code: e?.code, name: e?.name, address: e?.address, message: String(e?.message ?? e),
    isAllocatorError: e instanceof AllocatorError,
  });

  const ops = {
    agentId: () => a.agentId,
    // Allocate blocks of the given sizes and fill them; returns their addresses.
    malloc: (sizes) => sizes.map((n) => {
      const p = a.malloc(n);
      if (p !== 0) fillBlock(a.u32, p, n);
      return p;
    }),
    // Free each address; returns per address null (ok) or the error description.
    free: (addrs) => addrs.map((p) => {
      try { a.free(p); return null; } catch (e) { return describe(e); }
    }),
    // Verify the fill pattern of each block, then free it; returns the count.
    verifyAndFree: (addrs, maxBytes) => {
      for (const p of addrs) verifyBlock(a.u32, p, maxBytes, 'cmd-worker');
      for (const p of addrs) a.free(p);
      return addrs.length;
    },
    // Free each address with a handler installed; returns what the handler saw.
    freeWithHandler: (addrs) => {
      const seen = [];
      a.setErrorHandler((code, message, address) => { seen.push({ code, address }); });
      try {
        const returned = addrs.map((p) => a.free(p));
        return { seen, returned };
      } finally {
        a.setErrorHandler(null);
      }
    },
    usableSize: (p) => {
      try { return { size: a.usableSize(p) }; } catch (e) { return describe(e); }
    },
    // Consume blocks from a shared ring until told to stop (see xfree test).
    drainRing: (ringSab, stopIndex, maxBytes) => {
      const ring = new Uint32Array(ringSab);
      const ctl = new Int32Array(ringSab);
      let freed = 0;
      for (;;) {
        const stopping = Atomics.load(ctl, stopIndex) !== 0;
        for (let j = 0; j < stopIndex; j++) {
          const p = Atomics.exchange(ring, j, 0);
          if (p !== 0) {
            verifyBlock(a.u32, p, maxBytes, `ring slot ${j}`);
            a.free(p);
            freed++;
          }
        }
        if (stopping) return freed;
      }
    },
    // Wait for the go signal (ctl[0] = 1), then release a dead agent at the
    // same moment as the main thread does.
    raceRelease: (ctlSab, id) => {
      const ctl = new Int32Array(ctlSab);
      Atomics.store(ctl, 1, 1);
      Atomics.notify(ctl, 1);
      Atomics.wait(ctl, 0, 0);
      return a.releaseAgent(id);
    },
    mallocAligned: (pairs) => pairs.map(([n, align]) => {
      const p = a.mallocAligned(n, align);
      if (p !== 0) fillBlock(a.u32, p, n);
      return p;
    }),
    // realloc a block (maybe another agent's); returns the new address.
    realloc: (p, n) => a.realloc(p, n),
    detach: () => { a.detach(); return true; },
  };

  parentPort.on('message', ({ id, op, args }) => {
    let reply;
    try {
      reply = { id, result: ops[op](...args) };
    } catch (e) {
      reply = { id, fail: String(e?.stack ?? e) };
    }
    parentPort.postMessage(reply);
    if (op === 'detach') parentPort.close();
  });
}
