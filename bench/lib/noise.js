// Noise accounting shared by bench/micro.js and bench/replay.js: how much CPU
// other processes took, and waiting until the machine is quiet. Linux only
// (/proc); elsewhere cpuTicks returns null and nothing is ever "disturbed".

import { readFileSync } from 'node:fs';
import os from 'node:os';

/** utime + stime of a running process, in ticks (0 when it is gone). */
export function procTicks(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ').map(Number);
    return f[11] + f[12];
  } catch {
    return 0;
  }
}

/**
 * CPU ticks used by the whole machine, and by this process with its
 * waited-for children (native runs) and the given running children (the JS
 * peers of bench/replay.js), to tell how much CPU other processes took.
 * null where /proc is missing.
 */
export function cpuTicks(pids = []) {
  try {
    const all = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const busy = all.reduce((a, b) => a + b, 0) - all[3] - (all[4] ?? 0); // minus idle, iowait
    const self = readFileSync('/proc/self/stat', 'utf8');
    const f = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number); // f[0] is field 3
    return { busy, self: f[11] + f[12] + f[13] + f[14] + pids.reduce((x, p) => x + procTicks(p), 0) }; // utime stime cutime cstime
  } catch {
    return null;
  }
}

/** Fraction of all CPUs that other processes kept busy over `ms` (while this process sleeps). */
export async function foreignBusy(ms) {
  const a = cpuTicks();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTicks();
  return a && b ? Math.max(0, b.busy - a.busy - (b.self - a.self)) / ((ms / 10) * os.cpus().length) : 0;
}

/** Wait until other processes use < 10% of the CPUs for 3 s in a row (at most `seconds`). */
export async function waitIdle(seconds) {
  const limit = Date.now() + 1000 * seconds;
  let quiet = 0;
  while (quiet < 3 && Date.now() < limit) quiet = (await foreignBusy(1000)) < 0.1 ? quiet + 1 : 0;
  return quiet >= 3;
}
