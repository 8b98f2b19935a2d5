/**
 * errors.ts — error codes and the handler protocol (mimalloc's `_mi_error_message`).
 *
 * Every detected misuse is reported *after* it has been refused, so the heap
 * is consistent whichever way the handler returns or throws.
 */

/** Error codes, as mimalloc's errno values. */
export type ErrorCode = 'EINVAL' | 'EAGAIN' | 'EFAULT' | 'ENOMEM' | 'EOVERFLOW';

/** `fn(code, message, address)`; return to continue (the call is ignored / returns NULL), throw to abort it. */
export type ErrorHandler = (code: ErrorCode, message: string, address: number) => void;

/** Thrown by the default handler for EINVAL, EAGAIN and EFAULT. */
export class AllocatorError extends Error {
  readonly code: ErrorCode;
  readonly address: number;
  constructor(code: ErrorCode, message: string, address: number) {
    super(message);
    this.name = 'AllocatorError';
    this.code = code;
    this.address = address;
  }
}

/** @internal The default: C programs test for NULL, so ENOMEM and EOVERFLOW only return 0; the rest throw. */
export function defaultErrorHandler(code: ErrorCode, message: string, address: number): void {
  if (code === 'ENOMEM' || code === 'EOVERFLOW') return;
  throw new AllocatorError(code, message, address);
}

/** @internal An address as messages print it: `0x` and lower-case hex digits. */
export function hex(p: number): string {
  return '0x' + (p >>> 0).toString(16);
}

/**
 * @internal
 * A bad argument as messages show it: its type and, where it prints
 * usefully, its value (`string "8"`, `bigint 8n`, `boolean true`, `null`).
 */
export function show(v: unknown): string {
  switch (typeof v) {
    case 'number': return String(v);
    case 'string': return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
    case 'bigint': return `bigint ${v}n`;
    case 'boolean': return `boolean ${v}`;
    case 'undefined': return 'undefined';
    case 'object': return v === null ? 'null' : Array.isArray(v) ? `array of length ${v.length}` : 'object';
    default: return typeof v;
  }
}

/** @internal Argument checks shared by every entry point; they throw before any state changes. */
export function badSize(name: string, n: unknown): never {
  if (typeof n !== 'number') throw new TypeError(`${name} must be a number, got ${show(n)}`);
  throw new RangeError(`${name} must be a non-negative integer, got ${n}`);
}

/** @internal */
export function badAddress(p: unknown): never {
  if (typeof p !== 'number') throw new TypeError(`address must be a number, got ${show(p)}`);
  throw new RangeError(`address must be an integer in [0, 2^32), got ${p}`);
}

/** @internal Validate an address argument: a number that is an integer in [0, 2^32). Returns it as u32. */
export function checkAddress(p: unknown): number {
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p >= 4294967296) badAddress(p);
  return p as number;
}

/** @internal Validate a size argument: a number that is a non-negative integer (any magnitude). */
export function checkSize(name: string, n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) badSize(name, n);
  return n as number;
}

/** @internal Validate an alignment: a power of two in [1, 2^31]. */
export function checkAlignment(alignment: unknown): number {
  if (typeof alignment !== 'number') throw new TypeError(`alignment must be a number, got ${show(alignment)}`);
  if (alignment !== 2147483648 && (!Number.isInteger(alignment) || alignment < 1 || alignment > 2147483648 || (alignment & (alignment - 1)) !== 0)) {
    throw new RangeError(`alignment must be a power of two in [1, 2^31], got ${alignment}`);
  }
  return alignment;
}
