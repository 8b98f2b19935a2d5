// Workload definitions shared by every JavaScript peer of bench/micro.js.
// (a) churn, (b) random replacement in a large live set, (d) realloc-grow; the
// (c) scaling run reuses (a).
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
  d_buffers: 64, // (d): live growing buffers, advanced round-robin
  d_start: 16, // (d): a buffer starts as malloc(d_start) ...
  d_step_min: 16, // ... and grows by realloc in steps of d_step_min .. d_step_min + d_step_span - 1 (16..64) bytes
  d_step_span: 49,
  d_max: 65536, // ... up to d_max bytes (a step past it frees the buffer and restarts it at d_start)
  d_table: 1 << 16, // (d): pre-generated step sizes, used cyclically (power of two)
  seed_d: 0xc2b2ae35,
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

/** (d): the step sizes (d_step_min .. d_step_min + d_step_span - 1), used cyclically. */
export function makeStepsD(p = PARAMS) {
  if (p.d_table & (p.d_table - 1)) throw new Error('d_table must be a power of two');
  const next = xorshift32(p.seed_d);
  const inc = new Uint8Array(p.d_table);
  for (let i = 0; i < inc.length; i++) inc[i] = p.d_step_min + (next() % p.d_step_span);
  return inc;
}

/**
 * (d) state: d_buffers buffers, each malloc(d_start) and then grown by
 * realloc (untimed) until it holds >= k * d_max / d_buffers bytes (k = its
 * index), so the buffers are spread over their life instead of growing in
 * lockstep. Each buffer's first and last 8 bytes are written after every
 * malloc/realloc, as in runD. `view()` returns a DataView over the peer's
 * current memory (a wasm memory's buffer changes when it grows).
 */
export function initD(al, inc, p, view) {
  const K = p.d_buffers;
  const mask = inc.length - 1;
  const st = {
    inc, view, dv: view(), max: p.d_max, start: p.d_start,
    ptr: new Uint32Array(K), size: new Uint32Array(K),
    cursor: 0, slot: 0, reallocs: 0, restarts: 0, moved: 0,
  };
  let c = 0;
  for (let k = 0; k < K; k++) {
    let n = p.d_start;
    let q = al.malloc(n);
    if (q === 0) throw new Error('(d): malloc returned 0 (out of memory?)');
    const target = Math.floor((k * p.d_max) / K);
    for (;;) {
      writeEnds(st, q, n, c);
      if (n >= target) break;
      n += inc[c++ & mask];
      q = al.realloc(q, n);
      if (q === 0) throw new Error('(d): realloc returned 0 (out of memory?)');
    }
    st.ptr[k] = q;
    st.size[k] = n;
  }
  st.cursor = c;
  return st;
}

function writeEnds(st, q, n, v) {
  try {
    st.dv.setFloat64(q, v, true);
    st.dv.setFloat64(q + n - 8, v, true);
  } catch {
    st.dv = st.view();
    st.dv.setFloat64(q, v, true);
    st.dv.setFloat64(q + n - 8, v, true);
  }
}

/**
 * (d): `steps` x advance the next buffer (round-robin): grow it by the next
 * step size with realloc, or, when that would pass d_max, free it and start
 * it again with malloc(d_start); then write its first and last 8 bytes.
 * Counts per call in st.reallocs, st.restarts (one free + one malloc each)
 * and st.moved (reallocs that returned a new address). Returns elapsed ms.
 */
export function runD(al, st, steps) {
  const { inc, ptr, size, max, start } = st;
  const K = ptr.length;
  const mask = inc.length - 1;
  let dv = st.dv;
  let c = st.cursor;
  let j = st.slot;
  let reallocs = 0;
  let restarts = 0;
  let moved = 0;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    const p0 = ptr[j];
    let n = size[j] + inc[c & mask];
    let q;
    if (n > max) {
      al.free(p0);
      n = start;
      q = al.malloc(n);
      restarts++;
    } else {
      q = al.realloc(p0, n);
      reallocs++;
      if (q !== p0) moved++;
    }
    if (q === 0) throw new Error(`(d): ${n === start ? 'malloc' : 'realloc'} returned 0 (out of memory?)`);
    ptr[j] = q;
    size[j] = n;
    try {
      dv.setFloat64(q, c, true);
      dv.setFloat64(q + n - 8, c, true);
    } catch {
      // the memory grew (wasm: the old ArrayBuffer is detached); any other error recurs
      dv = st.dv = st.view();
      dv.setFloat64(q, c, true);
      dv.setFloat64(q + n - 8, c, true);
    }
    c++;
    if (++j === K) j = 0;
  }
  const t = performance.now() - t0;
  st.cursor = c;
  st.slot = j;
  st.reallocs = reallocs;
  st.restarts = restarts;
  st.moved = moved;
  return t;
}

/**
 * (d), untimed: the same pattern on separate buffers with checks: after
 * every realloc the block is 8-byte aligned and inside the memory, and the
 * first 8 bytes and the 8 bytes that ended the old size are what was written
 * there; at the end the live buffers do not overlap. Frees them. Throws on
 * failure.
 */
export function validateD(al, inc, p, view, memBytes, steps = 4 * p.d_buffers * Math.ceil(p.d_max / (p.d_step_min + p.d_step_span / 2))) {
  const st = initD(al, inc, p, view);
  const K = p.d_buffers;
  const mask = inc.length - 1;
  const limit = () => (typeof memBytes === 'function' ? memBytes() : memBytes);
  let c = st.cursor;
  for (let i = 0; i < steps; i++) {
    const j = i % K;
    const p0 = st.ptr[j];
    const n0 = st.size[j];
    let n = n0 + inc[c & mask];
    let q;
    if (n > p.d_max) {
      al.free(p0);
      n = p.d_start;
      q = al.malloc(n);
    } else {
      st.dv = view();
      const head = st.dv.getFloat64(p0, true);
      const tail = st.dv.getFloat64(p0 + n0 - 8, true);
      q = al.realloc(p0, n);
      if (q === 0) throw new Error(`(d) validation: realloc(${p0}, ${n}) returned 0`);
      st.dv = view();
      const h = st.dv.getFloat64(q, true);
      const t = st.dv.getFloat64(q + n0 - 8, true);
      if (h !== head || t !== tail)
        throw new Error(`(d) validation: realloc(${p0}, ${n0} -> ${n}) -> ${q} lost data (first 8 B ${h} vs ${head}, old last 8 B ${t} vs ${tail})`);
    }
    if (q === 0) throw new Error(`(d) validation: malloc(${n}) returned 0`);
    q >>>= 0;
    if (q % 8 !== 0) throw new Error(`(d) validation: address ${q} is not 8-byte aligned`);
    const lim = limit();
    if (lim && q + n > lim) throw new Error(`(d) validation: block ${q}+${n} is outside the memory`);
    st.ptr[j] = q;
    st.size[j] = n;
    st.dv = view();
    writeEnds(st, q, n, c + 0.5);
    c++;
  }
  const blocks = [...st.ptr].map((q, k) => [q, st.size[k]]).sort((x, y) => x[0] - y[0]);
  for (let i = 0; i + 1 < blocks.length; i++)
    if (blocks[i][0] + blocks[i][1] > blocks[i + 1][0])
      throw new Error(`(d) validation: buffers ${blocks[i][0]}+${blocks[i][1]} and ${blocks[i + 1][0]} overlap`);
  for (const q of st.ptr) al.free(q);
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
