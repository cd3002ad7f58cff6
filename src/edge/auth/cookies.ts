/**
 * The platform's cookies and the services' cookies, kept apart at the edge.
 * The platform's own are the `aiqso_…` names (the dashboard's session, the edge
 * session, the API's access, refresh and CSRF cookies), also with a `__Host-`
 * or `__Secure-` prefix: a service upstream never receives them, and the
 * tenant dashboard receives nothing else. A service must not name its own
 * cookies `aiqso_…`.
 */

const PLATFORM = /^(__host-|__secure-)?aiqso_/i;

export function isPlatformCookie(name: string): boolean {
  return PLATFORM.test(name);
}

/** The value of cookie `name` in a Cookie header (the first one), if present. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  let at = 0;
  while (at < header.length) {
    const end = header.indexOf(';', at);
    const stop = end < 0 ? header.length : end;
    const eq = header.indexOf('=', at);
    if (eq > 0 && eq < stop && header.slice(at, eq).trim() === name) return header.slice(eq + 1, stop).trim();
    at = stop + 1;
  }
  return undefined;
}

/**
 * A Cookie header with only the platform's cookies (`platform` true: for the
 * dashboard) or only the others (for a service); undefined when none remain.
 * A pair without `=` has no name a browser would send, and is dropped.
 */
export function filterCookies(header: string, platform: boolean): string | undefined {
  const kept: string[] = [];
  for (const part of header.split(';')) {
    const pair = part.trim();
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    if (isPlatformCookie(pair.slice(0, eq).trim()) === platform) kept.push(pair);
  }
  return kept.length ? kept.join('; ') : undefined;
}

/** The cookie a Set-Cookie value sets (its name), lower-cased as compared. */
export function setCookieName(value: string): string {
  const eq = value.indexOf('=');
  return (eq < 0 ? value : value.slice(0, eq)).trim();
}
