import { cookieValue } from './cookies.ts';
import { EDGE_COOKIE } from './edge-token.ts';
import type { EdgeSessionVerifier, Identity } from './verifier.ts';
import { isPublicRequest, type EdgeRoute } from '../route-table.ts';

/**
 * What the edge lets through to a tenant's upstream: which cookies it gets
 * (the platform's only, for the dashboard; everything else, for a service) and,
 * on an `edge` route, who the user is.
 */
export interface Grant {
  cookies: 'platform' | 'service';
  identity?: Identity;
}

export const DASHBOARD_GRANT: Grant = Object.freeze({ cookies: 'platform' });
export const SERVICE_GRANT: Grant = Object.freeze({ cookies: 'service' });

/** A request an `edge` route refuses: the user has to sign in. */
export const SIGN_IN = 'sign-in' as const;
export type Access = Grant | typeof SIGN_IN;

/**
 * The sign-in in front of a route, given the request's normalised host and
 * path and its Cookie header. A host's root route is the tenant dashboard,
 * which signs users in itself; an `app` route's service does too; an `edge`
 * route needs a valid edge session for its tenant, except on its public paths.
 */
export function createGate(verifier: EdgeSessionVerifier) {
  return function access(
    route: EdgeRoute,
    host: string,
    path: string,
    cookie: string | undefined,
  ): Access | Promise<Access> {
    if (route.pathPrefix === '') return DASHBOARD_GRANT;
    if (route.auth !== 'edge' || isPublicRequest(route, path)) return SERVICE_GRANT;
    return needSession(verifier, route.tenantId, host, cookie);
  };
}

/** An edge session for `tenantId` at `host`, from the request's cookie, or the need to sign in. */
export function needSession(
  verifier: EdgeSessionVerifier,
  tenantId: string | null,
  host: string,
  cookie: string | undefined,
): Access | Promise<Access> {
  const token = cookieValue(cookie, EDGE_COOKIE);
  // A route without a tenant has no members to let in.
  if (!token || !tenantId) return SIGN_IN;
  const identity = verifier.identify(token, host, tenantId);
  if (identity instanceof Promise) return identity.then(grantFor);
  return grantFor(identity);
}

const grantFor = (identity: Identity | undefined): Access =>
  identity ? { cookies: 'service', identity } : SIGN_IN;

export type Gate = ReturnType<typeof createGate>;
