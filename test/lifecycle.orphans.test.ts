import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { containerName, type ComputeDriver } from '../src/core/compute.ts';
import { newId } from '../src/core/ids.ts';
import { openDatabase, type DatabaseHandle } from '../src/db/database.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { computeOrphans } from '../src/lifecycle/orphan-sources.ts';
import { createLogger } from '../src/observability/logger.ts';
import {
  ensureServiceDatabase,
  serviceDatabaseExists,
  serviceDatabaseName,
} from '../src/services/databases.ts';
import { appWorkload } from './support/compute-app.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
  type LivePlatform,
} from './support/live-platform.ts';

/**
 * Orphan detection as `aiqso up` runs it (#19): a container, a route and a
 * service database that no spec owns are reported, then removed once
 * AIQSO_ORPHAN_GRACE_SECONDS have passed, while a live tenant's own dashboard,
 * service, routes and database stay.
 */
const PASSWORD = 'correct horse battery staple';

describe('what orphan detection lists', () => {
  it('lists containers by the names containerName makes, never a prepared template', async () => {
    const tenant = newId('tenant');
    const names = [containerName(tenant, 'dashboard'), 'aiqso-tpl-paperless-ngx', 'aiqsobase3', 'web1'];
    const compute = {
      list: () => Promise.resolve(names.map((name) => ({ name }))),
    } as unknown as ComputeDriver;
    expect(await computeOrphans(compute).list()).toEqual([containerName(tenant, 'dashboard')]);
  });
});

for (const driver of driverCases()) {
  const skip = driver.skip();
  describe(`orphans on aiqso up with the ${driver.name} driver`, { timeout: 600_000 }, () => {
    let platform: LivePlatform;
    let server: EmbeddedPostgres;
    let master: DatabaseHandle;
    let compute: ComputeDriver;

    beforeAll(async () => {
      if (skip) return;
      platform = await startLivePlatform({
        driver,
        env: { AIQSO_ORPHAN_GRACE_SECONDS: '6', AIQSO_RESYNC_SECONDS: '1' },
      });
      // The platform's own embedded server, shared while `aiqso up` runs it.
      server = await startEmbeddedPostgres(platform.dataDir, createLogger('silent'));
      master = openDatabase(server.url.replace(/\/postgres$/, '/aiqso'), { max: 2 });
      compute = await driver.open(platform.dataDir, master.db);
    }, 180_000);
    afterAll(async () => {
      if (skip) return;
      await compute?.close();
      await master?.close();
      if (!platform) return;
      await platform.stop();
      await rm(platform.dataDir, { recursive: true, force: true });
    }, 180_000);

    it('reports, then removes after the grace period, what no spec owns, and keeps what a tenant owns', async ({
      skip: skipTest,
    }) => {
      if (skip) return skipTest();
      const base = `http://127.0.0.1:${platform.port}`;
      const signup = await platform.signup({
        company: 'Acme',
        slug: 'acme',
        email: 'o@acme.test',
        password: PASSWORD,
      });
      expect((await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(
        303,
      );
      expect((await platform.until('acme', (p) => p.status === 200, 180_000)).status).toBe(200);
      const login = await fetch(`${base}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'o@acme.test', password: PASSWORD }),
      });
      const auth = {
        authorization: `Bearer ${((await login.json()) as { accessToken: string }).accessToken}`,
      };
      const subscribed = await fetch(`${base}/api/v1/tenants/acme/services`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ service: 'notes' }),
      });
      expect(subscribed.status).toBe(202);
      const host = `acme.localhost:${platform.port}`;
      const { cookies } = await dashboardLogin(host, platform.port, 'o@acme.test', PASSWORD);
      const notesPage = () => viaEdge(host, platform.port, { path: '/notes/', headers: { cookie: cookies } });
      expect((await pollUntil(notesPage, (p) => p.status === 200, 180_000)).status).toBe(200);

      // Things no spec owns: a container, a route of a tenant with no resource, a service database.
      const strayTenant = newId('tenant');
      const strayContainer = containerName(strayTenant, 'dashboard');
      await compute.ensure({
        name: strayContainer,
        tenantId: strayTenant,
        role: 'dashboard',
        workload: appWorkload(),
        resources: { memoryMb: 64, cores: 1, diskGb: 1 },
        port: 3000,
        env: { APP_NAME: 'stray' },
      });
      await compute.start(strayContainer);
      await master.db
        .insertInto('tenants')
        .values({ id: strayTenant, slug: 'ghost', company: 'Ghost' })
        .execute();
      await upsertRoute(master.db, { hostname: 'ghost.localhost', tenantId: strayTenant, upstream: null });
      const strayDb = serviceDatabaseName(strayTenant, 'notes');
      await ensureServiceDatabase(master.pool, { name: strayDb, role: strayDb, password: 'stray-secret-1' });
      const expected = [
        { source: 'compute', name: strayContainer },
        { source: 'databases', name: strayDb },
        { source: 'routes', name: strayTenant },
      ];
      const orphanRows = () =>
        master.db.selectFrom('orphans').select(['source', 'name']).orderBy('source').execute();

      // Reported first, while they still exist.
      const reported = await pollUntil(orphanRows, (rows) => rows.length === 3, 60_000, 100);
      expect(reported).toEqual(expected);
      expect((await compute.status(strayContainer)).state).toBe('running');

      // Then removed.
      const left = await pollUntil(orphanRows, (rows) => rows.length === 0, 60_000, 200);
      expect(left).toEqual([]);
      expect((await compute.status(strayContainer)).state).toBe('missing');
      expect(await serviceDatabaseExists(master.pool, strayDb)).toBe(false);
      expect(
        await master.db.selectFrom('routes').select('id').where('hostname', '=', 'ghost.localhost').execute(),
      ).toEqual([]);

      // The tenant's own things stay: its dashboard, its service, their routes, its database.
      expect((await platform.page('acme')).status).toBe(200);
      expect((await notesPage()).status).toBe(200);
      const own = await master.db
        .selectFrom('tenant_services')
        .select(['container_name', 'db_name'])
        .executeTakeFirstOrThrow();
      expect((await compute.status(own.container_name!)).state).toBe('running');
      expect(await serviceDatabaseExists(master.pool, own.db_name!)).toBe(true);
    });
  });
}
