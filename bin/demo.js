#!/usr/bin/env node
// The README's main job: several workers allocate from one shared allocator,
// hand blocks to each other (cross-thread frees), detach, and the main thread
// prints the statistics table. The last worker "forgets" to detach: watch()
// releases its agent when it exits, so its pages do not stay held.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Allocator } from '../dist/index.js';

const WORKERS = 4;
const ROUNDS = 200_000;
const SLOTS = 1024;

if (isMainThread) {
  const a = Allocator.create({ size: 256 << 20 });
  const transfer = new Int32Array(new SharedArrayBuffer(SLOTS * 4));
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: WORKERS }, (_, i) => new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { transfer, seed: i + 1, detach: i < WORKERS - 1 } });
    w.postMessage(a.watch(w)); // the handle; at its exit, watch releases the agent if the worker did not detach
    let result;
    w.on('message', (m) => { result = m; });
    w.on('exit', () => resolve(result));
    w.on('error', reject);
  })));
  // free what the workers left in the transfer slots (blocks of agents that have detached)
  let left = 0;
  for (let i = 0; i < SLOTS; i++) {
    const p = Atomics.exchange(transfer, i, 0);
    if (p !== 0) { a.free(p >>> 0); left++; }
  }
  const ms = performance.now() - t0;
  for (const r of results) {
    console.log(`worker agent ${r.agentId}: ${r.ops} malloc/free, ${r.remote} blocks handed to other workers` +
      (r.detached ? '' : `; exited without detach(): released by watch (attached: ${a.isAgentAttached(r.agentId)})`));
  }
  console.log(`main freed ${left} blocks left in transfer slots; ${ms.toFixed(0)} ms`);
  a.check();
  a.printStats();
} else {
  const { transfer, seed, detach } = workerData;
  const handle = await new Promise((resolve) => parentPort.once('message', resolve));
  const a = Allocator.attach(handle);
  let x = seed * 0x9e3779b1;
  const rnd = () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x >>> 0; };
  const live = new Int32Array(4096);
  let ops = 0, remote = 0;
  for (let r = 0; r < ROUNDS; r++) {
    const i = rnd() & 4095;
    if (live[i] !== 0) { a.free(live[i] >>> 0); ops++; }
    const n = 8 + (rnd() % 500);
    const p = a.malloc(n);
    a.u8.fill(seed, p, p + n);
    live[i] = p;
    ops++;
    if ((rnd() & 15) === 0) { // hand it to whichever worker takes that slot next
      const old = Atomics.exchange(transfer, rnd() & (SLOTS - 1), p);
      live[i] = old;
      remote++;
    }
  }
  for (const p of live) if (p !== 0) a.free(p >>> 0);
  const agentId = a.agentId;
  if (detach) a.detach();
  parentPort.postMessage({ agentId, ops, remote, detached: detach });
}
