import type { NormalizedTarget } from './normalize.ts';
import type { EdgePage } from './pages.ts';

/**
 * HTTPS at the edge, once a certificate is configured: plain HTTP for a name is
 * sent to HTTPS (308 keeps the method and body), except ACME's HTTP-01
 * challenges, which must be answered over HTTP, and requests to an address
 * rather than a name (health checks, and the tenants' containers calling the
 * API at `http://<address>:<port>`). HTTPS answers carry HSTS for a year.
 */
export const HSTS = 'max-age=31536000';

export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/** `https://<host>[:port]<path><query>`, the port left out when it is 443. */
export function httpsLocation(target: NormalizedTarget, httpsPort: number): string {
  return `https://${target.host}${httpsPort === 443 ? '' : `:${httpsPort}`}${target.path}${target.query}`;
}

export function httpsRedirect(target: NormalizedTarget, httpsPort: number): EdgePage {
  return {
    status: 308,
    headers: { location: httpsLocation(target, httpsPort), 'content-type': 'text/plain' },
    html: 'Use HTTPS.\n',
  };
}
