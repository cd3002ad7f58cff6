import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Secret, TOTP } from 'otpauth';
import { assembleApi } from '../../src/platform/api.ts';
import type { ApiServer } from '../../src/api/server.ts';
import { loadConfig, type Config } from '../../src/config/load.ts';
import { newId } from '../../src/core/ids.ts';
import type { MasterDatabase } from '../../src/db/connect.ts';
import type { Role } from '../../src/core/identity.ts';
import { generateMasterKey } from '../../src/identity/secrets.ts';
import { hashPassword } from '../../src/identity/passwords.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createMetrics } from '../../src/observability/metrics.ts';
import { createTestDatabase, type TestDatabase } from './db.ts';

/**
 * The API test harness: a fresh database, the real API, and always two
 * tenants (A and B), each with an owner and a member, plus a platform admin
 * enrolled in TOTP (through the real enrolment routes). Every caller logs in
 * through POST /api/v1/auth/login.
 */
export const PASSWORD = 'correct horse battery staple 42';

export interface TenantFixture {
  id: string;
  slug: string;
  owner: { id: string; email: string; token: string };
  member: { id: string; email: string; token: string };
}

export interface Harness {
  api: ApiServer;
  db: TestDatabase;
  config: Config;
  dataDir: string;
  a: TenantFixture;
  b: TenantFixture;
  admin: { id: string; email: string; token: string; totpSecret: string };
  bearer(token: string): { authorization: string };
  login(
    email: string,
    extra?: Record<string, unknown>,
  ): Promise<{ accessToken: string; refreshToken: string }>;
  /** A TOTP code for `secret` at now + offsetSteps × 30 s. */
  code(secret: string, offsetSteps?: number): string;
  /** One more active tenant (`company` defaults to "<slug> Ltd.") with an owner, signed in. */
  ownedTenant(
    slug: string,
    company?: string,
  ): Promise<{ id: string; slug: string; email: string; token: string }>;
  close(): Promise<void>;
}

export function totpCode(secret: string, offsetSteps = 0): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: Date.now() + offsetSteps * 30_000 });
}

/** A TOTP code for `secret` at the 30-s time step `step` (a Unix time divided by 30 s). */
export function totpCodeAtStep(secret: string, step: number): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: step * 30_000 });
}

export async function createHarness(
  options: {
    env?: Record<string, string>;
    limits?: Record<string, number>;
    recoveryLimits?: { perIp?: number; perAddress?: number };
  } = {},
): Promise<Harness> {
  const db = await createTestDatabase({ max: 10 });
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-identity-'));
  const config = loadConfig({
    AIQSO_DATA_DIR: dataDir,
    AIQSO_MASTER_KEY: generateMasterKey(),
    AIQSO_LOG_LEVEL: 'silent',
    ...options.env,
  });
  const database: MasterDatabase = { ...db, mode: 'external' };
  const { api } = await assembleApi(config, createLogger('silent'), database, createMetrics(), {
    identity: {
      limits: { accountPoints: 1000, ipPoints: 10_000, pairPoints: 1000, ...options.limits },
      rateLimitNamespace: `aiqso-test-${db.name}`,
      recoveryLimits: options.recoveryLimits,
    },
  });
  const hash = await hashPassword(PASSWORD);

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  async function login(email: string, extra: Record<string, unknown> = {}) {
    const res = await api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email, password: PASSWORD, ...extra },
    });
    if (res.statusCode !== 200) throw new Error(`login ${email}: ${res.statusCode} ${res.body}`);
    return res.json<{ accessToken: string; refreshToken: string }>();
  }
  async function user(role: Role, tenantId: string | null, email: string) {
    const id = newId('user');
    await db.db
      .insertInto('users')
      .values({ id, email, role, tenant_id: tenantId, password_hash: hash })
      .execute();
    return id;
  }
  async function tenant(slug: string): Promise<TenantFixture> {
    const id = newId('tenant');
    await db.db
      .insertInto('tenants')
      .values({ id, slug, company: `${slug} Inc.`, status: 'active' })
      .execute();
    const ownerEmail = `owner@${slug}.test`;
    const memberEmail = `member@${slug}.test`;
    const ownerId = await user('tenant_owner', id, ownerEmail);
    const memberId = await user('tenant_member', id, memberEmail);
    return {
      id,
      slug,
      owner: { id: ownerId, email: ownerEmail, token: (await login(ownerEmail)).accessToken },
      member: { id: memberId, email: memberEmail, token: (await login(memberEmail)).accessToken },
    };
  }

  const a = await tenant('alpha');
  const b = await tenant('bravo');
  const adminEmail = 'admin@platform.test';
  const adminId = await user('platform_admin', null, adminEmail);
  const refused = await api.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email: adminEmail, password: PASSWORD },
  });
  const enrolmentToken = refused.json<{ error: { details: { enrolmentToken: string } } }>().error.details
    .enrolmentToken;
  const enrol = await api.inject({
    method: 'POST',
    url: '/api/v1/auth/totp/enrol',
    headers: bearer(enrolmentToken),
  });
  const totpSecret = enrol.json<{ secret: string }>().secret;
  const confirm = await api.inject({
    method: 'POST',
    url: '/api/v1/auth/totp/confirm',
    headers: bearer(enrolmentToken),
    payload: { code: totpCode(totpSecret) },
  });
  if (confirm.statusCode !== 200) throw new Error(`admin TOTP confirm: ${confirm.body}`);
  // The confirming code's time step is spent; the next step's code is still inside the window.
  const adminToken = (await login(adminEmail, { totp: totpCode(totpSecret, 1) })).accessToken;

  return {
    api,
    db,
    config,
    dataDir,
    a,
    b,
    admin: { id: adminId, email: adminEmail, token: adminToken, totpSecret },
    bearer,
    login,
    code: totpCode,
    async ownedTenant(slug, company = `${slug} Ltd.`) {
      const id = newId('tenant');
      await db.db.insertInto('tenants').values({ id, slug, company, status: 'active' }).execute();
      const email = `owner@${slug}.test`;
      await user('tenant_owner', id, email);
      return { id, slug, email, token: (await login(email)).accessToken };
    },
    async close() {
      await api.close();
      await db.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
