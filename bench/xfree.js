#!/usr/bin/env node
// What a cross-agent (remote) free costs: a producer/consumer loop between two
// worker_threads attached to one mimalloc-ts allocator. Run with
// `npm run bench:xfree`.
//
// Each worker allocates blocks of 8..200 B (a fixed xorshift32 size sequence,
// the same for every mode and both workers), writes a sequence number into
// each block's first word, and sends the address to the other worker through
// a single-producer/single-consumer ring in a SharedArrayBuffer of their own
// (one ring per direction; Atomics.load/store on head and tail, published once
// per burst of up to 16 entries; a bounded spin, then Atomics.wait). The
// other worker reads the word (it must be the next sequence number) and
// returns the address, tagged, on its own ring. Every block thus makes the
// same round trip in every mode; the modes differ only in who frees it:
//
//   remote  the consumer frees the block after reading it: a free into a page
//           of the other agent (its xthreadFree list); the allocating worker
//           takes those frees in at its own mallocs (that collection is part
//           of the remote cost, as in mimalloc)
//   local   the consumer only returns the address; the allocating worker frees
//           the block when it comes back: a free into its own page
//   none    no allocator at all: fake addresses in a scratch buffer, the same
//           word written, read and returned; the harness floor
//
// Why this is fair: the ring entries, their number, the notifications, the
// word written and read, and the flow control (at most `window` blocks of a
// worker out at once) are the same in all three modes; remote and local make
// the same mallocs of the same sizes and one free per block, and differ only
// in the agent that calls free. Two things follow from who frees and are part
// of what a remote free costs, not harness: in remote mode the freeing worker
// writes a free-list link into the block (its cache line moves to that core
// and back at the next malloc of that block), and the allocator's mallocs must
// collect the remote frees. A block lives a little longer in local mode (until
// its return arrives), at most `window` blocks per worker in both.
//
// ns/pair = wall time of a run (both workers start at a barrier; first start
// to last end) / blocks allocated per worker: both workers run at once on
// their own cores, each doing that many malloc+free pairs (and one free of
// the other worker's blocks per own block in remote mode).
// "above the harness" = mode - none, per rep (the modes of a rep run back to
// back), median over reps; the target is remote/local above the harness
// (ratio of those medians) <= 4x.
//
// Scaling: the local malloc/free loop of bench/micro.js (a) without any ring
// (malloc 1,000 blocks of the same size sequence, write a word, free them in
// order; repeated), 1 worker alone vs 2 workers at once, each its own agent of
// the one allocator; aggregate throughput ratio (target >= 1.8).
//
// Options: --quick (3 reps, shorter runs)  --reps=N (default 5)  --window=N (64)
//          --burst=N (16; new blocks sent per ring publication, see xfree-worker.js)
//          --wait-idle[=seconds]: first wait (default up to 300 s) until other
//          processes use < 10% of the CPUs
//          --modes=remote,local,none,solo,duo: run only these (no JSON written)
//          --cpu-prof[=remote|local|none|solo]: profile both workers (--cpu-prof in
//          their execArgv) over that mode only (default remote), print their top
//          self-time functions; writes no results JSON
// MIMALLOC_TS_DIST=<dir> measures another build's dist/ (before/after runs).
// Results: a table on stdout, progress on stderr, bench/results/xfree.json.
// After the run both workers detach and the main thread checks that every
// block was freed (stats().used === 0) and that check() passes.
//
// The machine is small and shared: CPU time used by other processes is
// measured around every run, and each worker reports how long it was
// preempted (runnable, not running: /proc/thread-self/schedstat); a disturbed
// run is repeated once the machine is quiet (at most twice) and the notes list
// what stayed disturbed (as micro.js).

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { BENCH_DIR, DIST_INDEX, MIMALLOC_TS_SIZE, loadMimallocTs } from './lib/peers.js';
import { median, xorshift32 } from './lib/workload.js';
import { cpuTicks, waitIdle } from './lib/noise.js';

// ---- options ----------------------------------------------------------------

const argv = process.argv.slice(2);
const opt = (name) => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
const quick = argv.includes('--quick');
const profArg = argv.find((a) => a === '--cpu-prof' || a.startsWith('--cpu-prof='));
const profMode = profArg ? profArg.split('=')[1] || 'remote' : null;
const params = {
  reps: Number(opt('reps') ?? (quick ? 3 : 5)),
  window: Number(opt('window') ?? 64), // blocks a worker may have out at once
  burst: Number(opt('burst') ?? 16), // new blocks sent per TAIL store
  target_ms: quick ? 40 : 120, // calibrated duration of one run
  warmup_ms: quick ? 150 : 400, // per mode, after a first calibration
  size_min: 8,
  size_max: 200,
  sizes: 4096, // length of the size sequence (used cyclically, from its start in every run)
  seed: 0x12345678,
  solo_blocks: 1000, // scaling loop: blocks per round
};
params.capacity = 1 << Math.ceil(Math.log2(2 * params.window)); // ring entries; >= 2 x window
const RING_MODES = ['remote', 'local', 'none'];
const ITEMS = [...RING_MODES, 'solo', 'duo']; // solo/duo: the scaling loop in 1 / 2 workers
const log = (...m) => console.error('[bench:xfree]', ...m);
if (profMode && !RING_MODES.includes(profMode) && profMode !== 'solo') throw new Error(`--cpu-prof=${profMode}: not a mode`);
if (!(params.reps >= 1 && params.window >= 1 && params.burst >= 1)) throw new Error('--reps, --window and --burst must be >= 1');

// ---- workers ----------------------------------------------------------------

const WORKER = new URL('./lib/xfree-worker.js', import.meta.url);
const sizes = new Uint32Array(params.sizes);
{
  const next = xorshift32(params.seed);
  const span = params.size_max - params.size_min + 1;
  for (let i = 0; i < sizes.length; i++) sizes[i] = params.size_min + (next() % span);
}
const rings = new SharedArrayBuffer(2 * (48 + params.capacity) * 4);
const scratch = new SharedArrayBuffer(64 + 2 * 2 * params.window * 256);
const ctl = new SharedArrayBuffer(64);
const profDir = profMode ? mkdtempSync(path.join(os.tmpdir(), 'xfree-prof-')) : null;

/** A worker with one request outstanding at a time. */
function startWorker(idx) {
  const execArgv = profMode ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-interval=250'] : [];
  const w = new Worker(WORKER, {
    execArgv,
    workerData: { idx, distIndex: DIST_INDEX, rings, scratch, ctl, window: params.window, burst: params.burst, capacity: params.capacity, sizes, rounds_blocks: params.solo_blocks },
  });
  let pending = null;
  const fail = (e) => {
    if (pending) pending.reject(e);
    pending = null;
  };
  w.on('message', (m) => {
    if (!pending) return log(`worker ${idx}: unexpected message`, m);
    const p = pending;
    pending = null;
    if (m.error) p.reject(new Error(`worker ${idx}: ${m.error.split('\n').slice(0, 4).join(' | ')}`));
    else p.resolve(m);
  });
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`worker ${idx} exited with ${code}`)));
  const exited = new Promise((r) => w.once('exit', r));
  return {
    w,
    exited,
    request(msg) {
      if (pending) throw new Error('request while one is pending');
      return new Promise((resolve, reject) => {
        pending = { resolve, reject };
        w.postMessage(msg);
      });
    },
  };
}

// ---- noise (as bench/micro.js) ------------------------------------------------

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
 * time meanwhile, or a worker was preempted (runnable but not running, from
 * its schedstat) for more than 3% of the run, wait for the machine to go
 * quiet and repeat it (at most twice). Two workers that hand blocks to each
 * other on two cores are slowed down whole by either one being preempted:
 * the other spins. Measurements still disturbed after that are listed in
 * the notes.
 */
const disturbed = [];
let repeats = 0;
async function guarded(label, fn) {
  for (let attempt = 0; ; attempt++) {
    const a = cpuTicks();
    const t = performance.now();
    const r = await fn();
    const b = cpuTicks();
    const secs = (performance.now() - t) / 1e3;
    // (ticks are 10 ms: a single foreign tick in a 40 ms run would read as 12%)
    const foreignTicks = a && b ? Math.max(0, b.busy - a.busy - (b.self - a.self)) : 0;
    const share = foreignTicks > 1 ? foreignTicks / (secs * 100 * os.cpus().length) : 0;
    const pre = lastPreempted ?? 0;
    if (share <= 0.1 && pre <= 0.03) return r;
    const why = `other processes used ${(share * 100).toFixed(0)}% of the CPU, a worker was preempted ${(pre * 100).toFixed(0)}% of the run`;
    if (attempt >= 2) {
      disturbed.push(`${label} (${why})`);
      return r;
    }
    repeats++;
    log(`${label}: ${why}; waiting for quiet and repeating`);
    await waitIdle(60);
  }
}

// ---- main -------------------------------------------------------------------

const waitArg = argv.find((a) => a === '--wait-idle' || a.startsWith('--wait-idle='));
if (waitArg) {
  const ok = await waitIdle(Number(waitArg.split('=')[1]) || 300);
  log(ok ? 'machine is idle; starting' : 'machine did not become idle; starting anyway');
}
const load0 = os.loadavg();
const busy0 = await cpuBusy();
const ticks0 = cpuTicks();
if (busy0 > 0.15) log(`warning: ${(busy0 * 100).toFixed(0)}% of the CPUs were busy before the run started; numbers will be noisy`);
const t0 = performance.now();
const notes = [];

const Allocator = await loadMimallocTs();
const a = Allocator.create({ size: MIMALLOC_TS_SIZE });
const workers = [startWorker(0), startWorker(1)];
const agentIds = [];
for (const wk of workers) {
  const handle = typeof a.watch === 'function' ? a.watch(wk.w) : a.handle;
  agentIds.push((await wk.request({ cmd: 'attach', handle })).attached);
}

let lastWaits = 0; // Atomics.wait calls of both workers in the last run
let lastBatch = 0; // entries taken per look at the ring in the last run (mean of the workers)
let lastPreempted = null; // the last run's largest share of a worker's time runnable but not running (schedstat)
/** One run of an item; returns { ms, n } (wall time from the first start to the last end). */
async function runItem(item, n) {
  const ws = item === 'solo' ? [workers[0]] : workers;
  const mode = item === 'duo' ? 'solo' : item;
  const rs = await Promise.all(ws.map((wk) => wk.request({ cmd: 'run', mode, n, parties: ws.length })));
  const ms = Math.max(...rs.map((r) => r.t1)) - Math.min(...rs.map((r) => r.t0));
  lastWaits = rs.reduce((x, r) => x + r.waits, 0);
  lastBatch = rs.reduce((x, r) => x + r.batch, 0) / rs.length;
  lastPreempted = rs.every((r) => r.sched) ? Math.max(...rs.map((r) => r.sched.delay_ms)) / ms : null;
  return ms;
}

/** Pairs one worker makes in a run of n. */
const pairsPerWorker = (item, n) => (item === 'solo' || item === 'duo' ? n * params.solo_blocks : n);

/** n such that a run takes about target_ms (grow until >= target/8, then scale). */
async function calibrate(item) {
  let n = item === 'solo' || item === 'duo' ? 1 : 1000;
  let ms;
  for (;;) {
    ms = await runItem(item, n);
    if (ms >= params.target_ms / 8 || n >= 2 ** 28) break;
    n *= ms < params.target_ms / 64 ? 8 : 2;
  }
  return Math.max(1, Math.floor((n * params.target_ms) / Math.max(ms, 1e-3)));
}

const items = profMode ? [profMode] : (opt('modes')?.split(',') ?? ITEMS);
for (const i of items) if (!ITEMS.includes(i)) throw new Error(`--modes: unknown ${i}; known: ${ITEMS.join(', ')}`);
const partial = !profMode && ITEMS.some((i) => !items.includes(i));
const counts = {};
for (const item of items) {
  log(`warm-up and calibration: ${item}`);
  let n = await calibrate(item);
  const tw = performance.now();
  while (performance.now() - tw < params.warmup_ms) await runItem(item, n);
  // again, now that the code is optimised
  const ms = await runItem(item, n);
  counts[item] = Math.max(1, Math.floor((n * params.target_ms) / Math.max(ms, 1e-3)));
}

// reps: every item once per rep, the order rotated and reversed from rep to rep
const samples = Object.fromEntries(items.map((i) => [i, []])); // ms per run
const waitSamples = Object.fromEntries(items.map((i) => [i, []])); // Atomics.wait calls per run (both workers)
const preemptSamples = Object.fromEntries(items.map((i) => [i, []])); // largest preempted share of a worker per run
const batchSamples = Object.fromEntries(items.map((i) => [i, []])); // ring entries per drain per run
for (let rep = 0; rep < params.reps; rep++) {
  const k = rep % items.length;
  let order = [...items.slice(k), ...items.slice(0, k)];
  if (rep % 2) order = order.reverse();
  log(`rep ${rep + 1}/${params.reps}: ${order.join(' ')}`);
  for (const item of order) {
    const ms = await guarded(`${item} rep ${rep + 1}`, () => runItem(item, counts[item]));
    samples[item].push(ms);
    waitSamples[item].push(lastWaits);
    preemptSamples[item].push(lastPreempted);
    batchSamples[item].push(lastBatch);
    log(`  ${item}: ${((ms * 1e6) / pairsPerWorker(item, counts[item])).toFixed(1)} ns/pair, ${lastWaits} Atomics.wait, ` +
      (RING_MODES.includes(item) ? `${lastBatch.toFixed(1)} entries per drain, ` : '') +
      `preempted ${lastPreempted === null ? '?' : (lastPreempted * 100).toFixed(1)}%`);
  }
}

// detach, let the workers end, then verify in the main thread
const exits = [];
for (const wk of workers) exits.push(await wk.request({ cmd: 'exit' }));
await Promise.all(workers.map((wk) => wk.exited));
const verify = { blocks_all_freed: null, used: null, check: null };
try {
  const st = a.stats();
  verify.used = st.used;
  verify.blocks_all_freed = st.used === 0;
  if (st.used !== 0) notes.push(`after the run stats().used = ${st.used}, not 0`);
} catch (e) {
  verify.blocks_all_freed = false;
  notes.push(`stats() threw: ${e.message}`);
}
try {
  a.check();
  verify.check = 'ok';
} catch (e) {
  verify.check = `failed: ${e.message}`;
  notes.push(`check() after the workers detached failed: ${e.message}`);
}
const ok = verify.blocks_all_freed === true && verify.check === 'ok';

// ---- report -----------------------------------------------------------------

const fmt = (x, d = 1) => (x === undefined || x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
const spread = (s, d = 1) => (s.length ? `${fmt(Math.min(...s), d)}..${fmt(Math.max(...s), d)}` : '-');
const nsPair = (item) => samples[item].map((ms) => (ms * 1e6) / pairsPerWorker(item, counts[item]));
const summary = (s) => ({ median: median(s), min: Math.min(...s), max: Math.max(...s), samples: s });
const machine = `${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism?.() ?? os.cpus().length} CPUs, Node ${process.version}`;
const out = [];
out.push(`mimalloc-ts cross-agent free benchmark (${machine})${quick ? ' [--quick]' : ''}`);
out.push(`dist: ${path.relative(process.cwd(), DIST_INDEX) || DIST_INDEX}; window ${params.window} blocks per worker, bursts of ${params.burst}, ring ${params.capacity} entries; ` +
  `median of ${params.reps} reps (modes interleaved), ~${params.target_ms} ms per run`);
const results = {};
const elapsed = () => (performance.now() - t0) / 1e3;

const WHAT = {
  remote: "consumer frees (free into the other agent's page)",
  local: 'allocating worker frees after the round trip',
  none: 'no allocator: the harness floor',
  solo: 'scaling loop (no ring), 1 worker',
  duo: 'scaling loop (no ring), 2 workers at once (ns/pair per worker)',
};
const haveRing = RING_MODES.every((m) => items.includes(m));
const none = haveRing ? nsPair('none') : null;
const above = {};
if (haveRing) for (const m of ['remote', 'local']) above[m] = summary(nsPair(m).map((x, r) => x - none[r]));
for (const m of items)
  results[m] = { ns_per_pair: summary(nsPair(m)), [RING_MODES.includes(m) ? 'blocks_per_worker' : 'rounds']: counts[m], atomics_waits_per_run: waitSamples[m], preempted_share_per_run: preemptSamples[m],
    ...(RING_MODES.includes(m) ? { entries_per_drain_per_run: batchSamples[m] } : {}) };
out.push('');
out.push('mode     ns/pair   min..max       above harness   min..max');
out.push('-------  -------   ------------   -------------   ------------');
for (const m of items) {
  const s = results[m].ns_per_pair;
  const ab = above[m];
  out.push(
    `${m.padEnd(7)}  ${fmt(s.median).padStart(7)}   ${spread(s.samples).padEnd(12)}   ${(ab ? fmt(ab.median) : '').padStart(13)}   ${(ab ? spread(ab.samples) : '').padEnd(12)}   ${WHAT[m]}`.trimEnd(),
  );
}
if (haveRing) {
  const ratios = above.remote.samples.map((x, r) => x / above.local.samples[r]);
  const ratio = above.remote.median / above.local.median;
  results.above_harness = { remote: above.remote, local: above.local };
  results.remote_over_local = { ratio_of_medians: ratio, per_rep: ratios };
  out.push('');
  out.push(`remote/local above the harness: ${fmt(ratio, 2)}x (per rep ${spread(ratios, 2)}; target <= 4x): ${ratio <= 4 ? 'met' : 'NOT met'}`);
}
if (items.includes('solo') && items.includes('duo')) {
  // aggregate Mpairs/s with 1 and 2 workers
  const soloMp = samples.solo.map((ms) => pairsPerWorker('solo', counts.solo) / (ms * 1e3));
  const duoMp = samples.duo.map((ms) => (2 * pairsPerWorker('duo', counts.duo)) / (ms * 1e3));
  const scaling = median(duoMp) / median(soloMp);
  results.scaling = { one_worker_mpairs_s: summary(soloMp), two_workers_mpairs_s: summary(duoMp), ratio: scaling };
  if (!haveRing) out.push('');
  out.push(
    `scaling (local malloc/free loop, no ring): 1 worker ${fmt(median(soloMp), 2)} Mpairs/s, ` +
      `2 workers ${fmt(median(duoMp), 2)} Mpairs/s aggregate: ${fmt(scaling, 2)}x (target >= 1.8): ${scaling >= 1.8 ? 'met' : 'NOT met'}`,
  );
}
if (profMode) {
  out.push(...profileSummary(profDir));
  rmSync(profDir, { recursive: true, force: true });
}
out.push(`verify: stats().used = ${verify.used}, check() ${verify.check}${ok ? '' : '  <-- FAILED'}`);

const ticks1 = cpuTicks();
const el = elapsed();
const busy1 = await cpuBusy();
const foreign = ticks0 && ticks1 ? Math.max(0, ticks1.busy - ticks0.busy - (ticks1.self - ticks0.self)) / (el * 100 * os.cpus().length) : null;
if (disturbed.length) notes.push(`still disturbed by other processes after 2 repeats: ${disturbed.join(', ')}`);
if (repeats) notes.push(`${repeats} run(s) repeated: other processes took > 10% of the CPU or preempted a worker > 3% of the run`);
if (foreign !== null && foreign > 0.05) notes.push(`other processes used ${fmt(foreign * 100, 0)}% of the CPU time during the run: numbers are noisy`);
const waits = exits.map((e) => e.waits);
if (notes.length) {
  out.push('');
  out.push('notes:');
  for (const n of notes) out.push(`  ${n}`);
}
out.push('');
out.push(
  `total time ${fmt(el, 1)} s; Atomics.wait calls per worker ${waits.join(', ')}; CPU used by other processes: ` +
    `${fmt(busy0 * 100, 0)}% before, ${foreign === null ? '?' : fmt(foreign * 100, 0)}% during, ${fmt(busy1 * 100, 0)}% after the run`,
);
if (!profMode && !partial) out.push('raw samples in bench/results/xfree.json');
else out.push('(--cpu-prof / --modes: no results JSON written)');
console.log(out.join('\n'));

if (!profMode && !partial) {
  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(
    path.join(resultsDir, 'xfree.json'),
    JSON.stringify(
      {
        date: new Date().toISOString(),
        command: `node bench/xfree.js ${argv.join(' ')}`.trim(),
        dist: DIST_INDEX,
        machine: {
          cpu: os.cpus()[0]?.model,
          cpus: os.availableParallelism?.() ?? os.cpus().length,
          node: process.version,
          platform: `${os.platform()} ${os.release()} ${os.arch()}`,
        },
        mimalloc_ts_source_mtime: sourceTime(),
        params,
        units: 'ns_per_pair: wall ms of a run x 1e6 / blocks allocated per worker (both workers at once); Mpairs/s aggregate',
        results,
        verify,
        agent_ids: agentIds,
        atomics_waits: waits,
        notes,
        elapsed_s: el,
        loadavg: { start: load0, end: os.loadavg() },
        other_cpu_share: { before: busy0, during: foreign, after: busy1 },
      },
      null,
      2,
    ) + '\n',
  );
}
process.exitCode = ok ? 0 : 1;

// ---- helpers ----------------------------------------------------------------

/** Newest modification time of src/ next to the dist measured. */
function sourceTime() {
  try {
    const dir = path.resolve(path.dirname(DIST_INDEX), '..', 'src');
    const t = Math.max(...readdirSync(dir).map((f) => statSync(path.join(dir, f)).mtimeMs));
    return new Date(t).toISOString();
  } catch {
    return null;
  }
}

/**
 * Top self-time functions in the .cpuprofile files the workers wrote (both
 * merged: they run the same loop), as shares of their busy samples: not idle
 * and not waiting for the other worker (the lines of xfree-worker.js marked
 * "// wait": the spin on an empty ring, Atomics.wait, the barrier). For the
 * top functions, the source lines the samples fell on (TurboFan inlines some
 * of malloc and free into the loop; their samples count at its call lines).
 */
function profileSummary(dir) {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (!files.length) return ['no .cpuprofile was written'];
  const keyOf = (cf) => `${cf.functionName || '(anonymous)'} ${cf.url ? `${path.basename(cf.url)}:${cf.lineNumber + 1}` : ''}`.trim();
  const srcCache = new Map();
  const src = (url) => {
    if (!srcCache.has(url)) {
      try {
        srcCache.set(url, readFileSync(new URL(url), 'utf8').split('\n'));
      } catch {
        srcCache.set(url, []);
      }
    }
    return srcCache.get(url);
  };
  const isWait = (url, line) => url.endsWith('xfree-worker.js') && /\/\/ wait$/.test(src(url)[line - 1] ?? '');
  const fns = new Map(); // key -> { samples, url, lines: Map(line -> samples) }
  let idle = 0;
  let waiting = 0;
  let busy = 0;
  for (const f of files) {
    const prof = JSON.parse(readFileSync(path.join(dir, f), 'utf8'));
    const count = new Map();
    for (const id of prof.samples) count.set(id, (count.get(id) ?? 0) + 1);
    for (const n of prof.nodes) {
      const c = count.get(n.id) ?? 0;
      if (!c) continue;
      const cf = n.callFrame;
      if (cf.functionName === '(idle)') {
        idle += c;
        continue;
      }
      // the node's samples by line (positionTicks add up to its samples)
      let w = 0;
      const e = fns.get(keyOf(cf)) ?? { samples: 0, url: cf.url, first: cf.lineNumber + 1, lines: new Map() };
      for (const pt of n.positionTicks ?? []) {
        if (isWait(cf.url, pt.line)) w += pt.ticks;
        else e.lines.set(pt.line, (e.lines.get(pt.line) ?? 0) + pt.ticks);
      }
      waiting += w;
      busy += c - w;
      e.samples += c - w;
      fns.set(keyOf(cf), e);
    }
  }
  // a line outside the function is code inlined from another file (V8 gives the callee's line number)
  const lineText = (e, ln) => {
    const text = (src(e.url)[ln - 1] ?? '').trim();
    return ln < e.first || ln > e.last || !text ? '(inlined from another file)' : text.slice(0, 72);
  };
  for (const e of fns.values()) {
    // the function's extent: from its first line to the line before the next top-level declaration
    const lines = src(e.url);
    e.last = e.first;
    while (e.last < lines.length && !/^(async )?function |^const |^let |^}/.test(lines[e.last] ?? '')) e.last++;
    if (/^}/.test(lines[e.last] ?? '')) e.last++;
  }
  const pct = (x, of) => `${fmt((100 * x) / Math.max(1, of), 1).padStart(5)}%`;
  const lines = [
    '',
    `workers' self time, ${files.length} profiles merged (incl. warm-up and calibration): ${busy} busy samples, ` +
      `${waiting} waiting for the other worker, ${idle} idle; shares of the busy samples:`,
  ];
  const top = [...fns.entries()].filter(([, e]) => e.samples > 0).sort((x, y) => y[1].samples - x[1].samples).slice(0, 14);
  top.forEach(([k, e], rank) => {
    lines.push(`  ${pct(e.samples, busy)}  ${k}`);
    if (rank < 2 && e.lines.size)
      for (const [ln, t] of [...e.lines.entries()].sort((x, y) => y[1] - x[1]).slice(0, 6))
        lines.push(`           ${pct(t, e.samples)} of it at line ${ln}: ${lineText(e, ln)}`);
  });
  return lines;
}
