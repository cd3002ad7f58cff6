import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';

let h: Harness;
let secret: string;
let recoveryCodes: string[];
const email = 'twofa@alpha.test';

beforeAll(async () => {
  h = await createHarness();
  const created = await h.api.inject({
    method: 'POST',
    url: `/api/v1/tenants/${h.a.slug}/users`,
    headers: h.bearer(h.a.owner.token),
    payload: { email, password: PASSWORD, role: 'tenant_member' },
  });
  expect(created.statusCode).toBe(201);
  const token = (await h.login(email)).accessToken;
  const enrol = await h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/totp/enrol',
    headers: h.bearer(token),
  });
  secret = enrol.json<{ secret: string; otpauthUrl: string }>().secret;
  expect(enrol.json<{ otpauthUrl: string }>().otpauthUrl).toMatch(/^otpauth:\/\/totp\//);
  const confirm = await h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/totp/confirm',
    headers: h.bearer(token),
    payload: { code: h.code(secret) },
  });
  expect(confirm.statusCode, confirm.body).toBe(200);
  recoveryCodes = confirm.json<{ recoveryCodes: string[] }>().recoveryCodes;
});
afterAll(() => h.close());

const login = (extra: Record<string, unknown>) =>
  h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email, password: PASSWORD, ...extra },
  });

describe('TOTP second factor', () => {
  it('asks an enrolled tenant user for a code', async () => {
    const res = await login({});
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ error: { details: { reason: 'totp_required' } } });
    expect((await login({ totp: '123456' })).statusCode).toBe(401);
  });

  it('accepts one valid code exactly once out of 20 parallel submissions', async () => {
    const code = h.code(secret, 1);
    const results = await Promise.all(Array.from({ length: 20 }, () => login({ totp: code })));
    const statuses = results.map((r) => r.statusCode);
    process.stdout.write(
      `20 parallel TOTP submissions: ${statuses.filter((s) => s === 200).length} accepted\n`,
    );
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 401)).toHaveLength(19);
  });

  it('spends a recovery code once, even under 20 parallel submissions', async () => {
    expect(recoveryCodes).toHaveLength(10);
    const code = recoveryCodes[0]!;
    const results = await Promise.all(
      Array.from({ length: 20 }, () => login({ recoveryCode: code.toUpperCase() })),
    );
    expect(results.filter((r) => r.statusCode === 200)).toHaveLength(1);
    expect((await login({ recoveryCode: recoveryCodes[1] })).statusCode).toBe(200);
    expect((await login({ recoveryCode: recoveryCodes[1] })).statusCode).toBe(401);
  });

  it('stores the TOTP secret sealed and recovery codes hashed', async () => {
    const row = await h.db.db
      .selectFrom('user_totp')
      .selectAll()
      .innerJoin('users', 'users.id', 'user_totp.user_id')
      .where('email', '=', email)
      .executeTakeFirstOrThrow();
    expect(row.secret_enc).not.toContain(secret);
    expect(row.secret_enc).toMatch(/^aes256gcm:/);
    const hashes = await h.db.db
      .selectFrom('recovery_codes')
      .select('code_hash')
      .where('user_id', '=', row.user_id)
      .execute();
    expect(hashes.map((r) => r.code_hash)).not.toContain(recoveryCodes[2]);
  });

  it('refuses a platform admin without TOTP and hands out only an enrolment token', async () => {
    await h.db.db
      .insertInto('users')
      .values({
        id: 'usr_01jx0000000000000000000000',
        email: 'admin2@platform.test',
        role: 'platform_admin',
        tenant_id: null,
        password_hash: (
          await h.db.db
            .selectFrom('users')
            .select('password_hash')
            .where('email', '=', email)
            .executeTakeFirstOrThrow()
        ).password_hash,
      })
      .execute();
    const res = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: 'admin2@platform.test', password: PASSWORD },
    });
    expect(res.statusCode).toBe(403);
    const details = res.json<{ error: { details: { reason: string; enrolmentToken: string } } }>().error
      .details;
    expect(details.reason).toBe('totp_enrolment_required');
    // The enrolment token opens nothing but enrolment.
    const other = await h.api.inject({
      method: 'GET',
      url: '/api/v1/audit',
      headers: h.bearer(details.enrolmentToken),
    });
    expect(other.statusCode).toBe(401);
    const enrol = await h.api.inject({
      method: 'POST',
      url: '/api/v1/auth/totp/enrol',
      headers: h.bearer(details.enrolmentToken),
    });
    expect(enrol.statusCode).toBe(200);
  });
});
