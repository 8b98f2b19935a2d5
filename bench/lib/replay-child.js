// Child process of bench/replay.js (single-agent replay), started with
// child_process.fork: opens ONE peer kind (so the replay loop stays
// monomorphic, and the process's RSS is this peer's alone), reads one parsed
// trace (prefix) from its binary cache file, then replays it once per 'rep'
// message, each time on a fresh allocator instance.
//
//   argv: PEER BINFILE NAME EVENTS MIMALLOC_SIZE
//   -> { ready: true, loadMs, objects, info }
//   <- { cmd: 'rep', sample: bool }
//   -> { ok: true, result: { ms, nsPerEvent, mem, freedAtEnd, check } }
//   <- { cmd: 'exit' }
//
// Before reporting ready, the first WARM_EVENTS events are replayed on a
// throwaway instance (kept alive) to warm the JIT.
//
// Memory (the rep with sample: true, which bench/replay.js sends first):
// VmHWM after the replay loop minus VmRSS just before the allocator was
// created (the same measure as bench/peers/native_replay.c), plus, sampled
// every SAMPLE_EVERY events and at the end, stats().committed / pagesBytes
// (mimalloc-ts) or the wasm memory size (dlmalloc-wasm, mimalloc-wasm).

import { readFileSync } from 'node:fs';
import { instantiate, loadMimallocTs, probeNoCheck } from './peers.js';
import { freeAll, replayRange } from './replay-core.js';
import { readBin } from './trace.js';

const SAMPLE_EVERY = 65536;
const WARM_EVENTS = 200_000;
const keep = [];

/** VmRSS / VmHWM of this process in bytes (Linux), else null. */
function procStatus() {
  try {
    const s = readFileSync('/proc/self/status', 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1]) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

/**
 * A peer: { fresh() -> { al, mem, memory(), end() }, info }.
 *   memory(): the peer's own memory figures right now
 *   end():    untimed, after the final frees; returns a check result string
 */
async function openPeer(name, mimallocSize) {
  switch (name) {
    case 'mimalloc-ts':
    case 'mimalloc-ts-secure4':
    case 'mimalloc-ts-secure2':
    case 'mimalloc-ts-nocheck': {
      const Allocator = await loadMimallocTs();
      const opts = { size: mimallocSize };
      if (name === 'mimalloc-ts-secure4') opts.secure = 4;
      if (name === 'mimalloc-ts-secure2') opts.secure = 2;
      if (name === 'mimalloc-ts-nocheck') {
        const why = probeNoCheck(Allocator);
        if (why) throw new Error(why);
        opts.checkFree = false;
      }
      return {
        info: `Allocator.create({ size: ${mimallocSize / 2 ** 20} MiB${opts.secure ? `, secure: ${opts.secure}` : ''}${opts.checkFree === false ? ', checkFree: false' : ''} })`,
        fresh() {
          const a = Allocator.create(opts);
          return {
            al: a,
            mem: { u8: a.u8, u32: a.u32, refresh() {} },
            memory() {
              const s = a.stats();
              return { committed: s.committed, pagesBytes: s.pagesBytes, used: s.used, metadata: s.metadata };
            },
            end() {
              const s = a.stats();
              if (s.used !== 0 || s.blocks !== 0) return `after freeing everything stats() says used ${s.used}, blocks ${s.blocks}`;
              if (name === 'mimalloc-ts-nocheck') return 'ok (check() skipped: checkFree: false leaves allocation bits stale)';
              try {
                a.check();
                return 'ok';
              } catch (e) {
                return `check() failed: ${e.message}`;
              }
            },
          };
        },
      };
    }
    case 'dlmalloc-wasm':
    case 'mimalloc-wasm': {
      const file = name === 'dlmalloc-wasm' ? 'dlmalloc.wasm' : 'mimalloc.wasm';
      let next = await instantiate(file);
      for (const f of ['malloc', 'free', 'calloc', 'realloc', 'aligned_alloc']) {
        if (typeof next[f] !== 'function') throw new Error(`${file} does not export ${f} (rebuild: npm run bench:peers)`);
      }
      return {
        info: `${name === 'dlmalloc-wasm' ? 'wasi-libc dlmalloc' : 'mimalloc v3.4.3 (src/static.c, MI_MALLOC_OVERRIDE)'}, clang -O2 wasm32-wasi, malloc/calloc/realloc/aligned_alloc/free called from JS`,
        async prepare() {
          next ??= await instantiate(file);
        },
        fresh() {
          const ex = next;
          next = null;
          if (typeof ex._initialize === 'function') ex._initialize();
          const memory = ex.memory;
          const aligned = ex.aligned_alloc;
          return {
            al: {
              malloc: ex.malloc,
              calloc: ex.calloc,
              realloc: ex.realloc,
              free: ex.free,
              mallocAligned: (n, align) => aligned(align, n),
            },
            mem: {
              u8: new Uint8Array(memory.buffer),
              u32: new Uint32Array(memory.buffer),
              refresh() {
                this.u8 = new Uint8Array(memory.buffer);
                this.u32 = new Uint32Array(memory.buffer);
              },
            },
            memory: () => ({ wasmMemory: memory.buffer.byteLength }),
            end: () => 'ok',
          };
        },
      };
    }
    default:
      throw new Error(`unknown peer ${name}`);
  }
}

const send = (m) => new Promise((resolve) => process.send(m, resolve));

async function main() {
  const [name, binFile, traceName, eventsArg, sizeArg] = process.argv.slice(2);
  const t0 = performance.now();
  const tr = readBin(binFile, { maxEvents: eventsArg === 'all' ? Infinity : Number(eventsArg), name: traceName });
  const peer = await openPeer(name, Number(sizeArg));
  const live = new Uint32Array(tr.objects + 1);
  live.fill(1); // make its pages resident before any RSS baseline
  live.fill(0);
  // Warm the JIT before the memory rep's RSS baseline (TurboFan's memory
  // would otherwise count as heap): replay a prefix on a throwaway instance
  // that stays referenced, so that it is not freed during the measured rep.
  const warm = Math.min(tr.events, WARM_EVENTS);
  {
    const inst = peer.fresh();
    keep.push(inst);
    const r = replayRange(inst.al, inst.mem, tr, live, 0, warm);
    if (r < 0) throw new Error(`warm-up: event ${-r} returned NULL`);
    freeAll(inst.al, live, tr.objects);
  }
  await send({ ready: true, loadMs: performance.now() - t0, objects: tr.objects, info: peer.info });

  const rep = async (sample) => {
    if (peer.prepare) await peer.prepare();
    live.fill(0);
    // the previous rep's allocator is garbage: collect it now, not during the timed loop
    // (node is started with --expose-gc by bench/replay.js)
    if (!sample) globalThis.gc?.();
    const n = tr.events;
    const before = procStatus();
    const inst = peer.fresh();
    const peaks = { committed: 0, pagesBytes: 0, wasmMemory: 0 };
    const takeSample = () => {
      const s = inst.memory();
      for (const k of Object.keys(peaks)) if (s[k] > peaks[k]) peaks[k] = s[k];
    };
    let done;
    const t = performance.now();
    if (sample) {
      // the same loop in chunks, memory read between chunks
      done = 0;
      while (done < n) {
        const r = replayRange(inst.al, inst.mem, tr, live, done, Math.min(n, done + SAMPLE_EVERY));
        done = r;
        if (r < 0) break;
        takeSample();
      }
    } else {
      done = replayRange(inst.al, inst.mem, tr, live, 0, n);
    }
    const ms = performance.now() - t;
    const after = procStatus();
    takeSample();
    if (done < 0) {
      const i = -done - 1;
      throw new Error(`event ${i + 1} (${'?mcarf'[tr.op[i]]} of ${tr.size[i]} bytes) returned NULL`);
    }
    const mem = { ...peaks };
    if (before && after) mem.heapRss = after.hwm - before.rss;
    const freedAtEnd = freeAll(inst.al, live, tr.objects);
    const check = inst.end();
    return { ms, nsPerEvent: (ms * 1e6) / n, events: n, sampled: !!sample, mem, freedAtEnd, check };
  };

  process.on('message', async (m) => {
    if (m.cmd === 'exit') {
      process.disconnect();
      return;
    }
    try {
      await send({ ok: true, result: await rep(m.sample) });
    } catch (e) {
      await send({ ok: false, error: String(e?.message ?? e).split('\n')[0], stack: e?.stack ?? String(e) });
    }
  });
}

try {
  await main();
} catch (e) {
  await send({ ok: false, error: String(e?.message ?? e).split('\n')[0], stack: e?.stack ?? String(e) });
  process.exit(1);
}
