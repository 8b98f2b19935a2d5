/**
 * mimalloc-ts — mimalloc's allocator design over a SharedArrayBuffer,
 * an ArrayBuffer or a WebAssembly.Memory's buffer.
 *
 * Everything exported here is the public API; every other module is internal.
 */
export { Allocator } from './allocator.js';
import './secure-paths.js'; // registers the secure fast paths (allocator.ts secureVariants)
import './prime.js'; // registers the priming of V8's feedback (allocator.ts primer)
export type { AllocatorOptions, AttachOptions, AllocatorHandle, WatchableWorker, WasmMemory } from './options.js';
export { AllocatorError } from './errors.js';
export type { ErrorCode, ErrorHandler } from './errors.js';
export type { StatsSnapshot, LiveBlock, LeakReport, AgentPages } from './stats.js';
export { goodSize } from './bins.js';
