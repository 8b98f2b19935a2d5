/**
 * stats.ts — statistics read off the counters (counters.ts: O(agents +
 * tracked pages) at any buffer size, nothing counted on a fast path), the
 * walk of every page they must agree with (`walkStats`, for tests and
 * check), and mimalloc's statistics table.
 */
import { type Agent, countAgents } from './agents.js';
import type { Arena } from './arena.js';
import { blockStartOf } from './layout.js';
import { hex } from './errors.js';
import { usableOf } from './free.js';
import { getLink } from './page.js';
import { type CounterRead, counterRead, readCounters } from './counters.js';
import { C } from './types.js';

export interface StatsSnapshot {
  /** Bytes of the buffer. */
  reserved: number;
  /**
   * High-water mark of the bytes handed to pages (the highest slice ever used,
   * lowest slices being reused first). The header's touched part, about 3.2 %
   * of this (page records, allocation bitmaps), comes on top.
   */
  committed: number;
  /** Bytes of the header (metadata). */
  metadata: number;
  /** Bytes in live blocks (block sizes; blocks freed by another agent and not yet collected by the owner are not counted). */
  used: number;
  /** Bytes in pages right now (whole 16 KiB slices). */
  pagesBytes: number;
  pages: number;
  smallPages: number;
  mediumPages: number;
  largePages: number;
  hugePages: number;
  /** Pages nobody owns (abandoned by a detached or released agent, or full). */
  abandonedPages: number;
  /** Blocks handed out (live). */
  blocks: number;
  /** Initialised block capacity of all pages, in bytes. */
  capacityBytes: number;
  /** Agents attached now. */
  agents: number;
  /**
   * Every attached agent (in id order) with the pages it holds: a worker
   * that ended without detach() (and was not released) shows here with its
   * pages, whatever `used` says.
   */
  agentPages: AgentPages[];
}

/** One attached agent in `StatsSnapshot.agentPages`. */
export interface AgentPages {
  agentId: number;
  /** The thread it attached from: Node's threadId (0: the main thread or unknown), or a watch() token (< 0). */
  thread: number;
  /** Pages it holds (owns, or holds outside its queues) and their bytes (whole 16 KiB slices). */
  pages: number;
  bytes: number;
  /**
   * Bytes in live blocks of those pages, blocks that other agents freed and
   * this one has not collected yet included (mimalloc's page `used`).
   */
  used: number;
}

/**
 * Blocks waiting on a page's xthreadFree: freed by another agent, not yet
 * collected by the owner. USED still counts them (as mimalloc's `used`
 * does); the user-visible "live" numbers do not. Exact when no agent is
 * freeing into the page meanwhile; bounded by capacity otherwise.
 */
function pendingRemote(a: Arena, rb: number): number {
  const meta = a.meta;
  const cap = meta[rb + C.R_CAPACITY];
  const aligned = (meta[rb + C.R_FLAGS] & C.F_ALIGNED) !== 0;
  let n = 0;
  let q = Atomics.load(meta, rb + C.R_XTHREAD_FREE) >>> 0;
  while (q !== 0 && n < cap) {
    n++;
    const b = aligned ? blockStartOf(meta, rb, q) : q;
    q = Math.max(0, getLink(a, rb, b));
  }
  return n;
}

/** @internal `stats()`: the counters of every attached agent and of the abandoned pool, summed. O(MAX_AGENTS + tracked pages), plain loads. */
export function collectStats(a: Arena): StatsSnapshot {
  const m = a.mem;
  const h = a.hdr;
  let xfreed = m[h + C.H_GONE_XFREED];
  let xfreedW = m[h + C.H_GONE_XFREEDW];
  let collected = m[h + C.H_GONE_COLLECTED];
  let collectedW = m[h + C.H_GONE_COLLECTEDW];
  const agentPages: AgentPages[] = [];
  const all = counterRead();
  const one = counterRead();
  let agents = 0;
  for (let i = 0; i < C.MAX_AGENTS; i++) {
    if ((i & 31) === 0 && m[h + C.H_AGENT_BITS + (i >>> 5)] === 0) { i += 31; continue; } // (one load per 32 records)
    if ((m[h + C.H_AGENT_BITS + (i >>> 5)] & (1 << (i & 31))) === 0) continue;
    const b = a.agentRecord(i);
    const id = m[b + C.A_ID];
    if (id === 0) continue;
    if (m[b + C.A_STATE] === C.AGENT_ALIVE) agents++;
    one.pages = one.slices = one.blocks = one.words = one.capw = 0;
    one.kinds.fill(0);
    readCounters(a, b + C.A_STATS, b, one);
    add(all, one);
    agentPages.push({ agentId: id, thread: m[b + C.A_THREAD], pages: one.pages, bytes: one.slices * C.SLICE_SIZE, used: one.words * 8 });
    xfreed += m[b + C.A_XFREED];
    xfreedW += m[b + C.A_XFREEDW];
    collected += m[b + C.A_COLLECTED];
    collectedW += m[b + C.A_COLLECTEDW];
  }
  const pool = counterRead();
  readCounters(a, h + C.H_POOL, -1, pool);
  add(all, pool);
  if (agentPages.length > 1) agentPages.sort((x, y) => x.agentId - y.agentId);
  // blocks freed by another agent and not collected yet are in USED but not live (mod 2^32: the counters wrap)
  return {
    reserved: a.size - (a.baseSlice << C.SLICE_SHIFT), committed: a.committedBytes(), metadata: a.metadataBytes(),
    used: (all.words - ((xfreedW - collectedW) | 0)) * 8, pagesBytes: all.slices * C.SLICE_SIZE, pages: all.pages,
    smallPages: all.kinds[0], mediumPages: all.kinds[1], largePages: all.kinds[2], hugePages: all.kinds[3],
    abandonedPages: pool.pages, blocks: all.blocks - ((xfreed - collected) | 0), capacityBytes: all.capw * 8, agents, agentPages,
  };
}

function add(to: CounterRead, x: CounterRead): void {
  to.pages += x.pages;
  to.slices += x.slices;
  to.blocks += x.blocks;
  to.words += x.words;
  to.capw += x.capw;
  for (let i = 0; i < 4; i++) to.kinds[i] += x.kinds[i];
}

/**
 * @internal What `stats()` must agree with: every number derived from the
 * page records (one pass, O(slices)), as `stats()` computed it before the
 * counters. Exact only while no agent mutates the heap.
 */
export function walkStats(a: Arena): StatsSnapshot {
  const meta = a.meta;
  const st: StatsSnapshot = {
    reserved: a.size - (a.baseSlice << C.SLICE_SHIFT), committed: a.committedBytes(),
    metadata: a.metadataBytes(), used: 0, pagesBytes: 0, pages: 0, smallPages: 0, mediumPages: 0,
    largePages: 0, hugePages: 0, abandonedPages: 0, blocks: 0, capacityBytes: 0, agents: countAgents(a), agentPages: [],
  };
  const byTid = new Map<number, AgentPages>();
  for (let i = 0; i < C.MAX_AGENTS; i++) {
    const b = a.agentRecord(i);
    const id = Atomics.load(meta, b + C.A_ID);
    if (id === 0) continue;
    const e = { agentId: id, thread: Atomics.load(meta, b + C.A_THREAD), pages: 0, bytes: 0, used: 0 };
    st.agentPages.push(e);
    byTid.set(id << 2, e);
  }
  st.agentPages.sort((x, y) => x.agentId - y.agentId);
  for (const L of a.arenas) for (let s = L.first; s < L.end; s++) {
    const rb = a.rec(s);
    if (Atomics.load(meta, rb + C.R_STATE) !== C.STATE_IN_USE) continue;
    const slices = meta[rb + C.R_SLICES];
    const bs = meta[rb + C.R_BLOCK_SIZE];
    const used = meta[rb + C.R_USED] - pendingRemote(a, rb);
    st.pages++;
    st.pagesBytes += slices * C.SLICE_SIZE;
    st.used += used * bs;
    st.blocks += used;
    st.capacityBytes += meta[rb + C.R_CAPACITY] * bs;
    if ((meta[rb + C.R_FLAGS] & C.FLAG_BIN_MASK) === C.BIN_HUGE) st.hugePages++;
    else if (bs <= C.SMALL_OBJ_SIZE_MAX) st.smallPages++; // (a small bin's one-slice page, claimed when memory was short, too)
    else if (bs <= C.MEDIUM_OBJ_SIZE_MAX) st.mediumPages++;
    else st.largePages++;
    const owner = Atomics.load(meta, rb + C.R_OWNER);
    if (owner === C.OWNER_ABANDONED) st.abandonedPages++;
    const e = byTid.get(owner & C.OWNER_TID_MASK);
    if (e !== undefined) {
      e.pages++;
      e.bytes += slices * C.SLICE_SIZE;
      e.used += meta[rb + C.R_USED] * bs; // (the page's USED: uncollected remote frees included, as the counters)
    }
    if (slices > 1) s += slices - 1;
  }
  return st;
}

function amount(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** @internal A table in the spirit of mimalloc's `mi_stats_print`. */
export function formatStats(st: StatsSnapshot): string {
  const rows: [string, string, string][] = [
    ['reserved', amount(st.reserved), 'buffer size'],
    ['committed', amount(st.committed), 'high-water mark of page memory'],
    ['metadata', amount(st.metadata), 'header: bitmaps, page records'],
    ['pages', amount(st.pagesBytes), `${st.pages} pages (${st.smallPages} small, ${st.mediumPages} medium, ${st.largePages} large, ${st.hugePages} huge)`],
    ['abandoned', String(st.abandonedPages), 'pages without an owner'],
    ['capacity', amount(st.capacityBytes), 'initialised blocks'],
    ['used', amount(st.used), `${st.blocks} live blocks`],
    ['agents', String(st.agents), 'attached'],
  ];
  for (const e of st.agentPages) {
    rows.push([`agent ${e.agentId}`, amount(e.bytes), `${e.pages} page${e.pages === 1 ? '' : 's'}, ${amount(e.used)} used` +
      (e.thread > 0 ? ` (thread ${e.thread})` : e.thread < 0 ? ` (token ${e.thread})` : '')]);
  }
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const lines = [`${'heap stats'.padEnd(w0)}  ${'amount'.padStart(w1)}  `];
  for (const [k, v, note] of rows) lines.push(`${k.padEnd(w0)}  ${v.padStart(w1)}  ${note}`);
  return lines.join('\n');
}

/** A live block as reported by leak reports: its address and size (the requested size in debug mode). */
export interface LiveBlock {
  address: number;
  size: number;
  /** Where it was allocated (frames, one per line), when the allocator records stacks (allocStacks). */
  stack?: string;
}

/**
 * @internal
 * The live blocks of every page whose OWNER satisfies `ownerFilter` (from
 * the A bitmap; blocks waiting on xthreadFree are not live). In debug mode
 * the size is the requested size from the padding, else the usable size.
 */
export function liveBlocks(a: Arena, ownerFilter: (owner: number) => boolean, sizeOf: (rb: number, q: number) => number): LiveBlock[] {
  const meta = a.meta;
  const out: LiveBlock[] = [];
  for (const L of a.arenas) for (let s = L.first; s < L.end; s++) {
    const rb = a.rec(s);
    if (Atomics.load(meta, rb + C.R_STATE) !== C.STATE_IN_USE) continue;
    const slices = meta[rb + C.R_SLICES];
    if (ownerFilter(Atomics.load(meta, rb + C.R_OWNER))) {
      const ps = s * C.SLICE_SIZE;
      const end = ps + slices * C.SLICE_SIZE;
      for (let p = ps; p < end; p += 256) {
        const bits = a.mem[a.aw(p)];
        if (bits === 0) continue;
        for (let k = 0; k < 32; k++) {
          const q = p + k * 8;
          if ((bits & (1 << k)) !== 0 && (a.mem[a.rw(q)] & (1 << ((q >>> C.R_GRANULE_SHIFT) & 31))) === 0) out.push({ address: q, size: sizeOf(rb, q) });
        }
      }
    }
    if (slices > 1) s += slices - 1;
  }
  return out;
}

/** @internal One line per block (at most `max`), for leak reports. */
export function formatLeaks(blocks: LiveBlock[], max = 20): string {
  const bytes = blocks.reduce((t, b) => t + b.size, 0);
  const lines = [`${blocks.length} live block${blocks.length === 1 ? '' : 's'}, ${bytes} bytes`];
  for (const b of blocks.slice(0, max)) {
    lines.push(`  ${hex(b.address)}  ${b.size} bytes`);
    if (b.stack !== undefined) for (const f of b.stack.split('\n')) lines.push(`      ${f}`);
  }
  if (blocks.length > max) lines.push(`  … ${blocks.length - max} more`);
  return lines.join('\n');
}

/** What `leakReport` returns. */
export interface LeakReport {
  /** The live blocks, in address order. */
  blocks: LiveBlock[];
  /** Sum of their sizes. */
  bytes: number;
  /** A printable summary (at most 20 blocks listed). */
  text: string;
}

/**
 * @internal `leakReport`: the live blocks of the pages agent ag owns (or of
 * every page), sizes as usableSize gives them, stacks where recorded.
 */
export function leakReportOf(ag: Agent, all: boolean): LeakReport {
  const tid = ag.tid;
  const blocks = liveBlocks(ag.arena, (o) => all || (o & C.OWNER_TID_MASK) === tid, (rb, q) => usableOf(ag, rb, q));
  const st = ag.stacks;
  if (st !== null) {
    for (const b of blocks) {
      const s = st.stackOf(b.address);
      if (s !== undefined) b.stack = s;
    }
  }
  return { blocks, bytes: blocks.reduce((t, b) => t + b.size, 0), text: formatLeaks(blocks) };
}

/** @internal Debug mode's report at detach: console.warn the live blocks of ag's pages, if any. */
export function warnLeaks(ag: Agent): void {
  const report = leakReportOf(ag, false);
  if (report.blocks.length > 0) console.warn(`mimalloc-ts: agent ${ag.id} detaches with ${report.text}`);
}
