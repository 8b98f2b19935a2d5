// Helpers shared by the multi-worker tests (test/workers-*.test.js) and their
// worker scripts. Plain ESM; no test code runs when this file is loaded.
//
// Nothing in this folder is a test file (`npm test` runs test/*.test.js), but
// test files import some worker scripts on the main thread for their exports
// (torture-worker.js, replay-worker.js): every script here must do nothing
// when it is loaded on the main thread (its worker code under `!isMainThread`).

import { Worker } from 'node:worker_threads';

/** A small deterministic PRNG in the splitmix family, 32-bit, returns u32. */
export function makeRng(seed) {
  let s = seed >>> 0;
  return function next() {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

// ---------------------------------------------------------------------------
// "Items" objects (test-stress): n 8-byte words; word i = ((n - i) ^ cookie,
// (its own address) ^ cookie2). The second half lets a verifier notice a block
// that overlaps another live block or was copied elsewhere.
// ---------------------------------------------------------------------------

export const ITEM_COOKIE = 0xbf58476d;
export const ITEM_COOKIE2 = 0x1ce4e5b9;
export const ITEM_MAX_WORDS = 64 * 10000 * 2; // 2^6 words, x10000 at most, or grown by realloc

export function writeItems(u32, p, n) {
  let w = p >>> 2;
  for (let i = 0; i < n; i++, w += 2) {
    u32[w] = ((n - i) ^ ITEM_COOKIE) >>> 0;
    u32[w + 1] = ((p + i * 8) ^ ITEM_COOKIE2) >>> 0;
  }
}

/** Returns n (the word count) or throws "memory corruption". */
export function verifyItems(u32, p, where) {
  const w0 = p >>> 2;
  const n = (u32[w0] ^ ITEM_COOKIE) >>> 0;
  if (n < 1 || n > ITEM_MAX_WORDS || w0 + 2 * n > u32.length) {
    throw new Error(`memory corruption (${where}): block ${p} has an impossible length word ${n}`);
  }
  let w = w0;
  for (let i = 0; i < n; i++, w += 2) {
    if (u32[w] !== (((n - i) ^ ITEM_COOKIE) >>> 0) || u32[w + 1] !== (((p + i * 8) ^ ITEM_COOKIE2) >>> 0)) {
      throw new Error(`memory corruption (${where}): block ${p} of ${n} words differs at word ${i}`);
    }
  }
  return n;
}

// ---------------------------------------------------------------------------
// "Filled" blocks (kill / xfree tests): n bytes, n a positive multiple of 8.
// u32 word 0 = n ^ FILL_COOKIE, word k = (p + 4k) ^ FILL_COOKIE2.
// ---------------------------------------------------------------------------

export const FILL_COOKIE = 0x5eed1234;
export const FILL_COOKIE2 = 0x9e3779b1;

export function fillBlock(u32, p, n) {
  const w0 = p >>> 2;
  u32[w0] = (n ^ FILL_COOKIE) >>> 0;
  const words = n >>> 2;
  for (let k = 1; k < words; k++) u32[w0 + k] = ((p + 4 * k) ^ FILL_COOKIE2) >>> 0;
}

/** Returns n or throws. `maxBytes` bounds the length word. */
export function verifyBlock(u32, p, maxBytes, where) {
  const w0 = p >>> 2;
  const n = (u32[w0] ^ FILL_COOKIE) >>> 0;
  if (n === 0 || n > maxBytes || (n & 7) !== 0) {
    throw new Error(`memory corruption (${where}): block ${p} has an impossible length word ${n}`);
  }
  const words = n >>> 2;
  for (let k = 1; k < words; k++) {
    if (u32[w0 + k] !== (((p + 4 * k) ^ FILL_COOKIE2) >>> 0)) {
      throw new Error(`memory corruption (${where}): block ${p} of ${n} bytes differs at byte ${4 * k}`);
    }
  }
  return n;
}

// ---------------------------------------------------------------------------
// Main-thread side
// ---------------------------------------------------------------------------

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs a worker to completion. Resolves with the list of messages it posted
 * once it exits with code 0; rejects on an uncaught error, a non-zero exit, or
 * after `timeoutMs` (the worker is then terminated).
 */
export function runWorker(url, workerData, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const w = new Worker(url, { workerData });
    const messages = [];
    let error = null;
    const timer = setTimeout(() => {
      error = error ?? new Error(`worker ${url} timed out after ${timeoutMs} ms`);
      w.terminate();
    }, timeoutMs);
    w.on('message', (m) => messages.push(m));
    w.on('error', (e) => { error = error ?? e; });
    w.on('exit', (code) => {
      clearTimeout(timer);
      if (error) reject(error);
      else if (code !== 0) reject(new Error(`worker ${url} exited with code ${code}`));
      else resolve(messages);
    });
  });
}

/**
 * A worker driven by request/response messages (test/workers/cmd-worker.js).
 * `call(op, ...args)` resolves with the worker's answer. Message passing orders
 * the operations of the two agents (each reply happens after the request).
 */
export class Remote {
  static live = new Set();

  /** Terminates every Remote still running (call from an afterEach hook). */
  static async killAll() {
    await Promise.all([...Remote.live].map((r) => r.kill()));
  }

  constructor(url, workerData) {
    this.worker = new Worker(url, { workerData });
    Remote.live.add(this);
    this.pending = new Map();
    this.nextId = 1;
    this.error = null;
    this.exited = new Promise((resolve) => {
      this.worker.on('exit', (code) => {
        Remote.live.delete(this);
        for (const { reject } of this.pending.values()) {
          reject(this.error ?? new Error(`worker exited with code ${code}`));
        }
        this.pending.clear();
        resolve(code);
      });
    });
    this.worker.on('error', (e) => { this.error = this.error ?? e; });
    this.worker.on('message', (m) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.fail) p.reject(new Error(`worker: ${m.fail}`));
      else p.resolve(m.result);
    });
  }

  call(op, ...args) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args });
    });
  }

  /** Terminates the worker if it is still running (cleanup after a failure). */
  async kill() {
    await this.worker.terminate();
  }

  /** Asks the worker to detach and exit; resolves with the exit code. */
  async close() {
    await this.call('detach');
    return this.exited;
  }
}
