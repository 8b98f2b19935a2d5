// The stamping replay loop of the cold protocol (bench/lib/replay-cold-worker.js,
// which describes the stamps; the C twin is run_cold in
// bench/peers/native_replay.c). The worker imports this module twice: once
// for the measured replay, and once under another URL
// (replay-cold-loop.js?warm-up) for the synthetic warm-up on the throwaway
// instance, so that the two loops have separate code and type feedback. With
// one shared loop, its call sites saw the functions of two wasm instances
// (the warm-up's and the measured one's), turned polymorphic and lost V8's
// inlining of the JS->wasm call: dlmalloc-wasm and mimalloc-wasm measured
// 20-35% slower (geomean over the seven traces) than with separate loops.

import { OP_ALIGNED, OP_CALLOC, OP_FREE, OP_MALLOC, OP_NAMES, OP_REALLOC } from './trace.js';

const MARK = 0x5a;

/** Stamp object k of n bytes at p (n > 0). */
function stamp(u8, p, n, k) {
  u8[p] = k;
  if (n > 1) u8[p + 1] = k >>> 8;
  if (n > 2) u8[p + 2] = k >>> 16;
  if (n > 3) {
    u8[p + 3] = k >>> 24;
    if (n > 4) u8[p + n - 1] = (k & 0xff) ^ MARK;
  }
}

/** Do the first min(m, 4) bytes at p hold id k? (m > 0) */
function idOk(u8, p, m, k) {
  if (u8[p] !== (k & 0xff)) return false;
  if (m > 1 && u8[p + 1] !== ((k >>> 8) & 0xff)) return false;
  if (m > 2 && u8[p + 2] !== ((k >>> 16) & 0xff)) return false;
  return m < 4 || u8[p + 3] === k >>> 24;
}

/** Is object k of n bytes at p (n > 0) stamped as it was? */
function stampOk(u8, p, n, k) {
  return idOk(u8, p, n, k) && (n <= 4 || u8[p + n - 1] === ((k & 0xff) ^ MARK));
}

/** The error for event i; not inlined into the loop. */
function fail(ctx, tr, i, what, u8, p, n, k) {
  const o = tr.op[i];
  const got = [];
  if (u8 && n > 0) {
    for (let j = 0; j < Math.min(n, 4); j++) got.push(u8[p + j]);
    if (n > 4) got.push(`.. last ${u8[p + n - 1]}`);
  }
  const want = [k & 0xff, (k >>> 8) & 0xff, (k >>> 16) & 0xff, k >>> 24].slice(0, Math.min(n, 4)).join(' ') + (n > 4 ? ` .. last ${(k & 0xff) ^ MARK}` : '');
  const ev = `${ctx.where} event ${i + 1} (${OP_NAMES[o]} id ${tr.id[i]}${o === OP_REALLOC ? ` from id ${tr.old[i]}` : ''}${o !== OP_FREE ? `, ${tr.size[i]} bytes` : ''})`;
  const detail = u8 ? `: object ${k} (${n} bytes) at ${p}: read ${got.join(' ')}, stamped ${want}` : '';
  return new Error(`${ctx.peer} on ${ctx.trace}: ${ev}: ${what}${detail}`);
}

/**
 * Replay events [from, to) of `tr` on `al`, stamping and checking. live[k]:
 * address of live object k; sz[k]: its requested size. Throws on a stamp
 * mismatch or a NULL allocation.
 */
export function replayChunk(al, view, tr, live, sz, from, to, ctx) {
  const op = tr.op;
  const id = tr.id;
  const old = tr.old;
  const size = tr.size;
  const align = tr.align;
  let u8 = view.u8;
  for (let i = from; i < to; i++) {
    const o = op[i];
    const k = id[i];
    if (o === OP_FREE) {
      const p = live[k];
      const n = sz[k];
      if (n > 0) {
        if (p + n > u8.length) u8 = view.refresh();
        if (!stampOk(u8, p, n, k)) throw fail(ctx, tr, i, 'stamp changed before free', u8, p, n, k);
      }
      al.free(p);
      live[k] = 0;
      continue;
    }
    const n = size[i];
    let p;
    if (o === OP_MALLOC) p = al.malloc(n);
    else if (o === OP_CALLOC) p = al.calloc(1, n);
    else if (o === OP_ALIGNED) p = al.mallocAligned(n, align[i]);
    else {
      const q = old[i];
      const pq = live[q];
      const nq = sz[q];
      if (nq > 0) {
        if (pq + nq > u8.length) u8 = view.refresh();
        if (!stampOk(u8, pq, nq, q)) throw fail(ctx, tr, i, 'stamp changed before realloc', u8, pq, nq, q);
      }
      p = al.realloc(pq, n);
      if (p === 0 && n === 0) {
        // realloc(p, 0) may free and return NULL (C): object k is then an empty one
        live[q] = 0;
        live[k] = 0;
        sz[k] = 0;
        continue;
      }
      if (p === 0) throw fail(ctx, tr, i, 'realloc returned NULL');
      live[q] = 0;
      const m = nq < n ? nq : n;
      if (m > 0) {
        if (p + n > u8.length) u8 = view.refresh();
        if (!idOk(u8, p, m, q) || (nq > 4 && nq <= n && u8[p + nq - 1] !== ((q & 0xff) ^ MARK))) {
          throw fail(ctx, tr, i, `realloc did not keep the contents (${pq} -> ${p})`, u8, p, m, q);
        }
      }
    }
    if (p === 0) throw fail(ctx, tr, i, 'allocation returned NULL');
    live[k] = p;
    sz[k] = n;
    if (n > 0) {
      if (p + n > u8.length) u8 = view.refresh();
      stamp(u8, p, n, k);
    }
  }
}

/** Free every object still live, checking its stamp (untimed). Returns how many. */
export function freeAll(al, view, live, sz, objects, ctx) {
  let freed = 0;
  let u8 = view.refresh();
  for (let k = 1; k <= objects; k++) {
    const p = live[k];
    if (p === 0) continue;
    const n = sz[k];
    if (n > 0) {
      if (p + n > u8.length) u8 = view.refresh();
      if (!stampOk(u8, p, n, k)) {
        throw new Error(`${ctx.peer} on ${ctx.trace}: ${ctx.where} end: object ${k} (${n} bytes) at ${p}: stamp changed (final free)`);
      }
    }
    al.free(p);
    live[k] = 0;
    freed++;
  }
  return freed;
}
