import { createHmac } from 'node:crypto';
import {
  exportSPKI,
  generateKeyPair,
  importJWK,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import { loadSecretBox } from '../../src/identity/master-key.ts';
import type { Harness } from './identity.ts';

/**
 * Token forgery for tests: the platform's real signing key (read from the
 * database and opened with the master key, as an insider could), an
 * attacker's keys, and raw JWT assembly for what jose refuses to build.
 */
export interface Forge {
  kid: string;
  publicJwk: JWK;
  /** Sign with the platform's real key (valid signature, claims as given). */
  real(
    payload: JWTPayload,
    header?: Record<string, unknown>,
    crit?: Record<string, boolean>,
  ): Promise<string>;
  /** Sign with a fresh Ed25519 key the platform never saw, under the real kid unless told otherwise. */
  attacker(payload: JWTPayload, header?: Record<string, unknown>): Promise<string>;
  /** Valid claims for a user; override what a variant needs. */
  claims(
    user: { sub: string; role: string; tid: string | null; sid?: string },
    extra?: JWTPayload,
  ): JWTPayload;
  raw(header: Record<string, unknown>, payload: JWTPayload, signature?: string): string;
  hs256(header: Record<string, unknown>, payload: JWTPayload, secret: string | Buffer): string;
  publicPem(): Promise<string>;
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

export async function createForge(h: Harness): Promise<Forge> {
  const row = await h.db.db
    .selectFrom('signing_keys')
    .selectAll()
    .where('retired_at', 'is', null)
    .orderBy('created_at', 'desc')
    .executeTakeFirstOrThrow();
  const box = await loadSecretBox({ configured: h.config.masterKey, dataDir: h.dataDir });
  const privateJwk = JSON.parse(box.open(row.private_enc, `signing_keys:${row.kid}`)) as JWK;
  const realKey = (await importJWK(privateJwk, 'EdDSA')) as CryptoKey;
  const attackerKey = (await generateKeyPair('EdDSA', { crv: 'Ed25519' })).privateKey;
  const publicJwk = row.public_jwk as JWK;
  const issuer = h.config.publicUrl;
  const audience = `${h.config.publicUrl}/api`;
  const sign = (
    key: CryptoKey,
    payload: JWTPayload,
    header: Record<string, unknown> = {},
    crit?: Record<string, boolean>,
  ) =>
    new SignJWT(payload)
      .setProtectedHeader({ alg: 'EdDSA', kid: row.kid, typ: 'at+jwt', ...header })
      .sign(key, crit ? { crit } : undefined);
  return {
    kid: row.kid,
    publicJwk,
    real: (payload, header, crit) => sign(realKey, payload, header, crit),
    attacker: (payload, header) => sign(attackerKey, payload, header),
    claims(user, extra = {}) {
      const now = Math.floor(Date.now() / 1000);
      return { ...user, iss: issuer, aud: audience, iat: now, nbf: now, exp: now + 300, ...extra };
    },
    raw: (header, payload, signature = '') => `${b64(header)}.${b64(payload)}.${signature}`,
    hs256(header, payload, secret) {
      const input = `${b64(header)}.${b64(payload)}`;
      return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
    },
    async publicPem() {
      return exportSPKI((await importJWK(publicJwk, 'EdDSA')) as CryptoKey);
    },
  };
}
