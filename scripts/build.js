#!/usr/bin/env node
// Builds dist/ (ES modules, tsconfig.json) and dist/cjs/ (CommonJS,
// tsconfig.cjs.json, marked by dist/cjs/package.json {"type":"commonjs"}),
// then deletes every declaration file that the published entry points do not
// reach, so the shipped .d.ts hold the API and nothing internal.
//
// Both builds go to a temporary sibling of dist/ (same depth, so the source
// maps' "../src/..." paths stay right), which then replaces dist/ in one
// rename: a test or demo running meanwhile sees the old or the new build,
// never half of one, and files of deleted sources do not linger.
//
// Usage: node scripts/build.js    (no dependencies beyond typescript itself)

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST = path.join(ROOT, 'dist');

/** Declaration files: foo.d.ts, foo.d.mts, foo.d.cts (and their .map). */
const DECL = /\.d\.[cm]?ts$/;
const DECL_OR_MAP = /\.d\.[cm]?ts(\.map)?$/;

/** node_modules/typescript/bin/tsc as seen from this package, or null. */
export function findTsc() {
  try {
    return createRequire(path.join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
  } catch {
    return null;
  }
}

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${path.basename(args[0])} ${args.slice(1).join(' ')}: ${signal ?? `exit code ${code}`}`));
    });
  });
}

/** Every file below dir. */
export function walk(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

/** Every declaration entry point of package.json: "types"/"typings" and each "types" condition in "exports". */
export function declarationEntries(pkg) {
  const entries = new Set();
  if (typeof pkg.types === 'string') entries.add(pkg.types);
  if (typeof pkg.typings === 'string') entries.add(pkg.typings);
  (function visit(x) {
    if (x === null || typeof x !== 'object') return;
    for (const [k, v] of Object.entries(x)) {
      if (k === 'types' && typeof v === 'string') entries.add(v);
      else visit(v);
    }
  })(pkg.exports);
  return [...entries].map((e) => path.normalize(e));
}

/** The relative module specifiers of a declaration file: import/export ... from, import("..."), import "...", require("..."), /// <reference path>. */
export function relativeSpecifiers(text) {
  const specs = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)(['"])(\.\.?\/[^'"\n]*|\.\.?)\1|\/\/\/\s*<reference\s+path\s*=\s*(['"])([^'"\n]+)\3/g;
  for (const m of text.matchAll(re)) {
    if (m[2] !== undefined) specs.push(m[2]);
    else specs.push(m[4].startsWith('.') ? m[4] : './' + m[4]);
  }
  return specs;
}

/** The declaration file a relative specifier in `fromFile` refers to, or null. */
function resolveDeclaration(fromFile, spec) {
  const base = path.resolve(path.dirname(fromFile), spec);
  const candidates = [];
  if (DECL.test(base)) candidates.push(base);
  const m = /\.([cm]?)(?:js|ts|tsx|jsx)$/.exec(base);
  if (m !== null) candidates.push(base.slice(0, m.index) + `.d.${m[1]}ts`);
  candidates.push(base + '.d.ts', path.join(base, 'index.d.ts'));
  return candidates.find((c) => fs.existsSync(c) && fs.statSync(c).isFile()) ?? null;
}

/**
 * Deletes every declaration file (and its .map) under `dir` that is not
 * reachable from `entries` through relative specifiers. Returns the deleted
 * files, relative to `dir`.
 */
export function pruneDeclarations(dir, entries) {
  const keep = new Set();
  const todo = [];
  for (const e of entries) {
    const f = path.resolve(dir, e);
    if (!fs.existsSync(f)) throw new Error(`declaration entry point ${e} was not built`);
    todo.push(f);
  }
  while (todo.length > 0) {
    const f = todo.pop();
    if (keep.has(f)) continue;
    keep.add(f);
    for (const spec of relativeSpecifiers(fs.readFileSync(f, 'utf8'))) {
      const target = resolveDeclaration(f, spec);
      if (target !== null && target.startsWith(dir + path.sep) && !keep.has(target)) todo.push(target);
    }
  }
  const deleted = [];
  for (const f of walk(dir)) {
    if (!DECL_OR_MAP.test(f)) continue;
    const decl = f.endsWith('.map') ? f.slice(0, -'.map'.length) : f;
    if (keep.has(decl)) continue;
    fs.rmSync(f);
    deleted.push(path.relative(dir, f));
  }
  return deleted.sort();
}

export async function build({ quiet = false } = {}) {
  const tsc = findTsc();
  if (tsc === null) {
    throw new Error('typescript is not installed in ' + ROOT + ': run `npm install` there first (it installs the dev tools and builds dist/)');
  }
  const tmp = path.join(ROOT, `.dist-build-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    await Promise.all([
      run(process.execPath, [tsc, '-p', 'tsconfig.json', '--outDir', tmp]),
      run(process.execPath, [tsc, '-p', 'tsconfig.cjs.json', '--outDir', path.join(tmp, 'cjs')]),
    ]);
    fs.writeFileSync(path.join(tmp, 'cjs', 'package.json'), JSON.stringify({ type: 'commonjs' }, null, 2) + '\n');
    // package.json's entry points name dist/...; here they are in tmp/...
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    const entries = declarationEntries(pkg).map((e) => {
      const rel = path.relative(DIST, path.resolve(ROOT, e));
      if (rel.startsWith('..') || path.isAbsolute(rel)) throw new Error(`declaration entry point ${e} is outside dist/`);
      return rel;
    });
    if (entries.length === 0) throw new Error('package.json names no declaration entry point ("types")');
    const deleted = pruneDeclarations(tmp, entries);
    // Replace dist/ by the new build.
    const old = path.join(ROOT, `.dist-old-${process.pid}`);
    let moved = false;
    try {
      fs.renameSync(DIST, old);
      moved = true;
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
    fs.renameSync(tmp, DIST);
    if (moved) fs.rmSync(old, { recursive: true, force: true });
    if (!quiet) {
      console.log(`built dist/ (ESM) and dist/cjs/ (CommonJS); declarations kept: ${entries.join(', ')} and what they reach` +
        (deleted.length > 0 ? `; pruned ${deleted.filter((f) => !f.endsWith('.map')).length} unreachable .d.ts` : ''));
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  build({ quiet: process.argv.includes('--quiet') }).catch((e) => {
    console.error(`build: ${e.message}`);
    process.exit(1);
  });
}
