import { SIGN_IN_JSON_BODY } from '../auth/identity.ts';
import { ANSWER_COOKIE, ANSWER_LOGIN, AUTH_PATH, MODE_HEADER, URI_HEADER } from '../auth/nginx-answer.ts';
import type { EdgeRoute } from '../route-table.ts';

/**
 * The nginx edge's share of the sign-in in front of tenant services (pure).
 * nginx cannot verify an edge session nor tell cookies apart by name, so for
 * what it proxies straight to a tenant's upstream it asks the internal builtin
 * edge (`auth_request`, src/edge/auth/nginx-answer.ts), which answers with the
 * identity headers and the Cookie header the upstream gets. Each direct route
 * is rendered with its mode: `dash` (a host's root: the dashboard, which gets
 * only the platform's cookies), `app` (a service with its own login) or `edge`
 * (the platform's sign-in), and its tenant. Requests that carry no cookie to a
 * route needing no sign-in skip the subrequest; so does whatever nginx sends
 * to the internal edge anyway (routes with public paths among them), which
 * applies the same rules itself.
 */
export interface AuthMaps {
  root: string[];
  services: string[];
}

export function emptyAuthMaps(): AuthMaps {
  return { root: [], services: [] };
}

/** Add one route (already checked to be safe to render) to the maps. */
export function addAuthRoute(maps: AuthMaps, r: EdgeRoute, direct: boolean): void {
  const tenant = r.tenantId ?? '-';
  if (r.pathPrefix === '') {
    if (direct) maps.root.push(`    "${r.hostname}" "dash ${tenant}";`);
    return;
  }
  const key = `"${r.hostname}${r.pathPrefix}"`;
  if (!direct) {
    maps.services.push(`    ${key} internal;`);
    return;
  }
  maps.services.push(`    ${key} "${r.auth === 'edge' ? 'edge' : 'app'} ${tenant}";`);
}

/**
 * Request headers that mean something to the platform besides the identity headers: a dashboard's
 * key and the client address it vouches for (read by the internal edge and the API), and the
 * nginx edge's own subrequest answers. The internal edge reads and strips them itself, so what goes
 * there keeps them; a tenant's upstream never gets a client's. Every `x-aiqso-*` name the platform
 * uses is here or among the identity headers (test/edge.nginx.test.ts checks the source for it).
 */
export const PLATFORM_REQUEST_HEADERS = [
  'x-aiqso-dashboard-key',
  'x-aiqso-client-address',
  'x-aiqso-key',
  MODE_HEADER,
  URI_HEADER,
  ANSWER_COOKIE,
  ANSWER_LOGIN,
] as const;

const variableOf = (header: string) => `$aiqso_pass_${header.slice('x-aiqso-'.length).replace(/-/g, '_')}`;

/** The `http`-level maps deciding each request's sign-in mode and whether to ask the internal edge. */
export function authMapLines(maps: AuthMaps): string[] {
  return [
    // A platform header goes on only to the internal edge (mode "" or "internal"), never to a tenant.
    ...PLATFORM_REQUEST_HEADERS.map(
      (h) =>
        `  map $aiqso_mode ${variableOf(h)} { "" $http_${h.replace(/-/g, '_')}; internal $http_${h.replace(/-/g, '_')}; default ""; }`,
    ),
    '  map $host $aiqso_root_mode {',
    '    default "";',
    ...maps.root,
    '  }',
    '  map "$host$aiqso_seg" $aiqso_service_mode {',
    '    default "";',
    ...maps.services,
    '  }',
    '  map $aiqso_service_mode $aiqso_mode { "" $aiqso_root_mode; default $aiqso_service_mode; }',
    // "-": no subrequest (nothing to check, no cookie to sort, or the internal edge decides itself).
    '  map "$aiqso_mode|$http_cookie" $aiqso_need {',
    '    default $aiqso_mode;',
    '    "~^\\|" "-";',
    '    "~^internal\\|" "-";',
    '    "~^edge " $aiqso_mode;',
    '    "~\\|$" "-";',
    '  }',
    '  map $aiqso_check $aiqso_cookie_out { "-" $http_cookie; default $aiqso_cookie; }',
  ];
}

/** Lines of `location /` before its rewrite: what the sign-in sets up and passes on. */
export function authLocationLines(): string[] {
  return [
    // Decided on the request as the client sent it, before the rewrite strips a prefix.
    '      set $aiqso_check $aiqso_need;',
  ];
}

/** Lines of `location /` after its rewrite. */
export function authProxyLines(): string[] {
  return [
    `      auth_request ${AUTH_PATH};`,
    '      auth_request_set $aiqso_user_id $upstream_http_x_aiqso_user_id;',
    '      auth_request_set $aiqso_user_email $upstream_http_x_aiqso_user_email;',
    '      auth_request_set $aiqso_user_role $upstream_http_x_aiqso_user_role;',
    '      auth_request_set $aiqso_tenant_id $upstream_http_x_aiqso_tenant_id;',
    `      auth_request_set $aiqso_cookie $upstream_http_${ANSWER_COOKIE.replace(/-/g, '_')};`,
    `      auth_request_set $aiqso_login $upstream_http_${ANSWER_LOGIN.replace(/-/g, '_')};`,
    '      error_page 401 = @aiqso_signin;',
    // Set (or, when empty, removed) on every request: a client's own never gets through.
    '      proxy_set_header X-AIQSO-User-Id $aiqso_user_id;',
    '      proxy_set_header X-AIQSO-User-Email $aiqso_user_email;',
    '      proxy_set_header X-AIQSO-User-Role $aiqso_user_role;',
    '      proxy_set_header X-AIQSO-Tenant-Id $aiqso_tenant_id;',
    ...PLATFORM_REQUEST_HEADERS.map((h) => `      proxy_set_header ${headerName(h)} ${variableOf(h)};`),
    '      proxy_set_header Cookie $aiqso_cookie_out;',
  ];
}

/** The subrequest's location and the sign-in answer's. */
export function authLocations(): string[] {
  return [
    `    location = ${AUTH_PATH} {`,
    '      internal;',
    '      if ($aiqso_check = "-") { return 204; }',
    '      proxy_pass http://aiqso_internal;',
    '      proxy_pass_request_body off;',
    '      proxy_set_header Content-Length "";',
    '      proxy_set_header Host $host;',
    `      proxy_set_header ${headerName(MODE_HEADER)} $aiqso_check;`,
    `      proxy_set_header ${headerName(URI_HEADER)} $request_uri;`,
    '      proxy_set_header X-Forwarded-For $remote_addr;',
    '      proxy_set_header X-Forwarded-Proto $scheme;',
    '      proxy_set_header Connection "";',
    '    }',
    '    location @aiqso_signin {',
    '      absolute_redirect off;',
    '      if ($aiqso_login) { return 302 $aiqso_login; }',
    '      default_type application/json;',
    `      return 401 '${SIGN_IN_JSON_BODY}';`,
    '    }',
  ];
}

const headerName = (lower: string) =>
  lower
    .split('-')
    .map((w) => (w === 'aiqso' ? 'AIQSO' : w[0]!.toUpperCase() + w.slice(1)))
    .join('-');
