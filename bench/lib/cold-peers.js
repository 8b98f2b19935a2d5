// Peer adapters of the cold replay protocol (bench/lib/replay-cold-worker.js,
// run by bench/lib/replay-cold.js for `npm run bench:replay`). One peer is
// opened per worker (a fresh isolate), so every call site stays monomorphic.
//
// openColdPeer(name, { mimallocSize }) -> { info, make() }
//   make() -> Promise of a fresh allocator instance:
//     al         malloc(n), calloc(1, n), mallocAligned(n, align), realloc(p, n),
//                free(p), all returning byte addresses (0 = NULL), with the
//                mimalloc-ts method names
//     view       { u8, refresh() -> u8 }: the bytes the addresses index;
//                refresh() re-reads the view after a wasm memory grew (the old
//                buffer is then detached: length 0)
//     footprint  () -> bytes the allocator holds by its own measure
//                (mimalloc-ts: stats().committed; wasm: memory size; JS floor:
//                its bump pointer)
//     end        () -> 'ok' or what is wrong, after everything was freed
//
// Peers:
//   mimalloc-ts, mimalloc-ts-secure4   dist/index.js, Allocator.create({ size })
//   dlmalloc-wasm, mimalloc-wasm       bench/build/{dlmalloc,mimalloc}.wasm,
//                                      exports malloc, free, calloc, realloc,
//                                      aligned_alloc, memory, _initialize
//   tlsf-wasm                          bench/build/tlsf.wasm (AssemblyScript's
//                                      TLSF): alloc, free and (when exported)
//                                      realloc; calloc and aligned allocation
//                                      are done in JS over them (bench/lib/cold-tlsf.js)
//   js-floor                           JsFloor below (not an allocator)

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { randomFillSync } from 'node:crypto';
import { BUILD_DIR, loadMimallocTs } from './peers.js';

export const COLD_PEERS = ['mimalloc-ts', 'mimalloc-ts-secure4', 'dlmalloc-wasm', 'mimalloc-wasm', 'tlsf-wasm', 'js-floor'];
export const WASM_FILES = { 'dlmalloc-wasm': 'dlmalloc.wasm', 'mimalloc-wasm': 'mimalloc.wasm', 'tlsf-wasm': 'tlsf.wasm' };

/** Why a peer cannot run (its wasm file missing), or null. */
export function coldPeerProblem(name) {
  const f = WASM_FILES[name];
  if (f && !existsSync(path.join(BUILD_DIR, f))) return `bench/build/${f} is not there (yet)`;
  return null;
}

// ---- the JS floor ---------------------------------------------------------------

const FLOOR_SMALL = 128; // classes 1..128: 8, 16, .., 1024 bytes
const FLOOR_MAX = 2 ** 30;
const FLOOR_CLASSES = FLOOR_SMALL + 1 + 4 * 21; // then 4 classes per power of two, 1 KiB .. 1 GiB
const FLOOR_SIZE = new Int32Array(FLOOR_CLASSES);
for (let c = 1; c <= FLOOR_SMALL; c++) FLOOR_SIZE[c] = c << 3;
for (let c = FLOOR_SMALL + 1; c < FLOOR_CLASSES; c++) {
  const t = c - FLOOR_SMALL - 1;
  const e = 10 + (t >> 2);
  FLOOR_SIZE[c] = 2 ** e + ((t & 3) + 1) * 2 ** (e - 2);
}

/**
 * Not an allocator: bench/lib/peers.js's FloorFreeLists extended to every
 * request of a trace. Size classes of 8 B steps up to 1 KiB, then four per
 * power of two (1.25, 1.5, 1.75, 2 x 2^e); one LIFO free list per class; a
 * bump pointer; an 8-byte header whose second word holds the class; no
 * checks; memory is never returned or coalesced. realloc stays in place when
 * the new size fits the block, else malloc + copy + free; calloc zeroes;
 * aligned allocation over-allocates and keeps (original address, -1) in the
 * 8 bytes below the aligned address. Over a SharedArrayBuffer of fixed size
 * (untouched pages cost nothing).
 */
export class JsFloor {
  constructor(bytes) {
    const sab = new SharedArrayBuffer(bytes);
    this.u8 = new Uint8Array(sab);
    this.mem = new Int32Array(sab);
    this.f64 = new Float64Array(sab);
    this.heads = new Int32Array(FLOOR_CLASSES);
    this.size = FLOOR_SIZE;
    this.top = 16;
    this.end = bytes;
  }

  malloc(n) {
    let c;
    if (n <= 1024) c = n <= 8 ? 1 : (n + 7) >>> 3;
    else {
      if (n > FLOOR_MAX) return 0;
      const e = 31 - Math.clz32(n - 1);
      c = FLOOR_SMALL + 1 + ((e - 10) << 2) + ((n - 1 - 2 ** e) >>> (e - 2));
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

  free(q) {
    if (q === 0) return;
    let p = q;
    let c = this.mem[(q >>> 2) - 1];
    if (c < 0) {
      p = this.mem[(q >>> 2) - 2];
      c = this.mem[(p >>> 2) - 1];
    }
    this.mem[p >>> 2] = this.heads[c];
    this.heads[c] = p;
  }

  usable(q) {
    const c = this.mem[(q >>> 2) - 1];
    if (c >= 0) return this.size[c];
    const p = this.mem[(q >>> 2) - 2];
    return this.size[this.mem[(p >>> 2) - 1]] - (q - p);
  }

  calloc(count, size) {
    const n = count * size;
    const p = this.malloc(n);
    if (p !== 0) this.u8.fill(0, p, p + n);
    return p;
  }

  mallocAligned(n, align) {
    if (align <= 8) return this.malloc(n);
    const p = this.malloc(n + align);
    if (p === 0) return 0;
    const q = (p + align - 1) & -align;
    if (q !== p) {
      this.mem[(q >>> 2) - 2] = p;
      this.mem[(q >>> 2) - 1] = -1;
    }
    return q;
  }

  realloc(q, n) {
    if (q === 0) return this.malloc(n);
    const u = this.usable(q);
    if (n <= u) return q;
    const np = this.malloc(n);
    if (np === 0) return 0;
    if (u >= 64) this.u8.copyWithin(np, q, q + u);
    else {
      // small blocks: 8-byte words (as bench/lib/peers.js's floor; copyWithin's call costs more here)
      const f = this.f64;
      for (let i = q >>> 3, j = np >>> 3, e = i + (u >>> 3); i < e; i++, j++) f[j] = f[i];
    }
    this.free(q);
    return np;
  }
}

// ---- wasm loading ---------------------------------------------------------------------

/**
 * Imports for a module: a minimal WASI (random_get, clock_time_get and
 * fd_write to stderr work; environ_* and args_* report an empty list, as
 * wasi-libc exits when it cannot read the environment, which mimalloc.wasm
 * reads for its MIMALLOC_* options; everything else answers ENOSYS;
 * proc_exit throws) and env.abort. Anything else is an error.
 */
function makeImports(module, getMemory) {
  const imports = {};
  const dv = () => new DataView(getMemory().buffer);
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
        case 'random_get':
          fn = (buf, len) => {
            randomFillSync(new Uint8Array(getMemory().buffer, buf >>> 0, len >>> 0));
            return 0;
          };
          break;
        case 'clock_time_get':
          fn = (id, precision, out) => {
            dv().setBigUint64(out >>> 0, process.hrtime.bigint(), true);
            return 0;
          };
          break;
        case 'environ_sizes_get':
        case 'args_sizes_get':
          fn = (countOut, sizeOut) => {
            const d = dv();
            d.setUint32(countOut >>> 0, 0, true);
            d.setUint32(sizeOut >>> 0, 0, true);
            return 0;
          };
          break;
        case 'environ_get':
        case 'args_get':
          fn = () => 0;
          break;
        case 'fd_write':
          fn = (fd, iovs, iovsLen, nwritten) => {
            const d = dv();
            let total = 0;
            for (let j = 0; j < iovsLen; j++) {
              const base = d.getUint32(iovs + 8 * j, true);
              const len = d.getUint32(iovs + 8 * j + 4, true);
              process.stderr.write(Buffer.from(getMemory().buffer, base, len));
              total += len;
            }
            d.setUint32(nwritten >>> 0, total, true);
            return 0;
          };
          break;
        default:
          fn = () => 52; // ENOSYS
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

async function compileWasm(file) {
  const bytes = readFileSync(path.join(BUILD_DIR, file));
  return WebAssembly.compile(bytes);
}

async function instantiateWasm(module) {
  let memory = null;
  const instance = await WebAssembly.instantiate(module, makeImports(module, () => memory));
  memory = instance.exports.memory;
  if (!(memory instanceof WebAssembly.Memory)) throw new Error('the module does not export its memory');
  return instance.exports;
}

function wasmView(memory) {
  return {
    u8: new Uint8Array(memory.buffer),
    refresh() {
      if (this.u8.buffer !== memory.buffer || this.u8.length === 0) this.u8 = new Uint8Array(memory.buffer);
      return this.u8;
    },
  };
}

// ---- openColdPeer ---------------------------------------------------------------------

let tlsfInstances = 0;

export async function openColdPeer(name, { mimallocSize = 256 * 2 ** 20, floorBytes = 256 * 2 ** 20 } = {}) {
  switch (name) {
    case 'mimalloc-ts':
    case 'mimalloc-ts-secure4': {
      const Allocator = await loadMimallocTs();
      const opts = { size: mimallocSize };
      if (name === 'mimalloc-ts-secure4') opts.secure = 4;
      return {
        info: `Allocator.create({ size: ${mimallocSize / 2 ** 20} MiB${opts.secure ? `, secure: ${opts.secure}` : ''} })`,
        async make() {
          const a = Allocator.create(opts);
          return {
            al: a,
            view: {
              u8: a.u8,
              refresh() {
                this.u8 = a.u8;
                return this.u8;
              },
            },
            footprint: () => a.stats().committed,
            end() {
              const s = a.stats();
              if (s.used !== 0 || s.blocks !== 0) return `after freeing everything stats() says used ${s.used}, blocks ${s.blocks}`;
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
      const file = WASM_FILES[name];
      const module = await compileWasm(file);
      const exp = WebAssembly.Module.exports(module).map((e) => e.name);
      for (const f of ['malloc', 'free', 'calloc', 'realloc', 'aligned_alloc', 'memory']) {
        if (!exp.includes(f)) throw new Error(`${file} does not export ${f}`);
      }
      return {
        info:
          name === 'dlmalloc-wasm'
            ? 'wasi-libc dlmalloc, clang -O2 wasm32-wasi; malloc/calloc/realloc/aligned_alloc/free called from JS'
            : 'mimalloc compiled to wasm32-wasi; malloc/calloc/realloc/aligned_alloc/free called from JS',
        async make() {
          const ex = await instantiateWasm(module);
          if (typeof ex._initialize === 'function') ex._initialize();
          const aligned = ex.aligned_alloc;
          const memory = ex.memory;
          return {
            al: {
              malloc: ex.malloc,
              calloc: ex.calloc,
              realloc: ex.realloc,
              free: ex.free,
              mallocAligned: (n, align) => aligned(align, n),
            },
            view: wasmView(memory),
            footprint: () => memory.buffer.byteLength,
            end: () => 'ok',
          };
        },
      };
    }
    case 'tlsf-wasm': {
      const module = await compileWasm(WASM_FILES[name]);
      const exp = WebAssembly.Module.exports(module).map((e) => e.name);
      for (const f of ['alloc', 'free', 'memory']) if (!exp.includes(f)) throw new Error(`tlsf.wasm does not export ${f}`);
      return {
        info: `AssemblyScript TLSF (asc --runtime minimal -O3 --noAssert), alloc/free${exp.includes('realloc') ? '/realloc' : ''} from JS; calloc (alloc + fill)${exp.includes('realloc') ? '' : ', realloc (in place when it fits, else alloc + copy + free)'} and aligned (over-allocation) in JS over them`,
        async make() {
          const ex = await instantiateWasm(module);
          const { TlsfAdapter } = await import(`./cold-tlsf.js?instance=${++tlsfInstances}`);
          const t = new TlsfAdapter(ex);
          return {
            al: t,
            view: wasmView(ex.memory),
            footprint: () => ex.memory.buffer.byteLength,
            end: () => 'ok',
          };
        },
      };
    }
    case 'js-floor':
      return {
        info: `reference floor, not an allocator: 8-byte classes to 1 KiB, then 4 per power of two; LIFO lists, bump pointer, 8-byte header, no checks, nothing returned; a ${floorBytes / 2 ** 20} MiB SharedArrayBuffer`,
        async make() {
          const f = new JsFloor(floorBytes);
          return {
            al: f,
            view: { u8: f.u8, refresh: () => f.u8 },
            footprint: () => f.top,
            end: () => 'ok',
          };
        },
      };
    default:
      throw new Error(`unknown cold peer ${name}`);
  }
}
