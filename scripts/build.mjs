// `npm run build`: compiles src/ to plain JavaScript in dist/ (tsconfig.build.json) and copies
// beside it the files src/ reads at run time that are not TypeScript (migrations, schema.sql,
// json, txt, mjs). `prepare` runs it, so `npm install`/`npm ci` in a checkout and `npm pack`
// build dist/; a package installed from its tarball carries dist/ and builds nothing.
//
// dist/ is not committed: it is derived from src/ and would drift from it in review. The build is
// incremental (dist/.tsbuildinfo), so a second run after a small change takes seconds; with
// `--if-stale` it does nothing when no file under src/ is newer than the last build (the tests'
// global setup uses this).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SRC = path.join(ROOT, 'src');
const DIST = path.join(ROOT, 'dist');
const STAMP = path.join(DIST, '.built');

/**
 * Every file under `dir`, relative to it.
 * @param {string} dir
 * @param {string} [rel]
 * @returns {string[]}
 */
function files(dir, rel = '') {
  return readdirSync(path.join(dir, rel), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(dir, path.join(rel, e.name)) : [path.join(rel, e.name)],
  );
}

/** @param {string} file */
function mtime(file) {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** True when dist/ was built after the last change to src/ (or to this build's configuration). */
export function isFresh() {
  const built = mtime(STAMP);
  if (built < 0) return false;
  const inputs = [
    ...files(SRC).map((f) => path.join(SRC, f)),
    path.join(ROOT, 'tsconfig.json'),
    path.join(ROOT, 'tsconfig.build.json'),
    fileURLToPath(import.meta.url),
  ];
  return inputs.every((f) => mtime(f) <= built);
}

export function build() {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], {
    stdio: 'inherit',
  });
  if (result.status !== 0) throw new Error(`tsc failed (exit code ${result.status})`);
  for (const rel of files(SRC)) {
    if (rel.endsWith('.ts')) continue;
    // Only what changed: a process running from dist/ may be reading the others.
    if (mtime(path.join(DIST, rel)) >= mtime(path.join(SRC, rel))) continue;
    mkdirSync(path.dirname(path.join(DIST, rel)), { recursive: true });
    copyFileSync(path.join(SRC, rel), path.join(DIST, rel));
  }
  // A file removed from src/ leaves its old output behind: drop outputs with no source.
  for (const rel of files(DIST)) {
    if (rel.startsWith('.')) continue;
    const base = rel.replace(/\.js(\.map)?$/, '');
    const hasSource =
      rel === base ? mtime(path.join(SRC, rel)) >= 0 : mtime(path.join(SRC, `${base}.ts`)) >= 0;
    if (!hasSource) rmSync(path.join(DIST, rel));
  }
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
}

/**
 * The tenant dashboard (dashboard/, plain Node without a build, deployed on its own) serves the
 * platform's design system: its stylesheet (src/web/design.ts) is copied to dashboard/design.css.
 * The copy is committed too, so a checkout runs the dashboard before any build; a unit test
 * (test/unit/dashboard.design.test.ts) fails when it drifts from the source.
 */
export async function copyDesign() {
  const { STYLESHEET } = await import(pathToFileURL(path.join(DIST, 'web', 'design.js')).href);
  const target = path.join(ROOT, 'dashboard', 'design.css');
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    // not there yet
  }
  if (current !== STYLESHEET) writeFileSync(target, STYLESHEET);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--if-stale') && isFresh()) process.exit(0);
  try {
    build();
    await copyDesign();
  } catch (err) {
    console.error(`build: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
