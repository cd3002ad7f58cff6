import type { IncomingMessage } from 'node:http';
import type { EdgePage } from '../pages.ts';
import { normalizeTarget } from '../normalize.ts';
import { filterCookies } from './cookies.ts';
import { DASHBOARD_GRANT, needSession, SERVICE_GRANT, SIGN_IN, type Access } from './gate.ts';
import { loginLocation, wantsHtml } from './identity.ts';
import type { EdgeSessionVerifier } from './verifier.ts';

/**
 * The nginx edge's sign-in: nginx sends what it proxies straight to a tenant's
 * upstream through an `auth_request` to the internal builtin edge, at
 * AUTH_PATH, naming the route's sign-in mode and tenant in MODE_HEADER as it
 * rendered them (`edge <tenant>`, `app <tenant>` or `dash <tenant>`) and the
 * client's request URI in URI_HEADER; the client's
 * own headers (Host, Cookie, Accept) come along. The answer is 204 with the
 * identity headers and the Cookie header the upstream gets (ANSWER_COOKIE), or
 * 401 with, for a browser, where to sign in (ANSWER_LOGIN). The same rules as
 * the builtin edge's (src/edge/auth/gate.ts) decide.
 */
export const AUTH_PATH = '/.aiqso-auth';
export const MODE_HEADER = 'x-aiqso-auth-mode';
export const URI_HEADER = 'x-aiqso-auth-uri';
export const ANSWER_COOKIE = 'x-aiqso-cookie';
export const ANSWER_LOGIN = 'x-aiqso-login';

const MODE = /^(edge|app|dash) ([\w-]{1,64})$/;

/** The auth answer to nginx's subrequest `req` for `host`. */
export function nginxAuthAnswer(
  verifier: EdgeSessionVerifier,
  req: IncomingMessage,
  host: string,
): EdgePage | Promise<EdgePage> {
  const mode = MODE.exec(String(req.headers[MODE_HEADER] ?? ''));
  const cookie = req.headers.cookie;
  if (!mode) return answer(SIGN_IN, req, cookie);
  const [, kind, tenantId] = mode;
  if (kind === 'dash') return answer(DASHBOARD_GRANT, req, cookie);
  if (kind !== 'edge') return answer(SERVICE_GRANT, req, cookie);
  // `-`: a route without a tenant, which has no members to let in.
  const access = needSession(verifier, tenantId === '-' ? null : tenantId!, host, cookie);
  return access instanceof Promise ? access.then((a) => answer(a, req, cookie)) : answer(access, req, cookie);
}

function answer(access: Access, req: IncomingMessage, cookie: string | undefined): EdgePage {
  if (access === SIGN_IN) {
    const headers: Record<string, string> = { 'content-type': 'text/plain' };
    if (wantsHtml(req.headers.accept)) headers[ANSWER_LOGIN] = loginLocation(requestPath(req));
    return { status: 401, headers, html: '' };
  }
  const headers: Record<string, string> = {};
  const kept = cookie === undefined ? undefined : filterCookies(cookie, access.cookies === 'platform');
  if (kept !== undefined) headers[ANSWER_COOKIE] = kept;
  const identity = access.identity?.headers ?? [];
  for (let i = 0; i < identity.length; i += 2) headers[identity[i]!] = identity[i + 1]!;
  return { status: 204, headers, html: '' };
}

/** The client's path and query, normalised as the builtin edge would, to come back to after signing in. */
function requestPath(req: IncomingMessage): string {
  try {
    const target = normalizeTarget(String(req.headers[URI_HEADER] ?? '/'), 'localhost');
    return target.path + target.query;
  } catch {
    return '/';
  }
}
