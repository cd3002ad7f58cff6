// Usage collection: one pass over 1,000 containers, time and CPU. The
// containers are a driver stand-in that answers `stats()` the way the process
// driver does — /proc/<pid>/stat, /proc/<pid>/status and the sizes of the
// files in a directory, read for every container (all 1,000 point at this
// process and one small directory each) — and `list()` like it. Each container
// is a tenant service with a database name (the databases are not created:
// pg_database_size of 1,000 real databases is not measured here). Two passes
// (two hours) so the second writes differences. Baseline, measured in the same
// run: the 1,000 stats() reads alone, one after another. Goal (issue #26): a
// pass under 2% of one core averaged over its hour.
// PostgreSQL: TEST_DATABASE_URL's server, else an embedded one in a temp dir.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  containerName,
  type ComputeDriver,
  type ContainerInfo,
  type ContainerStats,
} from '../src/core/compute.ts';
import { newId } from '../src/core/ids.ts';
import { createLogger } from '../src/observability/logger.ts';
import { serviceDatabaseName } from '../src/services/databases.ts';
import { collectUsage } from '../src/usage/collect.ts';
import { addHours } from '../src/usage/metrics.ts';
import { benchDatabase } from './database.ts';

const N = Number(process.env.BENCH_CONTAINERS ?? 1000);
const log = createLogger('silent');
const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-usage-'));

async function procStats(pid: number, dir: string): Promise<ContainerStats> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const memoryBytes = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
  let diskBytes = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) diskBytes += (await stat(path.join(e.parentPath, e.name))).size;
  return { cpuSeconds, memoryBytes, diskBytes, netRxBytes: 0, netTxBytes: 0 };
}

/** The stand-in: the process driver's reads, for N named containers. */
function standIn(names: string[], dirs: Map<string, string>): ComputeDriver {
  const unsupported = () => Promise.reject(new Error('not part of the benchmark'));
  return {
    kind: 'process',
    ensure: unsupported,
    start: unsupported,
    stop: unsupported,
    restart: unsupported,
    destroy: unsupported,
    status: unsupported,
    exec: unsupported,
    exportTo: unsupported,
    importFrom: unsupported,
    hostAddress: () => Promise.resolve('127.0.0.1'),
    stats: (name) => procStats(process.pid, dirs.get(name)!),
    // What the process driver's memory() reads: /proc/<pid>/status.
    memory: async () => {
      const status = await readFile(`/proc/${process.pid}/status`, 'utf8');
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
      return { memoryBytes: kb('VmRSS') * 1024, memoryPeakBytes: kb('VmHWM') * 1024 };
    },
    list: () => Promise.resolve(names.map((name): ContainerInfo => ({ name, state: 'running' }))),
    close: () => Promise.resolve(),
  };
}

const database = await benchDatabase(tmp, log, { name: 'usage' });
try {
  const serviceId = newId('service');
  await database.db
    .insertInto('services')
    .values({ id: serviceId, key: 'notes', name: 'Notes', kind: 'app', template: '{}' })
    .execute();
  const names: string[] = [];
  const dirs = new Map<string, string>();
  const tenants = [];
  const services = [];
  for (let i = 0; i < N; i++) {
    const tenantId = newId('tenant');
    const name = containerName(tenantId, 'notes');
    const dir = path.join(tmp, 'c', name);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'data.bin'), Buffer.alloc(4096));
    names.push(name);
    dirs.set(name, dir);
    tenants.push({ id: tenantId, slug: `u${i}`, company: `Usage ${i}` });
    services.push({
      id: newId('tenantService'),
      tenant_id: tenantId,
      service_id: serviceId,
      status: 'active' as const,
      container_name: name,
      db_name: serviceDatabaseName(tenantId, 'notes'),
    });
  }
  for (let i = 0; i < N; i += 500) {
    await database.db
      .insertInto('tenants')
      .values(tenants.slice(i, i + 500))
      .execute();
    await database.db
      .insertInto('tenant_services')
      .values(services.slice(i, i + 500))
      .execute();
  }
  const compute = standIn(names, dirs);

  const t0 = performance.now();
  for (const n of names) await compute.stats(n);
  const baselineMs = performance.now() - t0;

  const deps = {
    db: database.db,
    admin: database.pool,
    compute,
    log,
    timeZone: 'UTC',
    retention: { hourlyDays: 90, monthlyMonths: 13 },
  };
  const H = new Date('2031-08-01T10:00:00Z');
  const passes: { label: string; ms: number; cpuMs: number; written: number; sampled: number }[] = [];
  for (const [label, at] of [
    ['first pass (readings only)', H],
    ['second pass (readings and differences)', addHours(H, 1)],
    ['repeat in the same hour and slot (nothing to do)', addHours(H, 1)],
    ['memory sample (the next 5-minute slot)', new Date(addHours(H, 1).getTime() + 5 * 60_000)],
  ] as const) {
    const cpu = process.cpuUsage();
    const start = performance.now();
    const r = await collectUsage(deps, new Date(at.getTime() + 1000));
    const ms = performance.now() - start;
    const used = process.cpuUsage(cpu);
    passes.push({
      label,
      ms,
      cpuMs: (used.user + used.system) / 1000,
      written: r.written,
      sampled: r.sampled,
    });
  }
  const { rows } = await database.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM usage_metrics');
  console.log(`containers: ${N}, usage_metrics rows after two hours: ${rows[0]!.n}`);
  console.log(`baseline (the ${N} stats() reads alone): ${baselineMs.toFixed(0)} ms`);
  for (const p of passes)
    console.log(
      `${p.label}: ${p.ms.toFixed(0)} ms wall (${(p.ms / baselineMs).toFixed(2)}× baseline), ` +
        `${p.cpuMs.toFixed(0)} ms CPU in this process = ${((p.cpuMs / 3_600_000) * 100).toFixed(4)}% of one core over the hour; ` +
        `${p.written} rows written, ${p.sampled} memory samples`,
    );
  // An hour of the schedule: one pass with readings and differences, and 11 memory samples.
  const hourCpuMs = passes[1]!.cpuMs + 11 * passes[3]!.cpuMs;
  console.log(
    `an hour of passes (1 with readings + 11 memory samples): ${hourCpuMs.toFixed(0)} ms CPU in this process = ` +
      `${((hourCpuMs / 3_600_000) * 100).toFixed(4)}% of one core (goal: under 2%)`,
  );
  console.log('(CPU of the PostgreSQL server is not included: see its own accounting.)');
} finally {
  await database.close();
  await rm(tmp, { recursive: true, force: true });
}
