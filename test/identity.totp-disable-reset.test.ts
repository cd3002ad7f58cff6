import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, PASSWORD, type Harness } from './support/identity.ts';

/**
 * Turning TOTP off: a tenant user with a current code or a recovery code
 * (each spent, so never replayed); a platform admin for someone else (a lost
 * phone), which ends that user's logins and makes an admin enrol again before
 * logging in. Every attempt is audited.
 */
let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(() => h.close());

let n = 0;
async function enrolledUser(options: { admin?: boolean } = {}) {
  const email = `tfa${++n}@${options.admin ? 'platform' : 'alpha'}.test`;
  if (options.admin) {
    const hash = await h.db.db
      .selectFrom('users')
      .select('password_hash')
      .where('id', '=', h.admin.id)
      .executeTakeFirstOrThrow();
    await h.db.db
      .insertInto('users')
      .values({
        id: `usr_01jx00000000000000000000${String(n).padStart(2, '0')}`,
        email,
        role: 'platform_admin',
        tenant_id: null,
        password_hash: hash.password_hash,
      })
      .execute();
  } else {
    const created = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/users`,
      headers: h.bearer(h.a.owner.token),
      payload: { email, password: PASSWORD, role: 'tenant_member' },
    });
    expect(created.statusCode).toBe(201);
  }
  const id = (
    await h.db.db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirstOrThrow()
  ).id;
  const first = await h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email, password: PASSWORD },
  });
  const token = options.admin
    ? first.json<{ error: { details: { enrolmentToken: string } } }>().error.details.enrolmentToken
    : first.json<{ accessToken: string }>().accessToken;
  const enrol = await h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/totp/enrol',
    headers: h.bearer(token),
  });
  const secret = enrol.json<{ secret: string }>().secret;
  const confirm = await h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/totp/confirm',
    headers: h.bearer(token),
    payload: { code: h.code(secret) },
  });
  expect(confirm.statusCode, confirm.body).toBe(200);
  return {
    id,
    email,
    token,
    secret,
    recoveryCodes: confirm.json<{ recoveryCodes: string[] }>().recoveryCodes,
  };
}

const disable = (token: string, payload: Record<string, unknown>) =>
  h.api.inject({ method: 'POST', url: '/api/v1/auth/totp/disable', headers: h.bearer(token), payload });
const reset = (userId: string, token = h.admin.token) =>
  h.api.inject({
    method: 'POST',
    url: `/api/v1/platform/users/${userId}/totp/reset`,
    headers: h.bearer(token),
  });
const loginAs = (email: string, extra: Record<string, unknown> = {}) =>
  h.api.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { email, password: PASSWORD, ...extra },
  });
const enrolled = async (userId: string) =>
  (await h.db.db.selectFrom('user_totp').select('user_id').where('user_id', '=', userId).execute()).length >
  0;
const audited = (action: string, targetId: string) =>
  h.db.db
    .selectFrom('audit_log')
    .select(['result', 'actor_id', 'tenant_id'])
    .where('action', '=', action)
    .where('target_id', '=', targetId)
    .orderBy('id')
    .execute();

describe('turning TOTP off yourself', () => {
  it('needs a proof: none is 400, a wrong code 401, and the factor stays', async () => {
    const u = await enrolledUser();
    expect((await disable(u.token, {})).statusCode).toBe(400);
    const wrong = await disable(u.token, { code: '000000' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json()).toMatchObject({ error: { message: 'the code is wrong, expired or already used' } });
    expect((await disable(u.token, { recoveryCode: 'aaaa-bbbb-cccc-dddd' })).statusCode).toBe(401);
    expect(await enrolled(u.id)).toBe(true);
    expect((await loginAs(u.email)).statusCode).toBe(401);
  });

  it('turns off with a current code; login then asks for none; audited', async () => {
    const u = await enrolledUser();
    const res = await disable(u.token, { code: h.code(u.secret, 1) });
    expect(res.statusCode, res.body).toBe(204);
    expect(await enrolled(u.id)).toBe(false);
    expect(
      await h.db.db.selectFrom('recovery_codes').select('code_hash').where('user_id', '=', u.id).execute(),
    ).toEqual([]);
    expect((await loginAs(u.email)).statusCode).toBe(200);
    expect(await audited('auth.totp.disable', u.id)).toMatchObject([
      { result: 'success', actor_id: u.id, tenant_id: h.a.id },
    ]);
    // Nothing left to turn off.
    expect((await disable(u.token, { code: h.code(u.secret) })).statusCode).toBe(409);
  });

  it('refuses a code already spent at login (replay)', async () => {
    const u = await enrolledUser();
    const code = h.code(u.secret, 1);
    expect((await loginAs(u.email, { totp: code })).statusCode).toBe(200);
    const replay = await disable(u.token, { code });
    expect(replay.statusCode).toBe(401);
    expect(await enrolled(u.id)).toBe(true);
    expect((await audited('auth.totp.disable', u.id)).map((a) => a.result)).toEqual(['denied']);
  });

  it('turns off with a recovery code, which is spent', async () => {
    const u = await enrolledUser();
    const used = u.recoveryCodes[0]!;
    expect((await loginAs(u.email, { recoveryCode: used })).statusCode).toBe(200);
    expect((await disable(u.token, { recoveryCode: used })).statusCode).toBe(401);
    expect((await disable(u.token, { recoveryCode: u.recoveryCodes[1] })).statusCode).toBe(204);
    expect(await enrolled(u.id)).toBe(false);
  });

  it('is refused to platform admins, who must keep it', async () => {
    const res = await disable(h.admin.token, { code: h.code(h.admin.totpSecret, -1) });
    expect(res.statusCode).toBe(403);
    expect(await enrolled(h.admin.id)).toBe(true);
  });
});

describe("an admin resetting someone's TOTP", () => {
  it('removes a tenant user’s factor and ends their logins; audited under their tenant', async () => {
    const u = await enrolledUser();
    const session = (await loginAs(u.email, { totp: h.code(u.secret, 1) })).json<{ accessToken: string }>();
    const res = await reset(u.id);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ userId: u.id, wasEnrolled: true });
    expect(res.json<{ sessionsEnded: number }>().sessionsEnded).toBeGreaterThanOrEqual(1);
    expect(await enrolled(u.id)).toBe(false);
    const old = await h.api.inject({
      method: 'GET',
      url: '/api/v1/auth/me',
      headers: h.bearer(session.accessToken),
    });
    expect(old.statusCode).toBe(401);
    expect((await loginAs(u.email)).statusCode).toBe(200);
    expect(await audited('platform.user.totp.reset', u.id)).toMatchObject([
      { result: 'success', actor_id: h.admin.id, tenant_id: h.a.id },
    ]);
    // Idempotent: nothing enrolled any more.
    expect((await reset(u.id)).json()).toMatchObject({ wasEnrolled: false });
  });

  it('makes another admin enrol again before their next login', async () => {
    const other = await enrolledUser({ admin: true });
    expect((await loginAs(other.email, { totp: h.code(other.secret, 1) })).statusCode).toBe(200);
    expect((await reset(other.id)).statusCode).toBe(200);
    const next = await loginAs(other.email);
    expect(next.statusCode).toBe(403);
    expect(next.json()).toMatchObject({ error: { details: { reason: 'totp_enrolment_required' } } });
  });

  it('refuses your own reset, an unknown user, and anyone but an admin', async () => {
    expect((await reset(h.admin.id)).statusCode).toBe(403);
    expect(await enrolled(h.admin.id)).toBe(true);
    const missing = await reset('usr_01jx0000000000000000000099');
    expect(missing.statusCode).toBe(404);
    expect((await reset(h.a.member.id, h.a.owner.token)).statusCode).toBe(403);
    expect((await audited('platform.user.totp.reset', h.admin.id)).map((a) => a.result)).toEqual(['denied']);
  });
});
