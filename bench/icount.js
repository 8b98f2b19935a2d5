// Instructions per operation of the (a) and (b) loops, for one build of
// mimalloc-ts, under cachegrind: exact and repeatable where times on a shared
// VM are not (BENCHMARKS.md "Noise"). Compares builds and modes, not peers.
//
//   node bench/icount.js [--dist=DIR] [--workloads=ab] [--modes=default,secure4,nocheck]
//
// For each (workload, mode) it runs this file's child under
//   valgrind --tool=cachegrind --cache-sim=no node --no-concurrent-recompilation --single-threaded
// twice, with R and 3R rounds, and prints (I(3R) − I(R)) / (ops of 2R
// rounds): start-up, compilation and warm-up cancel. Needs valgrind.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PARAMS, makeSizesA, makeTablesB, runA } from './lib/workload.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const opt = (name, dflt) => argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;

const MODES = { default: {}, secure4: { secure: 4 }, nocheck: { checkFree: false } };

if (argv[0] === '--child') {
  // child: --child dist workload mode rounds
  const [, dist, workload, mode, roundsArg] = argv;
  const { Allocator } = await import(pathToFileURL(path.join(dist, 'index.js')).href);
  const a = Allocator.create({ size: 256 << 20, ...MODES[mode] });
  const rounds = Number(roundsArg);
  if (workload === 'a') {
    const sizes = makeSizesA();
    const ptrs = new Uint32Array(PARAMS.a_blocks);
    runA(a, sizes, PARAMS.a_blocks, PARAMS.a_tables, 50, ptrs); // warm-up: optimised before the counted part
    runA(a, sizes, PARAMS.a_blocks, PARAMS.a_tables, rounds, ptrs);
  } else {
    const { fill, slot, size } = makeTablesB();
    const live = new Uint32Array(PARAMS.b_live);
    for (let i = 0; i < live.length; i++) live[i] = a.malloc(fill[i]);
    const steps = (n) => {
      for (let i = 0; i < n; i++) {
        const k = i & (PARAMS.b_table - 1);
        const s = slot[k];
        a.free(live[s]);
        live[s] = a.malloc(size[k]);
      }
    };
    steps(200_000);
    steps(rounds * 1000);
  }
  process.exit(0);
}

const dist = path.resolve(opt('dist', path.join(here, '..', 'dist')));
const workloads = opt('workloads', 'ab').split('');
const modes = opt('modes', 'default,secure4').split(',');
const ROUNDS = 100; // (a): 100 rounds = 200,000 operations; (b): 100,000 steps = 200,000 operations

function instructions(workload, mode, rounds) {
  const dir = mkdtempSync(path.join(tmpdir(), 'icount-'));
  const out = path.join(dir, 'cg.out');
  const r = spawnSync('valgrind', ['--tool=cachegrind', '--cache-sim=no', `--cachegrind-out-file=${out}`,
    process.execPath, '--no-concurrent-recompilation', '--single-threaded', fileURLToPath(import.meta.url),
    '--child', dist, workload, mode, String(rounds)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`valgrind failed (${r.status}): ${r.stderr.slice(-500)}`);
  const summary = readFileSync(out, 'utf8').split('\n').find((l) => l.startsWith('summary:'));
  rmSync(dir, { recursive: true, force: true });
  void readdirSync;
  return Number(summary.split(/\s+/)[1]);
}

console.log(`instructions per operation (malloc or free), ${dist}`);
for (const w of workloads) {
  for (const m of modes) {
    const i1 = instructions(w, m, ROUNDS);
    const i3 = instructions(w, m, 3 * ROUNDS);
    const ops = 2 * ROUNDS * (w === 'a' ? 2 * PARAMS.a_blocks : 2 * 1000);
    console.log(`(${w}) ${m.padEnd(8)} ${((i3 - i1) / ops).toFixed(1)}`);
  }
}
