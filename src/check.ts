/**
 * check.ts — the full invariant check behind `Allocator.check()` (mimalloc's
 * `_mi_page_is_valid` at MI_DEBUG=3, over the whole buffer). It names the
 * first invariant it finds broken (see the list in types.ts). O(buffer/256 +
 * blocks); assumes no other agent mutates the heap meanwhile.
 */
import type { Arena } from './arena.js';
import { nullGuardWrite, pageStart } from './layout.js';
import { BIN_BLOCK_SIZE } from './bins.js';
import { checkFreed, checkPadding } from './debug.js';
import { hex } from './errors.js';
import { getLink } from './page.js';
import { brokenCanary } from './secure.js';
import { collectStats, walkStats } from './stats.js';
import { C } from './types.js';

function fail(msg: string): never {
  throw new Error(`mimalloc-ts check failed: ${msg}`);
}

function bitOf(a: Arena, p: number): boolean {
  return (a.mem[a.aw(p)] & (1 << ((p >>> C.GRANULE_SHIFT) & 31))) !== 0;
}

function rBitOf(a: Arena, p: number): boolean {
  return (a.mem[a.rw(p)] & (1 << ((p >>> C.R_GRANULE_SHIFT) & 31))) !== 0;
}

function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

export function checkHeap(a: Arena): void {
  const mem = a.mem;
  const meta = a.meta;
  if (Atomics.load(mem, a.hdr + C.H_MAGIC) !== C.MAGIC) fail('header magic is gone (the header was overwritten)');
  const nul = nullGuardWrite(a, 0, C.NULL_GUARD_WORDS);
  if (nul !== null) fail(nul);
  // agents
  const live = new Set<number>();
  for (let i = 0; i < C.MAX_AGENTS; i++) {
    const b = a.agentRecord(i);
    const id = Atomics.load(mem, b + C.A_ID);
    if (id === 0) continue;
    if (live.has(id)) fail(`agent id ${id} appears in two agent records`);
    if (Atomics.load(mem, b + C.A_STATE) === C.AGENT_ALIVE) live.add(id);
  }
  const wordsPerSlice = 1 << (C.SLICE_SHIFT - C.BITMAP_WORD_SHIFT);
  const rWordsPerSlice = 1 << (C.SLICE_SHIFT - C.R_WORD_SHIFT);
  let orphans = 0;
  for (const L of a.arenas) for (let s = L.first; s < L.end; s++) {
    const free = a.isSliceFree(s);
    const rb = a.rec(s);
    if (free) {
      if (meta[a.pm(s)] !== 0) fail(`I1: slice ${s} is free but the page map names page ${a.sliceOfRecord(meta[a.pm(s)])}`);
      const a0 = a.aw(s * C.SLICE_SIZE);
      for (let w = 0; w < wordsPerSlice; w++) {
        if (mem[a0 + w] !== 0) fail(`I2: free slice ${s} has allocation bits set near ${hex(s * C.SLICE_SIZE + (w << C.BITMAP_WORD_SHIFT))}`);
      }
      const r0 = a.rw(s * C.SLICE_SIZE);
      for (let w = 0; w < rWordsPerSlice; w++) {
        if (mem[r0 + w] !== 0) fail(`I3: free slice ${s} has remote-free bits set near ${hex(s * C.SLICE_SIZE + (w << C.R_WORD_SHIFT))}`);
      }
      continue;
    }
    if (Atomics.load(meta, rb + C.R_STATE) !== C.STATE_IN_USE) fail(`I1: slice ${s} is taken but no page starts there or covers it (page map ${a.sliceOfRecord(meta[a.pm(s)])})`);
    if (meta[a.pm(s)] !== rb) fail(`I1: page map of slice ${s} names ${a.sliceOfRecord(meta[a.pm(s)])}, not the page starting there`);
    const slices = meta[rb + C.R_SLICES];
    if (slices < 1 || s + slices > L.end) fail(`page ${s}: bad slice count ${slices}`);
    for (let x = s + 1; x < s + slices; x++) {
      if (a.isSliceFree(x)) fail(`I1: slice ${x} of page ${s} is marked free`);
      if (meta[a.pm(x)] !== rb) fail(`I1: page map of slice ${x} does not name page ${s}`);
    }
    orphans += checkPage(a, rb, live);
    s += slices - 1;
  }
  const reaped = Atomics.load(mem, a.hdr + C.H_REAPED);
  if (reaped === 0) checkCounters(a); // (a terminated agent may leave its last update half counted: counters.ts)
  if (orphans > reaped) fail(`I3: ${orphans} blocks have remote-free bits but are on no xthreadFree list (${reaped} agents were reaped)`);
}

/** Checks one page; returns the number of blocks whose R bit is set but that wait on no list. */
function checkPage(a: Arena, rb: number, live: Set<number>): number {
  const meta = a.meta;
  const s = a.sliceOfRecord(rb);
  const name = `page ${s}`;
  const bs = meta[rb + C.R_BLOCK_SIZE];
  const res = meta[rb + C.R_RESERVED];
  const cap = meta[rb + C.R_CAPACITY];
  const used = meta[rb + C.R_USED];
  const slices = meta[rb + C.R_SLICES];
  const bin = meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK;
  const aligned = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0;
  const ps = pageStart(meta, rb);
  if (bs <= 0 || (bs & 7) !== 0) fail(`${name}: block size ${bs} is not a positive multiple of 8`);
  if (bin !== C.BIN_HUGE && BIN_BLOCK_SIZE[bin] !== bs) fail(`${name}: block size ${bs} does not match bin ${bin}`);
  if (res < 1 || res * bs > slices * C.SLICE_SIZE) fail(`${name}: ${res} blocks of ${bs} do not fit in ${slices} slices`);
  if (cap < 0 || cap > res) fail(`I2: ${name}: capacity ${cap} outside [0, reserved ${res}]`);
  if (used < 0 || used > cap) fail(`I2: ${name}: used ${used} outside [0, capacity ${cap}]`);
  if (meta[rb + C.R_COLLECT] !== 0) fail(`${name}: a collection is in progress (COLLECT ≠ 0)`);
  if (a.secure > 0) { // S1: the guard space after the last block is intact
    const g0 = ps + res * bs;
    const g1 = ps + slices * C.SLICE_SIZE;
    if (g1 - g0 < C.SECURE_GUARD) fail(`S1: ${name}: only ${g1 - g0} bytes of guard space after its last block`);
    for (let i = g0, e = Math.min(g1, g0 + C.SECURE_GUARD_FILL); i < e; i++) {
      if (a.u8[i] !== C.SECURE_GUARD_BYTE) fail(`S1: ${name}: guard space after its last block (block size ${bs}) overwritten ${i - g0} bytes past the end of block ${res - 1}`);
    }
  }
  if (a.secure >= 3) { // I5: every block below capacity, live or free, ends in its canary
    const bad = brokenCanary(a, rb, 0);
    if (bad !== 0) fail(`I5: ${name}: buffer overflow: the canary after block ${hex(bad)} (size ${bs - C.PADDING}) was overwritten`);
  }
  const owner = Atomics.load(meta, rb + C.R_OWNER);
  if (owner !== C.OWNER_ABANDONED) {
    const id = owner >>> 2;
    if ((owner & C.OWNER_FLAG_MASK) !== 0 && (owner & C.OWNER_FLAG_MASK) !== C.OWNER_HELD) fail(`I4: ${name}: owner word ${owner} is malformed`);
    if (!live.has(id)) fail(`I4: ${name}: owned by agent ${id}, which is not attached`);
  }
  // live blocks from the A bitmap
  let liveBlocks = 0;
  const end = ps + slices * C.SLICE_SIZE;
  for (let p = ps; p < end; p += 256) {
    const w = a.mem[a.aw(p)];
    if (w === 0) continue;
    for (let k = 0; k < 32; k++) {
      if ((w & (1 << k)) === 0) continue;
      const q = p + k * 8;
      const off = q - ps;
      const idx = Math.floor(off / bs);
      if (idx >= cap) fail(`I2: ${name}: allocation bit at ${hex(q)} beyond capacity ${cap}`);
      if (!aligned && off % bs !== 0) fail(`I2: ${name}: allocation bit at ${hex(q)}, inside block ${idx} (size ${bs})`);
      if (a.padded && !rBitOf(a, q)) {
        const msg = checkPadding(a, rb, q);
        if (msg !== null) fail(`D1: ${msg}`);
      }
    }
    liveBlocks += popcount(w);
  }
  if (liveBlocks !== used) fail(`I2: ${name}: used is ${used} but ${liveBlocks} blocks have allocation bits`);
  const seen = new Set<number>();
  const walk = (head: number, list: string, remote: boolean): number => {
    let n = 0;
    let q = head >>> 0;
    while (q !== 0) {
      if (n > cap) fail(`I3: ${name}: ${list} has more entries than capacity ${cap} (a cycle?)`);
      if (q < ps || q >= end) fail(`I3: ${name}: ${list} entry ${hex(q)} is outside the page`);
      const off = q - ps;
      const idx = Math.floor(off / bs);
      if (idx >= cap) fail(`I3: ${name}: ${list} entry ${hex(q)} is beyond capacity`);
      const b = ps + idx * bs;
      if (!remote && b !== q) fail(`I3: ${name}: ${list} entry ${hex(q)} is not a block start`);
      if (seen.has(b)) fail(`I3: ${name}: block ${hex(b)} is on the free lists twice`);
      seen.add(b);
      if (remote) {
        if (!bitOf(a, q) || !rBitOf(a, q)) fail(`I3: ${name}: remote-freed block ${hex(q)} lacks its A/R bits`);
      } else if (bitOf(a, q)) {
        fail(`I3: ${name}: block ${hex(q)} is on ${list} but marked allocated`);
      } else if (a.debug) {
        const o = checkFreed(a, b, bs);
        if (o >= 0) fail(`D2: write after free: block ${hex(b)} (size ${bs}) on ${list} was modified at offset ${o}`);
      }
      n++;
      q = getLink(a, rb, b);
      if (q < 0) fail(`I3: ${name}: corrupted ${list} entry: block ${hex(b)} holds a link that is not a block of the page (overwritten after it was freed?)`);
    }
    return n;
  };
  const nFree = walk(meta[rb + C.R_FREE], 'free', false);
  const nLocal = walk(meta[rb + C.R_LOCAL_FREE], 'localFree', false);
  const nRemote = walk(Atomics.load(meta, rb + C.R_XTHREAD_FREE), 'xthreadFree', true);
  if (used + nFree + nLocal !== cap) {
    fail(`I2: ${name}: used ${used} + free ${nFree} + localFree ${nLocal} ≠ capacity ${cap} (xthreadFree ${nRemote})`);
  }
  // R bits only on blocks waiting on xthreadFree
  let rCount = 0;
  for (let p = ps; p < end; p += 1 << C.R_WORD_SHIFT) rCount += popcount(a.mem[a.rw(p)]);
  if (rCount < nRemote) fail(`I3: ${name}: ${rCount} remote-free bits but ${nRemote} blocks on xthreadFree`);
  return rCount - nRemote;
}

/**
 * C1 (counters.ts): what stats() reads agrees with a walk of the pages.
 * Only while no agent was ever released: one terminated mid-call may leave
 * an update half counted.
 */
function checkCounters(a: Arena): void {
  const c = collectStats(a);
  const w = walkStats(a);
  for (const k of ['used', 'blocks', 'pages', 'pagesBytes', 'smallPages', 'mediumPages', 'largePages', 'hugePages', 'abandonedPages', 'capacityBytes'] as const) {
    if (c[k] !== w[k]) fail(`C1: the statistics counters say ${k} = ${c[k]}, the pages say ${w[k]}`);
  }
  for (let i = 0; i < c.agentPages.length; i++) {
    const x = c.agentPages[i];
    const y = w.agentPages[i];
    if (y === undefined || x.pages !== y.pages || x.bytes !== y.bytes || x.used !== y.used) {
      fail(`C1: the statistics counters of agent ${x.agentId} say ${JSON.stringify(x)}, its pages say ${JSON.stringify(y)}`);
    }
  }
}
