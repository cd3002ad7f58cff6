import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../../src/catalog/load.ts';
import { loadPlans, PLANS_FILE } from '../../src/catalog/plans.ts';
import { syncCatalog } from '../../src/catalog/sync.ts';
import { newId } from '../../src/core/ids.ts';
import type { Role } from '../../src/core/identity.ts';
import type { TenantStatus } from '../../src/core/tenants.ts';
import { ProcessDriver } from '../../src/compute/process/driver.ts';
import { upsertRoute } from '../../src/edge/routes-store.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { appWorkload } from './compute-app.ts';
import { acmeSettings, orderAndRecord } from '../../src/edge/renewal.ts';
import { startAcmeDns, type AcmeDns } from './acme-dns.ts';
import { recordSnapshot } from './backups.ts';
import { subscribeLocally } from './billing-plans.ts';
import { createForge } from './forge.ts';
import { createHarness, PASSWORD, totpCode, type Harness } from './identity.ts';

/**
 * The one security suite every API route runs (Unkey's runCommonRouteTests):
 * no credentials, expired token, forged token, revoked API key, the other
 * tenant's token and API key, a member where an owner is needed, and a
 * positive control proving the request itself is right. A route joins by
 * adding a RouteCase to ROUTE_CASES; test/api.security-suite.test.ts fails
 * for any registered route that has none.
 */
type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export interface Call {
  url: string;
  payload?: unknown;
}
export interface RouteCase {
  method: Method;
  /** The route pattern exactly as registered. */
  url: string;
  minRole: Role;
  /** tenant: acts in the tenant its URL names; platform: spans tenants; self: only the caller's own account. */
  scope: 'tenant' | 'platform' | 'self';
  /** The request aimed at tenant A. */
  call(h: Harness, s: SecurityContext): Call | Promise<Call>;
  /** What tenant B tries in order to reach A (platform routes); default: `call` with B's credentials. */
  crossTenant?(h: Harness, s: SecurityContext): Promise<Call>;
  /** Credentials for the positive control; default: the least role allowed, in tenant A. */
  allowed?(h: Harness, s: SecurityContext): Promise<{ token: string; call?: Call }>;
}

export interface SecurityContext {
  expired: string;
  forged: string;
  revokedKey: string;
  memberKey: string;
  bOwnerKey: string;
  /** Unique suffix source for bodies that must not collide. */
  next(): number;
}

let counter = 0;

async function createKey(
  h: Harness,
  token: string,
  slug: string,
  role: Role,
): Promise<{ id: string; key: string }> {
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${slug}/api-keys`,
    headers: h.bearer(token),
    payload: { name: `suite ${role}`, role },
  });
  if (res.statusCode !== 201) throw new Error(`create key: ${res.body}`);
  return res.json();
}

/** A new member of tenant A, made by A's owner: its id. */
async function aUser(h: Harness, s: SecurityContext): Promise<string> {
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/users`,
    headers: h.bearer(h.a.owner.token),
    payload: { email: `removable${s.next()}@alpha.test`, password: PASSWORD, role: 'tenant_member' },
  });
  if (res.statusCode !== 201) throw new Error(`user: ${res.body}`);
  return res.json<{ id: string }>().id;
}

/** Tenant A subscribed to `service` (idempotent), for routes that act on a subscription. */
async function subscribed(h: Harness, service: string): Promise<void> {
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/services`,
    headers: h.bearer(h.a.owner.token),
    payload: { service },
  });
  if (res.statusCode !== 202) throw new Error(`subscribe ${service}: ${res.body}`);
}

/**
 * Tenant A's `service`, subscribed, with its container made by the real
 * process driver (not started: its logs are there, empty), for the log routes.
 */
async function withContainer(h: Harness, service: string): Promise<void> {
  await subscribed(h, service);
  const { rows } = await h.db.pool.query<{ container_name: string }>(
    `SELECT ts.container_name FROM tenant_services ts JOIN services s ON s.id = ts.service_id
      WHERE s.key = $1 AND ts.tenant_id = $2`,
    [service, h.a.id],
  );
  const driver = await ProcessDriver.open({
    root: path.join(h.dataDir, 'containers'),
    log: createLogger('silent'),
  });
  try {
    await driver.ensure({
      name: rows[0]!.container_name,
      tenantId: h.a.id,
      role: service,
      workload: appWorkload(),
      resources: { memoryMb: 128, cores: 1, diskGb: 1 },
      port: 3000,
      env: {},
    });
  } finally {
    await driver.close();
  }
}

/** A tenant of its own, active and signed up through local checkout (so it has a billing customer): its owner's token. */
async function paidTenant(h: Harness, s: SecurityContext): Promise<{ slug: string; token: string }> {
  const t = await h.ownedTenant(`plan${s.next()}`, 'Plans');
  await subscribeLocally(h.db.db, loadPlans(PLANS_FILE), { id: t.id, email: t.email }, 'starter');
  return { slug: t.slug, token: t.token };
}

/** Tenant A's `service`, subscribed and then failed (its health check never passed), for the retry route. */
async function failed(h: Harness, service: string): Promise<void> {
  await subscribed(h, service);
  const { rows } = await h.db.pool.query<{ id: string }>(
    `UPDATE tenant_services ts SET status = 'failed', status_reason = 'health check: no answer'
       FROM services s WHERE s.id = ts.service_id AND s.key = $1 AND ts.tenant_id = $2 RETURNING ts.id`,
    [service, h.a.id],
  );
  await h.db.pool.query("UPDATE resources SET phase = 'failed' WHERE id = $1", [rows[0]!.id]);
}

/** Tenant A's notes, active, with one real snapshot in A's restic repository, for the restore route. */
async function aSnapshot(h: Harness): Promise<string> {
  await subscribed(h, 'notes');
  const { rows } = await h.db.pool.query<{ id: string }>(
    `UPDATE tenant_services ts SET status = 'active' FROM services s
      WHERE s.id = ts.service_id AND s.key = 'notes' AND ts.tenant_id = $1 RETURNING ts.id`,
    [h.a.id],
  );
  return recordSnapshot(h, {
    tenantId: h.a.id,
    tenantServiceId: rows[0]!.id,
    runId: `run_suite_${++counter}`,
    content: 'not a dump',
  });
}

/** A public address (no DNS needed) that webhook registrations accept by default. */
const HOOK_URL = 'https://93.184.216.34/hook';

/** A webhook endpoint registered through the API: tenant A's own (`tenant`) or the operator's. */
async function anEndpoint(h: Harness, owner: 'tenant' | 'operator'): Promise<string> {
  const res = await h.api.inject({
    method: 'POST',
    url: owner === 'tenant' ? `/api/v1/tenants/${h.a.slug}/webhooks` : '/api/v1/webhooks',
    headers: h.bearer(owner === 'tenant' ? h.a.owner.token : h.admin.token),
    payload: { url: HOOK_URL, events: ['tenant.*'] },
  });
  if (res.statusCode !== 201) throw new Error(`webhook endpoint: ${res.body}`);
  return res.json<{ endpoint: { id: string } }>().endpoint.id;
}

/** A delivery of one of tenant A's events to a new endpoint (A's own, or the operator's), for the redelivery routes. */
async function aDelivery(h: Harness, owner: 'tenant' | 'operator'): Promise<string> {
  const endpoint = await anEndpoint(h, owner);
  const event = newId('webhookEvent');
  await h.db.pool.query(
    `INSERT INTO webhook_events (id, type, tenant_id, data, fanned_out_at) VALUES ($1, 'tenant.activated', $2, '{}', now())`,
    [event, h.a.id],
  );
  const { rows } = await h.db.pool.query<{ id: string }>(
    `INSERT INTO webhook_deliveries (endpoint_id, event_id, event_seq, lane, tenant_id, status, attempts)
       SELECT $1, id, seq, $2, $3, 'failed', 3 FROM webhook_events WHERE id = $4 RETURNING id`,
    [endpoint, h.a.id, owner === 'tenant' ? h.a.id : null, event],
  );
  return rows[0]!.id;
}

/** A failed resource (tenant A's own, as the orchestrator leaves one it gave up on), for the retry route. */
async function aFailedResource(h: Harness): Promise<string> {
  await h.db.pool.query(
    `INSERT INTO resources (kind, id, tenant_id, spec, steps, phase, failures, last_error, updated_at)
       VALUES ('tenant', $1, $1, '{}', '[]', 'failed', 5, 'gave up', now())
       ON CONFLICT (kind, id) DO UPDATE SET phase = 'failed', failures = 5`,
    [h.a.id],
  );
  return `/api/v1/jobs/resources/tenant/${h.a.id}/retry`;
}

/** A received event whose processing failed, for the inbox retry route. */
async function aFailingEvent(h: Harness): Promise<string> {
  await h.db.pool.query(
    `INSERT INTO inbox (id, source, type, payload, attempts, last_error)
       VALUES ('evt_suite', 'stripe', 'invoice.paid', '{}', 3, 'failed')
       ON CONFLICT (id) DO UPDATE SET attempts = 3`,
  );
  return '/api/v1/jobs/inbox/evt_suite/retry';
}

/** A host row, for drain and undrain. */
async function aPlacementHost(h: Harness): Promise<string> {
  await h.db.pool.query(
    `INSERT INTO hosts (id, name, driver, memory_mb, cores, disk_gb)
       VALUES ($1, 'suite-host', 'process', 1024, 1, 10) ON CONFLICT (name) DO NOTHING`,
    [newId('host')],
  );
  return 'suite-host';
}

let acme: AcmeDns | undefined;
let ordered: Promise<unknown> | undefined;
/** A certificate ordered from the suite's local CA, for "renew now". */
async function aCertificate(h: Harness): Promise<string> {
  ordered ??= orderAndRecord(h.db.db, acmeSettings(h.config, h.db.db), ['*.suite.test']);
  await ordered;
  return `/api/v1/certificates/${encodeURIComponent('*.suite.test')}/renew`;
}

async function prepare(h: Harness): Promise<SecurityContext> {
  await syncCatalog(h.db.db, loadCatalog());
  const forge = await createForge(h);
  const now = Math.floor(Date.now() / 1000);
  const aOwner = { sub: h.a.owner.id, role: 'tenant_owner', tid: h.a.id };
  const revoked = await createKey(h, h.a.owner.token, h.a.slug, 'tenant_owner');
  const del = await h.api.inject({
    method: 'DELETE',
    url: `/api/v1/tenants/${h.a.slug}/api-keys/${revoked.id}`,
    headers: h.bearer(h.a.owner.token),
  });
  if (del.statusCode !== 200) throw new Error(`revoke key: ${del.body}`);
  return {
    expired: await forge.real(forge.claims(aOwner, { iat: now - 3600, nbf: now - 3600, exp: now - 1800 })),
    forged: await forge.attacker(forge.claims({ sub: h.admin.id, role: 'platform_admin', tid: null })),
    revokedKey: revoked.key,
    memberKey: (await createKey(h, h.a.owner.token, h.a.slug, 'tenant_member')).key,
    bOwnerKey: (await createKey(h, h.b.owner.token, h.b.slug, 'tenant_owner')).key,
    next: () => ++counter,
  };
}

/** The request with credentials, through the real API. */
async function send(h: Harness, method: Method, call: Call, token?: string) {
  return h.api.inject({
    method,
    url: call.url,
    headers: token ? h.bearer(token) : {},
    ...(call.payload !== undefined ? { payload: call.payload as object } : {}),
  });
}

/** A fresh tenant-A member with a TOTP enrolment begun, for routes that need one. */
export async function freshMember(h: Harness, s: SecurityContext) {
  const email = `fresh${s.next()}@alpha.test`;
  const res = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/users`,
    headers: h.bearer(h.a.owner.token),
    payload: { email, password: PASSWORD, role: 'tenant_member' },
  });
  if (res.statusCode !== 201) throw new Error(`fresh member: ${res.body}`);
  return (await h.login(email)).accessToken;
}

/** A fresh member who has started TOTP enrolment: their token and the secret to confirm. */
async function enrollingMember(h: Harness, s: SecurityContext) {
  const token = await freshMember(h, s);
  const enrol = await h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/totp/enrol',
    headers: h.bearer(token),
  });
  return { token, secret: enrol.json<{ secret: string }>().secret };
}

/** A fresh tenant outside A and B, for admin actions whose positive control must not touch A. */
export async function spareTenant(h: Harness, s: SecurityContext, status: TenantStatus = 'active') {
  const id = newId('tenant');
  const slug = `spare${s.next()}`;
  await h.db.db
    .insertInto('tenants')
    .values({ id, slug, company: `${slug} Ltd`, status })
    .execute();
  return { id, slug };
}

/** A spare tenant whose notes is active with one real snapshot, for the admin's tenant restore. */
async function spareWithSnapshot(h: Harness, s: SecurityContext): Promise<string> {
  const spare = await spareTenant(h, s);
  const service = await h.db.db
    .selectFrom('services')
    .select('id')
    .where('key', '=', 'notes')
    .executeTakeFirstOrThrow();
  const tenantServiceId = newId('tenantService');
  await h.db.db
    .insertInto('tenant_services')
    .values({ id: tenantServiceId, tenant_id: spare.id, service_id: service.id, status: 'active' })
    .execute();
  await recordSnapshot(h, {
    tenantId: spare.id,
    tenantServiceId,
    runId: `run_suite_${++counter}`,
    content: 'not a dump',
  });
  return spare.slug;
}

/** One of tenant A's exports, ready, its archive on disk, for the download route. */
async function aReadyExport(h: Harness): Promise<string> {
  const id = newId('export');
  const file = path.join(h.dataDir, 'exports', `${id}.tar.gz`);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, 'not really a tar.gz', { mode: 0o600 });
  await h.db.db
    .insertInto('tenant_exports')
    .values({
      id,
      tenant_id: h.a.id,
      status: 'ready',
      file,
      size_bytes: '19',
      expires_at: new Date(Date.now() + 3_600_000),
    })
    .execute();
  return id;
}

/** Tenant A's dashboard host in the route table (idempotent), for routes that act on a host. */
async function aHost(h: Harness): Promise<string> {
  const hostname = `${h.a.slug}.${h.config.baseDomain}`;
  await upsertRoute(h.db.db, { hostname, tenantId: h.a.id, upstream: { host: '127.0.0.1', port: 9 } });
  return hostname;
}

export const ROUTE_CASES: RouteCase[] = [
  {
    method: 'POST',
    url: '/api/v1/auth/edge-session',
    minRole: 'tenant_member',
    scope: 'tenant',
    call: async (h) => ({ url: '/api/v1/auth/edge-session', payload: { host: await aHost(h) } }),
  },
  {
    method: 'GET',
    url: '/api/v1/auth/me',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/me' }),
  },
  {
    method: 'POST',
    url: '/api/v1/auth/logout',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/logout' }),
    allowed: async (h) => ({ token: (await h.login(h.a.member.email)).accessToken }),
  },
  {
    method: 'POST',
    url: '/api/v1/auth/totp/enrol',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/totp/enrol' }),
    allowed: async (h, s) => ({ token: await freshMember(h, s) }),
  },
  {
    method: 'POST',
    url: '/api/v1/auth/totp/confirm',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/totp/confirm', payload: { code: '000000' } }),
    allowed: async (h, s) => {
      const { token, secret } = await enrollingMember(h, s);
      return { token, call: { url: '/api/v1/auth/totp/confirm', payload: { code: totpCode(secret) } } };
    },
  },
  {
    method: 'POST',
    url: '/api/v1/auth/totp/disable',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/totp/disable', payload: { code: '000000' } }),
    allowed: async (h, s) => {
      const { token, secret } = await enrollingMember(h, s);
      await h.api.inject({
        method: 'POST',
        url: '/api/v1/auth/totp/confirm',
        headers: h.bearer(token),
        payload: { code: totpCode(secret) },
      });
      // The confirming step is spent; the next step's code is still inside the window.
      return { token, call: { url: '/api/v1/auth/totp/disable', payload: { code: totpCode(secret, 1) } } };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/auth/me/preferences',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/me/preferences' }),
  },
  {
    method: 'PUT',
    url: '/api/v1/auth/me/preferences',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/me/preferences', payload: { marketingEmails: false } }),
  },
  {
    method: 'POST',
    url: '/api/v1/auth/password',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({
      url: '/api/v1/auth/password',
      payload: { currentPassword: PASSWORD, newPassword: 'another long passphrase 77' },
    }),
    // The positive control ends the caller's logins: a fresh member's.
    allowed: async (h, s) => ({ token: await freshMember(h, s) }),
  },
  {
    method: 'GET',
    url: '/api/v1/auth/totp',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/totp' }),
  },
  {
    method: 'GET',
    url: '/api/v1/auth/sessions',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/sessions' }),
  },
  {
    method: 'DELETE',
    url: '/api/v1/auth/sessions/:sessionId',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/sessions/ses_suite' }),
    // A fresh member signs in twice and ends the other login from this one.
    allowed: async (h, s) => {
      const token = await freshMember(h, s);
      const me = await h.api.inject({
        method: 'GET',
        url: '/api/v1/auth/sessions',
        headers: h.bearer(token),
      });
      const mine = me.json<{ sessions: { id: string }[] }>().sessions[0]!.id;
      const other = await h.api.inject({ method: 'GET', url: '/api/v1/auth/me', headers: h.bearer(token) });
      const email = (
        await h.db.db
          .selectFrom('users')
          .select('email')
          .where('id', '=', other.json<{ id: string }>().id)
          .executeTakeFirstOrThrow()
      ).email;
      const second = await h.login(email);
      return { token: second.accessToken, call: { url: `/api/v1/auth/sessions/${mine}` } };
    },
  },
  {
    method: 'DELETE',
    url: '/api/v1/auth/sessions',
    minRole: 'tenant_member',
    scope: 'self',
    call: () => ({ url: '/api/v1/auth/sessions' }),
    // The positive control ends the caller's other logins: a fresh member's.
    allowed: async (h, s) => ({ token: await freshMember(h, s) }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant',
    minRole: 'tenant_member',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}` }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/users',
    minRole: 'tenant_member',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.id}/users` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/users',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h, s) => ({
      url: `/api/v1/tenants/${h.a.slug}/users`,
      payload: { email: `suite${s.next()}@alpha.test`, password: PASSWORD, role: 'tenant_member' },
    }),
  },
  {
    method: 'PATCH',
    url: '/api/v1/tenants/:tenant/users/:userId',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({
      url: `/api/v1/tenants/${h.a.slug}/users/${h.a.member.id}`,
      payload: { role: 'tenant_member' },
    }),
  },
  {
    method: 'DELETE',
    url: '/api/v1/tenants/:tenant/users/:userId',
    minRole: 'tenant_owner',
    scope: 'tenant',
    // A fresh user of A's each time: the positive control removes it.
    call: async (h, s) => ({ url: `/api/v1/tenants/${h.a.slug}/users/${await aUser(h, s)}` }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/invitations',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/invitations` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/invitations',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h, s) => ({
      url: `/api/v1/tenants/${h.a.slug}/invitations`,
      payload: { email: `invitee${s.next()}@alpha.test`, role: 'tenant_member' },
    }),
  },
  {
    method: 'DELETE',
    url: '/api/v1/tenants/:tenant/invitations/:invitationId',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: async (h, s) => {
      const res = await h.api.inject({
        method: 'POST',
        url: `/api/v1/tenants/${h.a.slug}/invitations`,
        headers: h.bearer(h.a.owner.token),
        payload: { email: `withdrawn${s.next()}@alpha.test` },
      });
      if (res.statusCode !== 201) throw new Error(`invitation: ${res.body}`);
      return { url: `/api/v1/tenants/${h.a.slug}/invitations/${res.json<{ id: string }>().id}` };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/cancellation',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/cancellation` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/cancellation',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/cancellation` }),
    // The positive control cancels a workspace: a tenant of its own, not A, which the other cases need.
    allowed: async (h, s) => {
      const t = await h.ownedTenant(`gone${s.next()}`, 'Gone');
      return { token: t.token, call: { url: `/api/v1/tenants/${t.slug}/cancellation` } };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/api-keys',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/api-keys` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/api-keys',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/api-keys`, payload: { name: 'suite' } }),
  },
  {
    method: 'DELETE',
    url: '/api/v1/tenants/:tenant/api-keys/:keyId',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: async (h) => {
      const key = await createKey(h, h.a.owner.token, h.a.slug, 'tenant_member');
      return { url: `/api/v1/tenants/${h.a.slug}/api-keys/${key.id}` };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/services',
    minRole: 'tenant_member',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/services` }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/services/:service/logs',
    minRole: 'tenant_member',
    scope: 'tenant',
    call: async (h) => {
      await withContainer(h, 'notes');
      return { url: `/api/v1/tenants/${h.a.slug}/services/notes/logs?lines=10` };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/services/:service/logs/stream',
    minRole: 'tenant_member',
    scope: 'tenant',
    // A tail of one second, so the injected request ends.
    call: async (h) => {
      await withContainer(h, 'notes');
      return { url: `/api/v1/tenants/${h.a.slug}/services/notes/logs/stream?lines=10&seconds=1` };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/status',
    minRole: 'tenant_member',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/status` }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/billing',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/billing` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/billing/plan',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/billing/plan`, payload: { plan: 'business' } }),
    // The positive control changes a plan: a tenant of its own, signed up through local checkout.
    allowed: async (h, s) => {
      const { slug, token } = await paidTenant(h, s);
      return { token, call: { url: `/api/v1/tenants/${slug}/billing/plan`, payload: { plan: 'business' } } };
    },
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/billing/portal',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/billing/portal` }),
    // The positive control opens a portal: a tenant with a billing customer, from a paid local checkout.
    allowed: async (h, s) => {
      const { slug, token } = await paidTenant(h, s);
      return { token, call: { url: `/api/v1/tenants/${slug}/billing/portal` } };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/usage',
    minRole: 'tenant_member',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/usage?granularity=day` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/services',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/services`, payload: { service: 'notes' } }),
  },
  {
    method: 'DELETE',
    url: '/api/v1/tenants/:tenant/services/:service',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: async (h) => {
      await subscribed(h, 'social-media-manager');
      return { url: `/api/v1/tenants/${h.a.slug}/services/social-media-manager` };
    },
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/services/:service/retry',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: async (h) => {
      await failed(h, 'notes');
      return { url: `/api/v1/tenants/${h.a.slug}/services/notes/retry` };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/backups',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/backups` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/backups',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/backups` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/services/:service/restore',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/services/notes/restore`, payload: {} }),
    allowed: async (h) => {
      const snapshot = await aSnapshot(h);
      return {
        token: h.a.owner.token,
        call: { url: `/api/v1/tenants/${h.a.slug}/services/notes/restore`, payload: { snapshot } },
      };
    },
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/restore',
    minRole: 'platform_admin',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/restore`, payload: {} }),
    allowed: async (h, s) => ({
      token: h.admin.token,
      call: { url: `/api/v1/tenants/${await spareWithSnapshot(h, s)}/restore`, payload: {} },
    }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/exports',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/exports` }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/exports',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/exports` }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/exports/:export/download',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: async (h) => ({ url: `/api/v1/tenants/${h.a.slug}/exports/${await aReadyExport(h)}/download` }),
  },
  {
    method: 'PATCH',
    url: '/api/v1/tenants/:tenant/services/:service',
    minRole: 'platform_admin',
    scope: 'tenant',
    call: async (h) => {
      await subscribed(h, 'notes');
      return {
        url: `/api/v1/tenants/${h.a.slug}/services/notes`,
        payload: { resources: { memory_mb: 192 } },
      };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/audit',
    minRole: 'tenant_owner',
    scope: 'platform',
    call: (h) => ({ url: `/api/v1/audit?tenant=${h.a.id}` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/cancel',
    minRole: 'platform_admin',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/cancel` }),
    allowed: async (h, s) => ({
      token: h.admin.token,
      call: { url: `/api/v1/tenants/${(await spareTenant(h, s)).id}/cancel` },
    }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants',
    minRole: 'platform_admin',
    scope: 'platform',
    call: (h) => ({ url: `/api/v1/tenants?q=${h.a.slug}&limit=5` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/suspend',
    minRole: 'platform_admin',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/suspend` }),
    allowed: async (h, s) => ({
      token: h.admin.token,
      call: { url: `/api/v1/tenants/${(await spareTenant(h, s)).id}/suspend` },
    }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/reactivate',
    minRole: 'platform_admin',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/reactivate` }),
    allowed: async (h, s) => ({
      token: h.admin.token,
      call: { url: `/api/v1/tenants/${(await spareTenant(h, s, 'suspended')).slug}/reactivate` },
    }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/purge',
    minRole: 'platform_admin',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/purge?now=true` }),
    allowed: async (h, s) => ({
      token: h.admin.token,
      call: { url: `/api/v1/tenants/${(await spareTenant(h, s, 'cancelled')).slug}/purge?now=true` },
    }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/webhooks',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({
      url: `/api/v1/tenants/${h.a.slug}/webhooks`,
      payload: { url: HOOK_URL, events: ['tenant.*', 'service.ready'] },
    }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/webhooks',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/webhooks` }),
  },
  {
    method: 'DELETE',
    url: '/api/v1/tenants/:tenant/webhooks/:endpoint',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: async (h) => ({ url: `/api/v1/tenants/${h.a.slug}/webhooks/${await anEndpoint(h, 'tenant')}` }),
  },
  {
    method: 'GET',
    url: '/api/v1/tenants/:tenant/webhooks/deliveries',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: (h) => ({ url: `/api/v1/tenants/${h.a.slug}/webhooks/deliveries` }),
  },
  {
    method: 'POST',
    url: '/api/v1/tenants/:tenant/webhooks/deliveries/:delivery/redeliver',
    minRole: 'tenant_owner',
    scope: 'tenant',
    call: async (h) => ({
      url: `/api/v1/tenants/${h.a.slug}/webhooks/deliveries/${await aDelivery(h, 'tenant')}/redeliver`,
    }),
  },
  {
    method: 'POST',
    url: '/api/v1/webhooks',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/webhooks', payload: { url: HOOK_URL, events: ['*'] } }),
  },
  {
    method: 'GET',
    url: '/api/v1/webhooks',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/webhooks' }),
  },
  {
    method: 'GET',
    url: '/api/v1/jobs',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/jobs' }),
  },
  {
    method: 'POST',
    url: '/api/v1/jobs/resources/:kind/:id/retry',
    minRole: 'platform_admin',
    scope: 'platform',
    call: async (h) => ({ url: await aFailedResource(h), payload: {} }),
  },
  {
    method: 'POST',
    url: '/api/v1/jobs/inbox/:id/retry',
    minRole: 'platform_admin',
    scope: 'platform',
    call: async (h) => ({ url: await aFailingEvent(h), payload: {} }),
  },
  {
    method: 'GET',
    url: '/api/v1/hosts',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/hosts' }),
  },
  {
    method: 'POST',
    url: '/api/v1/hosts/:host/drain',
    minRole: 'platform_admin',
    scope: 'platform',
    call: async (h) => ({ url: `/api/v1/hosts/${await aPlacementHost(h)}/drain`, payload: {} }),
  },
  {
    method: 'POST',
    url: '/api/v1/hosts/:host/undrain',
    minRole: 'platform_admin',
    scope: 'platform',
    call: async (h) => ({ url: `/api/v1/hosts/${await aPlacementHost(h)}/undrain`, payload: {} }),
  },
  {
    method: 'GET',
    url: '/api/v1/certificates',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/certificates' }),
  },
  {
    method: 'POST',
    url: '/api/v1/certificates/:name/renew',
    minRole: 'platform_admin',
    scope: 'platform',
    call: async (h) => ({ url: await aCertificate(h), payload: {} }),
  },
  {
    method: 'GET',
    url: '/api/v1/audit/verify',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/audit/verify' }),
  },
  {
    method: 'GET',
    url: '/api/v1/usage',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/usage?month=2031-05&limit=5' }),
  },
  {
    method: 'DELETE',
    url: '/api/v1/webhooks/:endpoint',
    minRole: 'platform_admin',
    scope: 'platform',
    call: async (h) => ({ url: `/api/v1/webhooks/${await anEndpoint(h, 'operator')}` }),
  },
  {
    method: 'GET',
    url: '/api/v1/webhooks/deliveries',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/webhooks/deliveries' }),
  },
  {
    method: 'POST',
    url: '/api/v1/webhooks/deliveries/:delivery/redeliver',
    minRole: 'platform_admin',
    scope: 'platform',
    call: async (h) => ({ url: `/api/v1/webhooks/deliveries/${await aDelivery(h, 'operator')}/redeliver` }),
  },
  {
    method: 'POST',
    url: '/api/v1/platform/users/:userId/totp/reset',
    minRole: 'platform_admin',
    scope: 'platform',
    call: (h) => ({ url: `/api/v1/platform/users/${h.a.member.id}/totp/reset` }),
    // The positive control ends the target's logins: aim it at a user no other case needs.
    allowed: async (h, s) => {
      const res = await h.api.inject({
        method: 'POST',
        url: `/api/v1/tenants/${h.a.slug}/users`,
        headers: h.bearer(h.a.owner.token),
        payload: { email: `reset${s.next()}@alpha.test`, password: PASSWORD, role: 'tenant_member' },
      });
      const id = res.json<{ id: string }>().id;
      return { token: h.admin.token, call: { url: `/api/v1/platform/users/${id}/totp/reset` } };
    },
  },
  {
    method: 'POST',
    url: '/api/v1/platform/api-keys',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/platform/api-keys', payload: { name: 'suite' } }),
  },
  {
    method: 'GET',
    url: '/api/v1/platform/api-keys',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/platform/api-keys' }),
  },
  {
    method: 'DELETE',
    url: '/api/v1/platform/api-keys/:keyId',
    minRole: 'platform_admin',
    scope: 'platform',
    call: async (h) => {
      const res = await h.api.inject({
        method: 'POST',
        url: '/api/v1/platform/api-keys',
        headers: h.bearer(h.admin.token),
        payload: { name: 'suite revoke' },
      });
      if (res.statusCode !== 201) throw new Error(`platform key: ${res.body}`);
      return { url: `/api/v1/platform/api-keys/${res.json<{ id: string }>().id}` };
    },
  },
  {
    method: 'GET',
    url: '/api/v1/platform/users',
    minRole: 'platform_admin',
    scope: 'platform',
    call: (h) => ({ url: `/api/v1/platform/users?tenant=${h.a.slug}` }),
  },
  {
    method: 'GET',
    url: '/api/v1/platform/catalog',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/platform/catalog' }),
  },
  {
    method: 'GET',
    url: '/api/v1/platform/backups',
    minRole: 'platform_admin',
    scope: 'platform',
    call: (h) => ({ url: `/api/v1/platform/backups?tenant=${h.a.slug}` }),
  },
  {
    method: 'GET',
    url: '/api/v1/platform/config',
    minRole: 'platform_admin',
    scope: 'platform',
    call: () => ({ url: '/api/v1/platform/config' }),
  },
];

export const crossTenantSuccesses: string[] = [];

function defaultAllowed(h: Harness, role: Role): string {
  if (role === 'platform_admin') return h.admin.token;
  return role === 'tenant_owner' ? h.a.owner.token : h.a.member.token;
}

/** Register the suite for `cases`; the harness and its two tenants are made once per file. */
export function runSecuritySuite(cases: RouteCase[] = ROUTE_CASES): { harness: () => Harness } {
  let h: Harness;
  let s: SecurityContext;
  beforeAll(async () => {
    // A local ACME CA, so that "renew now" has a certificate to renew.
    acme = await startAcmeDns();
    h = await createHarness({ env: acme.env });
    s = await prepare(h);
  });
  afterAll(async () => {
    await h.close();
    await acme?.close();
  });

  for (const rc of cases) {
    describe(`${rc.method} ${rc.url}`, () => {
      const expect401 = async (token: string | undefined) => {
        const res = await send(h, rc.method, await rc.call(h, s), token);
        expect(res.statusCode, res.body).toBe(401);
        expect(res.json<{ error: { code: string } }>().error.code).toBe('unauthenticated');
      };
      it('refuses a request without credentials (401)', () => expect401(undefined));
      it('refuses an expired access token (401)', () => expect401(s.expired));
      it('refuses a forged access token (401)', () => expect401(s.forged));
      it('refuses a revoked API key (401)', () => expect401(s.revokedKey));

      if (rc.scope !== 'self') {
        it("refuses tenant B's owner token and API key on tenant A", async () => {
          for (const token of [h.b.owner.token, s.bOwnerKey]) {
            const call = rc.crossTenant ? await rc.crossTenant(h, s) : await rc.call(h, s);
            const res = await send(h, rc.method, call, token);
            if (res.statusCode < 400) crossTenantSuccesses.push(`${rc.method} ${rc.url}`);
            expect([403, 404], res.body).toContain(res.statusCode);
            // Nothing of A's comes back (the id the caller sent may be echoed in "not found").
            expect(res.body).not.toContain(h.a.owner.email);
            expect(res.body).not.toContain('alpha Inc.');
          }
        });
      }
      if (rc.minRole === 'tenant_owner') {
        it('refuses a member (token and API key) where an owner is needed (403)', async () => {
          for (const token of [h.a.member.token, s.memberKey]) {
            const res = await send(h, rc.method, await rc.call(h, s), token);
            expect(res.statusCode, res.body).toBe(403);
          }
        });
      }
      if (rc.minRole === 'platform_admin') {
        it('refuses a tenant owner where a platform admin is needed (403)', async () => {
          const res = await send(h, rc.method, await rc.call(h, s), h.a.owner.token);
          expect(res.statusCode, res.body).toBe(403);
        });
      }
      it('serves the allowed caller (positive control)', async () => {
        const allowed = rc.allowed ? await rc.allowed(h, s) : { token: defaultAllowed(h, rc.minRole) };
        const res = await send(h, rc.method, allowed.call ?? (await rc.call(h, s)), allowed.token);
        expect(res.statusCode, res.body).toBeLessThan(400);
      });
    });
  }
  return { harness: () => h };
}
