// The cold replay protocol of bench/replay.js (its headline table): every
// replay (peer x trace x rep) in a fresh worker_threads Worker created from
// bench/replay.js's main thread (bench/lib/replay-cold-worker.js: at most
// 250 ms of synthetic warm-up on a throwaway instance, then the whole trace
// on a fresh one, only the replay calls timed, every object stamped and
// checked), or, for the native peers, a fresh process of
// bench/peers/native_replay.c in mode=cold (the same stamps and checks, no
// warm-up). V8 runs with its defaults (wasm dynamic tiering on).
// ns/event = median of --cold-reps reps (default 3), shown with min-max.

import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { coldPeerProblem } from './cold-peers.js';
import { BUILD_DIR } from './peers.js';
import { OP_FREE, binLayout, ensureBin, readBinHeader, summarize } from './trace.js';
import { median } from './workload.js';

export const COLD_NATIVE = ['native-mimalloc', 'native-glibc'];
export const COLD_JS = ['mimalloc-ts', 'mimalloc-ts-secure4', 'dlmalloc-wasm', 'mimalloc-wasm', 'tlsf-wasm', 'js-floor'];
export const COLD_ALL = [...COLD_NATIVE, ...COLD_JS];
/** Run by default (mimalloc-ts-secure4 only when named in --peers / --cold-peers). */
export const COLD_DEFAULT = COLD_ALL.filter((p) => p !== 'mimalloc-ts-secure4');
const RATIOS = [
  ['dlmalloc-wasm', '÷dlmalloc-wasm'],
  ['mimalloc-wasm', '÷mimalloc-wasm'],
  ['js-floor', '÷JS floor'],
];

const WORKER = fileURLToPath(new URL('./replay-cold-worker.js', import.meta.url));
export const SAMPLE_EVERY = 65536;

/** The first `maxEvents` events of a binary trace, in typed arrays over SharedArrayBuffers. */
function readBinShared(binFile, maxEvents, name) {
  const hd = readBinHeader(binFile);
  if (!hd) throw new Error(`${binFile}: not a binary trace file`);
  const n = Math.min(hd.events, maxEvents);
  const L = binLayout(hd.events);
  const mk = (C) => new C(new SharedArrayBuffer(Math.max(8, n * C.BYTES_PER_ELEMENT)), 0, n);
  const tr = { name, events: n, op: mk(Uint8Array), tid: mk(Uint8Array), id: mk(Uint32Array), old: mk(Uint32Array), size: mk(Uint32Array), align: mk(Uint32Array) };
  const fd = openSync(binFile, 'r');
  try {
    for (const k of ['op', 'tid', 'id', 'old', 'size', 'align']) {
      const a = tr[k];
      const u8 = new Uint8Array(a.buffer, 0, a.byteLength);
      for (let off = 0; off < u8.length; ) {
        const r = readSync(fd, u8, off, Math.min(u8.length - off, 1 << 30), L[k] + off);
        if (r === 0) throw new Error(`${binFile} is truncated`);
        off += r;
      }
    }
  } finally {
    closeSync(fd);
  }
  let maxId = 0;
  for (let i = n - 1; i >= 0; i--) {
    if (tr.op[i] !== OP_FREE) {
      maxId = tr.id[i];
      break;
    }
  }
  tr.objects = n === hd.events ? hd.objects : maxId;
  return tr;
}

/** One replay in a fresh Worker; resolves with its result once the worker has exited. */
function runWorker(data, timeoutMs = 900_000) {
  return new Promise((resolve, reject) => {
    const w = new Worker(WORKER, { workerData: data });
    let msg = null;
    const timer = setTimeout(() => {
      msg = { ok: false, error: `timed out after ${timeoutMs / 1000} s` };
      w.terminate();
    }, timeoutMs);
    w.on('message', (m) => (msg = m));
    w.on('error', (e) => (msg ??= { ok: false, error: e.message, stack: e.stack }));
    w.on('exit', (code) => {
      clearTimeout(timer);
      if (msg?.ok) resolve(msg.result);
      else reject(Object.assign(new Error(msg?.error ?? `worker exited with ${code} without a result`), { stack: msg?.stack }));
    });
  });
}

function nativeCold(peer, binFile, events) {
  const bin = path.join(BUILD_DIR, peer === 'native-mimalloc' ? 'native_replay_mimalloc' : 'native_replay_glibc');
  const args = [binFile, 'mode=cold', `sample=${SAMPLE_EVERY}`];
  if (Number.isFinite(events)) args.push(`events=${events}`);
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 900_000 });
  let out = null;
  try {
    out = JSON.parse(r.stdout);
  } catch {}
  if (r.status !== 0 || !out || out.error) throw new Error(out?.error ? `${peer}: ${out.error}` : `${peer}: exit ${r.status ?? r.signal}: ${(r.stderr || r.error?.message || '').trim()}`);
  if (out.mode !== 'cold') throw new Error(`${peer}: ${path.basename(bin)} has no cold mode (rebuild: npm run bench:peers)`);
  return {
    nsPerEvent: out.ns_per_event,
    ms: out.ms,
    events: out.events,
    footprintPeak: out.footprint_peak,
    heapRss: out.heap_rss,
    freedAtEnd: out.freed_at_end,
    check: 'ok',
    version: out.version,
  };
}

const fmt = (x, d = 1) => (x === undefined || x === null || Number.isNaN(x) ? '-' : x.toFixed(d));
const mib = (b) => (b === undefined || b === null ? '-' : (b / 2 ** 20).toFixed(1));
const geomean = (xs) => (xs.length ? Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length) : NaN);

/**
 * Run the cold protocol on every trace and peer. Returns { json, text }:
 * the "cold" section of replay.json and the table text.
 */
export async function runCold({ traceFiles, TRACES, peers, unavailable: given = {}, reps, eventsOpt, mimallocSize, floorBytes, warmupMs, guarded, table, log, notes }) {
  const unavailable = { ...given };
  for (const p of peers.filter((x) => !unavailable[x])) {
    const why = coldPeerProblem(p);
    if (why) unavailable[p] = `skipped: ${why}`;
  }
  for (const p of COLD_NATIVE.filter((x) => peers.includes(x) && !unavailable[x])) {
    const bin = path.join(BUILD_DIR, p === 'native-mimalloc' ? 'native_replay_mimalloc' : 'native_replay_glibc');
    const r = spawnSync(bin, [], { encoding: 'utf8' });
    if (r.error) unavailable[p] = `unavailable: ${path.basename(bin)}: ${r.error.message}`;
  }
  const active = peers.filter((p) => !unavailable[p]);
  for (const p of peers) if (unavailable[p]) log(`cold ${p}: ${unavailable[p]}`);
  const results = {};
  for (const file of traceFiles) {
    const name = file.replace(/\.trace\.gz$/, '');
    const { binFile, header } = await ensureBin(path.join(TRACES, file), BUILD_DIR);
    const events = Math.min(header.events, eventsOpt);
    const tr = readBinShared(binFile, events, name);
    const sum = summarize(tr);
    const R = (results[name] = { events, fileEvents: header.events, objects: tr.objects, peakLive: sum.peakLive, peers: {} });
    log(`cold ${name}: ${events.toLocaleString('en-US')} events, ${reps} rep(s) x ${active.length} peers, each in a fresh worker / process`);
    for (let rep = 0; rep < reps; rep++) {
      for (const p of active) {
        const P = (R.peers[p] ??= { samples: [] });
        if (P.error) continue;
        const label = `cold ${name} rep ${rep + 1}/${reps} ${p}`;
        try {
          const run = COLD_NATIVE.includes(p)
            ? () => nativeCold(p, binFile, events)
            : () =>
                runWorker({
                  peer: p,
                  trace: tr,
                  mimallocSize,
                  floorBytes,
                  warmupMs,
                  sampleEvery: SAMPLE_EVERY,
                  seed: 0x9e3779b9 + rep,
                });
          const r = await guarded(label, run, []);
          P.samples.push(r.nsPerEvent);
          (P.footprints ??= []).push(r.footprintPeak);
          if (r.warmup) (P.warmup ??= []).push(r.warmup);
          if (r.heapRss !== undefined) (P.heapRss ??= []).push(r.heapRss);
          P.info ??= r.info;
          P.version ??= r.version;
          P.freedAtEnd = r.freedAtEnd;
          if (r.check !== 'ok') {
            P.check = r.check;
            notes.push(`cold ${name}/${p} rep ${rep + 1}: ${r.check}`);
          } else P.check ??= 'ok';
          log(`${label}: ${fmt(r.nsPerEvent)} ns/event${r.warmup ? ` (warm-up ${r.warmup.events.toLocaleString('en-US')} synthetic events in ${fmt(r.warmup.ms, 0)} ms)` : ''}`);
        } catch (e) {
          P.error = e.message;
          P.errorStack = e.stack;
          log(`${label} FAILED: ${e.message}`);
          notes.push(`cold ${name}/${p}: ${e.message}`);
        }
      }
    }
    for (const P of Object.values(R.peers)) {
      if (P.error || !P.samples.length) continue;
      P.nsPerEvent = median(P.samples);
      P.min = Math.min(...P.samples);
      P.max = Math.max(...P.samples);
      P.footprintPeak = Math.max(...P.footprints);
    }
  }

  // ---- the table ----
  const names = Object.keys(results);
  const cell = (n, p) => results[n].peers[p];
  const ok = (n, p) => cell(n, p)?.nsPerEvent > 0;
  const shown = COLD_ALL.filter((p) => peers.includes(p));
  const ratioCols = RATIOS.filter(([p]) => shown.includes(p) && shown.includes('mimalloc-ts'));
  const ratio = (n, p) => (ok(n, 'mimalloc-ts') && ok(n, p) ? cell(n, 'mimalloc-ts').nsPerEvent / cell(n, p).nsPerEvent : NaN);
  const text = [];
  text.push(
    table(
      `cold: ns per event, median [min-max] of ${reps} rep(s), then mimalloc-ts's ratios (< 1: mimalloc-ts faster)`,
      [...names.map((n) => ({ n })), { n: 'geomean' }],
      [
        { h: 'trace', left: true, f: (r) => r.n },
        { h: 'events', f: (r) => (r.n === 'geomean' ? '' : results[r.n].events.toLocaleString('en-US')) },
        ...shown.map((p) => ({
          h: p,
          f: (r) => {
            if (unavailable[p]) return 'n/a';
            if (r.n === 'geomean') {
              const xs = names.filter((n) => ok(n, p)).map((n) => cell(n, p).nsPerEvent);
              return xs.length === names.length ? fmt(geomean(xs)) : '-';
            }
            const c = cell(r.n, p);
            if (!c) return '-';
            if (c.error) return 'ERROR';
            return reps > 1 ? `${fmt(c.nsPerEvent)} [${fmt(c.min)}-${fmt(c.max)}]` : fmt(c.nsPerEvent);
          },
        })),
        ...ratioCols.map(([p, h]) => ({
          h: `mi-ts${h}`,
          f: (r) => {
            if (r.n !== 'geomean') return fmt(ratio(r.n, p), 2);
            const xs = names.map((n) => ratio(n, p)).filter((x) => x > 0);
            return xs.length === names.length ? fmt(geomean(xs), 2) : '-';
          },
        })),
      ],
    ),
  );
  text.push('');
  text.push(
    table(
      "cold footprint: peak MiB (x ideal) by the allocator's own measure, sampled every 65,536 events off the clock (mimalloc-ts: stats().committed; wasm: memory size; JS floor: bump pointer; native: VmRSS - VmRSS before the replay)",
      names.map((n) => ({ n })),
      [
        { h: 'trace', left: true, f: (r) => r.n },
        { h: 'ideal', f: (r) => mib(results[r.n].peakLive) },
        ...shown.map((p) => ({
          h: p,
          f: (r) => {
            const c = cell(r.n, p);
            return c?.footprintPeak > 0 ? `${mib(c.footprintPeak)} (${fmt(c.footprintPeak / results[r.n].peakLive, 1)}x)` : '-';
          },
        })),
      ],
    ),
  );
  for (const p of peers) if (unavailable[p]) notes.push(`cold ${p}: ${unavailable[p]}`);
  const json = {
    protocol:
      'each replay in a fresh worker_threads Worker (native: a fresh process); at most warmup_ms of a synthetic malloc/calloc/realloc/aligned/free mix (sizes 1 B-64 KiB log-distributed, <= 2000 live) on a throwaway instance of the same peer; then the whole trace (or --events prefix) on a fresh instance, only the replay calls timed (chunks of sample_every events, footprint sampled between chunks off the clock); every object stamped (id in its first 4 bytes, marker in its last byte, byte stores) and checked at free and realloc; V8 defaults (no --no-wasm-dynamic-tiering)',
    reps,
    warmup_ms: warmupMs,
    sample_every: SAMPLE_EVERY,
    v8_flags: process.execArgv,
    peers,
    unavailable,
    results,
  };
  return { json, text: text.join('\n'), unavailable };
}
