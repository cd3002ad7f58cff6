import { verify, type KeyObject } from 'node:crypto';
import type { Role } from '../../core/identity.ts';

/**
 * The edge session: a JWT the platform signs (EdDSA, with its access-token
 * signing keys, `signing_keys`) for one user on one tenant host, which the
 * dashboard sets as the `aiqso_edge` cookie on that host. Any edge verifies it
 * with the public keys alone: typ `edge+jwt` (an access token is not one),
 * issuer the platform's public URL, audience the host, the tenant the route
 * belongs to, and the platform session `sid`, which must still be live.
 */
export const EDGE_COOKIE = 'aiqso_edge' as const;
export const EDGE_TOKEN_TYP = 'edge+jwt';
/** How long an edge session token lives; the dashboard renews it while it is used. */
export const EDGE_SESSION_TTL_SECONDS = 3600;
const CLOCK_TOLERANCE_SECONDS = 5;
const MAX_TOKEN_LENGTH = 4096;

export interface EdgeClaims {
  /** The user id. */
  sub: string;
  email: string;
  role: Role;
  /** The tenant the token lets its holder into (for a platform admin too). */
  tid: string;
  /** The platform session the token was issued from. */
  sid: string;
  /** The tenant host the token is for. */
  aud: string;
  exp: number;
}

/** Claims the platform puts in an edge token, besides the registered ones. */
export type EdgeTokenClaims = Pick<EdgeClaims, 'email' | 'role' | 'tid' | 'sid'>;

const ROLES = new Set<string>(['platform_admin', 'tenant_owner', 'tenant_member']);

function json(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

const str = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= 320;
const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

export type VerifyResult =
  | { ok: true; claims: EdgeClaims }
  | { ok: false; reason: 'malformed' | 'signature' | 'claims' | 'expired' }
  | { ok: false; reason: 'unknown_key'; kid: string };

/**
 * Check an edge token's form, signature and claims (not the audience, which
 * the caller compares with the host, nor the session, which lives in the
 * database). Only EdDSA is accepted; `key` finds a public key by its id.
 */
export function verifyEdgeToken(
  token: string,
  key: (kid: string) => KeyObject | undefined,
  options: { issuer: string; now?: number },
): VerifyResult {
  if (token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'malformed' };
  const parts = token.split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p)))
    return { ok: false, reason: 'malformed' };
  const header = json(parts[0]!);
  if (!header || header.alg !== 'EdDSA' || header.typ !== EDGE_TOKEN_TYP || !str(header.kid))
    return { ok: false, reason: 'malformed' };
  const publicKey = key(header.kid);
  if (!publicKey) return { ok: false, reason: 'unknown_key', kid: header.kid };
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  let valid: boolean;
  try {
    valid = verify(null, signed, publicKey, Buffer.from(parts[2]!, 'base64url'));
  } catch {
    valid = false; // not an Ed25519 signature at all (wrong length)
  }
  if (!valid) return { ok: false, reason: 'signature' };
  const p = json(parts[1]!);
  if (
    !p ||
    p.iss !== options.issuer ||
    !str(p.sub) ||
    !str(p.email) ||
    !str(p.tid) ||
    !str(p.sid) ||
    !str(p.aud) ||
    typeof p.role !== 'string' ||
    !ROLES.has(p.role) ||
    !num(p.exp) ||
    !num(p.nbf) ||
    !num(p.iat)
  )
    return { ok: false, reason: 'claims' };
  const now = options.now ?? Date.now() / 1000;
  if (p.nbf > now + CLOCK_TOLERANCE_SECONDS || p.exp <= now - CLOCK_TOLERANCE_SECONDS)
    return { ok: false, reason: 'expired' };
  return {
    ok: true,
    claims: {
      sub: p.sub,
      email: p.email,
      role: p.role as Role,
      tid: p.tid,
      sid: p.sid,
      aud: p.aud,
      exp: p.exp,
    },
  };
}
