// What stats() costs to read (issue 12: ≤ 5 µs at any buffer size), against the walk of every
// page it replaced (dist/stats.js walkStats): a buffer of each size with 4 agents attached
// (in this thread), 100,000 live blocks of 16 B..4 KiB, some freed by another agent and not
// collected. µs per call: the median of 200 batches of 50 calls (the walk: 10 batches of 2), after 300 calls of warm-up. Usage: node bench/stats-read.js
import { performance } from 'node:perf_hooks';
import { Allocator } from '../dist/index.js';
import { walkStats } from '../dist/stats.js';

const sizes = (process.argv.find((a) => a.startsWith('--sizes='))?.slice(8) ?? '64M,1G,4G').split(',');
const bytes = (s) => Math.min(2 ** 32 - 65536, parseFloat(s) * (s.endsWith('G') ? 2 ** 30 : 2 ** 20));
const median = (xs) => xs.sort((x, y) => x - y)[xs.length >> 1];
/** µs per call: median over n samples of `batch` calls each (a single call is below the timer's resolution). */
function time(fn, n, batch) {
  for (let i = 0; i < 300; i++) fn();
  const t = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    for (let j = 0; j < batch; j++) fn();
    t.push((performance.now() - t0) / batch);
  }
  return median(t) * 1000;
}
console.log('| buffer | pages | tracked pages | stats() µs | walk µs |');
console.log('|---|--:|--:|--:|--:|');
for (const s of sizes) {
  const a = Allocator.create({ size: bytes(s) });
  const others = [1, 2, 3].map(() => Allocator.attach(a.handle));
  const all = [a, ...others];
  const ps = [];
  for (let i = 0; i < 100_000; i++) ps.push([all[i & 3], all[i & 3].malloc(16 + ((i * 7919) % 4080))]);
  for (let i = 0; i < ps.length; i += 7) all[(i + 1) & 3].free(ps[i][1]); // remote frees, not collected
  const st = a.stats();
  let tracked = 0;
  for (const x of all) tracked += a.arena.mem[x.ag.agentBase + 22];
  const us = time(() => a.stats(), 200, 50);
  const wus = time(() => walkStats(a.arena), 10, 2);
  console.log(`| ${s} | ${st.pages} | ${tracked} | ${us.toFixed(1)} | ${wus.toFixed(0)} |`);
}
