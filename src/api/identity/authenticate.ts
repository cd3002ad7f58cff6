import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import type { Role } from '../../core/identity.ts';
import { API_KEY_PREFIX, authenticateApiKey } from '../../identity/api-keys.ts';
import type { Principal } from '../../identity/principal.ts';
import { liveSession } from '../../identity/sessions.ts';
import type { TokenIssuer } from '../../identity/tokens.ts';

export const COOKIE = { access: 'aiqso_at', refresh: 'aiqso_rt', csrf: 'aiqso_csrf' } as const;
export const CSRF_HEADER = 'x-csrf-token';
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

declare module 'fastify' {
  interface FastifyContextConfig {
    /** No credentials needed (login, health, signup, webhooks…); every other route is authenticated. */
    public?: boolean;
    /** Also accept the short-lived TOTP-enrolment token (the enrolment routes). */
    enrolment?: boolean;
    /** The smallest role the route serves; checked after the tenant is resolved. */
    minRole?: Role;
    /** The audit log's name for this action; default `<METHOD> <route>`. */
    auditAction?: string;
    /**
     * A page's form whose every effect is an API call made for it (the
     * operator console): the API call writes the audit row, so the form post
     * writes none of its own.
     */
    auditedByApi?: boolean;
  }
  interface FastifyRequest {
    principal?: Principal;
    /** Set by a route that knows the tenant or actor better than the principal (login). */
    audit?: {
      tenantId?: string | null;
      actorId?: string | null;
      targetType?: string;
      targetId?: string;
      /** The client's address when the request came through a dashboard that vouched for it. */
      sourceIp?: string;
      /** What the audit row should say beyond status and request id (what changed, never a secret). */
      details?: Record<string, unknown>;
    };
  }
}

const unauthenticated = (message = 'credentials are required: Authorization: Bearer <token or API key>') =>
  new DomainError('unauthenticated', message);

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Double submit: a request that a cookie authenticates must also carry the
 * CSRF cookie's value in a header, which only the platform's own pages can
 * read and send.
 */
export function requireCsrfHeader(request: FastifyRequest): void {
  const sent = request.headers[CSRF_HEADER];
  const expected = request.cookies[COOKIE.csrf];
  if (typeof sent !== 'string' || !expected || !sameSecret(sent, expected)) {
    throw new DomainError(
      'forbidden',
      `missing or wrong ${CSRF_HEADER} header (copy it from the ${COOKIE.csrf} cookie)`,
    );
  }
}

/**
 * Who sent this request: a bearer access token, a bearer API key, or the
 * portal's access-token cookie (with a CSRF header matching the CSRF cookie on
 * anything but a read). Tokens are checked against the live session and user
 * on every request, so logout, revocation and role changes apply at once.
 */
export function createAuthenticator(deps: { db: Database; tokens: TokenIssuer }) {
  async function fromAccessToken(token: string): Promise<Principal> {
    const claims = await deps.tokens.verify('access', token);
    const live = claims.sid ? await liveSession(deps.db, claims.sub, claims.sid) : undefined;
    if (!live || live.role !== claims.role || live.tenant_id !== claims.tid) {
      throw unauthenticated('the session has ended; log in again');
    }
    return { kind: 'user', id: live.id, role: live.role, tenantId: live.tenant_id, sessionId: claims.sid };
  }

  return async function authenticate(request: FastifyRequest, enrolment = false): Promise<Principal> {
    const header = request.headers.authorization;
    if (header !== undefined) {
      const match = /^Bearer ([\x21-\x7e]{1,4096})$/i.exec(header);
      if (!match) throw unauthenticated('the Authorization header must be "Bearer <token>"');
      const credential = match[1]!;
      if (credential.startsWith(API_KEY_PREFIX)) return authenticateApiKey(deps.db, credential);
      if (enrolment) {
        try {
          const claims = await deps.tokens.verify('totp_enrol', credential);
          return { kind: 'user', id: claims.sub, role: claims.role, tenantId: claims.tid };
        } catch {
          // not an enrolment token: an ordinary access token may enrol too
        }
      }
      return fromAccessToken(credential);
    }
    const cookie = request.cookies[COOKIE.access];
    if (!cookie) throw unauthenticated();
    if (!SAFE.has(request.method)) requireCsrfHeader(request);
    return fromAccessToken(cookie);
  };
}

export type Authenticator = ReturnType<typeof createAuthenticator>;

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw unauthenticated();
  return request.principal;
}
