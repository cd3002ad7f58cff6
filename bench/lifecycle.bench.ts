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
import { mkdtemp, rm } from 'node:fs/promises';
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
import { benchDatabase } from './database.ts';

const N = Number(process.env.BENCH_N ?? 5);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT ?? 50);
const TIMEOUT_MS = 180_000;
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

async function webhookToLive(platform: LivePlatform, tenantId: string, slug: string): Promise<number | null> {
  const t0 = performance.now();
  const status = await platform.sendEvent(checkoutCompleted(tenantId, localId('sub'), localId('cus')));
  if (status !== 200) return null;
  const page = await platform.until(
    slug,
    (p) => p.status === 200 && p.body.includes(`Bench ${slug}`),
    TIMEOUT_MS,
  );
  return page.status === 200 ? performance.now() - t0 : null;
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
  const ready = await until(
    async () =>
      (await viaEdge(`${slug}.localhost:${platform.port}`, platform.port, { path: '/notes/' })).status ===
      200,
    TIMEOUT_MS,
  );
  if (!ready) console.error(`subscribe ${slug}: /notes/ did not answer 200 within ${TIMEOUT_MS / 1000} s`);
  return ready ? performance.now() - t0 : null;
}

interface Row {
  label: string;
  samples: number[];
  attempted: number;
}

async function measure(driver: DriverCase, db: { db: Database; url: string }): Promise<Row[]> {
  const platform = await startLivePlatform({
    databaseUrl: db.url,
    driver,
    env: process.env.BENCH_WORKER_CONCURRENCY
      ? { AIQSO_WORKER_CONCURRENCY: process.env.BENCH_WORKER_CONCURRENCY }
      : {},
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
    const many = (await Promise.all(slugs.map((slug, i) => webhookToLive(platform, ids[i]!, slug)))).filter(
      (x): x is number => x !== null,
    );
    return [
      { label: `${driver.name}, one signup`, samples: one, attempted: N },
      { label: `${driver.name}, ${CONCURRENT} at once`, samples: many, attempted: CONCURRENT },
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
const goal = (label: string, limit: number) => {
  const r = rows.find((x) => x.label === label);
  if (!r) return;
  const p50 = pct(r.samples, 50);
  console.log(`goal ${label}: p50 ${ms(p50)} ≤ ${ms(limit)}: ${p50 <= limit ? 'met' : 'missed'}`);
};
goal('process, one signup', 1500);
goal('lxc, one signup', 3000);
goal('lxc, subscribe→ready', 5000);
for (const r of rows.filter((x) => x.attempted === CONCURRENT)) {
  console.log(
    `goal ${r.label}: all succeed: ${r.samples.length === r.attempted ? 'met' : `missed (${r.samples.length}/${r.attempted})`}`,
  );
}
