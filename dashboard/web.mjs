// The dashboard's HTML and HTTP plumbing: pages, security headers, cookies and signed values.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const escape = (s) =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );

// The one stylesheet, allowed by its hash: the pages carry no script and no other inline style.
const STYLE = `body{font-family:system-ui,sans-serif;max-width:48rem;margin:2.5rem auto;padding:0 1rem;color:#1f2933}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e5e7eb}
.muted{color:#6b7280}input{padding:.4rem;margin:.2rem 0 .8rem;width:18rem}button{padding:.5rem 1.2rem}
form.inline{display:inline}`;

/**
 * On every HTML answer: no script at all, no framing (Unsubscribe cannot be
 * clickjacked), forms post only here, no MIME sniffing, no Referer with the
 * page's query string to the services it links to.
 */
export const SECURITY_HEADERS = {
  'content-security-policy': `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

export function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(title)}</title>
<style>${STYLE}</style>
</head><body>${body}</body></html>`;
}

/** An HTML answer (or a redirect with an empty body) with the security headers. */
export function send(res, status, html, headers = {}) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    ...SECURITY_HEADERS,
    ...headers,
  });
  res.end(html);
}

export const csrfField = (token) => `<input type="hidden" name="csrf" value="${escape(token)}">`;

export function readCookies(req) {
  const jar = {};
  for (const part of (req.headers.cookie ?? '').split(/;\s*/)) {
    const eq = part.indexOf('=');
    if (eq > 0) jar[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return jar;
}

export function cookie(name, value, { maxAge, secure } = {}) {
  const age = maxAge === undefined ? '' : `; Max-Age=${maxAge}`;
  return `${name}=${value}; Path=/; HttpOnly; SameSite=Lax${age}${secure ? '; Secure' : ''}`;
}

export const clearCookie = (name) => `${name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax`;

export const randomId = () => randomBytes(24).toString('base64url');

/** Values signed with a key of this process (a restart invalidates them, and signs everyone out). */
export function signer() {
  const key = randomBytes(32);
  const sign = (value) => createHmac('sha256', key).update(value).digest('base64url');
  const same = (a, b) => {
    const x = Buffer.from(String(a));
    const y = Buffer.from(String(b));
    return x.length === y.length && timingSafeEqual(x, y);
  };
  return {
    sign,
    /** `value.mac` for a cookie. */
    seal: (value) => `${value}.${sign(value)}`,
    /** The value of a `value.mac` cookie whose mac is right, else undefined. */
    unseal(sealed) {
      const dot = (sealed ?? '').lastIndexOf('.');
      if (dot <= 0) return undefined;
      const value = sealed.slice(0, dot);
      return same(sign(value), sealed.slice(dot + 1)) ? value : undefined;
    },
    /** Whether `given` is the CSRF token of `scope` (a session, a pending sign-in, a visitor). */
    csrfOk: (scope, given) => same(sign(`csrf:${scope}`), given ?? ''),
    csrf: (scope) => sign(`csrf:${scope}`),
  };
}

export function readForm(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 16_384) req.destroy(new Error('form too large'));
    });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(data))));
    req.on('error', reject);
  });
}
