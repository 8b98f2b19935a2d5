// Agents' lifecycle (issue 10, found by probing):
//   - releaseAgent refuses agents known to be running (the caller's own id, an agent whose
//     allocator object is alive in this thread), and an agent released while it runs (in
//     another thread) throws at its next generic call, naming the agent that released it;
//   - workers that end without detach(): watch(worker) / terminate(worker) release their
//     agents, and stats().agentPages shows the pages each attached agent holds;
//   - buffers of impossible sizes get our own messages naming the limits.

import test, { describe } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Allocator } from '../dist/index.js';
import { C } from '../dist/types.js';
import { walkStats } from '../dist/stats.js';
import { KiB, MiB, asTerminated } from './lib/helpers.js';
import { fillBlock, verifyBlock } from './workers/common.js';

const WATCH_WORKER = new URL('./workers/watch-worker.js', import.meta.url);

/**
 * Starts a watch-worker; `watch(worker)`, if given, runs right after `new Worker`, before any
 * listener of ours, so that its 'exit' listener runs before `exited` resolves. Returns
 * { worker, ready (the 'ready' message), exited (the exit code), ctl (its go word), errors }.
 */
function startWorker(workerData, { watch } = {}) {
  const ctlSab = new SharedArrayBuffer(8);
  const ctl = new Int32Array(ctlSab);
  const worker = new Worker(WATCH_WORKER, { workerData: { ...workerData, ctlSab } });
  if (watch) watch(worker);
  const errors = [];
  worker.on('error', (e) => errors.push(e));
  const exited = new Promise((resolve) => worker.on('exit', resolve));
  const messages = [];
  const waiters = [];
  worker.on('message', (m) => { messages.push(m); for (const w of waiters.splice(0)) w(); });
  /** The first message of this type (rejects if the worker exits first). */
  const message = (type) => new Promise((resolve, reject) => {
    const look = () => {
      const m = messages.find((x) => x.type === type);
      if (m) return resolve(m);
      waiters.push(look);
    };
    look();
    exited.then(() => setImmediate(() => reject(errors[0] ?? new Error(`worker exited without a '${type}' message`))));
  });
  const go = () => { Atomics.store(ctl, 0, 1); Atomics.notify(ctl, 0); };
  return { worker, ready: message('ready'), message, exited, go, errors };
}

function entryOf(a, id) {
  return a.stats().agentPages.find((e) => e.agentId === id);
}

describe('releaseAgent refuses an agent known to be running', () => {
  test('its own id: an Error naming it, and nothing changes', () => {
    const a = Allocator.create({ size: 8 * MiB });
    const ps = Array.from({ length: 100 }, () => a.malloc(100));
    const before = a.stats();
    assert.throws(() => a.releaseAgent(a.agentId), (e) => e instanceof Error && /releaseAgent\(1\) is this agent's own id: an agent cannot release itself/.test(e.message));
    assert.deepEqual(a.stats(), before);
    assert.equal(a.isAgentAttached(a.agentId), true);
    for (let i = 0; i < 3000; i++) a.free(a.malloc(100)); // it goes on working
    for (const p of ps) a.free(p);
    a.check();
    assert.equal(a.stats().used, 0);
  });

  for (const how of ['the same handle', 'a structured clone of the handle (another SharedArrayBuffer object)']) {
    test(`an agent attached in this thread (through ${how}) and not detached: an Error, nothing changes, it goes on working`, () => {
      const a = Allocator.create({ size: 16 * MiB });
      const b = Allocator.attach(how === 'the same handle' ? a.handle : structuredClone(a.handle));
      const ps = Array.from({ length: 200 }, (_, i) => { const p = b.malloc(100); b.u8.fill(i & 255, p, p + 100); return p; });
      const before = a.stats();
      assert.throws(() => a.releaseAgent(b.agentId),
        (e) => e instanceof Error && new RegExp(`releaseAgent\\(${b.agentId}\\): agent ${b.agentId} is attached in this thread and its allocator object has not detached`).test(e.message));
      assert.deepEqual(a.stats(), before, 'nothing changed');
      assert.equal(a.isAgentAttached(b.agentId), true);
      // b keeps its pages: thousands more allocations and frees, then the heap checks
      const more = [];
      for (let i = 0; i < 5000; i++) more.push(b.malloc(100));
      for (const p of more) b.free(p);
      ps.forEach((p, i) => { assert.equal(b.u8[p], i & 255); assert.equal(b.u8[p + 99], i & 255); });
      a.check();
      for (const p of ps) b.free(p);
      b.detach();
      assert.equal(a.releaseAgent(b.agentId), false, 'detached: nothing to release');
      a.check();
    });
  }

  test('an agent released while it runs in another thread throws at its next generic call, naming who released it; check() holds', { timeout: 30_000 }, async () => {
    const a = Allocator.create({ size: 32 * MiB });
    const w = startWorker({ handle: a.handle, blocks: 50, size: 200, end: 'spin' });
    const { ids: [id], blocks } = await w.ready;
    assert.equal(a.releaseAgent(id), true, 'another thread: it cannot be known to run');
    w.go();
    // (before the fix the released agent went on without an error, into a loop that never ended)
    let timer;
    const deadline = new Promise((resolve) => { timer = setTimeout(resolve, 10_000, null); });
    const threw = await Promise.race([w.message('threw'), deadline]);
    clearTimeout(timer);
    if (threw === null) {
      await w.worker.terminate();
      assert.fail('the released agent neither threw nor finished within 10 s');
    }
    const { message, calls } = threw;
    await w.exited;
    assert.equal(w.errors.length, 0, String(w.errors[0]));
    assert.ok(message !== null, `the released agent made ${calls} calls without an error`);
    assert.match(message, new RegExp(`^mimalloc-ts: this agent was released by agent ${a.agentId} \\(releaseAgent\\)`));
    assert.ok(calls < 64 * 2, `${calls} calls before the first generic one`);
    a.check();
    // its blocks are the main thread's to free now
    for (const [p, n] of blocks) { verifyBlock(a.u32, p, n, 'released agent\'s block'); a.free(p); }
    a.check();
  });

  test('a released agent of this thread: detach() throws the release and changes nothing; every later call throws it', () => {
    const a = Allocator.create({ size: 16 * MiB });
    const b = Allocator.attach(a.handle);
    const ps = Array.from({ length: 30 }, () => b.malloc(64));
    assert.equal(a.releaseAgent(asTerminated(b)), true);
    const before = a.stats();
    const released = (e) => e instanceof Error && e.message.startsWith(`mimalloc-ts: this agent was released by agent ${a.agentId} (releaseAgent)`);
    assert.throws(() => b.detach(), released);
    assert.deepEqual(a.stats(), before, 'detach of a released agent touches nothing');
    b.detach(); // detached now: quiet
    assert.throws(() => b.malloc(64), released, 'fast paths off: malloc reaches the generic path');
    assert.throws(() => b.free(ps[0]), released);
    assert.throws(() => b.collect(), released);
    assert.throws(() => b.releaseAgent(a.agentId), released);
    a.check();
    for (const p of ps) a.free(p);
    a.check();
    assert.equal(a.stats().used, 0);
  });
});

describe('workers that end without detach(): watch, terminate, stats().agentPages', () => {
  test('without watch: the dead worker keeps its pages though used is 0; stats().agentPages and printStats show them', { timeout: 30_000 }, async () => {
    const a = Allocator.create({ size: 32 * MiB });
    const w = startWorker({ handle: a.handle, blocks: 600, size: 4000, end: 'exit' });
    const { ids: [id], blocks, threadId } = await w.ready;
    for (const [p, n] of blocks) { verifyBlock(a.u32, p, n, 'worker block'); a.free(p); } // remote frees: never collected
    w.go();
    await w.exited;
    assert.equal(w.errors.length, 0, String(w.errors[0]));
    const st = a.stats();
    assert.equal(st.used, 0, 'every block was freed');
    assert.equal(a.isAgentAttached(id), true, 'the dead worker\'s agent is still attached');
    const e = st.agentPages.find((x) => x.agentId === id);
    assert.ok(e, `agentPages lists agent ${id}: ${JSON.stringify(st.agentPages)}`);
    assert.equal(e.thread, threadId, 'its thread is the worker\'s threadId');
    // its pages' used counts the blocks the main thread freed into them and it never collected
    // (mimalloc's page used): as a walk of its pages finds it, and more than 0
    assert.equal(e.used, walkStats(a.arena).agentPages.find((x) => x.agentId === id).used);
    assert.ok(e.used > 0 && e.used <= blocks.length * 4096, `used ${e.used}`);
    // (not all: beyond PAGE_FULL_KEEP full pages per size class, full pages are abandoned, and the
    // main thread's frees into them took them over)
    // (small pages of 64 KiB, but for the bin's first, which holds FIRST_PAGE_BLOCKS blocks in fewer slices)
    assert.ok(e.pages >= C.PAGE_FULL_KEEP && e.bytes % C.SLICE_SIZE === 0 && e.bytes <= e.pages * 64 * KiB &&
      e.bytes > (e.pages - 1) * 64 * KiB, `it holds ${e.pages} pages, ${e.bytes} bytes`);
    assert.deepEqual(st.agentPages.map((x) => x.agentId), [a.agentId, id], 'every attached agent, in id order');
    assert.match(a.printStats(false), new RegExp(`^agent ${id} +[0-9.]+ [KM]iB  ${e.pages} pages, [0-9.]+ [KM]iB used \\(thread ${threadId}\\)$`, 'm'));
    assert.equal(a.releaseAgent(id), true);
    assert.deepEqual(a.stats().agentPages.map((x) => x.agentId), [a.agentId]);
    assert.equal(a.stats().pages, 0, 'its pages went back to the buffer');
    a.check();
  });

  test('watch: each worker that exits without detach() is released at its exit; without watch the leaked pages exhaust the buffer', { timeout: 60_000 }, async () => {
    // 2 agents × 200 blocks of each of 5 sizes (small and medium pages): ~15 MiB of blocks per
    // worker, all freed by the main thread (most of them remotely, before the worker exits).
    const sizes = [96, 1000, 4000, 12000, 20000];
    for (const watched of [false, true]) {
      const a = Allocator.create({ size: 32 * MiB });
      let nomemAt = -1;
      for (let k = 0; k < 10 && nomemAt < 0; k++) {
        const w = startWorker({ handle: a.handle, agents: 2, blocks: 200, sizes, end: 'exit' }, watched ? { watch: (wk) => a.watch(wk) } : {});
        const { ids, blocks, nomem } = await w.ready;
        if (nomem) {
          nomemAt = k;
          await w.worker.terminate();
          continue;
        }
        assert.equal(ids.length, 2);
        const half = blocks.length >> 1;
        for (const [p, n] of blocks.slice(0, half)) { verifyBlock(a.u32, p, n, 'before exit'); a.free(p); }
        assert.ok(entryOf(a, ids[0]).pages > 0 && entryOf(a, ids[1]).pages > 0);
        w.go();
        await w.exited;
        assert.equal(w.errors.length, 0, String(w.errors[0]));
        for (const [p, n] of blocks.slice(half)) { verifyBlock(a.u32, p, n, 'after exit'); a.free(p); }
        assert.equal(a.stats().used, 0);
        for (const id of ids) {
          if (watched) {
            assert.equal(a.isAgentAttached(id), false, `worker ${k}: agent ${id} released at exit`);
            assert.equal(entryOf(a, id), undefined);
          } else {
            assert.equal(a.isAgentAttached(id), true);
            assert.ok(entryOf(a, id).pages > 0, `worker ${k}: agent ${id} keeps its pages`);
          }
        }
        a.check();
      }
      if (watched) {
        assert.equal(nomemAt, -1, 'every worker found memory');
        assert.deepEqual(a.stats().agentPages.map((x) => x.agentId), [a.agentId]);
        assert.equal(a.stats().pages, 0);
      } else {
        assert.ok(nomemAt >= 1, `without watch, a worker ran out of memory (worker ${nomemAt} of 10)`);
      }
    }
  });

  test('watch returns a handle naming the worker\'s thread; a watcher that detached before the exit still releases (a temporary agent)', { timeout: 30_000 }, async () => {
    const a = Allocator.create({ size: 16 * MiB });
    const watcher = Allocator.attach(a.handle);
    let handle;
    const w = startWorker({ handle: a.handle, blocks: 100, size: 1000, end: 'exit' }, { watch: (wk) => { handle = watcher.watch(wk); } });
    assert.equal(handle.kind, 'mimalloc-ts');
    assert.equal(handle.buffer, a.buffer);
    assert.equal(handle.thread, w.worker.threadId);
    assert.equal(watcher.watch(w.worker), handle, 'watching twice: the same handle, one listener');
    const { ids: [id], blocks } = await w.ready;
    watcher.detach();
    w.go();
    await w.exited;
    assert.equal(a.isAgentAttached(id), false, 'released at exit through a temporary agent');
    assert.equal(a.isAgentAttached(watcher.agentId), false);
    assert.deepEqual(a.stats().agentPages.map((x) => x.agentId), [a.agentId], 'the temporary agent detached');
    for (const [p, n] of blocks) { verifyBlock(a.u32, p, n, 'after exit'); a.free(p); }
    a.check();
  });

  test('terminate(worker): a Node worker (watched or not) is terminated, then its agents released; resolves to their count', { timeout: 30_000 }, async () => {
    const a = Allocator.create({ size: 16 * MiB });
    for (const watched of [false, true]) {
      const w = startWorker({ handle: a.handle, agents: 3, blocks: 40, size: 512, end: 'idle' }, watched ? { watch: (wk) => a.watch(wk) } : {});
      const { ids, blocks } = await w.ready;
      assert.ok(ids.every((id) => entryOf(a, id).pages > 0));
      assert.equal(await a.terminate(w.worker), 3, `watched: ${watched}`);
      await w.exited;
      for (const id of ids) assert.equal(a.isAgentAttached(id), false);
      for (const [p, n] of blocks) { verifyBlock(a.u32, p, n, 'after terminate'); a.free(p); }
      a.check();
    }
    assert.equal(a.stats().used, 0);
  });

  test('terminate(worker) of a Web Worker (no threadId): the handle from watch() carries a token that attach records', { timeout: 30_000 }, async () => {
    const a = Allocator.create({ size: 16 * MiB });
    let real = null;
    let terminated = 0;
    const webWorker = { terminate() { terminated++; void real.terminate(); } }; // a browser Worker's terminate returns nothing
    const handle = a.watch(webWorker);
    assert.ok(Number.isInteger(handle.thread) && handle.thread < 0, `token ${handle.thread}`);
    assert.equal(a.watch({ terminate() {} }).thread, handle.thread - 1, 'tokens are distinct per worker');
    const w = startWorker({ handle, agents: 2, blocks: 40, size: 512, end: 'idle' });
    real = w.worker;
    const { ids, blocks } = await w.ready;
    assert.deepEqual(ids.map((id) => entryOf(a, id).thread), [handle.thread, handle.thread], 'attach recorded the token, not its threadId');
    assert.equal(await a.terminate(webWorker), 2);
    assert.equal(terminated, 1);
    await w.exited;
    for (const id of ids) assert.equal(a.isAgentAttached(id), false);
    for (const [p, n] of blocks) { verifyBlock(a.u32, p, n, 'after terminate'); a.free(p); }
    a.check();
  });

  test('watch and terminate check their argument before touching anything', async () => {
    const a = Allocator.create({ size: 4 * MiB });
    for (const bad of [undefined, null, 42, 'worker', {}, { terminate: 1 }]) {
      assert.throws(() => a.watch(bad), (e) => e instanceof TypeError && /^watch: expected a Worker/.test(e.message), String(bad));
      assert.throws(() => a.terminate(bad), (e) => e instanceof TypeError && /^terminate: expected a Worker/.test(e.message), String(bad));
    }
    let called = false;
    assert.throws(() => a.terminate({ terminate() { called = true; } }), (e) => e.message.startsWith('terminate: watch(worker) first'));
    assert.equal(called, false, 'an unwatched Web Worker is not terminated');
    const done = new Worker('process.exit(0)', { eval: true });
    await new Promise((resolve) => done.on('exit', resolve));
    assert.throws(() => a.watch(done), (e) => e.message.startsWith('watch: this worker has already exited'));
    assert.throws(() => a.terminate(done), (e) => e.message.startsWith('terminate: this worker has already exited (threadId -1) and was not watched'));
    assert.throws(() => Allocator.create({ size: 4 * MiB, shared: false }).watch({ terminate() {} }), /ArrayBuffer/);
    for (const thread of ['1', 1.5, 2 ** 31]) {
      assert.throws(() => Allocator.attach({ ...a.handle, thread }), (e) => e instanceof TypeError && /handle's thread must be an int32/.test(e.message), String(thread));
    }
    assert.deepEqual(a.stats().agentPages.map((x) => x.agentId), [a.agentId], 'no agent attached by a refused call');
  });

  test('stats().agentPages: every attached agent in id order with its thread, pages, page bytes and used bytes', () => {
    const a = Allocator.create({ size: 16 * MiB });
    assert.deepEqual(a.stats().agentPages, [{ agentId: a.agentId, thread: 0, pages: 0, bytes: 0, used: 0 }]);
    const b = Allocator.attach(a.handle);
    const small = Array.from({ length: 10 }, () => b.malloc(100));
    const huge = b.malloc(MiB);
    const bs = b.usableSize(small[0]);
    const st = b.stats();
    assert.deepEqual(st.agentPages[0], { agentId: a.agentId, thread: 0, pages: 0, bytes: 0, used: 0 });
    // the huge page is abandoned as soon as its block is out (it belongs to nobody)
    // (a bin's first page holds FIRST_PAGE_BLOCKS blocks: one slice for 104-byte blocks)
    assert.deepEqual(st.agentPages[1], { agentId: b.agentId, thread: 0, pages: 1, bytes: C.SLICE_SIZE, used: 10 * bs });
    const text = a.printStats(false);
    assert.match(text, new RegExp(`^agent ${a.agentId} +0 B  0 pages, 0 B used$`, 'm'));
    assert.match(text, new RegExp(`^agent ${b.agentId} +${C.SLICE_SIZE / KiB}\\.0 KiB  1 page, ${((10 * bs) / 1024).toFixed(1)} KiB used$`, 'm'));
    b.free(huge);
    for (const p of small) b.free(p);
    b.detach();
    assert.deepEqual(a.stats().agentPages.map((x) => x.agentId), [a.agentId]);
  });
});

describe('buffer sizes: our messages, naming the limits', () => {
  test('attach to a handle whose buffer is too small for any allocator: a RangeError naming 1 MiB', () => {
    for (const n of [0, 16, 17, 64 * KiB, MiB - 8]) {
      assert.throws(() => Allocator.attach({ kind: 'mimalloc-ts', buffer: new SharedArrayBuffer(n) }),
        (e) => e instanceof RangeError && e.message === `Allocator.attach: the handle's buffer holds ${n} bytes, and an allocator's buffer holds ${MiB} to ${2 ** 32 - 16 * KiB} bytes (1 MiB to 4 GiB − 16 KiB): not the handle of an allocator`,
        `${n} bytes`);
    }
  });

  test('create({ buffer }) of 4 GiB or more: a RangeError naming 4 GiB − 16 KiB, the buffer untouched; attach likewise', (t) => {
    for (const n of [2 ** 32, 2 ** 32 + 64 * KiB]) {
      let b;
      try {
        b = new SharedArrayBuffer(n);
      } catch (e) {
        t.skip(`new SharedArrayBuffer(${n}) failed here: ${e.message}`);
        return;
      }
      const i32 = new Int32Array(b, 0, 64);
      i32[5] = 12345;
      assert.throws(() => Allocator.create({ buffer: b }),
        (e) => e instanceof RangeError && e.message === `options.buffer must hold at most ${2 ** 32 - 16 * KiB} bytes (4 GiB − 16 KiB; its byteLength is rounded down to a multiple of 16 KiB), got ${n}`,
        `${n} bytes`);
      assert.deepEqual([i32[0], i32[1], i32[5]], [0, 0, 12345], 'the buffer is untouched');
      assert.throws(() => Allocator.attach({ kind: 'mimalloc-ts', buffer: b }),
        (e) => e instanceof RangeError && /^Allocator\.attach: the handle's buffer holds \d+ bytes, and an allocator's buffer holds 1048576 to 4294950912 bytes/.test(e.message));
    }
  });
});

test('a reaper that lost its race marks a reused record REAPING for an instant: the new agent does not take it for its own release', () => {
  const a = Allocator.create({ size: 16 * MiB });
  const b = Allocator.attach(a.handle);
  const mem = a.i32;
  let rec = -1;
  for (let i = 0; i < C.MAX_AGENTS; i++) {
    const r = a.arena.agentRecord(i);
    if (Atomics.load(mem, r + C.A_ID) === b.agentId) rec = r;
  }
  assert.ok(rec >= 0);
  Atomics.store(mem, rec + C.A_STATE, C.AGENT_REAPING); // the stale reaper's CAS, before it sees the id and gives the state back
  const p = b.mallocAligned(5000, 16); // a generic call: assertAttached runs
  assert.notEqual(p, 0);
  Atomics.store(mem, rec + C.A_STATE, C.AGENT_ALIVE);
  b.free(p);
  // a reaper that named itself is a release
  Atomics.store(mem, rec + C.A_STATE, C.AGENT_REAPING);
  Atomics.store(mem, rec + C.A_REAPER, a.agentId);
  assert.throws(() => b.mallocAligned(5000, 16), /released by agent/);
});
