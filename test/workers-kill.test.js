// Killed workers: worker.terminate() at arbitrary points of an allocate / fill /
// free / transfer loop, releaseAgent() from the 'exit' handler, replacements.
// The kill points are random; the assertions do not depend on where they fall.

import test from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Allocator } from '../dist/index.js';
import { C } from '../dist/types.js';
import { makeRng, fillBlock, verifyBlock, sleep, Remote } from './workers/common.js';

const KILL_WORKER = new URL('./workers/kill-worker.js', import.meta.url);
const CMD_WORKER = new URL('./workers/cmd-worker.js', import.meta.url);

// Sizes spread over many bins (small pages up to 10 KiB, medium pages above).
const SIZES = [8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
  640, 768, 896, 1024, 1280, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192, 10240, 12288, 16384];
const MAX_SIZE = 16384;

const STOP = 0;
const PROGRESS = 1; // one word per slot
const HELD = 16; // one row of `row` words per slot

/**
 * Keeps `workers` kill-workers running; `kills` times, terminates one of them
 * at a random point of its loop (after `minIters` iterations and a random
 * number more), releases it from the 'exit' handler, verifies and frees the
 * blocks it published, and starts a replacement. Then stops the survivors
 * (they verify and free what they hold), drains the transfer array, and
 * checks the heap. Returns numbers for the caller's bounds.
 */
async function killCycles(t, { size, sizes, workers: W, row, transfer: TRANSFER, kills, minIters, seed0, release = true }) {
  const maxBytes = Math.max(...sizes);
  const maxUsable = maxBytes + Math.max(16, maxBytes / 4);
  const a = Allocator.create({ size });
  const used0 = a.stats().used;
  const ctrlSab = new SharedArrayBuffer((HELD + W * row) * 4);
  const ctrl = new Int32Array(ctrlSab);
  const transferSab = new SharedArrayBuffer(TRANSFER * 4);
  const transfer = new Uint32Array(transferSab);
  const rnd = makeRng(seed0);
  const errors = [];
  const released = [];
  const slots = new Array(W);
  let seed = seed0;
  let deadBlocks = 0;

  function launch(s) {
    Atomics.store(ctrl, PROGRESS + s, 0);
    const worker = new Worker(KILL_WORKER, {
      workerData: {
        mode: 'loop', handle: a.handle, ctrlSab, transferSab, slot: s, seed: seed++, rowWords: row,
        sizes, maxBytes, progressIndex: PROGRESS + s, stopIndex: STOP, heldBase: HELD,
      },
    });
    const st = { worker, agentId: 0, killed: false, exitCode: null, done: null };
    st.ready = new Promise((resolve) => {
      worker.on('message', (m) => {
        if (m.type === 'ready') { st.agentId = m.agentId; resolve(); }
        if (m.type === 'done') st.done = m;
      });
      worker.on('exit', () => resolve());
    });
    worker.on('error', (e) => errors.push(e));
    st.exited = new Promise((resolve) => {
      worker.on('exit', (code) => {
        st.exitCode = code;
        if (st.killed) {
          try {
            // The survivor (main thread) takes over the dead agent's pages ...
            released.push(release ? a.releaseAgent(st.agentId) : true);
            // ... and verifies and frees the blocks the dead worker published.
            const base = HELD + s * row;
            for (let k = 0; k < row; k++) {
              const p = Atomics.exchange(ctrl, base + k, 0) >>> 0;
              if (p !== 0) {
                verifyBlock(a.u32, p, maxBytes, `dead worker ${st.agentId}'s block`);
                a.free(p);
                deadBlocks++;
              }
            }
          } catch (e) {
            errors.push(e);
          }
        }
        resolve(code);
      });
    });
    slots[s] = st;
    return st;
  }

  async function waitProgress(s, target) {
    const st = slots[s];
    const deadline = Date.now() + 30_000;
    while (Atomics.load(ctrl, PROGRESS + s) < target) {
      if (st.exitCode !== null) throw errors[0] ?? new Error(`worker in slot ${s} exited early (${st.exitCode})`);
      if (Date.now() > deadline) throw new Error(`worker in slot ${s} made no progress`);
      await sleep(1);
    }
  }

  try {
    for (let s = 0; s < W; s++) launch(s);
    await Promise.all(slots.map((st) => st.ready));
    const agentIds = new Set();
    let committedWarm = 0;
    for (let k = 0; k < kills; k++) {
      const s = rnd() % W;
      const st = slots[s];
      await st.ready;
      assert.equal(errors.length, 0, String(errors[0]?.stack ?? errors[0]));
      assert.ok(st.agentId > 0 && st.agentId !== a.agentId, `agent id ${st.agentId}`);
      agentIds.add(st.agentId);
      // Kill at a random point, after the loop has surely filled its row.
      await waitProgress(s, minIters + (rnd() % (2 * minIters)));
      st.killed = true;
      await st.worker.terminate();
      await st.exited;
      if (k === 2 * W - 1) committedWarm = a.stats().committed;
      launch(s);
    }
    await Promise.all(slots.map((st) => st.ready));
    assert.equal(new Set([...agentIds, ...slots.map((st) => st.agentId)]).size, kills + W, 'agent ids are never reused');

    // Stop the survivors: they verify and free what they hold, detach, exit 0.
    await Promise.all(slots.map((st, s) => waitProgress(s, minIters)));
    Atomics.store(ctrl, STOP, 1);
    const codes = await Promise.all(slots.map((st) => st.exited));
    assert.equal(errors.length, 0, String(errors[0]?.stack ?? errors[0]));
    assert.deepEqual(codes, new Array(W).fill(0), 'survivors exit cleanly');
    for (const st of slots) assert.ok(st.done && st.done.iterations >= minIters, 'survivor reported');

    // Transfer slots: each is empty or a complete object from some worker.
    let transferred = 0;
    for (let j = 0; j < TRANSFER; j++) {
      const p = Atomics.exchange(transfer, j, 0);
      if (p !== 0) {
        verifyBlock(a.u32, p, maxBytes, `transfer slot ${j}`);
        a.free(p);
        transferred++;
      }
    }
    a.check();

    assert.equal(released.length, kills);
    assert.ok(released.every((x) => x === true), `releaseAgent returned ${released}`);
    assert.ok(deadBlocks > 0, 'dead workers left blocks behind');

    const st = a.stats();
    t.diagnostic(`kills ${kills}: dead workers' blocks freed by main ${deadBlocks}, transfer blocks ${transferred}, ` +
      `committed after warm-up ${committedWarm}, final ${st.committed}; used leaked ${st.used - used0}`);
    // A kill can leak at most the one block the worker had in hand (and the
    // allocator may lose one more whose address never reached the worker).
    assert.ok(st.used - used0 <= kills * 2 * maxUsable, `used ${st.used} - ${used0} is more than ${kills} kills can leak`);
    return { committedWarm, committed: st.committed, leaked: st.used - used0 };
  } finally {
    for (const st of slots) if (st && st.exitCode === null) st.worker.terminate();
  }
}

test('kill: workers terminated mid-loop are released, survivors and transfers stay intact, pages are reused',
  { timeout: 120_000 }, async (t) => {
    const r = await killCycles(t, {
      size: 128 << 20, sizes: SIZES, workers: 2, row: 64, transfer: 256, kills: 40, minIters: 3000, seed0: 20240601,
    });
    // Without reclaim every killed worker would keep its ~34 pages (>= 48
    // slices) committed: 40 kills => ~120 MiB. With reclaim the high-water
    // mark stays near the level reached after the first kills.
    const bound = r.committedWarm + 64 * C.SLICE_SIZE;
    assert.ok(r.committed <= bound,
      `committed ${r.committed} exceeds ${bound} (after warm-up: ${r.committedWarm}): dead workers' pages are not reused`);
  });

test('kill: workers with large and huge blocks terminated mid-loop', { timeout: 120_000 }, async (t) => {
  const sizes = [64, 1024, 100_000, 200_000, 400_000, 600_000, 1_000_000];
  const r = await killCycles(t, {
    size: 256 << 20, sizes, workers: 2, row: 6, transfer: 8, kills: 16, minIters: 200, seed0: 777,
  });
  const bound = r.committedWarm + r.leaked + 24 * (1 << 20);
  assert.ok(r.committed <= bound,
    `committed ${r.committed} exceeds ${bound} (after warm-up: ${r.committedWarm}): dead workers' pages are not reused`);
});

test('kill: a terminated worker\'s blocks stay valid; releaseAgent; the main thread reuses its pages',
  { timeout: 60_000 }, async () => {
    const a = Allocator.create({ size: 32 << 20 });
    const used0 = a.stats().used;
    const sizes = [];
    for (let rep = 0; rep < 8; rep++) for (const n of SIZES) sizes.push(n);
    for (let rep = 0; rep < 200; rep++) sizes.push(8 * (1 + (rep % 16))); // several pages of small blocks
    sizes.push(100_000, 600_000); // a medium block and a singleton

    const worker = new Worker(KILL_WORKER, { workerData: { mode: 'hold', handle: a.handle, sizes } });
    const errors = [];
    worker.on('error', (e) => errors.push(e));
    const exited = new Promise((resolve) => worker.on('exit', resolve));
    const msg = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('exit', () => reject(errors[0] ?? new Error('worker exited before reporting')));
    });
    const { agentId, blocks } = msg;
    assert.equal(blocks.length, sizes.length);
    assert.ok(agentId > 0 && agentId !== a.agentId);
    const maxBytes = 600_000;

    // Frees by the main thread before the worker dies are remote frees.
    const freedBefore = blocks.filter((_, i) => i % 4 === 1);
    for (const [p, n] of freedBefore) {
      assert.equal(verifyBlock(a.u32, p, maxBytes, 'live block'), n);
      a.free(p);
    }

    await worker.terminate();
    await exited;
    assert.equal(a.releaseAgent(agentId), true, 'releaseAgent of a terminated agent');
    assert.equal(a.releaseAgent(agentId), false, 'a second releaseAgent finds nothing');

    // The dead worker's blocks are still live blocks with their contents.
    const remaining = blocks.filter((_, i) => i % 4 !== 1);
    for (const [p, n] of remaining) {
      assert.equal(verifyBlock(a.u32, p, maxBytes, 'dead worker\'s block'), n);
      assert.ok(a.usableSize(p) >= n);
    }
    const freedAfter = remaining.filter((_, i) => i % 3 === 0);
    const kept = remaining.filter((_, i) => i % 3 !== 0);
    for (const [p] of freedAfter) a.free(p);
    a.check();

    // Allocating the same sizes again from the main thread reuses the dead
    // worker's pages: no fresh memory is committed.
    const deadSlices = new Set();
    for (const [p, n] of blocks) for (let s = p >>> C.SLICE_SHIFT; s <= (p + n - 1) >>> C.SLICE_SHIFT; s++) deadSlices.add(s);
    const committed0 = a.stats().committed;
    const again = [];
    for (const [, n] of [...freedBefore, ...freedAfter]) {
      const p = a.malloc(n);
      assert.notEqual(p, 0);
      fillBlock(a.u32, p, n);
      again.push([p, n]);
    }
    assert.equal(a.stats().committed, committed0, 'no new memory is committed');
    // (singleton blocks, over LARGE_OBJ_SIZE_MAX, take the lowest free run of slices, which
    // need not be the dead worker's: committed above says no fresh memory was used)
    const outside = again.filter(([p, n]) => n <= C.LARGE_OBJ_SIZE_MAX && !deadSlices.has(p >>> C.SLICE_SHIFT));
    assert.equal(outside.length, 0, `blocks outside the dead worker's pages: ${outside.map(([p, n]) => `${p}(${n})`).join(' ')}`);
    a.check();

    for (const [p, n] of [...kept, ...again]) {
      assert.equal(verifyBlock(a.u32, p, maxBytes, 'final'), n);
      a.free(p);
    }
    a.check();
    assert.equal(a.stats().used, used0, 'every block of the dead worker was accounted and freed');
    assert.equal(errors.length, 0);
  });

/** Starts a kill-worker in the given mode; resolves with its first message. */
function startWorker(workerData) {
  const worker = new Worker(KILL_WORKER, { workerData });
  const errors = [];
  worker.on('error', (e) => errors.push(e));
  const exited = new Promise((resolve) => worker.on('exit', resolve));
  const first = new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('exit', () => reject(errors[0] ?? new Error('worker exited before reporting')));
  });
  return { worker, errors, exited, first };
}

test('kill: workers killed at some point of detach(); releaseAgent finishes the job', { timeout: 60_000 }, async (t) => {
  const a = Allocator.create({ size: 64 << 20 });
  const used0 = a.stats().used;
  const rnd = makeRng(4242);
  const outcomes = { releasedAfterKill: 0, detachFinished: 0, killedBeforeDetach: 0, killedInDetach: 0 };
  let committedFirst = 0;
  for (let it = 0; it < 24; it++) {
    const ctrlSab = new SharedArrayBuffer(8);
    const ctrl = new Int32Array(ctrlSab);
    const w = startWorker({ mode: 'detach', handle: a.handle, sizes: SIZES, count: 4000, ctrlSab });
    const msg = await w.first;
    // Let the worker go, then kill it a random short while later: before,
    // during or after its detach().
    Atomics.store(ctrl, 0, 1);
    Atomics.notify(ctrl, 0);
    if (it % 4 !== 0) { // mostly aim at the detach() itself
      const limit = Date.now() + 5000;
      while (Atomics.load(ctrl, 1) === 0 && Date.now() < limit);
    }
    const spin = rnd() % 4000;
    for (let i = 0; i < spin; i++) Atomics.load(ctrl, 1);
    w.worker.terminate();
    await w.exited;
    const phase = Atomics.load(ctrl, 1); // 0: not in detach yet, 2: in detach, 1: detach returned
    const finished = phase === 1;
    if (phase === 0) outcomes.killedBeforeDetach++;
    if (phase === 2) outcomes.killedInDetach++;
    const r = a.releaseAgent(msg.agentId);
    if (finished) assert.equal(r, false, 'an agent that completed detach() is not released');
    outcomes[r ? 'releasedAfterKill' : 'detachFinished']++;
    a.check();
    for (const [p, n] of msg.blocks) {
      assert.equal(verifyBlock(a.u32, p, MAX_SIZE, 'block of a worker killed in detach'), n);
      a.free(p);
    }
    a.check();
    const st = a.stats();
    assert.equal(st.used, used0, 'every block is accounted for');
    assert.equal(st.agents, 1, 'only the main thread is attached');
    assert.deepEqual(w.errors, []);
    if (it === 0) committedFirst = st.committed;
  }
  t.diagnostic(JSON.stringify(outcomes));
  const st = a.stats();
  assert.ok(st.committed <= 2 * committedFirst, `committed ${st.committed} vs ${committedFirst} after the first worker: pages are reused`);
});

test('kill: agent records are recycled after detach() and releaseAgent()', { timeout: 60_000 }, async () => {
  const a = Allocator.create({ size: 32 << 20 });
  const used0 = a.stats().used;
  // 300 agents attach and detach in turn, more than there are agent records.
  const churn = startWorker({ mode: 'churn', handle: a.handle, count: 300 });
  const { ids } = await churn.first;
  assert.equal(await churn.exited, 0);
  assert.equal(new Set(ids).size, 300, 'agent ids are distinct');
  assert.equal(a.stats().agents, 1);
  a.check();

  // 60 workers with 5 agents each are killed and released.
  const seen = new Set(ids);
  for (let it = 0; it < 60; it++) {
    const w = startWorker({ mode: 'multi', handle: a.handle, agents: 5, blocksPerAgent: 20, sizes: SIZES });
    const msg = await w.first;
    for (const id of msg.ids) {
      assert.ok(!seen.has(id), `agent id ${id} is never reused`);
      seen.add(id);
    }
    await w.worker.terminate();
    await w.exited;
    for (const id of msg.ids) assert.equal(a.releaseAgent(id), true, `releaseAgent(${id})`);
    for (const [p, n] of msg.blocks) {
      assert.equal(verifyBlock(a.u32, p, MAX_SIZE, 'multi-agent block'), n);
      a.free(p);
    }
    assert.equal(a.stats().agents, 1);
  }
  a.check();
  assert.equal(a.stats().used, used0);
  assert.equal(a.releaseAgent(123456), false, 'an id that was never handed out');
});

test('kill: two agents releasing the same dead agent at once: exactly one succeeds', { timeout: 60_000 }, async () => {
  const a = Allocator.create({ size: 32 << 20 });
  const used0 = a.stats().used;
  const other = new Remote(CMD_WORKER, { handle: a.handle });
  try {
    for (let it = 0; it < 10; it++) {
      const w = startWorker({ mode: 'hold', handle: a.handle, sizes: SIZES });
      const msg = await w.first;
      await w.worker.terminate();
      await w.exited;
      const ctlSab = new SharedArrayBuffer(8);
      const ctl = new Int32Array(ctlSab);
      const theirs = other.call('raceRelease', ctlSab, msg.agentId);
      while (Atomics.load(ctl, 1) === 0) Atomics.wait(ctl, 1, 0, 100); // the other agent is ready
      Atomics.store(ctl, 0, 1);
      Atomics.notify(ctl, 0);
      const mine = a.releaseAgent(msg.agentId);
      const results = [mine, await theirs];
      assert.equal(results.filter((x) => x === true).length, 1, `exactly one release succeeds: ${results}`);
      a.check();
      for (const [p, n] of msg.blocks) {
        assert.equal(verifyBlock(a.u32, p, MAX_SIZE, 'released block'), n);
        a.free(p);
      }
      a.check();
      assert.equal(a.stats().used, used0);
    }
    assert.equal(await other.close(), 0);
    assert.equal(a.stats().agents, 1);
  } finally {
    await Remote.killAll();
  }
});
