// Helpers shared by the test files (test/*.test.js) and their helper modules. Not a test
// file (`npm test` runs test/*.test.js only); nothing runs when this module is loaded.
import { format } from 'node:util';
import { Allocator } from '../../dist/index.js';
import { forgetLiveAgent } from '../../dist/agents.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** '0x' and the hexadecimal digits of a non-negative integer (how the allocator prints addresses). */
export function hex(x) {
  return '0x' + x.toString(16);
}

/**
 * An allocator whose error reports are recorded in `errors` (as { code, message, address }) by
 * a custom handler that returns, instead of thrown by the default handler.
 */
export function recording(size = 64 * MiB, extra = {}) {
  const errors = [];
  const a = Allocator.create({
    size,
    ...extra,
    onError: (code, message, address) => { errors.push({ code, message, address }); },
  });
  return { a, errors };
}

/**
 * Treats agent `b`, attached in this thread, as if its thread had ended, and returns its id:
 * releaseAgent refuses an agent whose allocator object is alive in the caller's thread, so a
 * test that simulates a terminated worker in one thread declares it dead first. `b` must not be
 * used again (if it is, its next generic call throws "released").
 */
export function asTerminated(b) {
  forgetLiveAgent(b.ag);
  return b.agentId;
}

/**
 * Runs fn() with console.warn recording its messages (formatted as console.warn would print
 * them) instead of printing them: for the output a test provokes on purpose (the leak report
 * a debug-mode agent prints at detach()). The caller asserts on `warnings`, so a message it
 * does not expect still fails the test and shows. Restores console.warn however fn ends.
 */
export function captureWarnings(fn) {
  const warnings = [];
  const saved = console.warn;
  console.warn = (...args) => { warnings.push(format(...args)); };
  try {
    return { value: fn(), warnings };
  } finally {
    console.warn = saved;
  }
}

/**
 * Checks the leak report a debug-mode agent prints at detach() (console.warn) against the
 * blocks it should name (`blocks`: [{ address, size }], as leakReport().blocks): a first line
 * naming the agent and the count and bytes of its live blocks, then one line per block
 * (address in hex, size), as many as the report lists, with a last line "… k more" for the
 * rest. Returns null when the text is that report, else what differs.
 */
export function leakWarningProblem(text, agentId, blocks) {
  const bytes = blocks.reduce((t, b) => t + b.size, 0);
  const lines = text.split('\n');
  const head = `mimalloc-ts: agent ${agentId} detaches with ${blocks.length} live block${blocks.length === 1 ? '' : 's'}, ${bytes} bytes`;
  if (lines[0] !== head) return `first line ${JSON.stringify(lines[0])}, expected ${JSON.stringify(head)}`;
  const sizeOf = new Map(blocks.map((b) => [b.address, b.size]));
  const named = new Set();
  let more = 0;
  for (let i = 1; i < lines.length; i++) {
    const m = /^ {2}0x([0-9a-f]+) {2}(\d+) bytes$/.exec(lines[i]);
    if (m !== null) {
      const address = parseInt(m[1], 16);
      if (!sizeOf.has(address)) return `line ${i} names ${hex(address)}, not one of the live blocks`;
      if (sizeOf.get(address) !== Number(m[2])) return `line ${i}: ${hex(address)} has ${m[2]} bytes, expected ${sizeOf.get(address)}`;
      if (named.has(address)) return `line ${i}: ${hex(address)} named twice`;
      named.add(address);
      continue;
    }
    const k = /^ {2}… (\d+) more$/.exec(lines[i]);
    if (k !== null && i === lines.length - 1) { more = Number(k[1]); continue; }
    if (/^ {6}/.test(lines[i])) continue; // a stack frame of the block above (allocStacks)
    return `unexpected line ${i}: ${JSON.stringify(lines[i])}`;
  }
  if (named.size === 0) return 'no block named';
  if (named.size + more !== blocks.length) return `names ${named.size} blocks and "… ${more} more", expected ${blocks.length} in all`;
  return null;
}
