// Workload definitions shared by every JavaScript peer of bench/micro.js.
//
// The PRNG (xorshift32), the seeds and the order in which the tables are
// generated match bench/peers/native_micro.c exactly, so every allocator sees
// the same request sequence. All tables are generated before timing starts.

/** Parameters shared by all peers (and passed to the native program). */
export const PARAMS = Object.freeze({
  a_blocks: 1000, // (a): blocks allocated per round, then freed in allocation order
  a_tables: 8, // (a): round r uses size run r % a_tables
  size_min: 8, // sizes are size_min .. size_min + size_span - 1 (8..207)
  size_span: 200,
  b_live: 100_000, // (b): live blocks
  b_table: 1 << 20, // (b): pre-generated (slot, size) pairs, used cyclically
  seed_a: 0x12345678,
  seed_b_fill: 0x9e3779b9,
  seed_b_steps: 0x85ebca6b,
  reps: 11, // timed repetitions per measurement (median reported)
  warmup: 2, // untimed repetitions after calibration ...
  warmup_ms: 250, // ... and at least this long
  c_reps: 8, // (c): timed 1-worker reps and as many 2-worker reps, interleaved S D D S ...
  target_ms: 60, // calibrated duration of one timed repetition
  c_target_ms: 100, // per-worker duration of one repetition in (c)
  passes: 3, // (a)/(b): each peer is run this many times, interleaved; samples pooled
  c_passes: 2, // (c): likewise
});

/** xorshift32 (Marsaglia 2003), returns uint32. */
export function xorshift32(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

/** (a): a_tables consecutive runs of a_blocks sizes. */
export function makeSizesA(p = PARAMS) {
  const next = xorshift32(p.seed_a);
  const sizes = new Uint32Array(p.a_blocks * p.a_tables);
  for (let i = 0; i < sizes.length; i++) sizes[i] = p.size_min + (next() % p.size_span);
  return sizes;
}

/** (b): initial sizes of the live set, and the (slot, size) step table. */
export function makeTablesB(p = PARAMS) {
  let next = xorshift32(p.seed_b_fill);
  const fill = new Uint32Array(p.b_live);
  for (let i = 0; i < fill.length; i++) fill[i] = p.size_min + (next() % p.size_span);
  next = xorshift32(p.seed_b_steps);
  const slot = new Uint32Array(p.b_table);
  const size = new Uint32Array(p.b_table);
  for (let i = 0; i < p.b_table; i++) {
    slot[i] = next() % p.b_live;
    size[i] = p.size_min + (next() % p.size_span);
  }
  return { fill, slot, size };
}

/**
 * (a): `rounds` x (malloc a_blocks blocks, free them in allocation order).
 * `al` is anything with malloc(n) -> address (0 = failure) and free(p).
 * Returns elapsed milliseconds.
 */
export function runA(al, sizes, nblocks, ntables, rounds, ptrs) {
  const t0 = performance.now();
  for (let r = 0; r < rounds; r++) {
    const base = (r % ntables) * nblocks;
    for (let i = 0; i < nblocks; i++) {
      const p = al.malloc(sizes[base + i]);
      if (p === 0) throw new Error('malloc returned 0 (out of memory?)');
      ptrs[i] = p;
    }
    for (let i = 0; i < nblocks; i++) al.free(ptrs[i]);
  }
  return performance.now() - t0;
}

/** (b) state: the live set plus a cursor into the step table. */
export function fillB(al, tables, live) {
  const t0 = performance.now();
  const fill = tables.fill;
  for (let i = 0; i < fill.length; i++) {
    const p = al.malloc(fill[i]);
    if (p === 0) throw new Error('malloc returned 0 (out of memory?)');
    live[i] = p;
  }
  return performance.now() - t0;
}

/** (b): `steps` x (free a random live slot, malloc a new block into it). */
export function runB(al, st, steps) {
  const { slot, size } = st.tables;
  const live = st.live;
  const mask = slot.length - 1;
  let c = st.cursor;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    const k = c & mask;
    const j = slot[k];
    al.free(live[j]);
    const p = al.malloc(size[k]);
    if (p === 0) throw new Error('malloc returned 0 (out of memory?)');
    live[j] = p;
    c++;
  }
  const t = performance.now() - t0;
  st.cursor = c;
  return t;
}

/**
 * Grow the count until one run takes >= target/8 ms, then scale it so one
 * run takes about `target` ms (same rule as native_micro.c).
 */
export function calibrate(run, start, target) {
  let n = start;
  let t;
  for (;;) {
    t = run(n);
    if (t >= target / 8 || n >= 2 ** 28) break;
    n *= t < target / 64 ? 8 : 2;
  }
  return Math.max(1, Math.floor((n * target) / Math.max(t, 1e-3)));
}

export function median(v) {
  const t = [...v].sort((x, y) => x - y);
  const n = t.length;
  return n % 2 ? t[n >> 1] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/** (c) schedule: n solo ('S') and n duo ('D') reps in ABBA order. */
export function scheduleC(n) {
  const s = [];
  for (let i = 0; i < 2 * n; i++) s.push(i % 4 === 0 || i % 4 === 3 ? 'S' : 'D');
  return s;
}

/**
 * Reusable barrier for `n` agents over an Int32Array on a SharedArrayBuffer
 * (ctrl[0] = arrivals, ctrl[1] = generation). Spins briefly, then waits.
 */
export function barrier(ctrl, n) {
  const gen = Atomics.load(ctrl, 1);
  if (Atomics.add(ctrl, 0, 1) === n - 1) {
    Atomics.store(ctrl, 0, 0);
    Atomics.add(ctrl, 1, 1);
    Atomics.notify(ctrl, 1);
    return;
  }
  for (let spin = 0; spin < 100_000; spin++) if (Atomics.load(ctrl, 1) !== gen) return;
  while (Atomics.load(ctrl, 1) === gen) Atomics.wait(ctrl, 1, gen, 50);
}

/**
 * Allocate one run of (a) and check the blocks are non-NULL, 8-byte aligned,
 * inside the memory and do not overlap; then free them. Throws on failure.
 */
export function validate(al, sizes, nblocks, memBytes) {
  const ps = [];
  for (let i = 0; i < nblocks; i++) {
    const p = al.malloc(sizes[i]);
    if (p === 0) throw new Error(`validation: malloc(${sizes[i]}) returned 0`);
    ps.push([p >>> 0, sizes[i]]);
  }
  const limit = typeof memBytes === 'function' ? memBytes() : memBytes;
  const sorted = [...ps].sort((x, y) => x[0] - y[0]);
  for (let i = 0; i < sorted.length; i++) {
    const [p, n] = sorted[i];
    if (p % 8 !== 0) throw new Error(`validation: address ${p} is not 8-byte aligned`);
    if (limit && p + n > limit) throw new Error(`validation: block ${p}+${n} is outside the memory`);
    if (i + 1 < sorted.length && p + n > sorted[i + 1][0])
      throw new Error(`validation: blocks ${p}+${n} and ${sorted[i + 1][0]} overlap`);
  }
  for (const [p] of ps) al.free(p);
}
