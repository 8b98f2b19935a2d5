/**
 * mimalloc-ts — mimalloc's allocator design over a SharedArrayBuffer.
 */
export { Allocator } from './alloc.js';
export type { AllocatorOptions, AttachOptions, AllocatorHandle } from './alloc.js';
export { AllocatorError } from './errors.js';
export type { ErrorCode, ErrorHandler } from './errors.js';
export type { StatsSnapshot } from './stats.js';
export { goodSizeOf as goodSize } from './bins.js';
