// stats() reads counters (src/counters.ts), not the pages: they must agree with a walk of every
// page (walkStats, what stats() computed before) whenever no agent is in the middle of a call,
// after any mix of operations, remote frees, abandonment, reclaim, detach, release of a dead
// agent, growth and shrinking, in every mode, and across workers.

import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Allocator } from '../dist/index.js';
import { walkStats } from '../dist/stats.js';
import { Remote } from './workers/common.js';
import { MiB, asTerminated } from './lib/helpers.js';

const CMD = new URL('./workers/cmd-worker.js', import.meta.url);
afterEach(() => Remote.killAll());

const KEYS = ['used', 'blocks', 'pages', 'pagesBytes', 'smallPages', 'mediumPages', 'largePages', 'hugePages',
  'abandonedPages', 'capacityBytes', 'agents', 'reserved', 'committed', 'metadata'];

function agree(a, what) {
  const c = a.stats();
  const w = walkStats(a.arena);
  for (const k of KEYS) assert.equal(c[k], w[k], `${what}: stats().${k} ${c[k]}, a walk of the pages ${w[k]}`);
  assert.deepEqual(c.agentPages, w.agentPages, `${what}: agentPages`);
  return c;
}

function rng(seed) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
}

/** n random operations by the agents `as` over the shared pool of live blocks `live`. */
function churn(as, live, n, r) {
  for (let i = 0; i < n; i++) {
    const x = as[Math.floor(r() * as.length)];
    const t = r();
    if (t < 0.5 || live.length === 0) {
      const size = r() < 0.01 ? 600_000 + Math.floor(r() * 400_000) : r() < 0.1 ? 2000 + Math.floor(r() * 60_000) : 1 + Math.floor(r() * 1024);
      const u = r();
      const p = u < 0.05 ? x.mallocAligned(size, 64 << Math.floor(r() * 6)) : u < 0.1 ? x.calloc(1, size) : x.malloc(size);
      if (p !== 0) live.push(p);
    } else if (t < 0.6) {
      const k = Math.floor(r() * live.length);
      const p = x.realloc(live[k], 1 + Math.floor(r() * 3000));
      if (p !== 0) live[k] = p;
    } else {
      const k = Math.floor(r() * live.length);
      const p = live[k];
      live[k] = live[live.length - 1];
      live.pop();
      x.free(p);
    }
  }
}

describe('stats() counters agree with a walk of the pages', () => {
  for (const mode of [{}, { secure: 3 }, { debug: true }, { size: 1 << 20, maxSize: 128 * MiB }, { size: 2 * MiB, maxSize: 64 * MiB, shared: false, purgeDelay: 0 }]) {
    test(`one agent, then two, remote frees, detach, abandoned pages freed into, a dead agent released: ${JSON.stringify(mode)}`, () => {
      const a = Allocator.create({ size: 64 * MiB, ...mode });
      const r = rng(7);
      const live = [];
      churn([a], live, 4000, r);
      agree(a, 'one agent');
      if (mode.shared === false) { // one agent only: then everything freed, and the buffer shrinks
        for (const p of live.splice(0)) a.free(p);
        a.collect(true);
        churn([a], live, 200, r);
        agree(a, 'after a shrink');
        return;
      }
      const b = Allocator.attach(a.handle);
      churn([a, b], live, 8000, r);
      agree(a, 'two agents (remote frees pending)');
      a.collect();
      b.collect();
      agree(a, 'after collect');
      b.detach();
      agree(a, 'after detach: b\'s pages abandoned');
      churn([a], live, 3000, r);
      agree(a, 'a frees into and reclaims abandoned pages');
      const c = Allocator.attach(a.handle);
      churn([a, c], live, 3000, r);
      const s = agree(a, 'before c dies');
      assert.equal(a.releaseAgent(asTerminated(c)), true);
      const after = agree(a, 'after c was released');
      assert.equal(after.agentPages.length, s.agentPages.length - 1);
      for (const p of live.splice(0)) a.free(p);
      a.collect(true);
      const end = agree(a, 'everything freed');
      assert.equal(end.used, 0);
      assert.equal(end.blocks, 0);
      a.check();
    });
  }

  test('more pages touched than an agent tracks (TRACK_MAX): the folded and re-tracked pages still agree', () => {
    const a = Allocator.create({ size: 128 * MiB });
    const live = [];
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 30_000; i++) live.push(a.malloc(16 + 8 * (i % 1200))); // ~60 bins, hundreds of pages
      agree(a, `round ${round}: filled`);
      for (let i = live.length - 1; i >= 0; i -= 2) { a.free(live[i]); live.splice(i, 1); } // a free into every page: each tracked, many folds
      agree(a, `round ${round}: half freed`);
      for (let i = 0; i < 20_000; i++) live.push(a.malloc(16 + 8 * ((i * 7) % 1200))); // pages that were folded become direct again
      agree(a, `round ${round}: refilled`);
    }
    for (const p of live) a.free(p);
    assert.equal(agree(a, 'all freed').used, 0);
  });

  test('a dead worker\'s pages, with blocks the main thread freed into them: totals exclude them, its own used counts them', { timeout: 60_000 }, async () => {
    const a = Allocator.create({ size: 64 * MiB });
    const w = new Remote(CMD, { handle: a.handle });
    const sizes = Array.from({ length: 3000 }, (_, i) => 16 + 8 * (i % 300));
    const ps = await w.call('malloc', sizes);
    const id = await w.call('agentId');
    for (const p of ps.slice(0, 2000)) a.free(p); // remote frees the worker never collects
    await w.kill();
    const st = agree(a, 'worker killed');
    assert.ok(st.used >= sizes.slice(2000).reduce((t, n) => t + n, 0), 'the 1000 blocks still live');
    const e = st.agentPages.find((x) => x.agentId === id);
    assert.ok(e.used > st.used - a.stats().agentPages.find((x) => x.agentId === a.agentId).used, 'its used counts the uncollected frees too');
    assert.equal(a.releaseAgent(id), true);
    agree(a, 'after release');
    for (const p of ps.slice(2000)) a.free(p);
    a.collect(true);
    assert.equal(agree(a, 'all freed').used, 0);
  });

  test('four workers allocate, exchange and free at once: the counters agree once they are done', { timeout: 60_000 }, async () => {
    const a = Allocator.create({ size: 1 << 20, maxSize: 256 * MiB });
    const ws = [0, 1, 2, 3].map(() => new Remote(CMD, { handle: a.handle }));
    const sizes = Array.from({ length: 2000 }, (_, i) => 16 + 8 * ((i * 37) % 2500));
    const got = await Promise.all(ws.map((w) => w.call('malloc', sizes)));
    // each worker frees the next one's blocks (remote frees), all at once
    await Promise.all(ws.map((w, i) => w.call('free', got[(i + 1) % 4].slice(0, 1500))));
    agree(a, 'workers idle, remote frees pending');
    await Promise.all(ws.map((w) => w.close()));
    agree(a, 'workers detached');
    for (const g of got) for (const p of g.slice(1500)) a.free(p);
    a.collect(true);
    assert.equal(agree(a, 'all freed').used, 0);
    a.check();
  });
});
