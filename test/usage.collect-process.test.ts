import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { cpuSeconds, memoryOf } from '../src/compute/process/proc.ts';
import { runOk, sleep } from '../src/compute/shared/run.ts';
import { createLogger } from '../src/observability/logger.ts';
import { collectUsage, rollUpMonth, type CollectDeps } from '../src/usage/collect.ts';
import { addHours } from '../src/usage/metrics.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { callApp, hourRows, meteredService, within, type MeteredService } from './support/usage.ts';

/**
 * Usage collection over the process driver, against what /proc, the file
 * system and pg_database_size say directly. The passes run "as of" fixed
 * hours (their readings are real, only the boundary they are filed under is
 * chosen), so an hour takes seconds.
 */
const COLLECTOR = fileURLToPath(new URL('./support/usage-collector.mjs', import.meta.url));
const log = createLogger('silent');
let db: TestDatabase;
let root: string;
let compute: ProcessDriver;
let busy: MeteredService;
let idle: MeteredService;
const H0 = new Date('2031-03-10T10:00:00Z');
const at = (hours: number, seconds = 20) => new Date(addHours(H0, hours).getTime() + seconds * 1000);

const deps = (): CollectDeps => ({
  db: db.db,
  admin: db.pool,
  compute,
  log,
  timeZone: 'UTC',
  retention: { hourlyDays: 90, monthlyMonths: 13 },
});

const pidOf = async (s: MeteredService) => ((await callApp(s.info, '/')) as { pid: number }).pid;
/** Bytes in the files under `dir`, as find(1) lists them. */
const fileBytes = async (dir: string) =>
  (await runOk('find', [dir, '-type', 'f', '-printf', '%s\n']))
    .split('\n')
    .filter(Boolean)
    .reduce((sum, n) => sum + Number(n), 0);
const dbSize = async (name: string) =>
  Number((await db.pool.query<{ n: string }>('SELECT pg_database_size($1)::text AS n', [name])).rows[0]!.n);

beforeAll(async () => {
  db = await createTestDatabase();
  root = await mkdtemp(path.join(os.tmpdir(), 'aiqso-usage-'));
  compute = await ProcessDriver.open({ root, log, pollMs: 100 });
  busy = await meteredService(db.db, db.pool, compute, 'busy');
  idle = await meteredService(db.db, db.pool, compute, 'idle');
});

afterAll(async () => {
  for (const s of [busy, idle]) {
    if (!s) continue;
    await compute.destroy(s.container);
    await db.pool.query(`DROP DATABASE IF EXISTS ${s.dbName} WITH (FORCE)`);
  }
  await compute?.close();
  await rm(root, { recursive: true, force: true });
  await db?.drop();
});

/** Collector processes for the pass at `when`, each killed with SIGKILL `delayMs` after it started; how many died mid-pass. */
async function killedPasses(when: Date, delays: number[]): Promise<number> {
  let killedMidPass = 0;
  for (const delayMs of delays) {
    const child = spawn(process.execPath, [COLLECTOR, db.url, root, when.toISOString()], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    // Listened for at once: a pass that finishes before the kill has already exited.
    const exited = once(child, 'exit');
    let said = '';
    const out = child.stdout.setEncoding('utf8');
    out.on('data', (chunk: string) => (said += chunk));
    await once(out, 'data');
    await sleep(delayMs);
    child.kill('SIGKILL');
    await exited;
    if (!said.includes('done')) killedMidPass++;
  }
  return killedMidPass;
}

/** Resident memory of a process, as /proc/<pid>/status says. */
const rssOf = async (pid: number) => (await memoryOf(pid)).rss;

/** The memory aggregates of a container's hour. */
const memoryRow = async (container: string, hour: Date) =>
  db.db
    .selectFrom('usage_memory')
    .select(['samples', 'slots', 'sum_bytes', 'peak_bytes'])
    .where('container', '=', container)
    .where('period_start', '=', hour)
    .executeTakeFirst();

describe('usage collection (process driver)', () => {
  it('meters a busy service as /proc, the disk and pg_database_size say, and an idle one near zero', async () => {
    const first = await collectUsage(deps(), at(0));
    expect(first.read).toBe(2);
    const busyPid = await pidOf(busy);
    const cpuBefore = await cpuSeconds(busyPid);
    const idleCpuBefore = await cpuSeconds(await pidOf(idle));

    await callApp(busy.info, '/burn?ms=2500');
    for (let i = 0; i < 3; i++) await callApp(busy.info, `/write?bytes=${8 * 2 ** 20}`);
    const { Client } = (await import('pg')).default;
    const client = new Client({ connectionString: db.url.replace(/\/[^/]+$/, `/${busy.dbName}`) });
    await client.connect();
    await client.query(
      "CREATE TABLE filler AS SELECT g, md5(g::text) || repeat('x', 900) AS pad FROM generate_series(1, 20000) g",
    );
    await client.end();

    const cpuUsed = (await cpuSeconds(busyPid)) - cpuBefore;
    const idleCpuUsed = (await cpuSeconds(await pidOf(idle))) - idleCpuBefore;
    const disk = await fileBytes(path.join(root, busy.container));
    const size = await dbSize(busy.dbName);
    const idleDisk = await fileBytes(path.join(root, idle.container));
    const idleSize = await dbSize(idle.dbName);

    const second = await collectUsage(deps(), at(1));
    expect(second.read).toBe(2);
    expect(second.failed).toEqual([]);
    const b = await hourRows(db.db, busy.tenantServiceId, H0);
    expect(cpuUsed).toBeGreaterThan(2);
    expect(within(b.cpu_seconds!, cpuUsed, 0.1), `cpu ${b.cpu_seconds} vs ${cpuUsed}`).toBe(true);
    expect(within(b.disk_bytes!, disk, 0.1), `disk ${b.disk_bytes} vs ${disk}`).toBe(true);
    expect(b.disk_bytes).toBeGreaterThan(24 * 2 ** 20);
    expect(within(b.db_bytes!, size, 0.1), `db ${b.db_bytes} vs ${size}`).toBe(true);
    expect(b.db_bytes! - idleSize).toBeGreaterThan(15 * 2 ** 20);
    expect(b.memory_bytes).toBeGreaterThan(0);
    // Processes share the host's network: not measured, so not recorded (a zero would be invented).
    expect(b).not.toHaveProperty('net_rx_bytes');

    const i = await hourRows(db.db, idle.tenantServiceId, H0);
    expect(i.cpu_seconds).toBeLessThan(0.2);
    expect(idleCpuUsed).toBeLessThan(0.2);
    expect(within(i.disk_bytes!, idleDisk, 0.1)).toBe(true);
    expect(i.disk_bytes).toBeLessThan(2 ** 20);
    expect(within(i.db_bytes!, idleSize, 0.1)).toBe(true);
  });

  it('counts an hour once: a second pass in the hour and two passes at once add nothing', async () => {
    const before = await hourRows(db.db, busy.tenantServiceId, H0);
    const again = await collectUsage(deps(), at(1, 1800));
    expect(again).toMatchObject({ read: 0, written: 0 });
    expect(await hourRows(db.db, busy.tenantServiceId, H0)).toEqual(before);

    await callApp(busy.info, '/burn?ms=500');
    const other = await ProcessDriver.open({ root, log, pollMs: 100 });
    try {
      const [a, b] = await Promise.all([
        collectUsage(deps(), at(2)),
        collectUsage({ ...deps(), compute: other }, at(2, 5)),
      ]);
      const { rows } = await db.pool.query<{ metric: string; n: number }>(
        `SELECT tenant_service_id, metric, count(*)::int AS n FROM usage_metrics
         WHERE period_start = $1 GROUP BY 1, 2`,
        [addHours(H0, 1)],
      );
      // cpu, memory (end, average, peak), disk, db for each of the two services
      expect(rows.length).toBe(12);
      expect(rows.every((r) => r.n === 1)).toBe(true);
      expect(a.written + b.written).toBe(12);
      expect(a.read + b.read).toBeGreaterThanOrEqual(2);
      const cpu = (await hourRows(db.db, busy.tenantServiceId, addHours(H0, 1))).cpu_seconds!;
      expect(cpu).toBeGreaterThan(0.4);
      expect(cpu).toBeLessThan(1);
    } finally {
      await other.close();
    }
  });

  it('marks a missed hour as a gap and never invents its value', async () => {
    // No pass at H0+3h: the hours H0+2h and H0+3h have no reading at one end.
    const r = await collectUsage(deps(), at(4));
    expect(r.gaps).toBeGreaterThan(0);
    const h2 = await hourRows(db.db, busy.tenantServiceId, addHours(H0, 2));
    expect(h2).toMatchObject({ cpu_seconds: null, memory_bytes: null, disk_bytes: null, db_bytes: null });
    // Memory was sampled once in that hour (at its start): its average and peak are that sample's.
    expect(h2.memory_avg_bytes).toBeGreaterThan(0);
    expect(h2.memory_peak_bytes).toBeGreaterThanOrEqual(h2.memory_avg_bytes!);
    const h3 = await hourRows(db.db, busy.tenantServiceId, addHours(H0, 3));
    expect(h3.cpu_seconds).toBeNull();
    // No pass at all in that hour: no sample, a gap.
    expect(h3).toMatchObject({ memory_avg_bytes: null, memory_peak_bytes: null });
    // A gauge is the sample at the end of the hour: that one was taken.
    expect(h3.disk_bytes).toBeGreaterThan(24 * 2 ** 20);
  });

  it('a collector killed with SIGKILL at any point leaves nothing a rerun counts twice', async () => {
    await callApp(busy.info, '/burn?ms=300');
    const when = at(5);
    // The kills must land inside passes, or the test shows nothing about crashes.
    expect(await killedPasses(when, [0, 2, 5, 10, 20, 40, 80])).toBeGreaterThanOrEqual(3);
    await collectUsage(deps(), when);
    const hour = addHours(H0, 4);
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM usage_metrics WHERE period_start = $1 GROUP BY tenant_service_id, metric`,
      [hour],
    );
    expect(rows.length).toBe(12);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    // The hour is the difference of the two stored readings, whichever process stored them.
    const { rows: readings } = await db.pool.query<{ cpu_seconds: number }>(
      'SELECT cpu_seconds FROM usage_readings WHERE container = $1 AND taken_for IN ($2, $3) ORDER BY taken_for',
      [busy.container, hour, addHours(hour, 1)],
    );
    expect(readings).toHaveLength(2);
    const cpu = (await hourRows(db.db, busy.tenantServiceId, hour)).cpu_seconds!;
    expect(cpu).toBeCloseTo(readings[1]!.cpu_seconds - readings[0]!.cpu_seconds, 6);
    expect(cpu).toBeGreaterThan(0.2);
  });
  it("keeps each hour's memory average and peak from samples every 5 minutes, each slot counted once, even through SIGKILL", async () => {
    const hour = addHours(H0, 6);
    const t = (minutes: number, seconds = 20) => new Date(hour.getTime() + (minutes * 60 + seconds) * 1000);
    const pid = await pidOf(busy);
    const seen: number[] = [];

    expect((await collectUsage(deps(), t(0))).sampled).toBe(2); // the hour's readings are its first sample
    seen.push(await rssOf(pid));
    await callApp(busy.info, '/hold?mb=64');
    expect((await collectUsage(deps(), t(5))).sampled).toBe(2);
    seen.push(await rssOf(pid));
    // The same slot again (a rerun, a second worker): nothing is added.
    expect(await collectUsage(deps(), t(9, 50))).toMatchObject({ sampled: 0, read: 0 });
    await callApp(busy.info, '/release');
    // A spike between two samples: no sample sees it, the process's own peak (VmHWM) does.
    const spike = ((await callApp(busy.info, '/spike?mb=160')) as { rss: number }).rss;
    const after = await rssOf(pid);
    expect(spike - after).toBeGreaterThan(100 * 2 ** 20); // it was dropped again
    expect((await collectUsage(deps(), t(10))).sampled).toBe(2);
    seen.push(await rssOf(pid));

    // Collectors killed during the 15-minute slot's pass, then one that finishes: one sample for the slot.
    const killed = await killedPasses(t(15), [0, 5, 10, 20, 40]);
    expect(killed).toBeGreaterThanOrEqual(2);
    await collectUsage(deps(), t(15));
    seen.push(await rssOf(pid));
    const row = await memoryRow(busy.container, hour);
    expect(row).toMatchObject({ samples: 4, slots: 0b1111 });
    expect(await memoryRow(idle.container, hour)).toMatchObject({ samples: 4, slots: 0b1111 });

    await collectUsage(deps(), t(60));
    const b = await hourRows(db.db, busy.tenantServiceId, hour);
    const average = seen.reduce((a, n) => a + n, 0) / seen.length;
    expect(within(b.memory_avg_bytes!, average, 0.1), `avg ${b.memory_avg_bytes} vs ${average}`).toBe(true);
    expect(b.memory_avg_bytes).toBeCloseTo(row!.sum_bytes / 4, 0);
    // The peak is the spike (the driver's peak grew in the hour), above every sample.
    expect(within(b.memory_peak_bytes!, spike, 0.1), `peak ${b.memory_peak_bytes} vs ${spike}`).toBe(true);
    expect(b.memory_peak_bytes! - Math.max(...seen)).toBeGreaterThan(64 * 2 ** 20);
    // An idle service's peak is its samples' level.
    const i = await hourRows(db.db, idle.tenantServiceId, hour);
    expect(within(i.memory_peak_bytes!, i.memory_avg_bytes!, 0.2)).toBe(true);

    // A month adds peaks up by taking the highest hour, averages by averaging.
    await rollUpMonth(db.db, 'UTC', '2031-03-01');
    const { rows } = await db.pool.query<{ metric: string; value: number; hourly: number }>(
      `SELECT u.metric, u.value,
         (SELECT CASE WHEN u.metric = 'memory_peak_bytes' THEN max(m.value) ELSE avg(m.value) END
            FROM usage_metrics m WHERE m.tenant_service_id = u.tenant_service_id AND m.metric = u.metric) AS hourly
       FROM usage_monthly u WHERE u.tenant_service_id = $1 AND u.metric IN ('memory_avg_bytes', 'memory_peak_bytes')`,
      [busy.tenantServiceId],
    );
    expect(rows).toHaveLength(2);
    for (const r of rows) expect(r.value).toBeCloseTo(r.hourly, 0);
    expect(rows.find((r) => r.metric === 'memory_peak_bytes')!.value).toBe(b.memory_peak_bytes);
  });
});
