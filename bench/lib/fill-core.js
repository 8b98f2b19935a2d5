// The procedure of `node bench/fill.js` (fill a bounded region to the first
// NULL), shared by the main thread (one agent, every peer) and the workers of
// the 4-worker column (bench/lib/fill-worker.js).
//
// One step: with pattern "churn", first (with probability CHURN_FREE) free a
// live block chosen uniformly at random; then malloc a size drawn from the
// mix. The run ends at the first NULL (or when `stop[STOP]` is set by another
// worker). Every random number comes from one seeded xorshift32 stream and
// none depends on what the allocator returned, so every peer sees the same
// request sequence for a seed.

export const REGION = 64 * 1024 * 1024;
export const CHURN_FREE = 0.45;
export const PATTERNS = ['fill', 'churn'];

// ctl words of the 4-worker runs (Int32Array over a SharedArrayBuffer)
export const GO = 0; // set to 1 when every worker has attached: start
export const STOP = 1; // set to 1 by the first worker that gets NULL
export const RUNNING = 2; // workers past GO: each spins until all are, then starts
export const PROG = 4; // ctl[PROG + w]: steps worker w has begun (with a pacing window)
export const ctlWords = (nworkers) => PROG + nworkers;

/** xorshift32 (Marsaglia), state scrambled from the seed by splitmix32; returns u in [0, 1). */
export function makeRng(seed) {
  let z = (seed + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  let x = (z ^ (z >>> 16)) | 0;
  if (x === 0) x = 0x6d2b79f5;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

/** Seed of worker w (0-based) of a 4-worker run with base seed s: distinct from every 1-agent seed. */
export const workerSeed = (s, w) => (Math.imul(s, 1000003) + 7919 * (w + 1)) | 0;

/** A size in lo..hi (inclusive), log-uniform: floor(lo * ((hi+1)/lo)^u). */
function logUniform(rng, lo, hi) {
  const n = Math.floor(lo * Math.pow((hi + 1) / lo, rng()));
  return n > hi ? hi : n;
}

export const MIXES = {
  log: {
    label: 'log-uniform 1 B .. largest',
    make: (max) => (rng) => logUniform(rng, 1, max),
  },
  small: {
    label: '80% log-uniform 1 B .. 256 B, 20% log-uniform 1 B .. largest',
    make: (max) => (rng) => (rng() < 0.8 ? logUniform(rng, 1, 256) : logUniform(rng, 1, max)),
  },
};

export const fmtSize = (n) =>
  n >= 1 << 20 && n % (1 << 20) === 0 ? `${n / (1 << 20)} MiB` : n >= 1024 && n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`;

/**
 * Run the procedure on `al` (malloc(n) -> address, 0 = NULL; free(p)).
 * `limit`: addresses must satisfy p + n <= limit (a peer handing out memory
 * outside its region is an error, not a result). `stop`: optional Int32Array
 * whose word STOP ends the run when non-zero (checked before every step).
 * `pace`: optional { self, n, window } (with `stop` as the ctl array): worker
 * `self` of `n` publishes its step count in ctl[PROG + self] and does not
 * begin a step more than `window` steps ahead of the slowest worker (it
 * sleeps in short Atomics.wait()s, giving the CPU to the others), so on a
 * machine with fewer cores than workers every worker keeps allocating while
 * the others do, instead of whichever got a core filling the region alone.
 * Returns { live (requested bytes of live blocks), blocks, steps, mallocs,
 * frees, nullSize (the request that got NULL, or 0 when stopped), stopped }.
 */
export function runFill(al, { pattern, sizeOf, rng, limit, stop = null, pace = null }) {
  const churn = pattern === 'churn';
  if (!churn && pattern !== 'fill') throw new Error(`unknown pattern ${pattern}`);
  const addrs = [];
  const sizes = [];
  let live = 0;
  let steps = 0;
  let frees = 0;
  let nullSize = 0;
  let stopped = false;
  for (;;) {
    if (stop !== null && Atomics.load(stop, STOP) !== 0) {
      stopped = true;
      break;
    }
    steps++;
    if (pace !== null && !waitTurn(stop, pace, steps)) {
      steps--;
      stopped = true;
      break;
    }
    if (churn && rng() < CHURN_FREE && addrs.length > 0) {
      const i = Math.floor(rng() * addrs.length);
      al.free(addrs[i]);
      live -= sizes[i];
      const last = addrs.length - 1;
      addrs[i] = addrs[last];
      sizes[i] = sizes[last];
      addrs.pop();
      sizes.pop();
      frees++;
    }
    const n = sizeOf(rng);
    const p = al.malloc(n);
    if (p === 0) {
      nullSize = n;
      break;
    }
    if (!(p > 0) || p + n > limit) throw new Error(`malloc(${n}) returned ${p}: outside the region (limit ${limit})`);
    addrs.push(p);
    sizes.push(n);
    live += n;
  }
  if (live > limit) throw new Error(`live requested bytes ${live} exceed the region (${limit})`);
  return { live, blocks: addrs.length, steps, mallocs: addrs.length + frees, frees, nullSize, stopped };
}

/** Publish step `steps` of worker pace.self; wait while it is more than pace.window ahead of the slowest. False if STOP was set meanwhile. */
function waitTurn(ctl, pace, steps) {
  const { self, n, window } = pace;
  Atomics.store(ctl, PROG + self, steps);
  for (;;) {
    let min = steps;
    let lag = self;
    for (let w = 0; w < n; w++) {
      const s = Atomics.load(ctl, PROG + w);
      if (s < min) {
        min = s;
        lag = w;
      }
    }
    if (steps - min <= window) return true;
    if (Atomics.load(ctl, STOP) !== 0) return false;
    Atomics.wait(ctl, PROG + lag, min, 0.05);
  }
}
