// Requests: the idle memory of the catalog's `app` services that run on this machine (notes,
// social-media-manager, content-suite: apps/drafts with their own database), from which their
// `resources.request_memory_mb` in catalog/services/*.yaml is set. On a real `aiqso up` (local
// billing mode) with BENCH_DRIVER (default lxc), BENCH_TENANTS tenants (default 2) sign up, pay,
// and each subscribes to every one of those services, as a signed-in user would (the API, then an
// edge session); once each service answers 200 through the edge it is left alone for BENCH_IDLE
// seconds (default 10), then its container's memory is read from the driver (lxc: the cgroup's
// charge, as `lxc-info` reports it; process: the process's RSS) BENCH_SAMPLES times (default 5),
// two seconds apart. Prints, per service, min/p50/p95/max over every sample of every tenant, the limit,
// the current request, and the request the rule gives: max × 1.5 rounded up to 8 MB.
// Needs root and lxc for BENCH_DRIVER=lxc. PostgreSQL: TEST_DATABASE_URL's server, else an embedded one.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { localId } from '../src/billing/stripe-objects.ts';
import { loadCatalog } from '../src/catalog/load.ts';
import { containerName } from '../src/core/compute.ts';
import { memoryRequest } from '../src/core/services.ts';
import { createLogger } from '../src/observability/logger.ts';
import { driverCases, pollUntil, startLivePlatform, viaEdge } from '../test/support/live-platform.ts';
import { checkoutCompleted } from '../test/support/stripe.ts';
import { benchDatabase } from './database.ts';

const SERVICES = ['notes', 'social-media-manager', 'content-suite'] as const;
const N = Number(process.env.BENCH_TENANTS ?? 2);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 5);
const IDLE_S = Number(process.env.BENCH_IDLE ?? 10);
const DRIVER = process.env.BENCH_DRIVER ?? 'lxc';
const TIMEOUT_MS = 300_000;
const PASSWORD = 'correct horse battery staple';
for (const [name, value] of [
  ['BENCH_TENANTS', N],
  ['BENCH_SAMPLES', SAMPLES],
] as const) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`${name}: expected a whole number of at least 1, got ${process.env[name]}`);
    process.exit(2);
  }
}
const log = createLogger('silent');
const driver = driverCases().find((d) => d.name === DRIVER);
if (!driver) {
  console.error(`BENCH_DRIVER: expected process or lxc, got ${DRIVER}`);
  process.exit(2);
}
if (driver.skip()) {
  console.log(`requests: the ${DRIVER} driver cannot run here; skipped`);
  process.exit(0);
}

const catalog = loadCatalog();
const templates = SERVICES.map((key) => {
  const t = catalog.find((c) => c.key === key);
  if (!t) throw new Error(`catalog has no service ${key}`);
  return t;
});
const mb = (bytes: number) => bytes / 2 ** 20;
const pct = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
/** The rule the catalog's requests follow: the largest idle sample × 1.5, rounded up to 8 MB. */
const rule = (max: number) => Math.ceil((max * 1.5) / 8) * 8;

const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-requests-'));
const db = await benchDatabase(tmp, log);
const platform = await startLivePlatform({ databaseUrl: db.url, driver });
const base = `http://127.0.0.1:${platform.port}`;
const samples = new Map<string, number[]>(SERVICES.map((s) => [s, []]));
try {
  const loadBefore = os.loadavg();
  const tenants: { id: string; slug: string }[] = [];
  for (let i = 0; i < N; i++) {
    const slug = `req${i}`;
    const res = await platform.signup({ company: `Requests ${slug}`, slug, email: `owner@${slug}.test` });
    if (res.status !== 201) throw new Error(`signup ${slug} answered ${res.status}`);
    const t = await db.db
      .selectFrom('tenants')
      .select('id')
      .where('slug', '=', slug)
      .executeTakeFirstOrThrow();
    const status = await platform.sendEvent(checkoutCompleted(t.id, localId('sub'), localId('cus')));
    if (status !== 200) throw new Error(`checkout webhook for ${slug} answered ${status}`);
    const page = await platform.until(slug, (p) => p.status === 200, TIMEOUT_MS, 250);
    if (page.status !== 200) throw new Error(`${slug}.localhost answered ${page.status}`);
    // The Business plan, whose service cap holds all three (Starter's holds two).
    await db.db.updateTable('tenants').set({ plan: 'business' }).where('id', '=', t.id).execute();
    tenants.push({ id: t.id, slug });
  }
  for (const { slug } of tenants) {
    const login = await fetch(`${base}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: `owner@${slug}.test`, password: PASSWORD }),
    });
    if (login.status !== 200) throw new Error(`login ${slug} answered ${login.status}`);
    const { accessToken } = (await login.json()) as { accessToken: string };
    const auth = { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' };
    for (const service of SERVICES) {
      const res = await fetch(`${base}/api/v1/tenants/${slug}/services`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ service }),
      });
      if (res.status !== 202)
        throw new Error(`subscribe ${slug} to ${service}: ${res.status} ${await res.text()}`);
    }
    // Services answer only signed-in users of their tenant: an edge session, as the dashboard gets one.
    const host = `${slug}.localhost:${platform.port}`;
    const session = await fetch(`${base}/api/v1/auth/edge-session`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ host }),
    });
    if (session.status !== 200) throw new Error(`edge session ${slug}: ${session.status}`);
    const { token, cookie } = (await session.json()) as { token: string; cookie: string };
    for (const t of templates) {
      const route = `${t.route.path}/`;
      const answer = await pollUntil(
        () => viaEdge(host, platform.port, { path: route, headers: { cookie: `${cookie}=${token}` } }),
        (a) => a.status === 200,
        TIMEOUT_MS,
        500,
      );
      if (answer.status !== 200) throw new Error(`${slug}${route} answered ${answer.status}`);
    }
  }
  // Idle: answered once through the edge, then left alone.
  await new Promise((r) => setTimeout(r, IDLE_S * 1000));
  const compute = await driver.open(platform.dataDir, db.db);
  for (let s = 0; s < SAMPLES; s++) {
    if (s > 0) await new Promise((r) => setTimeout(r, 2000));
    for (const { id } of tenants) {
      for (const service of SERVICES) {
        const used = (await compute.stats(containerName(id, service))).memoryBytes;
        if (!(used > 0)) throw new Error(`${service} of ${id}: the driver reported no memory use`);
        samples.get(service)!.push(mb(used));
      }
    }
  }
  await compute.close();
  const load = os.loadavg();
  console.log(
    `requests (${DRIVER} driver, ${N} tenants × ${SERVICES.length} services, ${SAMPLES} samples each after ${IDLE_S} s idle; ` +
      `load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${load.map((x) => x.toFixed(2)).join(' ')} after)`,
  );
  for (const t of templates) {
    const xs = samples.get(t.key)!;
    const max = Math.max(...xs);
    console.log(
      `  ${t.key.padEnd(22)} idle min ${Math.min(...xs).toFixed(1)} MB, p50 ${pct(xs, 0.5).toFixed(1)} MB, p95 ${pct(xs, 0.95).toFixed(1)} MB, max ${max.toFixed(1)} MB ` +
        `(${xs.length} samples); limit ${t.resources.memory_mb} MB, request now ${memoryRequest(t.resources)} MB, ` +
        `by the rule (max × 1.5, up to 8 MB) ${rule(max)} MB`,
    );
  }
} finally {
  await platform.stop(db.db);
  await driver.cleanUp();
  await db.close();
  await rm(tmp, { recursive: true, force: true });
}
