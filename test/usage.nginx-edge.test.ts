import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { sleep } from '../src/compute/shared/run.ts';
import { freePort } from '../src/db/embedded.ts';
import { findNginx } from '../src/edge/nginx/apply.ts';
import { startNginxEdge, type NginxEdge } from '../src/edge/nginx/edge.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { createLogger } from '../src/observability/logger.ts';
import { collectUsage } from '../src/usage/collect.ts';
import { addHours, hourOf } from '../src/usage/metrics.ts';
import { startNginxLogReporter } from '../src/usage/nginx-log.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { insertTenant, platformParts } from './support/edge.ts';
import { missingPart } from './support/strict.ts';
import { eventually, rawGet, startEchoUpstream, type EchoUpstream } from './support/upstreams.ts';

/**
 * Requests through the nginx edge (AIQSO_EDGE=nginx) are metered from nginx's
 * own access log: per tenant and hour, each line once, through a restart of
 * the reader, two readers at once and readers killed with SIGKILL mid-way.
 */
const READER = fileURLToPath(new URL('./support/nginx-log-reader.mjs', import.meta.url));
const nginxBin = findNginx();
const skip = missingPart('nginx', nginxBin !== undefined, 'apt-get install nginx');
const log = createLogger('silent');

let database: TestDatabase;
let edge: NginxEdge;
let port: number;
let dir: string;
let parts: Awaited<ReturnType<typeof platformParts>>;
let acme: string;
let globex: string;
const upstreams: EchoUpstream[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  acme = await insertTenant(database.db, 'acme');
  globex = await insertTenant(database.db, 'globex');
  if (skip) return;
  for (const [host, tenantId] of [
    ['acme.localhost', acme],
    ['globex.localhost', globex],
  ] as const) {
    const up = await startEchoUpstream(host);
    upstreams.push(up);
    await upsertRoute(database.db, {
      hostname: host,
      tenantId,
      upstream: { host: '127.0.0.1', port: up.port },
    });
  }
  parts = await platformParts(database, { AIQSO_EDGE_RATE_IP: '0', AIQSO_EDGE_RATE_TENANT: '0' });
  dir = path.join(parts.dir, 'nginx');
  port = await freePort();
  edge = await startNginxEdge(
    { ...parts, database },
    { bind: '127.0.0.1', httpPort: port, dir, workerProcesses: 1, usageReadMs: 3_600_000 },
  );
});

afterAll(async () => {
  await edge?.close();
  await parts?.api.close();
  if (parts) rmSync(parts.dir, { recursive: true, force: true });
  for (const u of upstreams) await u.close();
  await database?.drop();
});

/** Requests and response bytes per tenant in usage_edge_counts, over every edge and hour. */
async function counted(): Promise<Record<string, { requests: number; bytes: number; edges: string[] }>> {
  const { rows } = await database.pool.query<{
    tenant_id: string;
    requests: number;
    bytes: number;
    edges: string[];
  }>(
    `SELECT tenant_id, sum(requests)::int AS requests, sum(response_bytes)::int AS bytes,
            array_agg(DISTINCT edge) AS edges
       FROM usage_edge_counts GROUP BY tenant_id`,
  );
  return Object.fromEntries(
    rows.map((r) => [r.tenant_id, { requests: r.requests, bytes: r.bytes, edges: r.edges }]),
  );
}

/** Lines in nginx's access log naming `tenantId` (nginx writes its buffer at least every second). */
const linesFor = (tenantId: string) =>
  readFileSync(path.join(dir, 'access.log'), 'utf8')
    .split('\n')
    .filter((l) => l.includes(`"tenantId":"${tenantId}"`)).length;

describe.skipIf(skip)('requests through the nginx edge', () => {
  it('are counted per tenant from the access log, each line once, and become the hour’s requests', async () => {
    for (let i = 0; i < 25; i++) expect((await rawGet(port, `/a/${i}`, 'acme.localhost')).status).toBe(200);
    for (let i = 0; i < 7; i++) expect((await rawGet(port, '/', 'globex.localhost')).status).toBe(200);
    // The base domain and unknown hosts are nobody's.
    await rawGet(port, '/healthz', 'localhost');
    await rawGet(port, '/', 'nobody.localhost');
    await eventually(() =>
      Promise.resolve(linesFor(acme) === 25 && linesFor(globex) === 7 ? true : undefined),
    );

    await edge.usage.flush();
    const first = await counted();
    expect(first[acme]).toMatchObject({ requests: 25 });
    expect(first[globex]).toMatchObject({ requests: 7 });
    expect(first[acme]!.bytes).toBeGreaterThan(25 * 100); // the echo bodies
    // Only nginx counted: the internal edge behind it reports nothing (it would count some twice).
    expect(first[acme]!.edges).toEqual([expect.stringMatching(/^nginx:/)]);
    expect(Object.keys(first).sort()).toEqual([acme, globex].sort());

    // Read again, and by a second reader of the same log (a restarted platform): nothing more.
    await edge.usage.flush();
    const again = startNginxLogReporter({
      db: database.db,
      file: path.join(dir, 'access.log'),
      edge: first[acme]!.edges[0]!,
      log,
      intervalMs: 3_600_000,
    });
    await again.close();
    expect(await counted()).toEqual(first);

    // More requests, and two readers at once: each new line counted once.
    for (let i = 0; i < 10; i++) await rawGet(port, '/b', 'acme.localhost');
    await eventually(() => Promise.resolve(linesFor(acme) === 35 ? true : undefined));
    const other = startNginxLogReporter({
      db: database.db,
      file: path.join(dir, 'access.log'),
      edge: first[acme]!.edges[0]!,
      log,
      intervalMs: 3_600_000,
      chunkBytes: 512,
    });
    await Promise.all([edge.usage.flush(), other.close()]);
    expect((await counted())[acme]!.requests).toBe(35);

    // The collector's `requests` for the hour is what the edge counted (a pass after the hour).
    const root = await mkdtemp(path.join(os.tmpdir(), 'aiqso-usage-nginx-'));
    const compute = await ProcessDriver.open({ root, log, pollMs: 100 });
    try {
      const hours = (
        await database.pool.query<{ h: Date }>(`SELECT DISTINCT period_start AS h FROM usage_edge_counts`)
      ).rows.map((r) => r.h);
      const latest = hours.reduce((a, b) => (a > b ? a : b));
      await collectUsage(
        {
          db: database.db,
          admin: database.pool,
          compute,
          log,
          timeZone: 'UTC',
          retention: { hourlyDays: 90, monthlyMonths: 13 },
        },
        new Date(addHours(hourOf(latest), 1).getTime() + 5_000),
      );
      const { rows } = await database.pool.query<{ tenant_id: string; value: number }>(
        `SELECT tenant_id, sum(value)::int AS value FROM usage_metrics WHERE metric = 'requests' GROUP BY tenant_id`,
      );
      expect(Object.fromEntries(rows.map((r) => [r.tenant_id, r.value]))).toEqual({
        [acme]: 35,
        [globex]: 7,
      });
    } finally {
      await compute.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('an nginx access log read by readers killed with SIGKILL', () => {
  it('counts every line exactly once after the kills and a reader that finishes', async () => {
    const logDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-nginx-log-'));
    const file = path.join(logDir, 'access.log');
    const hour = new Date('2031-08-01T10:00:00Z');
    const lines = (n: number, tenantId: string, minute: number) =>
      Array.from(
        { length: n },
        (_, i) =>
          `{"time":"${new Date(hour.getTime() + minute * 60_000 + i).toISOString()}","tenantId":"${tenantId}","route":"x.localhost","host":"x.localhost","path":"/p/${i}","status":200,"ms":0.001,"bytes":10,"upstream":"127.0.0.1:1"}\n`,
      ).join('');
    appendFileSync(file, lines(6000, acme, 5) + lines(4000, globex, 65) + lines(500, '', 10));
    try {
      let killedMidRead = 0;
      for (const delayMs of [0, 5, 15, 30, 60, 120]) {
        const child = spawn(process.execPath, [READER, database.url, file, 'edge-killed', '8192'], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        const exited = once(child, 'exit');
        let said = '';
        const out = child.stdout.setEncoding('utf8');
        out.on('data', (chunk: string) => (said += chunk));
        await once(out, 'data');
        await sleep(delayMs);
        child.kill('SIGKILL');
        await exited;
        if (!said.includes('done')) killedMidRead++;
        // nginx keeps writing: more lines between the kills.
        appendFileSync(file, lines(100, acme, 30));
      }
      expect(killedMidRead).toBeGreaterThanOrEqual(2);
      const last = startNginxLogReporter({
        db: database.db,
        file,
        edge: 'edge-killed',
        log,
        chunkBytes: 8192,
      });
      await last.close();
      const { rows } = await database.pool.query<{
        tenant_id: string;
        period_start: Date;
        requests: number;
        bytes: number;
      }>(
        `SELECT tenant_id, period_start, requests::int, response_bytes::int AS bytes
           FROM usage_edge_counts WHERE edge = 'edge-killed' ORDER BY tenant_id, period_start`,
      );
      const byTenant = (id: string) => rows.filter((r) => r.tenant_id === id);
      // Each line filed under the hour of its own time.
      expect(byTenant(acme)).toEqual([{ tenant_id: acme, period_start: hour, requests: 6600, bytes: 66000 }]);
      expect(byTenant(globex)).toEqual([
        { tenant_id: globex, period_start: addHours(hour, 1), requests: 4000, bytes: 40000 },
      ]);
      expect(rows).toHaveLength(2); // lines with no tenant count nothing

      // A rotated log (another file at the path) is read from its start.
      rmSync(file);
      appendFileSync(file, lines(3, globex, 65));
      const rotated = startNginxLogReporter({ db: database.db, file, edge: 'edge-killed', log });
      await rotated.close();
      const { rows: after } = await database.pool.query<{ requests: number }>(
        `SELECT requests::int FROM usage_edge_counts WHERE edge = 'edge-killed' AND tenant_id = $1`,
        [globex],
      );
      expect(after).toEqual([{ requests: 4003 }]);
    } finally {
      await rm(logDir, { recursive: true, force: true });
    }
  });
});
