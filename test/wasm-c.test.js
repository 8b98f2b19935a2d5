// A C program compiled to wasm whose malloc, free, realloc and calloc are this allocator
// (create({ memory, base: __heap_base })): the module's data and stack lie below base and must
// be left alone, the memory grows when the program needs it, and the program's own checks of
// its blocks must pass. Needs clang and wasm-ld (Debian's clang, lld): skipped without them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Allocator } from '../dist/index.js';

const SRC = new URL('./wasm/list.c', import.meta.url).pathname;

function compile() {
  const dir = mkdtempSync(path.join(tmpdir(), 'mits-wasm-'));
  const out = path.join(dir, 'list.wasm');
  try {
    execFileSync('clang', ['--target=wasm32', '-O2', '-nostdlib', '-Wl,--no-entry', '-Wl,--export=run', '-Wl,--export=heap_base',
      '-Wl,--allow-undefined', '-Wl,--import-memory', '-o', out, SRC], { stdio: 'pipe' });
    return readFileSync(out);
  } catch {
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const wasm = compile();

for (const shared of [false]) { // (a shared memory needs a module built with atomics: growth.test.js covers shared memories)
  test(`a C program's malloc/free/realloc/calloc over its own ${shared ? 'shared ' : ''}memory, from __heap_base`, { skip: wasm === null && 'clang or wasm-ld is missing' }, async () => {
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 2000, shared });
    let al = null;
    const env = {
      memory,
      malloc: (n) => al.malloc(n),
      free: (p) => al.free(p),
      realloc: (p, n) => al.realloc(p, n),
      calloc: (c, n) => al.calloc(c, n),
    };
    const { instance } = await WebAssembly.instantiate(wasm, { env });
    const base = instance.exports.heap_base();
    const below = new Uint8Array(memory.buffer.slice(0, base)); // the module's data and stack, as it left them
    al = Allocator.create({ memory, base });
    for (const n of [10, 100_000, 300_000]) {
      const r = instance.exports.run(n);
      assert.equal(r, Number((BigInt(n) * BigInt(n - 1) / 2n) % 1000003n), `run(${n}): ${r} (negative: the program found a bad block)`);
    }
    assert.ok(memory.buffer.byteLength > 2 * 65536, 'the memory grew');
    assert.deepEqual(new Uint8Array(memory.buffer, 0, base).slice(0, base).filter((x, i) => x !== below[i]).length, 0, 'nothing below __heap_base changed but what the program itself wrote');
    al.check();
    assert.equal(al.stats().used, 0);
  });
}
