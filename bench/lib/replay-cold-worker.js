// One cold replay (bench/lib/replay-cold.js, `npm run bench:replay`): a
// fresh worker_threads Worker (a new isolate) per peer x trace x rep.
//
//   workerData: { peer, trace: { name, events, objects, op, id, old, size,
//                 align } (typed arrays over SharedArrayBuffers, shared with
//                 the main thread, not copied), mimallocSize, floorBytes,
//                 warmupMs, sampleEvery, seed }
//   -> { ok: true, result: { nsPerEvent, ms, events, footprintPeak, warmup,
//        loadMs, freedAtEnd, check, info } }  or  { ok: false, error, stack }
//
// In the worker: open the peer (import dist/ or compile the wasm module;
// untimed), then warm up for at most `warmupMs` on a synthetic event mix
// (never the trace: random malloc/calloc/realloc/free and a few aligned
// allocations of log-distributed sizes 1 B .. 64 KiB, at most 2,000 live
// objects) on a separate allocator instance of the same peer, which is then
// discarded; then replay the whole trace (all events in file order, thread
// indices ignored) on a fresh instance. Only the replay calls are timed:
// performance.now() around chunks of `sampleEvery` events; between chunks,
// off the clock, the allocator's footprint is sampled.
//
// Stamps: every new object (m, c, a, the new side of r) of n > 0 bytes gets
// its id in its first min(n, 4) bytes (byte stores, little-endian) and, when
// n > 4, the marker byte (id & 0xff) ^ 0x5a in its last requested byte. At a
// free both are read back and compared; at a realloc they are compared at the
// old address before the call, and after it the id (and the old marker, when
// the old size fits the new one) at the new address, which is then stamped
// with the new id and its marker. A mismatch, or an allocation returning
// NULL, aborts the replay with an error naming the peer, trace and event:
// a broken allocator produces no number. The loop (bench/lib/replay-cold-loop.js)
// runs the warm-up too, from a second copy of its module (see there why).

import { parentPort, workerData } from 'node:worker_threads';
import { openColdPeer } from './cold-peers.js';
import { OP_ALIGNED, OP_CALLOC, OP_FREE, OP_MALLOC, OP_REALLOC } from './trace.js';
import { freeAll, replayChunk } from './replay-cold-loop.js';
// the same loop as a separate module instance (own code and type feedback) for the warm-up
const warmLoop = await import('./replay-cold-loop.js?warm-up');

// ---- the synthetic warm-up mix ---------------------------------------------------

const WARM_LIVE = 2000;

/** A synthetic event stream in the trace's format (seeded; never the trace itself). */
export function syntheticMix(events, seed) {
  let s = seed >>> 0 || 1;
  const rnd = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const logSize = () => Math.max(1, Math.min(65536, Math.floor(2 ** (rnd() * 16.0001))));
  const tr = {
    name: 'synthetic',
    events,
    op: new Uint8Array(events),
    id: new Uint32Array(events),
    old: new Uint32Array(events),
    size: new Uint32Array(events),
    align: new Uint32Array(events),
  };
  const liveIds = [];
  let next = 1;
  for (let i = 0; i < events; i++) {
    const r = rnd();
    const grow = liveIds.length === 0 || (liveIds.length < WARM_LIVE && r < 0.52);
    if (!grow) {
      const j = Math.floor(rnd() * liveIds.length);
      const q = liveIds[j];
      if (rnd() < 0.15) {
        tr.op[i] = OP_REALLOC;
        tr.old[i] = q;
        tr.id[i] = next;
        tr.size[i] = logSize();
        liveIds[j] = next++;
      } else {
        tr.op[i] = OP_FREE;
        tr.id[i] = q;
        liveIds[j] = liveIds[liveIds.length - 1];
        liveIds.pop();
      }
      continue;
    }
    const t = rnd();
    tr.op[i] = t < 0.86 ? OP_MALLOC : t < 0.98 ? OP_CALLOC : OP_ALIGNED;
    tr.id[i] = next;
    tr.size[i] = logSize();
    if (tr.op[i] === OP_ALIGNED) tr.align[i] = 2 ** (3 + Math.floor(rnd() * 7)); // 8 .. 512
    liveIds.push(next++);
  }
  tr.objects = next - 1;
  return tr;
}

// ---- main -------------------------------------------------------------------------------

const WARM_EVENTS = 2_000_000; // more than 250 ms takes on any peer here: the time bound ends the warm-up
const WARM_CHUNK = 4096;

async function main() {
  const { peer, trace, mimallocSize, floorBytes, warmupMs, sampleEvery, seed } = workerData;
  const t0 = performance.now();
  const P = await openColdPeer(peer, { mimallocSize, floorBytes });
  const tr = trace;
  const loadMs = performance.now() - t0;

  // warm-up: a separate instance, a synthetic mix, at most warmupMs
  const warm = { events: 0, ms: 0 };
  if (warmupMs > 0) {
    const mix = syntheticMix(WARM_EVENTS, seed);
    const wlive = new Uint32Array(mix.objects + 1);
    const wsz = new Uint32Array(mix.objects + 1);
    const ctx = { peer, trace: tr.name, where: 'synthetic warm-up' };
    let inst = await P.make();
    const tw = performance.now();
    let done = 0;
    while (done < mix.events && performance.now() - tw < warmupMs) {
      const to = Math.min(mix.events, done + WARM_CHUNK);
      warmLoop.replayChunk(inst.al, inst.view, mix, wlive, wsz, done, to, ctx);
      done = to;
    }
    warm.ms = performance.now() - tw;
    warm.events = done;
    warmLoop.freeAll(inst.al, inst.view, wlive, wsz, mix.objects, ctx);
    const c = inst.end();
    if (c !== 'ok') throw new Error(`${peer}: after the warm-up: ${c}`);
    inst = null;
  }

  // the measured replay, on a fresh instance
  const live = new Uint32Array(tr.objects + 1);
  const sz = new Uint32Array(tr.objects + 1);
  live.fill(1);
  live.fill(0);
  sz.fill(0);
  const ctx = { peer, trace: tr.name, where: 'trace' };
  const inst = await P.make();
  const { al, view } = inst;
  let peak = inst.footprint();
  let ms = 0;
  const n = tr.events;
  for (let done = 0; done < n; ) {
    const to = Math.min(n, done + sampleEvery);
    const t = performance.now();
    replayChunk(al, view, tr, live, sz, done, to, ctx);
    ms += performance.now() - t;
    done = to;
    const f = inst.footprint(); // off the clock
    if (f > peak) peak = f;
  }
  const freedAtEnd = freeAll(al, view, live, sz, tr.objects, ctx);
  const check = inst.end();
  return { nsPerEvent: (ms * 1e6) / n, ms, events: n, footprintPeak: peak, warmup: warm, loadMs, freedAtEnd, check, info: P.info };
}

try {
  parentPort.postMessage({ ok: true, result: await main() });
} catch (e) {
  parentPort.postMessage({ ok: false, error: String(e?.message ?? e).split('\n')[0], stack: e?.stack ?? String(e) });
}
