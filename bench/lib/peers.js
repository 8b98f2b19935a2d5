// Peer adapters for bench/micro.js. Each returns an object with
//   al        something with malloc(n) -> address (0 = NULL), free(p) and
//             realloc(p, n) -> address (0 = NULL, p stays live)
//   memBytes  () -> current size of the memory the addresses index
//   view      () -> a DataView over that memory as it is now (a wasm
//             memory's ArrayBuffer is replaced when it grows)
//   batchA    optional (sizes, nblocks, ntables, rounds) -> ms, workload (a)
//             run inside wasm with one call
//   close()   release the peer (mimalloc-ts: detach)
//   info      a short description for the report
// Only one peer is opened per worker, so the timed loops stay monomorphic.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BENCH_DIR = path.resolve(here, '..');
export const BUILD_DIR = path.join(BENCH_DIR, 'build');
// MIMALLOC_TS_DIST=<dir> measures another build (e.g. the previous commit's dist/, for a before/after run)
export const DIST_INDEX = process.env.MIMALLOC_TS_DIST
  ? path.resolve(process.env.MIMALLOC_TS_DIST, 'index.js')
  : path.resolve(BENCH_DIR, '..', 'dist', 'index.js');

export const MIMALLOC_TS_SIZE = 256 * 1024 * 1024;
const THING_POOL_SIZE = 64 * 1024 * 1024;

export const JS_PEERS = ['mimalloc-ts', 'mimalloc-ts-nocheck', 'mimalloc-ts-secure4', 'dlmalloc-wasm', 'mimalloc-wasm', 'tlsf-wasm', 'thing-malloc', 'js-floor'];

const FLOOR_SMALL = 128; // classes 0..127: c * 8 bytes (up to 1016 B)
const FLOOR_MAX = 2 ** 30;
// then four classes per power of two (1.25, 1.5, 1.75, 2 x 2^e), up to 1 GiB:
// class 128 + 4 (e - 9) + s holds (5 + s) << (e - 2) bytes, for requests n
// with 2^e <= n - 1 < 2^(e+1) (classes 128..130 are unused: e = 9 starts at 1017)
const FLOOR_CLASSES = FLOOR_SMALL + 4 * 21;
const FLOOR_SIZE = new Int32Array(FLOOR_CLASSES);
for (let c = 0; c < FLOOR_SMALL; c++) FLOOR_SIZE[c] = c << 3;
for (let c = FLOOR_SMALL; c < FLOOR_CLASSES; c++) {
  const e = 9 + ((c - FLOOR_SMALL) >> 2);
  FLOOR_SIZE[c] = (5 + ((c - FLOOR_SMALL) & 3)) << (e - 2);
}

/**
 * Not an allocator: the least work a JavaScript malloc/free/realloc over a
 * typed array can do (8-byte size classes up to 1016 B, then four per power
 * of two up to 1 GiB; one LIFO list per class; a bump pointer; an 8-byte
 * header whose second word holds the class; no checks, no page structure,
 * never returns memory or coalesces). realloc stays in place when the new
 * size fits the block's class, else malloc + copy of the old class size +
 * free (Uint8Array.copyWithin from 64 bytes, an 8-byte Float64Array loop
 * below). It shows how close to native a JS allocator can get here.
 */
class FloorFreeLists {
  constructor(bytes) {
    const sab = new SharedArrayBuffer(bytes);
    this.mem = new Int32Array(sab);
    this.u8 = new Uint8Array(sab);
    this.f64 = new Float64Array(sab);
    this.heads = new Int32Array(FLOOR_CLASSES);
    this.size = FLOOR_SIZE;
    this.top = 16;
    this.end = bytes;
  }

  malloc(n) {
    let c = (n + 7) >>> 3;
    if (c >= FLOOR_SMALL) {
      if (n > FLOOR_MAX) return 0;
      const e = 31 - Math.clz32(n - 1);
      c = FLOOR_SMALL + ((e - 9) << 2) + (((n - 1) >>> (e - 2)) & 3);
    }
    const b = this.heads[c];
    if (b !== 0) {
      this.heads[c] = this.mem[b >>> 2];
      return b;
    }
    const p = this.top + 8;
    const next = p + this.size[c];
    if (next > this.end) return 0;
    this.top = next;
    this.mem[(p >>> 2) - 1] = c;
    return p;
  }

  free(p) {
    const c = this.mem[(p >>> 2) - 1];
    this.mem[p >>> 2] = this.heads[c];
    this.heads[c] = p;
  }

  realloc(p, n) {
    const u = this.size[this.mem[(p >>> 2) - 1]];
    if (n <= u) return p;
    const q = this.malloc(n);
    if (q === 0) return 0;
    if (u >= 64) this.u8.copyWithin(q, p, p + u);
    else {
      const f = this.f64;
      for (let i = p >>> 3, j = q >>> 3, e = i + (u >>> 3); i < e; i++, j++) f[j] = f[i];
    }
    this.free(p);
    return q;
  }
}

/** Load dist/index.js; throws a readable Error when the allocator is not there. */
export async function loadMimallocTs() {
  let mod;
  try {
    mod = await import(DIST_INDEX);
  } catch (e) {
    throw new Error(`cannot import dist/index.js (${e.code ?? e.message})`);
  }
  if (typeof mod.Allocator?.create !== 'function') throw new Error('dist/index.js does not export Allocator.create');
  return mod.Allocator;
}

/**
 * Does `checkFree: false` really switch the double-free check off? Makes a
 * throwaway allocator, frees one block twice, and reports whether it threw.
 * Returns null when it is in effect, or a reason string.
 */
export function probeNoCheck(Allocator) {
  let a;
  try {
    a = Allocator.create({ size: MIMALLOC_TS_SIZE, checkFree: false });
  } catch (e) {
    return `Allocator.create({ checkFree: false }) threw: ${e.message}`;
  }
  const p = a.malloc(16);
  a.free(p);
  try {
    a.free(p);
  } catch {
    return 'checkFree: false is ignored (a double free still throws)';
  }
  return null;
}

function wasmMemBytes(memory) {
  return () => memory.buffer.byteLength;
}

/**
 * Imports for a module: a minimal WASI plus env.abort. Everything answers
 * ENOSYS except: proc_exit throws; environ_sizes_get/environ_get report an
 * empty environment (mimalloc.wasm reads MIMALLOC_* options through getenv,
 * and wasi-libc exits with code 71 when the environment cannot be read);
 * clock_time_get gives a monotonic time in ns (mimalloc.wasm reads the time
 * for its purge delays, about once per 60 malloc/free calls). dlmalloc.wasm
 * and tlsf.wasm import none of these three. `getMemory` returns the
 * instance's memory (set once it exists).
 */
function makeImports(module, getMemory) {
  const imports = {};
  const view = () => new DataView(getMemory().buffer);
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.kind !== 'function') throw new Error(`unsupported import ${imp.module}.${imp.name} (${imp.kind})`);
    let fn;
    if (imp.module === 'wasi_snapshot_preview1') {
      switch (imp.name) {
        case 'proc_exit':
          fn = (code) => {
            throw new Error(`wasm called proc_exit(${code})`);
          };
          break;
        case 'environ_sizes_get':
          fn = (countOut, bytesOut) => {
            const v = view();
            v.setUint32(countOut >>> 0, 0, true);
            v.setUint32(bytesOut >>> 0, 0, true);
            return 0;
          };
          break;
        case 'environ_get':
          fn = () => 0; // no variables: nothing to write
          break;
        case 'clock_time_get':
          fn = (id, precision, out) => {
            view().setBigUint64(out >>> 0, process.hrtime.bigint(), true);
            return 0;
          };
          break;
        default:
          fn = () => 52; // ENOSYS: malloc/free need no other host call
      }
    } else if (imp.module === 'env' && imp.name === 'abort') {
      fn = () => {
        throw new Error('wasm abort()');
      };
    } else {
      throw new Error(`unexpected import ${imp.module}.${imp.name}`);
    }
    (imports[imp.module] ??= {})[imp.name] = fn;
  }
  return imports;
}

export async function instantiate(file) {
  const bytes = readFileSync(path.join(BUILD_DIR, file));
  const module = await WebAssembly.compile(bytes);
  let memory = null;
  const instance = await WebAssembly.instantiate(module, makeImports(module, () => memory));
  memory = instance.exports.memory;
  return instance.exports;
}

/**
 * Batched (a) inside a wasm module: the size table and the pointer array are
 * allocated once with the module's own malloc (untimed, kept for the
 * module's lifetime), then one call runs all rounds. `loop` is the module's
 * batch export.
 */
function makeBatchA(ex, mallocFn, loop) {
  let sizesPtr = 0;
  let ptrsPtr = 0;
  return (sizes, nblocks, ntables, rounds) => {
    if (sizesPtr === 0) {
      sizesPtr = mallocFn(sizes.length * 4) >>> 0;
      ptrsPtr = mallocFn(nblocks * 8) >>> 0;
      if (!sizesPtr || !ptrsPtr) throw new Error('batched: malloc failed');
      // a fresh view: the buffer object changes whenever memory grows
      new Uint32Array(ex.memory.buffer, sizesPtr, sizes.length).set(sizes);
    }
    const t0 = performance.now();
    const rc = loop(sizesPtr, nblocks, ntables, rounds, ptrsPtr);
    const t = performance.now() - t0;
    if (rc !== 0) throw new Error('batched: malloc returned NULL inside wasm');
    return t;
  };
}

/**
 * `realloc`: the worker runs (d) (thing-malloc then gets its realloc fix; the
 * other workloads keep the plain MemPool).
 */
export async function openPeer(name, { handle, realloc = false } = {}) {
  switch (name) {
    case 'mimalloc-ts':
    case 'mimalloc-ts-secure4':
    case 'mimalloc-ts-nocheck': {
      const Allocator = await loadMimallocTs();
      let a;
      if (handle !== undefined) a = Allocator.attach(handle);
      else if (name === 'mimalloc-ts') a = Allocator.create({ size: MIMALLOC_TS_SIZE });
      else if (name === 'mimalloc-ts-secure4') a = Allocator.create({ size: MIMALLOC_TS_SIZE, secure: 4 });
      else {
        const why = probeNoCheck(Allocator);
        if (why) throw new Error(why);
        a = Allocator.create({ size: MIMALLOC_TS_SIZE, checkFree: false });
      }
      return {
        al: a,
        memBytes: () => a.u8?.length ?? 0,
        view: () => new DataView(a.buffer),
        close: () => {
          if (handle !== undefined) a.detach();
        },
        info:
          (handle !== undefined ? 'Allocator.attach(handle) in a worker' : 'Allocator.create({ size: 256 MiB' +
            (name === 'mimalloc-ts-nocheck' ? ', checkFree: false' : name === 'mimalloc-ts-secure4' ? ', secure: 4' : '') + ' })') + ', SharedArrayBuffer',
      };
    }
    case 'dlmalloc-wasm':
    case 'mimalloc-wasm': {
      const ex = await instantiate(name === 'dlmalloc-wasm' ? 'dlmalloc.wasm' : 'mimalloc.wasm');
      if (typeof ex._initialize === 'function') ex._initialize();
      return {
        al: { malloc: ex.malloc, free: ex.free, realloc: ex.realloc },
        memBytes: wasmMemBytes(ex.memory),
        view: () => new DataView(ex.memory.buffer),
        batchA: makeBatchA(ex, ex.malloc, ex.bench_a),
        close() {},
        info:
          name === 'dlmalloc-wasm'
            ? 'wasi-libc malloc (dlmalloc), clang -O2 wasm32-wasi, exports called from JS'
            : 'mimalloc v3.4.3 (src/static.c, MI_MALLOC_OVERRIDE), clang -O2 wasm32-wasi, exports called from JS',
      };
    }
    case 'tlsf-wasm': {
      const ex = await instantiate('tlsf.wasm');
      return {
        al: {
          malloc: ex.alloc,
          free: ex.free,
          realloc:
            ex.realloc ??
            (() => {
              throw new Error('tlsf.wasm has no realloc export (an old build: bash bench/peers/build.sh)');
            }),
        },
        memBytes: wasmMemBytes(ex.memory),
        view: () => new DataView(ex.memory.buffer),
        batchA: makeBatchA(ex, ex.alloc, ex.benchA),
        close() {},
        info: 'AssemblyScript heap.alloc/free/realloc (TLSF), asc --runtime minimal -O3 --noAssert',
      };
    }
    case 'thing-malloc': {
      const { MemPool } = await import('@thi.ng/malloc');
      // @thi.ng/malloc 6.1.150: a realloc that moves calls this.free(block) with the
      // block's header address where free() expects the data address, so the old
      // block is never freed (3 used blocks after malloc, malloc, realloc-move; (d)
      // exhausts even a 256 MiB pool within 50,000 steps). For (d) the old block is
      // freed here after a move; it is still intact and in the used list, so this
      // is the free MemPool meant to do (one more O(live) walk of the used list).
      class ReallocFreesOld extends MemPool {
        realloc(p, n) {
          const q = super.realloc(p, n);
          if (q !== 0 && q !== p) this.free(p);
          return q;
        }
      }
      const pool = new (realloc ? ReallocFreesOld : MemPool)({ buf: new ArrayBuffer(THING_POOL_SIZE) });
      return {
        al: pool,
        memBytes: () => THING_POOL_SIZE,
        view: () => new DataView(pool.buf),
        close() {},
        info:
          '@thi.ng/malloc MemPool over a 64 MiB ArrayBuffer (defaults: align 8, compact, split)' +
          (realloc ? "; realloc followed by free(old) after a move (MemPool's own leaks the old block)" : ''),
      };
    }
    case 'js-floor': {
      const fl = new FloorFreeLists(THING_POOL_SIZE);
      return {
        al: fl,
        memBytes: () => THING_POOL_SIZE,
        view: () => new DataView(fl.mem.buffer),
        close() {},
        info: 'reference floor, not an allocator: size-class LIFO lists over an Int32Array on a SharedArrayBuffer, no checks; realloc in place within the class, else malloc + copy + free',
      };
    }
    default:
      throw new Error(`unknown peer ${name}`);
  }
}
