// Torture: workers allocate, fill, exchange and free blocks of mixed sizes in
// tight loops while the main thread terminates random workers at random times
// (100 kills), releases each from its 'exit' handler and starts a replacement
// that adopts the dead worker's published blocks. See
// test/workers/torture-worker.js for the block format and the publication
// protocol that bounds what a kill can leak.
//
// The kill times are random (timers, and wherever the worker happens to be);
// the assertions hold for any timing:
//  - no worker and not the main thread ever sees a corrupted block (every
//    block encodes its address, length and a per-allocation serial);
//  - a.check() passes at the end;
//  - leaks: at most the block(s) each dead worker had in hand when it was
//    killed (the slot's HAND words say how many and how big);
//  - memory is reused: `committed` stays under a bound derived from the peak
//    of live bytes and the page sets of the agents alive at one time.
//
// About 17 s on 2 cores. Knobs (not needed by `npm test`): TORTURE_KILLS=n
// for a longer soak; TORTURE_TRACE=1 prints the heap's stats after each kill;
// TORTURE_NO_RELEASE=1 skips releaseAgent() to check that the memory bound
// catches it (dead workers' pages are never reclaimed: fails after ~10 kills).

import test from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Allocator, goodSize } from '../dist/index.js';
import { C } from '../dist/types.js';
import { BIN_PAGE_SLICES, BIN_PAGE_SLICES_GUARDED, binOf } from '../dist/bins.js';
import { MiB } from './lib/helpers.js';
import { makeRng, sleep } from './workers/common.js';
import {
  STOP, CORRUPT, LIVE, PEAK, SLOT0, PROGRESS, PHASE, HAND_KIND, HAND_BYTES, HELD, slotWords, CNT, CNT_WORDS,
  fillBlock, verifyBlock, unpackTransfer, LARGE_RANGES,
} from './workers/torture-worker.js';

const WORKER = new URL('./workers/torture-worker.js', import.meta.url);

const SIZE = 256 * MiB;
const WORKERS = 3; // slots; a killed worker is replaced in its slot
const ROW = 48; // blocks a worker holds at most
const TRANSFER = 48; // transfer slots
const KILLS_DEFAULT = Number(process.env.TORTURE_KILLS ?? 100);
// secure 4: the same with encoded links in the blocks' padding and canaries
// checked when blocks are reused and pages released (fewer kills: CI time)
const KILLS_SECURE = Number(process.env.TORTURE_KILLS_SECURE ?? 30);
const MIN_ITERS = 500; // the last workers run at least this many iterations before the stop
const SEED = 0x70c7e5;
const RELEASE = process.env.TORTURE_NO_RELEASE !== '1';

for (const [secure, KILLS] of [[0, KILLS_DEFAULT], [4, KILLS_SECURE]]) {
  test(`torture${secure ? ' (secure: 4)' : ''}: ${KILLS} random kills of workers churning mixed-size blocks; releaseAgent; no corruption, bounded memory`,
  { timeout: 180_000 }, async (t) => {
    const t0 = Date.now();
    const a = Allocator.create({ size: SIZE, secure });
    const u32 = a.u32;
    const usedEmpty = a.stats().used;

    // The main thread's own blocks: they must come through intact.
    const own = [];
    const ownRng = makeRng(SEED ^ 0xabcdef);
    for (let k = 0; k < 64; k++) {
      const n = 16 + (ownRng() % (k % 8 === 0 ? 20000 : 500));
      const p = a.malloc(n);
      assert.notEqual(p, 0);
      const s = ownRng() | 1;
      fillBlock(u32, p, n, s, a.usableSize(p));
      own.push([p, n, s >>> 0]);
    }
    // One page of each size class the workers use (a worker's partly used
    // pages), at the build's page size for the class (BIN_PAGE_SLICES; pages
    // grown for churning bins are at most GROW_MAX_SLICES, covered by the 2x
    // of peak live); huge blocks take their own slices and are counted in LIVE.
    // (block sizes: in padded modes goodSize(n) is n itself, so the class of a
    // request is the default-mode good size of the request plus its padding)
    const classes = new Set();
    const blockOf = (n) => (secure >= 3 ? goodSize(n + C.PADDING) : a.goodSize(n));
    const addClasses = (lo, hi) => { for (let n = lo; n <= hi; n += 8) classes.add(blockOf(n)); };
    addClasses(16, 4096);
    addClasses(10240, 81920);
    for (const [lo, hi] of LARGE_RANGES) addClasses(lo, hi);
    let pageSet = 0;
    const pageBytes = (bs) => C.SLICE_SIZE * (secure > 0 ? BIN_PAGE_SLICES_GUARDED : BIN_PAGE_SLICES)[binOf(bs)]; // the build's page sizes
    for (const bs of classes) pageSet += pageBytes(bs);
    const memoryBound = (peak) => 2 * peak + (2 * WORKERS + 1) * pageSet;

    const base = a.stats();
    const used0 = base.used;
    const blocks0 = base.blocks;

    const SW = slotWords(ROW);
    const ctrlSab = new SharedArrayBuffer((SLOT0 + WORKERS * SW) * 4);
    const ctrl = new Int32Array(ctrlSab);
    const transferSab = new SharedArrayBuffer(TRANSFER * 8);
    const transfer = new BigInt64Array(transferSab);
    const countersSab = new SharedArrayBuffer(CNT_WORDS * 8);
    const counters = new BigInt64Array(countersSab);

    const errors = [];
    const corruptions = []; // messages from workers and main
    const done = [];
    const released = [];
    const phaseAtKill = [0, 0, 0, 0];
    const handAtKill = [0, 0, 0];
    let allowedBlocks = 0; // blocks the dead workers may have leaked
    let allowedBytes = 0;
    let gen = 0;
    let killsIssued = 0;
    let killsHandled = 0;
    let mainTaken = 0;
    let committedMax = 0;
    const slots = new Array(WORKERS);
    const killRng = makeRng(SEED);
    let allHandled;
    const allHandledP = new Promise((r) => { allHandled = r; });

    const takeFromTransfer = (j, where) => {
      const v = Atomics.exchange(transfer, j, 0n);
      if (v === 0n) return false;
      const { p, blockBytes, serial16 } = unpackTransfer(v);
      const r = verifyBlock(u32, p, serial16, 0xffff);
      if (typeof r === 'string') { corruptions.push(`main (${where}, transfer slot ${j}): ${r}`); return false; }
      if (r.blockBytes !== blockBytes) corruptions.push(`main: transfer slot ${j}: block ${p} blockBytes ${r.blockBytes} vs ${blockBytes}`);
      Atomics.sub(ctrl, LIVE, r.blockBytes);
      a.free(p);
      return true;
    };

    function launch(s) {
      const g = gen++;
      const worker = new Worker(WORKER, {
        workerData: {
          handle: a.handle, ctrlSab, transferSab, countersSab, slot: s, gen: g,
          seed: (Math.imul(SEED, 31) + Math.imul(g + 1, 0x9e3779b9)) >>> 0, row: ROW, minIters: MIN_ITERS,
        },
      });
      const st = { worker, slot: s, gen: g, agentId: 0, ready: false, killing: false, exitCode: null };
      slots[s] = st;
      st.readyP = new Promise((resolve) => {
        worker.on('message', (m) => {
          if (m.type === 'ready') { st.agentId = m.agentId; st.ready = true; resolve(); }
          else if (m.type === 'corrupt') corruptions.push(`${m.where}: ${m.msg}`);
          else if (m.type === 'done') done.push(m);
        });
        worker.on('exit', () => resolve());
      });
      worker.on('error', (e) => errors.push(e));
      st.exited = new Promise((resolve) => {
        worker.on('exit', (code) => {
          st.exitCode = code;
          if (st.killing) {
            try {
              const sb = SLOT0 + s * SW;
              // What the dead worker had in hand may leak.
              const kind = Atomics.load(ctrl, sb + HAND_KIND);
              handAtKill[kind]++;
              if (kind !== 0) {
                allowedBlocks += kind;
                allowedBytes += Atomics.load(ctrl, sb + HAND_BYTES);
              }
              Atomics.store(ctrl, sb + HAND_KIND, 0);
              phaseAtKill[Atomics.load(ctrl, sb + PHASE)]++;
              Atomics.store(ctrl, sb + PHASE, 0);
              // The one call the README asks for.
              released.push(RELEASE ? a.releaseAgent(st.agentId) : true);
              // Memory stays bounded all along (without releaseAgent this
              // fails after a few kills: dead workers' pages are never reused).
              const committed = a.stats().committed;
              committedMax = Math.max(committedMax, committed);
              const peakNow = Atomics.load(ctrl, PEAK);
              if (committed > memoryBound(peakNow)) {
                errors.push(new Error(`after kill ${killsHandled + 1}: committed ${committed} exceeds the bound ` +
                  `${memoryBound(peakNow)} (peak live ${peakNow}, page set ${pageSet})`));
              }
              if (process.env.TORTURE_TRACE) { const x = a.stats(); console.log(`kill ${killsHandled} t=${Date.now() - t0} committed ${(x.committed / MiB).toFixed(1)} pagesBytes ${(x.pagesBytes / MiB).toFixed(1)} used ${(x.used / MiB).toFixed(1)} live ${(Atomics.load(ctrl, LIVE) / MiB).toFixed(1)} pages ${x.pages} s/m/l/h ${x.smallPages}/${x.mediumPages}/${x.largePages}/${x.hugePages} aband ${x.abandonedPages} allowedLeak ${(allowedBytes / MiB).toFixed(1)}`); }
              launch(s); // the replacement adopts the slot's published blocks
            } catch (e) {
              errors.push(e);
            }
            if (++killsHandled === KILLS) allHandled();
          } else if (code !== 0) {
            errors.push(new Error(`worker slot ${s} gen ${st.gen} exited with code ${code}`));
          }
          resolve(code);
        });
      });
      return st;
    }

    const failFast = () => {
      if (errors.length > 0) throw errors[0];
    };

    try {
      for (let s = 0; s < WORKERS; s++) launch(s);

      // Kills on timers with random delays: ~15 % within 10 ms (often while
      // a fresh replacement is still adopting), the rest 40..400 ms apart.
      await new Promise((resolve) => {
        const tick = () => {
          if (errors.length > 0) { resolve(); return; }
          // the main thread also takes and frees a transfer block now and then
          if (killRng() % 2 === 0 && takeFromTransfer(killRng() % TRANSFER, 'during the run')) mainTaken++;
          const candidates = slots.filter((st) => st.ready && !st.killing && st.exitCode === null);
          if (candidates.length === 0) { setTimeout(tick, 5); return; }
          const st = candidates[killRng() % candidates.length];
          st.killing = true;
          killsIssued++;
          st.worker.terminate();
          if (killsIssued === KILLS) { resolve(); return; }
          const r = killRng();
          setTimeout(tick, r % 100 < 15 ? r % 10 : 40 + ((r >>> 8) % 360));
        };
        setTimeout(tick, 100);
      });
      failFast();
      await allHandledP;
      failFast();
      await Promise.all(slots.map((st) => st.readyP));
      failFast();
      const tKills = Date.now() - t0;

      // Let the last workers run a while, then stop them: they verify and
      // free what they hold and detach.
      const deadline = Date.now() + 30_000;
      for (let s = 0; s < WORKERS; s++) {
        while (Atomics.load(ctrl, SLOT0 + s * SW + PROGRESS) < MIN_ITERS && slots[s].exitCode === null) {
          assert.ok(Date.now() < deadline, `slot ${s} makes no progress`);
          await sleep(2);
        }
      }
      Atomics.store(ctrl, STOP, 1);
      const codes = await Promise.all(slots.map((st) => st.exited));
      failFast();
      assert.deepEqual(codes, new Array(WORKERS).fill(0), 'the last workers exit cleanly');
      assert.equal(done.length, WORKERS, 'the last workers report');
      for (let s = 0; s < WORKERS; s++) {
        for (let k = 0; k < ROW; k++) assert.equal(Atomics.load(ctrl, SLOT0 + s * SW + HELD + 2 * k), 0, 'rows are empty');
      }

      // What is left in the transfer array, freed by the main thread.
      let drained = 0;
      for (let j = 0; j < TRANSFER; j++) if (takeFromTransfer(j, 'final drain')) drained++;

      // The main thread's own blocks are intact.
      for (const [p, n, s] of own) {
        const r = verifyBlock(u32, p, s);
        if (typeof r === 'string') corruptions.push(`main's own block: ${r}`);
        else assert.equal(r.n, n);
      }

      const st = a.stats();
      const c = {};
      for (const [k, i] of Object.entries(CNT)) c[k] = Number(counters[i]);
      const peakLive = Atomics.load(ctrl, PEAK);
      const leakedBlocks = st.blocks - blocks0;
      const leakedBytes = st.used - used0;
      t.diagnostic(`seed ${SEED}; ${KILLS} kills in ${tKills} ms, total ${Date.now() - t0} ms; releaseAgent: ${RELEASE}`);
      t.diagnostic(`ops (killed workers' last <256 iterations not counted): ${JSON.stringify(c)}`);
      t.diagnostic(`phase at kill [id posted, adopting, looping, stopping] ${JSON.stringify(phaseAtKill)}; ` +
        `blocks in hand at kill [0, 1, 2 (moving realloc)] ${JSON.stringify(handAtKill)}; main took ${mainTaken} + ${drained} transfer blocks`);
      t.diagnostic(`memory: committed ${(st.committed / MiB).toFixed(1)} MiB (max seen at kills ${(committedMax / MiB).toFixed(1)}), ` +
        `peak live ${(peakLive / MiB).toFixed(1)} MiB, allocated in total ${(c.bytes / MiB).toFixed(0)} MiB in ${c.allocs} blocks ` +
        `(committed / allocated = ${(st.committed / c.bytes).toFixed(4)}); ${KILLS} leaked workers would keep ${KILLS} page sets ` +
        `>= ${(KILLS * pageSet / MiB).toFixed(0)} MiB`);
      t.diagnostic(`leaked: ${leakedBlocks} blocks, ${leakedBytes} bytes; allowed by the kills: ${allowedBlocks} blocks, ${allowedBytes} bytes; ` +
        `pages ${st.pages} (abandoned ${st.abandonedPages}), agents ${st.agents}`);

      // Workers count in CORRUPT (a count survives a kill; a message may not)
      // and post the details; the main thread's findings are in the list too.
      const workerCorrupt = Atomics.load(ctrl, CORRUPT);
      assert.ok(workerCorrupt === 0 && corruptions.length === 0,
        `corrupted blocks: ${workerCorrupt} reported by workers; ${corruptions.slice(0, 8).join(' | ')}`);

      a.check();

      assert.equal(released.length, KILLS);
      assert.ok(released.every((x) => x === true), 'releaseAgent found every killed agent');
      assert.equal(st.agents, 1, 'only the main thread is attached');

      // Leaks: at most the block each dead worker had in hand (two while a
      // moving realloc was between its malloc and its free).
      assert.ok(leakedBlocks >= 0 && leakedBlocks <= allowedBlocks,
        `${leakedBlocks} blocks leaked; the kills allow ${allowedBlocks} (${JSON.stringify(handAtKill)})`);
      assert.ok(leakedBlocks <= KILLS + handAtKill[2], 'at most one block per kill (two in a moving realloc)');
      assert.ok(leakedBytes >= 0 && leakedBytes <= allowedBytes,
        `used ${st.used} is ${leakedBytes} above the baseline ${used0}; the kills allow ${allowedBytes}`);

      // Memory bound (checked after every kill as well): pages hold the live
      // blocks (LIVE counts them, leaked ones included; huge blocks are their
      // own pages): pages past an agent's current page of a size class are
      // filled before a new one is taken and reused once freed, so 2x covers
      // them; plus one partly used page per size class (the page set) for each
      // running worker, for each recently dead worker whose abandoned pages
      // are still pinned by blocks its replacement adopted, and for main.
      // 100 leaked workers would keep 100 page sets: far beyond the buffer.
      const bound = memoryBound(peakLive);
      t.diagnostic(`committed bound ${(bound / MiB).toFixed(1)} MiB = 2 x peak live + ${2 * WORKERS + 1} x page set ` +
        `(${classes.size} size classes, ${(pageSet / MiB).toFixed(2)} MiB)`);
      assert.ok(st.committed <= bound, `committed ${st.committed} exceeds ${bound} (peak live ${peakLive})`);

      // Free the main thread's blocks: back to the empty heap plus the leaks.
      for (const [p] of own) a.free(p);
      a.check();
      assert.equal(a.stats().used - usedEmpty, leakedBytes);
    } finally {
      Atomics.store(ctrl, STOP, 1);
      for (const st of slots) if (st && st.exitCode === null) st.worker.terminate();
    }
  });
}
