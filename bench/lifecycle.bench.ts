// Tenant lifecycle: webhook→live latency, from the POST of a signed
// `checkout.session.completed` to HTTP 200 with the company's name from
// `<slug>.localhost` through the edge, on a real `aiqso up` (local billing
// mode, mail to files). For each driver: one signup at a time (BENCH_N of
// them) and 50 at once (BENCH_CONCURRENT); then subscribe→ready, from the
// POST of a subscription to notes to HTTP 200 from `<slug>.localhost/notes/`
// (its own container and database), once per live tenant. Baseline, measured in the same
// run: the dashboard app itself started directly with node until /healthz
// answers, so the ratio is what the platform adds around a bare boot.
// Needs root and lxc for the lxc half (skipped with a note otherwise).
// PostgreSQL: TEST_DATABASE_URL's server, else an embedded one in a temp dir.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { localId } from '../src/billing/stripe-objects.ts';
import { REPO_ROOT } from '../src/catalog/load.ts';
import { freeLoopbackPort } from '../src/compute/process/ports.ts';
import type { Database } from '../src/db/database.ts';
import { createLogger } from '../src/observability/logger.ts';
import {
  driverCases,
  pollUntil,
  viaEdge,
  startLivePlatform,
  type DriverCase,
  type LivePlatform,
} from '../test/support/live-platform.ts';
import { lxcAvailable } from '../test/support/lxc.ts';
import { checkoutCompleted } from '../test/support/stripe.ts';
import { sql } from 'kysely';
import { benchDatabase } from './database.ts';

const N = Number(process.env.BENCH_N ?? 5);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT ?? 50);
/** Which drivers (comma-separated); all by default. */
const DRIVERS = process.env.BENCH_DRIVERS?.split(',').map((d) => d.trim());
/** `BENCH_CPU_PROF=<dir>`: `aiqso up` writes a V8 CPU profile there, one folder per driver. */
const CPU_PROF = process.env.BENCH_CPU_PROF;
/**
 * `BENCH_PERF=<file>`: `perf record -a -g` of the whole machine during the burst, written to
 * `<file>.<driver>` (`perf report -i … --sort comm,dso`: which process spent the cores); the
 * platform runs with --perf-basic-prof, so its JavaScript functions have their names.
 */
const PERF = process.env.BENCH_PERF;
const TIMEOUT_MS = 180_000;
/**
 * How often each of the many looks at its workspace. One signup is watched every 50 ms; fifty
 * watched that often would be a thousand requests a second to the platform under test (whose
 * preparing page refreshes every 5 s in a browser), and serving them would be most of its CPU.
 */
const MANY_POLL_MS = Number(process.env.BENCH_POLL_MS ?? 250);
const log = createLogger('silent');
const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-lifecycle-'));
const pct = (xs: number[], p: number) =>
  xs.length
    ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!
    : NaN;
const ms = (x: number) => (Number.isNaN(x) ? '—' : `${x.toFixed(0)} ms`);

/** Whether `check` holds within `timeoutMs` (a failing check counts as not yet). */
const until = (check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> =>
  pollUntil(() => check().catch(() => false), Boolean, timeoutMs, 20);

/** The dashboard started with node directly, until /healthz answers. */
async function baseline(): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    const port = await freeLoopbackPort(new Set());
    const t0 = performance.now();
    const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dashboard', 'server.mjs')], {
      env: { PORT: String(port), HOST: '127.0.0.1', AIQSO_COMPANY: 'Baseline', AIQSO_TENANT_SLUG: 'b' },
      stdio: 'ignore',
    });
    const up = await until(
      async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200,
      TIMEOUT_MS,
    );
    if (up) out.push(performance.now() - t0);
    child.kill('SIGKILL');
  }
  return out;
}

/** Sign up (before the clock starts), then time webhook → the company's page at the edge. */
async function signUp(platform: LivePlatform, db: Database, slug: string) {
  const res = await platform.signup({ company: `Bench ${slug}`, slug, email: `owner@${slug}.test` });
  if (res.status !== 201) throw new Error(`signup ${slug} answered ${res.status}`);
  const t = await db.selectFrom('tenants').select('id').where('slug', '=', slug).executeTakeFirstOrThrow();
  return t.id;
}

/** When each tenant's webhook was sent and its page first answered (wall clock, ms), for the breakdown. */
const clocks = new Map<string, { sent: number; live?: number }>();
/**
 * `BENCH_TIMELINE=<file>`: each of the many's moments (wall clock, ms: webhook sent, event stored and
 * processed, placement started, dashboard started, healthy seen, active, page live), as JSON.
 */
const TIMELINE = process.env.BENCH_TIMELINE;
const timeline: Record<string, number | undefined>[] = [];

async function webhookToLive(
  platform: LivePlatform,
  tenantId: string,
  slug: string,
  everyMs?: number,
): Promise<number | null> {
  const t0 = performance.now();
  clocks.set(tenantId, { sent: Date.now() });
  const status = await platform.sendEvent(checkoutCompleted(tenantId, localId('sub'), localId('cus')));
  if (status !== 200) return null;
  const page = await platform.until(
    slug,
    (p) => p.status === 200 && p.body.includes(`Bench ${slug}`),
    TIMEOUT_MS,
    everyMs,
  );
  if (page.status !== 200) return null;
  clocks.get(tenantId)!.live = Date.now();
  return performance.now() - t0;
}

/** Start `perf record` on every core; resolves to a function that stops it and waits for its file. */
async function recordMachine(file: string): Promise<() => Promise<void>> {
  const perf = spawn('perf', ['record', '-a', '-g', '-F', '499', '-o', file], { stdio: 'ignore' });
  const ended = new Promise<void>((resolve) => perf.once('close', () => resolve()));
  await new Promise((resolve) => setTimeout(resolve, 300)); // perf is recording once its maps are read
  return async () => {
    perf.kill('SIGINT');
    await ended;
  };
}

/** CPU time (ms) of a process (`self`) and of its children it has reaped (`children`: lxc-*, pg_dump…). */
async function cpuOf(pid: number): Promise<{ self: number; children: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // Fields after the command name (which may hold spaces): utime is the 14th field, stime, cutime, cstime follow.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  const n = (i: number) => Number(f[i - 3] ?? 0) * tick;
  return { self: n(14) + n(15), children: n(16) + n(17) };
}

/** CPU time (ms) of the PostgreSQL backends serving `db` now (its pools' connections). */
async function backendsCpu(db: Database): Promise<Map<number, number>> {
  const { rows } = await sql<{ pid: number }>`
    SELECT pid FROM pg_stat_activity WHERE datname = current_database()`.execute(db);
  const out = new Map<number, number>();
  for (const { pid } of rows) out.set(pid, (await cpuOf(pid)).self);
  return out;
}

interface Breakdown {
  /** Phase name → per-tenant durations (ms). */
  phases: Map<string, number[]>;
  cpu: { platform: number; children: number; postgres: number };
  /** One-minute load average before and after (the machine is shared). */
  load: [number, number];
}

/**
 * Where the concurrent signups waited, from what the platform records: the
 * inbox event's processing, the tenant resource's step timings (started,
 * finished, waiting since), and the bench's own clock at both ends.
 */
async function breakdown(db: Database, ids: string[]): Promise<Map<string, number[]>> {
  const phases = new Map<string, number[]>();
  const add = (name: string, ms: number | undefined) => {
    if (ms === undefined || Number.isNaN(ms)) return;
    phases.set(name, [...(phases.get(name) ?? []), ms]);
  };
  const t = (iso: string | undefined) => (iso ? Date.parse(iso) : NaN);
  for (const id of ids) {
    const c = clocks.get(id);
    const inbox = await sql<{ received_at: Date; processed_at: Date | null }>`
      SELECT received_at, processed_at FROM inbox
       WHERE payload -> 'data' -> 'object' ->> 'client_reference_id' = ${id}
       ORDER BY received_at LIMIT 1`.execute(db);
    const r = await db
      .selectFrom('resources')
      .select(['steps', 'created_at'])
      .where('kind', '=', 'tenant')
      .where('id', '=', id)
      .executeTakeFirst();
    if (!c || !inbox.rows[0] || !r) continue;
    const step = (name: string) => r.steps.find((s) => s.name === name);
    const processed = inbox.rows[0].processed_at?.getTime();
    const placed = t(step('placement')?.startedAt);
    const running = t(step('dashboard running')?.finishedAt);
    const healthy = t(step('health check')?.finishedAt);
    const active = t(step('activate')?.finishedAt);
    timeline.push({
      sent: c.sent,
      received: inbox.rows[0].received_at.getTime(),
      processed,
      placed,
      running,
      healthy,
      active,
      live: c.live,
    });
    add('webhook → event processed (inbox)', processed !== undefined ? processed - c.sent : undefined);
    add('event processed → first reconcile (queue)', placed - (processed ?? NaN));
    add('placement → dashboard started', running - placed);
    add('dashboard started → healthy seen', healthy - running);
    add('healthy seen → active', active - healthy);
    add('active → page at the edge', c.live !== undefined ? c.live - active : undefined);
    // What the first reconcile spends in its worker slot, step by step.
    for (const name of ['placement', 'dashboard container', 'dashboard running', 'route']) {
      const s = step(name);
      add(`  step "${name}"`, t(s?.finishedAt) - t(s?.startedAt));
    }
  }
  return phases;
}

/** Time from POST /services {notes} to HTTP 200 from `<slug>.localhost/notes/` through the edge. */
async function subscribeToReady(platform: LivePlatform, slug: string): Promise<number | null> {
  const base = `http://127.0.0.1:${platform.port}`;
  const login = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: `owner@${slug}.test`, password: 'correct horse battery staple' }),
  });
  const { accessToken } = (await login.json()) as { accessToken: string };
  const t0 = performance.now();
  const res = await fetch(`${base}/api/v1/tenants/${slug}/services`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ service: 'notes' }),
  });
  const answer = await res.text();
  if (res.status !== 202) {
    console.error(`subscribe ${slug}: ${res.status} ${answer}`);
    return null;
  }
  // Services answer only signed-in users of their tenant: an edge session, as the dashboard gets one.
  const host = `${slug}.localhost:${platform.port}`;
  const session = await fetch(`${base}/api/v1/auth/edge-session`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ host }),
  });
  if (session.status !== 200) {
    console.error(`subscribe ${slug}: edge session ${session.status} ${await session.text()}`);
    return null;
  }
  const { token, cookie } = (await session.json()) as { token: string; cookie: string };
  const headers = { cookie: `${cookie}=${token}` };
  const ready = await until(
    async () => (await viaEdge(host, platform.port, { path: '/notes/', headers })).status === 200,
    TIMEOUT_MS,
  );
  if (!ready) console.error(`subscribe ${slug}: /notes/ did not answer 200 within ${TIMEOUT_MS / 1000} s`);
  return ready ? performance.now() - t0 : null;
}

interface Row {
  label: string;
  samples: number[];
  attempted: number;
  breakdown?: Breakdown;
}

async function measure(driver: DriverCase, db: { db: Database; url: string }): Promise<Row[]> {
  const platform = await startLivePlatform({
    databaseUrl: db.url,
    driver,
    env: process.env.BENCH_WORKER_CONCURRENCY
      ? { AIQSO_WORKER_CONCURRENCY: process.env.BENCH_WORKER_CONCURRENCY }
      : {},
    // A CPU profile of the whole `aiqso up` run, written when it stops (open it in Chrome's DevTools).
    nodeArgs: [
      ...(CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', path.resolve(CPU_PROF, driver.name)] : []),
      // perf reads the names of JIT-compiled functions from /tmp/perf-<pid>.map.
      ...(PERF ? ['--perf-basic-prof'] : []),
    ],
  });
  const tag = driver.name[0]!;
  try {
    // Warm-up (the lxc driver builds its base template on first use); not counted.
    await webhookToLive(platform, await signUp(platform, db.db, `${tag}warm`), `${tag}warm`);
    const one: number[] = [];
    for (let i = 0; i < N; i++) {
      const slug = `${tag}one${i}`;
      const took = await webhookToLive(platform, await signUp(platform, db.db, slug), slug);
      if (took !== null) one.push(took);
    }
    // Subscribe→ready: each of those live tenants subscribes to notes (own container and database).
    const subscribe: number[] = [];
    for (let i = 0; i < N; i++) {
      const took = await subscribeToReady(platform, `${tag}one${i}`);
      if (took !== null) subscribe.push(took);
    }
    const slugs = Array.from({ length: CONCURRENT }, (_, i) => `${tag}many${i}`);
    const ids: string[] = [];
    for (const slug of slugs) ids.push(await signUp(platform, db.db, slug));
    const load0 = os.loadavg()[0]!;
    const cpu0 = await cpuOf(platform.pid());
    const pg0 = await backendsCpu(db.db);
    const perf = PERF ? await recordMachine(`${PERF}.${driver.name}`) : undefined;
    const many = (
      await Promise.all(slugs.map((slug, i) => webhookToLive(platform, ids[i]!, slug, MANY_POLL_MS)))
    ).filter((x): x is number => x !== null);
    await perf?.();
    const cpu1 = await cpuOf(platform.pid());
    const pg1 = await backendsCpu(db.db);
    let postgres = 0;
    for (const [pid, ms] of pg1) postgres += ms - (pg0.get(pid) ?? 0);
    const manyBreakdown: Breakdown = {
      phases: await breakdown(db.db, ids),
      cpu: {
        platform: cpu1.self - cpu0.self,
        children: cpu1.children - cpu0.children,
        postgres,
      },
      load: [load0, os.loadavg()[0]!],
    };
    return [
      { label: `${driver.name}, one signup`, samples: one, attempted: N },
      {
        label: `${driver.name}, ${CONCURRENT} at once`,
        samples: many,
        attempted: CONCURRENT,
        breakdown: manyBreakdown,
      },
      { label: `${driver.name}, subscribe→ready`, samples: subscribe, attempted: N },
    ];
  } finally {
    await platform.stop(db.db);
  }
}

const base = await baseline();
const rows: Row[] = [];
try {
  for (const driver of driverCases()) {
    if (DRIVERS && !DRIVERS.includes(driver.name)) continue;
    if (driver.name === 'lxc' && !lxcAvailable()) {
      console.log('lxc: skipped (needs root and the lxc tools)');
      continue;
    }
    // A database per driver: each platform seals its secrets with its own master key.
    const db = await benchDatabase(tmp, log, { name: driver.name });
    try {
      rows.push(...(await measure(driver, db)));
    } finally {
      await db.close();
    }
  }
} finally {
  await rm(tmp, { recursive: true, force: true });
}

console.log(
  `\nwebhook → live (HTTP 200 with the company name at <slug>.localhost through the edge); subscribe → ready (HTTP 200 at <slug>.localhost/notes/)`,
);
console.log('case                         | succeeded | p50 / p95            | p50 vs baseline');
const baseP50 = pct(base, 50);
console.log(
  [
    'baseline (dashboard, node)'.padEnd(28),
    `${base.length}/${N}`.padEnd(9),
    `${ms(baseP50)} / ${ms(pct(base, 95))}`.padEnd(20),
    '1.00x',
  ].join(' | '),
);
for (const r of rows) {
  console.log(
    [
      r.label.padEnd(28),
      `${r.samples.length}/${r.attempted}`.padEnd(9),
      `${ms(pct(r.samples, 50))} / ${ms(pct(r.samples, 95))}`.padEnd(20),
      `${(pct(r.samples, 50) / baseP50).toFixed(1)}x`,
    ].join(' | '),
  );
}
for (const r of rows) {
  if (!r.breakdown) continue;
  const { phases, cpu, load } = r.breakdown;
  console.log(
    `\n${r.label}: where each signup's time went (p50 / p95 over the tenants, from the platform's records); ` +
      `load ${load[0].toFixed(1)} → ${load[1].toFixed(1)}`,
  );
  for (const [name, xs] of phases)
    console.log(`  ${name.padEnd(44)} ${ms(pct(xs, 50))} / ${ms(pct(xs, 95))}`);
  const per = (x: number) => `${(x / r.attempted).toFixed(0)} ms`;
  console.log(
    `  CPU per signup: platform process ${per(cpu.platform)}, its reaped children ${per(cpu.children)}, ` +
      `its PostgreSQL backends ${per(cpu.postgres)} (totals ${(cpu.platform / 1000).toFixed(1)} / ` +
      `${(cpu.children / 1000).toFixed(1)} / ${(cpu.postgres / 1000).toFixed(1)} s)`,
  );
}
if (TIMELINE) await writeFile(TIMELINE, JSON.stringify(timeline));
const goal = (label: string, limit: number) => {
  const r = rows.find((x) => x.label === label);
  if (!r) return;
  const p50 = pct(r.samples, 50);
  console.log(`goal ${label}: p50 ${ms(p50)} ≤ ${ms(limit)}: ${p50 <= limit ? 'met' : 'missed'}`);
};
goal('process, one signup', 1500);
goal(`process, ${CONCURRENT} at once`, 2000);
goal(`lxc, ${CONCURRENT} at once`, 2000);
goal('lxc, one signup', 3000);
goal('lxc, subscribe→ready', 5000);
for (const r of rows.filter((x) => x.attempted === CONCURRENT)) {
  console.log(
    `goal ${r.label}: all succeed: ${r.samples.length === r.attempted ? 'met' : `missed (${r.samples.length}/${r.attempted})`}`,
  );
}
