import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ProcessDriver } from '../../src/compute/process/driver.ts';
import { freePort } from '../../src/db/embedded.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { startCli, type CliResult } from './cli.ts';
import { middayZone } from './clock.ts';
import type { TestDatabase } from './db.ts';

/**
 * A real `aiqso up` (process driver, the test's database) that a test kills
 * with SIGKILL and starts again on the same data directory, port and
 * database, as a crashed platform is restarted: for the kill-at-random-point
 * tests of the billing paths.
 */
export interface KilledPlatform {
  port: number;
  dataDir: string;
  /** The platform's own URL (the base domain is localhost). */
  base: string;
  /** Its environment, for `aiqso` commands run against it. */
  env: Record<string, string>;
  webhookSecret(): Promise<string>;
  /**
   * kill -9 the running `aiqso up`, wait until it is gone, and start it again. With `tools`, the
   * processes it started in its own process group (restic, pg_dump, pg_restore, tar: what a crash of
   * the whole service, or systemd's kill of its cgroup, takes along) are killed by the test too;
   * without, only the platform is, and what ends them is the platform's own guard (they are started
   * to die with it: spawnTool). `whileDown` runs between the kill and the restart.
   */
  killAndRestart(options?: { tools?: boolean; whileDown?: () => Promise<void> }): Promise<void>;
  /** How many times it was killed. */
  kills(): number;
  /** Stop the platform (SIGINT), destroy the containers it left, and remove its data directory. */
  close(): Promise<void>;
}

const READY = 'Press Ctrl-C to stop.';

export async function startKilledPlatform(
  testDb: TestDatabase,
  env: Record<string, string> = {},
): Promise<KilledPlatform> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-killed-'));
  const port = await freePort();
  const fullEnv = {
    AIQSO_DATA_DIR: dataDir,
    AIQSO_HTTP_PORT: String(port),
    DATABASE_URL: testDb.url,
    AIQSO_DRIVER: 'process',
    // The test plays Stripe from one address and redelivers everything in one burst, which the
    // edge's per-address limit (100/s) would answer with 429s; the limit has its own tests.
    AIQSO_EDGE_RATE_IP: '0',
    AIQSO_TIMEZONE: middayZone(),
    ...env,
  };
  let running: { child: ChildProcess; exited: Promise<CliResult> } | undefined = await startCli(
    ['up'],
    fullEnv,
    READY,
    120_000,
  );
  let kills = 0;
  return {
    port,
    dataDir,
    base: `http://127.0.0.1:${port}`,
    env: fullEnv,
    async webhookSecret() {
      return (await readFile(path.join(dataDir, 'secrets', 'stripe-webhook-secret'), 'utf8')).trim();
    },
    async killAndRestart(options = {}) {
      const current = running!;
      running = undefined;
      const tools = options.tools ? await processGroupDescendants(current.child.pid!) : [];
      current.child.kill('SIGKILL');
      for (const pid of tools) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await current.exited;
      kills++;
      await options.whileDown?.();
      running = await startCli(['up'], fullEnv, READY, 120_000);
    },
    kills: () => kills,
    async close() {
      if (running) {
        running.child.kill('SIGINT');
        await running.exited;
      }
      const driver = await ProcessDriver.open({
        root: path.join(dataDir, 'containers'),
        log: createLogger('silent'),
      });
      for (const c of await driver.list()) await driver.destroy(c.name);
      await driver.close();
      // A container a killed platform started but had not recorded yet is in no list: its work dir names it.
      for (const pid of await processesWorkingIn(dataDir)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The parent and process group of every process, from /proc. */
async function processTable(): Promise<Map<number, { ppid: number; pgrp: number }>> {
  const table = new Map<number, { ppid: number; pgrp: number }>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses: read after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields.length > 3) table.set(Number(entry), { ppid: Number(fields[1]), pgrp: Number(fields[2]) });
  }
  return table;
}

/**
 * Every descendant of `pid` still in `pid`'s process group: the tools it runs. Workloads the
 * process driver started detached (their own process group) are not among them.
 */
async function processGroupDescendants(pid: number): Promise<number[]> {
  const table = await processTable();
  const group = table.get(pid)?.pgrp;
  const out: number[] = [];
  const walk = (parent: number) => {
    for (const [child, p] of table)
      if (p.ppid === parent && p.pgrp === group) {
        out.push(child);
        walk(child);
      }
  };
  walk(pid);
  return out;
}

/** Processes whose working directory is inside `dir`. */
async function processesWorkingIn(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => '');
    if (cwd.startsWith(`${dir}/`)) pids.push(Number(entry));
  }
  return pids;
}

/** The `.eml` files the files mail driver wrote, per recipient address. */
export async function mailsByRecipient(dataDir: string): Promise<Map<string, number>> {
  const dir = path.join(dataDir, 'mail');
  const counts = new Map<string, number>();
  let files: string[] = [];
  try {
    files = (await readdir(dir)).filter((f) => f.endsWith('.eml'));
  } catch {
    return counts;
  }
  for (const file of files) {
    const to = /^To: (.+)$/m.exec(await readFile(path.join(dir, file), 'utf8'))?.[1]?.trim() ?? '';
    counts.set(to, (counts.get(to) ?? 0) + 1);
  }
  return counts;
}

export const randomInt = (n: number) => Math.floor(Math.random() * n);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What a kill test checks of each tenant: its status, and how often it was
 * activated and set provisioning (the audit log's count; once each is right).
 */
export async function tenantFacts(testDb: TestDatabase, by: 'id' | 'slug', values: string[]) {
  const { rows } = await testDb.pool.query<{
    id: string;
    slug: string;
    status: string;
    activated: number;
    provisioned: number;
  }>(
    `SELECT t.id, t.slug, t.status,
            (SELECT count(*)::int FROM audit_log a WHERE a.target_id = t.id AND a.action = 'tenant.activated') AS activated,
            (SELECT count(*)::int FROM audit_log a WHERE a.target_id = t.id AND a.action = 'tenant.provisioning') AS provisioned
       FROM tenants t WHERE ${by === 'id' ? 't.id' : 't.slug'} = ANY($1) ORDER BY ${by === 'id' ? 't.id' : 't.slug'}`,
    [values],
  );
  return rows;
}
