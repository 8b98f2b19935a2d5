#!/usr/bin/env node
// What each secure level costs, measured so that the machine's drift cancels:
// every level runs in ONE process, with its reps interleaved (level 0, 1, 2,
// ..., then again), and the overhead is the ratio of minima (and of medians)
// to level 0 over the same rounds. bench/micro.js and bench/replay.js run
// each allocator in a process of its own, where the spread between processes
// on a shared 2-core VM (±30%) is larger than the effect being measured.
//
//   (a), (b)  the loops of bench/lib/workload.js (as bench/micro.js)
//   replay    every trace of ../shared/traces (as bench/replay.js, one agent;
//             each rep a fresh allocator, only the replay loop timed)
//
// Each level gets its own copy of the loop modules (imported under a query
// string), so every call site stays monomorphic, as when one allocator runs
// alone. Run with `npm run bench:secure`.
//
// Options: --levels=0,1,2,3,4  --workloads=ab,replay  --reps=N (default 15
//          for a/b, 5 for replay)  --only=trace,trace  --events=N (prefix)
//          --quick (3 reps, 300,000-event prefixes)  --wait-idle[=seconds]
//          --native: also native mimalloc built at each MI_SECURE level
//          (bench/peers/build-mimalloc-secure.sh, from Debian's source
//          package), running the same workloads (bench/peers/native_micro.c
//          and native_replay.c), levels interleaved the same way: what
//          mimalloc's own secure mode costs here, for reference
//          --dists=DIR,DIR: compare builds instead (before/after a change):
//          every level of every build (dist/ directories, e.g. a worktree of
//          the previous commit), interleaved the same way; the reference is
//          the first build's first level
// Results: tables on stdout, progress on stderr, bench/results/secure.json.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { BENCH_DIR, BUILD_DIR, DIST_INDEX } from './lib/peers.js';
import { PARAMS, median } from './lib/workload.js';
import { ensureBin, readBin, tracesDir } from './lib/trace.js';
import { cpuTicks, waitIdle } from './lib/noise.js';

const argv = process.argv.slice(2);
const opt = (name) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = argv.includes('--quick');
const levels = (opt('levels') ?? '0,1,2,3,4').split(',').map(Number);
const workloads = (opt('workloads') ?? 'ab,replay').split(',');
const log = (...m) => console.error('[bench:secure]', ...m);
if (levels[0] !== 0 || levels.some((l) => !Number.isInteger(l) || l < 0 || l > 4)) {
  console.error('--levels: integers 0..4, starting with 0 (the reference)');
  process.exit(2);
}
if (!existsSync(DIST_INDEX) && !opt('dists')) {
  console.error(`${path.relative(process.cwd(), DIST_INDEX)} is missing: run \`npm run build\` first`);
  process.exit(2);
}
// --native: build (or find) the MI_SECURE libraries first, while this process holds no
// allocators: a fork with gigabytes of SharedArrayBuffers reserved can fail for lack of memory
const nativeLib = argv.includes('--native')
  ? spawnSync('bash', [path.join(BENCH_DIR, 'peers', 'build-mimalloc-secure.sh')], { encoding: 'utf8' })
  : null;

// the configurations measured side by side: every level of every build; the first is the reference
const dists = (opt('dists')?.split(',') ?? [path.dirname(DIST_INDEX)]).map((d) => path.resolve(d));
const configs = [];
for (const [di, dir] of dists.entries()) {
  const { Allocator } = await import(`${pathToFileURL(path.join(dir, 'index.js')).href}?dist=${di}`);
  for (const level of levels) configs.push({ level, Allocator, label: dists.length > 1 ? `${path.basename(path.dirname(dir))}:${level}` : `level ${level}`, key: `${di}-${level}` });
}
const REPO = path.resolve(BENCH_DIR, '..');
const t0 = performance.now();
const c0 = cpuTicks();
if (argv.some((a) => a.startsWith('--wait-idle'))) {
  const s = Number(opt('wait-idle') ?? 300);
  log(`waiting up to ${s} s for the machine to be idle`);
  if (!(await waitIdle(s))) log('the machine did not become idle; measuring anyway');
}

const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const pct = (x) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%` : '-');
const geomean = (xs) => Math.exp(xs.reduce((s, x) => s + Math.log(x), 0) / xs.length);
const out = [];
const json = { date: new Date().toISOString(), levels, dists, rows: {} };

/** One table: per level, min and median ns/unit and both overheads vs level 0. */
function report(title, unit, samples, target = out) {
  const base = samples[0];
  const mn = (v) => Math.min(...v);
  const rows = samples.length === configs.length ? configs.map((c) => c.label) : levels.map((l) => `level ${l}`);
  const w = Math.max(...rows.map((r) => r.length));
  const lines = [`${title}`, `${''.padEnd(w)}   min ${unit}   median   overhead (min)   overhead (median)`];
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i];
    lines.push(`${rows[i].padEnd(w)} ${fmt(mn(v)).padStart(8)} ${fmt(median(v)).padStart(8)} ${(i ? pct(mn(v) / mn(base) - 1) : '').padStart(16)} ${(i ? pct(median(v) / median(base) - 1) : '').padStart(19)}`);
  }
  target.push(lines.join('\n'), '');
}

/**
 * A replay table: header lines, then add(name, samples per level) per trace
 * and end() for the geomean row; overheads vs level 0 by min and by median.
 */
function replayTable(title, labels, target = out) {
  const lines = [title, `trace            ${labels.map((l, i) => l.padStart(i ? 31 : 16)).join('')}`];
  const rmin = labels.map(() => []);
  const rmed = labels.map(() => []);
  return {
    add(name, res) {
      const mn = res.map((v) => Math.min(...v));
      const md = res.map(median);
      let row = name.padEnd(15);
      for (let i = 0; i < labels.length; i++) {
        row += i === 0 ? `${fmt(mn[0], 1)} / ${fmt(md[0], 1)}`.padStart(16)
          : `${fmt(mn[i], 1)} / ${fmt(md[i], 1)} (${pct(mn[i] / mn[0] - 1)} / ${pct(md[i] / md[0] - 1)})`.padStart(31);
        rmin[i].push(mn[i] / mn[0]);
        rmed[i].push(md[i] / md[0]);
      }
      lines.push(row);
    },
    end() {
      if (rmin[0].length > 0) {
        let row = 'geomean'.padEnd(15) + ''.padStart(16);
        for (let i = 1; i < labels.length; i++) row += `(${pct(geomean(rmin[i]) - 1)} / ${pct(geomean(rmed[i]) - 1)})`.padStart(31);
        lines.push(row);
      }
      target.push(lines.join('\n'), '');
    },
  };
}

// the traces, listed (and parsed to bench/build/traces) before anything runs: --native replays them too
const TRACES = tracesDir(REPO, argv);
const onlyTraces = opt('only')?.split(',');
const replayFiles = workloads.includes('replay') && existsSync(TRACES)
  ? readdirSync(TRACES).filter((f) => f.endsWith('.trace.gz')).filter((f) => !onlyTraces || onlyTraces.includes(f.replace(/\.trace\.gz$/, ''))).sort().map((f) => path.join(TRACES, f))
  : [];
for (const f of replayFiles) await ensureBin(f, BUILD_DIR);

// ---- native mimalloc at each MI_SECURE level (reference), run first: a fork from a process
// holding gigabytes of SharedArrayBuffers can fail for lack of memory ----------------------

const nativeOut = [];
if (argv.includes('--native')) {
  const lib = nativeLib;
  const micro = path.join(BUILD_DIR, 'native_micro_mimalloc');
  const replay = path.join(BUILD_DIR, 'native_replay_mimalloc');
  if (lib.status !== 0) {
    nativeOut.push(`native: skipped (${lib.error?.message ?? (lib.stderr || '').trim().split('\n').pop()})`, '');
  } else if (!existsSync(micro) || !existsSync(replay)) {
    nativeOut.push('native: skipped (bench/build/native_*_mimalloc missing: run `npm run bench:peers`)', '');
  } else {
    const dir = lib.stdout.trim().split('\n').pop();
    const env = (level) => ({ ...process.env, LD_LIBRARY_PATH: path.join(dir, `l${level}`) });
    const run = (bin, args, level) => {
      const r = spawnSync(bin, args, { encoding: 'utf8', env: env(level), timeout: 120_000 });
      if (r.status !== 0) throw new Error(`${path.basename(bin)} (MI_SECURE=${level}): exit ${r.status ?? r.signal}: ${(r.stderr || '').trim()}`);
      return JSON.parse(r.stdout);
    };
    const nreps = quick ? 1 : 3;
    json.rows.native = { a: levels.map(() => []), b: levels.map(() => []), replay: {} };
    if (workloads.includes('ab')) {
      log(`native mimalloc (a), (b): ${nreps} interleaved runs of MI_SECURE ${levels.join(', ')}`);
      const args = Object.entries(PARAMS).filter(([k]) => !['passes', 'c_passes'].includes(k)).map(([k, v]) => `${k}=${v}`);
      if (quick) args.push('reps=3');
      for (let r = 0; r < nreps; r++) {
        for (let i = 0; i < levels.length; i++) {
          const o = run(micro, [...args, 'workloads=ab'], levels[i]);
          json.rows.native.a[i].push(...o.a.samples);
          json.rows.native.b[i].push(...o.b.samples);
        }
      }
      report('native mimalloc, (a) (per level: the samples of all runs; the same loop in C)', 'ns/op', json.rows.native.a, nativeOut);
      report('native mimalloc, (b)', 'ns/op', json.rows.native.b, nativeOut);
    }
    if (replayFiles.length > 0) {
      const table = replayTable('native mimalloc, replay: ns per event, min / median; overhead vs MI_SECURE=0 (min / median)', levels.map((l) => `level ${l}`), nativeOut);
      const reps = Number(opt('reps') ?? (quick ? 3 : 5));
      for (const f of replayFiles) {
        const name = path.basename(f).replace(/\.trace\.gz$/, '');
        const binFile = path.join(BUILD_DIR, 'traces', `${name}.bin`);
        const ev = opt('events') ?? (quick ? '300000' : null); // the same prefix as the JavaScript replays
        const evArgs = ev !== null ? [`events=${ev}`] : [];
        const res = levels.map(() => []);
        log(`native replay ${name}: ${reps} interleaved runs of MI_SECURE ${levels.join(', ')}`);
        for (let r = 0; r < reps; r++) for (let i = 0; i < levels.length; i++) res[i].push(run(replay, [binFile, ...evArgs], levels[i]).ns_per_event);
        table.add(name, res);
        json.rows.native.replay[name] = levels.map((l, i) => ({ level: l, samples: res[i] }));
      }
      table.end();
    }
  }
}


// ---- (a) and (b) --------------------------------------------------------------

if (workloads.includes('ab')) {
  const reps = Number(opt('reps') ?? (quick ? 3 : 15));
  const vs = [];
  for (const { level, Allocator, key } of configs) {
    const W = await import(`./lib/workload.js?config=${key}`);
    // one allocator per workload, as in bench/micro.js: (b)'s random frees would scatter (a)'s free lists
    const a = Allocator.create({ size: 256 * 2 ** 20, secure: level });
    const b = Allocator.create({ size: 256 * 2 ** 20, secure: level });
    const sizes = W.makeSizesA();
    const ptrs = new Uint32Array(PARAMS.a_blocks);
    const tables = W.makeTablesB();
    const live = new Uint32Array(tables.fill.length);
    W.fillB(b, tables, live);
    const st = { tables, live, cursor: 0 };
    for (let i = 0; i < 20; i++) W.runA(a, sizes, ptrs.length, PARAMS.a_tables, 100, ptrs); // warm-up: optimised code
    W.runB(b, st, 300_000);
    vs.push({ level, a, b, W, sizes, ptrs, st, ra: [], rb: [] });
  }
  log(`(a), (b): ${reps} interleaved reps of ${configs.map((c) => c.label).join(', ')}`);
  const roundsA = quick ? 100 : 1000;
  const stepsB = quick ? 100_000 : 500_000;
  for (let r = 0; r < reps; r++) {
    for (const v of vs) v.ra.push((v.W.runA(v.a, v.sizes, v.ptrs.length, PARAMS.a_tables, roundsA, v.ptrs) * 1e6) / (roundsA * 2 * v.ptrs.length));
    for (const v of vs) v.rb.push((v.W.runB(v.b, v.st, stepsB) * 1e6) / (2 * stepsB));
  }
  report(`(a) malloc ${vs[0].ptrs.length} blocks of 8..207 B, free them in order; ns per malloc or free`, 'ns/op', vs.map((v) => v.ra));
  report('(b) 100,000 live blocks, free a random one and malloc a new one in its slot; ns per malloc or free', 'ns/op', vs.map((v) => v.rb));
  json.rows.a = vs.map((v, i) => ({ config: configs[i].label, level: v.level, samples: v.ra }));
  json.rows.b = vs.map((v, i) => ({ config: configs[i].label, level: v.level, samples: v.rb }));
}

// ---- replay -------------------------------------------------------------------

if (workloads.includes('replay')) {
  if (!existsSync(TRACES)) {
    out.push(`replay: skipped, no traces at ${TRACES} (put them there, or pass --traces=DIR or set MIMALLOC_TRACES)`, '');
  } else {
    const files = replayFiles.map((f) => path.basename(f));
    const reps = Number(opt('reps') ?? (quick ? 3 : 5));
    const maxEvents = Number(opt('events') ?? (quick ? 300_000 : Infinity));
    const cores = [];
    for (const c of configs) cores.push(await import(`./lib/replay-core.js?config=${c.key}`));
    const table = replayTable(`replay: ns per event, min / median of the reps; overhead vs ${configs[0].label} (min / median)`, configs.map((c) => c.label));
    json.rows.replay = {};
    for (const file of files) {
      const { binFile } = await ensureBin(path.join(TRACES, file), BUILD_DIR);
      const name = file.replace(/\.trace\.gz$/, '');
      const tr = readBin(binFile, { maxEvents, name });
      const res = configs.map(() => []);
      log(`replay ${name}: ${tr.events.toLocaleString('en-US')} events, ${reps} interleaved reps of ${configs.map((c) => c.label).join(', ')}`);
      const live = new Uint32Array(tr.objects + 1);
      for (let r = 0; r < reps; r++) {
        for (let i = 0; i < configs.length; i++) {
          const a = configs[i].Allocator.create({ size: 512 * 2 ** 20, secure: configs[i].level });
          const mem = { u8: a.u8, u32: a.u32, refresh() {} };
          const t = performance.now();
          const e = cores[i].replayRange(a, mem, tr, live, 0, tr.events);
          res[i].push(((performance.now() - t) * 1e6) / tr.events);
          if (e !== tr.events) throw new Error(`${name}: ${configs[i].label}: out of memory at event ${-e - 1}`);
          cores[i].freeAll(a, live, tr.objects);
        }
      }
      table.add(name, res);
      json.rows.replay[name] = configs.map((c, i) => ({ config: c.label, level: c.level, samples: res[i] }));
    }
    table.end();
  }
}

out.push(...nativeOut);

const c1 = cpuTicks();
const busy = c0 && c1 ? Math.max(0, c1.busy - c0.busy - (c1.self - c0.self)) : 0;
out.push(`total time ${((performance.now() - t0) / 1e3).toFixed(1)} s; CPU ticks used by other processes during the run: ${busy}`);
console.log(out.join('\n'));
mkdirSync(path.join(BENCH_DIR, 'results'), { recursive: true });
writeFileSync(path.join(BENCH_DIR, 'results', 'secure.json'), JSON.stringify(json, null, 1));
console.log('raw samples in bench/results/secure.json');
