// The dashboard's HTML and HTTP plumbing: pages, security headers, cookies and signed values.
/** @import { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http' */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** `s` as text for HTML: the five characters that could end a text or an attribute become entities. */
export const escape = (/** @type {unknown} */ s) =>
  String(s).replace(/[&<>"']/g, (c) => ENTITIES[/** @type {keyof typeof ENTITIES} */ (c)]);

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

/**
 * A whole HTML page.
 * @param {string} title the page's title (escaped here)
 * @param {string} body its body, HTML already
 */
export function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(title)}</title>
<style>${STYLE}</style>
</head><body>${body}</body></html>`;
}

/**
 * An HTML answer (or a redirect with an empty body) with the security headers.
 * @param {ServerResponse} res
 * @param {number} status
 * @param {string} html
 * @param {OutgoingHttpHeaders} [headers]
 */
export function send(res, status, html, headers = {}) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    ...SECURITY_HEADERS,
    ...headers,
  });
  res.end(html);
}

export const csrfField = (/** @type {string} */ token) =>
  `<input type="hidden" name="csrf" value="${escape(token)}">`;

/**
 * The request's cookies by name.
 * @param {IncomingMessage} req
 * @returns {Record<string, string>}
 */
export function readCookies(req) {
  /** @type {Record<string, string>} */
  const jar = {};
  for (const part of (req.headers.cookie ?? '').split(/;\s*/)) {
    const eq = part.indexOf('=');
    if (eq > 0) jar[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return jar;
}

/**
 * A Set-Cookie value: HttpOnly, SameSite=Lax, for the whole host.
 * @param {string} name
 * @param {string} value
 * @param {{ maxAge?: number, secure?: boolean }} [options] `maxAge` in seconds (without it, the cookie
 *   lasts until the browser closes); `secure`: sent over HTTPS only
 */
export function cookie(name, value, { maxAge, secure } = {}) {
  const age = maxAge === undefined ? '' : `; Max-Age=${maxAge}`;
  return `${name}=${value}; Path=/; HttpOnly; SameSite=Lax${age}${secure ? '; Secure' : ''}`;
}

export const clearCookie = (/** @type {string} */ name) =>
  `${name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax`;

export const randomId = () => randomBytes(24).toString('base64url');

/** Values signed with a key of this process (a restart invalidates them, and signs everyone out). */
export function signer() {
  const key = randomBytes(32);
  const sign = (/** @type {string} */ value) => createHmac('sha256', key).update(value).digest('base64url');
  const same = (/** @type {string} */ a, /** @type {string} */ b) => {
    const x = Buffer.from(String(a));
    const y = Buffer.from(String(b));
    return x.length === y.length && timingSafeEqual(x, y);
  };
  return {
    sign,
    /** `value.mac` for a cookie. */
    seal: (/** @type {string} */ value) => `${value}.${sign(value)}`,
    /**
     * The value of a `value.mac` cookie whose mac is right, else undefined.
     * @param {string | undefined} sealed
     */
    unseal(sealed) {
      const text = sealed ?? '';
      const dot = text.lastIndexOf('.');
      if (dot <= 0) return undefined;
      const value = text.slice(0, dot);
      return same(sign(value), text.slice(dot + 1)) ? value : undefined;
    },
    /** Whether `given` is the CSRF token of `scope` (a session, a pending sign-in, a visitor). */
    csrfOk: (/** @type {string} */ scope, /** @type {string | undefined} */ given) =>
      same(sign(`csrf:${scope}`), given ?? ''),
    csrf: (/** @type {string} */ scope) => sign(`csrf:${scope}`),
  };
}

/**
 * A posted form (`application/x-www-form-urlencoded`, at most 16 KiB) by field name.
 * @param {IncomingMessage} req
 * @returns {Promise<Record<string, string>>}
 */
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
