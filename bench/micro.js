#!/usr/bin/env node
// Micro benchmark: mimalloc-ts side by side with native mimalloc (the
// reference), glibc malloc, dlmalloc, mimalloc v3 and AssemblyScript's TLSF
// compiled to wasm, and @thi.ng/malloc (plus js-floor, a no-checks reference
// floor).
// Run with `npm run bench:micro`.
//
//   (a) malloc 1,000 blocks of 8..207 B, free them in allocation order; repeat
//   (b) 100,000 live blocks; free a random one and malloc a new one in its slot
//   (c) two workers each doing (a) at once vs one worker doing (a) alone
//   (d) realloc-grow: 64 growing buffers, round-robin; each starts as
//       malloc(16) and is grown by realloc in steps of +16..+64 B up to 64 KiB,
//       then freed and started again; after each call the buffer's first and
//       last 8 bytes are written. ns per realloc call (the restarts' malloc
//       and free included in the time). Run in its own worker/process.
//
// Options: --quick (fewer/shorter reps), --peers=name,name  --workloads=abcd
//          --wait-idle[=seconds]: first wait (default up to 300 s) until other
//          processes use < 10% of the CPUs; --v8-default-tiering (see below)
// Results: a table on stdout, progress on stderr, bench/results/micro.json.
//
// The run re-executes itself under `node --no-wasm-dynamic-tiering`, so the
// wasm peers run fully optimised (TurboFan) code from the first rep instead of
// tiering up from Liftoff during the first few hundred ms (which showed as
// 12..18 ns/op drifting down to 11.5 for dlmalloc). JavaScript code is not
// affected. Pass --v8-default-tiering to measure with V8's defaults.
//
// The machine is small and shared: CPU time used by other processes is
// measured around every measurement; a disturbed measurement is repeated once
// the machine is quiet (at most twice) and the run's notes list what stayed
// disturbed. See BENCHMARKS.md for the methodology.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { BENCH_DIR, BUILD_DIR, DIST_INDEX, JS_PEERS, MIMALLOC_TS_SIZE, loadMimallocTs, probeNoCheck } from './lib/peers.js';
import { PARAMS, median, scheduleC } from './lib/workload.js';
import { cpuTicks, waitIdle } from './lib/noise.js';

// ---- options ----------------------------------------------------------------

const TIERING_FLAG = '--no-wasm-dynamic-tiering';
if (!process.execArgv.includes(TIERING_FLAG) && !process.argv.includes('--v8-default-tiering')) {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [...process.execArgv, TIERING_FLAG, script, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  process.exit(r.status ?? 1);
}

const argv = process.argv.slice(2);
const opt = (name) => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const quick = argv.includes('--quick');
const params = quick
  ? { ...PARAMS, reps: 5, c_reps: 4, target_ms: 30, c_target_ms: 50, warmup_ms: 100, passes: 1, c_passes: 1 }
  : { ...PARAMS };
const workloads = opt('workloads') ?? 'abcd';
const NATIVE = ['native-mimalloc', 'native-glibc'];
const ALL = [...NATIVE, ...JS_PEERS];
const selected = opt('peers')?.split(',') ?? ALL;
const REF = 'native-mimalloc';
const log = (...m) => console.error('[bench:micro]', ...m);

// ---- build the peers when artifacts are missing or stale --------------------

const ARTIFACTS = {
  dlmalloc: { file: 'dlmalloc.wasm', src: ['peers/dlmalloc_exports.c'] },
  'mimalloc-wasm': { file: 'mimalloc.wasm', src: ['peers/dlmalloc_exports.c'] },
  tlsf: { file: 'tlsf.wasm', src: ['peers/tlsf/index.ts'] },
  'native-mimalloc': { file: 'native_micro_mimalloc', src: ['peers/native_micro.c'] },
  'native-glibc': { file: 'native_micro_glibc', src: ['peers/native_micro.c'] },
};
const PEER_ARTIFACT = {
  'dlmalloc-wasm': 'dlmalloc',
  'mimalloc-wasm': 'mimalloc-wasm',
  'tlsf-wasm': 'tlsf',
  'native-mimalloc': 'native-mimalloc',
  'native-glibc': 'native-glibc',
};

function stale(a) {
  const f = path.join(BUILD_DIR, a.file);
  if (!existsSync(f)) return true;
  const t = statSync(f).mtimeMs;
  return [...a.src, 'peers/build.sh'].some((s) => statSync(path.join(BENCH_DIR, s)).mtimeMs > t);
}

function ensureBuild() {
  if (!Object.values(ARTIFACTS).some(stale)) return;
  log('peer artifacts missing or stale: running bash bench/peers/build.sh');
  const r = spawnSync('bash', [path.join(BENCH_DIR, 'peers', 'build.sh')], { stdio: ['ignore', 2, 2] });
  if (r.status !== 0) log(`build.sh exited with ${r.status ?? r.signal}`);
}

function artifactProblem(peer) {
  const key = PEER_ARTIFACT[peer];
  if (!key) return null;
  const why = path.join(BUILD_DIR, `${key}.unavailable`);
  if (existsSync(why)) return readFileSync(why, 'utf8').trim();
  if (!existsSync(path.join(BUILD_DIR, ARTIFACTS[key].file))) return `${ARTIFACTS[key].file} was not built`;
  return null;
}

// ---- running things ---------------------------------------------------------

const nativeArgs = () =>
  Object.entries(params).filter(([k]) => !['passes', 'c_passes'].includes(k))
    .map(([k, v]) => `${k}=${v}`);

function runNative(peer, wl) {
  const bin = path.join(BUILD_DIR, PEER_ARTIFACT[peer] === 'native-mimalloc' ? 'native_micro_mimalloc' : 'native_micro_glibc');
  const r = spawnSync(bin, [...nativeArgs(), `workloads=${wl}`], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`exit ${r.status ?? r.signal}: ${(r.stderr || r.error?.message || '').trim()}`);
  const out = JSON.parse(r.stdout);
  out.info = peer === REF ? `mimalloc ${out.version} (Debian libmimalloc), gcc -O2, mi_malloc/mi_free` : 'glibc malloc/free, gcc -O2';
  return out;
}

const WORKER = new URL('./lib/worker.js', import.meta.url);

function runWorker(task, timeoutMs = 120_000) {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { workerData: task });
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      w.terminate();
      reject(new Error(`timed out after ${timeoutMs / 1000} s`));
    }, timeoutMs);
    w.on('message', (m) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (m.ok) resolve(m.result);
      else reject(new Error(m.error.split('\n').slice(0, 3).join(' | ')));
    });
    w.on('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(e);
    });
    w.on('exit', (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code} before reporting`));
    });
    task.worker = w;
  });
}

/** (c): two workers, solo and duo reps interleaved; Mops/s per rep. */
async function runScaling(peer, rounds, handle) {
  const ctrl = new SharedArrayBuffer(64);
  const schedule = scheduleC(params.c_reps);
  const tasks = [0, 1].map((idx) => ({ kind: 'c', peer, params, ctrl, idx, rounds, schedule, handle }));
  const ps = tasks.map((t) => runWorker(t));
  let res;
  try {
    res = await Promise.all(ps);
  } catch (e) {
    for (const t of tasks) t.worker?.terminate();
    await Promise.allSettled(ps);
    throw e;
  }
  const ops = 2 * params.a_blocks * rounds; // per worker
  const one = [];
  const two = [];
  schedule.forEach((mode, r) => {
    if (mode === 'S') one.push(ops / ((res[0].t1[r] - res[0].t0[r]) * 1e3));
    else two.push((2 * ops) / ((Math.max(res[0].t1[r], res[1].t1[r]) - Math.min(res[0].t0[r], res[1].t0[r])) * 1e3));
  });
  return { one, two };
}

// ---- main -------------------------------------------------------------------

/** Fraction of all CPUs busy over `ms` (while this process sleeps). */
async function cpuBusy(ms = 300) {
  const sum = () =>
    os.cpus().reduce(
      (a, c) => {
        const t = c.times;
        a.idle += t.idle;
        a.all += t.user + t.nice + t.sys + t.idle + t.irq;
        return a;
      },
      { idle: 0, all: 0 },
    );
  const a = sum();
  await new Promise((r) => setTimeout(r, ms));
  const b = sum();
  return 1 - (b.idle - a.idle) / Math.max(1, b.all - a.all);
}
/**
 * Run one measurement; if other processes took more than 10% of the CPU
 * time meanwhile, wait for the machine to go quiet and repeat it (at most
 * twice). Measurements still disturbed after that are listed in the notes.
 */
const disturbed = [];
async function guarded(label, fn) {
  for (let attempt = 0; ; attempt++) {
    const a = cpuTicks();
    const t = performance.now();
    const r = await fn();
    const b = cpuTicks();
    const secs = (performance.now() - t) / 1e3;
    const share = a && b ? Math.max(0, b.busy - a.busy - (b.self - a.self)) / (secs * 100 * os.cpus().length) : 0;
    if (share <= 0.1) return r;
    if (attempt >= 2) {
      disturbed.push(`${label} (${(share * 100).toFixed(0)}%)`);
      return r;
    }
    log(`${label}: other processes used ${(share * 100).toFixed(0)}% of the CPU; waiting for quiet and repeating`);
    await waitIdle(60);
  }
}

const waitArg = argv.find((a) => a === '--wait-idle' || a.startsWith('--wait-idle='));
if (waitArg) {
  const ok = await waitIdle(Number(waitArg.split('=')[1]) || 300);
  log(ok ? 'machine is idle; starting' : 'machine did not become idle; starting anyway');
}
const load0 = os.loadavg();
const busy0 = await cpuBusy();
const ticks0 = cpuTicks();
if (busy0 > 0.15) log(`warning: ${(busy0 * 100).toFixed(0)}% of the CPUs were busy before the run started; numbers will be noisy`);
const results = {};
const unavailable = {};
const notes = [];
const t0 = performance.now();

ensureBuild();

let Allocator = null;
if (selected.some((p) => p.startsWith('mimalloc-ts'))) {
  try {
    Allocator = await loadMimallocTs();
    const a = Allocator.create({ size: MIMALLOC_TS_SIZE });
    const p = a.malloc(64);
    if (typeof p !== 'number' || p === 0) throw new Error(`malloc(64) returned ${p}`);
    a.free(p);
  } catch (e) {
    Allocator = null;
    const why = `skipped: the allocator is not usable yet (${e.message})`;
    unavailable['mimalloc-ts'] = unavailable['mimalloc-ts-nocheck'] = why;
    log(`mimalloc-ts ${why}`);
  }
  if (Allocator && selected.includes('mimalloc-ts-nocheck')) {
    const why = probeNoCheck(Allocator);
    if (why) unavailable['mimalloc-ts-nocheck'] = `n/a: ${why}`;
  }
}

for (const peer of selected) {
  if (!ALL.includes(peer)) throw new Error(`unknown peer ${peer}; known: ${ALL.join(', ')}`);
  if (unavailable[peer]) continue;
  const why = artifactProblem(peer);
  if (why) unavailable[peer] = `unavailable: ${why}`;
}
const active = () => selected.filter((p) => !unavailable[p]);

/** Pool the samples of one more pass into results[peer][key]. */
function merge(peer, key, run) {
  const counts = ['reallocs', 'restarts', 'moved'].filter((k) => run[k]); // (d): per-rep counts
  const dst = ((results[peer] ??= {})[key] ??= { ...run, samples: [], passes: [], ...Object.fromEntries(counts.map((k) => [k, []])) });
  dst.samples.push(...run.samples);
  for (const k of counts) dst[k].push(...run[k]);
  dst.passes.push({ ops_per_rep: run.ops_per_rep, ns_per_op: run.ns_per_op });
  dst.ns_per_op = median(dst.samples);
}

// (a), (b) and (d): `passes` passes over all peers, interleaved so that slow
// drifts of the machine hit every peer alike; each pass is a fresh process or
// worker, and (d) gets its own (a fresh heap, whatever else ran).
const groups = [workloads.replace(/[^ab]/g, ''), workloads.replace(/[^d]/g, '')].filter(Boolean);
for (let pass = 1; groups.length && pass <= params.passes; pass++) {
  for (const peer of active()) {
    for (const group of groups) {
      if (unavailable[peer]) break;
      if (group === 'd' && results[peer]?.d_error) continue;
      try {
        let r;
        if (NATIVE.includes(peer)) {
          log(`pass ${pass}/${params.passes}: ${peer} ${group}`);
          r = await guarded(`${peer} ${group} pass ${pass}`, () => runNative(peer, group));
        } else {
          const wl = peer === 'mimalloc-ts-nocheck' ? group.replace(/[^ad]/g, '') : group;
          if (!wl) continue;
          log(`pass ${pass}/${params.passes}: ${peer} ${wl}`);
          r = await guarded(`${peer} ${wl} pass ${pass}`, () => runWorker({ kind: 'single', peer, workloads: wl, params }));
        }
        (results[peer] ??= {}).info = r.info;
        if (r.check && (results[peer].check ?? 'ok') === 'ok') results[peer].check = r.check; // keep a failure
        for (const key of ['a', 'a_batched', 'b', 'd']) if (r[key]) merge(peer, key, r[key]);
      } catch (e) {
        // a failure in (d) costs the peer only its (d) column
        if (group === 'd') (results[peer] ??= {}).d_error = `failed: ${e.message}`;
        else unavailable[peer] = `failed: ${e.message}`;
        log(`${peer} ${group} failed: ${e.message}`);
      }
    }
  }
}

// (c): same per-worker work for 1 and 2 workers, sized to ~c_target_ms per rep
if (workloads.includes('c')) {
  const cPeers = active().filter((p) => p !== 'mimalloc-ts-nocheck' && p !== 'mimalloc-ts-secure4');
  const acc = {};
  for (let pass = 1; pass <= params.c_passes; pass++) {
    for (const peer of cPeers) {
      if (results[peer]?.c_error) continue;
      log(`pass ${pass}/${params.c_passes}: ${peer} (c)`);
      const c = (acc[peer] ??= { one_samples: [], two_samples: [], passes: [] });
      try {
        if (NATIVE.includes(peer)) {
          const r = await guarded(`${peer} (c) pass ${pass}`, () => runNative(peer, 'c'));
          (results[peer] ??= {}).info ??= r.info;
          c.one_samples.push(...r.c.one_samples);
          c.two_samples.push(...r.c.two_samples);
          c.passes.push({ rounds_per_worker: r.c.rounds_per_worker, one_mops: r.c.one_mops, two_mops: r.c.two_mops });
          continue;
        }
        const ns = results[peer]?.a?.ns_per_op ?? 100;
        const rounds = Math.max(1, Math.round((params.c_target_ms * 1e6) / (ns * 2 * params.a_blocks)));
        let alloc = null; // mimalloc-ts: a fresh shared allocator per attempt
        const { one, two } = await guarded(`${peer} (c) pass ${pass}`, () => {
          if (peer === 'mimalloc-ts') alloc = Allocator.create({ size: MIMALLOC_TS_SIZE });
          return runScaling(peer, rounds, alloc?.handle);
        });
        if (alloc && typeof alloc.check === 'function') {
          try {
            alloc.check();
          } catch (e) {
            notes.push(`mimalloc-ts (c): check() after the workers detached failed: ${e.message}`);
          }
        }
        c.one_samples.push(...one);
        c.two_samples.push(...two);
        c.passes.push({ rounds_per_worker: rounds, one_mops: median(one), two_mops: median(two) });
      } catch (e) {
        (results[peer] ??= {}).c_error = e.message;
        log(`${peer} (c) failed: ${e.message}`);
      }
    }
  }
  for (const [peer, c] of Object.entries(acc)) {
    if (results[peer]?.c_error || !c.one_samples.length) continue;
    c.one_mops = median(c.one_samples);
    c.two_mops = median(c.two_samples);
    c.scaling = c.two_mops / c.one_mops;
    (results[peer] ??= {}).c = c;
  }
}

// ---- report -----------------------------------------------------------------

/** Newest modification time of src/ (identifies the mimalloc-ts source measured; dist/ is rebuilt every run). */
function sourceTime() {
  try {
    const dir = path.resolve(path.dirname(DIST_INDEX), '..', 'src');
    const t = Math.max(...readdirSync(dir).map((f) => statSync(path.join(dir, f)).mtimeMs));
    return new Date(t).toISOString();
  } catch {
    return null;
  }
}

const fmt = (x, d = 2) => (x === undefined || x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
const ref = results[REF];
const spread = (s) => (s ? `${fmt(Math.min(...s))}..${fmt(Math.max(...s))}` : '-');

function table(title, rows, cols) {
  const lines = [title];
  const widths = cols.map((c) => Math.max(c.h.length, ...rows.map((r) => String(c.f(r)).length)));
  lines.push(cols.map((c, i) => (c.left ? pad(c.h, widths[i]) : lpad(c.h, widths[i]))).join('  ').trimEnd());
  lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows)
    lines.push(cols.map((c, i) => (c.left ? pad(c.f(r), widths[i]) : lpad(c.f(r), widths[i]))).join('  ').trimEnd());
  return lines.join('\n');
}

const FLOOR_NOTE = 'reference floor, not an allocator (size-class LIFO lists, no checks)';
const order = selected.filter((p) => ALL.includes(p));
const why = (p) => unavailable[p] ?? '';

function singleRows(w) {
  const rows = [];
  for (const p of order) {
    const r = results[p]?.[w];
    if (r) rows.push({ name: p, r });
    else if (unavailable[p] && !(w === 'b' && p === 'mimalloc-ts-nocheck')) rows.push({ name: p, r: null });
    const rb = results[p]?.[`${w}_batched`];
    if (rb) rows.push({ name: `${p} (batched in wasm)`, r: rb });
  }
  return rows;
}

const out = [];
const machine = `${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism?.() ?? os.cpus().length} CPUs, Node ${process.version}`;
out.push(`mimalloc-ts micro benchmark (${machine})${quick ? ' [--quick]' : ''}`);
out.push(
  `(a)/(b)/(d): median of ${params.passes} passes x ${params.reps} timed reps (each pass a fresh worker/process, ` +
    `warm-up >= ${params.warmup} reps and ${params.warmup_ms} ms, ~${params.target_ms} ms per rep); ratio = ns/op / ${REF} ns/op`,
);

if (workloads.includes('a')) {
  out.push('');
  out.push(
    table(
      `(a) malloc ${params.a_blocks} blocks of ${params.size_min}..${params.size_min + params.size_span - 1} B, then free them in allocation order; repeated`,
      singleRows('a'),
      [
        { h: 'allocator', left: true, f: (x) => x.name },
        { h: 'ns/op', f: (x) => (x.r ? fmt(x.r.ns_per_op) : '-') },
        { h: 'min..max', f: (x) => (x.r ? spread(x.r.samples) : '') },
        { h: 'x native-mi', f: (x) => (x.r && ref?.a ? fmt(x.r.ns_per_op / ref.a.ns_per_op) : '-') },
        { h: 'ops/rep', f: (x) => (x.r ? x.r.ops_per_rep : '') },
        { h: 'notes', left: true, f: (x) => (x.r ? (x.name === 'js-floor' ? FLOOR_NOTE : '') : why(x.name)) },
      ],
    ),
  );
}

if (workloads.includes('b')) {
  out.push('');
  out.push(
    table(
      `(b) ${params.b_live} live blocks; free a random one, malloc a new one (${params.size_min}..${params.size_min + params.size_span - 1} B) in its slot`,
      singleRows('b'),
      [
        { h: 'allocator', left: true, f: (x) => x.name },
        { h: 'ns/op', f: (x) => (x.r ? fmt(x.r.ns_per_op) : '-') },
        { h: 'min..max', f: (x) => (x.r ? spread(x.r.samples) : '') },
        { h: 'x native-mi', f: (x) => (x.r && ref?.b ? fmt(x.r.ns_per_op / ref.b.ns_per_op) : '-') },
        { h: 'ops/rep', f: (x) => (x.r ? x.r.ops_per_rep : '') },
        {
          h: 'notes',
          left: true,
          f: (x) =>
            !x.r
              ? why(x.name)
              : x.name === 'thing-malloc'
                ? `O(n) free: only ${x.r.steps} free+malloc steps per rep (live count kept at ${x.r.live})`
                : x.name === 'js-floor'
                  ? FLOOR_NOTE
                  : '',
        },
      ],
    ),
  );
}

if (workloads.includes('c')) {
  const rows = order
    .filter((p) => p !== 'mimalloc-ts-nocheck')
    .map((p) => ({ name: p, c: results[p]?.c, err: results[p]?.c_error ?? why(p) }));
  out.push('');
  out.push(
    table(
      `(c) (a) in 2 workers at once vs 1 worker alone, same work per worker; aggregate Mops/s (median of ${params.c_passes} passes x ${params.c_reps} reps)`,
      rows,
      [
        { h: 'allocator', left: true, f: (x) => x.name },
        { h: '1 worker', f: (x) => (x.c ? fmt(x.c.one_mops, 1) : '-') },
        { h: '2 workers', f: (x) => (x.c ? fmt(x.c.two_mops, 1) : '-') },
        { h: 'scaling', f: (x) => (x.c ? fmt(x.c.scaling) : '-') },
        { h: 'ns/op (2w aggr.)', f: (x) => (x.c ? fmt(1e3 / x.c.two_mops) : '-') },
        { h: 'x native-mi (2w)', f: (x) => (x.c && ref?.c ? fmt(ref.c.two_mops / x.c.two_mops) : '-') },
        {
          h: 'notes',
          left: true,
          f: (x) =>
            x.c
              ? x.name === 'mimalloc-ts'
                ? 'both workers attached to one shared allocator'
                : NATIVE.includes(x.name)
                  ? 'pthreads'
                  : x.name === 'js-floor'
                    ? 'reference floor (not an allocator), one per worker'
                    : 'one instance per worker'
              : x.err,
        },
      ],
    ),
  );
}

if (workloads.includes('d')) {
  const rows = order
    .filter((p) => results[p]?.d || results[p]?.d_error || unavailable[p])
    .map((p) => ({ name: p, r: results[p]?.d, err: results[p]?.d_error ?? why(p) }));
  const sum = (v) => v.reduce((x, y) => x + y, 0);
  out.push('');
  out.push(
    table(
      `(d) realloc-grow: ${params.d_buffers} buffers round-robin, each malloc(${params.d_start}) then realloc'd by ` +
        `+${params.d_step_min}..+${params.d_step_min + params.d_step_span - 1} B up to ${params.d_max / 1024} KiB, then freed and restarted; ` +
        'first and last 8 B written after each call; ns per realloc (restart malloc+free included)',
      rows,
      [
        { h: 'allocator', left: true, f: (x) => x.name },
        { h: 'ns/realloc', f: (x) => (x.r ? fmt(x.r.ns_per_op) : '-') },
        { h: 'min..max', f: (x) => (x.r ? spread(x.r.samples) : '') },
        { h: 'x native-mi', f: (x) => (x.r && ref?.d ? fmt(x.r.ns_per_op / ref.d.ns_per_op) : '-') },
        { h: 'reallocs/rep', f: (x) => (x.r ? x.r.ops_per_rep : '') },
        { h: 'malloc+free/rep', f: (x) => (x.r?.restarts ? fmt(sum(x.r.restarts) / x.r.restarts.length, 0) : '') },
        { h: 'moved', f: (x) => (x.r?.moved ? `${fmt((100 * sum(x.r.moved)) / sum(x.r.reallocs), 1)}%` : '') },
        {
          h: 'notes',
          left: true,
          f: (x) =>
            !x.r
              ? x.err
              : x.name === 'js-floor'
                ? `${FLOOR_NOTE}; realloc in place within the class, else malloc+copy+free`
                : x.name === 'tlsf-wasm'
                  ? 'heap.realloc exported from the AssemblyScript module'
                  : x.name === 'thing-malloc'
                    ? "MemPool.realloc, then free(old) after a move: MemPool's own move leaks the old block"
                    : '',
        },
      ],
    ),
  );
}

const elapsed = (performance.now() - t0) / 1e3;
const load1 = os.loadavg();
const ticks1 = cpuTicks();
const busy1 = await cpuBusy();
// share of the machine's CPU time during the run that other processes used
const foreign =
  ticks0 && ticks1
    ? Math.max(0, ticks1.busy - ticks0.busy - (ticks1.self - ticks0.self)) / (elapsed * 100 * os.cpus().length)
    : null;
if (disturbed.length) notes.push(`still disturbed by other processes after 2 repeats: ${disturbed.join(', ')}`);
if (foreign !== null && foreign > 0.05) notes.push(`other processes used ${fmt(foreign * 100, 0)}% of the CPU time during the run: numbers are noisy`);

// targets from the issue
const targets = [];
const mt = results['mimalloc-ts'];
if (mt?.a && ref?.a) {
  const r = mt.a.ns_per_op / ref.a.ns_per_op;
  targets.push(`(a) mimalloc-ts / native mimalloc = ${fmt(r)}x (target <= 2x): ${r <= 2 ? 'met' : 'NOT met'}`);
}
const dl = results['dlmalloc-wasm'];
if (mt?.a && dl?.a) {
  const r = dl.a.ns_per_op / mt.a.ns_per_op;
  targets.push(`(a) dlmalloc-wasm (called from JS) / mimalloc-ts = ${fmt(r)}x (target >= 2x): ${r >= 2 ? 'met' : 'NOT met'}`);
  if (dl.a_batched)
    targets.push(`    (dlmalloc batched inside wasm / mimalloc-ts = ${fmt(dl.a_batched.ns_per_op / mt.a.ns_per_op)}x, for reference)`);
}
if (mt?.c) {
  targets.push(`(c) mimalloc-ts 2-worker / 1-worker throughput = ${fmt(mt.c.scaling)} (target >= 1.8): ${mt.c.scaling >= 1.8 ? 'met' : 'NOT met'}`);
}
const nc = results['mimalloc-ts-nocheck'];
if (mt?.a && nc?.a) {
  const cost = mt.a.ns_per_op / nc.a.ns_per_op - 1;
  targets.push(`free-check cost on (a) = ${fmt(cost * 100, 1)}% (checked ${fmt(mt.a.ns_per_op)} vs unchecked ${fmt(nc.a.ns_per_op)} ns/op; target <= 5%): ${cost <= 0.05 ? 'met' : 'NOT met'}`);
} else if (unavailable['mimalloc-ts-nocheck']) {
  targets.push(`free-check cost on (a): ${unavailable['mimalloc-ts-nocheck']}`);
}
const s4 = results['mimalloc-ts-secure4'];
for (const w of ['a', 'b']) {
  if (mt?.[w] && s4?.[w]) {
    const cost = s4[w].ns_per_op / mt[w].ns_per_op - 1;
    targets.push(`secure 4 overhead on (${w}) = ${fmt(cost * 100, 1)}% (${fmt(s4[w].ns_per_op)} vs ${fmt(mt[w].ns_per_op)} ns/op; target <= 10%): ${cost <= 0.1 ? 'met' : 'NOT met'}`);
  }
}
if (targets.length) {
  out.push('');
  out.push('targets:');
  for (const t of targets) out.push(`  ${t}`);
}
for (const [p, r] of Object.entries(results)) if (r.check && r.check !== 'ok') notes.push(`${p}: ${r.check}`);
if (notes.length) {
  out.push('');
  out.push('notes:');
  for (const n of notes) out.push(`  ${n}`);
}
const la = (l) => l.map((x) => x.toFixed(2)).join(' ');
out.push('');
out.push(
  `total time ${fmt(elapsed, 1)} s; CPU used by other processes: ${fmt(busy0 * 100, 0)}% before, ` +
    `${foreign === null ? '?' : fmt(foreign * 100, 0)}% during, ${fmt(busy1 * 100, 0)}% after the run`,
);
out.push('raw samples in bench/results/micro.json');
console.log(out.join('\n'));

const resultsDir = path.join(BENCH_DIR, 'results');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(
  path.join(resultsDir, 'micro.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      command: `node bench/micro.js ${argv.join(' ')}`.trim(),
      node_flags: process.execArgv,
      machine: {
        cpu: os.cpus()[0]?.model,
        cpus: os.availableParallelism?.() ?? os.cpus().length,
        node: process.version,
        platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      },
      mimalloc_ts_source_mtime: sourceTime(),
      params,
      reference: REF,
      results,
      unavailable,
      targets,
      notes,
      elapsed_s: elapsed,
      loadavg: { start: load0, end: load1 },
      other_cpu_share: { before: busy0, during: foreign, after: busy1 },
    },
    null,
    2,
  ) + '\n',
);
