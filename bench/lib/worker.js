// Worker entry for bench/micro.js: opens ONE peer and runs one task.
//   { kind: 'single', peer, workloads, params }  -> (a), batched (a), (b), (d)
//   { kind: 'c', peer, params, ctrl, idx, rounds, schedule, handle? } -> per-rep timestamps
import { parentPort, workerData } from 'node:worker_threads';
import { openPeer } from './peers.js';
import {
  barrier,
  calibrate,
  fillB,
  initD,
  makeSizesA,
  makeStepsD,
  makeTablesB,
  median,
  runA,
  runB,
  runD,
  validate,
  validateD,
} from './workload.js';

/** Calibrate, warm up, recalibrate, then p.reps timed runs (`afterRep(i)` after each). */
function measure(run, start, p, afterRep) {
  let n = calibrate(run, start, p.target_ms);
  warmUp(() => run(n), p);
  // calibrate again now that the code is optimised (the first calibration
  // may have timed interpreted code and chosen far too few iterations)
  n = Math.max(1, Math.floor((n * p.target_ms) / Math.max(run(n), 1e-3)));
  const ms = [];
  for (let i = 0; i < p.reps; i++) {
    ms.push(run(n));
    afterRep?.(i);
  }
  return { n, ms };
}

/** At least p.warmup runs and at least p.warmup_ms of running. */
function warmUp(run, p) {
  const t0 = performance.now();
  for (let i = 0; i < p.warmup || performance.now() - t0 < p.warmup_ms; i++) run();
}

async function single({ peer: name, workloads, params: p }) {
  const peer = await openPeer(name, { realloc: workloads.includes('d') });
  const out = { info: peer.info };
  const al = peer.al;
  const sizes = makeSizesA(p);
  validate(al, sizes, p.a_blocks, peer.memBytes);

  if (workloads.includes('a')) {
    const ptrs = new Uint32Array(p.a_blocks);
    const { n, ms } = measure((r) => runA(al, sizes, p.a_blocks, p.a_tables, r, ptrs), 1, p);
    const ops = 2 * p.a_blocks * n;
    const samples = ms.map((t) => (t * 1e6) / ops);
    out.a = { rounds: n, ops_per_rep: ops, ns_per_op: median(samples), samples };
    if (peer.batchA) {
      const m = measure((r) => peer.batchA(sizes, p.a_blocks, p.a_tables, r), 1, p);
      const bops = 2 * p.a_blocks * m.n;
      const bs = m.ms.map((t) => (t * 1e6) / bops);
      out.a_batched = { rounds: m.n, ops_per_rep: bops, ns_per_op: median(bs), samples: bs };
    }
  }

  if (workloads.includes('b')) {
    const tables = makeTablesB(p);
    const st = { tables, live: new Uint32Array(p.b_live), cursor: 0 };
    const fill_ms = fillB(al, tables, st.live);
    const { n, ms } = measure((s) => runB(al, st, s), 1000, p);
    const samples = ms.map((t) => (t * 1e6) / (2 * n));
    out.b = { live: p.b_live, steps: n, ops_per_rep: 2 * n, fill_ms, ns_per_op: median(samples), samples };
  }

  if (workloads.includes('d')) {
    const inc = makeStepsD(p);
    validateD(al, inc, p, peer.view, peer.memBytes);
    const st = initD(al, inc, p, peer.view);
    const reallocs = [];
    const restarts = [];
    const moved = [];
    const { n, ms } = measure((s) => runD(al, st, s), 1000, p, () => {
      reallocs.push(st.reallocs);
      restarts.push(st.restarts);
      moved.push(st.moved);
    });
    const samples = ms.map((t, i) => (t * 1e6) / Math.max(1, reallocs[i]));
    out.d = {
      buffers: p.d_buffers,
      steps: n,
      ops_per_rep: median(reallocs),
      ns_per_op: median(samples),
      samples,
      reallocs,
      restarts,
      moved,
    };
    for (const q of st.ptr) al.free(q);
  }

  // untimed consistency check where the allocator offers one (not with
  // checkFree: false, whose fast paths leave allocation bits stale by design)
  if (typeof al.check === 'function' && name !== 'mimalloc-ts-nocheck') {
    try {
      al.check();
      out.check = 'ok';
    } catch (e) {
      out.check = `check() failed: ${e.message}`;
    }
  }
  peer.close();
  return out;
}

// (c): two workers; on a 'S' rep only worker 0 runs (worker 1 waits at the
// barrier), on a 'D' rep both run. Alternating solo and duo reps inside one
// run makes machine drift hit both alike.
async function scaling({ peer: name, params: p, ctrl, idx, rounds, schedule, handle }) {
  const peer = await openPeer(name, { handle });
  const al = peer.al;
  const sizes = makeSizesA(p);
  const ptrs = new Uint32Array(p.a_blocks);
  const ctl = new Int32Array(ctrl);
  const run = () => runA(al, sizes, p.a_blocks, p.a_tables, rounds, ptrs);
  warmUp(run, p);
  const t0 = [];
  const t1 = [];
  for (const mode of schedule) {
    barrier(ctl, 2);
    if (mode === 'S' && idx !== 0) {
      t0.push(null);
      t1.push(null);
      continue;
    }
    t0.push(performance.timeOrigin + performance.now());
    run();
    t1.push(performance.timeOrigin + performance.now());
  }
  peer.close();
  return { t0, t1 };
}

try {
  const task = workerData;
  const result = task.kind === 'c' ? await scaling(task) : await single(task);
  parentPort.postMessage({ ok: true, result });
} catch (e) {
  parentPort.postMessage({ ok: false, error: e?.stack ?? String(e) });
}
