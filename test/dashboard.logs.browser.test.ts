import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../src/catalog/load.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { ProcessDriver } from '../src/compute/process/driver.ts';
import { sleep } from '../src/compute/shared/run.ts';
import type { ContainerInfo } from '../src/core/compute.ts';
import { createLogger } from '../src/observability/logger.ts';
import { launchChromium, pageInspector, skipBrowser, signInToWorkspace } from './support/browser.ts';
import { LOG_APP_DIR } from './support/compute-app.ts';
import { startDashboard, type RunningDashboard } from './support/dashboard.ts';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';

/**
 * The dashboard's Logs page in Chromium, over the real API and a real process
 * container running test/fixtures/log-app: the last lines, then a live tail
 * (no script: the page grows as the service writes) showing a line the
 * service printed after the page opened, its end after its time with a link
 * to continue, long lines wrapped at 390 px, and a refusal in words.
 */
const OUT = path.resolve('test-output', 'dashboard-logs');
let h: Harness;
let dash: RunningDashboard;
let driver: ProcessDriver;
let container: string;
let info: ContainerInfo;
let browser: Browser;
let inspect: Awaited<ReturnType<typeof pageInspector>>;
let base: string;

async function say(text: string): Promise<void> {
  const url = `http://${info.endpoint!.host}:${info.endpoint!.port}/say?text=${encodeURIComponent(text)}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(url, { signal: AbortSignal.timeout(2000) })).ok) return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await sleep(100);
  }
}

beforeAll(async () => {
  if (skipBrowser) return;
  h = await createHarness();
  await syncCatalog(h.db.db, loadCatalog());
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/services`,
    headers: h.bearer(h.a.owner.token),
    payload: { service: 'notes' },
  });
  if (res.statusCode !== 202) throw new Error(res.body);
  const { rows } = await h.db.pool.query<{ container_name: string }>(
    `UPDATE tenant_services SET status = 'active' WHERE tenant_id = $1 RETURNING container_name`,
    [h.a.id],
  );
  container = rows[0]!.container_name;
  driver = await ProcessDriver.open({
    root: path.join(h.dataDir, 'containers'),
    log: createLogger('silent'),
  });
  await driver.ensure({
    name: container,
    tenantId: h.a.id,
    role: 'notes',
    workload: { kind: 'app', dir: LOG_APP_DIR, entry: 'server.mjs' },
    resources: { memoryMb: 128, cores: 1, diskGb: 1 },
    port: 3000,
    env: {},
  });
  info = await driver.start(container);
  await say('hello from notes');
  dash = await startDashboard(h, h.a, 'Alpha Widgets', { AIQSO_DASHBOARD_LIVE_SECONDS: '8' });
  base = `http://127.0.0.1:${dash.port}`;
  inspect = await pageInspector(OUT);
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await dash?.stop();
  await driver?.destroy(container);
  await driver?.close();
  await h?.close();
});

/** This process's open files inside `dir` (the API runs in it). */
async function openFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir)) out.push(target);
  }
  return out;
}

const signIn = (page: Page, email: string, password = PASSWORD) =>
  signInToWorkspace(page, base, email, password);

describe.skipIf(skipBrowser)('the dashboard Logs page in Chromium', { timeout: 180_000 }, () => {
  it('shows the last lines, then a live tail with a line printed after the page opened', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    // A member (not only owners) reads logs.
    await signIn(page, h.a.member.email);
    await page.click('a[aria-label="Logs of Notes"]');
    await expect.poll(() => page.textContent('h1')).toBe('Logs of Notes');
    const log = page.locator('pre[role=log][aria-live=polite]');
    expect(await log.textContent()).toMatch(/log-app listening on \d+\nhello from notes\n$/);
    await say(`a long line ${'x'.repeat(600)} end`);
    await page.reload();
    await expect.poll(() => log.textContent()).toContain(' end');
    await inspect(page, 'logs');

    // Live: the page is still loading while lines arrive, so it is opened without waiting for its load.
    await page.goto(`${base}/logs?service=notes&live=1`, { waitUntil: 'commit' });
    await expect.poll(() => page.locator('pre[role=log]').textContent()).toContain('hello from notes');
    expect(await page.textContent('main')).toContain('new lines appear below');
    await say('printed after the page opened');
    await expect
      .poll(() => page.locator('pre[role=log]').textContent(), { timeout: 15_000 })
      .toContain('printed after the page opened');
    await inspect(page, 'logs-live');

    // After its time the tail ends with a way to go on.
    await expect
      .poll(() => page.locator('a', { hasText: 'Continue the live tail' }).count(), { timeout: 20_000 })
      .toBe(1);
    expect(await page.textContent('main')).toContain('The live tail ended after');
    await inspect(page, 'logs-live-ended');
    const dir = path.join(h.dataDir, 'containers', container);
    expect(cspViolations).toEqual([]);

    // Leaving a live tail before its end ends it at the platform too: the API (in this process) closes the files.
    await page.goto(`${base}/logs?service=notes&live=1`, { waitUntil: 'commit' });
    await expect.poll(() => page.locator('pre[role=log]').textContent()).toContain('hello from notes');
    expect((await openFiles(dir)).length).toBe(2);
    await page.goto(`${base}/`);
    await expect.poll(() => openFiles(dir), { timeout: 10_000 }).toEqual([]);

    // A service the tenant does not have: said in words.
    await page.goto(`${base}/logs?service=calcom`);
    expect(await page.textContent('.notice')).toContain('service calcom of this tenant not found');
    await inspect(page, 'logs-refused');
    await context.close();
  });
});
