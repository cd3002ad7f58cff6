import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clearStaleLocks, unreapedProcesses } from '../src/backup/locks.ts';
import { Restic, type ResticRepository } from '../src/backup/restic.ts';
import { spawnTool, WORKLOAD_PATH } from '../src/compute/shared/run.ts';
import { isRequeue } from '../src/core/reconcile.ts';

/**
 * What a killed platform leaves of the tools that move tenants' data, with
 * real restic. The tools end with the process that started them (the
 * kernel's parent-death signal), so none goes on writing into a repository
 * or file a resumed attempt works on. A killed restic leaves its lock, and
 * until init reaps it restic's own `unlock` keeps that lock (a zombie still
 * answers); the backup runs' lock step waits for it, then removes it, and
 * never touches the lock of a restic still at work.
 */
let dir: string;
let repo: ResticRepository;
let restic: Restic;
const started: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-stale-locks-'));
  repo = { location: path.join(dir, 'repo'), password: 'a test repository password' };
  restic = new Restic({ cacheDir: path.join(dir, 'cache') });
  await restic.init(repo);
});
afterAll(async () => {
  for (const c of started) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A process's state letter (R, S, Z, …), or null once it is gone. */
async function processState(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  return stat === null ? null : stat[stat.lastIndexOf(')') + 2]!;
}

async function until(what: string, test: () => Promise<boolean>, ms = 30_000): Promise<void> {
  for (const end = Date.now() + ms; !(await test()); await sleep(100))
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
}

const resticEnv = () => ({
  PATH: WORKLOAD_PATH,
  HOME: dir,
  RESTIC_REPOSITORY: repo.location,
  RESTIC_PASSWORD: repo.password,
  RESTIC_CACHE_DIR: path.join(dir, 'cache'),
});

const lockCount = async () => (await restic.locks(repo)).length;

describe('tools that move tenant data', () => {
  it('end when the process that started them is killed; a plain child lives on', async () => {
    // A platform stand-in: starts one sleep through spawnTool and one with plain spawn, prints both pids.
    const runModule = path.resolve('src/compute/shared/run.ts');
    const script = `
      import { spawn } from 'node:child_process';
      import { spawnTool } from ${JSON.stringify(runModule)};
      const tool = spawnTool('sleep', ['300'], { stdio: 'ignore' });
      const plain = spawn('sleep', ['300'], { stdio: 'ignore' });
      console.log(JSON.stringify({ tool: tool.pid, plain: plain.pid }));
      setInterval(() => undefined, 1000);`;
    const platform = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    started.push(platform);
    const line = await new Promise<string>((resolve) =>
      platform.stdout.setEncoding('utf8').once('data', (c: string) => resolve(c)),
    );
    const pids = JSON.parse(line) as { tool: number; plain: number };
    expect(await processState(pids.tool)).toMatch(/[RS]/);
    platform.kill('SIGKILL');
    // Gone, or dead and waiting for init to reap it.
    await until('the tool has ended', async () => [null, 'Z'].includes(await processState(pids.tool)));
    expect(await processState(pids.plain)).toMatch(/[RS]/);
    process.kill(pids.plain, 'SIGKILL');
  });

  it('a program that is not there fails to start with its own name, as with spawn', async () => {
    const child = spawnTool('aiqso-no-such-tool', ['--help'], { env: { PATH: WORKLOAD_PATH } });
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => child.on('error', resolve));
    expect(err.code).toBe('ENOENT');
    expect(err.message).toContain('aiqso-no-such-tool');
  });
});

describe('locks left by a killed restic', { timeout: 120_000 }, () => {
  it('are waited for while the process is unreaped, then removed; a working restic keeps its lock', async () => {
    // restic reading a FIFO, under a parent that never reaps children (`exec sleep`): once restic
    // is killed it stays a zombie until that parent goes, as under an init that reaps late.
    const fifo = path.join(dir, 'fifo');
    const made = spawn('mkfifo', [fifo]);
    await new Promise((resolve) => made.on('close', resolve));
    const parent = spawn(
      'sh',
      ['-c', 'restic backup --stdin --stdin-filename held < "$1" & exec sleep 300', 'sh', fifo],
      { env: resticEnv(), stdio: 'ignore' },
    );
    started.push(parent);
    const writer = await open(fifo, 'w');
    // And a restic at work, holding its own lock while it waits for input.
    const working = spawn('restic', ['backup', '--stdin', '--stdin-filename', 'working'], {
      env: resticEnv(),
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    started.push(working);
    await until('both hold a lock', async () => (await lockCount()) === 2);

    const children = await readFile(`/proc/${parent.pid}/task/${parent.pid}/children`, 'utf8');
    const killedPid = Number(children.trim().split(/\s+/)[0]);
    expect(await readFile(`/proc/${killedPid}/comm`, 'utf8')).toBe('restic\n');
    process.kill(killedPid, 'SIGKILL');
    await until('the killed restic is a zombie', async () => (await processState(killedPid)) === 'Z');
    expect(await unreapedProcesses('restic')).toBeGreaterThanOrEqual(1);

    // restic's own unlock keeps the zombie's lock: a step that stopped here left it behind.
    await restic.unlock(repo);
    expect(await lockCount()).toBe(2);
    // The lock step says "not yet" instead, and keeps looking…
    const wait = await clearStaleLocks(restic, repo, new Date());
    expect(wait && isRequeue(wait) ? wait.reason : wait).toMatch(/not been reaped/);
    // …up to its limit, after which the run goes on (the next run's step, or a verification, removes it).
    expect(await clearStaleLocks(restic, repo, new Date(Date.now() - 61_000))).toBeUndefined();
    expect(await lockCount()).toBe(2);

    // Once the zombie's parent goes, init reaps it, and the step removes its lock; the working one stays.
    parent.kill('SIGKILL');
    await until('the killed restic is reaped', async () => (await processState(killedPid)) === null);
    const since = new Date();
    // Another test's killed restic may be unreaped for a moment too: the step waits for it as well.
    await until('the step is done', async () => (await clearStaleLocks(restic, repo, since)) === undefined);
    expect(await lockCount()).toBe(1);
    await writer.close();

    working.stdin.end('some input\n');
    await new Promise((resolve) => working.on('close', resolve));
    expect(await lockCount()).toBe(0);
  });
});
