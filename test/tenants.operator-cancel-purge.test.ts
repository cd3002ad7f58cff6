import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../src/core/ids.ts';
import type { TenantStatus } from '../src/db/tables.ts';
import { TENANT_KIND } from '../src/core/kinds.ts';
import { applyResource } from '../src/orchestrator/resources.ts';
import { runCli } from './support/cli.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * An operator cancels and purges tenants from the API (platform admins) and
 * the CLI: cancel does what a Stripe subscription deletion does (cancelled,
 * routes suspended at once, a reconcile queued, purge after the grace
 * period); purge refuses anything but a cancelled tenant; both are idempotent
 * and audited.
 */
let h: Harness;
const GRACE_DAYS = 7;
beforeAll(async () => {
  h = await createHarness({ env: { AIQSO_GRACE_DAYS: String(GRACE_DAYS) } });
});
afterAll(() => h.close());

let n = 0;
async function tenant(status: TenantStatus = 'active') {
  const id = newId('tenant');
  const slug = `op${++n}-${Date.now().toString(36)}`;
  await h.db.db
    .insertInto('tenants')
    .values({ id, slug, company: `${slug} Co`, status })
    .execute();
  await h.db.db
    .insertInto('routes')
    .values({
      id: newId('route'),
      tenant_id: id,
      hostname: `${slug}.localhost`,
      path_prefix: '',
      upstream_host: '127.0.0.1',
      upstream_port: 40_000 + n,
      state: status === 'active' ? 'active' : 'suspended',
    })
    .execute();
  return { id, slug };
}

const post = (url: string, token = h.admin.token) =>
  h.api.inject({ method: 'POST', url, headers: h.bearer(token) });
const cli = (...args: string[]) =>
  runCli(['tenants', ...args], {
    DATABASE_URL: h.db.url,
    AIQSO_DATA_DIR: h.dataDir,
    AIQSO_GRACE_DAYS: String(GRACE_DAYS),
  });
const row = (id: string) =>
  h.db.db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
const routeStates = async (id: string) =>
  (await h.db.db.selectFrom('routes').select('state').where('tenant_id', '=', id).execute()).map(
    (r) => r.state,
  );
const audits = (tenantId: string, action: string) =>
  h.db.db
    .selectFrom('audit_log')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('action', '=', action)
    .orderBy('id')
    .execute();

describe('operator cancel (API)', () => {
  it('cancels like a subscription deletion: routes suspended now, a reconcile queued, purge after the grace period', async () => {
    const t = await tenant();
    const before = Date.now();
    const res = await post(`/api/v1/tenants/${t.id}/cancel`);
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<{ tenant: { status: string; purgeAfter: string }; changed: boolean }>();
    expect(body).toMatchObject({ changed: true, tenant: { id: t.id, slug: t.slug, status: 'cancelled' } });
    const days = (Date.parse(body.tenant.purgeAfter) - before) / 86_400_000;
    expect(days).toBeGreaterThan(GRACE_DAYS - 0.01);
    expect(days).toBeLessThan(GRACE_DAYS + 0.01);
    expect(await row(t.id)).toMatchObject({ status: 'cancelled', status_reason: 'cancelled by an operator' });
    expect(await routeStates(t.id)).toEqual(['suspended']);
    const jobs = await sql<{ key: string }>`
      SELECT key FROM graphile_worker.jobs WHERE key = ${`reconcile:${TENANT_KIND}:${t.id}`}`.execute(
      h.db.db,
    );
    expect(jobs.rows).toHaveLength(1);
    expect(await audits(t.id, 'tenant.cancel')).toMatchObject([
      { actor_type: 'user', actor_id: h.admin.id, target_type: 'tenant', target_id: t.id, result: 'success' },
    ]);
  });

  it('is idempotent: a second cancel changes nothing and keeps the purge date', async () => {
    const t = await tenant('suspended');
    await h.db.db
      .insertInto('subscriptions')
      .values({
        id: newId('subscription'),
        tenant_id: t.id,
        stripe_subscription_id: 'sub_live1',
        status: 'past_due',
      })
      .execute();
    const first = (await post(`/api/v1/tenants/${t.slug}/cancel`)).json<{ tenant: { purgeAfter: string } }>();
    const again = await post(`/api/v1/tenants/${t.slug}/cancel`);
    expect(again.statusCode).toBe(200);
    // Stripe is not called: the subscription it still bills is named for the operator to cancel there.
    expect(again.json()).toMatchObject({
      changed: false,
      tenant: { purgeAfter: first.tenant.purgeAfter },
      liveSubscriptions: ['sub_live1'],
    });
  });

  it('answers 404 for an unknown tenant and 409 for a purged one', async () => {
    const missing = await post('/api/v1/tenants/ten_01jx0000000000000000000000/cancel');
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: { code: 'not_found' } });
    expect((await post('/api/v1/tenants/no-such-tenant/purge')).statusCode).toBe(404);
    const gone = await tenant('purged');
    const res = await post(`/api/v1/tenants/${gone.slug}/cancel`);
    expect(res.statusCode).toBe(409);
    expect(res.json<{ error: { message: string } }>().error.message).toContain('is purged');
  });
});

describe('operator purge (API)', () => {
  it('refuses a tenant that is not cancelled with a 409 naming its status', async () => {
    const t = await tenant('active');
    const res = await post(`/api/v1/tenants/${t.slug}/purge?now=true`);
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({
      error: { code: 'conflict', message: expect.stringContaining('is active') as string },
    });
    expect((await row(t.id)).status).toBe('active');
  });

  it('waits for the grace period unless ?now=true, then purges; a second purge is a no-op', async () => {
    const t = await tenant();
    await post(`/api/v1/tenants/${t.id}/cancel`);
    const early = await post(`/api/v1/tenants/${t.id}/purge`);
    expect(early.statusCode).toBe(409);
    expect(early.json<{ error: { message: string } }>().error.message).toMatch(
      /grace period ends .*now=true/,
    );
    const res = await post(`/api/v1/tenants/${t.id}/purge?now=true`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ purge: 'done', tenant: { status: 'purged' } });
    expect(await routeStates(t.id)).toEqual([]);
    const again = await post(`/api/v1/tenants/${t.id}/purge?now=true`);
    expect(again.statusCode).toBe(200);
    // The refused early purge is audited too.
    expect((await audits(t.id, 'tenant.purge')).map((a) => a.result)).toEqual([
      'failure',
      'success',
      'success',
    ]);
    expect(await audits(t.id, 'tenant.purged')).toHaveLength(1);
  });

  it('queues the removal of a provisioned tenant for the worker (202)', async () => {
    const t = await tenant();
    await applyResource(h.db.db, {
      kind: TENANT_KIND,
      id: t.id,
      tenantId: t.id,
      spec: { slug: t.slug, company: 'x' },
    });
    await post(`/api/v1/tenants/${t.id}/cancel`);
    const res = await post(`/api/v1/tenants/${t.id}/purge?now=true`);
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toMatchObject({ purge: 'queued', tenant: { status: 'cancelled' } });
    const resource = await h.db.db
      .selectFrom('resources')
      .select('deleted')
      .where('id', '=', t.id)
      .executeTakeFirstOrThrow();
    expect(resource.deleted).toBe(true);
    expect((await post(`/api/v1/tenants/${t.id}/purge?now=true`)).statusCode).toBe(202);
  });
});

describe('aiqso tenants cancel / purge', () => {
  it('cancels by slug, suspends the routes, audits the operator, and is idempotent', async () => {
    const t = await tenant();
    const first = await cli('cancel', t.slug);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain(`${t.slug} cancelled: its routes are suspended now`);
    expect(await routeStates(t.id)).toEqual(['suspended']);
    const [entry] = await audits(t.id, 'tenant.cancel');
    expect(entry).toMatchObject({ actor_type: 'operator', result: 'success', details: { via: 'cli' } });
    const again = await cli('cancel', t.slug, '--json');
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ slug: t.slug, status: 'cancelled', changed: false });
    expect(await audits(t.id, 'tenant.cancel')).toHaveLength(1);
  });

  it('purges a cancelled tenant with --now, and refuses others with clear messages and exit codes', async () => {
    const active = await tenant();
    const refused = await cli('purge', active.slug, '--now');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`${active.slug} is active; only a cancelled tenant can be purged`);
    expect(await audits(active.id, 'tenant.purge')).toMatchObject([
      { actor_type: 'operator', result: 'failure', details: { via: 'cli' } },
    ]);
    const missing = await cli('cancel', 'no-such-tenant');
    expect(missing.code).toBe(3);
    expect(missing.stderr).toBe('aiqso: no tenant with slug or id "no-such-tenant"\n');

    const t = await tenant('cancelled');
    const purged = await cli('purge', t.slug, '--now', '--json');
    expect(purged.code, purged.stderr).toBe(0);
    expect(JSON.parse(purged.stdout)).toEqual({ slug: t.slug, status: 'purged' });
    expect(await audits(t.id, 'tenant.purge')).toMatchObject([{ actor_type: 'operator' }]);
  });

  it('documents cancel and the exit codes in --help', async () => {
    const help = await runCli(['tenants', '--help'], {});
    expect(help.stdout).toContain('cancel [options] <slug>');
    expect(help.stdout).toContain('3 no such tenant');
  });
});
