/**
 * debug.ts — debug mode (mimalloc's MI_DEBUG fills and padding).
 *
 * ```
 *  q                 q+size            pad = blockStart + blockSize − 8
 *  ├─ user bytes ────┤├─ 0xDE slack ──┤├ canary u32 ┤├ delta u32 ┤
 *       0xD0 when fresh   (≤16 checked)   key-derived   pad − (q+size)
 * ```
 *
 * A freed block is filled with 0xDF (up to DEBUG_FILL_MAX bytes; its first
 * word then holds the free-list link, or with secure ≥ 3 the fill stops at
 * the padding, which holds canary and link), and so are never-used blocks
 * when a page is extended, so that the fill can be checked when the block is
 * handed out again: a difference is a write after free. The fills run only
 * when the buffer's header says debug (the fast paths are off then); the
 * padding is shared with secure ≥ 3, which writes canary and size, and at
 * secure 4 the 0xDE slack too (mimalloc's padding check at MI_SECURE ≥ 3),
 * from the request's end to the end of its 4-byte word (debug:
 * DEBUG_SLACK_CHECK bytes), checked at every free.
 */
import type { Arena } from './arena.js';
import { blockStartOf } from './layout.js';
import { canary } from './secure.js';
import { hex } from './errors.js';
import { C } from './types.js';

/** The padding address of the block holding q. */
export function paddingOf(a: Arena, rb: number, q: number): number {
  const meta = a.meta;
  const b = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0 ? blockStartOf(meta, rb, q) : q;
  return b + meta[rb + C.R_BLOCK_SIZE] - C.PADDING;
}

/** Do blocks carry the 0xDE slack pattern (debug: 16 bytes, secure 4: 1–4)? */
export function slackChecked(a: Arena): boolean {
  return a.debug || a.secure >= 4;
}

/** How many slack bytes after the request ending at e carry the pattern: 16 in debug mode, to the end of e's word at secure 4 (secure.ts). */
function slackLength(a: Arena, e: number): number {
  return a.debug ? C.DEBUG_SLACK_CHECK : 4 - (e & 3);
}

/** Canary of the padding at `pad` in page rb. */
export function canaryOf(a: Arena, rb: number, pad: number): number {
  return canary(pad, a.meta[rb + C.R_CANARY]);
}

/** Rewrite the canary of the block holding q (after an overflow was found, so it is reported once). */
export function repairCanary(a: Arena, rb: number, q: number): void {
  const pad = paddingOf(a, rb, q);
  a.mem[pad >>> 2] = canaryOf(a, rb, pad);
}

/**
 * The part of a free block of size bs at b that debug mode fills with 0xDF:
 * after the link word (levels < 3), or up to the padding, whose canary stays
 * (secure ≥ 3, where the link is in the padding).
 */
function freedRange(a: Arena, bs: number): number {
  return Math.min(a.secure >= 3 ? bs - C.PADDING : bs, C.DEBUG_FILL_MAX);
}

/** Write the padding of a block handed out at q for `size` bytes, and fill its slack. */
export function setPadding(a: Arena, rb: number, q: number, size: number, fillUninit: boolean): void {
  const pad = paddingOf(a, rb, q);
  const u8 = a.u8;
  if (fillUninit) u8.fill(C.DEBUG_UNINIT_BYTE, q, q + size);
  if (slackChecked(a)) { // (secure 3: canary only) a loop: ≤ 16 bytes, where a fill() call on a SharedArrayBuffer costs far more
    for (let i = q + size, e = Math.min(q + size + slackLength(a, q + size), pad); i < e; i++) u8[i] = C.DEBUG_PAD_BYTE;
  }
  a.mem[pad >>> 2] = canaryOf(a, rb, pad);
  a.mem[(pad >>> 2) + 1] = pad - (q + size);
}

/** The size requested for the live block at q (from its padding), or -1 if the padding is unreadable. */
export function requestedSize(a: Arena, rb: number, q: number): number {
  const pad = paddingOf(a, rb, q);
  const delta = a.mem[(pad >>> 2) + 1];
  if (delta < 0 || delta > pad - q) return -1;
  return pad - q - delta;
}

/**
 * Check the padding of the live block at q: null if intact, else a message
 * naming the block, its size and the first byte written past its end.
 */
export function checkPadding(a: Arena, rb: number, q: number): string | null {
  const pad = paddingOf(a, rb, q);
  const mem = a.mem;
  const delta = mem[(pad >>> 2) + 1];
  const want = canaryOf(a, rb, pad);
  const got = mem[pad >>> 2];
  // The size word follows the canary: trusted while the canary's last byte is intact (an
  // overrun that stopped inside the canary did not reach it), else the size is not named
  // and the first changed byte is looked for in the canary only. Not when its first three
  // bytes all changed: an overrun through the canary leaves a last byte equal to the key's
  // by chance once in 256, and its size word then named a wrong size.
  const x = got ^ want;
  const sizeOk = delta >= 0 && delta <= pad - q && (x >>> 24) === 0 &&
    ((x & 0xff) === 0 || (x & 0xff00) === 0 || (x & 0xff0000) === 0);
  const size = sizeOk ? pad - q - delta : -1;
  const u8 = a.u8;
  if (sizeOk && slackChecked(a)) { // the slack first: it lies before the canary, so a contiguous overrun starts there
    const end = Math.min(q + size + slackLength(a, q + size), pad);
    for (let i = q + size; i < end; i++) {
      if (u8[i] !== C.DEBUG_PAD_BYTE) {
        return `buffer overflow in block ${hex(q)} of size ${size}: write after ${i - q + 1} bytes (byte ${i - q} is 0x${u8[i].toString(16)})`;
      }
    }
  }
  if (got !== want || !sizeOk) {
    const at = pad - q + (x !== 0 ? (31 - Math.clz32(x & -x)) >>> 3 : 4); // first changed byte (little-endian), else the size word
    return `buffer overflow in block ${hex(q)}${size >= 0 ? ` of size ${size}` : ''}: the padding canary after the block was overwritten (first changed byte at offset ${at})`;
  }
  return null;
}

/** Fill a freed (or never-used) block at b of size bs with 0xDF. */
export function fillFreed(a: Arena, b: number, bs: number): void {
  a.u8.fill(C.DEBUG_FREED_BYTE, b, b + freedRange(a, bs));
}

/** Offset of the first byte of a free block's filled range (freedRange; levels < 3 skip the link word) that is not 0xDF, or -1. */
export function checkFreed(a: Arena, b: number, bs: number): number {
  const u8 = a.u8;
  const end = b + freedRange(a, bs);
  for (let i = a.secure >= 3 ? b : b + 4; i < end; i++) if (u8[i] !== C.DEBUG_FREED_BYTE) return i - b;
  return -1;
}

// ---------------------------------------------------------------------------
// Allocation stacks (option allocStacks)
// ---------------------------------------------------------------------------

/**
 * This package's directory as it appears in stack frames, read off a stack
 * taken at load (no `import.meta`: the same source is also built as CommonJS).
 */
const OWN_DIR = ((): string => {
  const frame = (new Error().stack ?? '').split('\n').find((l) => /:\d+:\d+\)?\s*$/.test(l)) ?? '';
  const m = /([^\s(]*[\\/])[^\\/]*:\d+:\d+\)?\s*$/.exec(frame);
  return m !== null ? m[1] : '\u0000'; // unknown: keep every frame
})();

/** The frames of a recorded allocation stack outside this package: where the user allocated. */
export function userFrames(e: Error): string {
  const lines = (e.stack ?? '').split('\n').slice(1);
  return lines.filter((l) => !l.includes(OWN_DIR)).slice(0, 10).map((l) => l.trim()).join('\n');
}

/**
 * The JavaScript stacks of every Nth allocation of one agent (a debugging
 * aid: stacks are JavaScript objects, not in the buffer). Each recorded
 * allocation costs a stack capture (a few µs); the agent takes its generic
 * paths while this is on. The map keeps the stack of the last recorded
 * allocation of each address.
 */
/** Where an address's A bit lives (the Arena, without importing it). */
interface ABitmap {
  readonly mem: Int32Array;
  aw(q: number): number;
}

export class AllocStacks {
  /** address → Error captured at its allocation (formatted only when a report prints it). */
  readonly map = new Map<number, Error>();
  private readonly every: number;
  private countdown = 1;
  private pruneAt = 1024;

  constructor(every: number) {
    this.every = every;
  }

  /** A block was handed out at p: record its stack (sampled), or forget a stale one. */
  noteAlloc(p: number, a: ABitmap): void {
    if (p === 0) return;
    const st = this.map;
    if (--this.countdown <= 0) {
      this.countdown = this.every;
      const limit = Error.stackTraceLimit;
      Error.stackTraceLimit = limit + 8; // room for our own frames, dropped when printed
      st.set(p, new Error('allocated'));
      Error.stackTraceLimit = limit;
      if (st.size > this.pruneAt) this.prune(a);
    } else if (st.size !== 0) {
      st.delete(p);
    }
  }

  /**
   * Drop the stacks of blocks no longer live (freed by other agents, which
   * cannot reach this map): keeps the map near the number of live sampled
   * blocks. Amortised: the threshold doubles with what survives.
   */
  private prune(a: ABitmap): void {
    const st = this.map;
    for (const addr of st.keys()) {
      if ((a.mem[a.aw(addr)] & (1 << ((addr >>> C.GRANULE_SHIFT) & 31))) === 0) st.delete(addr);
    }
    this.pruneAt = Math.max(1024, 2 * st.size);
  }

  /** The user frames of the recorded allocation of p, if any. */
  stackOf(p: number): string | undefined {
    const e = this.map.get(p);
    return e === undefined ? undefined : userFrames(e);
  }
}
