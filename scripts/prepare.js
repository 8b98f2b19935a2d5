#!/usr/bin/env node
// npm's "prepare" script. npm runs it
//   - after `npm install` / `npm ci` in this directory (dev dependencies are installed by then);
//   - before `npm pack` / `npm publish` here;
//   - when another project installs this directory: `npm install /path/to/mimalloc-ts`
//     makes node_modules/mimalloc-ts a symlink to it and runs "prepare" in it, but
//     does NOT install its devDependencies (with --install-links it packs the
//     directory instead, again after "prepare" and without devDependencies);
//   - for a git dependency, after installing the clone's devDependencies.
//
// So: nothing to do when dist/ is up to date; build when the dev tools are
// installed; when another project installs a fresh clone (no dev tools), install
// them here first (`npm install --ignore-scripts --no-save`, what npm does for git
// dependencies), then build; otherwise say what to do.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DIST = path.join(ROOT, 'dist');
/** Written last by scripts/build.js: its mtime is the build's. */
const STAMP = path.join(DIST, 'cjs', 'package.json');
/** What the build reads. */
const INPUTS = ['src', 'tsconfig.json', 'tsconfig.cjs.json', 'scripts/build.js', 'package.json'];

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

function say(msg) {
  process.stderr.write(`${pkg.name} prepare: ${msg}\n`);
}

function newestMtime(p) {
  let st;
  try {
    st = fs.statSync(p);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let t = st.mtimeMs; // a deleted source changes its directory's mtime
  for (const e of fs.readdirSync(p)) t = Math.max(t, newestMtime(path.join(p, e)));
  return t;
}

/** The files package.json's entry points name under dist/. */
function entryFiles() {
  const out = [];
  (function visit(x) {
    if (typeof x === 'string') {
      if (x.startsWith('./dist/')) out.push(path.join(ROOT, x));
    } else if (x !== null && typeof x === 'object') {
      for (const v of Object.values(x)) visit(v);
    }
  })([pkg.main, pkg.module, pkg.types, pkg.exports]);
  return out;
}

function upToDate() {
  if (!fs.existsSync(STAMP) || !entryFiles().every((f) => fs.existsSync(f))) return false;
  const built = fs.statSync(STAMP).mtimeMs;
  return INPUTS.every((p) => newestMtime(path.join(ROOT, p)) <= built);
}

function devToolsInstalled() {
  const req = createRequire(path.join(ROOT, 'package.json'));
  try {
    req.resolve('typescript/bin/tsc');
    req.resolve('@types/node/package.json');
    return true;
  } catch {
    return false;
  }
}

function build() {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build.js')], { cwd: ROOT, stdio: 'inherit' });
  return r.status === 0;
}

/** npm configuration that a nested npm may keep (where and how to fetch); everything else (prefix, global, omit, save, ...) is the outer command's business. */
const KEEP_NPM_ENV = /^npm_config_(cache|userconfig|globalconfig|registry|@[^:]*:registry|offline|prefer_offline|prefer_online|cafile|ca|cert|key|proxy|https_proxy|noproxy|strict_ssl|fetch_[a-z_]+|maxsockets|before|replace_registry_host)$/i;

/** Installs this package's devDependencies here, as npm does for a git dependency. */
function installDevTools() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_/i.test(k) && !KEEP_NPM_ENV.test(k)) continue;
    if (k === 'INIT_CWD') continue;
    env[k] = v;
  }
  const [cmd, pre] = process.env.npm_execpath && /\.[cm]?js$/.test(process.env.npm_execpath)
    ? [process.env.npm_node_execpath || process.execPath, [process.env.npm_execpath]]
    : [process.platform === 'win32' ? 'npm.cmd' : 'npm', []];
  const args = [...pre, 'install', '--include=dev', '--ignore-scripts', '--no-save', '--no-audit', '--no-fund', '--loglevel=error'];
  say(`installing the dev tools in ${ROOT} (npm ${args.slice(pre.length).join(' ')})`);
  const r = spawnSync(cmd, args, { cwd: ROOT, env, stdio: 'inherit', shell: process.platform === 'win32' });
  return r.status === 0;
}

function samePath(a, b) {
  try {
    return fs.realpathSync(a) === fs.realpathSync(b);
  } catch {
    return path.resolve(a) === path.resolve(b);
  }
}

function main() {
  if (upToDate()) return 0;
  if (devToolsInstalled()) return build() ? 0 : 1;

  // The project npm works on: this directory for its own install/pack, another project installing this one.
  const project = process.env.npm_config_local_prefix || process.env.INIT_CWD || '';
  const fromElsewhere = project !== '' && !samePath(project, ROOT);
  const howTo = `run \`npm install\` in ${ROOT} (it installs the dev tools and builds dist/)`;
  if (fromElsewhere) {
    // Another project installs this directory (or packs it): build it for them.
    if (installDevTools() && devToolsInstalled() && build()) return 0;
    say(`could not install the dev tools (typescript, @types/node) to build dist/: ${howTo}, then install this package again.`);
    return 1;
  }
  // `npm install --omit=dev` (or NODE_ENV=production) here, `npm pack` without `npm install` first, or run by hand.
  const packing = process.env.npm_command === 'pack' || process.env.npm_command === 'publish';
  say(`dist/ is ${fs.existsSync(DIST) ? 'out of date' : 'not built'} and the dev tools (typescript, @types/node) are not installed: ${howTo}.`);
  return packing ? 1 : 0;
}

process.exitCode = main();
