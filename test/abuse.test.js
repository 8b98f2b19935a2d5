// Abuse: a seeded random mix of valid and invalid calls (>= 20,000) from two agents, and a
// fast-check property over the same operation language, against a model (test/abuse/runner.js).
// Asserted at every call (the README's error contract, DESIGN.md §3-4):
//  - free/realloc/usableSize/expand of an address that is not a live block: exactly one report,
//    EINVAL, or EAGAIN for a freed block whose memory was not handed out again (double free,
//    whichever agent freed it first); the two documented exceptions only (a never-allocated
//    address exactly on a free block's start in a page in use may be EAGAIN; a freed singleton
//    block may be EINVAL); the call is a no-op (free → undefined, realloc/usableSize/expand → 0),
//    or with the default handler it throws AllocatorError with that .code and .address;
//  - wrong types → TypeError, impossible numbers → RangeError, thrown before any change (no
//    report, stats unchanged, the block involved intact);
//  - sizes >= 2^31 → 0 + ENOMEM, calloc overflow → 0 + EOVERFLOW, never a throw;
//  - no live block loses a byte (a sample every step, every block at checkpoints and at the end),
//    no two live blocks overlap, check() passes every 500 ops and at the end, stats().used is the
//    live blocks' size after collect(), and the drained heap is empty;
//  - debug mode: the leak report B prints at detach() (captured, not printed) names B's live
//    blocks, and no other detach prints anything.
//
// Environment: ABUSE_OPS (default 20000), ABUSE_SEED, ABUSE_FC_RUNS, ABUSE_FC_SEED.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AbuseRun, genOps, MiB } from './abuse/runner.js';
import { makeRng } from './abuse/rng.js';

/**
 * Allocator modes the whole suite runs under: `opts` is spread into Allocator.create. A mode
 * whose addresses are not reproducible run to run (randomised free lists) sets
 * `deterministic: false`: the two handler runs are then not compared call by call.
 */
export const MODES = [
  { name: 'default', opts: {} },
  { name: 'debug', opts: { debug: true } },
  { name: 'secure 4', opts: { secure: 4 }, deterministic: false },
  { name: 'debug + secure 4', opts: { debug: true, secure: 4 }, deterministic: false },
];

const OPS = Number(process.env.ABUSE_OPS ?? 20000);
const SEED = Number(process.env.ABUSE_SEED ?? 0xab05e);
const FC_RUNS = Number(process.env.ABUSE_FC_RUNS ?? 800);
const FC_SEED = Number(process.env.ABUSE_FC_SEED ?? 0x5eed);

function assertNoMismatch(run) {
  if (run.mismatches.length === 0) return;
  assert.fail(`[${run.label}] ${run.mismatches.length} calls answered against the contract, by class:\n${run.summary()}`);
}

/** The run exercised what this file claims to test. */
function assertCoverage(run) {
  if (OPS < 10000) return;
  const c = run.counts;
  const min = {
    'invalid freed': 800, // double free / realloc / usableSize / expand of a freed block
    'double free by the other agent': 200,
    'invalid liveInterior': 600,
    'invalid freedInterior': 150,
    'invalid none': 400, // never allocated (random, free slices, unaligned)
    'invalid header': 100,
    'invalid outside': 100,
    'hidden start or below': 20,
    'argument TypeError': 150,
    'argument RangeError': 150,
    'no memory ENOMEM': 150,
    'no memory EOVERFLOW': 30,
    'cross-agent free': 500,
    'double free of a singleton block': 3,
    rotate: 5,
  };
  for (const [k, n] of Object.entries(min)) {
    if (!((c[k] ?? 0) >= n * (OPS / 20000))) assert.fail(`[${run.label}] only ${c[k] ?? 0} × ${k} (want >= ${n}); counts ${JSON.stringify(c)}`);
  }
  assert.ok((c['ENOMEM for a valid size'] ?? 0) <= 20, `too many ENOMEM for valid sizes: ${c['ENOMEM for a valid size']}`);
  if (run.mode.opts.debug === true && !((c['leak report at detach'] ?? 0) >= 20 * (OPS / 20000))) {
    assert.fail(`[${run.label}] only ${c['leak report at detach'] ?? 0} leak reports at detach checked (want >= 20); counts ${JSON.stringify(c)}`);
  }
}

for (const mode of MODES) {
  describe(`abuse [${mode.name}]`, () => {
    let recordLog = null;

    test(`seeded mix of ${OPS} valid and invalid operations, two agents, recording handler`, () => {
      const run = new AbuseRun({ mode, handler: 'record', collectMismatches: true });
      run.runOps(genOps(makeRng(SEED), OPS));
      run.drain();
      recordLog = run.log;
      assertCoverage(run);
      assertNoMismatch(run);
    });

    test('the same sequence with the default handler: AllocatorError with the same .code', () => {
      const run = new AbuseRun({ mode, handler: 'throw', collectMismatches: true });
      run.runOps(genOps(makeRng(SEED), OPS));
      run.drain();
      assertCoverage(run);
      if (recordLog !== null && mode.deterministic !== false) {
        const n = Math.max(recordLog.length, run.log.length);
        for (let i = 0; i < n; i++) {
          if (recordLog[i] !== run.log[i]) {
            assert.fail(`report ${i} differs: recording handler "${recordLog[i]}", default handler "${run.log[i]}"`);
          }
        }
      }
      assertNoMismatch(run);
    });

    test(`fast-check: the same operation language, shrinking (${FC_RUNS} runs)`, () => {
      const opArb = fc.tuple(fc.nat(999), fc.nat(4), fc.nat(), fc.nat(), fc.nat());
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 200 }), fc.boolean(), (ops, throwMode) => {
          const run = new AbuseRun({
            mode, handler: throwMode ? 'throw' : 'record', heap: 16 * MiB, liveLimit: 4 * MiB, checkEvery: 50,
            label: `${mode.name}/fast-check/${throwMode ? 'throw' : 'record'}`,
          });
          run.runOps(ops);
          run.drain();
        }),
        { numRuns: FC_RUNS, seed: FC_SEED, includeErrorInReport: true },
      );
    });
  });
}

describe('the abuse runner fails when it should', () => {
  // Faults injected into the runner's view, to show its key assertions are live.
  const ops = genOps(makeRng(7), 1500);
  // wrong codes are collected (the allocator's own contract breaks must not stop these runs)
  const tryRun = (patch) => {
    const run = new AbuseRun({ heap: 16 * MiB, liveLimit: 4 * MiB, checkEvery: 100, collectMismatches: true });
    patch(run);
    run.runOps(ops);
    run.drain();
    return run;
  };

  test('a wrong expected code (EINVAL for a double free) is caught', () => {
    const run = tryRun((r) => {
      const allowed = r.allowed.bind(r);
      r.allowed = (c, x) => (c.kind === 'freed' ? ['EINVAL'] : allowed(c, x));
    });
    assert.ok(run.mismatches.filter((m) => /\[freed of .*got EAGAIN, expected EINVAL/.test(m.msg)).length > 50, run.summary());
  });

  test('a lost byte of a live block is caught', () => {
    assert.throws(() => tryRun((run) => {
      const exec = run.exec.bind(run);
      run.exec = (op) => {
        exec(op);
        if (run.step === 700) { const p = run.live.at(0); run.a.u8[p + run.byAddr.get(p).u - 1] ^= 0xff; }
      };
    }), /lost byte/);
  });

  test('an invalid free accepted silently is caught', () => {
    assert.throws(() => tryRun((run) => {
      const b = run.agents[1];
      const free = b.free.bind(b);
      let swallowed = 0;
      b.free = (p) => { if (run.classify(p).kind === 'freed' && swallowed++ === 0) return undefined; return free(p); };
    }), /accepted without a report/);
  });

  test('an argument error turned into a report is caught', () => {
    assert.throws(() => tryRun((run) => {
      const a = run.agents[0];
      const usable = a.usableSize.bind(a);
      a.usableSize = (p) => (typeof p !== 'number' ? 0 : usable(p));
    }), /returned 0, expected TypeError/);
  });
});
