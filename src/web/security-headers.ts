import type { FastifyInstance } from 'fastify';
import { PAGE_CSP } from './html.ts';

/**
 * The API reference (Swagger UI) loads its scripts and styles from this
 * origin and sets styles from script; it gets no inline script either.
 */
const DOCS_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "object-src 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/**
 * Headers on every answer of the platform app: no MIME sniffing anywhere, and
 * on HTML pages a CSP, no framing (no clickjacking of Pay or a form), no
 * Referer (a checkout page's address is its credential) and a browsing
 * context of their own.
 */
export function installPageSecurity(app: FastifyInstance): void {
  app.addHook('onSend', (request, reply, payload, done) => {
    void reply.header('x-content-type-options', 'nosniff');
    const type = reply.getHeader('content-type');
    if (typeof type === 'string' && type.startsWith('text/html')) {
      const docs = request.url.startsWith('/api/docs');
      void reply.headers({
        'content-security-policy': docs ? DOCS_CSP : PAGE_CSP,
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
        'cross-origin-opener-policy': 'same-origin',
      });
    }
    done(null, payload);
  });
}
