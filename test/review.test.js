// Review findings (secure 4 padding check, overrun reports, realloc with a re-entrant
// handler, watch()'s exit listener). Each test demonstrates a bug: it fails on the code
// under review and should pass once the bug is fixed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Allocator } from '../dist/index.js';
import { MiB, recording } from './lib/helpers.js';

describe('review', () => {
  // README (secure mode, level 4): "A write even one byte past the request is EFAULT at that
  // free". When the request fills the block up to its padding (no slack: n + 8 is a block size),
  // the first byte past the request is the canary's low byte, which secure.ts canary() makes 0:
  // the classic off-by-one, a NUL terminator written at p[n], passes every check.
  for (const [n, mode] of [[24, { secure: 4 }], [56, { secure: 4 }], [1016, { secure: 4 }], [0, { secure: 4 }], [120, { secure: 4 }], [24, { debug: true }]]) {
    test(`${JSON.stringify(mode)}: malloc(${n}) (no slack): a NUL byte written at p + ${n} is EFAULT at its free`, () => {
      const { a, errors } = recording(16 * MiB, mode);
      for (let i = 0; i < 3; i++) a.free(a.malloc(n)); // the fast paths too
      const p = a.malloc(n);
      a.u8.fill(0x41, p, p + n);
      a.u8[p + n] = 0; // one byte past the request
      a.free(p);
      assert.equal(errors.length, 1, `no report: ${JSON.stringify(errors)}`);
      assert.equal(errors[0].code, 'EFAULT');
    });
  }

  // debug.ts checkPadding checks the slack before the canary, using the size word at pad + 4
  // even when the canary in front of it is broken. A contiguous overrun that runs through the
  // canary into the size word leaves a small, "valid" delta there: the report then names a
  // wrong size and blames a byte inside the request (the user's own data) as the first byte
  // written past the end.
  for (const mode of [{ secure: 4 }, { debug: true }]) {
    test(`${mode.debug ? 'debug' : 'secure 4'}: an 8-byte overrun through canary and size word names the real size and the first byte written`, () => {
      const { a, errors } = recording(16 * MiB, mode);
      const n = 56; // 56 + 8 = 64: no slack, the canary follows at once
      const p = a.malloc(n);
      a.u8.fill(3, p, p + n);
      a.u8.set([1, 2, 3, 4, 5, 0, 0, 0], p + n); // e.g. a 64-bit value stored one element past the end
      a.free(p);
      assert.equal(errors.length, 1, JSON.stringify(errors));
      const m = errors[0].message;
      assert.doesNotMatch(m, /of size 51/, m); // the size word now says 51
      assert.match(m, new RegExp(`(write after ${n + 1} bytes)|(first changed byte at offset ${n}\\))`), m);
    });
  }

  // free() documents that a handler which frees the reported block finds a consistent heap.
  // realloc reports an overrun before it changes anything, but then goes on with `p` as if it
  // were still live: setPadding writes a size word over the freed block's encoded free-list
  // link (the heap is corrupted: check() fails, later mallocs report "corrupted free list
  // entry" / "write after free"), the move frees p a second time, and the one overrun is
  // reported twice.
  for (const mode of [{ secure: 4 }, { debug: true }, { secure: 3 }]) {
    test(`${JSON.stringify(mode)}: realloc of an overrun block with a handler that frees the reported block leaves a consistent heap`, () => {
      const errors = [];
      let a;
      const onError = (code, message, address) => {
        errors.push(code);
        if (code === 'EFAULT' && errors.filter((c) => c === 'EFAULT').length === 1) a.free(address);
      };
      a = Allocator.create({ size: 16 * MiB, onError, ...mode });
      const p = a.malloc(56);
      a.u8.fill(3, p, p + 56);
      a.u8[p + 56] ^= 0x5a; // the canary's first byte (no slack)
      a.realloc(p, 2000);
      a.check(); // throws: "I3: ... corrupted localFree entry" (secure) / "D2: write after free" (debug)
      for (let i = 0; i < 50; i++) a.malloc(56);
      assert.deepEqual(errors.filter((c) => c === 'EFAULT'), ['EFAULT'], JSON.stringify(errors));
    });
  }

  // agents.ts watchWorker: the 'exit' listener calls reapThread, whose flushOverflows reports
  // the overflows found when the dead worker's pages go back to the buffer. With the default
  // handler (which throws) the AllocatorError escapes from an event listener: an uncaught
  // exception that kills the watching process. (releaseAgent and terminate() give the throw to
  // a caller or a rejected promise; the listener has no caller.)
  test('watch(worker): an overflow found when an exited worker is released does not crash the process (default handler)', { timeout: 30_000 }, () => {
    const dist = new URL('../dist/index.js', import.meta.url).href;
    const script = `
      import { Worker } from 'node:worker_threads';
      import { Allocator } from ${JSON.stringify(dist)};
      const a = Allocator.create({ size: 16 * 2 ** 20, secure: 3 });
      const src = \`
        Promise.all([import('node:worker_threads'), import(${JSON.stringify(dist)})]).then(([{ workerData }, { Allocator }]) => {
          const b = Allocator.attach(workerData);
          const p = b.malloc(24);
          b.u8[p + 24] ^= 0x5a; // an overrun into the canary (level 3: found when the page is returned)
          b.free(p);            // the page is emptied, kept (retired) by this agent
          process.exit(0);      // ends without detach()
        });\`;
      const w = new Worker(src, { eval: true, workerData: a.handle });
      a.watch(w);
      w.on('exit', () => setTimeout(() => console.log('survived'), 100));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /survived/);
  });
});

