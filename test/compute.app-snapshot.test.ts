import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../src/catalog/load.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { appArchive } from '../src/compute/proxmox/apps.ts';
import { AppSnapshots, appNodeFlags, SNAPSHOT_DIR } from '../src/compute/shared/app-snapshot.ts';
import { freeLoopbackPort } from '../src/compute/process/ports.ts';
import { sleep } from '../src/compute/shared/run.ts';
import { createLogger } from '../src/observability/logger.ts';

const root = await mkdtemp(path.join(os.tmpdir(), 'aiqso-app-snapshot-'));
const log = createLogger('silent');

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/**
 * An app of two modules: the entry reads its name from the environment and makes a secret at
 * start-up; a module in a folder below reads a file beside itself through `import.meta.url`.
 * Every start appends a line to starts.log in the app's directory.
 */
async function writeApp(dir: string, greeting = 'hello'): Promise<void> {
  await mkdir(path.join(dir, 'lib'), { recursive: true });
  await writeFile(path.join(dir, 'lib', 'word.txt'), greeting);
  await writeFile(
    path.join(dir, 'lib', 'word.mjs'),
    `import { readFileSync } from 'node:fs';
export const WORD = readFileSync(new URL('./word.txt', import.meta.url), 'utf8');
`,
  );
  await writeFile(
    path.join(dir, 'server.mjs'),
    `import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { WORD } from './lib/word.mjs';
const NAME = process.env.APP_NAME ?? '';
const SECRET = randomBytes(16).toString('hex');
appendFileSync(new URL('./starts.log', import.meta.url), process.pid + '\\n');
createServer((req, res) => res.end(JSON.stringify({ name: NAME, secret: SECRET, word: WORD, pid: process.pid })))
  .listen(Number(process.env.PORT), '127.0.0.1');
`,
  );
}

/** Start `node <flags> --snapshot-blob <blob> <entry>` (or from the files), ask it once, stop it. */
async function startOnce(
  entry: string,
  flags: string[],
  blob: string | undefined,
  env: Record<string, string>,
): Promise<{ name: string; secret: string; word: string; pid: number }> {
  const port = await freeLoopbackPort(new Set());
  const args = [...flags, ...(blob ? ['--snapshot-blob', blob] : []), entry];
  const child = spawn(process.execPath, args, { env: { ...env, PORT: String(port) }, stdio: 'inherit' });
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const answer = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.json() as Promise<{ name: string; secret: string; word: string; pid: number }>,
        () => undefined,
      );
      if (answer) return answer;
      if (child.exitCode !== null) throw new Error(`the app exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error('the app did not answer');
      await sleep(25);
    }
  } finally {
    child.kill('SIGKILL');
    if (child.exitCode === null) await once(child, 'exit');
  }
}

describe('app start-up snapshots', () => {
  it('builds a blob that starts the app with its own environment, secrets and files, running nothing of it at build', async () => {
    const dir = path.join(root, 'app');
    await writeApp(dir);
    const flags = appNodeFlags(64);
    const blob = await new AppSnapshots(log).blobFor({ dir, entry: 'server.mjs' }, flags);
    expect(blob).toBeDefined();
    expect(path.dirname(blob!)).toBe(path.join(dir, SNAPSHOT_DIR));
    // Building ran none of the app's modules.
    await expect(stat(path.join(dir, 'starts.log'))).rejects.toThrow(/ENOENT/);
    const entry = path.join(dir, 'server.mjs');
    const a = await startOnce(entry, flags, blob, { APP_NAME: 'first' });
    const b = await startOnce(entry, flags, blob, { APP_NAME: 'second' });
    expect([a.name, b.name]).toEqual(['first', 'second']);
    expect(a.word).toBe('hello');
    expect(a.secret).toMatch(/^[0-9a-f]{32}$/);
    expect(a.secret).not.toBe(b.secret);
    // Each start ran the app once, with its own pid.
    expect((await readFile(path.join(dir, 'starts.log'), 'utf8')).trim().split('\n')).toEqual([
      String(a.pid),
      String(b.pid),
    ]);
  });

  it('keeps a blob while the app, the node and the flags stay the same, and builds another when one changes', async () => {
    const dir = path.join(root, 'versions');
    await writeApp(dir);
    const app = { dir, entry: 'server.mjs' };
    const snapshots = new AppSnapshots(log);
    const first = await snapshots.blobFor(app, appNodeFlags(64));
    const built = (await stat(first!)).mtimeMs;
    // Another platform process finds the same blob and builds nothing.
    expect(await new AppSnapshots(log).blobFor(app, appNodeFlags(64))).toBe(first);
    expect((await stat(first!)).mtimeMs).toBe(built);
    // Other flags: V8 would refuse the first blob with them.
    const bigger = await snapshots.blobFor(app, appNodeFlags(128));
    expect(bigger).toBeDefined();
    expect(bigger).not.toBe(first);
    // An edited module (the process that built the first blob sees the change too).
    await sleep(20);
    await writeFile(path.join(dir, 'lib', 'word.mjs'), `export const WORD = 'edited';\n`);
    const edited = await snapshots.blobFor(app, appNodeFlags(64));
    expect(edited).not.toBe(first);
    const answer = await startOnce(path.join(dir, 'server.mjs'), appNodeFlags(64), edited, {});
    expect(answer.word).toBe('edited');
    // A blob removed by hand is built again.
    await rm(edited!);
    expect(await snapshots.blobFor(app, appNodeFlags(64))).toBe(edited);
    await stat(edited!);
  });

  it('leaves an app it cannot snapshot to start from its files', async () => {
    const dir = path.join(root, 'awaits');
    await mkdir(dir, { recursive: true });
    // Top-level await: esbuild cannot turn such a module into a function run at start.
    await writeFile(path.join(dir, 'server.mjs'), `await Promise.resolve();\nexport {};\n`);
    expect(await new AppSnapshots(log).blobFor({ dir, entry: 'server.mjs' }, [])).toBeUndefined();
  });

  it("leaves the blobs out of a Proxmox guest's app archive (built for this host's node)", async () => {
    const dir = path.join(root, 'archived');
    await writeApp(dir);
    const work = path.join(root, 'archives');
    const before = await appArchive(work, dir, 'server.mjs');
    expect(await new AppSnapshots(log).blobFor({ dir, entry: 'server.mjs' }, [])).toBeDefined();
    expect((await appArchive(work, dir, 'server.mjs')).filename).toBe(before.filename);
  });

  it('the process driver starts the tenant dashboard from its snapshot, with its heap limit', async () => {
    const driver = await ProcessDriver.open({ root: path.join(root, 'process'), log, pollMs: 100 });
    const name = 'aiqso-t-snapshot-dashboard';
    try {
      await driver.ensure({
        name,
        tenantId: 'tenant_snapshot',
        role: 'dashboard',
        workload: {
          kind: 'app',
          dir: path.join(REPO_ROOT, 'dashboard'),
          entry: 'server.mjs',
          snapshot: true,
        },
        resources: { memoryMb: 256, cores: 1, diskGb: 1 },
        port: 3000,
        env: {
          AIQSO_TENANT_SLUG: 'snap',
          AIQSO_COMPANY: 'Snapshot Ltd',
          AIQSO_API_URL: 'http://127.0.0.1:9',
        },
      });
      const info = await driver.start(name);
      const base = `http://${info.endpoint!.host}:${info.endpoint!.port}`;
      const deadline = Date.now() + 20_000;
      let page = '';
      while (!page.includes('Snapshot Ltd')) {
        if (Date.now() > deadline) throw new Error('the dashboard did not answer');
        page = await fetch(`${base}/login`).then(
          (r) => r.text(),
          () => '',
        );
        await sleep(50);
      }
      const argv = (await readFile(`/proc/${info.handle}/cmdline`, 'utf8')).split('\0');
      expect(argv).toContain('--snapshot-blob');
      expect(argv[argv.indexOf('--snapshot-blob') + 1]).toContain(`${path.sep}${SNAPSHOT_DIR}${path.sep}`);
      expect((await driver.status(name)).limits?.memoryMb).toBe(256);
      // Its stylesheet is read beside its files (import.meta.url in the bundle).
      const css = /href="\/?(assets\/design-[0-9a-f]+\.css)"/.exec(page)?.[1];
      expect(css).toBeDefined();
      const sheet = await fetch(`${base}/${css}`);
      expect(sheet.status).toBe(200);
      expect(await sheet.text()).toBe(
        await readFile(path.join(REPO_ROOT, 'dashboard', 'design.css'), 'utf8'),
      );
    } finally {
      await driver.destroy(name);
      await driver.close();
    }
  });
});
