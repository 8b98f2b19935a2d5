#!/usr/bin/env node
// Fill to NULL: a bounded 64 MiB region, used to the last page. Run with
// `npm run bench:fill` (= npm run build && node bench/fill.js).
//
// A mix of sizes is allocated until the first NULL; with pattern "churn" a
// random live block is freed before 45% of the steps (bench/lib/fill-core.js).
// Measured: the requested bytes of the blocks live at the first NULL, as a
// share of 64 MiB. Rows: largest size 4 KiB, 64 KiB, 256 KiB, 1 MiB x pattern
// fill / churn; one table per size mix. Columns:
//   mimalloc-ts      Allocator.create({ size: 64 MiB }) (its header counts
//                    against the 64 MiB), one agent
//   mimalloc-ts-grow Allocator.create({ size: 1 MiB, maxSize: 64 MiB }): a
//                    growable buffer, one agent
//   mimalloc-ts-x4   the same buffer, 4 workers (worker_threads) attached to it
//                    allocating at once, each the same procedure on its own
//                    seed; the first NULL in any worker ends the run (the
//                    others stop before their next step); live bytes summed;
//                    paced (--window) so that all 4 really allocate at once
//   dlmalloc-wasm    wasi-libc dlmalloc, wasm memory with maximum 64 MiB
//   tlsf-wasm        AssemblyScript TLSF, wasm memory with maximum 64 MiB
//                    (it traps with `unreachable` when memory.grow fails: that
//                    trap is its NULL)
//   mimalloc-wasm    mimalloc v3.4.3 (the C library) compiled to wasm, memory
//                    with maximum 64 MiB, arena reserve lowered so that three
//                    16 MiB arenas fit (bench/peers/build-fill.sh says why);
//                    malloc returns NULL when memory.grow fails, as dlmalloc's
// The wasm peers are bench/build/fill/*.wasm (bench/peers/build-fill.sh);
// their static data and stack lie inside the 64 MiB and count against them.
// Each cell: the median over the seeds (min..max beside it). The 1-agent
// runs are deterministic (seeded xorshift32, the same request sequence for
// every peer); the 4-worker runs depend on how the workers interleave.
//
// Options: --mixes=log,small  --rows=4k,64k,256k,1m (a row may name one
//          pattern: 1m:churn)  --seeds=N (default 3)  --workers=N (default 4)
//          --window=N (default 32; 0 = free-running): the 4 workers are paced
//          so that none begins a step more than N steps ahead of the slowest;
//          free-running on this 2-core machine, a run that is over in a few
//          ms was often filled by one or two workers while the others had not
//          been scheduled yet (that measured 1 agent, not 4)
//          --peers=mimalloc-ts,mimalloc-ts-x4,dlmalloc-wasm,tlsf-wasm,mimalloc-wasm
//          --quick (1 seed, rows 4k and 1m: a smoke run)
// Results: tables on stdout, progress on stderr, bench/results/fill.json.
// A peer that cannot be built or loaded stops the run (exit status 1).
// MIMALLOC_TS_DIST=<dir> loads another build of mimalloc-ts.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { BENCH_DIR, BUILD_DIR, DIST_INDEX, loadMimallocTs } from './lib/peers.js';
import { CHURN_FREE, ctlWords, GO, MIXES, PATTERNS, REGION, fmtSize, makeRng, runFill, workerSeed } from './lib/fill-core.js';

// ---- options ----------------------------------------------------------------

const argv = process.argv.slice(2);
const KNOWN = ['mixes', 'rows', 'seeds', 'workers', 'window', 'peers', 'quick'];
for (const a of argv) {
  const name = a.replace(/^--/, '').split('=')[0];
  if (!a.startsWith('--') || !KNOWN.includes(name)) {
    console.error(`unknown option ${a}; known: ${KNOWN.map((k) => `--${k}`).join(' ')}`);
    process.exit(2);
  }
}
const opt = (name) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = argv.includes('--quick');
const log = (...m) => console.error('[bench:fill]', ...m);

const PEERS = {
  'mimalloc-ts': 'mimalloc-ts',
  'mimalloc-ts-grow': 'mimalloc-ts, grown from 1 MiB',
  'mimalloc-ts-x4': null, // label set below from --workers
  'dlmalloc-wasm': 'dlmalloc (wasm)',
  'tlsf-wasm': 'TLSF (wasm)',
  'mimalloc-wasm': 'mimalloc v3 (wasm)',
};
const WASM = { 'dlmalloc-wasm': 'dlmalloc', 'tlsf-wasm': 'tlsf', 'mimalloc-wasm': 'mimalloc' };
// the wasm peers whose malloc returns NULL (0) when memory.grow fails
const C_MALLOC = ['dlmalloc-wasm', 'mimalloc-wasm'];

function parseSize(s) {
  const m = /^(\d+)([kKmM]?)$/.exec(s);
  if (!m) throw new Error(`bad size ${s} (e.g. 4k, 1m)`);
  return Number(m[1]) * (m[2] === '' ? 1 : /k/i.test(m[2]) ? 1024 : 1 << 20);
}

const mixes = (opt('mixes') ?? 'log,small').split(',');
for (const m of mixes) if (!MIXES[m]) throw new Error(`unknown mix ${m}; known: ${Object.keys(MIXES).join(', ')}`);
const rows = [];
for (const r of (opt('rows') ?? (quick ? '4k,1m' : '4k,64k,256k,1m')).split(',')) {
  const [s, pat] = r.split(':');
  if (pat && !PATTERNS.includes(pat)) throw new Error(`unknown pattern ${pat}; known: ${PATTERNS.join(', ')}`);
  for (const pattern of pat ? [pat] : PATTERNS) rows.push({ max: parseSize(s), pattern });
}
const nseeds = Number(opt('seeds') ?? (quick ? 1 : 3));
const nworkers = Number(opt('workers') ?? 4);
const paceWindow = Number(opt('window') ?? 32);
if (!(nseeds >= 1) || !(nworkers >= 1)) throw new Error('--seeds and --workers must be >= 1');
if (!(paceWindow >= 0)) throw new Error('--window must be >= 0');
PEERS['mimalloc-ts-x4'] = `mimalloc-ts, ${nworkers} workers`;
const peers = (opt('peers') ?? Object.keys(PEERS).join(',')).split(',');
for (const p of peers) if (!(p in PEERS)) throw new Error(`unknown peer ${p}; known: ${Object.keys(PEERS).join(', ')}`);
const seeds = Array.from({ length: nseeds }, (_, i) => i + 1);

// ---- peers ------------------------------------------------------------------

const FILL_DIR = path.join(BUILD_DIR, 'fill');
const WASM_SRC = { dlmalloc: 'peers/dlmalloc_exports.c', tlsf: 'peers/tlsf/index.ts', mimalloc: 'peers/dlmalloc_exports.c' };

function stale(key) {
  const f = path.join(FILL_DIR, `${key}.wasm`);
  if (!existsSync(f)) return true;
  const t = statSync(f).mtimeMs;
  return [WASM_SRC[key], 'peers/build-fill.sh'].some((s) => statSync(path.join(BENCH_DIR, s)).mtimeMs > t);
}

function fail(msg) {
  console.error(`[bench:fill] FAILED: ${msg}`);
  process.exit(1);
}

const t0 = performance.now();
const wasmKeys = peers.filter((p) => WASM[p]).map((p) => WASM[p]);
const toBuild = wasmKeys.filter(stale);
if (toBuild.length) {
  log(`building ${toBuild.join(', ')}: bash bench/peers/build-fill.sh ${toBuild.join(' ')}`);
  const r = spawnSync('bash', [path.join(BENCH_DIR, 'peers', 'build-fill.sh'), ...toBuild], { stdio: ['ignore', 2, 2] });
  if (r.status !== 0) fail(`bench/peers/build-fill.sh exited with ${r.status ?? r.signal}: a wasm peer could not be built (see above; --peers= without it runs the rest)`);
  for (const k of toBuild) if (!existsSync(path.join(FILL_DIR, `${k}.wasm`))) fail(`bench/build/fill/${k}.wasm was not built`);
}

/**
 * Instantiate a compiled module: minimal WASI and env.abort, as bench/lib/peers.js
 * does (ENOSYS, except an empty environment and a monotonic clock, which
 * mimalloc.wasm needs: wasi-libc exits when the environment cannot be read).
 */
function instantiate(module) {
  const imports = {};
  let memory = null;
  const view = () => new DataView(memory.buffer);
  const WASI = {
    proc_exit: (c) => { throw new Error(`wasm proc_exit(${c})`); },
    environ_sizes_get: (count, bytes) => { view().setUint32(count >>> 0, 0, true); view().setUint32(bytes >>> 0, 0, true); return 0; },
    environ_get: () => 0,
    clock_time_get: (id, precision, out) => { view().setBigUint64(out >>> 0, process.hrtime.bigint(), true); return 0; },
  };
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind !== 'function') throw new Error(`unsupported import ${imp.module}.${imp.name} (${imp.kind})`);
    let fn;
    if (imp.module === 'wasi_snapshot_preview1') fn = WASI[imp.name] ?? (() => 52);
    else if (imp.module === 'env' && imp.name === 'abort') fn = () => { throw new Error('wasm abort()'); };
    else throw new Error(`unexpected import ${imp.module}.${imp.name}`);
    (imports[imp.module] ??= {})[imp.name] = fn;
  }
  const ex = new WebAssembly.Instance(module, imports).exports;
  memory = ex.memory;
  return ex;
}

const modules = {};
const wasmInfo = {};
for (const k of wasmKeys) {
  try {
    modules[k] = new WebAssembly.Module(readFileSync(path.join(FILL_DIR, `${k}.wasm`)));
    const ex = instantiate(modules[k]);
    const mem = ex.memory;
    // the memory's limits, read from the grow that must fail past 64 MiB
    const initial = mem.buffer.byteLength;
    let max = initial;
    try {
      mem.grow(REGION / 65536 - initial / 65536);
      max = mem.buffer.byteLength;
      mem.grow(1);
      max = -1;
    } catch {}
    if (max !== REGION) fail(`${k}.wasm: its memory does not stop at 64 MiB (${max === -1 ? 'grew past it' : `max ${max}`}); rebuild with bash bench/peers/build-fill.sh`);
    const ex2 = instantiate(modules[k]);
    if (typeof ex2._initialize === 'function') ex2._initialize();
    const first = k === 'tlsf' ? ex2.alloc(1) : ex2.malloc(1);
    wasmInfo[k] = {
      initial_bytes: initial,
      max_bytes: REGION,
      heap_base: ex2.__heap_base?.value ?? null,
      first_block: first >>> 0,
    };
  } catch (e) {
    fail(`${k}.wasm cannot be loaded: ${e.message}`);
  }
}

let Allocator = null;
let mtsInfo = null;
if (peers.some((p) => p.startsWith('mimalloc-ts'))) {
  try {
    Allocator = await loadMimallocTs();
    const a = Allocator.create({ size: REGION });
    const st = a.stats();
    const p = a.malloc(64);
    if (typeof p !== 'number' || p === 0) throw new Error(`malloc(64) returned ${p}`);
    mtsInfo = { reserved: st.reserved, header_bytes: st.metadata, first_block: p, dist: DIST_INDEX };
  } catch (e) {
    fail(`mimalloc-ts is not usable (${e.message}); run npm run build`);
  }
}

/** One agent: a fresh instance of the peer, the procedure on seed s. */
function runOne(peer, mix, max, pattern, seed) {
  const spec = { pattern, sizeOf: MIXES[mix].make(max), rng: makeRng(seed), limit: REGION };
  if (peer === 'mimalloc-ts' || peer === 'mimalloc-ts-grow') {
    const a = peer === 'mimalloc-ts' ? Allocator.create({ size: REGION }) : Allocator.create({ size: 1 << 20, maxSize: REGION });
    const r = runFill(a, spec);
    const st = a.stats();
    r.stats = { committed: st.committed, used: st.used, pages: st.pages, smallPages: st.smallPages, mediumPages: st.mediumPages, largePages: st.largePages, hugePages: st.hugePages };
    return r;
  }
  const ex = instantiate(modules[WASM[peer]]);
  let al;
  let trap = null;
  if (C_MALLOC.includes(peer)) {
    ex._initialize();
    al = { malloc: (n) => ex.malloc(n) >>> 0, free: ex.free };
  } else {
    al = {
      malloc(n) {
        try {
          return ex.alloc(n) >>> 0;
        } catch (e) {
          // AssemblyScript's TLSF (--noAssert): its only unreachable() in alloc is
          // growMemory's, when memory.grow fails; other errors call abort (throws Error)
          if (e instanceof WebAssembly.RuntimeError && /unreachable/.test(e.message)) {
            trap = e.message;
            return 0;
          }
          throw e;
        }
      },
      free: ex.free,
    };
  }
  const r = runFill(al, spec);
  r.memory_bytes = ex.memory.buffer.byteLength;
  if (trap) r.trap = trap;
  return r;
}

// ---- the 4-worker column ------------------------------------------------------

let pool = null;

function startPool() {
  const ws = [];
  for (let w = 0; w < nworkers; w++) {
    const worker = new Worker(new URL('./lib/fill-worker.js', import.meta.url), { workerData: { w, distIndex: DIST_INDEX } });
    ws.push({ worker, next: null });
    worker.on('message', (m) => ws[w].next?.(m));
    worker.on('error', (e) => ws[w].next?.({ error: e.stack ?? String(e) }));
  }
  return ws;
}

/** The next message of worker w (an { error } message rejects). */
function nextMessage(ws, w) {
  return new Promise((resolve, reject) => {
    ws[w].next = (m) => {
      ws[w].next = null;
      if (m.error) reject(new Error(`worker ${w}: ${m.error}`));
      else resolve(m);
    };
  });
}

async function runWorkers(mix, max, pattern, seed) {
  if (!pool) {
    pool = startPool();
    const loaded = pool.map((_, w) => nextMessage(pool, w));
    await Promise.all(loaded);
  }
  const a = Allocator.create({ size: REGION });
  const ctl = new Int32Array(new SharedArrayBuffer(ctlWords(nworkers) * 4));
  const attached = pool.map((_, w) => nextMessage(pool, w));
  pool.forEach((p, w) => p.worker.postMessage({ cmd: 'run', handle: a.handle, ctl, w, n: nworkers, window: paceWindow, seed: workerSeed(seed, w), mix, max, pattern }));
  await Promise.all(attached);
  const done = pool.map((_, w) => nextMessage(pool, w));
  Atomics.store(ctl, GO, 1);
  Atomics.notify(ctl, GO);
  const rs = (await Promise.all(done)).map((m) => m.result);
  const st = a.stats();
  return {
    live: rs.reduce((s, r) => s + r.live, 0),
    blocks: rs.reduce((s, r) => s + r.blocks, 0),
    steps: rs.reduce((s, r) => s + r.steps, 0),
    null_worker: rs.findIndex((r) => !r.stopped),
    active_workers: rs.filter((r) => r.steps > 0).length,
    nullSize: rs.find((r) => !r.stopped)?.nullSize ?? 0,
    workers: rs.map(({ live, blocks, steps, frees, nullSize, stopped }) => ({ live, blocks, steps, frees, nullSize, stopped })),
    stats: { committed: st.committed, used: st.used, pages: st.pages, abandonedPages: st.abandonedPages, smallPages: st.smallPages, mediumPages: st.mediumPages, largePages: st.largePages, hugePages: st.hugePages },
  };
}

// ---- run ----------------------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const cells = []; // { mix, max, pattern, peer, runs: [{ seed, share, ... }], median, min, max }
const total = mixes.length * rows.length * peers.length * seeds.length;
let done = 0;
try {
  for (const mix of mixes) {
    for (const { max, pattern } of rows) {
      for (const peer of peers) {
        const runs = [];
        for (const seed of seeds) {
          const t = performance.now();
          const r = peer === 'mimalloc-ts-x4' ? await runWorkers(mix, max, pattern, seed) : runOne(peer, mix, max, pattern, seed);
          r.seed = seed;
          r.share = r.live / REGION;
          r.ms = Math.round(performance.now() - t);
          runs.push(r);
          done++;
          log(`[${done}/${total}] ${mix} ${fmtSize(max)} ${pattern} ${peer} seed ${seed}: ${(r.share * 100).toFixed(2)}% (${r.blocks} live blocks, ${r.steps} steps, NULL for ${r.nullSize} B, ${r.ms} ms)`);
        }
        const shares = runs.map((r) => r.share);
        cells.push({ mix, max, pattern, peer, median: median(shares), min: Math.min(...shares), max_share: Math.max(...shares), runs });
      }
    }
  }
} catch (e) {
  console.error(e);
  fail(e.message);
} finally {
  if (pool) for (const p of pool) p.worker.terminate();
}
const seconds = (performance.now() - t0) / 1000;

// ---- report -------------------------------------------------------------------

const GOAL = 0.9;
const pct = (x) => `${(x * 100).toFixed(1)}%`;
const out = [];
out.push(`Fill to NULL: live requested bytes at the first NULL / 64 MiB; median of ${nseeds} seed${nseeds > 1 ? 's' : ''}${nseeds > 1 ? ' (min..max)' : ''}`);
out.push(`churn: a random live block is freed before ${CHURN_FREE * 100}% of the steps`);
if (peers.includes('mimalloc-ts-x4'))
  out.push(`${nworkers} workers: ` + (paceWindow > 0 ? `paced: none begins a step more than ${paceWindow} ahead of the slowest (--window=${paceWindow})` : 'free-running (--window=0)'));
for (const mix of mixes) {
  out.push('', `mix "${mix}": ${MIXES[mix].label}`, '');
  out.push(`| largest | pattern | ${peers.map((p) => PEERS[p]).join(' | ')} |`);
  out.push(`|---|---|${peers.map(() => '--:').join('|')}|`);
  for (const { max, pattern } of rows) {
    const cs = peers.map((p) => cells.find((c) => c.mix === mix && c.max === max && c.pattern === pattern && c.peer === p));
    const fmt = (c) => (nseeds > 1 ? `${pct(c.median)} (${(c.min * 100).toFixed(1)}..${(c.max_share * 100).toFixed(1)})` : pct(c.median));
    out.push(`| ${fmtSize(max)} | ${pattern} | ${cs.map(fmt).join(' | ')} |`);
  }
}
// where mimalloc-ts's region went at the first NULL (the seed with the median share):
// requested bytes, usable bytes of the live blocks (stats().used: size-class
// rounding is the gap), bytes handed to pages (stats().committed: free room in
// pages of other size classes or other agents is the gap), all / 64 MiB
const mts = peers.filter((p) => p.startsWith('mimalloc-ts'));
if (mts.length) {
  out.push('', 'mimalloc-ts at the first NULL (seed with the median share): requested / usable (stats().used) / in pages (stats().committed), each / 64 MiB');
  for (const mix of mixes) {
    out.push('', `mix "${mix}"`, '');
    out.push(`| largest | pattern | ${mts.map((p) => PEERS[p]).join(' | ')} |`);
    out.push(`|---|---|${mts.map(() => '--:').join('|')}|`);
    for (const { max, pattern } of rows) {
      const cs = mts.map((p) => cells.find((c) => c.mix === mix && c.max === max && c.pattern === pattern && c.peer === p));
      const fmt = (c) => {
        const r = [...c.runs].sort((a, b) => a.share - b.share)[(c.runs.length - 1) >> 1];
        return `${pct(r.share)} / ${pct(r.stats.used / REGION)} / ${pct(r.stats.committed / REGION)}`;
      };
      out.push(`| ${fmtSize(max)} | ${pattern} | ${cs.map(fmt).join(' | ')} |`);
    }
  }
}
const goalPeers = mts;
if (goalPeers.length) {
  const below = cells.filter((c) => goalPeers.includes(c.peer) && c.median < GOAL);
  const all = cells.filter((c) => goalPeers.includes(c.peer));
  const worst = all.reduce((w, c) => (c.median < w.median ? c : w), all[0]);
  out.push('', `goal (>= ${GOAL * 100}% in every row, one agent and ${nworkers} workers): ${below.length ? `not met in ${below.length} of ${all.length} cells` : 'met'}` +
    `; lowest ${pct(worst.median)} (${worst.mix} ${fmtSize(worst.max)} ${worst.pattern}, ${PEERS[worst.peer]})`);
}
const x4 = cells.filter((c) => c.peer === 'mimalloc-ts-x4');
if (x4.length) {
  const runs = x4.flatMap((c) => c.runs.map((r) => ({ c, r })));
  const short = runs.filter(({ r }) => r.active_workers < nworkers);
  out.push('', `${nworkers}-worker runs in which fewer than ${nworkers} workers took a step before the first NULL: ${short.length} of ${runs.length}` +
    (short.length ? ` (${[...new Set(short.map(({ c }) => `${c.mix} ${fmtSize(c.max)} ${c.pattern}`))].join(', ')}; ${os.cpus().length} CPUs: a run that is over in a few ms can end before every worker is scheduled)` : ''));
}
out.push('', 'region overhead counted against the 64 MiB:');
if (mtsInfo) out.push(`  mimalloc-ts: header ${mtsInfo.header_bytes} B (${pct(mtsInfo.header_bytes / REGION)}), first block at ${mtsInfo.first_block}`);
for (const k of wasmKeys) {
  const i = wasmInfo[k];
  out.push(`  ${k} (wasm): initial memory ${i.initial_bytes / 1024} KiB, ${i.heap_base !== null ? `__heap_base ${i.heap_base} B (static data + stack), ` : ''}first block at ${i.first_block} (${pct(i.first_block / REGION)})`);
}
out.push('', `${seconds.toFixed(0)} s on ${os.cpus().length} CPUs, node ${process.version}; raw numbers in bench/results/fill.json`);
console.log(out.join('\n'));

const resultsDir = path.join(BENCH_DIR, 'results');
mkdirSync(resultsDir, { recursive: true });
writeFileSync(
  path.join(resultsDir, 'fill.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      node: process.version,
      cpus: os.cpus().length,
      quick,
      seconds: Math.round(seconds),
      region: REGION,
      churn_free: CHURN_FREE,
      workers: nworkers,
      window: paceWindow,
      mixes: Object.fromEntries(mixes.map((m) => [m, MIXES[m].label])),
      mimalloc_ts: mtsInfo,
      wasm: wasmInfo,
      cells,
    },
    null,
    1,
  ) + '\n',
);
