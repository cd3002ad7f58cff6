// Services from OCI images on the lxc driver: subscribe→ready for an image
// already in the cache, p50 over BENCH_N subscriptions (goal ≤ 3 s), and the
// first deploy, which pulls the image, shown apart; on a real `aiqso up`
// (local billing mode), from `POST /api/v1/tenants/<slug>/services {web}` to
// HTTP 200 from `<slug>.localhost/web/healthz` through the edge. The image is
// built here (umoci: static busybox httpd) and served by a local
// docker-registry on 127.0.0.1. Baseline, measured in the same run on the
// same image: `lxc-create -t oci` by hand (LXC's own OCI template: skopeo
// pull + umoci unpack) then `lxc-execute -d`, until its /healthz answers
// (BENCH_BASELINE_N times; the container shares the host's network).
// Needs root, lxc, docker-registry, skopeo and umoci.
// PostgreSQL: TEST_DATABASE_URL's server, else an embedded one in a temp dir.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { localId } from '../src/billing/stripe-objects.ts';
import { freePort } from '../src/db/embedded.ts';
import type { Database } from '../src/db/database.ts';
import { createLogger } from '../src/observability/logger.ts';
import {
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
  type LivePlatform,
} from '../test/support/live-platform.ts';
import { lxcAvailable } from '../test/support/lxc.ts';
import { startRegistry, webImage } from '../test/support/registry.ts';
import { checkoutCompleted } from '../test/support/stripe.ts';
import { benchDatabase } from './database.ts';

const N = Number(process.env.BENCH_N ?? 10);
const BASELINE_N = Number(process.env.BENCH_BASELINE_N ?? 5);
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 120_000);
const log = createLogger('silent');
const pct = (xs: number[], p: number) =>
  xs.length
    ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!
    : NaN;
const ms = (x: number) => (Number.isNaN(x) ? '—' : `${x.toFixed(0)} ms`);
const until = (check: () => Promise<boolean>, timeoutMs = TIMEOUT_MS): Promise<boolean> =>
  pollUntil(() => check().catch(() => false), Boolean, timeoutMs, 20);
const load = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' / ');

const missing = ['docker-registry', 'skopeo', 'umoci', 'lxc-create'].filter(
  (tool) => spawnSync('which', [tool]).status !== 0,
);
if (!lxcAvailable() || missing.length) {
  console.log(
    `services: skipped (needs root, lxc${missing.length ? `; missing ${missing.join(', ')}` : ''})`,
  );
  process.exit(0);
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-services-'));
const registry = await startRegistry();
// The baseline shares the host's network: the image listens on a port free here.
const port = await freePort();
// With an /etc, which LXC's oci template writes the hostname into.
const web = webImage(port);
const image = await registry.push('bench/web', '1', {
  ...web,
  files: { ...web.files, '/etc/hostname': { text: 'web\n' } },
});

/** `lxc-create -t oci` then `lxc-execute -d`, until /healthz answers on the host; create time apart. */
async function baseline(): Promise<{ create: number[]; ready: number[] }> {
  const lxcPath = path.join(tmp, 'oci');
  const conf = path.join(tmp, 'oci.conf');
  await writeFile(conf, 'lxc.net.0.type = none\n');
  // LXC's own oci template, its skopeo given the registries.conf that marks the local registry
  // insecure (a `skopeo` first on its PATH adding --registries-conf); nothing else changes.
  const shims = path.join(tmp, 'shims');
  spawnSync('mkdir', ['-p', shims]);
  await writeFile(
    path.join(shims, 'skopeo'),
    `#!/bin/sh\nexec /usr/bin/skopeo --registries-conf '${registry.registriesConf}' "$@"\n`,
    { mode: 0o755 },
  );
  const template = path.join(tmp, 'lxc-oci-local');
  await writeFile(template, `#!/bin/sh\nPATH='${shims}':$PATH exec /usr/share/lxc/templates/lxc-oci "$@"\n`, {
    mode: 0o755,
  });
  const env = process.env;
  const lxc = (tool: string, args: string[]) => {
    const r = spawnSync(tool, ['-P', lxcPath, ...args], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  };
  spawnSync('mkdir', ['-p', lxcPath]);
  const out = { create: [] as number[], ready: [] as number[] };
  for (let i = 0; i < BASELINE_N; i++) {
    const name = `aiqsobench-oci${i}`;
    const t0 = performance.now();
    lxc('lxc-create', ['-n', name, '-f', conf, '-t', template, '--', '--url', `docker://${image}`]);
    out.create.push(performance.now() - t0);
    lxc('lxc-execute', ['-d', '-n', name]);
    const up = await until(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200);
    if (up) out.ready.push(performance.now() - t0);
    spawnSync('lxc-stop', ['-P', lxcPath, '-k', '-n', name]);
    spawnSync('lxc-destroy', ['-P', lxcPath, '-f', '-n', name]);
  }
  return out;
}

const catalogDir = path.join(tmp, 'catalog');
spawnSync('mkdir', ['-p', catalogDir]);
await writeFile(
  path.join(catalogDir, 'web.yaml'),
  [
    'key: web',
    'name: Web',
    'description: A test-built image (busybox httpd).',
    'kind: image',
    `image: ${image}`,
    'min_memory_mb: 64',
    'resources: { memory_mb: 128, cores: 1, disk_gb: 1 }',
    `port: ${port}`,
    'health: { path: /healthz, status: 200, timeout_seconds: 60 }',
    // Its health path public: the edge answers it without the platform's sign-in.
    'route: { path: /web, strip_prefix: true, public_paths: [/healthz] }',
    'database: { postgres: false }',
    '',
  ].join('\n'),
);

async function live(platform: LivePlatform, db: Database, slug: string): Promise<void> {
  const res = await platform.signup({ company: `Bench ${slug}`, slug, email: `owner@${slug}.test` });
  if (res.status !== 201) throw new Error(`signup ${slug} answered ${res.status}`);
  const t = await db.selectFrom('tenants').select('id').where('slug', '=', slug).executeTakeFirstOrThrow();
  await platform.sendEvent(checkoutCompleted(t.id, localId('sub'), localId('cus')));
  const page = await platform.until(slug, (p) => p.status === 200, TIMEOUT_MS);
  if (page.status !== 200) throw new Error(`${slug} did not go live`);
}

/** From POST /services {web} to HTTP 200 at `<slug>.localhost/web/healthz` through the edge. */
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
    body: JSON.stringify({ service: 'web' }),
  });
  if (res.status !== 202) {
    console.error(`subscribe ${slug}: ${res.status} ${await res.text()}`);
    return null;
  }
  const ready = await until(
    async () =>
      (await viaEdge(`${slug}.localhost:${platform.port}`, platform.port, { path: '/web/healthz' }))
        .status === 200,
  );
  if (!ready) {
    const view = await fetch(`${base}/api/v1/tenants/${slug}/services`, {
      headers: { authorization: `Bearer ${accessToken}` },
    });
    console.error(`subscribe ${slug}: /web/healthz did not answer 200: ${await view.text()}`);
  }
  return ready ? performance.now() - t0 : null;
}

const loadBefore = load();
let first: number | null = null;
const cached: number[] = [];
let base = { create: [] as number[], ready: [] as number[] };
const lxc = driverCases().find((d) => d.name === 'lxc')!;
const db = await benchDatabase(tmp, log, { name: 'services' });
let platform: LivePlatform | undefined;
try {
  base = await baseline();
  platform = await startLivePlatform({
    databaseUrl: db.url,
    driver: lxc,
    env: { AIQSO_CATALOG_DIR: catalogDir, AIQSO_REGISTRIES_CONF: registry.registriesConf },
  });
  const slugs = Array.from({ length: N + 1 }, (_, i) => `svc${i}`);
  for (const slug of slugs) await live(platform, db.db, slug);
  // The first subscription pulls and unpacks the image; every later one clones its template.
  first = await subscribeToReady(platform, slugs[0]!);
  for (const slug of slugs.slice(1)) {
    const took = await subscribeToReady(platform, slug);
    if (took !== null) cached.push(took);
  }
} finally {
  await platform?.stop(db.db);
  await lxc.cleanUp();
  await db.close();
  await registry.stop();
  await rm(tmp, { recursive: true, force: true });
}

const baseReady = pct(base.ready, 50);
console.log(
  `\nsubscribe → ready (HTTP 200 at <slug>.localhost/web/healthz through the edge) for a busybox httpd image from a local registry; load average before ${loadBefore}, after ${load()}`,
);
console.log(
  'case                                        | succeeded | p50 / p95           | p50 vs baseline',
);
const row = (label: string, samples: number[], attempted: number) =>
  console.log(
    [
      label.padEnd(43),
      `${samples.length}/${attempted}`.padEnd(9),
      `${ms(pct(samples, 50))} / ${ms(pct(samples, 95))}`.padEnd(19),
      `${(pct(samples, 50) / baseReady).toFixed(2)}x`,
    ].join(' | '),
  );
row('baseline: lxc-create -t oci + lxc-execute', base.ready, BASELINE_N);
row('  of which lxc-create -t oci (pull+unpack)', base.create, BASELINE_N);
row('first subscription (pulls the image)', first === null ? [] : [first], 1);
row('subscription, image cached', cached, N);
const p50 = pct(cached, 50);
console.log(
  `goal subscribe→ready with the image cached: p50 ${ms(p50)} ≤ 3000 ms: ${p50 <= 3000 ? 'met' : 'missed'}`,
);
if (first !== null && cached.length)
  console.log(`the pull (first subscription − cached p50): ${ms(first - p50)}`);
