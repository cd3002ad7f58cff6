import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { sql } from 'kysely';
import type { Database } from '../../db/database.ts';
import type { Role } from '../../core/identity.ts';
import { EDGE_SESSION_TTL_SECONDS, verifyEdgeToken, type EdgeClaims } from './edge-token.ts';
import { identityHeaders } from './identity.ts';

/** Who a request comes from, as the edge tells a service. */
export interface Identity {
  userId: string;
  email: string;
  role: Role;
  tenantId: string;
  /** The X-AIQSO-* headers for the upstream, as name, value, name, value… */
  headers: readonly string[];
}

export interface EdgeSessionVerifier {
  /**
   * The identity behind an edge session token presented at `host`, whose route
   * belongs to `tenantId`; undefined when the token is not a valid one for
   * them or its session has ended. Synchronous while the token and its session
   * are in the caches.
   */
  identify(
    token: string,
    host: string,
    tenantId: string,
  ): Identity | undefined | Promise<Identity | undefined>;
}

export interface VerifierOptions {
  db: Database;
  /** The platform's public URL: the tokens' issuer. */
  issuer: string;
  /** How long a session found live is believed without asking the database again (ms). */
  sessionCheckMs?: number;
  /** Tokens (and sessions) remembered at most; the caches start over beyond. */
  maxEntries?: number;
}

interface Verified {
  claims: EdgeClaims;
  identity: Identity;
}

interface SessionState {
  /** The user behind the session while it is live; undefined once it ended (for good). */
  user: { role: Role; tenantId: string | null } | undefined;
  checkedAt: number;
}

/** A new signing key is looked for at most this often when a token names an unknown one. */
const KEY_RELOAD_MS = 5000;

/**
 * The edge's check of edge session tokens, with public keys only (no secret):
 * the signing keys' public halves from `signing_keys`, loaded at the first
 * token and again when a token names a key not seen yet. Verified tokens are
 * cached by their text until they expire, so the hot path is two map lookups.
 *
 * Revocation: a token's platform session (`sid`) must belong to a session
 * family with a live member (logout and refresh-token reuse revoke the whole
 * family; a refresh only replaces one member), its user must still have the
 * token's role and tenant. A live answer is believed for `sessionCheckMs`
 * (5 s): a session ended elsewhere is refused by every edge within that time.
 * An ended one is remembered as ended.
 */
export function createEdgeSessionVerifier(options: VerifierOptions): EdgeSessionVerifier {
  const { db, issuer } = options;
  const checkMs = options.sessionCheckMs ?? 5000;
  const max = options.maxEntries ?? 10_000;
  let keys = new Map<string, KeyObject>();
  let keysLoadedAt = 0;
  let keysLoading: Promise<void> | undefined;
  let tokens = new Map<string, Verified>();
  let sessions = new Map<string, SessionState>();
  const checking = new Map<string, Promise<SessionState>>();

  async function loadKeys(): Promise<void> {
    // Retired keys still verify the tokens they signed, which live at most the TTL.
    const oldest = new Date(Date.now() - (EDGE_SESSION_TTL_SECONDS + 60) * 1000);
    const rows = await db
      .selectFrom('signing_keys')
      .select(['kid', 'public_jwk'])
      .where((eb) => eb.or([eb('retired_at', 'is', null), eb('retired_at', '>', oldest)]))
      .execute();
    const next = new Map<string, KeyObject>();
    for (const row of rows) {
      try {
        next.set(row.kid, createPublicKey({ key: row.public_jwk as JsonWebKey, format: 'jwk' }));
      } catch {
        // Not a key this edge can use: tokens naming it are refused.
      }
    }
    keys = next;
    keysLoadedAt = Date.now();
  }

  const reloadKeys = () => (keysLoading ??= loadKeys().finally(() => (keysLoading = undefined)));

  function remember(token: string, claims: EdgeClaims): Verified {
    if (tokens.size >= max) tokens = new Map();
    const identity: Identity = {
      userId: claims.sub,
      email: claims.email,
      role: claims.role,
      tenantId: claims.tid,
      headers: identityHeaders(claims.sub, claims.email, claims.role, claims.tid),
    };
    const verified = { claims, identity };
    tokens.set(token, verified);
    return verified;
  }

  /** Verify a token not in the cache; undefined when it is not a valid edge token. */
  function verifyNew(token: string): Verified | undefined | Promise<Verified | undefined> {
    const result = verifyEdgeToken(token, (kid) => keys.get(kid), { issuer });
    if (result.ok) return remember(token, result.claims);
    if (result.reason !== 'unknown_key') return undefined;
    if (keysLoadedAt !== 0 && Date.now() - keysLoadedAt < KEY_RELOAD_MS) return undefined;
    return reloadKeys().then(() => {
      const again = verifyEdgeToken(token, (kid) => keys.get(kid), { issuer });
      return again.ok ? remember(token, again.claims) : undefined;
    });
  }

  async function querySession(sid: string): Promise<SessionState> {
    const row = await db
      .selectFrom('sessions as s')
      .innerJoin('users as u', 'u.id', 's.user_id')
      .select(['u.role', 'u.tenant_id'])
      .where('s.id', '=', sid)
      .where((eb) =>
        eb.exists(
          eb
            .selectFrom('sessions as f')
            .select(sql`1`.as('one'))
            .whereRef('f.family', '=', 's.family')
            .where('f.revoked_at', 'is', null)
            .where('f.expires_at', '>', sql<Date>`now()`),
        ),
      )
      .executeTakeFirst();
    const state: SessionState = {
      user: row ? { role: row.role, tenantId: row.tenant_id } : undefined,
      checkedAt: Date.now(),
    };
    if (sessions.size >= max) sessions = new Map();
    sessions.set(sid, state);
    return state;
  }

  function session(sid: string): SessionState | Promise<SessionState> {
    const known = sessions.get(sid);
    if (known && (known.user === undefined || Date.now() - known.checkedAt < checkMs)) return known;
    let pending = checking.get(sid);
    if (!pending) {
      pending = querySession(sid).finally(() => checking.delete(sid));
      checking.set(sid, pending);
    }
    return pending;
  }

  /** The session still stands for these claims: live, and its user still has the token's role and tenant. */
  const stands = (s: SessionState, c: EdgeClaims) =>
    s.user !== undefined &&
    s.user.role === c.role &&
    (c.role === 'platform_admin' ? s.user.tenantId === null : s.user.tenantId === c.tid);

  function admit(v: Verified | undefined, host: string, tenantId: string) {
    if (!v) return undefined;
    const c = v.claims;
    if (c.exp <= Date.now() / 1000 || c.aud !== host || c.tid !== tenantId) return undefined;
    const s = session(c.sid);
    if (s instanceof Promise) return s.then((state) => (stands(state, c) ? v.identity : undefined));
    return stands(s, c) ? v.identity : undefined;
  }

  function identify(
    token: string,
    host: string,
    tenantId: string,
  ): Identity | undefined | Promise<Identity | undefined> {
    const cached = tokens.get(token);
    if (cached) return admit(cached, host, tenantId);
    if (keysLoadedAt === 0) return reloadKeys().then(() => identify(token, host, tenantId));
    const v = verifyNew(token);
    if (v instanceof Promise) return v.then((found) => admit(found, host, tenantId));
    return admit(v, host, tenantId);
  }
  return { identify };
}
