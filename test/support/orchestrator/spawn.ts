import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./worker-process.ts', import.meta.url));

export interface SpawnedWorker {
  child: ChildProcess;
  /** Resolves when the worker takes jobs; rejects if it exits first. */
  ready: Promise<void>;
  exited: Promise<void>;
  stderr: () => string;
}

/**
 * The worker script as one bundled file, built once per test file with the
 * esbuild that tsx brings along: a process then starts in a third of the CPU
 * time of `node --import tsx` (which it falls back to), and the SIGKILL test
 * spawns hundreds. Same code either way.
 */
export async function prepareWorkerScript(): Promise<string[]> {
  try {
    const { build } = await import('esbuild');
    const outfile = path.join(await mkdtemp(path.join(os.tmpdir(), 'aiqso-worker-')), 'worker.mjs');
    await build({
      entryPoints: [SCRIPT],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile,
      // Loaded lazily by dependencies, never on the worker's path.
      external: ['pg-native', 'typescript'],
      banner: {
        js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
      },
      logLevel: 'warning',
    });
    return [outfile];
  } catch {
    return ['--import', 'tsx', SCRIPT];
  }
}

/** A test worker as its own process (argv from `prepareWorkerScript`). */
export function spawnWorker(argv: string[], env: Record<string, string>): SpawnedWorker {
  const child = spawn(process.execPath, argv, {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('worker ready')) resolve();
    });
    void exited.then(() => reject(new Error(`worker exited before it was ready\n${stderr}`)));
  });
  ready.catch(() => undefined);
  return { child, ready, exited, stderr: () => stderr };
}
