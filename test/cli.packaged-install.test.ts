import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/db/embedded.ts';
import { cliEnv, startCli } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { missingPart } from './support/strict.ts';

/**
 * The package as a user gets it: `npm pack` of the built checkout (dist/ is built by `prepare` at
 * `npm install` and by the test setup; packing skips `prepare` so that it does not rewrite dist/
 * under the other test files running it), the tarball
 * installed globally into an empty prefix, and its `aiqso` command run from there; and a checkout
 * run with `npm start` while it is read-only. The command runs the compiled JavaScript in dist/ and
 * writes nothing inside the package.
 */
const ROOT = path.resolve(import.meta.dirname, '..');
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string })
  .version;
const READY = 'Press Ctrl-C to stop.';

let tmp: string;
let prefix: string;
let installed: string;
let marker: string;
let testDb: TestDatabase;

function npm(args: string[], cwd: string) {
  const r = spawnSync('npm', args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, npm_config_loglevel: 'error' },
  });
  if (r.status !== 0) throw new Error(`npm ${args.join(' ')} failed (${r.status})\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

beforeAll(async () => {
  testDb = await createTestDatabase();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-packaged-'));
  // The embedded server runs as the postgres user, which must be able to pass through to the data dir.
  await chmod(tmp, 0o711);
  prefix = path.join(tmp, 'prefix');
  const tarball = npm(['pack', '--ignore-scripts', '--pack-destination', tmp], ROOT)
    .trim()
    .split('\n')
    .at(-1)!;
  // From npm's cache: `npm ci` in this checkout put every dependency there.
  npm(
    [
      'install',
      '-g',
      path.join(tmp, tarball),
      '--prefix',
      prefix,
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ],
    tmp,
  );
  installed = path.join(prefix, 'lib', 'node_modules', 'aiqso');
  marker = path.join(tmp, 'installed');
  writeFileSync(marker, '');
}, 600_000);

afterAll(async () => {
  await testDb?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

async function healthz(port: number) {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  return res.status;
}

describe('the packaged install', { timeout: 300_000 }, () => {
  it('carries the compiled CLI and none of the build tools', () => {
    expect(existsSync(path.join(installed, 'dist', 'cli', 'main.js'))).toBe(true);
    expect(existsSync(path.join(installed, 'dist', 'db', 'migrations', '0001_init.sql'))).toBe(true);
    expect(existsSync(path.join(installed, 'src'))).toBe(false);
    for (const tool of ['tsx', 'typescript'])
      expect(existsSync(path.join(installed, 'node_modules', tool)), tool).toBe(false);
    // esbuild is the one bundler it carries: it bundles the tenant dashboard for its start-up snapshot.
    expect(existsSync(path.join(installed, 'node_modules', 'esbuild'))).toBe(true);
    expect(existsSync(path.join(installed, 'dashboard', '.snapshot'))).toBe(false);
  });

  it('aiqso --version from the global bin', () => {
    const out = execFileSync(path.join(prefix, 'bin', 'aiqso'), ['--version'], { encoding: 'utf8' });
    expect(out.trim()).toBe(VERSION);
  });

  it('aiqso up on a temp data dir (embedded PostgreSQL) answers /healthz and writes nothing inside the package', async () => {
    const dataDir = path.join(tmp, 'data');
    const port = await freePort();
    const up = await startCli(
      ['up'],
      { AIQSO_DATA_DIR: dataDir, AIQSO_HTTP_PORT: String(port), AIQSO_DRIVER: 'process' },
      READY,
      240_000,
      undefined,
      [path.join(prefix, 'bin', 'aiqso')],
    );
    try {
      expect(await healthz(port)).toBe(200);
    } finally {
      up.child.kill('SIGINT');
    }
    expect((await up.exited).code).toBe(0);
    expect(existsSync(path.join(dataDir, 'pg'))).toBe(true);
    const written = execFileSync('find', [installed, '-newer', marker], { encoding: 'utf8' });
    expect(written).toBe('');
  });
});

describe('a read-only checkout', { timeout: 300_000 }, () => {
  // As root, file modes do not stop a write: the checkout is bind-mounted read-only instead, in a
  // mount namespace of the command's own (unshare -m), so a write anywhere in it fails with EROFS.
  const canMount =
    process.getuid?.() === 0 && spawnSync('unshare', ['-m', 'true'], { stdio: 'ignore' }).status === 0;

  it('npm start serves, with the checkout mounted read-only', async (ctx) => {
    if (missingPart('root and unshare (a read-only bind mount)', canMount, 'run the tests as root'))
      ctx.skip();
    const readOnly = [
      'unshare',
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && cd "$1" && shift && exec "$@"',
      'sh',
      ROOT,
    ];
    // The mount is real: a write into the checkout fails there.
    const probe = spawnSync(readOnly[0]!, [...readOnly.slice(1), 'touch', path.join(ROOT, '.write-probe')], {
      encoding: 'utf8',
    });
    expect(probe.status).not.toBe(0);
    expect(probe.stderr).toMatch(/Read-only file system/);

    // `npm start` as from a terminal: its own process group, stopped by Ctrl-C (SIGINT to the group).
    const port = await freePort();
    const npmStart = spawn(readOnly[0]!, [...readOnly.slice(1), 'npm', 'start'], {
      env: cliEnv({
        DATABASE_URL: testDb.url,
        AIQSO_DATA_DIR: path.join(tmp, 'checkout-data'),
        AIQSO_HTTP_PORT: String(port),
        AIQSO_DRIVER: 'process',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      npmStart.on('close', (code, signal) => done({ code, signal })),
    );
    let output = '';
    npmStart.stdout.on('data', (c: Buffer) => (output += c.toString()));
    npmStart.stderr.on('data', (c: Buffer) => (output += c.toString()));
    try {
      const deadline = Date.now() + 120_000;
      while (!output.includes(READY)) {
        if (npmStart.exitCode !== null || Date.now() > deadline)
          throw new Error(`npm start did not start\n${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await healthz(port)).toBe(200);
    } finally {
      process.kill(-npmStart.pid!, 'SIGINT');
    }
    // npm passes Ctrl-C on and then ends itself with the same signal.
    expect([
      { code: 0, signal: null },
      { code: null, signal: 'SIGINT' },
    ]).toContainEqual(await exited);
    expect(output).not.toMatch(/EROFS|read-only/i);
  });
});
