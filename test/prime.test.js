// src/prime.ts: the first allocator of a mode in a thread runs every path on a scratch buffer
// first, so that V8's optimized code has feedback for the rare paths and does not deoptimize
// when a program first meets them. The sequence must itself be correct in every mode (a failure
// there is swallowed at create, so it is tested strictly here), and it must have the effect.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { primeMode } from '../dist/prime.js';

const MODES = [{}, { checkFree: false }, { secure: 1 }, { secure: 2 }, { secure: 3 }, { secure: 4 }, { shared: false }, { secure: 4, shared: false }];

for (const mode of MODES) {
  test(`${JSON.stringify(mode)}: the priming sequence frees everything it allocates, detaches its second agent and leaves a heap check() accepts`, () => {
    const a = primeMode(mode);
    const s = a.stats();
    assert.equal(s.used, 0);
    assert.equal(s.blocks, 0);
    assert.equal(s.agents, 1, 'the second agent detached');
    if (mode.checkFree !== false) a.check();
    a.detach();
  });
}

test('primed, the rare paths do not deoptimize the hot ones (--trace-deopt in a child: without priming they do)', (t) => {
  const child = fileURLToPath(new URL('./lib/prime-child.mjs', import.meta.url));
  const deopts = (entry) => {
    const r = spawnSync(process.execPath, ['--trace-deopt', child, fileURLToPath(new URL(entry, import.meta.url))], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const rare = r.stdout.slice(r.stdout.indexOf('--- rare paths ---'), r.stdout.indexOf('--- end ---'));
    return [...rare.matchAll(/deoptimizing \S+ <JSFunction (\w+)/g)].map((m) => m[1]);
  };
  const unprimed = deopts('../dist/allocator.js'); // (prime.ts is loaded by index.js only)
  if (!unprimed.includes('allocSize') && !unprimed.includes('mallocGeneric')) {
    // this V8 does not deoptimize there even unprimed: nothing to compare (say so rather than pass silently)
    t.skip(`this V8 does not deoptimize the unprimed paths (${unprimed.join(', ')})`);
    return;
  }
  const primed = deopts('../dist/index.js');
  const ours = new Set(['malloc', 'free', 'mallocGeneric', 'allocSize', 'freeGeneric', 'findPage', 'freshPage', 'popBlock', 'realloc', 'allocHuge']);
  assert.deepEqual(primed.filter((f) => ours.has(f)), [], `unprimed: ${unprimed.join(', ')}`);
});
