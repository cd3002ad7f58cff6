import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import type { BlockList } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ProxyServer } from 'http-proxy-3';
import type { Logger } from '../observability/logger.ts';
import { metricsRefusal } from '../observability/metrics-access.ts';
import type { EdgeMetrics, HistogramSeries } from './edge-metrics.ts';
import { createAccessLog } from './access-log.ts';
import { createGate, SIGN_IN, type Access, type Grant } from './auth/gate.ts';
import { signInPage, wantsHtml } from './auth/identity.ts';
import { AUTH_PATH, nginxAuthAnswer } from './auth/nginx-answer.ts';
import type { EdgeSessionVerifier } from './auth/verifier.ts';
import { createForwarder, type ForwardError } from './forward.ts';
import {
  clientIp,
  compileCidrs,
  inList,
  setForwardingHeaders,
  upstreamRequestHeaders,
} from './forwarding.ts';
import { ACME_CHALLENGE_PREFIX, HSTS, httpsRedirect } from './https.ts';
import { normalizeTarget, TargetError, type NormalizedTarget } from './normalize.ts';
import { edgePages, PAGE_HEADERS, pages, type EdgePage, type TenantPageFacts } from './pages.ts';
import { budgetKey, type EdgeRateLimiter } from './rate-limit.ts';
import { isIpLiteral, matchRoute, type EdgeRoute, type RouteMatch, type RouteTable } from './route-table.ts';

export interface ChallengeResponder {
  /** The key authorisation for an HTTP-01 token, if this platform is answering one. */
  keyAuthorization(token: string): Promise<string | undefined>;
}

export interface EdgeHandlerOptions {
  baseDomain: string;
  routes: () => RouteTable;
  /**
   * Who serves the base domain (the portal and API): the platform's app in
   * this process (Fastify's `routing`), or a platform listener elsewhere that
   * requests are forwarded to, like any route's (`aiqso edge` with
   * AIQSO_EDGE_PLATFORM_URL). A forwarding edge answers `/healthz` and
   * `/metrics` (its own) itself when asked by address rather than by name.
   */
  platform:
    | { serve: (req: IncomingMessage, res: ServerResponse) => void }
    | { upstream: { host: string; port: number }; metrics: () => Promise<{ type: string; text: string }> };
  limiter: EdgeRateLimiter;
  /** Checks edge session tokens for the routes that sign users in at the edge. */
  edgeSessions: EdgeSessionVerifier;
  /**
   * The internal edge behind nginx: answer nginx's sign-in subrequests at
   * AUTH_PATH (src/edge/auth/nginx-answer.ts).
   */
  nginxAuth?: boolean;
  /**
   * With a certificate configured: the HTTPS port plain HTTP is sent to (read
   * per request: a port chosen at listen time is known only then), and HSTS on
   * HTTPS answers.
   */
  https?: { port: number };
  /** Bearer token for a forwarding edge's own /metrics (none: loopback clients only). */
  metricsToken?: string;
  /** What the pages say of a tenant (its steps, status, reason, purge date), shared between requests. */
  tenantFacts: (tenantId: string) => Promise<TenantPageFacts>;
  challenges?: ChallengeResponder;
  trustedProxies?: BlockList;
  /** Addresses of platform-internal callers (dashboards), budgeted by credential (`budgetKey`). */
  internalCallers?: BlockList;
  log: Logger;
  metrics: EdgeMetrics;
  maxBodyBytes?: number;
  connectTimeoutMs?: number;
  upstreamTimeoutMs?: number;
}

export interface EdgeHandler {
  request(req: IncomingMessage, res: ServerResponse): void;
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
}

type Decision =
  | { kind: 'page'; page: EdgePage; route?: EdgeRoute; tenantId?: string | null }
  | { kind: 'platform'; target: NormalizedTarget; serve: (req: IncomingMessage, res: ServerResponse) => void }
  | {
      kind: 'proxy';
      route: EdgeRoute;
      upstream: { host: string; port: number };
      url: string;
      host: string;
      /** For a tenant's upstream: its cookies and the signed-in user. */
      grant?: Grant;
    };

/**
 * The builtin edge's request path: normalise once, match, check access and
 * budgets, then hand to the platform app or proxy to the route's upstream.
 * Upstream addresses come only from the route table.
 */
export function createEdgeHandler(o: EdgeHandlerOptions): EdgeHandler {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, timeout: 60_000 });
  // WebSocket upgrades only; plain requests go through `forward`.
  let wsProxy: Promise<ProxyServer> | undefined;
  const maxBody = o.maxBodyBytes ?? 10 * 1024 * 1024;
  const connectTimeout = o.connectTimeoutMs ?? 3000;
  const acl = new WeakMap<EdgeRoute, { allow?: BlockList; deny?: BlockList }>();
  // A forwarding edge's base domain, as a route of its own (in metrics and access lines: `platform`).
  const platformRoute: EdgeRoute | undefined =
    'upstream' in o.platform
      ? {
          id: 'platform',
          hostname: o.baseDomain,
          pathPrefix: '',
          tenantId: null,
          tenantServiceId: null,
          upstream: o.platform.upstream,
          stripPrefix: false,
          state: 'active',
          allowCidrs: [],
          denyCidrs: [],
          auth: 'app',
          publicPaths: [],
          tally: undefined,
          tenantBudget: undefined,
        }
      : undefined;
  const accessLog = createAccessLog(o.log);
  const refused = o.metrics.duration.series('refused');
  const platformServed = o.metrics.duration.series('platform');
  const proxied = o.metrics.duration.series('proxied');
  const gate = createGate(o.edgeSessions);
  /** Metrics and the access line of an exchange that is over. */
  function record(
    req: IncomingMessage,
    path: string | undefined,
    status: number,
    started: number,
    route: EdgeRoute | undefined,
    outcome: HistogramSeries,
  ) {
    const ms = performance.now() - started;
    outcome.observe(ms / 1000);
    if (route) o.metrics.countRequest(route, status);
    accessLog?.write({
      tenantId: route?.tenantId,
      route: route?.id,
      host: req.headers.host,
      method: req.method,
      path,
      status,
      ms,
    });
  }
  const forwarder = createForwarder<Pass>(
    { connectTimeoutMs: connectTimeout, idleTimeoutMs: o.upstreamTimeoutMs ?? 60_000 },
    {
      ended: (p, res) =>
        record(p.req, p.path, res.headersSent ? res.statusCode : CLIENT_LEFT, p.started, p.route, proxied),
      failed: (_p, res, err) => proxyError(err, res),
    },
  );

  /**
   * The WebSocket proxy, made at the first upgrade: http-proxy-3 is 1.7 MB of
   * heap that an edge without WebSocket traffic never needs.
   */
  function websocketProxy(): Promise<ProxyServer> {
    wsProxy ??= import('http-proxy-3').then(({ ProxyServer }) => {
      const proxy = new ProxyServer({ agent, toProxy: true, proxyTimeout: o.upstreamTimeoutMs ?? 60_000 });
      proxy.on('proxyReq', (proxyReq) => {
        proxyReq.on('socket', (socket) => {
          if (!socket.connecting) return;
          const timer = setTimeout(
            () => proxyReq.destroy(new Error('upstream connect timeout')),
            connectTimeout,
          );
          socket.once('connect', () => clearTimeout(timer));
          proxyReq.once('close', () => clearTimeout(timer));
        });
      });
      return proxy;
    });
    return wsProxy;
  }

  function allowed(route: EdgeRoute, ip: string): boolean {
    if (route.allowCidrs.length === 0 && route.denyCidrs.length === 0) return true;
    let lists = acl.get(route);
    if (!lists) {
      lists = {
        allow: route.allowCidrs.length ? compileCidrs(route.allowCidrs).list : undefined,
        deny: route.denyCidrs.length ? compileCidrs(route.denyCidrs).list : undefined,
      };
      acl.set(route, lists);
    }
    if (lists.deny && inList(lists.deny, ip)) return false;
    return !lists.allow || inList(lists.allow, ip);
  }

  /**
   * The edge's pages with a way back to the platform's front page, at the
   * scheme and port the visitor used to reach this host.
   */
  function pagesFor(req: IncomingMessage) {
    const port = /:(\d+)$/.exec(req.headers.host ?? '')?.[1];
    return edgePages(`${encrypted(req) ? 'https' : 'http'}://${o.baseDomain}${port ? `:${port}` : ''}/`);
  }

  /**
   * What to do with a request. Synchronous unless something has to be waited
   * for (an ACME answer, a Redis budget, provisioning steps): most requests
   * cost no promise at all.
   */
  function decide(req: IncomingMessage, ip: string): Decision | Promise<Decision> {
    let target: NormalizedTarget;
    try {
      target = normalizeTarget(req.url, req.headers.host);
    } catch (err) {
      if (err instanceof TargetError) return { kind: 'page', page: pagesFor(req).badRequest(err.message) };
      throw err;
    }
    const budget = budgetKey(req, ip, o.internalCallers);
    const acme = target.path.startsWith(ACME_CHALLENGE_PREFIX);
    if (o.challenges && acme) return challenge(o.challenges, target, ip, req, budget);
    if (o.https && !acme && !encrypted(req) && !isIpLiteral(target.host))
      return { kind: 'page', page: httpsRedirect(target, o.https.port) };
    if (o.nginxAuth && target.path === AUTH_PATH) {
      const page = nginxAuthAnswer(o.edgeSessions, req, target.host);
      return page instanceof Promise ? page.then(nginxAnswer) : nginxAnswer(page);
    }
    return decideRoute(target, ip, req, budget);
  }

  async function challenge(
    c: ChallengeResponder,
    target: NormalizedTarget,
    ip: string,
    req: IncomingMessage,
    budget: string,
  ): Promise<Decision> {
    const answer = await c.keyAuthorization(target.path.slice(ACME_CHALLENGE_PREFIX.length));
    if (answer !== undefined) return { kind: 'page', page: { status: 200, html: answer, headers: TEXT } };
    return decideRoute(target, ip, req, budget);
  }

  function decideRoute(
    target: NormalizedTarget,
    ip: string,
    req: IncomingMessage,
    budget: string,
  ): Decision | Promise<Decision> {
    if ('upstream' in o.platform && isIpLiteral(target.host)) {
      if (target.path === '/healthz')
        return { kind: 'page', page: { status: 200, html: OK, headers: JSON_TYPE } };
      if (target.path === '/metrics') {
        const refusal = metricsRefusal(o.metricsToken, req.headers.authorization, ip);
        if (refusal) return { kind: 'page', page: jsonError(refusal.status, refusal.code, refusal.message) };
        return o.platform.metrics().then(({ type, text }) => ({
          kind: 'page',
          page: { status: 200, html: text, headers: { 'content-type': type } },
        }));
      }
    }
    const match = matchRoute(o.routes(), o.baseDomain, target.host, target.path);
    if (match.kind === 'unknown_host') return { kind: 'page', page: pagesFor(req).unknownHost() };
    if (match.kind === 'no_route')
      return { kind: 'page', page: pagesFor(req).noRoute(), tenantId: match.tenantId };
    const route = match.kind === 'route' ? match.route : undefined;
    const tenantId = route?.tenantId ?? null;
    if (route && !allowed(route, ip))
      return { kind: 'page', page: pagesFor(req).forbidden(), route, tenantId };
    const wait = o.limiter.check(budget, tenantId, route);
    if (typeof wait === 'number') return afterBudget(wait, match, target, route, tenantId, req);
    return wait.then((w) => afterBudget(w, match, target, route, tenantId, req));
  }

  function afterBudget(
    wait: number,
    match: RouteMatch,
    target: NormalizedTarget,
    route: EdgeRoute | undefined,
    tenantId: string | null,
    req: IncomingMessage,
  ): Decision | Promise<Decision> {
    if (wait > 0) return { kind: 'page', page: pagesFor(req).rateLimited(wait), route, tenantId };
    if (match.kind !== 'route') {
      if ('serve' in o.platform) return { kind: 'platform', target, serve: o.platform.serve };
      return {
        kind: 'proxy',
        route: platformRoute!,
        upstream: o.platform.upstream,
        url: target.path + target.query,
        host: target.host,
      };
    }
    const r = match.route;
    if (r.state === 'suspended') {
      if (!r.tenantId) return { kind: 'page', page: pagesFor(req).suspended(), route: r, tenantId };
      return o.tenantFacts(r.tenantId).then((tenant) => ({
        kind: 'page',
        page: pagesFor(req).suspended(tenant),
        route: r,
        tenantId,
      }));
    }
    if (r.state === 'provisioning' && r.tenantId) {
      return o.tenantFacts(r.tenantId).then(({ company, steps }) => ({
        kind: 'page',
        page: pagesFor(req).provisioning(company, steps),
        route: r,
        tenantId,
      }));
    }
    if (r.state !== 'active' || !r.upstream) {
      return { kind: 'page', page: pagesFor(req).unavailable(), route: r, tenantId };
    }
    const upstream = r.upstream;
    const url = match.forwardPath + target.query;
    const toProxy = (access: Access): Decision => {
      if (access === SIGN_IN) {
        const page = signInPage(wantsHtml(req.headers.accept), target.path + target.query);
        return { kind: 'page', page, route: r, tenantId };
      }
      return { kind: 'proxy', route: r, upstream, url, host: target.host, grant: access };
    };
    const access = gate(r, target.host, target.path, req.headers.cookie);
    return access instanceof Promise ? access.then(toProxy) : toProxy(access);
  }

  /** Act on `decide`'s answer now when it has one, or when it comes. */
  function decided(
    req: IncomingMessage,
    ip: string,
    act: (d: Decision) => void,
    failed: (err: unknown) => void,
  ): void {
    let d: Decision | Promise<Decision>;
    try {
      d = decide(req, ip);
    } catch (err) {
      return failed(err);
    }
    if (d instanceof Promise) d.then(act, failed);
    else act(d);
  }

  /** When an answer written here is over (written, or the client gone): metrics and the access line. */
  function finish(
    req: IncomingMessage,
    path: string | undefined,
    res: ServerResponse,
    started: number,
    route: EdgeRoute | undefined,
    outcome: HistogramSeries,
  ) {
    res.on('close', () => record(req, path, res.statusCode, started, route, outcome));
  }

  function send(res: ServerResponse, page: EdgePage) {
    if (res.headersSent) return void res.destroy();
    res.writeHead(page.status, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      ...PAGE_HEADERS,
      ...page.headers,
    });
    res.end(page.html);
  }

  function proxyError(err: ForwardError, res: ServerResponse | Duplex) {
    const p = 'req' in res ? pagesFor(res.req) : pages;
    const page = /timeout/i.test(err.message) ? p.gatewayTimeout() : p.badGateway();
    if ('writeHead' in res) send(res, page);
    else writeRaw(res, page);
  }

  return {
    request(req, res) {
      const started = performance.now();
      const path = req.url;
      const ip = clientIp(req, o.trustedProxies);
      if (o.https && encrypted(req)) res.setHeader('strict-transport-security', HSTS);
      decided(
        req,
        ip,
        (d) => {
          if (d.kind === 'page') {
            finish(req, path, res, started, d.route, refused);
            return send(res, d.page);
          }
          if (d.kind === 'platform') {
            finish(req, path, res, started, undefined, platformServed);
            setForwardingHeaders(req, ip, d.target.host);
            req.url = d.target.path + d.target.query;
            return d.serve(req, res);
          }
          const length = Number(req.headers['content-length'] ?? 0);
          if (length > maxBody) {
            finish(req, path, res, started, d.route, refused);
            return send(res, pagesFor(req).tooLarge());
          }
          const body =
            length > 0 || req.headers['transfer-encoding'] !== undefined
              ? Readable.from(limitedBody(req, res, maxBody), { objectMode: false })
              : null;
          const headers = upstreamRequestHeaders(req, ip, d.host, d.grant);
          forwarder.forward(
            req,
            res,
            { upstream: d.upstream, path: d.url, headers, body, service: d.grant?.cookies === 'service' },
            {
              req,
              path,
              started,
              route: d.route,
            },
          );
        },
        (err: unknown) => {
          o.log.error({ err }, 'edge request failed');
          send(res, pagesFor(req).unavailable());
        },
      );
    },
    upgrade(req, socket, head) {
      const ip = clientIp(req, o.trustedProxies);
      socket.on('error', () => socket.destroy());
      decided(
        req,
        ip,
        (d) => {
          if (d.kind === 'page') return writeRaw(socket, d.page);
          if (d.kind === 'platform') return writeRaw(socket, pages.noRoute());
          setForwardingHeaders(req, ip, d.host, d.grant);
          req.url = d.url;
          websocketProxy().then(
            (proxy) => proxy.ws(req, socket, head, { target: d.upstream }, (err) => proxyError(err, socket)),
            () => writeRaw(socket, pages.unavailable()),
          );
        },
        () => writeRaw(socket, pages.unavailable()),
      );
    },
    close() {
      accessLog?.close();
      agent.destroy();
      void wsProxy?.then((proxy) => proxy.close());
      void forwarder.close();
    },
  };
}

/** What the forwarder carries for an exchange, to record it when it is over. */
interface Pass {
  req: IncomingMessage;
  path: string | undefined;
  started: number;
  route: EdgeRoute;
}

/** Recorded for a client that left before any answer (nginx's 499, "client closed request"). */
const CLIENT_LEFT = 499;

const TEXT = { 'content-type': 'text/plain' };
const JSON_TYPE = { 'content-type': 'application/json' };
const OK = '{"status":"ok"}';

const encrypted = (req: IncomingMessage) => (req.socket as TLSSocket).encrypted === true;

/** A JSON error answer in the API's shape. */
function jsonError(status: number, code: string, message: string): EdgePage {
  return { status, headers: JSON_TYPE, html: JSON.stringify({ error: { code, message } }) };
}

/** The answer to nginx's sign-in subrequest (204, or 401 saying where a browser signs in). */
function nginxAnswer(page: EdgePage): Decision {
  return { kind: 'page', page };
}

/**
 * The request body as it streams, counted; one over the limit is cut off (the
 * client gets 413 if nothing was sent yet) and the upstream request fails.
 */
async function* limitedBody(req: IncomingMessage, res: ServerResponse, max: number): AsyncGenerator<Buffer> {
  let seen = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    seen += chunk.length;
    if (seen > max) {
      if (!res.headersSent) {
        res.writeHead(413, { 'content-type': 'text/html; charset=utf-8', connection: 'close' });
        res.end(pages.tooLarge().html);
      }
      req.destroy();
      return;
    }
    yield chunk;
  }
}

function writeRaw(socket: Duplex, page: EdgePage) {
  if (!socket.writable) return void socket.destroy();
  const headers = Object.entries({ 'content-type': 'text/html; charset=utf-8', ...page.headers })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${page.status} ${http.STATUS_CODES[page.status] ?? ''}\r\n${headers}content-length: ${Buffer.byteLength(page.html)}\r\nconnection: close\r\n\r\n${page.html}`,
  );
}
