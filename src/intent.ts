/**
 * intent.ts — finishing or undoing the slice claim or release a terminated
 * agent was in the middle of (arena.ts announces every one in the agent's
 * record first: A_INTENT_OP, A_INTENT_START, A_INTENT_COUNT).
 */
import type { Arena } from './arena.js';
import { C } from './types.js';

/** Is slice x inside the intent range of any live agent other than `exceptBase`? */
function coveredByIntent(a: Arena, x: number, exceptBase: number): boolean {
  const m = a.mem;
  for (let i = 0; i < C.MAX_AGENTS; i++) {
    const b = a.agentRecord(i);
    if (b === exceptBase || Atomics.load(m, b + C.A_ID) === 0) continue;
    if (Atomics.load(m, b + C.A_INTENT_OP) === C.INTENT_NONE) continue;
    const s = Atomics.load(m, b + C.A_INTENT_START);
    const n = Atomics.load(m, b + C.A_INTENT_COUNT);
    if (x >= s && x < s + n) return true;
  }
  return false;
}

/**
 * Finish or undo the slice update a dead agent was in the middle of.
 *
 * A slice is the dead agent's to repair only if its free bit is clear and
 * nothing else accounts for it: no other agent's intent covers it and no
 * page of another agent is published on it. (Bits the dead agent had not
 * cleared, or had already set again, may meanwhile belong to someone
 * else's new page — possibly one starting at the same slice, so the page
 * map value alone proves nothing.) On those slices: a claim whose record
 * was completed (STATE=1, OWNER the dead agent) stands and the page scan
 * takes it over; anything else is unpublished and unmapped, and the
 * slices' free bits are set.
 */
export function recoverIntent(a: Arena, deadBase: number): void {
  const m = a.mem;
  const op = Atomics.load(m, deadBase + C.A_INTENT_OP);
  if (op === C.INTENT_NONE) return;
  const deadTid = Atomics.load(m, deadBase + C.A_ID) << 2;
  const s = Atomics.load(m, deadBase + C.A_INTENT_START);
  const n = Atomics.load(m, deadBase + C.A_INTENT_COUNT);
  const rb = a.rec(s);
  const meta = a.meta;
  const state = Atomics.load(meta, rb + C.R_STATE);
  const mine = (Atomics.load(meta, rb + C.R_OWNER) & C.OWNER_TID_MASK) === deadTid;
  if (op === C.INTENT_CLAIM && state === C.STATE_IN_USE && mine) {
    Atomics.store(m, deadBase + C.A_INTENT_OP, C.INTENT_NONE); // completed claim: the page scan takes it over
    return;
  }
  const held = (x: number): boolean => !a.isSliceFree(x) && !coveredByIntent(a, x, deadBase);
  // the record at s is the dead agent's if it named it, or if slice s is still held and no live page sits there
  if (mine || (held(s) && state !== C.STATE_IN_USE)) {
    Atomics.store(meta, rb + C.R_STATE, 0);
    Atomics.store(meta, rb + C.R_OWNER, 0);
  }
  for (let x = s; x < s + n && x < a.sliceCount; x++) {
    if (!held(x)) continue;
    const v = Atomics.load(meta, a.pm(x));
    if (v !== 0 && v !== rb) {
      // another page covers x, or a singleton page the dead agent was growing into it (malloc.ts
      // growHuge writes the page map before SLICES): a page that does not reach x gives it back
      const st = a.sliceOfRecord(v);
      if (x < st + meta[v + C.R_SLICES]) continue;
      Atomics.store(meta, a.pm(x), 0);
    }
    if (v === rb) {
      if (Atomics.load(meta, rb + C.R_STATE) === C.STATE_IN_USE) continue; // a live page at s (not the dead agent's)
      Atomics.store(meta, a.pm(x), 0);
    }
    a.setRun(x, 1);
  }
  Atomics.store(m, deadBase + C.A_INTENT_OP, C.INTENT_NONE);
}
