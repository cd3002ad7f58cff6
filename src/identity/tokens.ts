import { randomBytes } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { Database } from '../db/database.ts';
import type { Role } from '../core/identity.ts';
import { DomainError } from '../core/errors.ts';
import type { SecretBox } from './secrets.ts';

/**
 * Access tokens: short-lived JWTs signed with Ed25519 (EdDSA, the only
 * algorithm accepted), carrying `iss`, `aud`, `iat`, `nbf`, `exp` and the key
 * id. Signing keys live in `signing_keys`, the private half sealed with the
 * master key; rotation adds a key and retires the old ones, which keep
 * verifying until every token they signed has expired.
 */
/**
 * `totp_enrol`: a platform admin's password was right but two-factor is not set
 * up yet (enrolment only); `totp_pending`: the password was right and a
 * second factor is still due (POST /api/v1/auth/login/second-factor).
 */
export type TokenUse = 'access' | 'totp_enrol' | 'totp_pending';

export interface TokenClaims {
  sub: string;
  role: Role;
  tid: string | null;
  sid?: string;
}

export interface TokenIssuer {
  sign(use: TokenUse, claims: TokenClaims): Promise<{ token: string; expiresIn: number }>;
  verify(use: TokenUse, token: string): Promise<TokenClaims>;
  /**
   * Sign a token for another audience with the same keys (the edge session,
   * src/edge/auth/edge-token.ts): its `typ`, audience, subject, lifetime and
   * claims are the caller's; `iss`, `iat`, `nbf`, `exp` and `kid` are set here.
   */
  signFor(options: {
    typ: string;
    audience: string;
    subject: string;
    ttlSeconds: number;
    claims: Record<string, unknown>;
  }): Promise<{ token: string; expiresIn: number }>;
  /** Add a new signing key and retire the others; returns the new kid. */
  rotate(): Promise<string>;
}

export const ACCESS_TTL_SECONDS = 10 * 60;
const ENROL_TTL_SECONDS = 10 * 60;
const ALG = 'EdDSA';
const TYP: Record<TokenUse, string> = {
  access: 'at+jwt',
  totp_enrol: 'totp-enrol+jwt',
  totp_pending: 'totp-pending+jwt',
};
const RELOAD_AFTER_MS = 5_000;
const KEY_REFRESH_MS = 60_000;

interface LoadedKey {
  kid: string;
  publicKey: CryptoKey;
  privateKey?: CryptoKey;
  createdAt: Date;
  retiredAt: Date | null;
}

const context = (kid: string) => `signing_keys:${kid}`;

export async function addSigningKey(db: Database, box: SecretBox): Promise<string> {
  const { publicKey, privateKey } = await generateKeyPair(ALG, { crv: 'Ed25519', extractable: true });
  const kid = randomBytes(9).toString('base64url');
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: ALG };
  const privateJwk = await exportJWK(privateKey);
  await db.transaction().execute(async (trx) => {
    await trx
      .updateTable('signing_keys')
      .set({ retired_at: new Date() })
      .where('retired_at', 'is', null)
      .execute();
    await trx
      .insertInto('signing_keys')
      .values({
        kid,
        alg: ALG,
        public_jwk: JSON.stringify(publicJwk),
        private_enc: box.seal(JSON.stringify(privateJwk), context(kid)),
      })
      .execute();
  });
  return kid;
}

export function createTokenIssuer(options: {
  db: Database;
  box: () => Promise<SecretBox>;
  issuer: string;
  audience: string;
  accessTtlSeconds?: number;
}): TokenIssuer {
  const accessTtl = options.accessTtlSeconds ?? ACCESS_TTL_SECONDS;
  let keys = new Map<string, LoadedKey>();
  let loadedAt = 0;
  let loading: Promise<void> | undefined;

  async function load(): Promise<void> {
    const box = await options.box();
    // Retired keys verify for as long as a token they signed can live.
    const oldest = new Date(Date.now() - Math.max(accessTtl, ENROL_TTL_SECONDS) * 1000 - 60_000);
    const rows = await options.db
      .selectFrom('signing_keys')
      .selectAll()
      .where((eb) => eb.or([eb('retired_at', 'is', null), eb('retired_at', '>', oldest)]))
      .execute();
    const next = new Map<string, LoadedKey>();
    for (const row of rows) {
      const loaded: LoadedKey = {
        kid: row.kid,
        publicKey: (await importJWK(row.public_jwk as JWK, ALG)) as CryptoKey,
        createdAt: row.created_at,
        retiredAt: row.retired_at,
      };
      if (!row.retired_at) {
        const jwk = JSON.parse(box.open(row.private_enc, context(row.kid))) as JWK;
        loaded.privateKey = (await importJWK(jwk, ALG)) as CryptoKey;
      }
      next.set(row.kid, loaded);
    }
    keys = next;
    loadedAt = Date.now();
  }

  const reload = async () => {
    loading ??= load().finally(() => (loading = undefined));
    await loading;
  };

  async function signingKey(): Promise<LoadedKey> {
    // Reloading now and then picks up a rotation made by another process.
    if (Date.now() - loadedAt > KEY_REFRESH_MS) await reload();
    let active = [...keys.values()].filter((k) => k.privateKey && !k.retiredAt);
    if (active.length === 0) {
      await addSigningKey(options.db, await options.box());
      await reload();
      active = [...keys.values()].filter((k) => k.privateKey && !k.retiredAt);
    }
    return active.sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())[0]!;
  }

  async function verificationKey(kid: unknown): Promise<CryptoKey> {
    if (typeof kid !== 'string') throw new Error('no kid');
    if (!keys.has(kid) && Date.now() - loadedAt > RELOAD_AFTER_MS) await reload();
    const key = keys.get(kid);
    if (!key) throw new Error('unknown kid');
    return key.publicKey;
  }

  return {
    async sign(use, claims) {
      const key = await signingKey();
      const ttl = use === 'access' ? accessTtl : ENROL_TTL_SECONDS;
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({
        role: claims.role,
        tid: claims.tid,
        ...(claims.sid ? { sid: claims.sid } : {}),
      })
        .setProtectedHeader({ alg: ALG, kid: key.kid, typ: TYP[use] })
        .setSubject(claims.sub)
        .setIssuer(options.issuer)
        .setAudience(options.audience)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + ttl)
        .sign(key.privateKey!);
      return { token, expiresIn: ttl };
    },
    async signFor({ typ, audience, subject, ttlSeconds, claims }) {
      const key = await signingKey();
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT(claims)
        .setProtectedHeader({ alg: ALG, kid: key.kid, typ })
        .setSubject(subject)
        .setIssuer(options.issuer)
        .setAudience(audience)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + ttlSeconds)
        .sign(key.privateKey!);
      return { token, expiresIn: ttlSeconds };
    },
    async verify(use, token) {
      try {
        const { payload } = await jwtVerify(token, (header) => verificationKey(header.kid), {
          algorithms: [ALG],
          issuer: options.issuer,
          audience: options.audience,
          typ: TYP[use],
          requiredClaims: ['sub', 'iat', 'nbf', 'exp'],
          clockTolerance: 5,
        });
        const role = payload.role;
        if (role !== 'platform_admin' && role !== 'tenant_owner' && role !== 'tenant_member')
          throw new Error('role');
        if (payload.tid !== null && typeof payload.tid !== 'string') throw new Error('tid');
        if (payload.sid !== undefined && typeof payload.sid !== 'string') throw new Error('sid');
        return { sub: payload.sub!, role, tid: payload.tid, sid: payload.sid };
      } catch (err) {
        throw new DomainError('unauthenticated', 'the access token is invalid or expired', { cause: err });
      }
    },
    async rotate() {
      const kid = await addSigningKey(options.db, await options.box());
      await reload();
      return kid;
    },
  };
}
