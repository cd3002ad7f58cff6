import type { EdgePage } from '../pages.ts';

/**
 * What a service learns about the signed-in user, in headers the edge sets on
 * requests it lets through an `edge` route. Every client's `x-aiqso-*` header
 * is dropped on every route first, so a service can believe these.
 */
export const IDENTITY_HEADERS = {
  userId: 'x-aiqso-user-id',
  email: 'x-aiqso-user-email',
  role: 'x-aiqso-user-role',
  tenantId: 'x-aiqso-tenant-id',
} as const;

/** Header names only the edge may set (its identity headers, and those of its auth answers to nginx). */
export const isEdgeHeader = (name: string): boolean => name.startsWith('x-aiqso-');

/** A header value as sent: visible ASCII as is, anything else percent-encoded. */
function headerValue(value: string): string {
  return /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
}

export function identityHeaders(userId: string, email: string, role: string, tenantId: string): string[] {
  return [
    IDENTITY_HEADERS.userId,
    headerValue(userId),
    IDENTITY_HEADERS.email,
    headerValue(email),
    IDENTITY_HEADERS.role,
    headerValue(role),
    IDENTITY_HEADERS.tenantId,
    headerValue(tenantId),
  ];
}

/** A browser navigating (it asks for HTML) rather than a script or an API client. */
export function wantsHtml(accept: string | string[] | undefined): boolean {
  const value = Array.isArray(accept) ? accept.join(',') : accept;
  return value !== undefined && value.includes('text/html');
}

/**
 * The tenant's sign-in page (the dashboard serves it on the same host), with
 * the request's own path to come back to; `/` stays readable, what would
 * change the query's meaning is escaped.
 */
export function loginLocation(pathAndQuery: string): string {
  return `/login?next=${encodeURIComponent(pathAndQuery).replace(/%2F/g, '/')}`;
}

const SIGN_IN_MESSAGE = 'sign in to this workspace to reach this service';
const SIGN_IN_JSON = JSON.stringify({ error: { code: 'unauthenticated', message: SIGN_IN_MESSAGE } });

/** The answer to a request an `edge` route refused: a browser is sent to sign in, anyone else gets a 401. */
export function signInPage(browser: boolean, pathAndQuery: string): EdgePage {
  if (browser) {
    return {
      status: 302,
      headers: { location: loginLocation(pathAndQuery), 'content-type': 'text/plain' },
      html: 'Sign in first.\n',
    };
  }
  return { status: 401, headers: { 'content-type': 'application/json' }, html: SIGN_IN_JSON };
}

/** The body nginx sends for the same refusal (the nginx edge renders it into its configuration). */
export const SIGN_IN_JSON_BODY = SIGN_IN_JSON;
