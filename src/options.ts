/**
 * options.ts — every option of `Allocator.create` and `Allocator.attach`,
 * with its default and constraint, and their validation.
 *
 * Validation is complete before anything is created or written: a bad
 * option throws (TypeError for a wrong type, RangeError for a bad value, an
 * Error naming any unknown option) and leaves a passed `buffer` untouched.
 * Messages name the option and show the offending value.
 *
 * Environment (read once per `create`, in Node; ignored where there is no
 * `process.env`): `MIMALLOC_DEBUG=1` makes `debug` default to true.
 */
import type { ErrorHandler } from './errors.js';
import { show } from './errors.js';
import type { Arena } from './arena.js';
import { type Backing, Growth } from './layout.js';
import { C } from './types.js';

/**
 * A WebAssembly.Memory, as far as the allocator uses it (the library is typed
 * without the DOM or wasm typings): pass the Memory itself.
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(deltaPages: number): number;
}

/** Is x a WebAssembly.Memory of this realm? */
function isWasmMemory(x: unknown): x is WasmMemory {
  const W = (globalThis as { WebAssembly?: { Memory?: new (...a: never[]) => unknown } }).WebAssembly;
  return W?.Memory !== undefined && x instanceof W.Memory;
}

/** Options of `Allocator.create`. */
export interface AllocatorOptions {
  /**
   * Bytes to reserve for a new buffer. Untouched memory costs nothing (the
   * operating system commits a SharedArrayBuffer's pages when first written).
   *
   * @defaultValue 256 MiB
   * Constraint: an integer, 1 MiB ≤ size ≤ 4 GiB − 16 KiB; rounded up to a
   * multiple of 16 KiB. Not with `buffer` (whose byteLength is the size).
   */
  size?: number;
  /**
   * The most bytes the buffer may grow to: with `maxSize` > `size`, a new
   * buffer is growable (a growable SharedArrayBuffer; with `shared: false`
   * a resizable ArrayBuffer) that starts at `size` and grows when its
   * slices run out, a quarter of what exists or more at a time. With
   * `buffer`: a cap below its maxByteLength. With `memory`: the byte length
   * `memory.grow` may take it to.
   *
   * @defaultValue `size` (no growth); with a growable `buffer` its
   * maxByteLength; with `memory` 4 GiB − 64 KiB (its own maximum, where it
   * has one, stops growth earlier: NULL and ENOMEM then)
   * Constraint: an integer, `size` ≤ maxSize ≤ 4 GiB − 16 KiB.
   */
  maxSize?: number;
  /**
   * Manage this WebAssembly.Memory (shared or not) from byte `base` up,
   * growing it with `memory.grow` when slices run out. Addresses are its
   * byte offsets, so a module can use them as pointers. Nothing below
   * `base` is ever written. A non-shared memory detaches its old buffer when
   * it grows: `u8`, `f64`, … are current again when next read.
   *
   * @defaultValue none
   * Constraint: a WebAssembly.Memory; not with `buffer`, `size` or `shared`.
   */
  memory?: WasmMemory;
  /**
   * With `memory` (or `buffer`): the first byte the allocator may use
   * (rounded up to 16 KiB), e.g. a module's `__heap_base`. Its first 4 KiB
   * then hold nothing (the guard that address 0 has without `base`).
   *
   * @defaultValue 0
   * Constraint: an integer, 0 ≤ base, with at least 1 MiB above it once grown.
   */
  base?: number;
  /**
   * A resizable ArrayBuffer (`shared: false` with `maxSize`, or such a
   * `buffer`) gives its free tail back (`resize`) once it has stayed free
   * this many milliseconds (mimalloc's `purge_delay`): the last arena
   * shrinks to its highest page, rounded up to 1 MiB, never below the size
   * it was created with; `stats().reserved` shows it. −1: never. Other
   * backings cannot shrink (a SharedArrayBuffer or a wasm memory only
   * grows), and ignore it.
   *
   * @defaultValue 10
   * Constraint: an integer, −1 ≤ purgeDelay ≤ 2^31 − 1.
   */
  purgeDelay?: number;
  /**
   * true: a SharedArrayBuffer that workers can attach to (`handle`). false: a
   * plain ArrayBuffer, for this agent only (and where SharedArrayBuffer is
   * unavailable: a page without cross-origin isolation).
   *
   * @defaultValue true
   * Constraint: a boolean. Not with `buffer`.
   */
  shared?: boolean;
  /**
   * Manage this existing buffer instead of creating one. Its contents are
   * overwritten (the allocator's header is written at offset 0); its
   * byteLength, rounded down to a multiple of 16 KiB, is the size.
   *
   * @defaultValue none: a new buffer of `size` bytes
   * Constraint: a SharedArrayBuffer or ArrayBuffer of at least 1 MiB.
   */
  buffer?: SharedArrayBuffer | ArrayBuffer;
  /**
   * Error handler `fn(code, message, address)`, called after a misuse has
   * been refused (the heap is consistent whichever way it returns or throws).
   * Also settable later with `setErrorHandler`.
   *
   * @defaultValue throw AllocatorError for EINVAL, EAGAIN and EFAULT; return
   * NULL quietly for ENOMEM and EOVERFLOW
   * Constraint: a function.
   */
  onError?: ErrorHandler;
  /**
   * Secure mode, mimalloc's ladder. ≥ 1: at least 16 bytes of guard space
   * after the last block of every page, verified by check(). ≥ 2: new blocks
   * go onto free lists in a random order. ≥ 3: free-list links encoded with
   * per-page random keys (a corrupted link is EFAULT and the list truncated,
   * never followed) and every block ends in a canary and its requested size
   * (usableSize = the request; an overrun is EFAULT), with fast paths of
   * their own. 4 = 3. A property of the buffer: attaching agents inherit it.
   *
   * @defaultValue 0
   * Constraint: an integer 0..4.
   */
  secure?: 0 | 1 | 2 | 3 | 4;
  /**
   * Debug mode: fresh blocks filled with 0xD0, freed ones with 0xDF (checked
   * when reused: EFAULT "write after free"), 8 bytes of padding after every
   * block holding a canary and the requested size (checked at free and by
   * check(): EFAULT "buffer overflow"), `usableSize` the exact request, and a
   * leak report at detach(). Every call takes the generic paths. A property
   * of the buffer: attaching agents inherit it.
   *
   * @defaultValue false, or true when the environment has MIMALLOC_DEBUG set
   * to anything but "" or "0"
   * Constraint: a boolean.
   */
  debug?: boolean;
  /**
   * Record the JavaScript stack of every Nth allocation this agent makes
   * (1: every allocation). `leakReport()` (and debug mode's report at
   * detach()) shows the stack with each live block that has one. Per agent
   * (stacks are JavaScript objects, not in the buffer); each recorded
   * allocation costs a stack capture (a few µs), and while it is on, this
   * agent's calls take the generic paths.
   *
   * @defaultValue 0 (off)
   * Constraint: an integer 0 ≤ N ≤ 2^31.
   */
  allocStacks?: number;
  /**
   * false is a *measuring instrument* for the benchmarks only: the fast
   * paths then keep no allocation bits, so an invalid or double free goes
   * undetected and corrupts the heap, and check() reports stale bits. It
   * exists to measure what detection costs (BENCHMARKS.md). A property of
   * the buffer; ignored at secure ≥ 3.
   *
   * @defaultValue true
   * Constraint: a boolean.
   */
  checkFree?: boolean;
}

/** Options of `Allocator.attach`. */
export interface AttachOptions {
  /** As `AllocatorOptions.onError`, for the attaching agent. @defaultValue the default handler */
  onError?: ErrorHandler;
  /** As `AllocatorOptions.allocStacks`, for the attaching agent. @defaultValue 0 */
  allocStacks?: number;
}

/** What a worker needs to attach: structured-cloneable, postMessage it. */
export interface AllocatorHandle {
  readonly kind: 'mimalloc-ts';
  /** The buffer (for a `memory`: its buffer when the handle was made; attach reads the memory's current one). */
  readonly buffer: SharedArrayBuffer;
  /** A shared WebAssembly.Memory the allocator manages, if it was created with one. */
  readonly memory?: WasmMemory;
  /** First byte of the allocator's region (AllocatorOptions.base). */
  readonly base?: number;
  /**
   * Set in the handle `watch(worker)` returns: the thread the agents that
   * attach with it belong to (a Web Worker's token, < 0; for a Node worker
   * its threadId, used only where attach cannot read its own thread id).
   */
  readonly thread?: number;
}

/**
 * What `watch` and `terminate` accept: a Node `worker_threads` Worker (it has
 * a `threadId` and an 'exit' event) or a Web Worker (only `terminate()`).
 */
export interface WatchableWorker {
  terminate(): unknown;
  readonly threadId?: number;
  once?(event: 'exit', listener: (exitCode: number) => void): unknown;
}

/** @internal `AllocatorOptions`, validated and with every default applied. */
export interface CreateConfig {
  /** The buffer or memory to format: new (known to be zero) or the user's. */
  backing: Backing;
  /** End slice of the first arena, and the end slice growth may reach. */
  end: number;
  maxEnd: number;
  knownZero: boolean;
  /** AllocatorOptions.purgeDelay (−1 unless the backing is a resizable ArrayBuffer). */
  purgeDelay: number;
  onError: ErrorHandler | undefined;
  secure: number;
  debug: boolean;
  allocStacks: number;
  checkFree: boolean;
}

/** @internal `AttachOptions`, validated. */
export interface AttachConfig {
  backing: Backing;
  onError: ErrorHandler | undefined;
  allocStacks: number;
  /** The handle's `thread`, if any. */
  thread: number | undefined;
}

const CREATE_KEYS = new Set(['size', 'maxSize', 'shared', 'buffer', 'memory', 'base', 'purgeDelay', 'onError', 'secure', 'debug', 'allocStacks', 'checkFree']);
const ATTACH_KEYS = new Set(['onError', 'allocStacks']);
const LEAK_KEYS = new Set(['all']);

function isSab(b: unknown): b is SharedArrayBuffer {
  return typeof SharedArrayBuffer !== 'undefined' && b instanceof SharedArrayBuffer;
}

/** The options object itself, and no option we do not know (a misspelt name must not silently mean its default). */
function checkObject(opts: unknown, known: Set<string>, what: string): Record<string, unknown> {
  if (opts === undefined) return {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw new TypeError(`${what} options must be an object, got ${show(opts)}`);
  const unknown = Object.keys(opts).filter((k) => !known.has(k));
  if (unknown.length !== 0) {
    throw new TypeError(`${what}: unknown option${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (known: ${[...known].join(', ')})`);
  }
  const own: Record<string, unknown> = {}; // own properties only: an inherited `size` is not an option either
  for (const k of Object.keys(opts)) own[k] = (opts as Record<string, unknown>)[k];
  return own;
}

function checkBoolean(o: Record<string, unknown>, name: string, dflt: boolean): boolean {
  const v = o[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new TypeError(`options.${name} must be a boolean, got ${show(v)}`);
  return v;
}

function checkInteger(o: Record<string, unknown>, name: string, dflt: number, lo: number, hi: number): number {
  const v = o[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw new TypeError(`options.${name} must be an integer ${lo}..${hi}, got ${show(v)}`);
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`options.${name} must be an integer ${lo}..${hi}, got ${v}`);
  return v;
}

function checkHandler(o: Record<string, unknown>): ErrorHandler | undefined {
  const v = o.onError;
  if (v === undefined) return undefined;
  if (typeof v !== 'function') throw new TypeError(`options.onError must be a function, got ${show(v)}`);
  return v as ErrorHandler;
}

/** MIMALLOC_DEBUG in Node's environment: debug mode by default. */
function envDebug(): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const v = env?.MIMALLOC_DEBUG;
  return v !== undefined && v !== '' && v !== '0';
}

/**
 * @internal Validate `Allocator.create`'s options, then make the buffer
 * (nothing is allocated or written before every option has passed).
 */
export function parseCreateOptions(opts: unknown): CreateConfig {
  const o = checkObject(opts, CREATE_KEYS, 'Allocator.create');
  const onError = checkHandler(o);
  const secure = checkInteger(o, 'secure', 0, 0, 4);
  const debug = checkBoolean(o, 'debug', false) || (o.debug === undefined && envDebug());
  const allocStacks = checkInteger(o, 'allocStacks', 0, 0, 2 ** 31);
  const checkFree = checkBoolean(o, 'checkFree', true);
  const shared = checkBoolean(o, 'shared', true);
  const base = checkInteger(o, 'base', 0, 0, C.MAX_SIZE - C.MIN_SIZE);
  const baseSlice = Math.ceil(base / C.SLICE_SIZE);
  const purge = checkInteger(o, 'purgeDelay', 10, -1, 2 ** 31 - 1);
  const rest = { onError, secure, debug, allocStacks, checkFree, purgeDelay: -1 };
  if (o.memory !== undefined) {
    const mm = o.memory;
    if (!isWasmMemory(mm)) throw new TypeError(`options.memory must be a WebAssembly.Memory, got ${show(mm)}`);
    for (const k of ['buffer', 'size', 'shared']) {
      if (o[k] !== undefined) throw new TypeError(`options.${k} cannot be given with options.memory (the memory is the buffer)`);
    }
    const maxSize = checkInteger(o, 'maxSize', C.MAX_SIZE - (65536 - C.SLICE_SIZE), C.MIN_SIZE, C.MAX_SIZE);
    const maxEnd = Math.floor(maxSize / C.SLICE_SIZE);
    const want = baseSlice + (C.MIN_SIZE >>> C.SLICE_SHIFT); // at least 1 MiB above base: grown now if the memory is shorter
    if (want > maxEnd) throw new RangeError(`options.maxSize (${maxSize}) leaves less than 1 MiB above options.base (${base})`);
    const have = Math.floor(mm.buffer.byteLength / C.SLICE_SIZE);
    if (have < want) {
      try {
        mm.grow(Math.ceil((want * C.SLICE_SIZE - mm.buffer.byteLength) / 65536));
      } catch (e) {
        throw new RangeError(`options.memory holds ${mm.buffer.byteLength} bytes and cannot grow to 1 MiB above options.base (${base}): ${(e as Error).message}`);
      }
    }
    const end = Math.min(Math.floor(mm.buffer.byteLength / C.SLICE_SIZE), maxEnd);
    return { backing: { buffer: mm.buffer, memory: mm, growth: Growth.MEMORY, baseSlice }, end, maxEnd: Math.max(end, maxEnd), knownZero: false, ...rest };
  }
  if (o.buffer !== undefined) {
    const b = o.buffer;
    if (!isSab(b) && !(b instanceof ArrayBuffer)) throw new TypeError(`options.buffer must be a SharedArrayBuffer or ArrayBuffer, got ${show(b)}`);
    if (o.size !== undefined || o.shared !== undefined) {
      throw new TypeError(`options.${o.size !== undefined ? 'size' : 'shared'} cannot be given with options.buffer (the buffer's byteLength is the size, its kind says shared)`);
    }
    const g = b as { growable?: boolean; resizable?: boolean; maxByteLength?: number };
    const growth = g.growable === true ? Growth.SAB : g.resizable === true ? Growth.RAB : Growth.FIXED;
    const top = growth === Growth.FIXED ? b.byteLength : Math.min(g.maxByteLength ?? b.byteLength, C.MAX_SIZE);
    if (b.byteLength - base < C.MIN_SIZE) throw new RangeError(`options.buffer must hold at least ${C.MIN_SIZE} bytes above options.base (${base}), got ${b.byteLength}`);
    if (roundedSize(b) > C.MAX_SIZE) {
      throw new RangeError(`options.buffer must hold at most ${C.MAX_SIZE} bytes (4 GiB − 16 KiB; its byteLength is rounded down to a multiple of 16 KiB), got ${b.byteLength}`);
    }
    const maxSize = checkInteger(o, 'maxSize', top, b.byteLength, Math.max(b.byteLength, top));
    const end = Math.floor(b.byteLength / C.SLICE_SIZE);
    return { backing: { buffer: b, memory: null, growth, baseSlice }, end, maxEnd: Math.max(end, Math.floor(maxSize / C.SLICE_SIZE)), knownZero: false, ...rest,
      purgeDelay: growth === Growth.RAB ? purge : -1 };
  }
  if (o.base !== undefined) throw new TypeError('options.base needs options.memory or options.buffer (a new buffer is the allocator\'s from byte 0)');
  let size = checkInteger(o, 'size', C.DEFAULT_SIZE, C.MIN_SIZE, C.MAX_SIZE);
  size = Math.ceil(size / C.SLICE_SIZE) * C.SLICE_SIZE;
  let maxSize = checkInteger(o, 'maxSize', size, size, C.MAX_SIZE);
  maxSize = Math.floor(maxSize / C.SLICE_SIZE) * C.SLICE_SIZE;
  if (shared && typeof SharedArrayBuffer === 'undefined') {
    throw new Error('SharedArrayBuffer is not available here (cross-origin isolation?); pass shared: false');
  }
  const growable = maxSize > size;
  const opt = growable ? { maxByteLength: maxSize } : undefined;
  const buffer = shared
    ? new (SharedArrayBuffer as unknown as new (n: number, o?: object) => SharedArrayBuffer)(size, opt)
    : new (ArrayBuffer as unknown as new (n: number, o?: object) => ArrayBuffer)(size, opt);
  const growth = !growable ? Growth.FIXED : shared ? Growth.SAB : Growth.RAB;
  return { backing: { buffer, memory: null, growth, baseSlice: 0 }, end: size / C.SLICE_SIZE, maxEnd: maxSize / C.SLICE_SIZE, knownZero: true, ...rest,
    purgeDelay: growth === Growth.RAB ? purge : -1 };
}

/** @internal Validate `Allocator.attach`'s handle and options. */
export function parseAttachOptions(handle: unknown, opts: unknown): AttachConfig {
  const h = handle as Partial<AllocatorHandle> | null;
  if (h === null || typeof h !== 'object' || !isSab(h.buffer)) {
    throw new TypeError(`Allocator.attach: expected the handle of an allocator (allocator.handle), got ${show(handle)}`);
  }
  const mm = h.memory;
  if (mm !== undefined && !isWasmMemory(mm)) {
    throw new TypeError(`Allocator.attach: the handle's memory must be a WebAssembly.Memory, got ${show(mm)}`);
  }
  const base = h.base ?? 0;
  if (typeof base !== 'number' || !Number.isInteger(base) || base < 0 || base > C.MAX_SIZE) {
    throw new TypeError(`Allocator.attach: the handle's base must be an integer ≥ 0, got ${show(base)}`);
  }
  const buf = mm !== undefined ? mm.buffer as SharedArrayBuffer : h.buffer;
  const n = buf.byteLength;
  if (n < C.MIN_SIZE || roundedSize(buf) > C.MAX_SIZE) {
    throw new RangeError(`Allocator.attach: the handle's buffer holds ${n} bytes, and an allocator's buffer holds ${C.MIN_SIZE} to ${C.MAX_SIZE} bytes (1 MiB to 4 GiB − 16 KiB): not the handle of an allocator`);
  }
  const t = h.thread;
  if (t !== undefined && (typeof t !== 'number' || !Number.isInteger(t) || t < -(2 ** 31) || t >= 2 ** 31)) {
    throw new TypeError(`Allocator.attach: the handle's thread must be an int32 (as watch() makes it), got ${show(t)}`);
  }
  const o = checkObject(opts, ATTACH_KEYS, 'Allocator.attach');
  const growth = mm !== undefined ? Growth.MEMORY : (h.buffer as { growable?: boolean }).growable === true ? Growth.SAB : Growth.FIXED;
  const backing: Backing = { buffer: h.buffer, memory: mm ?? null, growth, baseSlice: Math.ceil(base / C.SLICE_SIZE) };
  return { backing, onError: checkHandler(o), allocStacks: checkInteger(o, 'allocStacks', 0, 0, 2 ** 31), thread: t };
}

/** The bytes of a buffer an allocator would use: its byteLength rounded down to a multiple of 16 KiB (a slice). */
function roundedSize(b: ArrayBufferLike): number {
  return b.byteLength - (b.byteLength % C.SLICE_SIZE);
}

/** @internal Validate `leakReport`'s options; returns `all`. */
export function parseLeakReportOptions(opts: unknown): boolean {
  return checkBoolean(checkObject(opts, LEAK_KEYS, 'leakReport'), 'all', false);
}

/** @internal `Allocator.handle`: the buffer (shared only), and the memory and base it was created with. */
export function handleOf(a: Arena): AllocatorHandle {
  const b = a.currentBuffer();
  if (!isSab(b)) {
    throw new Error('handle: this allocator lives in an ArrayBuffer, which other agents cannot share (create it with shared: true)');
  }
  const mm = a.backing.memory;
  const base = a.baseSlice << C.SLICE_SHIFT;
  if (mm !== null) return { kind: 'mimalloc-ts', buffer: b, memory: mm as WasmMemory, base };
  return base === 0 ? { kind: 'mimalloc-ts', buffer: b } : { kind: 'mimalloc-ts', buffer: b, base };
}
