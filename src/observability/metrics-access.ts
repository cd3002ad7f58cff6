import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

/**
 * Who may read `/metrics` (the platform's and an edge's own), whose series
 * name tenants: with AIQSO_METRICS_TOKEN, a caller presenting it as a bearer
 * token; without one, only a client on this machine (loopback), judged by the
 * client address the edge determined (the socket's peer, or a trusted proxy's
 * X-Forwarded-For, never a header from anyone else).
 */
export interface MetricsRefusal {
  status: 401 | 403;
  code: 'unauthenticated' | 'forbidden';
  message: string;
}

export function isLoopback(ip: string): boolean {
  const plain = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  if (isIP(plain) === 4) return plain.startsWith('127.');
  return plain === '::1';
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Why a request for /metrics is refused, or undefined when it may read them. */
export function metricsRefusal(
  token: string | undefined,
  authorization: string | undefined,
  clientIp: string,
): MetricsRefusal | undefined {
  if (token === undefined) {
    if (isLoopback(clientIp)) return undefined;
    return {
      status: 403,
      code: 'forbidden',
      message:
        'metrics are served to this machine only; set AIQSO_METRICS_TOKEN to scrape them from elsewhere',
    };
  }
  const given = /^Bearer (\S+)$/i.exec(authorization ?? '')?.[1];
  // Compared as digests: equal lengths, and no timing hint about the token.
  if (given !== undefined && timingSafeEqual(digest(given), digest(token))) return undefined;
  return {
    status: 401,
    code: 'unauthenticated',
    message: 'metrics need Authorization: Bearer <AIQSO_METRICS_TOKEN>',
  };
}
