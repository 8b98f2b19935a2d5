// `node bench/replay.js --threads`: multi-agent replay of the multi-threaded
// traces on mimalloc-ts. One worker per thread index, all attached to one
// shared buffer (Allocator.attach(handle)); a shared Int32Array maps object
// id -> address; each worker runs only its own thread's events, in file
// order, and a cross-thread free or realloc is done by the thread that made
// it, as in the program.
//
// Synchronisation, in the manner of glibc's trace2wl: the events are split
// into one stream per thread; when thread B ends (frees or reallocs) an
// object that thread A created, B's event carries a dependency "A has run its
// first j events", and A's creating event is marked to publish its progress
// (Atomics.store + notify of A's counter). B waits (a short spin, then
// Atomics.wait) until A's counter reaches j. Nothing else is ordered, so the
// threads run concurrently as far as the trace allows. (The file's global
// order is one valid schedule, so this never deadlocks.)
//
// Measured: wall time from the start barrier to the last worker's end, per
// rep on a fresh buffer (the first 3 reps, 1 with --quick, are warm-up: the
// workers' code was measured to keep speeding up over the first reps), next to the single-agent replay
// of the same events on the same peer (a separate process, as in the default
// mode). Workers that finish their stream detach (their pages are abandoned),
// like threads that exit; the objects still live at the end are freed from
// the main thread afterwards and the buffer is check()ed.

import { fork } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { BENCH_DIR, BUILD_DIR, DIST_INDEX, loadMimallocTs } from './peers.js';
import { FAILED, FINISHED, GO, NO_DEP, PROG } from './replay-thread-worker.js';
import { OP_FREE, OP_REALLOC, ensureBin, readBin, summarize } from './trace.js';
import { median } from './workload.js';

const shared = (Ctor, n) => new Ctor(new SharedArrayBuffer(Math.max(8, n * Ctor.BYTES_PER_ELEMENT)), 0, n);
function toShared(ta) {
  const s = shared(ta.constructor, ta.length);
  s.set(ta);
  return s;
}

/** Per-thread streams with their cross-thread dependencies. */
export function buildStreams(tr, threads) {
  const { events, op, tid, id, old, objects } = tr;
  const count = new Array(threads).fill(0);
  for (let i = 0; i < events; i++) count[tid[i]]++;
  const S = count.map((n) => ({
    stream: shared(Uint32Array, n),
    depThread: shared(Uint8Array, n).fill(NO_DEP),
    depNeed: shared(Uint32Array, n),
    publish: shared(Uint8Array, n),
  }));
  const creatorT = new Uint8Array(objects + 1);
  const creatorJ = new Uint32Array(objects + 1);
  const pos = new Array(threads).fill(0);
  let crossEnds = 0;
  for (let i = 0; i < events; i++) {
    const t = tid[i];
    const j = pos[t]++;
    S[t].stream[j] = i;
    const o = op[i];
    const ended = o === OP_FREE ? id[i] : o === OP_REALLOC ? old[i] : 0;
    if (ended !== 0) {
      const c = creatorT[ended];
      if (c !== t) {
        S[t].depThread[j] = c;
        S[t].depNeed[j] = creatorJ[ended] + 1;
        S[c].publish[creatorJ[ended]] = 1;
        crossEnds++;
      }
    }
    if (o !== OP_FREE) {
      creatorT[id[i]] = t;
      creatorJ[id[i]] = j;
    }
  }
  return { streams: S, crossEnds };
}

function startWorkers(threads, arrays, streams, slots, ctl) {
  const url = new URL('./replay-thread-worker.js', import.meta.url);
  return Array.from({ length: threads }, (_, t) => {
    const w = new Worker(url, {
      workerData: { kind: 'replay-thread', t, arrays, ...streams[t], slots, ctl, distIndex: DIST_INDEX },
    });
    const queue = [];
    const waiters = [];
    let dead = null;
    const push = (m) => (waiters.length ? waiters.shift()(m) : queue.push(m));
    w.on('message', push);
    w.on('error', (e) => {
      dead = e;
      push({ ok: false, t, error: e.stack ?? String(e) });
    });
    w.on('exit', (code) => {
      dead ??= new Error(`worker ${t} exited with ${code}`);
      push({ ok: false, t, error: dead.message });
    });
    return {
      w,
      next: (timeoutMs = 600_000) =>
        new Promise((resolve, reject) => {
          const take = (m) => (m.ok ? resolve(m) : reject(new Error(`thread ${t}: ${String(m.error).split('\n').slice(0, 3).join(' | ')}`)));
          if (queue.length) return take(queue.shift());
          const timer = setTimeout(() => reject(new Error(`thread ${t}: timed out`)), timeoutMs);
          waiters.push((m) => (clearTimeout(timer), take(m)));
        }),
    };
  });
}

/** Single-agent reference in a child process (as the default mode does it). */
function singleAgent(peer, binFile, name, events, mimallocSize, reps) {
  const child = fork(fileURLToPath(new URL('./replay-child.js', import.meta.url)), [peer, binFile, name, String(events), String(mimallocSize)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [...process.execArgv, '--expose-gc'],
  });
  const msgs = [];
  const waiters = [];
  child.on('message', (m) => (waiters.length ? waiters.shift()(m) : msgs.push(m)));
  child.on('exit', (code) => waiters.splice(0).forEach((f) => f({ ok: false, error: `exited with ${code}` })));
  const next = () => new Promise((r) => (msgs.length ? r(msgs.shift()) : waiters.push(r)));
  return (async () => {
    const ns = [];
    try {
      let m = await next();
      if (m.ok === false) throw new Error(m.error);
      for (let r = 0; r <= reps; r++) {
        child.send({ cmd: 'rep', sample: false });
        m = await next();
        if (m.ok === false) throw new Error(m.error);
        if (r > 0) ns.push(m.result.nsPerEvent);
      }
      return { nsPerEvent: median(ns), samples: ns };
    } finally {
      if (child.connected) child.send({ cmd: 'exit' });
    }
  })();
}

export async function runThreads({ traceFiles, selected, unavailable, reps, eventsOpt, mimallocSize, quick, log, argv, TRACES, t0 }) {
  const WARM = quick ? 1 : 3;
  const peers = selected.filter((p) => (p === 'mimalloc-ts' || p === 'mimalloc-ts-secure4') && !unavailable[p]);
  for (const p of selected) if (!peers.includes(p)) log(`--threads: ${p} skipped (only mimalloc-ts and mimalloc-ts-secure4 run in this mode${unavailable[p] ? `; ${unavailable[p]}` : ''})`);
  if (!peers.length) {
    console.log('bench:replay --threads: no mimalloc-ts peer to run');
    return;
  }
  const Allocator = await loadMimallocTs();
  const results = {};
  const notes = [];

  for (const file of traceFiles) {
    const traceFile = path.join(TRACES, file);
    const name = file.replace(/\.trace\.gz$/, '');
    const { binFile, header } = await ensureBin(traceFile, BUILD_DIR);
    if (header.threads < 2) {
      log(`${name}: single-threaded, skipped in --threads mode`);
      continue;
    }
    const events = Math.min(header.events, eventsOpt);
    const tr = readBin(binFile, { maxEvents: events, name });
    const sum = summarize(tr);
    const threads = sum.threads;
    if (threads < 2) {
      log(`${name}: the first ${events.toLocaleString('en-US')} events are all of thread 0, skipped in --threads mode`);
      continue;
    }
    const { streams, crossEnds } = buildStreams(tr, threads);
    const arrays = {};
    for (const k of ['op', 'id', 'old', 'size', 'align']) arrays[k] = toShared(tr[k]);
    const slots = shared(Int32Array, tr.objects + 1);
    const ctl = shared(Int32Array, PROG + threads);
    const R = (results[name] = { events, fileEvents: header.events, threads, perThread: sum.perThread, crossThreadEnds: crossEnds, peakLive: sum.peakLive, peers: {} });
    log(`${name}: ${events.toLocaleString('en-US')} events, ${threads} threads (${sum.perThread.join(' / ')}), ${crossEnds} cross-thread frees/reallocs`);

    const workers = startWorkers(threads, arrays, streams, slots, ctl);
    try {
      await Promise.all(workers.map((w) => w.next()));
      let gen = 0;
      // workers tier up slowly: WARM untimed reps first (rep <= 0)
      for (let rep = 1 - WARM; rep <= reps; rep++) {
        for (const peer of peers) {
          const P = (R.peers[peer] ??= { wallMs: [], waits: [] });
          if (P.error) continue;
          try {
            const a = Allocator.create({ size: mimallocSize, ...(peer === 'mimalloc-ts-secure4' ? { secure: 4 } : {}) });
            slots.fill(0);
            ctl.fill(0);
            gen++;
            for (const w of workers) w.w.postMessage({ cmd: 'run', handle: a.handle, gen });
            await Promise.all(workers.map((w) => w.next()));
            Atomics.store(ctl, GO, gen);
            Atomics.notify(ctl, GO);
            const done = await Promise.all(workers.map((w) => w.next()));
            if (Atomics.load(ctl, FAILED) !== 0) throw new Error('a worker failed');
            if (Atomics.load(ctl, FINISHED) !== threads) throw new Error(`only ${Atomics.load(ctl, FINISHED)} of ${threads} workers finished`);
            const wall = Math.max(...done.map((d) => d.end)) - Math.min(...done.map((d) => d.start));
            const waits = done.reduce((x, d) => x + d.waits, 0);
            // CPU-ish time: each worker's span minus the time it slept waiting for another
            const busy = done.reduce((x, d) => x + (d.end - d.start - d.waitMs), 0);
            // untimed: free what is left from the main thread, then check
            let left = 0;
            for (let k = 1; k <= tr.objects; k++) {
              if (slots[k] !== 0) {
                a.free(slots[k]);
                left++;
              }
            }
            a.check();
            const st = a.stats();
            if (st.used !== 0 || st.blocks !== 0) throw new Error(`after freeing everything stats() says used ${st.used}, blocks ${st.blocks}`);
            if (rep <= 0) {
              (P.warmupMs ??= []).push(wall);
              P.committed = st.committed;
              P.pagesBytesAtEnd = st.pagesBytes;
              P.freedAtEnd = left;
            } else {
              P.wallMs.push(wall);
              P.waits.push(waits);
              (P.busyMs ??= []).push(busy);
            }
            log(`${name} rep ${rep <= 0 ? 'warm-up' : rep}/${reps} ${peer}: ${wall.toFixed(1)} ms wall, ${((wall * 1e6) / events).toFixed(1)} ns/event, ${waits} waits, workers busy ${busy.toFixed(1)} ms in all`);
          } catch (e) {
            P.error = e.message;
            notes.push(`${name}/${peer} (threads): ${e.message}`);
            log(`${name}/${peer} failed: ${e.message}`);
          }
        }
      }
    } finally {
      for (const w of workers) {
        w.w.postMessage({ cmd: 'exit' });
        setTimeout(() => w.w.terminate(), 2000).unref();
      }
    }
    for (const peer of peers) {
      const P = R.peers[peer];
      if (P.wallMs?.length) {
        P.wallMedianMs = median(P.wallMs);
        P.nsPerEvent = (P.wallMedianMs * 1e6) / events;
        P.busyNsPerEvent = (median(P.busyMs) * 1e6) / events;
      }
      try {
        log(`${name}: single-agent reference for ${peer}`);
        P.single = await singleAgent(peer, binFile, name, events, mimallocSize, reps);
      } catch (e) {
        P.single = { error: e.message };
        notes.push(`${name}/${peer} (single-agent reference): ${e.message}`);
      }
    }
  }

  // ---- report
  const fmt = (x, d = 1) => (x === undefined || x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
  const rows = [];
  for (const [n, R] of Object.entries(results)) {
    for (const p of peers) {
      const P = R.peers[p];
      rows.push([
        n,
        R.events.toLocaleString('en-US'),
        `${R.threads}`,
        `${R.crossThreadEnds}`,
        p,
        P.error ? 'error' : fmt(P.wallMedianMs),
        P.error ? '-' : fmt(P.nsPerEvent),
        fmt(P.single?.nsPerEvent),
        P.error || !P.single?.nsPerEvent ? '-' : `${fmt(P.single.nsPerEvent / P.nsPerEvent, 2)}x`,
        P.waits?.length ? `${median(P.waits)}` : '-',
        fmt(P.busyNsPerEvent),
        P.committed ? fmt(P.committed / 2 ** 20) : '-',
      ]);
    }
  }
  const head = ['trace', 'events', 'threads', 'x-thread ends', 'peer', 'wall ms', 'ns/event (wall)', 'single-agent ns/event', 'speed-up', 'waits', 'busy ns/event', 'committed MiB'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (i === 0 || i === 4 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [];
  const elapsed = (performance.now() - t0) / 1e3;
  out.push(`mimalloc-ts trace replay, --threads mode (${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism?.() ?? os.cpus().length} CPUs, Node ${process.version})${quick ? ' [--quick]' : ''}`);
  out.push(
    `one worker per thread index on one shared buffer; cross-thread frees made by the freeing thread, ordered only where an object made by another thread ends; ` +
      `wall = start barrier to last worker done, median of ${reps} rep(s) after ${WARM} warm-up rep(s) (the same workers throughout, a fresh buffer per rep); single-agent = the same events on one agent (own process)`,
  );
  out.push('');
  out.push(line(head));
  out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) out.push(line(r));
  out.push('');
  out.push('notes:');
  for (const n of [
    'speed-up = single-agent ns/event / multi-agent wall ns/event (the machine has 2 CPUs; waits = times a worker slept for another thread)',
    'committed MiB = stats().committed (high-water of bytes handed to pages) after a warm-up rep; single-agent figures are in the default mode',
    'busy ns/event = sum over workers of (their span - time asleep waiting for another thread) / events: the work done, comparable with single-agent ns/event',
    'after every rep the objects left were freed from the main thread; check() passed and stats().used === 0 unless noted',
    ...notes,
  ])
    out.push(`  ${n}`);
  out.push('');
  out.push(`total time ${fmt(elapsed)} s`);
  out.push('raw samples in bench/results/replay-threads.json');
  console.log(out.join('\n'));
  const dir = path.join(BENCH_DIR, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, 'replay-threads.json'),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        command: `node bench/replay.js ${argv.join(' ')}`.trim(),
        machine: { cpu: os.cpus()[0]?.model, cpus: os.availableParallelism?.() ?? os.cpus().length, node: process.version },
        traces_dir: TRACES,
        reps,
        mimalloc_ts_size: mimallocSize,
        results,
        notes,
        elapsed_s: elapsed,
      },
      null,
      2,
    ) + '\n',
  );
}
