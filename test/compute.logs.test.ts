import {
  appendFile,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { removeBridge } from '../src/compute/lxc/bridge.ts';
import { LxcDriver } from '../src/compute/lxc/driver.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { TAIL_BYTES, tailLogs } from '../src/compute/shared/log-tail.ts';
import { rootfsLayers } from '../src/compute/lxc/convert.ts';
import { sleep } from '../src/compute/shared/run.ts';
import type { ComputeDriver, ContainerInfo, ServiceLogs, Workload } from '../src/core/compute.ts';
import { DomainError } from '../src/core/errors.ts';
import { createLogger } from '../src/observability/logger.ts';
import { LOG_APP_DIR } from './support/compute-app.ts';
import { specFor, type ContractHarness } from './support/compute-contract.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { lxcAvailable, privateNetwork } from './support/lxc.ts';
import { missingPart } from './support/strict.ts';

/**
 * Service logs read by the real drivers: the process driver's stdout/stderr
 * files and an LXC container's /var/log/aiqso/app.log, from the host. The
 * workload is test/fixtures/log-app, which prints what it is asked to.
 */
const logApp = (): Workload => ({ kind: 'app', dir: path.resolve(LOG_APP_DIR), entry: 'server.mjs' });
const harness = { workload: logApp } as ContractHarness;
const log = createLogger('silent');

/** Ask the app to print `text` (on stdout, or stderr), retrying while it boots. */
async function say(info: ContainerInfo, text: string, extra = ''): Promise<void> {
  const url = `http://${info.endpoint!.host}:${info.endpoint!.port}/say?text=${encodeURIComponent(text)}${extra}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (res.ok) return void (await res.json());
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${url}: ${(err as Error).message}`);
    }
    await sleep(100);
  }
}

async function logsUntil(
  driver: ComputeDriver,
  name: string,
  has: (lines: string[]) => boolean,
  lines = 100,
): Promise<ServiceLogs> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const got = await driver.logs!(name, { lines });
    if (has(got.lines)) return got;
    if (Date.now() > deadline) throw new Error(`log never matched: ${JSON.stringify(got.lines.slice(-5))}`);
    await sleep(100);
  }
}

/** Collects what a follow yields until `has` holds (or fails after 20 s). */
function collector(logs: ServiceLogs) {
  const seen: string[] = [];
  const done = (async () => {
    for await (const batch of logs.follow!) seen.push(...batch);
  })();
  return {
    seen,
    done,
    async until(has: (lines: string[]) => boolean): Promise<void> {
      const deadline = Date.now() + 20_000;
      while (!has(seen)) {
        if (Date.now() > deadline) throw new Error(`follow never matched: ${JSON.stringify(seen.slice(-5))}`);
        await sleep(50);
      }
    },
  };
}

/** This process's open files under `dir` (what a tail holds open). */
async function openFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir)) out.push(target);
  }
  return out;
}

describe('process driver logs', () => {
  let root: string;
  let driver: ProcessDriver;
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'aiqso-logs-'));
    driver = await ProcessDriver.open({ root, log, pollMs: 100 });
  });
  afterAll(async () => {
    for (const c of await driver.list()) await driver.destroy(c.name);
    await driver.close();
    await rm(root, { recursive: true, force: true });
  });

  it('gives the last lines of stdout and stderr, at most `lines`, truncated when there is more', async () => {
    const s = specFor(harness, 'tail');
    await driver.ensure(s);
    const info = await driver.start(s.name);
    for (let i = 1; i <= 5; i++) await say(info, `line ${i}`);
    await say(info, 'an error', '&to=stderr');
    const all = await logsUntil(driver, s.name, (l) => l.includes('an error') && l.includes('line 5'));
    expect(all.lines).toEqual([
      expect.stringMatching(/^log-app listening on \d+$/),
      'line 1',
      'line 2',
      'line 3',
      'line 4',
      'line 5',
      'an error',
    ]);
    expect(all.truncated).toBe(false);
    const three = await driver.logs(s.name, { lines: 3 });
    expect(three).toEqual({ lines: ['line 4', 'line 5', 'an error'], truncated: true });
    expect(await driver.logs(s.name, { lines: 0 })).toEqual({ lines: [], truncated: true });
    // A stopped service's logs are still there.
    await driver.stop(s.name);
    expect((await driver.logs(s.name, { lines: 1 })).lines).toEqual(['an error']);
  });

  it('refuses a lines count out of range, and a container that does not exist', async () => {
    const s = specFor(harness, 'refuse');
    await driver.ensure(s);
    for (const lines of [-1, 1001, 1.5, Number.NaN]) {
      const err = await driver.logs(s.name, { lines }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DomainError);
      expect((err as DomainError).code).toBe('bad_request');
      expect((err as DomainError).message).toMatch(/lines must be a whole number from 0 to 1000/);
    }
    expect((await driver.logs(s.name, { lines: 1000 })).lines).toEqual([]);
    const missing = await driver.logs('aiqso-nothing-here', {}).catch((e: unknown) => e);
    expect((missing as DomainError).code).toBe('not_found');
  });

  it('reads a huge log back from its end only, fast, and cuts an endless line', async () => {
    const s = specFor(harness, 'huge');
    await driver.ensure(s);
    const file = path.join(root, s.name, 'logs', 'stdout.log');
    // 64 MiB: 4 MiB lines of 16 bytes, a 100 kB line, then 3 short ones.
    const block = Buffer.from('0123456789abcde\n'.repeat(65_536));
    for (let i = 0; i < 16; i++) await appendFile(file, block);
    await appendFile(file, `${'x'.repeat(100_000)}\nlast 1\nlast 2\nlast 3\n`);
    const started = performance.now();
    const got = await driver.logs(s.name, { lines: 1000 });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(got.truncated).toBe(true);
    expect(got.lines.slice(-3)).toEqual(['last 1', 'last 2', 'last 3']);
    const long = got.lines.at(-4)!;
    expect(long.length).toBe(8 * 1024 + 1);
    expect(long.endsWith('…')).toBe(true);
    expect(got.lines.length).toBe(1000);
    // One line longer than what is read back: its end, marked as cut.
    await writeFile(file, 'y'.repeat(TAIL_BYTES * 2));
    const endless = await driver.logs(s.name, { lines: 5 });
    expect(endless.truncated).toBe(true);
    expect(endless.lines).toHaveLength(1);
    expect(endless.lines[0]!.startsWith('yyyy')).toBe(true);
  });

  it('never follows a symlink the workload put in place of its log', async () => {
    const s = specFor(harness, 'link');
    await driver.ensure(s);
    const secret = path.join(root, 'host-secret.txt');
    await writeFile(secret, 'host secret\n');
    const file = path.join(root, s.name, 'logs', 'stdout.log');
    await rm(file, { force: true });
    await symlink(secret, file);
    const got = await driver.logs(s.name, {});
    expect(got.lines).toEqual([]);
    expect(JSON.stringify(got)).not.toContain('host secret');
  });

  it('follows what the service prints next, across truncation and rotation, and closes its files when aborted', async () => {
    const s = specFor(harness, 'follow');
    await driver.ensure(s);
    const info = await driver.start(s.name);
    await say(info, 'before');
    await logsUntil(driver, s.name, (l) => l.includes('before'));
    const dir = path.join(root, s.name);
    const ac = new AbortController();
    const logs = await driver.logs(s.name, { lines: 10, follow: true, signal: ac.signal });
    expect(logs.lines.at(-1)).toBe('before');
    const c = collector(logs);
    await say(info, 'after 1');
    await say(info, 'on stderr', '&to=stderr');
    await c.until((l) => l.includes('after 1') && l.includes('on stderr'));
    expect(c.seen).not.toContain('before');

    // Truncated in place (as copytruncate does): what comes next is still followed.
    const stdout = path.join(root, s.name, 'logs', 'stdout.log');
    await truncate(stdout, 0);
    await say(info, 'after truncation');
    await c.until((l) => l.includes('after truncation'));

    // Rotated: the file renamed and a new one made (the workload keeps writing to the old one meanwhile).
    await rename(stdout, `${stdout}.1`);
    await appendFile(stdout, 'in the new file\n');
    await c.until((l) => l.includes('in the new file'));

    expect((await openFiles(dir)).sort()).toEqual([`${stdout}`, path.join(dir, 'logs', 'stderr.log')].sort());
    ac.abort();
    await c.done;
    expect(await openFiles(dir)).toEqual([]);
  });

  it('closes its files on abort even when the follow is never read', async () => {
    const s = specFor(harness, 'unread');
    await driver.ensure(s);
    const dir = path.join(root, s.name);
    await writeFile(path.join(dir, 'logs', 'stdout.log'), 'one line\n');
    const ac = new AbortController();
    const logs = await driver.logs(s.name, { follow: true, signal: ac.signal });
    expect(logs.lines).toEqual(['one line']);
    expect(await openFiles(dir)).toHaveLength(1);
    ac.abort();
    const deadline = Date.now() + 5000;
    while ((await openFiles(dir)).length && Date.now() < deadline) await sleep(20);
    expect(await openFiles(dir)).toEqual([]);
  });
});

const skipLxc = missingPart(
  'lxc (root and lxc tools)',
  lxcAvailable(),
  'apt-get install lxc and run as root',
);

describe('lxc driver logs', { timeout: 240_000 }, () => {
  const { bridge, subnet } = privateNetwork('g');
  let db: TestDatabase;
  let lxcPath: string;
  let driver: LxcDriver;
  beforeAll(async () => {
    if (skipLxc) return;
    db = await createTestDatabase({ max: 5 });
    lxcPath = await mkdtemp(path.join(os.tmpdir(), 'aiqso-lxc-logs-'));
    driver = new LxcDriver({ db: db.db, log, lxcPath, bridge, subnet });
  }, 120_000);
  afterAll(async () => {
    if (skipLxc) return;
    for (const c of await driver.list()) await driver.destroy(c.name);
    await removeBridge(bridge);
    await rm(lxcPath, { recursive: true, force: true });
    await db.drop();
  }, 120_000);

  it("reads the container's app.log from its layer: last lines, follow, no symlink out", async ({ skip }) => {
    if (skipLxc) return skip();
    const s = specFor(harness, 'lxclog');
    await driver.ensure(s);
    const info = await driver.start(s.name);
    await say(info, 'from inside lxc');
    await say(info, 'lxc stderr', '&to=stderr');
    const got = await logsUntil(driver, s.name, (l) => l.includes('lxc stderr'));
    expect(got.lines).toEqual([
      expect.stringMatching(/^log-app listening on 3000$/),
      'from inside lxc',
      'lxc stderr',
    ]);

    const ac = new AbortController();
    const logs = await driver.logs(s.name, { lines: 1, follow: true, signal: ac.signal });
    expect(await openFiles(path.join(lxcPath, s.name))).toHaveLength(1);
    expect(logs).toMatchObject({ lines: ['lxc stderr'], truncated: true });
    const c = collector(logs);
    await say(info, 'printed while followed');
    await c.until((l) => l.includes('printed while followed'));
    ac.abort();
    await c.done;
    expect(await openFiles(path.join(lxcPath, s.name))).toEqual([]);

    // Root in the container makes its log a link to /etc/hostname, which on the host is the host's own.
    const r = await driver.exec(s.name, [
      '/bin/sh',
      '-c',
      'rm -f /var/log/aiqso/app.log && ln -s /etc/hostname /var/log/aiqso/app.log',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const after = await driver.logs(s.name, {});
    expect(after.lines).toEqual([]);
    expect(after.lines).not.toContain(os.hostname());
    // And its whole log directory a link to the host's /etc, which holds a file of that name here.
    await writeFile('/etc/aiqso-logs-test.log', 'host file\n');
    try {
      const d = await driver.exec(s.name, [
        '/bin/sh',
        '-c',
        'rm -rf /var/log/aiqso && ln -s /etc /var/log/aiqso',
      ]);
      expect(d.exitCode, d.stderr).toBe(0);
      const upper = rootfsLayers(await readFile(path.join(lxcPath, s.name, 'config'), 'utf8'))!.upper;
      const rel = 'var/log/aiqso/aiqso-logs-test.log';
      // Followed naively, the link leads to the host's file…
      expect(await readFile(path.join(upper, rel), 'utf8')).toBe('host file\n');
      // …which the tail never opens.
      expect((await tailLogs([{ root: upper, rel }], {})).lines).toEqual([]);
    } finally {
      await rm('/etc/aiqso-logs-test.log', { force: true });
    }

    // Stopped: still readable; destroyed: not found.
    await driver.stop(s.name);
    await driver.destroy(s.name);
    const gone = await driver.logs(s.name, {}).catch((e: unknown) => e);
    expect((gone as DomainError).code).toBe('not_found');
  });
});
