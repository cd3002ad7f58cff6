// The dashboard's HTML and HTTP plumbing: pages, security headers, cookies and signed values.
/** @import { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http' */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** `s` as text for HTML: the five characters that could end a text or an attribute become entities. */
export const escape = (/** @type {unknown} */ s) =>
  String(s).replace(/[&<>"']/g, (c) => ENTITIES[/** @type {keyof typeof ENTITIES} */ (c)]);

// The platform's design system (src/web/design.ts), copied here by `npm run build` so this app,
// deployed on its own, looks like the rest of the product. Served from this host under a name with
// its hash (never stale), from the host's root (a page answered at /login/code links it too); the
// pages carry no script and no inline style.
export const STYLESHEET = readFileSync(new URL('./design.css', import.meta.url), 'utf8');
export const STYLESHEET_PATH = `assets/design-${createHash('sha256').update(STYLESHEET).digest('hex').slice(0, 12)}.css`;

/**
 * On every HTML answer: no script at all, no framing (Unsubscribe cannot be
 * clickjacked), forms post only here, no MIME sniffing, no Referer with the
 * page's query string (an invitation's token) to the services it links to.
 */
const csp = (/** @type {string} */ formAction) =>
  `default-src 'none'; style-src 'self'; img-src 'self'; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`;

export const SECURITY_HEADERS = {
  'content-security-policy': csp("'self'"),
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
};

/**
 * The CSP of a page with a form this dashboard answers with a redirect to another site (the
 * billing portal): browsers hold a form's redirect to the page's `form-action` too, so the
 * origins it may lead to are named there. Nothing else changes.
 * @param {string[]} origins e.g. `https://billing.stripe.com`
 */
export const cspWithFormsTo = (origins) => csp(["'self'", ...origins].join(' '));

/**
 * A whole HTML page in the design system: a skip link, the top bar (the company's name, and the
 * navigation when signed in), then the content. Links are relative: every page is one level deep.
 * @param {string} title the page's title (escaped here)
 * @param {string} body its content, HTML already
 * @param {{ brand?: string, nav?: string, narrow?: boolean }} [parts] `brand`: the top bar's name
 *   (escaped here); `nav`: its navigation, HTML
 */
export function page(title, body, parts = {}) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(title)}</title>
<link rel="stylesheet" href="/${STYLESHEET_PATH}">
</head><body><a class="skip" href="#main">Skip to content</a>
<header class="topbar"><a class="brand" href="./">${escape(parts.brand ?? title)}</a>${
    parts.nav ? `<nav aria-label="Main">${parts.nav}</nav>` : ''
  }</header>
<main id="main"${parts.narrow ? ' class="narrow"' : ''}>${body}</main></body></html>`;
}

/** A status badge: its tone from the state, its text in words. */
export function badge(/** @type {string} */ tone, /** @type {string} */ text) {
  return `<span class="badge ${tone}">${escape(text)}</span>`;
}

/**
 * A table that scrolls inside its own box on a narrow screen; cells are HTML already.
 * @param {string} label
 * @param {string[]} head
 * @param {string[][]} rows
 */
export function table(label, head, rows) {
  return `<div class="table-wrap" role="region" aria-label="${escape(label)}" tabindex="0"><table>
<thead><tr>${head.map((h) => `<th scope="col">${escape(h)}</th>`).join('')}</tr></thead>
<tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('\n')}</tbody></table></div>`;
}

/** An empty state: what is missing and what to do. */
export const emptyState = (/** @type {string} */ title, /** @type {string} */ text) =>
  `<div class="empty"><p><strong>${escape(title)}</strong></p><p>${escape(text)}</p></div>`;

/** A notice: `status` (announced politely) or `error` (an alert). */
export const notice = (/** @type {string} */ text, /** @type {'info' | 'error'} */ kind = 'info') =>
  `<div class="notice${kind === 'error' ? ' error' : ''}" role="${kind === 'error' ? 'alert' : 'status'}">${escape(text)}</div>`;

/**
 * A confirmation dialog without script: a link to `#id` opens it (CSS `:target`), Cancel closes
 * it, its form does the action. `fields`: the form's hidden inputs, HTML (the CSRF token among them).
 * `tone`: the confirm button's class, `danger` unless given (`''`: the plain button).
 * @param {{ id: string, title: string, text: string, action: string, fields: string, confirm: string, tone?: string }} o
 */
export function confirmDialog(o) {
  return `<div class="dialog" id="${escape(o.id)}" role="dialog" aria-modal="true" aria-labelledby="${escape(o.id)}-title">
<div class="dialog-box"><h2 id="${escape(o.id)}-title">${escape(o.title)}</h2>
<p>${escape(o.text)}</p>
<form method="post" action="${escape(o.action)}">${o.fields}<div class="actions">
<button type="submit"${(o.tone ?? 'danger') ? ` class="${escape(o.tone ?? 'danger')}"` : ''}>${escape(o.confirm)}</button>
<a class="button secondary" href="#">Cancel</a></div></form></div></div>`;
}

/** A hidden input. */
export const hidden = (/** @type {string} */ name, /** @type {string} */ value) =>
  `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`;

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
