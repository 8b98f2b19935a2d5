// Page geometry in a bounded buffer (the page-geometry issue): a buffer is the whole
// address space, so what pages reserve must come back and be reused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../dist/index.js';
import { KiB, MiB } from './lib/helpers.js';

/** xorshift32 */
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) / 4294967296; };
}

test('a 32 MiB buffer holds 10 rounds of 6 MiB of blocks up to 256 KiB allocated in one agent and freed in another', () => {
  for (const secure of [0, 4]) {
    const a = Allocator.create({ size: 32 * MiB, secure });
    const b = Allocator.attach(a.handle);
    const r = rng(7 + secure);
    for (let round = 0; round < 10; round++) {
      const blocks = [];
      let bytes = 0;
      while (bytes < 6 * MiB) {
        const n = Math.max(1, Math.floor(Math.exp(r() * Math.log(256 * KiB)))); // log-uniform 1 B .. 256 KiB
        const p = a.malloc(n);
        assert.notEqual(p, 0, `secure ${secure}, round ${round}: malloc(${n}) returned NULL with ${bytes} bytes allocated this round (committed ${a.stats().committed})`);
        a.u8[p] = round;
        blocks.push(p);
        bytes += n;
      }
      for (const p of blocks) b.free(p); // every block freed by the other agent (remote frees)
    }
    b.detach();
    a.collect(true);
    assert.equal(a.stats().used, 0);
    a.check();
  }
});

// Utilization at the first NULL (bench:fill's measure, here without timing):
// live requested bytes when the first malloc of a 64 MiB buffer returns NULL,
// log-uniform sizes 1 B .. the row's largest, pattern "fill" (no frees) and
// "churn" (a random live block freed before 45% of the steps); one agent, and
// four agents of one thread allocating in turn (each keeps its own partly
// used pages, as four workers do). The floors are below this build's figures
// (BENCHMARKS.md "Page geometry", steps 2 to 5) by a few points: a fall under
// them is a regression of the geometry, not noise (the runs are seeded and
// deterministic). The goal is 90% in every row.
const FLOORS = { // largest → [one agent, four agents]
  [4 * KiB]: [0.83, 0.80],
  [64 * KiB]: [0.80, 0.75],
  [256 * KiB]: [0.82, 0.75],
  [MiB]: [0.81, 0.77],
};
function fillToNull(agents, largest, pattern, seed) {
  const state = agents.map((al, i) => ({ al, r: rng(seed * 31 + i), live: [], bytes: 0 }));
  const logMax = Math.log(largest + 1);
  for (;;) {
    for (const s of state) {
      if (pattern === 'churn' && s.r() < 0.45 && s.live.length > 0) {
        const i = Math.floor(s.r() * s.live.length);
        const [p, n] = s.live[i];
        s.live[i] = s.live[s.live.length - 1];
        s.live.pop();
        s.al.free(p);
        s.bytes -= n;
      }
      const n = Math.min(largest, Math.max(1, Math.floor(Math.exp(s.r() * logMax))));
      const p = s.al.malloc(n);
      if (p === 0) return state.reduce((t, x) => t + x.bytes, 0);
      s.live.push([p, n]);
      s.bytes += n;
    }
  }
}
for (const [largest, [floor1, floor4]] of Object.entries(FLOORS)) {
  test(`utilization at the first NULL, blocks up to ${largest / KiB} KiB: >= ${floor1 * 100}% with one agent, >= ${floor4 * 100}% with four`, () => {
    for (const pattern of ['fill', 'churn']) {
      for (const nagents of [1, 4]) {
        const a = Allocator.create({ size: 64 * MiB, onError: () => {} });
        const agents = [a];
        for (let i = 1; i < nagents; i++) agents.push(Allocator.attach(a.handle));
        const share = fillToNull(agents, Number(largest), pattern, 3) / (64 * MiB);
        const floor = nagents === 1 ? floor1 : floor4;
        assert.ok(share >= floor, `${pattern}, ${nagents} agent(s): ${(share * 100).toFixed(1)}% of 64 MiB live at the first NULL, floor ${floor * 100}%`);
        for (const al of agents.slice(1)) al.detach();
      }
    }
  });
}
