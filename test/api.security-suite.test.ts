import { describe, expect, it } from 'vitest';
import { registeredRoutes } from '../src/api/server.ts';
import { crossTenantSuccesses, ROUTE_CASES, runSecuritySuite } from './support/security-suite.ts';

const suite = runSecuritySuite();

describe('security suite coverage', () => {
  it('covers every registered route that does not declare itself public', () => {
    const covered = new Set(ROUTE_CASES.map((c) => `${c.method} ${c.url}`));
    const missing = registeredRoutes(suite.harness().api)
      .filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS' && !r.public)
      .map((r) => `${r.method} ${r.url}`)
      .filter((r) => !covered.has(r));
    expect(missing).toEqual([]);
  });

  it('lets an anonymous request through to exactly the routes that declare themselves public', async () => {
    // Public: the portal's pages, the operations endpoints (/metrics checks its own token), the API
    // reference, login and refresh (their credential is the body), signup, Stripe's webhook (signed),
    // local billing's checkout and customer portal (reached by an unguessable id or link, like
    // Stripe's) and the service catalog.
    const routes = registeredRoutes(suite.harness().api).filter(
      (r) => r.method !== 'HEAD' && r.method !== 'OPTIONS',
    );
    const publicRoutes = routes.filter((r) => r.public).map((r) => `${r.method} ${r.url}`);
    process.stdout.write(`public routes (${publicRoutes.length}): ${publicRoutes.join(', ')}\n`);
    expect(publicRoutes).toEqual(expect.arrayContaining(['GET /healthz', 'POST /api/v1/auth/login']));
    // The authentication hook's refusal of a request without credentials (a public route's own
    // handler may refuse with 401 for its own reasons: refresh without a refresh token).
    const byAuthentication = (res: { statusCode: number; json(): unknown }) =>
      res.statusCode === 401 &&
      (res.json() as { error: { message: string } }).error.message.startsWith('credentials are required');
    const refused: string[] = [];
    const admitted: string[] = [];
    for (const route of routes) {
      const res = await suite.harness().api.inject({
        method: route.method as 'GET',
        url: route.url.replace(/:(\w+)/g, 'x').replace(/\*$/, ''),
        ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { payload: {} }),
      });
      if (route.public && byAuthentication(res)) refused.push(`${route.method} ${route.url}`);
      if (!route.public && !byAuthentication(res)) {
        admitted.push(`${route.method} ${route.url} ${res.statusCode}`);
      }
    }
    expect(refused).toEqual([]);
    expect(admitted).toEqual([]);
  });

  it('shows 0 cross-tenant successes over every route', () => {
    process.stdout.write(
      `security suite: ${ROUTE_CASES.length} routes, cross-tenant successes: ${crossTenantSuccesses.length}\n`,
    );
    expect(crossTenantSuccesses).toEqual([]);
  });
});
