// The single-agent replay loop of bench/replay.js (the C twin is
// bench/peers/native_replay.c; both must do the same work per event).
//
// `al` is one allocator with the mimalloc-ts method names:
//   malloc(n), calloc(count, size), mallocAligned(n, align), realloc(p, n), free(p)
// returning addresses (0 = NULL). `mem` gives the views the blocks are
// touched through: { u8, u32, refresh() } — refresh() re-creates the views
// after a wasm memory grew (its old buffer is then detached, length 0).
//
// Every event is replayed in file order (thread indices are ignored, so a
// cross-thread free is a local free). `live` (Uint32Array indexed by object
// id) holds the address of every live object. Each new block (m, c, a and
// the NEW side of r) is touched: one 32-bit word, the object id, every 64
// bytes of its first min(size, 4096) bytes (one byte for sizes 1..3).

import { OP_ALIGNED, OP_CALLOC, OP_FREE, OP_MALLOC } from './trace.js';

export const TOUCH_LIMIT = 4096;
export const TOUCH_STRIDE = 64;

/**
 * Replay events [from, to). Returns `to`, or -(i + 1) when the allocation of
 * event i returned NULL (the replay stops there; that event's object is not live).
 */
export function replayRange(al, mem, tr, live, from, to) {
  const op = tr.op;
  const id = tr.id;
  const old = tr.old;
  const size = tr.size;
  const align = tr.align;
  let u8 = mem.u8;
  let u32 = mem.u32;
  for (let i = from; i < to; i++) {
    const o = op[i];
    const k = id[i];
    if (o === OP_FREE) {
      al.free(live[k]);
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
      p = al.realloc(live[q], n);
      if (p !== 0) live[q] = 0;
    }
    if (p === 0) return -(i + 1);
    live[k] = p;
    if (n >= 4) {
      const lim = (n < TOUCH_LIMIT ? n : TOUCH_LIMIT) - 4;
      if (p + lim + 4 > u8.length) {
        mem.refresh();
        u8 = mem.u8;
        u32 = mem.u32;
      }
      for (let off = 0; off <= lim; off += TOUCH_STRIDE) u32[(p + off) >>> 2] = k;
    } else if (n > 0) {
      if (p >= u8.length) {
        mem.refresh();
        u8 = mem.u8;
        u32 = mem.u32;
      }
      u8[p] = k;
    }
  }
  return to;
}

/** Free every object still live (untimed end of a replay). Returns how many. */
export function freeAll(al, live, objects) {
  let freed = 0;
  for (let k = 1; k <= objects; k++) {
    const p = live[k];
    if (p !== 0) {
      al.free(p);
      live[k] = 0;
      freed++;
    }
  }
  return freed;
}
