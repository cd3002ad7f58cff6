import { HSTS } from '../https.ts';
import { isPublicPath, type EdgeRoute } from '../route-table.ts';
import {
  addAuthRoute,
  authLocationLines,
  authLocations,
  authMapLines,
  authProxyLines,
  emptyAuthMaps,
} from './render-auth.ts';

/**
 * The nginx edge's configuration, rendered by a pure function from the same
 * route table the builtin edge uses.
 *
 * Shape: one `server`, and maps keyed on the host (the tenant's root route)
 * and on host + first path segment (its services), each naming an upstream
 * block with a keep-alive pool. Only active routes with an upstream and no IP
 * lists go straight to their upstream; everything else — the base domain,
 * unknown hosts, suspended/provisioning routes, routes with allow/deny lists,
 * ACME challenges, routes with public paths — goes to the internal builtin
 * edge, which owns those pages and checks. The sign-in in front of tenant
 * services is rendered by
 * render-auth.ts. Hosts and upstreams that are not plain DNS names or
 * addresses are left out (and reported), so no route can inject configuration.
 *
 * With HTTPS: plain HTTP for a name goes to HTTPS (308; not ACME challenges,
 * not a request to an address), HTTPS answers carry HSTS, and TLS below
 * `minVersion` is refused, as on the builtin edge (src/edge/https.ts).
 */
export interface NginxRenderInput {
  routes: readonly EdgeRoute[];
  baseDomain: string;
  /** Working directory for pid, logs and temp files. */
  dir: string;
  listen: {
    bind: string;
    httpPort: number;
    https?: {
      port: number;
      certFile: string;
      keyFile: string;
      /** The oldest TLS version accepted (default TLSv1.3). */
      minVersion?: 'TLSv1.2' | 'TLSv1.3';
      /**
       * Per-host certificates, chosen by SNI (the default pair answers every
       * other name): by `serverName` (the file's), then by `altNames` (the
       * certificate's other DNS names) where no file is named for them.
       */
      sni?: readonly {
        serverName: string;
        altNames?: readonly string[];
        certFile: string;
        keyFile: string;
      }[];
    };
  };
  /** The internal builtin edge (platform app, pages, checks). */
  internal: { host: string; port: number };
  rate: { perIp: number; perTenant: number };
  /** proxy_read_timeout and proxy_send_timeout, as the builtin edge's upstream timeout (default 60). */
  upstreamTimeoutSeconds?: number;
  workerProcesses?: number | 'auto';
  maxBodyMb?: number;
}

export interface NginxRender {
  config: string;
  /** Routes (by id) and SNI certificates (by server name) left out, with the reason. */
  skipped: { id: string; reason: string }[];
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const PATH_PREFIX = /^\/[a-z0-9][a-z0-9-]*$/;
const CIDR = /^[0-9a-f.:]+(\/\d{1,3})?$/i;
const SERVER_NAME = /^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function upstreamName(u: { host: string; port: number }): string {
  return `u_${u.host.replace(/[^a-z0-9]/gi, '_')}_${u.port}`;
}

/**
 * Straight to the upstream. Not a route with IP lists, nor one with public
 * paths: matching a path against every route's public paths would be a list of
 * regular expressions nginx tries one by one on each request; the internal
 * edge looks at the route's own few.
 */
function direct(r: EdgeRoute): boolean {
  return (
    r.state === 'active' &&
    r.upstream !== null &&
    r.allowCidrs.length === 0 &&
    r.denyCidrs.length === 0 &&
    (r.auth !== 'edge' || r.publicPaths.length === 0)
  );
}

function check(r: EdgeRoute): string | undefined {
  if (!NAME.test(r.hostname)) return 'hostname is not a DNS name';
  if (r.pathPrefix !== '' && !PATH_PREFIX.test(r.pathPrefix)) return 'path prefix is not /segment';
  if (r.upstream && !(NAME.test(r.upstream.host) || IPV4.test(r.upstream.host)))
    return 'upstream host is not a DNS name or IPv4 address';
  if (r.upstream && !(Number.isInteger(r.upstream.port) && r.upstream.port > 0 && r.upstream.port < 65536))
    return 'bad upstream port';
  if (r.tenantId && !/^[\w-]+$/.test(r.tenantId)) return 'bad tenant id';
  if ([...r.allowCidrs, ...r.denyCidrs].some((c) => !CIDR.test(c))) return 'bad CIDR';
  if (r.publicPaths.some((p) => !isPublicPath(p))) return 'bad public path';
  return undefined;
}

function hashSize(n: number): number {
  let size = 1024;
  while (size < n * 2) size *= 2;
  return size;
}

export function renderNginxConfig(input: NginxRenderInput): NginxRender {
  const skipped: NginxRender['skipped'] = [];
  const root: string[] = [];
  const services: string[] = [];
  const strip: string[] = [];
  const tenants = new Map<string, string>();
  const upstreams = new Map<string, string>();
  const auth = emptyAuthMaps();
  for (const r of input.routes) {
    const problem = r.hostname === input.baseDomain ? 'the base domain belongs to the platform' : check(r);
    if (problem) {
      skipped.push({ id: r.id, reason: problem });
      continue;
    }
    const target = direct(r) ? upstreamName(r.upstream!) : 'aiqso_internal';
    if (direct(r)) upstreams.set(target, `${r.upstream!.host}:${r.upstream!.port}`);
    if (r.tenantId) tenants.set(r.hostname, r.tenantId);
    addAuthRoute(auth, r, direct(r));
    if (r.pathPrefix === '') root.push(`    "${r.hostname}" ${target};`);
    else {
      services.push(`    "${r.hostname}${r.pathPrefix}" ${target};`);
      if (direct(r) && r.stripPrefix) strip.push(`    "${r.hostname}${r.pathPrefix}" 1;`);
    }
  }
  const l = input.listen;
  const listens = [`    listen ${listenAddr(l.bind, l.httpPort)} default_server;`];
  if (l.https) listens.push(`    listen ${listenAddr(l.bind, l.https.port)} ssl default_server;`);
  const tls = l.https
    ? [
        `    ssl_certificate ${quote(l.https.certFile)};`,
        `    ssl_certificate_key ${quote(l.https.keyFile)};`,
      ]
    : [];
  // One server per SNI certificate, on the HTTPS port only, routing like the default one.
  const sniServers: string[][] = [];
  const sni = (l.https?.sni ?? []).filter((c) => {
    if (SERVER_NAME.test(c.serverName)) return true;
    skipped.push({ id: c.serverName, reason: 'certificate name is not a DNS name' });
    return false;
  });
  // A name belongs to the certificate whose file is named for it, else to the first holding it.
  const claimed = new Set(sni.map((c) => c.serverName));
  for (const c of sni) {
    const names = [c.serverName];
    for (const n of c.altNames ?? []) {
      if (!SERVER_NAME.test(n) || claimed.has(n)) continue;
      claimed.add(n);
      names.push(n);
    }
    sniServers.push([
      `    listen ${listenAddr(l.bind, l.https!.port)} ssl;`,
      `    server_name ${names.join(' ')};`,
      `    ssl_certificate ${quote(c.certFile)};`,
      `    ssl_certificate_key ${quote(c.keyFile)};`,
    ]);
  }
  const entries = Math.max(root.length, services.length, tenants.size);
  const limits = [
    ...(input.rate.perIp > 0
      ? [`  limit_req_zone $binary_remote_addr zone=aiqso_ip:16m rate=${input.rate.perIp}r/s;`]
      : []),
    ...(input.rate.perTenant > 0
      ? [`  limit_req_zone $aiqso_tenant zone=aiqso_tenant:16m rate=${input.rate.perTenant}r/s;`]
      : []),
  ];
  const limitUse = [
    ...(input.rate.perIp > 0 ? [`    limit_req zone=aiqso_ip burst=${input.rate.perIp} nodelay;`] : []),
    ...(input.rate.perTenant > 0
      ? [`    limit_req zone=aiqso_tenant burst=${input.rate.perTenant} nodelay;`]
      : []),
  ];
  const d = input.dir;
  const lines = [
    '# Generated by aiqso from the route table. Do not edit: the next render replaces it.',
    `worker_processes ${input.workerProcesses ?? 'auto'};`,
    `pid ${quote(`${d}/nginx.pid`)};`,
    `error_log ${quote(`${d}/error.log`)} warn;`,
    'events { worker_connections 8192; }',
    'http {',
    `  log_format aiqso escape=json '{"time":"$time_iso8601","tenantId":"$aiqso_tenant","route":"$host$aiqso_seg","host":"$host","path":"$aiqso_log_path","status":$status,"ms":$request_time,"bytes":$body_bytes_sent,"upstream":"$upstream_addr"}';`,
    `  access_log ${quote(`${d}/access.log`)} aiqso buffer=64k flush=1s;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
      (t) => `  ${t}_temp_path ${quote(`${d}/tmp/${t}`)};`,
    ),
    `  client_max_body_size ${input.maxBodyMb ?? 10}m;`,
    '  client_header_timeout 20s; client_body_timeout 60s; send_timeout 60s; keepalive_timeout 5s;',
    '  server_tokens off;',
    `  map_hash_max_size ${hashSize(entries)}; map_hash_bucket_size 128;`,
    '  proxy_http_version 1.1;',
    `  proxy_connect_timeout 3s; proxy_read_timeout ${input.upstreamTimeoutSeconds ?? 60}s; proxy_send_timeout ${input.upstreamTimeoutSeconds ?? 60}s;`,
    '  proxy_buffering off;',
    '  map $http_upgrade $aiqso_connection { default upgrade; "" ""; }',
    '  map $uri $aiqso_seg { default ""; "~^(?<seg>/[a-z0-9][a-z0-9-]*)(/|$)" $seg; }',
    '  map $uri $aiqso_rest { default "/"; "~^/[^/]+(?<rest>/.*)$" $rest; }',
    '  map $host $aiqso_root {',
    '    default aiqso_internal;',
    ...root,
    '  }',
    '  map "$host$aiqso_seg" $aiqso_service {',
    '    default "";',
    ...services,
    '  }',
    '  map $aiqso_service $aiqso_up { "" $aiqso_root; default $aiqso_service; }',
    '  map "$host$aiqso_seg" $aiqso_strip {',
    '    default 0;',
    ...strip,
    '  }',
    '  map $aiqso_strip $aiqso_forward { default $uri; 1 $aiqso_rest; }',
    // The request target as logs may keep it (src/observability/redact.ts): a checkout page's id
    // is its credential and a query may carry a token; nginx cannot tell parameters apart, so the
    // whole query is replaced.
    '  map $request_uri $aiqso_log_path {',
    '    default $request_uri;',
    '    "~^(?<before>[^?]*/billing/checkout/)[^/?]+(?<after>[^?]*)" "${before}[redacted]${after}";',
    '    "~^(?<target>[^?]*)\\?" "${target}?[redacted]";',
    '  }',
    ...authMapLines(auth),
    ...httpsLines(l.https),
    '  map $host $aiqso_tenant {',
    '    default "";',
    ...[...tenants].map(([h, t]) => `    "${h}" ${t};`),
    '  }',
    ...limits,
    '  limit_req_status 429;',
    `  upstream aiqso_internal { server ${input.internal.host}:${input.internal.port}; keepalive 64; }`,
    ...[...upstreams].map(([name, addr]) => `  upstream ${name} { server ${addr}; keepalive 16; }`),
    ...server([...listens, ...tls, '    server_name _;', ...toHttps(l.https?.port)], limitUse),
    ...sniServers.flatMap((head) => server(head, limitUse)),
    '}',
    '',
  ];
  return { config: lines.join('\n'), skipped };
}

/** With HTTPS: its protocols, and the HSTS value for HTTPS answers (empty, so not sent, over HTTP). */
function httpsLines(https: NginxRenderInput['listen']['https']): string[] {
  if (!https) return ['  map $scheme $aiqso_hsts { default ""; }'];
  return [
    `  ssl_protocols ${https.minVersion === 'TLSv1.2' ? 'TLSv1.2 TLSv1.3' : 'TLSv1.3'};`,
    `  map $scheme $aiqso_hsts { https "${HSTS}"; default ""; }`,
    // Plain HTTP for a name (its last character a letter, not an address's digit or `]`), not ACME.
    '  map "$scheme|$host|$uri" $aiqso_to_https {',
    '    default 0;',
    '    "~^http\\|[^|]*\\|/\\.well-known/acme-challenge/" 0;',
    '    "~^http\\|[^|]*[a-z]\\|" 1;',
    '  }',
  ];
}

/** The default server's redirect of plain HTTP to the HTTPS port. */
function toHttps(port: number | undefined): string[] {
  if (port === undefined) return [];
  const suffix = port === 443 ? '' : `:${port}`;
  return [`    if ($aiqso_to_https) { return 308 https://$host${suffix}$request_uri; }`];
}

/** A `server` block: its listen/name/certificate lines, then the routing every server shares. */
function server(head: string[], limitUse: string[]): string[] {
  return [
    '  server {',
    ...head,
    // The same refusals as the builtin edge: an encoded slash, backslash or NUL in the path.
    '    if ($request_uri ~* "^[^?]*(%2f|%5c|%00|\\x5c)") { return 400; }',
    '    add_header Strict-Transport-Security $aiqso_hsts always;',
    ...limitUse,
    '    error_page 429 = @aiqso_limited;',
    '    location @aiqso_limited {',
    '      add_header Strict-Transport-Security $aiqso_hsts always;',
    '      add_header Retry-After 1 always;',
    '      return 429 "Too many requests\\n";',
    '    }',
    ...authLocations(),
    '    location / {',
    ...authLocationLines(),
    '      rewrite ^ $aiqso_forward break;',
    ...authProxyLines(),
    '      proxy_set_header Host $host;',
    '      proxy_set_header X-Forwarded-For $remote_addr;',
    '      proxy_set_header X-Real-IP $remote_addr;',
    '      proxy_set_header X-Forwarded-Proto $scheme;',
    '      proxy_set_header X-Forwarded-Host $host;',
    '      proxy_set_header Forwarded "";',
    '      proxy_set_header Upgrade $http_upgrade;',
    '      proxy_set_header Connection $aiqso_connection;',
    '      proxy_pass http://$aiqso_up;',
    '    }',
    '  }',
  ];
}

function quote(path: string): string {
  if (/["\\\n;{}$]/.test(path)) throw new Error(`path not usable in nginx configuration: ${path}`);
  return `"${path}"`;
}

function listenAddr(bind: string, port: number): string {
  return bind.includes(':') ? `[${bind}]:${port}` : `${bind}:${port}`;
}
