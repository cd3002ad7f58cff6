import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createForge, type Forge } from './support/forge.ts';
import { createHarness, type Harness } from './support/identity.ts';

/**
 * Forged and mangled access tokens, all aimed at GET /api/v1/auth/me. The
 * control (a correctly built token from the real key) must pass, or the
 * rejections would prove nothing.
 */
let h: Harness;
let f: Forge;
let sid: string;

beforeAll(async () => {
  h = await createHarness();
  f = await createForge(h);
  const row = await h.db.db
    .selectFrom('sessions')
    .select('id')
    .where('user_id', '=', h.a.owner.id)
    .where('revoked_at', 'is', null)
    .executeTakeFirstOrThrow();
  sid = row.id;
});
afterAll(() => h.close());

const me = (token: string) =>
  h.api.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { authorization: `Bearer ${token}` } });
const owner = () => ({ sub: h.a.owner.id, role: 'tenant_owner', tid: h.a.id, sid });
const now = () => Math.floor(Date.now() / 1000);

const variants: [string, () => Promise<string> | string][] = [
  ['alg none, no signature', () => f.raw({ alg: 'none', typ: 'at+jwt' }, f.claims(owner()))],
  ['alg none with the real kid', () => f.raw({ alg: 'none', kid: f.kid, typ: 'at+jwt' }, f.claims(owner()))],
  ['alg "None" (case games)', () => f.raw({ alg: 'None', kid: f.kid, typ: 'at+jwt' }, f.claims(owner()))],
  [
    'HS256 signed with the public key (x coordinate) as HMAC secret',
    () =>
      f.hs256(
        { alg: 'HS256', kid: f.kid, typ: 'at+jwt' },
        f.claims(owner()),
        Buffer.from(String(f.publicJwk.x), 'base64url'),
      ),
  ],
  [
    'HS256 signed with the public key PEM as HMAC secret',
    async () => f.hs256({ alg: 'HS256', kid: f.kid, typ: 'at+jwt' }, f.claims(owner()), await f.publicPem()),
  ],
  [
    'HS256 signed with the public JWK JSON as HMAC secret',
    () =>
      f.hs256({ alg: 'HS256', kid: f.kid, typ: 'at+jwt' }, f.claims(owner()), JSON.stringify(f.publicJwk)),
  ],
  ['right kid, attacker Ed25519 key', () => f.attacker(f.claims(owner()))],
  ['unknown kid, attacker key', () => f.attacker(f.claims(owner()), { kid: 'attacker-kid' })],
  ['unknown kid, real key', () => f.real(f.claims(owner()), { kid: 'no-such-kid' })],
  ['no kid, real key', () => f.real(f.claims(owner()), { kid: undefined })],
  [
    'expired (real key)',
    () => f.real(f.claims(owner(), { iat: now() - 7200, nbf: now() - 7200, exp: now() - 3600 })),
  ],
  [
    'not yet valid: nbf in an hour (real key)',
    () => f.real(f.claims(owner(), { nbf: now() + 3600, exp: now() + 7200 })),
  ],
  ['wrong audience (real key)', () => f.real(f.claims(owner(), { aud: 'https://evil.example/api' }))],
  ['wrong issuer (real key)', () => f.real(f.claims(owner(), { iss: 'https://evil.example' }))],
  ['no exp (real key)', () => f.real({ ...f.claims(owner()), exp: undefined })],
  ['no nbf (real key)', () => f.real({ ...f.claims(owner()), nbf: undefined })],
  [
    'enrolment token type where an access token is needed',
    () => f.real(f.claims(owner()), { typ: 'totp-enrol+jwt' }),
  ],
  [
    'unknown crit header (real key)',
    () => f.real(f.claims(owner()), { crit: ['x-evil'], 'x-evil': true }, { 'x-evil': true }),
  ],
  ['role outside the set (real key)', () => f.real(f.claims({ ...owner(), role: 'god' }))],
  [
    'session that does not exist (real key)',
    () => f.real(f.claims({ ...owner(), sid: 'ses_00000000000000000000000000' })),
  ],
  [
    'role escalated to platform_admin with a valid signature but a tenant session',
    () => f.real(f.claims({ ...owner(), role: 'platform_admin', tid: null })),
  ],
  [
    'tampered payload: role changed, signature kept',
    async () => {
      const good = await f.real(f.claims(owner()));
      const [header, , signature] = good.split('.');
      const payload = Buffer.from(
        JSON.stringify(f.claims({ ...owner(), role: 'platform_admin', tid: null })),
      ).toString('base64url');
      return `${header}.${payload}.${signature}`;
    },
  ],
  [
    'tampered payload: tenant changed, signature kept',
    async () => {
      const good = await f.real(f.claims(owner()));
      const [header, , signature] = good.split('.');
      const payload = Buffer.from(JSON.stringify(f.claims({ ...owner(), tid: h.b.id }))).toString(
        'base64url',
      );
      return `${header}.${payload}.${signature}`;
    },
  ],
  ['truncated signature', async () => (await f.real(f.claims(owner()))).slice(0, -10)],
  ['signature removed', async () => `${(await f.real(f.claims(owner()))).split('.').slice(0, 2).join('.')}.`],
  ['two segments only', async () => (await f.real(f.claims(owner()))).split('.').slice(0, 2).join('.')],
  ['header only', async () => (await f.real(f.claims(owner()))).split('.')[0]!],
  ['garbage', () => 'not.a.jwt'],
  [
    'embedded jwk header carrying the attacker key',
    async () => {
      const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
      return new SignJWT(f.claims(owner()))
        .setProtectedHeader({ alg: 'EdDSA', kid: f.kid, typ: 'at+jwt', jwk: await exportJWK(publicKey) })
        .sign(privateKey);
    },
  ],
  [
    'ES256 from an attacker key under the real kid',
    async () => {
      const { privateKey } = await generateKeyPair('ES256');
      return new SignJWT(f.claims(owner()))
        .setProtectedHeader({ alg: 'ES256', kid: f.kid, typ: 'at+jwt' })
        .sign(privateKey);
    },
  ],
];

describe('forged access tokens', () => {
  it('accepts the control: a well-formed token from the real key', async () => {
    const res = await me(await f.real(f.claims(owner())));
    expect(res.statusCode, res.body).toBe(200);
  });

  it(`has at least 20 variants (${variants.length})`, () => {
    expect(variants.length).toBeGreaterThanOrEqual(20);
  });

  it.each(variants)('rejects: %s', async (_name, make) => {
    const res = await me(await make());
    expect(res.statusCode, res.body).toBe(401);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('unauthenticated');
  });

  it('rejects a real token after its signing key was retired long ago, and keeps a just-rotated one valid', async () => {
    const before = await f.real(f.claims(owner()));
    const rotated = await h.api.inject({
      method: 'GET',
      url: '/api/v1/auth/me',
      headers: { authorization: `Bearer ${before}` },
    });
    expect(rotated.statusCode).toBe(200);
    await h.db.db
      .updateTable('signing_keys')
      .set({ retired_at: new Date(Date.now() - 24 * 3600 * 1000) })
      .execute();
    // A fresh process (new API) loads keys anew and must not trust the long-retired key.
    const { createTokenIssuer } = await import('../src/identity/tokens.ts');
    const { loadSecretBox } = await import('../src/identity/master-key.ts');
    const issuer = createTokenIssuer({
      db: h.db.db,
      box: () => loadSecretBox({ configured: h.config.masterKey, dataDir: h.dataDir }),
      issuer: h.config.publicUrl,
      audience: `${h.config.publicUrl}/api`,
    });
    await expect(issuer.verify('access', before)).rejects.toMatchObject({ code: 'unauthenticated' });
    const fresh = await issuer.sign('access', { sub: h.a.owner.id, role: 'tenant_owner', tid: h.a.id, sid });
    await expect(issuer.verify('access', fresh.token)).resolves.toMatchObject({ sub: h.a.owner.id });
  });
});
