#!/usr/bin/env node
// Trace replay benchmark: the malloc/free streams of real programs (mtrace v1
// traces, /work/shared/traces/README.md) replayed on mimalloc-ts and its
// peers. Run with `npm run bench:replay`. Two protocols, two tables:
//
// 1. COLD (the headline, first table; bench/lib/replay-cold.js, the worker
// bench/lib/replay-cold-worker.js, the adapters bench/lib/cold-peers.js):
// programs run their allocator cold (/work/shared/DESIGN.md §6). Every
// replay (peer x trace x rep) runs in a fresh worker_threads Worker (a new
// isolate) created from this process, with V8's default flags (wasm dynamic
// tiering on: Liftoff first, TurboFan in the background; this process is not
// started with --no-wasm-dynamic-tiering unless --threads). In the worker:
// the allocator is created, then at most 250 ms (--cold-warmup-ms) of
// warm-up on a synthetic event mix (never the trace: malloc/calloc/realloc/
// free and a few aligned allocations, sizes 1 B-64 KiB log-distributed, at
// most 2,000 live) on a separate instance of the same peer, discarded; then
// the WHOLE trace (--events / --quick: a prefix), all events in file order,
// thread indices ignored, on a fresh instance. Only the replay calls are
// timed (performance.now() around chunks of 65,536 events; between chunks,
// off the clock, the allocator's footprint is sampled). Every new object is
// stamped with byte stores (its id in its first 4 bytes, (id & 0xff) ^ 0x5a
// in its last requested byte; sizes 1-3: what fits; size 0: nothing) and the
// stamps are read back and checked at every free and realloc (realloc: the
// id must follow the object to its new address, which is then re-stamped);
// a mismatch or a NULL aborts that replay with an error naming peer, trace
// and event, and the table says ERROR instead of a number. Native peers:
// a fresh process of bench/peers/native_replay.c in mode=cold (the same
// stamps and checks, no warm-up). ns/event = median of --cold-reps reps
// (default 3; 1 with --quick) shown as median [min-max], with the ratios
// mimalloc-ts / dlmalloc-wasm, / mimalloc-wasm, / JS floor and a geomean
// row. Peers: native-mimalloc, native-glibc, mimalloc-ts (mimalloc-ts-secure4
// when named in --peers or --cold-peers), dlmalloc-wasm, mimalloc-wasm,
// tlsf-wasm (calloc/realloc/aligned done in JS over its alloc/free), js-floor
// (not an allocator: size-class free lists, the least a JS allocator costs
// in this harness). A peer whose wasm file is missing is skipped with a note.
//
// 2. WARM (the second table; the protocol bench:replay had before):
// single-agent replay: every event of a trace, in file order, on
// one allocator (thread indices ignored; cross-thread frees become local
// frees); every new block is touched (one 32-bit word per 64 bytes of its
// first 4 KiB). Each peer runs in its own process (JS and wasm peers:
// bench/lib/replay-child.js via child_process.fork; native: the C program
// bench/peers/native_replay.c), so the loops stay monomorphic and each
// process's RSS is one allocator's. Each rep uses a fresh allocator instance.
// The JS children first replay 200,000 events on a throwaway instance (JIT
// warm-up); then rep 0 of every peer is a warm-up rep that also measures
// memory; the timed reps follow, interleaved across peers (rep 1 of every
// peer, then rep 2, ...). The children run with --no-wasm-dynamic-tiering
// (wasm peers on TurboFan code from the start; --v8-default-tiering: not).
//
//   ns/event   median over the timed reps of (replay loop time / events);
//              only the loop is timed (not loading, not the final frees)
//   memory     every peer: peak RSS of the heap = VmHWM after the replay loop
//              minus VmRSS just before the allocator was created, in the
//              peer's own process; mimalloc-ts also: peak stats().committed
//              (high-water of bytes handed to pages) and stats().pagesBytes,
//              sampled every 65,536 events; dlmalloc-wasm and mimalloc-wasm
//              (mimalloc v3.4.3 in wasm): wasm memory size.
//              "ideal" is the trace's peak live bytes.
//
// --threads: multi-agent replay of the multi-threaded traces on mimalloc-ts
// (one worker per thread index, attached to one shared buffer, cross-thread
// frees done by the thread that made them; see bench/lib/replay-threads.js).
//
// Options: --traces=DIR (default $MIMALLOC_TRACES, else ../shared/traces next
//          to the repository), --only=name,name (trace names without
//          .trace.gz), --peers=name,name, --events=N (prefix of every trace),
//          --reps=N (timed reps, default 3), --quick (300,000-event prefixes,
//          1 timed rep), --mimalloc-size=MiB (buffer, default 256),
//          --threads (multi-agent mode instead), --wait-idle[=seconds] (first
//          wait, default up to 300 s, until other processes use < 10% of the
//          CPUs), --cold-only / --warm-only (one protocol), --cold-reps=N,
//          --cold-peers=name,name (cold protocol's peers; default: --peers'
//          cold ones, else all but mimalloc-ts-secure4), --cold-warmup-ms=N
//          (default 250), --floor-size=MiB (the JS floor's buffer, default
//          256). A timed rep (either protocol) during which other processes used > 10% of the
//          CPU is repeated after the machine is quiet (at most twice), as in
//          bench/micro.js; the notes list reps that stayed disturbed.
// Results: the tables on stdout, progress on stderr, bench/results/replay.json
// (cold protocol: its "cold" section; replay-threads.json with --threads).

import { fork, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_DIR, BUILD_DIR, loadMimallocTs, probeNoCheck } from './lib/peers.js';
import { median } from './lib/workload.js';
import { ensureBin, readBin, summarize, tracesDir } from './lib/trace.js';
import { cpuTicks, waitIdle } from './lib/noise.js';
import { COLD_ALL, COLD_DEFAULT, runCold } from './lib/replay-cold.js';

// ---- options ----------------------------------------------------------------

const TIERING_FLAG = '--no-wasm-dynamic-tiering'; // as bench/micro.js: wasm peers run TurboFan code from the start
// The cold protocol's workers share this process's V8 flags, and must run with the defaults:
// only --threads re-executes under the flag; the warm protocol's children get it in their execArgv.
const WARM_CHILD_FLAGS = process.argv.includes('--v8-default-tiering') ? [] : [TIERING_FLAG];
if (process.argv.includes('--threads') && !process.execArgv.includes(TIERING_FLAG) && !process.argv.includes('--v8-default-tiering')) {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [...process.execArgv, TIERING_FLAG, script, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const argv = process.argv.slice(2);
const opt = (name) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = argv.includes('--quick');
const threadsMode = argv.includes('--threads');
const reps = Math.max(1, Number(opt('reps') ?? (quick ? 1 : 3)));
const eventsOpt = opt('events') !== undefined ? Number(opt('events')) : quick ? 300_000 : Infinity;
const mimallocSize = Number(opt('mimalloc-size') ?? 256) * 2 ** 20;
const REPO = path.resolve(BENCH_DIR, '..');
const TRACES = tracesDir(REPO, argv);
const NATIVE = ['native-mimalloc', 'native-glibc'];
// mimalloc-ts-secure2 (randomised extension, plain links, no canaries) splits secure 4's overhead
// into what level 2's random block order costs and what levels 3-4's fast paths add
const JS = ['mimalloc-ts', 'mimalloc-ts-secure4', 'mimalloc-ts-secure2', 'mimalloc-ts-nocheck', 'dlmalloc-wasm', 'mimalloc-wasm'];
const ALL = [...NATIVE, ...JS];
const REF = 'native-mimalloc';
const peersOpt = opt('peers')?.split(',');
const coldOnly = argv.includes('--cold-only');
const warmOnly = argv.includes('--warm-only');
if (coldOnly && warmOnly) throw new Error('--cold-only and --warm-only exclude each other');
const doCold = !threadsMode && !warmOnly;
// the warm protocol's peers (--peers names for either protocol: each takes its own)
const selected = threadsMode || !coldOnly ? (peersOpt?.filter((p) => ALL.includes(p)) ?? (threadsMode ? ['mimalloc-ts', 'mimalloc-ts-secure4'] : ALL)) : [];
const doWarm = threadsMode || (!coldOnly && selected.length > 0);
// the cold protocol's peers
const coldPeers = doCold ? (opt('cold-peers')?.split(',') ?? (peersOpt ? peersOpt.filter((p) => COLD_ALL.includes(p)) : COLD_DEFAULT)) : [];
const coldReps = Math.max(1, Number(opt('cold-reps') ?? (quick ? 1 : 3)));
const coldWarmupMs = Number(opt('cold-warmup-ms') ?? 250);
const floorBytes = Number(opt('floor-size') ?? 256) * 2 ** 20;
const log = (...m) => console.error('[bench:replay]', ...m);
// A full run of all seven traces (25 M events) with 3 reps takes about 2.5 min
// on the 2-core VM when it is quiet: ~45-60 s for the warm protocol, ~100 s
// for the cold one (147 fresh workers / processes, each JS one with up to
// 250 ms of warm-up); more when other processes force repeats; the first run
// also parses the traces (~6 s). So no prefix is imposed by default.

if (!Number.isFinite(eventsOpt) && opt('events') !== undefined) throw new Error('--events=N needs a number');
for (const p of peersOpt ?? []) if (!ALL.includes(p) && !COLD_ALL.includes(p)) throw new Error(`unknown peer ${p}; known: ${[...new Set([...ALL, ...COLD_ALL])].join(', ')}`);
for (const p of coldPeers) if (!COLD_ALL.includes(p)) throw new Error(`unknown cold peer ${p}; known: ${COLD_ALL.join(', ')}`);
if (!(coldWarmupMs >= 0 && coldWarmupMs <= 250)) throw new Error('--cold-warmup-ms must be 0..250');

if (!existsSync(TRACES) || !statSync(TRACES).isDirectory()) {
  console.log(`bench:replay: no traces folder at ${TRACES}; nothing to replay.`);
  console.log('Point to one with --traces=DIR or MIMALLOC_TRACES=DIR (mtrace v1 *.trace.gz files).');
  process.exit(0);
}
let traceFiles = readdirSync(TRACES).filter((f) => f.endsWith('.trace.gz')).sort();
const only = opt('only')?.split(',');
if (only) {
  const missing = only.filter((n) => !traceFiles.includes(`${n}.trace.gz`));
  if (missing.length) throw new Error(`no such trace in ${TRACES}: ${missing.join(', ')}`);
  traceFiles = traceFiles.filter((f) => only.includes(f.replace(/\.trace\.gz$/, '')));
}
if (!traceFiles.length) {
  console.log(`bench:replay: no *.trace.gz files in ${TRACES}; nothing to replay.`);
  process.exit(0);
}

// ---- peers: build when missing or stale --------------------------------------

const ARTIFACTS = {
  dlmalloc: { file: 'dlmalloc.wasm', src: ['peers/dlmalloc_exports.c'] },
  'mimalloc-wasm': { file: 'mimalloc.wasm', src: ['peers/dlmalloc_exports.c'] },
  'native-replay-mimalloc': { file: 'native_replay_mimalloc', src: ['peers/native_replay.c'] },
  'native-replay-glibc': { file: 'native_replay_glibc', src: ['peers/native_replay.c'] },
};
const PEER_ARTIFACT = { 'dlmalloc-wasm': 'dlmalloc', 'mimalloc-wasm': 'mimalloc-wasm', 'native-mimalloc': 'native-replay-mimalloc', 'native-glibc': 'native-replay-glibc' };

function stale(a) {
  const f = path.join(BUILD_DIR, a.file);
  if (!existsSync(f)) return true;
  const t = statSync(f).mtimeMs;
  return [...a.src, 'peers/build.sh'].some((s) => statSync(path.join(BENCH_DIR, s)).mtimeMs > t);
}
function artifactProblem(peer) {
  const key = PEER_ARTIFACT[peer];
  if (!key) return null;
  const why = path.join(BUILD_DIR, `${key}.unavailable`);
  if (existsSync(why)) return readFileSync(why, 'utf8').trim();
  if (!existsSync(path.join(BUILD_DIR, ARTIFACTS[key].file))) return `${ARTIFACTS[key].file} was not built`;
  return null;
}
if (!threadsMode && [...selected, ...coldPeers].some((p) => PEER_ARTIFACT[p] && stale(ARTIFACTS[PEER_ARTIFACT[p]]))) {
  log('peer artifacts missing or stale: running bash bench/peers/build.sh');
  const r = spawnSync('bash', [path.join(BENCH_DIR, 'peers', 'build.sh')], { stdio: ['ignore', 2, 2] });
  if (r.status !== 0) log(`build.sh exited with ${r.status ?? r.signal}`);
}

const unavailable = {};
for (const p of new Set([...selected, ...coldPeers])) {
  const why = artifactProblem(p);
  if (why) unavailable[p] = `unavailable: ${why}`;
}
if ([...selected, ...coldPeers].some((p) => p.startsWith('mimalloc-ts'))) {
  try {
    const Allocator = await loadMimallocTs();
    const a = Allocator.create({ size: mimallocSize });
    const p = a.malloc(64);
    if (typeof p !== 'number' || p === 0) throw new Error(`malloc(64) returned ${p}`);
    a.free(p);
    if (selected.includes('mimalloc-ts-nocheck')) {
      const why = probeNoCheck(Allocator);
      if (why) unavailable['mimalloc-ts-nocheck'] = `n/a: ${why}`;
    }
  } catch (e) {
    for (const p of JS.filter((x) => x.startsWith('mimalloc-ts'))) unavailable[p] = `skipped: the allocator is not usable (${e.message})`;
  }
}

// ---- noise accounting (bench/lib/noise.js) -----------------------------------

/**
 * Run one timed rep; if other processes took more than 10% of the CPU time
 * meanwhile (measurable: reps of 0.2 s or more), wait for the machine to go
 * quiet (up to 30 s) and repeat it, at most twice; reps still disturbed then
 * are listed in the notes.
 */
const disturbed = [];
async function guarded(label, fn, pids) {
  for (let attempt = 0; ; attempt++) {
    const a = cpuTicks(pids);
    const t = performance.now();
    const r = await fn();
    const b = cpuTicks(pids);
    const secs = (performance.now() - t) / 1e3;
    if (!a || !b || secs < 0.2) return r;
    const share = Math.max(0, b.busy - a.busy - (b.self - a.self)) / (secs * 100 * os.cpus().length);
    if (share <= 0.1) return r;
    if (attempt >= 2) {
      disturbed.push(`${label} (${(share * 100).toFixed(0)}%)`);
      return r;
    }
    log(`${label}: other processes used ${(share * 100).toFixed(0)}% of the CPU; waiting for quiet and repeating`);
    await waitIdle(30);
  }
}

// ---- running peers -----------------------------------------------------------

const CHILD = fileURLToPath(new URL('./lib/replay-child.js', import.meta.url));

/** A JS/wasm peer in its own process (child_process.fork, IPC): ready, rep(sample), close(). */
function jsPeer(peer, binFile, name, events) {
  const child = fork(CHILD, [peer, binFile, name, Number.isFinite(events) ? String(events) : 'all', String(mimallocSize)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [...process.execArgv.filter((a) => !WARM_CHILD_FLAGS.includes(a)), ...WARM_CHILD_FLAGS, '--expose-gc'],
  });
  let pending = null;
  let dead = null;
  const settle = (fn) => {
    const p = pending;
    pending = null;
    if (p) fn(p);
  };
  child.on('message', (m) => settle((p) => (m.ok === false ? p.reject(Object.assign(new Error(m.error), { stack: m.stack })) : p.resolve(m))));
  child.on('error', (e) => {
    dead = e;
    settle((p) => p.reject(e));
  });
  child.on('exit', (code, signal) => {
    dead ??= new Error(`process exited with ${code ?? signal}`);
    settle((p) => p.reject(dead));
  });
  const call = (msg, timeoutMs = 600_000) =>
    new Promise((resolve, reject) => {
      if (dead) return reject(dead);
      const timer = setTimeout(() => settle((p) => p.reject(new Error(`timed out after ${timeoutMs / 1000} s`))), timeoutMs);
      pending = {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      if (msg) child.send(msg);
    });
  const ready = call(null);
  const pid = child.pid;
  ready.catch(() => {}); // awaited later; a failure must not count as unhandled meanwhile
  return {
    ready,
    pid,
    rep: async (sample) => (await call({ cmd: 'rep', sample })).result,
    /** Resolves once the process has exited (its CPU time then counts in ours, see cpuTicks). */
    close: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        if (child.connected) child.send({ cmd: 'exit' });
        setTimeout(() => child.kill(), 5000).unref();
      }),
  };
}

function nativeRep(peer, binFile, events) {
  const bin = path.join(BUILD_DIR, peer === REF ? 'native_replay_mimalloc' : 'native_replay_glibc');
  const args = [binFile];
  if (Number.isFinite(events)) args.push(`events=${events}`);
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 600_000 });
  let out = null;
  try {
    out = JSON.parse(r.stdout);
  } catch {}
  if (r.status !== 0 || !out || out.error) throw new Error(out?.error ?? `exit ${r.status ?? r.signal}: ${(r.stderr || r.error?.message || '').trim()}`);
  return {
    ms: out.ms,
    nsPerEvent: out.ns_per_event,
    events: out.events,
    mem: { heapRss: out.heap_rss, hwm: out.maxrss, rssBefore: out.rss_before },
    freedAtEnd: out.freed_at_end,
    check: 'ok',
    version: out.version,
  };
}

// ---- main: single-agent replay ------------------------------------------------

const fmt = (x, d = 1) => (x === undefined || x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
const mib = (b) => (b === undefined || b === null ? '-' : (b / 2 ** 20).toFixed(1));
const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
function table(title, rows, cols) {
  const lines = [title];
  const widths = cols.map((c) => Math.max(c.h.length, ...rows.map((r) => String(c.f(r)).length)));
  lines.push(cols.map((c, i) => (c.left ? pad(c.h, widths[i]) : lpad(c.h, widths[i]))).join('  ').trimEnd());
  lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) lines.push(cols.map((c, i) => (c.left ? pad(c.f(r), widths[i]) : lpad(c.f(r), widths[i]))).join('  ').trimEnd());
  return lines.join('\n');
}
const geomean = (xs) => (xs.length ? Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length) : NaN);

const waitArg = argv.find((a) => a === '--wait-idle' || a.startsWith('--wait-idle='));
if (waitArg) {
  const ok = await waitIdle(Number(waitArg.split('=')[1]) || 300);
  log(ok ? 'machine is idle; starting' : 'machine did not become idle; starting anyway');
}
const t0 = performance.now();
const ticks0 = cpuTicks();
const results = {}; // results[trace] = { trace info, peers: { peer: {...} } }
const notes = [];

if (threadsMode) {
  const { runThreads } = await import('./lib/replay-threads.js');
  await runThreads({ traceFiles, selected, unavailable, reps, eventsOpt, mimallocSize, quick, log, argv, TRACES, t0 });
  process.exit(0);
}

const active = selected.filter((p) => !unavailable[p]);
for (const p of selected) if (unavailable[p]) log(`${p}: ${unavailable[p]}`);

// ---- the cold protocol (the headline; bench/lib/replay-cold.js) -----------------

let cold = null;
if (doCold) {
  const coldUnavailable = Object.fromEntries(coldPeers.filter((p) => unavailable[p]).map((p) => [p, unavailable[p]]));
  cold = await runCold({
    traceFiles,
    TRACES,
    peers: coldPeers,
    unavailable: coldUnavailable,
    reps: coldReps,
    eventsOpt,
    mimallocSize,
    floorBytes,
    warmupMs: coldWarmupMs,
    guarded,
    table,
    log,
    notes,
  });
}

// ---- the warm protocol -------------------------------------------------------------

for (const file of doWarm ? traceFiles : []) {
  const traceFile = path.join(TRACES, file);
  const { binFile, header, parsedMs } = await ensureBin(traceFile, BUILD_DIR);
  const name = file.replace(/\.trace\.gz$/, '');
  const events = Math.min(header.events, eventsOpt);
  if (parsedMs !== null) log(`${name}: parsed ${header.events.toLocaleString('en-US')} events in ${(parsedMs / 1e3).toFixed(1)} s -> ${path.relative(REPO, binFile)}`);
  const sum = summarize(readBin(binFile, { maxEvents: events, name }));
  const R = (results[name] = {
    events,
    fileEvents: header.events,
    threads: header.threads,
    peakLive: sum.peakLive,
    totalAllocated: sum.totalAllocated,
    counts: sum.counts,
    peers: {},
  });
  log(`${name}: ${events.toLocaleString('en-US')} of ${header.events.toLocaleString('en-US')} events, peak live ${mib(sum.peakLive)} MiB`);

  // start the JS peers (each loads the trace in its own process)
  const procs = {};
  for (const p of active) if (!NATIVE.includes(p)) procs[p] = jsPeer(p, binFile, name, events);
  for (const [p, w] of Object.entries(procs)) {
    try {
      const m = await w.ready;
      (R.peers[p] ??= {}).info = m.info;
    } catch (e) {
      R.peers[p] = { error: e.message, errorStack: e.stack };
      log(`${name}/${p} failed: ${e.message}`);
      notes.push(`${name}/${p}: ${e.message}`);
    }
  }

  // rep 0 (warm-up + memory), then `reps` timed reps, interleaved across peers
  for (let rep = 0; rep <= reps; rep++) {
    for (const p of active) {
      const P = (R.peers[p] ??= {});
      if (P.error) continue;
      try {
        const run = () => (NATIVE.includes(p) ? nativeRep(p, binFile, events) : procs[p].rep(rep === 0));
        const r = rep === 0 ? await run() : await guarded(`${name} rep ${rep} ${p}`, run, NATIVE.includes(p) ? [] : [procs[p].pid]);
        if (rep === 0) {
          P.warmupMs = r.ms;
          P.mem = r.mem;
          P.freedAtEnd = r.freedAtEnd;
          if (r.version) P.version = r.version;
        } else (P.samples ??= []).push(r.nsPerEvent);
        if (r.check !== 'ok' && !String(r.check).startsWith('ok ')) {
          P.check = r.check;
          notes.push(`${name}/${p} rep ${rep}: ${r.check}`);
        } else P.check ??= r.check;
        log(`${name} rep ${rep === 0 ? 'warm-up' : rep}/${reps} ${p}: ${fmt(r.nsPerEvent)} ns/event`);
      } catch (e) {
        P.error = e.message;
        P.errorStack = e.stack;
        log(`${name}/${p} failed: ${e.message}`);
        notes.push(`${name}/${p}: ${e.message}`);
      }
    }
  }
  await Promise.all(Object.values(procs).map((w) => w.close()));
  for (const P of Object.values(R.peers)) if (P.samples) P.nsPerEvent = median(P.samples);
}

// ---- report --------------------------------------------------------------------

const elapsed = (performance.now() - t0) / 1e3;
const ticks1 = cpuTicks();
const foreign = ticks0 && ticks1 ? Math.max(0, ticks1.busy - ticks0.busy - (ticks1.self - ticks0.self)) / (elapsed * 100 * os.cpus().length) : null;
if (disturbed.length) notes.push(`still disturbed by other processes after 2 repeats: ${disturbed.join(', ')}`);
if (foreign !== null && foreign > 0.05) notes.push(`other processes used ${fmt(foreign * 100, 0)}% of the CPU time during the run: numbers are noisy`);

const names = Object.keys(results);
const peersShown = selected;
const out = [];
const machine = `${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism?.() ?? os.cpus().length} CPUs, Node ${process.version}`;
const prefixNote = names.some((n) => results[n].events < results[n].fileEvents)
  ? Number.isFinite(eventsOpt)
    ? `prefix of ${eventsOpt.toLocaleString('en-US')} events per trace`
    : 'prefixes'
  : 'whole traces';
out.push(`mimalloc-ts trace replay benchmark (${machine})${quick ? ' [--quick]' : ''}`);
if (cold) {
  const coldNames = Object.keys(cold.json.results);
  const coldPrefix = coldNames.some((n) => cold.json.results[n].events < cold.json.results[n].fileEvents)
    ? `prefix of ${eventsOpt.toLocaleString('en-US')} events per trace`
    : 'whole traces';
  out.push('');
  out.push(`=== 1. COLD protocol (headline): single-agent replay, ${coldPrefix}; each rep in a fresh worker_threads Worker (new isolate; native: a fresh process)`);
  out.push(`    ${coldWarmupMs ? `<= ${coldWarmupMs} ms warm-up on a synthetic malloc/calloc/realloc/free mix (never the trace) on a throwaway instance` : 'no warm-up'}, then the trace on a fresh instance; only the replay calls timed;`);
  out.push('    every object stamped (id in its first 4 bytes, marker in its last byte) and checked at free/realloc; native: same stamps, no warm-up;');
  out.push(
    process.execArgv.includes(TIERING_FLAG)
      ? `    NOT V8's defaults: this process (and so every cold worker) was started with ${process.execArgv.join(' ')}: wasm dynamic tiering OFF`
      : `    V8 defaults: wasm dynamic tiering ON (no --no-wasm-dynamic-tiering; node flags: ${process.execArgv.join(' ') || 'none'})`,
  );
  out.push('');
  out.push(cold.text);
  out.push('');
}
const warmStart = out.length; // the warm tables are dropped again with --cold-only
out.push(`=== ${cold ? '2. ' : ''}WARM protocol: single-agent replay, ${prefixNote}; ns/event = median of ${reps} timed rep(s), each on a fresh allocator, after 1 warm-up rep; every new block touched (1 word / 64 B of its first 4 KiB)`);
out.push(`    each peer in its own forked process, JIT warmed by replaying 200,000 events of the trace itself; children run with ${WARM_CHILD_FLAGS.join(' ') || "V8's default flags"}`);
out.push('');

const cell = (n, p) => results[n].peers[p];
out.push(
  table(
    'time: ns per event (x native-mimalloc)',
    [...names.map((n) => ({ n })), { n: 'geomean' }],
    [
      { h: 'trace', left: true, f: (r) => (r.n === 'geomean' ? 'geomean (x native-mi)' : r.n) },
      { h: 'events', f: (r) => (r.n === 'geomean' ? '' : results[r.n].events.toLocaleString('en-US')) },
      ...peersShown.map((p) => ({
        h: p,
        f: (r) => {
          if (r.n === 'geomean') {
            const xs = names.map((n) => cell(n, p)?.nsPerEvent / cell(n, REF)?.nsPerEvent).filter((x) => x > 0);
            return xs.length === names.length ? `${fmt(geomean(xs), 2)}x` : '-';
          }
          const c = cell(r.n, p);
          if (!c || c.error || unavailable[p]) return c?.error ? 'error' : '-';
          const ref = cell(r.n, REF)?.nsPerEvent;
          return p === REF || !ref ? fmt(c.nsPerEvent) : `${fmt(c.nsPerEvent)} (${fmt(c.nsPerEvent / ref, 2)}x)`;
        },
      })),
    ],
  ),
);

if (peersShown.includes('mimalloc-ts') && (peersShown.includes('mimalloc-ts-secure4') || peersShown.includes('mimalloc-ts-nocheck'))) {
  out.push('');
  const pct = (n, p) => {
    const a = cell(n, p)?.nsPerEvent;
    const b = cell(n, 'mimalloc-ts')?.nsPerEvent;
    return a && b ? (a / b - 1) * 100 : NaN;
  };
  const spread = (n, p) => (cell(n, p)?.samples ? `${fmt(Math.min(...cell(n, p).samples))}..${fmt(Math.max(...cell(n, p).samples))}` : '-');
  out.push(
    table(
      'mimalloc-ts modes: secure 4 overhead and free-check cost (vs mimalloc-ts, same run)',
      [...names.map((n) => ({ n })), { n: 'geomean' }],
      [
        { h: 'trace', left: true, f: (r) => r.n },
        { h: 'mimalloc-ts ns/ev (min..max)', f: (r) => (r.n === 'geomean' ? '' : `${fmt(cell(r.n, 'mimalloc-ts')?.nsPerEvent)} (${spread(r.n, 'mimalloc-ts')})`) },
        { h: 'secure4 ns/ev (min..max)', f: (r) => (r.n === 'geomean' ? '' : `${fmt(cell(r.n, 'mimalloc-ts-secure4')?.nsPerEvent)} (${spread(r.n, 'mimalloc-ts-secure4')})`) },
        ...['mimalloc-ts-secure4', 'mimalloc-ts-secure2'].filter((p) => peersShown.includes(p)).map((p) => ({
          h: `secure ${p.slice(-1)} overhead`,
          f: (r) => {
            if (r.n !== 'geomean') return `${fmt(pct(r.n, p))}%`;
            const xs = names.map((n) => 1 + pct(n, p) / 100).filter((x) => x > 0);
            return xs.length === names.length ? `${fmt((geomean(xs) - 1) * 100)}%` : '-';
          },
        })),
        {
          h: 'checkFree cost (vs nocheck)',
          f: (r) => {
            const c = (n) => cell(n, 'mimalloc-ts')?.nsPerEvent / cell(n, 'mimalloc-ts-nocheck')?.nsPerEvent;
            if (r.n !== 'geomean') return `${fmt((c(r.n) - 1) * 100)}%`;
            const xs = names.map(c).filter((x) => x > 0);
            return xs.length === names.length ? `${fmt((geomean(xs) - 1) * 100)}%` : '-';
          },
        },
      ],
    ),
  );
}

out.push('');
const ratio = (b, n) => `${mib(b)} (${fmt(b / results[n].peakLive, 2)}x)`;
out.push(
  table(
    'memory: peak RSS of the heap in MiB (x ideal); ideal = the trace\'s peak live bytes; RSS = VmHWM after the replay - VmRSS before the allocator existed, each peer in its own process',
    names.map((n) => ({ n })),
    [
      { h: 'trace', left: true, f: (r) => r.n },
      { h: 'ideal', f: (r) => mib(results[r.n].peakLive) },
      ...peersShown.map((p) => ({ h: p, f: (r) => (cell(r.n, p)?.mem?.heapRss > 0 ? ratio(cell(r.n, p).mem.heapRss, r.n) : '-') })),
    ],
  ),
);
const WASM_PEERS = ['dlmalloc-wasm', 'mimalloc-wasm'];
const own = peersShown.filter((p) => p.startsWith('mimalloc-ts') || WASM_PEERS.includes(p));
if (own.length) {
  out.push('');
  out.push(
    table(
      "memory as the allocators see it, MiB (x ideal): mimalloc-ts peak stats().committed / peak stats().pagesBytes (sampled every 65,536 events); dlmalloc-wasm, mimalloc-wasm: wasm memory size",
      names.map((n) => ({ n })),
      [
        { h: 'trace', left: true, f: (r) => r.n },
        { h: 'ideal', f: (r) => mib(results[r.n].peakLive) },
        ...own.map((p) => ({
          h: p,
          f: (r) => {
            const m = cell(r.n, p)?.mem;
            if (!m) return '-';
            return WASM_PEERS.includes(p) ? ratio(m.wasmMemory, r.n) : `${ratio(m.committed, r.n)} / ${mib(m.pagesBytes)}`;
          },
        })),
      ],
    ),
  );
}

if (!doWarm) out.length = warmStart;
for (const p of selected) if (unavailable[p]) notes.push(`${p}: ${unavailable[p]}`);
const checks = [];
for (const n of names) for (const [p, c] of Object.entries(results[n].peers)) if (c.check && c.check !== 'ok') checks.push(`${n}/${p}: ${c.check}`);
out.push('');
out.push(
  'notes:\n' +
    [
      ...(doWarm
        ? [
            'warm: RSS counts touched pages only, and the replay touches at most the first 4 KiB of a block, so RSS can be below "ideal" when big blocks are live.',
            'mimalloc-ts committed = high-water mark of the slices handed to pages (touched or not; the buffer header, ~4% of it, excluded); pagesBytes = bytes in pages at that moment.',
          ]
        : []),
      ...(cold ? ['cold: js-floor is not an allocator (size-class free lists, no checks, never returns memory): the least a JS allocator costs in this harness; tlsf-wasm: calloc/realloc/aligned in JS over its alloc/free'] : []),
      ...[...new Set(notes)],
      ...(checks.length ? checks : [`after every rep all live objects were freed${cold ? ' (cold: every stamp checked first)' : ''}; mimalloc-ts: stats().used === 0 and check() passed (nocheck: check() skipped)`]),
    ]
      .map((s) => `  ${s}`)
      .join('\n'),
);
out.push('');
out.push(`total time ${fmt(elapsed)} s; CPU used by other processes during the run: ${foreign === null ? '?' : fmt(foreign * 100, 0)}%`);
out.push('raw samples in bench/results/replay.json');
console.log(out.join('\n'));

const resultsDir = path.join(BENCH_DIR, 'results');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(
  path.join(resultsDir, 'replay.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      command: `node bench/replay.js ${argv.join(' ')}`.trim(),
      node_flags: process.execArgv,
      warm_child_flags: [...WARM_CHILD_FLAGS, '--expose-gc'],
      machine: { cpu: os.cpus()[0]?.model, cpus: os.availableParallelism?.() ?? os.cpus().length, node: process.version, platform: `${os.platform()} ${os.release()} ${os.arch()}` },
      traces_dir: TRACES,
      reps,
      events_option: Number.isFinite(eventsOpt) ? eventsOpt : null,
      mimalloc_ts_size: mimallocSize,
      reference: REF,
      results,
      cold: cold?.json ?? null,
      unavailable,
      notes,
      elapsed_s: elapsed,
      other_cpu_share: foreign,
    },
    null,
    2,
  ) + '\n',
);
