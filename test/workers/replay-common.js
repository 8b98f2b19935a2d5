// Helpers of test/replay.test.js and test/workers/replay-worker.js: locating
// the traces, per-object byte patterns, and a shadow map of live blocks.
// Plain ESM; nothing runs when this file is loaded.

import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tracesDir } from '../../bench/lib/trace.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The traces folder (../shared/traces next to the repository, or $MIMALLOC_TRACES) and whether it holds traces. */
export function findTraces() {
  const dir = tracesDir(REPO, []);
  const ok = existsSync(dir) && readdirSync(dir).some((f) => f.endsWith('.trace.gz'));
  return { dir, ok };
}

/**
 * The pattern byte of object `id` at byte `pos` of its block: never 0, and
 * different for neighbouring ids and positions.
 */
export function patByte(id, pos) {
  const h = Math.imul(id ^ Math.imul(pos + 1, 0x27d4eb2d), 0x9e3779b1);
  return ((h ^ (h >>> 15)) & 0xff) | 1;
}

/**
 * Pattern positions of a block of n requested bytes: its first and its last
 * min(4, n) bytes (overlapping for n < 8; none for n = 0). Calls fn(pos).
 */
export function forPatternPositions(n, fn) {
  const head = n < 4 ? n : 4;
  for (let j = 0; j < head; j++) fn(j);
  for (let j = Math.max(head, n - 4); j < n; j++) fn(j);
}

export function writePattern(u8, p, n, id) {
  forPatternPositions(n, (j) => {
    u8[p + j] = patByte(id, j);
  });
}

/**
 * Check the pattern of object `id` (n bytes requested) at address p,
 * restricted to positions < limit (realloc: the bytes that must have been
 * copied). Returns null, or a description of the first difference.
 */
export function checkPattern(u8, p, n, id, limit = n) {
  let bad = null;
  forPatternPositions(n, (j) => {
    if (bad === null && j < limit && u8[p + j] !== patByte(id, j)) {
      bad = `object ${id} (${n} bytes) at ${p}: byte ${j} is ${u8[p + j]}, expected ${patByte(id, j)}`;
    }
  });
  return bad;
}

/**
 * Shadow map: one Int32 per 8-byte granule of the buffer holding the id of
 * the live block covering it (0 = none). mark() fails when a granule is
 * already taken, i.e. when two live blocks overlap. With a shared Int32Array
 * and `atomic` the marks are compare-exchanges (several workers at once).
 */
export function makeShadow(shadow, atomic = false) {
  return {
    /** Returns null or the id of the live block found in [p, p + bytes). */
    mark(p, bytes, id) {
      const g0 = p >>> 3;
      const g1 = (p + Math.max(bytes, 1) + 7) >>> 3;
      for (let g = g0; g < g1; g++) {
        const prev = atomic ? Atomics.compareExchange(shadow, g, 0, id) : shadow[g];
        if (prev !== 0) {
          // undo what this call marked
          for (let h = g0; h < g; h++) shadow[h] = 0;
          return prev;
        }
        if (!atomic) shadow[g] = id;
      }
      return null;
    },
    /** Returns null, or a description when a granule of the block is not marked with id. */
    clear(p, bytes, id) {
      const g0 = p >>> 3;
      const g1 = (p + Math.max(bytes, 1) + 7) >>> 3;
      let bad = null;
      for (let g = g0; g < g1; g++) {
        const v = atomic ? Atomics.exchange(shadow, g, 0) : shadow[g];
        if (v !== id && bad === null) bad = `granule ${g} of object ${id} at ${p} is marked ${v}`;
        if (!atomic) shadow[g] = 0;
      }
      return bad;
    },
  };
}
