// Bundles the CLI's TypeScript sources with esbuild (the one tsx uses) into
// plain JavaScript under .build/, so a long-running process such as
// `aiqso edge` does not carry tsx's loader for its whole life: on Node 20 the
// loader hooks run in a worker thread of their own, about 35 MB of RSS.
//
// Each build goes to a directory named after a hash of its output, written
// whole and then renamed into place, so processes starting at the same time
// never see each other's half-written files and an edited source is never
// served from an old build.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const OUT = path.join(ROOT, '.build');

/**
 * `import.meta.url` in a bundle would name the bundle; the sources use it to
 * find files beside them (migrations, catalog, package.json), so each module
 * keeps its own source location.
 */
const sourceLocation = {
  name: 'source-location',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      const url = JSON.stringify(pathToFileURL(args.path).href);
      const contents = readFileSync(args.path, 'utf8')
        .replaceAll('import.meta.url', url)
        .replaceAll('import.meta.dirname', JSON.stringify(path.dirname(args.path)))
        .replaceAll('import.meta.filename', JSON.stringify(args.path));
      return { contents, loader: 'ts' };
    });
  },
};

/**
 * `bundle` in a worker thread of its own, which ends when the build is done:
 * what building allocates (every source read, esbuild's output) goes with the
 * worker's heap instead of growing the heap of a process that then runs for
 * months.
 */
export function bundleInWorker(entry) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: { entry } });
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`bundling stopped (exit code ${code})`)));
  });
}

if (!isMainThread && workerData?.entry) parentPort.postMessage(await bundle(workerData.entry));

/** Build `entry` (relative to the repository) and return the file URL of the built entry. */
export async function bundle(entry) {
  const esbuild = await import('esbuild');
  let result;
  try {
    result = await esbuild.build({
      entryPoints: { main: path.join(ROOT, entry) },
      bundle: true,
      // Dependencies stay in node_modules; per-command dynamic imports become chunks loaded on demand.
      packages: 'external',
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      keepNames: true,
      sourcemap: 'linked',
      outdir: OUT,
      write: false,
      logLevel: 'silent',
      plugins: [sourceLocation],
    });
  } finally {
    await esbuild.stop();
  }
  const hash = createHash('sha256');
  for (const f of result.outputFiles) hash.update(f.path).update(f.contents);
  const dir = path.join(OUT, hash.digest('hex').slice(0, 16));
  try {
    statSync(dir);
  } catch {
    const tmp = `${dir}.${process.pid}.tmp`;
    mkdirSync(tmp, { recursive: true });
    for (const f of result.outputFiles) {
      const target = path.join(tmp, path.relative(OUT, f.path));
      mkdirSync(path.dirname(target), { recursive: true });
      writeFileSync(target, f.contents);
    }
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // another process renamed the same build first
    }
    prune(dir);
  }
  return pathToFileURL(path.join(dir, 'main.js')).href;
}

/** Remove builds untouched for a day (a running process keeps its modules in memory). */
function prune(keep) {
  const dayAgo = Date.now() - 86_400_000;
  for (const name of readdirSync(OUT)) {
    const p = path.join(OUT, name);
    if (p !== keep && statSync(p).mtimeMs < dayAgo) rmSync(p, { recursive: true, force: true });
  }
}
