import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import { driverCases, pollUntil, startLivePlatform } from './support/live-platform.ts';

/**
 * The health monitor on a real `aiqso up` with a short interval, with each
 * driver: a service whose health path answers 500, or hangs, is repaired by
 * the right rung (a restart does not clear its fault, a recreate from its
 * template does), each time an incident opens and resolves, and the owner and
 * the alert address each get one mail for the opening and one for the
 * resolution. A service no rung can fix (its database refuses its role) ends
 * `degraded` with an open incident and a reason, and recovers once fixed.
 * The fault is switched inside the container (apps/drafts reads a
 * `health-fault` file in its home).
 */

let testDb: TestDatabase;
beforeEach(async () => {
  testDb = await createTestDatabase();
});
afterEach(async () => {
  await testDb.drop();
});

const PASSWORD = 'correct horse battery staple';

describe.each(driverCases())('self-healing ($name driver)', { timeout: 600_000 }, (driver) => {
  it('repairs a 500 and a hang by recreating, opens and resolves incidents with one mail each, and degrades what it cannot fix', async ({
    skip,
  }) => {
    if (driver.skip()) return skip();
    const platform = await startLivePlatform({
      databaseUrl: testDb.url,
      driver,
      env: {
        AIQSO_HEALTH_INTERVAL_SECONDS: '2',
        AIQSO_HEALTH_TIMEOUT_SECONDS: '1',
        AIQSO_HEALTH_FAILURES: '1',
        AIQSO_ALERT_EMAIL: 'alerts@ops.test',
      },
    });
    const { db } = testDb;
    const base = `http://127.0.0.1:${platform.port}`;
    try {
      const signup = await fetch(`${base}/api/v1/signup`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          company: 'Heal Co',
          slug: 'heal',
          email: 'owner@heal.test',
          password: PASSWORD,
          plan: 'business',
        }),
      });
      expect(signup.status).toBe(201);
      const { checkoutUrl } = (await signup.json()) as { checkoutUrl: string };
      expect((await fetch(`${checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' })).status).toBe(303);
      expect((await platform.until('heal', (p) => p.status === 200, 180_000)).status).toBe(200);
      const login = await fetch(`${base}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'owner@heal.test', password: PASSWORD }),
      });
      const { accessToken } = (await login.json()) as { accessToken: string };
      const subscribed = await fetch(`${base}/api/v1/tenants/heal/services`, {
        method: 'POST',
        headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ service: 'notes' }),
      });
      expect(subscribed.status).toBe(202);
      const service = () =>
        db
          .selectFrom('tenant_services')
          .select(['id', 'status', 'status_reason', 'container_name', 'db_role'])
          .executeTakeFirstOrThrow();
      await pollUntil(service, (s) => s.status === 'active', 180_000);
      const svc = await service();
      const compute = await driver.open(platform.dataDir, db);
      const check = () =>
        db.selectFrom('health_checks').selectAll().where('target_id', '=', svc.id).executeTakeFirst();
      // The monitor sees it healthy before anything breaks.
      expect((await pollUntil(check, (c) => c?.state === 'healthy', 60_000))?.state).toBe('healthy');

      const incidents = () =>
        db.selectFrom('incidents').selectAll().where('target_id', '=', svc.id).orderBy('opened_at').execute();
      const dump = async () =>
        JSON.stringify(
          {
            incidents: await incidents(),
            check: await check(),
            service: await service(),
            resources: await db
              .selectFrom('resources')
              .select(['kind', 'phase', 'last_error', 'steps'])
              .execute(),
            jobs: (
              await sql`SELECT task_identifier, key, attempts, last_error, run_at FROM graphile_worker.jobs`.execute(
                db,
              )
            ).rows,
            output: platform.output().slice(-4000),
          },
          null,
          1,
        );
      const breakWith = async (fault: '500' | 'hang') => {
        // Stably healthy first: a target that just recovered would go on to the next rung (flap damping).
        await pollUntil(check, (c) => c?.state === 'healthy' && c.rung === 0, 60_000);
        const before = (await incidents()).length;
        const res = await compute.exec(svc.container_name!, [
          'sh',
          '-c',
          `echo ${fault} > "$HOME/health-fault"`,
        ]);
        expect(res.exitCode).toBe(0);
        const all = await pollUntil(
          incidents,
          (xs) => xs.length === before + 1 && xs[before]!.resolved_at !== null,
          180_000,
        );
        const incident = all[before]!;
        if (incident?.resolved_at == null) console.error(await dump());
        expect(incident.resolved_at).not.toBeNull();
        const rungs = incident.rungs;
        // A restart keeps the fault file (it lives in the container); the recreate starts without it.
        expect(rungs.map((r) => r.action)).toEqual(['restart', 'recreate']);
        expect(rungs[0]!.outcome).toMatch(/^restarted/);
        expect(rungs[1]!.outcome).toBe('destroyed; being created again from its template');
        expect(incident.reason).toContain(fault === '500' ? 'answered 500' : 'no answer within 1 s');
        return incident;
      };
      const first = await breakWith('500');
      const second = await breakWith('hang');
      expect((await service()).status).toBe('active');

      // One mail each to the owner and the alert address, per opening and per resolution.
      const mails = async (id: string) => {
        await pollUntil(
          () =>
            db
              .selectFrom('outbox')
              .select('status')
              .where('key', 'like', `incident:${id}:%`)
              .where('status', '!=', 'delivered')
              .execute(),
          (xs) => xs.length === 0,
          60_000,
        );
        return db
          .selectFrom('emails')
          .select(['recipient', 'template', 'outbox_key'])
          .where('outbox_key', 'like', `incident:${id}:%`)
          .orderBy('outbox_key')
          .execute();
      };
      for (const incident of [first, second]) {
        expect(await mails(incident.id)).toEqual([
          {
            recipient: 'alerts@ops.test',
            template: 'alert',
            outbox_key: `incident:${incident.id}:opened:admin`,
          },
          {
            recipient: 'owner@heal.test',
            template: 'incident-opened',
            outbox_key: `incident:${incident.id}:opened:owner`,
          },
          {
            recipient: 'alerts@ops.test',
            template: 'alert',
            outbox_key: `incident:${incident.id}:resolved:admin`,
          },
          {
            recipient: 'owner@heal.test',
            template: 'incident-resolved',
            outbox_key: `incident:${incident.id}:resolved:owner`,
          },
        ]);
      }

      await pollUntil(check, (c) => c?.state === 'healthy' && c.rung === 0, 60_000);
      // Unfixable: its database refuses its role, so neither a restart nor a recreate helps.
      await sql`ALTER ROLE ${sql.id(svc.db_role!)} NOLOGIN`.execute(db);
      await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ${svc.db_role!}`.execute(
        db,
      );
      const degraded = await pollUntil(service, (s) => s.status === 'degraded', 180_000);
      expect(degraded.status_reason).toMatch(/^health: GET \/healthz .*restart and recreate did not help$/);
      const open = (await incidents()).at(-1)!;
      expect(open.resolved_at).toBeNull();
      expect(open.reason).toMatch(/needs an operator$/);
      expect(open.rungs.map((r) => r.action)).toEqual(['restart', 'recreate', 'degraded']);
      expect((await check())?.state).toBe('degraded');
      // Fixed by a person: the next healthy probe resolves the incident and the service is active again.
      await sql`ALTER ROLE ${sql.id(svc.db_role!)} LOGIN`.execute(db);
      const after = await pollUntil(incidents, (xs) => xs.at(-1)!.resolved_at !== null, 180_000);
      expect(after.at(-1)!.id).toBe(open.id);
      expect((await pollUntil(service, (s) => s.status === 'active', 30_000)).status).toBe('active');
      await compute.close();
    } finally {
      await platform.stop(testDb.db);
    }
  });
});
