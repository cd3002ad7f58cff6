import { describe, expect, it } from 'vitest';
import { registeredRoutes } from '../src/api/server.ts';
import { crossTenantSuccesses, ROUTE_CASES, runSecuritySuite } from './support/security-suite.ts';

/**
 * Routes anyone may call: the portal's front page, the operations endpoints,
 * the API reference, login and refresh (their credential is the body), signup
 * and webhooks (signed), local billing mode's checkout page, which stands in
 * for Stripe's hosted checkout and, like it, is reached by an unguessable
 * session id, and the service catalog, which like the plans names only what is
 * on offer.
 * Every other route must be in ROUTE_CASES.
 */
const PUBLIC_EXACT = [
  '/',
  '/healthz',
  '/readyz',
  '/metrics',
  '/api/openapi.json',
  '/api/v1/auth/login',
  '/api/v1/auth/refresh',
  '/api/v1/signup',
  '/signup',
  '/signup/welcome',
  '/api/v1/catalog',
];
const PUBLIC_PREFIX = ['/api/docs', '/webhooks/', '/billing/checkout/'];

const suite = runSecuritySuite();

describe('security suite coverage', () => {
  it('covers every registered route outside the public allow-list', () => {
    const covered = new Set(ROUTE_CASES.map((c) => `${c.method} ${c.url}`));
    const missing = registeredRoutes(suite.harness().api)
      .filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS')
      .filter((r) => !PUBLIC_EXACT.includes(r.url) && !PUBLIC_PREFIX.some((p) => r.url.startsWith(p)))
      .map((r) => `${r.method} ${r.url}`)
      .filter((r) => !covered.has(r));
    expect(missing).toEqual([]);
  });

  it('shows 0 cross-tenant successes over every route', () => {
    process.stdout.write(
      `security suite: ${ROUTE_CASES.length} routes, cross-tenant successes: ${crossTenantSuccesses.length}\n`,
    );
    expect(crossTenantSuccesses).toEqual([]);
  });
});
