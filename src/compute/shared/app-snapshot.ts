import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../observability/logger.ts';
import { runOk, WORKLOAD_PATH } from './run.ts';

/**
 * V8 start-up snapshots of app workloads (`Workload.snapshot`).
 *
 * An app that opts in is bundled into one script (esbuild) and run once by `node
 * --build-snapshot`; a start with the blob (`node --snapshot-blob <blob> <entry>`) then
 * deserializes the bundle and the Node modules it uses instead of loading and compiling them. The
 * tenant dashboard starts in ≈21 ms of CPU this way, against ≈48 ms from its files with the heap
 * flag the drivers pass (which makes V8 refuse Node's own compiled-code cache); bench/README.md.
 *
 * Nothing of the app runs while the blob is built: its modules become functions that run when the
 * blob starts, so what it reads from its environment and every secret it makes at start-up are of
 * that start, never shared between containers.
 *
 * V8 accepts a blob only from the same node binary with the same V8 flags, so blobs are built here,
 * by the platform's own node (the one the process and lxc drivers run apps with) with the flags the
 * app runs with, and named by a digest of those and of the bundle: a new Node, new flags or an
 * edited app gets a blob of its own. They live in the app's directory (`.snapshot/`), which an lxc
 * container sees at /app. Anything that fails (a read-only directory, an app esbuild cannot bundle
 * into a snapshot) leaves the app to start from its files: a snapshot only saves time.
 */

/** The V8 flags an app runs with on the process and lxc drivers: its memory as V8's heap limit. */
export const appNodeFlags = (memoryMb: number): string[] => [`--max-old-space-size=${memoryMb}`];

/** The directory, in the app's own, that holds its blobs. */
export const SNAPSHOT_DIR = '.snapshot';

/**
 * Node modules loaded while the blob is built, so a start finds them compiled. Not node:http:
 * Node 20 cannot load it into a snapshot (it sorts its method list with `Array.prototype.toSorted`,
 * which the snapshot builder lacks); the app loads it when it starts.
 */
const WARM = [
  'node:buffer',
  'node:crypto',
  'node:events',
  'node:fs',
  'node:net',
  'node:path',
  'node:stream',
  'node:stream/promises',
  'node:url',
  'node:util',
];

/** The wrapper's name in the bundle (it has no file). */
const WRAPPER = 'aiqso-snapshot-entry.cjs';

/** Where the bundle keeps each module's `import.meta.url`: its path from the entry's directory. */
const ENTRY_URL = '__aiqsoSnapshotEntryUrl';

export interface SnapshotApp {
  /** The app's directory (host path). */
  dir: string;
  /** Its entry, relative to `dir`. */
  entry: string;
}

interface Built {
  /** File name in `<dir>/.snapshot/`, or undefined when the app starts from its files. */
  blob: string | undefined;
  /** The bundle's inputs and their modification times: a change rebuilds. */
  inputs: [string, number][];
}

/** The script `node --build-snapshot` runs: loads Node modules, and sets the app up to run at start. */
function wrapper(entry: string): string {
  return `'use strict';
const { startupSnapshot } = require('node:v8');
for (const m of ${JSON.stringify(WARM)}) require(m);
startupSnapshot.setDeserializeMainFunction(() => {
  const file = process.argv[1];
  if (!file) {
    console.error('usage: node --snapshot-blob <blob> <the app entry this blob was built from>');
    process.exit(2);
  }
  globalThis.${ENTRY_URL} = require('node:url').pathToFileURL(require('node:path').resolve(file)).href;
  require(${JSON.stringify(`./${entry}`)});
});
`;
}

const mtimeOf = async (file: string) => (await stat(file)).mtimeMs;

/** The blobs of this platform's app workloads, built at most once per process and app version. */
export class AppSnapshots {
  private readonly built = new Map<string, Promise<Built>>();

  constructor(private readonly log: Logger) {}

  /**
   * The blob to start `app` with under `nodeArgs` (its path, absolute on this host), building it
   * first when there is none; undefined when the app is to start from its files.
   */
  async blobFor(app: SnapshotApp, nodeArgs: string[]): Promise<string | undefined> {
    const key = JSON.stringify([path.resolve(app.dir), app.entry, nodeArgs]);
    let pending = this.built.get(key);
    if (pending && !(await this.current(app, await pending))) pending = undefined;
    if (!pending) {
      pending = this.build(app, nodeArgs);
      this.built.set(key, pending);
    }
    const { blob } = await pending;
    return blob && path.join(app.dir, SNAPSHOT_DIR, blob);
  }

  /** Whether a build still stands: no input changed since and its blob is still there. */
  private async current(app: SnapshotApp, built: Built): Promise<boolean> {
    try {
      for (const [file, mtime] of built.inputs) if ((await mtimeOf(file)) !== mtime) return false;
      if (built.blob) await stat(path.join(app.dir, SNAPSHOT_DIR, built.blob));
      return true;
    } catch {
      return false;
    }
  }

  private async build(app: SnapshotApp, nodeArgs: string[]): Promise<Built> {
    const dir = path.resolve(app.dir);
    const inputs: [string, number][] = [];
    try {
      const bundle = await bundleApp(dir, app.entry);
      for (const file of bundle.inputs) inputs.push([file, await mtimeOf(file)]);
      const digest = createHash('sha256')
        .update(
          JSON.stringify([
            process.execPath,
            process.version,
            process.arch,
            process.versions.v8,
            process.config,
            nodeArgs,
          ]),
        )
        .update(bundle.code)
        .digest('hex')
        .slice(0, 20);
      const blob = `${path.basename(app.entry).replace(/[^A-Za-z0-9_.-]/g, '_')}-${digest}.blob`;
      const target = path.join(dir, SNAPSHOT_DIR, blob);
      if (existsSync(target)) return { blob, inputs };
      await mkdir(path.join(dir, SNAPSHOT_DIR), { recursive: true, mode: 0o755 });
      // Another platform process may build the same blob at once: each writes its own files and
      // renames the blob into place, which replaces one whole file with an identical one.
      const tmp = path.join(dir, SNAPSHOT_DIR, `.${blob}.${process.pid}.${randomBytes(4).toString('hex')}`);
      try {
        await writeFile(`${tmp}.cjs`, bundle.code, { mode: 0o644 });
        const started = performance.now();
        // Only PATH: no NODE_OPTIONS from the platform's environment changes the flags the blob is for.
        await runOk(
          process.execPath,
          [...nodeArgs, '--snapshot-blob', `${tmp}.blob`, '--build-snapshot', `${tmp}.cjs`],
          { env: { PATH: WORKLOAD_PATH }, timeoutMs: 60_000 },
        );
        await chmod(`${tmp}.blob`, 0o644);
        await rename(`${tmp}.blob`, target);
        this.log.info(
          { app: dir, blob, ms: Math.round(performance.now() - started) },
          'app start-up snapshot built',
        );
      } finally {
        await rm(`${tmp}.cjs`, { force: true });
        await rm(`${tmp}.blob`, { force: true });
      }
      return { blob, inputs };
    } catch (err) {
      this.log.warn(
        { app: dir, err: err instanceof Error ? err.message : String(err) },
        'app starts from its files: no start-up snapshot could be built',
      );
      return { blob: undefined, inputs };
    }
  }
}

/**
 * The app as one CommonJS script whose modules run only when the blob starts (esbuild wraps a
 * required ES module in a function). `import.meta.url` becomes the module's own address, found at
 * start from the entry's path, so an app reads files beside it wherever its directory is mounted.
 */
async function bundleApp(dir: string, entry: string): Promise<{ code: string; inputs: string[] }> {
  // Loaded here only: esbuild starts a service process of its own on first use.
  const esbuild = await import('esbuild');
  const entryDir = path.dirname(path.join(dir, entry));
  const result = await esbuild.build({
    stdin: { contents: wrapper(entry), resolveDir: dir, sourcefile: WRAPPER, loader: 'js' },
    absWorkingDir: dir,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: `node${process.versions.node}`,
    write: false,
    metafile: true,
    logLevel: 'silent',
    plugins: [
      {
        name: 'import-meta-url',
        setup(build) {
          build.onLoad({ filter: /\.(mjs|js)$/ }, async (args) => {
            const source = await readFile(args.path, 'utf8');
            const from = path.relative(entryDir, args.path).split(path.sep).join('/');
            const url = `new URL(${JSON.stringify(from)}, globalThis.${ENTRY_URL}).href`;
            return { contents: source.replaceAll('import.meta.url', url), loader: 'js' };
          });
        },
      },
    ],
  });
  // Any other use of import.meta would be empty in the bundle: such an app starts from its files.
  const problem = result.warnings.find((w) => w.id === 'empty-import-meta');
  if (problem) throw new Error(`cannot bundle: ${problem.text}`);
  const code = result.outputFiles[0]?.text;
  if (code === undefined) throw new Error('cannot bundle: esbuild wrote nothing');
  const inputs = Object.keys(result.metafile.inputs)
    .filter((f) => f !== WRAPPER)
    .map((f) => path.resolve(dir, f));
  return { code, inputs };
}
