/**
 * Request targets as logs may keep them. Some URLs carry bearer-like values:
 * a local checkout page's address is the checkout's only credential (like
 * Stripe's hosted page, anyone holding it can pay or read it), and a client
 * may put a token in a query string. Those values are replaced by
 * `[redacted]`; the rest of the target stays for debugging. Cheap when there
 * is nothing to redact (no query and no checkout path): the edge writes a line
 * per request.
 */
const CHECKOUT = '/billing/checkout/';
/** Query parameter names whose values are (or may be) credentials. */
const SENSITIVE_PARAM = /token|key|secret|pass|session|sid|sig|code|ticket|auth|jwt|otp|recovery|csrf/i;
const MARK = '[redacted]';

export function redactUrl(url: string): string;
export function redactUrl(url: string | undefined): string | undefined;
export function redactUrl(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const q = url.indexOf('?');
  const checkout = url.indexOf(CHECKOUT);
  if (q < 0 && checkout < 0) return url;
  let path = q < 0 ? url : url.slice(0, q);
  if (checkout >= 0 && (q < 0 || checkout < q)) {
    const start = checkout + CHECKOUT.length;
    const end = path.indexOf('/', start);
    path = `${path.slice(0, start)}${MARK}${end < 0 ? '' : path.slice(end)}`;
  }
  if (q < 0) return path;
  const raw = url.slice(q + 1);
  // Most queries name nothing sensitive: one test of the whole string, no splitting.
  if (!SENSITIVE_PARAM.test(raw)) return path === url.slice(0, q) ? url : `${path}?${raw}`;
  const query = raw
    .split('&')
    .map((part) => {
      const eq = part.indexOf('=');
      const name = eq < 0 ? part : part.slice(0, eq);
      return eq >= 0 && SENSITIVE_PARAM.test(safeDecode(name)) ? `${name}=${MARK}` : part;
    })
    .join('&');
  return `${path}?${query}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/**
 * Bearer-like values inside free text (an error message that names the
 * checkout it could not find, an API key or refresh token pasted somewhere
 * it does not belong), for log lines that carry such text.
 */
const BEARER_TEXT = /\bcs_(?:local[0-9a-z]{26}|(?:test|live)_\w+)|\baiqso_(?:rt_)?[A-Za-z0-9_-]{20,}/g;

export function redactText(text: string): string {
  return text.replace(BEARER_TEXT, MARK);
}
