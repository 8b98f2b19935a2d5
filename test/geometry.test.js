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
