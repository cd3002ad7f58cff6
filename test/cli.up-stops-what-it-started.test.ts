import { readdir, readFile, rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
  type LivePlatform,
} from './support/live-platform.ts';

/**
 * `aiqso up` with its embedded database and the process driver is one thing:
 * Ctrl-C stops its tenant processes with it (their database stops too), and
 * leaves nothing of the platform running; the next start brings every tenant
 * back, since their desired state did not change (#19).
 */
const PASSWORD = 'correct horse battery staple';
const processDriver = driverCases().find((d) => d.name === 'process')!;

/** Processes whose command line or environment names `needle` (the data dir), this test's own aside. */
async function processesNaming(needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const read = (file: string) => readFile(`/proc/${pid}/${file}`, 'utf8').catch(() => '');
    const cmdline = await read('cmdline');
    if (cmdline.includes(needle) || (await read('environ')).includes(needle))
      found.push(`${pid}: ${cmdline.replaceAll('\0', ' ').trim()}`);
  }
  return found;
}

let platform: LivePlatform;
beforeAll(async () => {
  platform = await startLivePlatform({ driver: processDriver });
}, 180_000);
afterAll(async () => {
  if (!platform) return;
  await platform.stop();
  await rm(platform.dataDir, { recursive: true, force: true });
}, 120_000);

async function activeTenant(slug: string, withNotes: boolean) {
  const email = `owner@${slug}.test`;
  const signup = await platform.signup({ company: slug, slug, email, password: PASSWORD });
  expect(signup.status).toBe(201);
  expect((await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(303);
  expect((await platform.until(slug, (p) => p.status === 200, 180_000)).status).toBe(200);
  if (!withNotes) return;
  const base = `http://127.0.0.1:${platform.port}`;
  const login = await fetch(`${base}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  const { accessToken } = (await login.json()) as { accessToken: string };
  const auth = { authorization: `Bearer ${accessToken}` };
  const subscribed = await fetch(`${base}/api/v1/tenants/${slug}/services`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ service: 'notes' }),
  });
  expect(subscribed.status).toBe(202);
  const status = await pollUntil(
    async () => {
      const res = await fetch(`${base}/api/v1/tenants/${slug}/services`, { headers: auth });
      return ((await res.json()) as { services: { status: string }[] }).services[0]?.status;
    },
    (s) => s === 'active' || s === 'failed',
    180_000,
  );
  expect(status).toBe('active');
}

describe('Ctrl-C or SIGTERM on aiqso up (embedded database, process driver)', { timeout: 600_000 }, () => {
  it('stops every process of the platform, tenants included, and the next start serves them all', async () => {
    await activeTenant('alpha', true);
    await activeTenant('bravo', false);
    const running = await processesNaming(platform.dataDir);
    // aiqso up, its database, two dashboards and one service at least.
    expect(running.length).toBeGreaterThanOrEqual(5);

    // Ctrl-C, then SIGTERM (what a service manager sends): the same clean stop.
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      let left: string[] = [];
      const stopped = await platform.restart(signal, async () => {
        // What exits with the platform may take a moment to be reaped; nothing may stay.
        left = await pollUntil(
          () => processesNaming(platform.dataDir),
          (l) => l.length === 0,
          15_000,
        );
      });
      expect([signal, stopped.code]).toEqual([signal, 0]);
      expect(left).toEqual([]);
      for (const slug of ['alpha', 'bravo'])
        expect((await platform.until(slug, (p) => p.status === 200, 120_000)).status).toBe(200);
    }
    const host = `alpha.localhost:${platform.port}`;
    const { cookies } = await dashboardLogin(host, platform.port, 'owner@alpha.test', PASSWORD);
    const notes = await pollUntil(
      () => viaEdge(host, platform.port, { path: '/notes/', headers: { cookie: cookies } }),
      (r) => r.status === 200,
      120_000,
    );
    expect(notes.body).toContain('<h1>Notes</h1>');
  });
});
