// The tenant dashboard: the app deployed into every tenant's dashboard container. Its pages
// (docs/dashboard.md): the overview (services, retry, unsubscribe, subscribe), a service's logs, the
// team (invite, roles, remove; /invite is the invitation link's page), activity, backups, usage,
// billing (billing.mjs) and the account pages of security.mjs (security, preferences), in the
// platform's design system (design.css, copied from src/web/design.ts by the build).
// Plain Node.js with no dependencies, so it runs wherever the container has `node`
// (the process driver, an LXC container with the host's Node bind-mounted, Proxmox).
//
// Environment (set by the platform at deploy time):
//   PORT                 where to listen (default 3000); HOST (default 0.0.0.0)
//   AIQSO_API_URL        the control plane, e.g. http://10.10.10.1:8080
//   AIQSO_TENANT_ID      this tenant's id (ten_…)
//   AIQSO_TENANT_SLUG    this tenant's slug
//   AIQSO_COMPANY        the company name (shown even when the API is unreachable)
//   AIQSO_API_KEY        this dashboard's own tenant-scoped, read-level API key: it reads the tenant's
//                        status and services, and vouches for the address of a user signing in
//   AIQSO_PUBLIC_URL     the platform's portal (the sign-in page links to its password reset)
//   AIQSO_DASHBOARD_LIVE_SECONDS  how long a Logs page's live tail lasts (default 300)
//
// Subscribing and unsubscribing are done as the signed-in user (their own token, kept in this
// process), never with AIQSO_API_KEY: the API decides (owners only), and the audit log names them.
// Every session is checked against the platform on each request, so a logout elsewhere, a password
// change or a TOTP reset ends it here too. Every form carries a CSRF token, sign-in included.
//
// The tenant's services sit behind the platform's sign-in at the edge: after signing in here, the
// user gets an edge session for this host (POST /api/v1/auth/edge-session) as the `aiqso_edge`
// cookie, renewed while the dashboard is used and cleared at sign-out. The edge sends a browser
// without one to /login?next=<where it was going>, which comes back there once signed in.
/** @import { IncomingMessage, ServerResponse } from 'node:http' */
import { createServer } from 'node:http';
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  badge,
  clearCookie,
  confirmDialog,
  cookie,
  csrfField,
  cspWithFormsTo,
  emptyState,
  escape,
  hidden,
  notice,
  page,
  randomId,
  readCookies,
  readForm,
  SECURITY_HEADERS,
  send,
  signer,
  STYLESHEET,
  STYLESHEET_PATH,
  table,
} from './web.mjs';
import { accountPages } from './security.mjs';
import { billingPages } from './billing.mjs';

const env = process.env;
const PORT = Number(env.PORT ?? 3000);
const HOST = env.HOST ?? '0.0.0.0';
const API = (env.AIQSO_API_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
const TENANT_ID = env.AIQSO_TENANT_ID ?? '';
const SLUG = env.AIQSO_TENANT_SLUG ?? '';
const COMPANY = env.AIQSO_COMPANY ?? SLUG;
const API_KEY = env.AIQSO_API_KEY ?? '';
const PUBLIC_URL = (env.AIQSO_PUBLIC_URL ?? '').replace(/\/+$/, '');
const SESSION_SECONDS = 8 * 3600;
/** How long the second step of a sign-in (the TOTP or recovery code) may take. */
const SECOND_STEP_SECONDS = 300;
const SECOND_STEP_TRIES = 5;
const COOKIE = { session: 'aiqso_dash', visitor: 'aiqso_dash_pre', second: 'aiqso_dash_2fa' };
const EDGE_COOKIE = 'aiqso_edge';

const keys = signer();

// What the dashboard reads of the platform's answers: the response schemas of the routes it calls
// (src/api/identity/, src/api/routes/), without what it has no use for (deployment steps,
// resources, incident history).

/**
 * The body of every refused call.
 * @typedef {{ error: { code: string, message: string, details?: Record<string, unknown> } }} ErrorBody
 */
/** @typedef {{ id: string, email: string, role: string, tenantId: string | null }} User */
/**
 * POST /api/v1/auth/login and /api/v1/auth/refresh (bearer mode).
 * @typedef {{ accessToken?: string, tokenType: 'Bearer', expiresIn: number, refreshToken?: string, user: User }} Tokens
 */
/**
 * GET /api/v1/auth/me: whom the credentials belong to.
 * @typedef {{ kind: string, id: string, role: string, tenantId: string | null }} Me
 */
/**
 * POST /api/v1/auth/edge-session: the `aiqso_edge` cookie's value for one host.
 * @typedef {{ token: string, expiresIn: number, cookie: string, host: string, tenantId: string }} EdgeSession
 */
/**
 * GET /api/v1/tenants/{tenant}.
 * @typedef {{ id: string, slug: string, company: string | null, plan: string, status: string, statusReason: string | null }} Tenant
 */
/**
 * One of the tenant's services: GET /api/v1/tenants/{tenant}/services lists them; subscribing,
 * unsubscribing and retrying answer with the one service.
 * @typedef {{ id: string, service: string, name: string, status: string, statusReason: string | null, url: string }} TenantService
 */
/**
 * `graceHours`: how long an unsubscribed service's data is kept before it is destroyed.
 * @typedef {{ services: TenantService[], graceHours: number }} TenantServices
 */
/**
 * @typedef {{ service: string, lines: string[], truncated: boolean }} ServiceLogLines
 */
/**
 * GET /api/v1/plans: each plan's price, how many services it allows, what it includes a month.
 * @typedef {{ plans: { key: string, name: string, monthlyCents: number, services: number, includes: { storageGb?: number, requests?: number } }[] }} Plans
 */
/**
 * GET /api/v1/tenants/{tenant}/users.
 * @typedef {{ users: { id: string, email: string, role: string, createdAt: string }[] }} TeamUsers
 */
/**
 * GET /api/v1/tenants/{tenant}/invitations: the open ones.
 * @typedef {{ invitations: { id: string, email: string, role: string, createdAt: string, expiresAt: string }[] }} Invitations
 */
/**
 * GET /api/v1/audit: a page of the tenant's audit log, newest first; `next` pages on (before=).
 * @typedef {{ entries: { id: string, at: string, actorType: string, actorId: string | null, action: string, targetType: string | null, targetId: string | null, result: string }[], next: string | null }} AuditPage
 */
/**
 * GET /api/v1/tenants/{tenant}/backups.
 * @typedef {{ backups: { id: string, time: string, service: string | null, kind: string, purpose: string, sizeBytes: number | null, verified: boolean }[] }} Backups
 */
/**
 * GET /api/v1/tenants/{tenant}/exports: the tenant's data exports, newest first.
 * @typedef {{ exports: { id: string, status: string, sizeBytes: number | null, requestedAt: string, expiresAt: string, error: string | null, download: string | null }[] }} Exports
 */
/**
 * GET and POST /api/v1/tenants/{tenant}/cancellation: the grace period, and the dates once cancelled.
 * @typedef {{ status: string, graceDays: number, cancelledAt: string | null, purgeAfter: string | null }} Cancellation
 */
/**
 * GET /api/v1/tenants/{tenant}/usage.
 * @typedef {{ usage: { service: string | null, metric: string, period: string, value: number | null }[] }} Usage
 */
/**
 * GET /api/v1/catalog: what a tenant can subscribe to.
 * @typedef {{ services: { key: string, name: string, description: string, kind: string, path: string }[] }} Catalog
 */
/**
 * One target of GET /api/v1/tenants/{tenant}/status: the dashboard or a service, with its uptime
 * (a percentage, null before any probe) and open incident.
 * @typedef {object} HealthTarget
 * @property {'dashboard' | 'service'} kind
 * @property {string} id
 * @property {string} name
 * @property {'unknown' | 'healthy' | 'failing' | 'degraded'} state
 * @property {string} summary
 * @property {{ '24h': number | null, '7d': number | null, '30d': number | null }} uptime
 * @property {{ id: string, reason: string, openedAt: string } | null} openIncident
 */
/** @typedef {{ workspace?: { status: string, waitingFor: string | null }, targets: HealthTarget[] }} TenantStatus */

/**
 * An API call's answer: its status and its JSON body (`{}` when it had none). A refusal carries
 * the error instead of `T`, so every field may be missing until the status says which it is; a
 * success is `T` in full (the platform holds its answers to the route's response schema), which
 * the code asserts once it has checked the status. `ended`: the user's platform session is over
 * (set by `asUser`).
 * @template T what the route answers when it succeeds
 * @typedef {{ status: number, body: Partial<T> & Partial<ErrorBody>, ended?: boolean }} Answer
 */
/** @typedef {{ method?: string, body?: string, headers?: Record<string, string> }} Call */

/**
 * A signed-in user. `edgeExpires` and `edgeSeconds` describe the last edge session made for them
 * (0 before the first).
 * @typedef {object} Session
 * @property {string} sid
 * @property {string} userId
 * @property {string} email
 * @property {string} role
 * @property {number} exp when it ends (Unix seconds)
 * @property {string | undefined} accessToken
 * @property {string | undefined} refreshToken
 * @property {number} edgeExpires
 * @property {number} edgeSeconds
 * @property {{ secret: string, qrSvg: string }} [totpEnrolment] a TOTP key being set up (security page)
 */
/**
 * A sign-in waiting for its second factor.
 * @typedef {{ id: string, email: string, password: string, next: string, exp: number, tries: number }} PendingSignIn
 */

// Signed-in users: the cookie carries a signed session id; the user's own platform tokens stay in
// this process (never in the browser). A sign-in waiting for its second factor keeps the email and
// password here for at most SECOND_STEP_SECONDS, until the code comes.
/** @type {Map<string, Session>} */
const sessions = new Map();
/** @type {Map<string, PendingSignIn>} */
const pending = new Map();

const now = () => Date.now() / 1000;

/** @param {Map<string, { exp: number }>} map drops what has expired */
function sweep(map) {
  for (const [id, s] of map) if (s.exp <= now()) map.delete(id);
}

/**
 * The browser's address: the edge puts it in X-Forwarded-For (overwriting what a client sent).
 * @param {IncomingMessage} req
 */
function clientAddress(req) {
  // `split` always gives at least one part, so `pop` always has one to give.
  const forwarded = /** @type {string} */ (
    String(req.headers['x-forwarded-for'] ?? '')
      .split(',')
      .pop()
  ).trim();
  if (isIP(forwarded)) return forwarded;
  const peer = req.socket.remoteAddress ?? '';
  return peer.startsWith('::ffff:') ? peer.slice(7) : peer;
}

const secure = (/** @type {IncomingMessage} */ req) => req.headers['x-forwarded-proto'] === 'https';

/**
 * Where to go after signing in: a path on this host (not `//other`, no backslash), else the dashboard.
 * @param {unknown} next what the browser asked for
 */
function safeNext(next) {
  if (typeof next !== 'string' || next.length > 2048) return './';
  return /^\/(?![/\\])[\x21-\x5b\x5d-\x7e]*$/.test(next) ? next : './';
}

/** This host as the edge names it (it overwrites X-Forwarded-Host); the edge session is for it alone. */
const hostOf = (/** @type {IncomingMessage} */ req) =>
  String(req.headers['x-forwarded-host'] ?? req.headers.host ?? '')
    .replace(/:\d+$/, '')
    .toLowerCase();

/**
 * A fresh edge session for this host as the signed-in user: its Set-Cookie, or undefined if refused.
 * @param {Session} session
 * @param {IncomingMessage} req
 */
async function edgeCookie(session, req) {
  /** @type {Answer<EdgeSession>} */
  const { status, body } = await asUser(session, '/api/v1/auth/edge-session', {
    method: 'POST',
    body: JSON.stringify({ host: hostOf(req) }),
  }).catch(() => ({ status: 503, body: {} }));
  if (status !== 200) return undefined;
  const edge = /** @type {EdgeSession} */ (body);
  session.edgeExpires = now() + edge.expiresIn;
  session.edgeSeconds = edge.expiresIn;
  return cookie(EDGE_COOKIE, edge.token, { maxAge: edge.expiresIn, secure: secure(req) });
}

/** Renewed once half its life is gone, while the dashboard is used. */
const edgeDue = (/** @type {Session} */ session) =>
  !session.edgeExpires || session.edgeExpires - now() < session.edgeSeconds / 2;

const SERVICES_DOWN = 'Signed in, but your services cannot be reached right now; try again shortly.';

/**
 * Call the platform's API; the caller names the answer it expects.
 * @template T
 * @param {string} path
 * @param {Call} [init]
 * @returns {Promise<Answer<T>>}
 */
async function api(path, init = {}) {
  const res = await fetch(`${API}${path}`, {
    ...init,
    headers: {
      accept: 'application/json',
      // Named on every call, so the edge budgets this dashboard apart from the others.
      ...(API_KEY ? { 'x-aiqso-dashboard-key': API_KEY } : {}),
      ...(init.body ? { 'content-type': 'application/json' } : {}),
      ...(init.headers ?? {}),
    },
    signal: AbortSignal.timeout(5000),
  });
  // JSON of the shape the caller named, or the error's.
  const body = /** @type {Answer<T>['body']} */ (await res.json().catch(() => ({})));
  return { status: res.status, body };
}

/**
 * Read with the dashboard's own tenant-scoped, read-level key: the route's answer, or undefined
 * when it refused or could not be reached.
 * @template T
 * @param {string} path
 * @returns {Promise<T | undefined>}
 */
async function read(path) {
  if (!API_KEY || !TENANT_ID) return undefined;
  try {
    /** @type {Answer<T>} */
    const { status, body } = await api(path, { headers: { authorization: `Bearer ${API_KEY}` } });
    return status === 200 ? /** @type {T} */ (body) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Read a public route (the catalog, the plans): its answer, or undefined.
 * @template T
 * @param {string} path
 * @returns {Promise<T | undefined>}
 */
async function publicRead(path) {
  try {
    /** @type {Answer<T>} */
    const { status, body } = await api(path);
    return status === 200 ? /** @type {T} */ (body) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Call the API as the signed-in user, refreshing their access token once when it was refused.
 * When the refresh is refused too, the platform session is over: `ended` is set.
 * @template T
 * @param {Session} session
 * @param {string} path
 * @param {Call} [init]
 * @returns {Promise<Answer<T>>}
 */
async function asUser(session, path, init = {}) {
  /** @type {() => Promise<Answer<T>>} */
  const call = () => api(path, { ...init, headers: { authorization: `Bearer ${session.accessToken}` } });
  let res = await call();
  if (res.status !== 401) return res;
  /** @type {Answer<Tokens>} */
  const fresh = await api('/api/v1/auth/refresh', {
    method: 'POST',
    body: JSON.stringify({ refreshToken: session.refreshToken }),
  });
  if (fresh.status !== 200) return { ...res, ended: fresh.status === 401 };
  session.accessToken = fresh.body.accessToken;
  session.refreshToken = fresh.body.refreshToken;
  res = await call();
  return res.status === 401 ? { ...res, ended: true } : res;
}

/**
 * Call the API as the signed-in user without refreshing: for a call whose 401 means a wrong password
 * or code, not an expired token (the session was checked, and its token renewed, a moment before).
 * @template T
 * @param {Session} session
 * @param {string} path
 * @param {Call} [init]
 * @returns {Promise<Answer<T>>}
 */
const once = (session, path, init = {}) =>
  api(path, { ...init, headers: { authorization: `Bearer ${session.accessToken}` } });

/**
 * The request's session, checked against the platform: a session the platform ended (logout,
 * password change, TOTP reset, revocation) or that no longer belongs to this tenant is dropped.
 * An unreachable platform keeps the session (its pages show what they can).
 * @param {IncomingMessage} req
 * @returns {Promise<Session | undefined>}
 */
async function liveSession(req) {
  const sid = keys.unseal(readCookies(req)[COOKIE.session]);
  const session = sid && sessions.get(sid);
  if (!session) return undefined;
  if (session.exp <= now()) return void sessions.delete(session.sid);
  /** @type {Answer<Me>} */
  const me = await asUser(session, '/api/v1/auth/me').catch(() => ({ status: 503, body: {} }));
  if (me.ended || (me.status === 200 && me.body.tenantId !== TENANT_ID)) {
    sessions.delete(session.sid);
    return undefined;
  }
  if (me.status === 200) {
    session.role = /** @type {Me} */ (me.body).role;
    session.userId = /** @type {Me} */ (me.body).id;
  }
  return session;
}

/**
 * A new session, its edge session for the tenant's services, and on to `next` (a path on this host).
 * @param {ServerResponse} res
 * @param {IncomingMessage} req
 * @param {User} user
 * @param {{ accessToken: string | undefined, refreshToken: string | undefined }} tokens
 * @param {unknown} next
 */
async function startSession(res, req, user, tokens, next) {
  sweep(sessions);
  const sid = randomId();
  /** @type {Session} */
  const session = {
    sid,
    userId: user.id,
    email: user.email,
    role: user.role,
    exp: now() + SESSION_SECONDS,
    edgeExpires: 0,
    edgeSeconds: 0,
    ...tokens,
  };
  sessions.set(sid, session);
  const edge = await edgeCookie(session, req);
  const cookies = [
    cookie(COOKIE.session, keys.seal(sid), { maxAge: SESSION_SECONDS, secure: secure(req) }),
    clearCookie(COOKIE.second),
    ...(edge ? [edge] : []),
  ];
  const location = edge ? safeNext(next) : `./?msg=${encodeURIComponent(SERVICES_DOWN)}`;
  return send(res, 303, '', { location, 'set-cookie': cookies });
}

/**
 * The visitor's pre-session id (a cookie), which the sign-in form's CSRF token is bound to.
 * @param {IncomingMessage} req
 */
function visitor(req) {
  const existing = keys.unseal(readCookies(req)[COOKIE.visitor]);
  if (existing) return { id: existing, setCookie: [] };
  const id = randomId();
  return { id, setCookie: [cookie(COOKIE.visitor, keys.seal(id), { secure: secure(req) })] };
}

/**
 * The platform's own pages (password reset) are on its base domain: AIQSO_PUBLIC_URL, else this
 * host without the workspace's name in front.
 * @param {IncomingMessage} req
 */
function portalUrl(req) {
  if (PUBLIC_URL) return PUBLIC_URL;
  const host = String(req.headers['x-forwarded-host'] ?? req.headers.host ?? '').toLowerCase();
  if (!SLUG || !host.startsWith(`${SLUG}.`)) return undefined;
  return `${secure(req) ? 'https' : 'http'}://${host.slice(SLUG.length + 1)}`;
}

/** "Forgot your password?" to the platform's reset page, when its address is known. */
const forgotLink = (/** @type {IncomingMessage} */ req) => {
  const portal = portalUrl(req);
  return portal ? `<p><a href="${escape(portal)}/password-reset">Forgot your password?</a></p>` : '';
};

/**
 * The sign-in form.
 * @param {ServerResponse} res
 * @param {IncomingMessage} req
 * @param {number} [status]
 * @param {string} [message] why the form is shown again
 * @param {string[]} [cookies] Set-Cookie values to send with it
 * @param {unknown} [next] where to go once signed in
 */
function loginPage(res, req, status = 200, message = '', cookies = [], next = './') {
  const v = visitor(req);
  const html = page(
    `Sign in · ${COMPANY}`,
    `<h1>${escape(COMPANY)}</h1><p class="muted">Sign in with your platform account.</p>
${message ? notice(message, 'error') : ''}
<form method="post" action="login">${csrfField(keys.csrf(`visitor:${v.id}`))}
${hidden('next', safeNext(next))}
<div class="field"><label for="f-email">Email</label><input id="f-email" name="email" type="email" autocomplete="username" required></div>
<div class="field"><label for="f-password">Password</label><input id="f-password" name="password" type="password" autocomplete="current-password" required></div>
<button type="submit">Sign in</button></form>${forgotLink(req)}`,
    { brand: COMPANY, narrow: true },
  );
  const setCookie = [...cookies, ...v.setCookie];
  return send(res, status, html, setCookie.length ? { 'set-cookie': setCookie } : {});
}

/**
 * The form for the second factor: a TOTP code or a recovery code.
 * @param {ServerResponse} res
 * @param {PendingSignIn} step
 * @param {number} [status]
 * @param {string} [message]
 */
function secondStepPage(res, step, status = 200, message = '') {
  const csrf = csrfField(keys.csrf(`second:${step.id}`));
  const html = page(
    `Two-factor authentication · ${COMPANY}`,
    `<h1>Two-factor authentication</h1><p class="muted">Two-factor authentication for ${escape(step.email)}.</p>
${message ? notice(message, 'error') : ''}
<form method="post" action="/login/code" class="card">${csrf}
<div class="field"><label for="f-code">Code from your authenticator app</label><input id="f-code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" required></div>
<button type="submit">Verify</button></form>
<form method="post" action="/login/code" class="card">${csrf}
<div class="field"><label for="f-recovery">Or a recovery code</label><input id="f-recovery" name="recovery" autocomplete="off" required></div>
<button type="submit" class="secondary">Use recovery code</button></form>`,
    { brand: COMPANY, narrow: true },
  );
  return send(res, status, html);
}

const forbidden = (/** @type {ServerResponse} */ res) =>
  send(
    res,
    403,
    page(
      'This form has expired',
      '<h1>This form has expired</h1><p>Reload the page and try again.</p><p><a class="button" href="./">Back to the overview</a></p>',
      { brand: COMPANY },
    ),
  );

/**
 * What to tell the user about a refused sign-in that is not about the credentials: too many
 * attempts, or an unreachable platform; undefined otherwise.
 * @param {number} status
 * @param {Partial<ErrorBody> | undefined} body
 */
const refusal = (status, body) =>
  status === 429
    ? `Too many attempts; try again in ${Number(body?.error?.details?.retryAfterSeconds) || 60} s.`
    : status >= 500
      ? 'The platform is unreachable; try again.'
      : undefined;

/**
 * Sign in at the platform, as this dashboard, for the browser's address.
 * @param {IncomingMessage} req
 * @param {{ email: string, password: string, totp?: string, recoveryCode?: string }} credentials
 * @returns {Promise<Answer<Tokens>>}
 */
function platformLogin(req, credentials) {
  return api('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'x-aiqso-client-address': clientAddress(req) },
    body: JSON.stringify(credentials),
  }).catch(() => ({ status: 503, body: {} }));
}

/**
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 */
async function login(req, res) {
  const form = await readForm(req);
  const v = keys.unseal(readCookies(req)[COOKIE.visitor]);
  if (!v || !keys.csrfOk(`visitor:${v}`, form.csrf))
    return loginPage(res, req, 403, 'Reload the page and try again.', [], form.next);
  const credentials = { email: String(form.email ?? ''), password: String(form.password ?? '') };
  const { status, body } = await platformLogin(req, credentials);
  if (status === 200 && body?.user?.tenantId === TENANT_ID) {
    return startSession(
      res,
      req,
      body.user,
      { accessToken: body.accessToken, refreshToken: body.refreshToken },
      form.next,
    );
  }
  if (status === 401 && body?.error?.details?.reason === 'totp_required') {
    sweep(pending);
    const step = {
      id: randomId(),
      ...credentials,
      next: safeNext(form.next),
      exp: now() + SECOND_STEP_SECONDS,
      tries: 0,
    };
    pending.set(step.id, step);
    const set = cookie(COOKIE.second, keys.seal(step.id), {
      maxAge: SECOND_STEP_SECONDS,
      secure: secure(req),
    });
    res.setHeader('set-cookie', set);
    return secondStepPage(res, step);
  }
  const why = refusal(status, body) ?? 'Wrong email or password.';
  return loginPage(res, req, status === 429 ? 429 : 401, why, [], form.next);
}

/**
 * The second step: a TOTP code or a recovery code, for the sign-in waiting in this browser.
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 */
async function secondStep(req, res) {
  const form = await readForm(req);
  const id = keys.unseal(readCookies(req)[COOKIE.second]);
  const step = id && pending.get(id);
  if (!step || step.exp <= now()) return loginPage(res, req, 401, 'The sign-in expired; start again.');
  if (!keys.csrfOk(`second:${step.id}`, form.csrf)) return forbidden(res);
  const factor = form.recovery ? { recoveryCode: String(form.recovery) } : { totp: String(form.code ?? '') };
  const { status, body } = await platformLogin(req, {
    email: step.email,
    password: step.password,
    ...factor,
  });
  if (status === 200 && body?.user?.tenantId === TENANT_ID) {
    pending.delete(step.id);
    return startSession(
      res,
      req,
      body.user,
      { accessToken: body.accessToken, refreshToken: body.refreshToken },
      step.next,
    );
  }
  step.tries += 1;
  const message = refusal(status, body);
  if (step.tries >= SECOND_STEP_TRIES || (!message && status !== 401)) {
    pending.delete(step.id);
    return loginPage(res, req, 401, message ?? 'Too many wrong codes; start again.');
  }
  return secondStepPage(
    res,
    step,
    status === 429 ? 429 : 401,
    message ?? 'That code is wrong, expired or already used.',
  );
}

/**
 * Sign out here and at the platform: the user's platform session (access and refresh) ends too.
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 * @param {Session} session
 */
async function logout(req, res, session) {
  const form = await readForm(req);
  if (!keys.csrfOk(session.sid, form.csrf)) return forbidden(res);
  await asUser(session, '/api/v1/auth/logout', { method: 'POST' }).catch(() => undefined);
  sessions.delete(session.sid);
  return send(res, 303, '', {
    location: './',
    'set-cookie': [clearCookie(COOKIE.session), clearCookie(EDGE_COOKIE)],
  });
}

/** Every signed-in form's CSRF token field. */
const csrfOf = (/** @type {Session} */ session) => csrfField(keys.csrf(session.sid));
const isOwner = (/** @type {Session} */ session) => session.role === 'tenant_owner';
const tid = encodeURIComponent(TENANT_ID);

/**
 * A one-button form posting `fields` to `action`.
 * @param {Session} session
 * @param {string} action
 * @param {Record<string, string>} fields
 * @param {string} label
 * @param {string} [cls] the button's class (secondary, danger)
 */
function button(session, action, fields, label, cls = '') {
  const inputs = Object.entries(fields)
    .map(([k, v]) => hidden(k, v))
    .join('');
  return `<form method="post" action="${action}">${csrfOf(session)}${inputs}<button type="submit"${cls ? ` class="${cls}"` : ''}>${escape(label)}</button></form>`;
}

/** "2026-12-06 19:04 UTC" */
const when = (/** @type {string | Date} */ t) =>
  `${new Date(t).toISOString().slice(0, 16).replace('T', ' ')} UTC`;

/** "7 days" for 168 hours, "36 hours" otherwise. */
const duration = (/** @type {number} */ hours) =>
  hours >= 48 && hours % 24 === 0 ? `${hours / 24} days` : `${hours} hour${hours === 1 ? '' : 's'}`;

/** "$49.00" */
const money = (/** @type {number} */ cents) => `$${(cents / 100).toFixed(2)}`;

/**
 * The page's message (after a change), from `?msg=`; `?err=1` marks a refusal.
 * @param {URL} url
 */
const messageOf = (url) => {
  const msg = url.searchParams.get('msg');
  return msg ? notice(msg, url.searchParams.get('err') ? 'error' : 'info') : '';
};

/**
 * Back to `where` with a message for the page.
 * @param {ServerResponse} res
 * @param {string} where a page of this dashboard (relative)
 * @param {string} message
 * @param {boolean} [error]
 */
const back = (res, where, message, error = false) =>
  send(res, 303, '', {
    location: `${where}?msg=${encodeURIComponent(message)}${error ? '&err=1' : ''}`,
  });

/** The API's refusal in words, for a page. */
const refusedWith = (/** @type {Answer<unknown>} */ answer) =>
  answer.body?.error?.message ??
  (answer.status >= 500
    ? 'The platform is unreachable; try again.'
    : `The platform answered ${answer.status}.`);

/**
 * A page of the signed-in dashboard: the top bar with the navigation (the current page marked)
 * and sign-out.
 * @param {Session} session
 * @param {string} current the page's path (`./`, `team` …)
 * @param {string} title
 * @param {string} body
 */
function frame(session, current, title, body) {
  const owner = isOwner(session);
  const links = [
    ['./', 'Overview', true],
    ['team', 'Team', true],
    ['activity', 'Activity', owner],
    ['backups', 'Backups', owner],
    ['usage', 'Usage', true],
    ['billing', 'Billing', owner],
    ['workspace', 'Workspace', owner],
    ['security', 'Security', true],
    ['preferences', 'Preferences', true],
  ]
    .filter(([, , shown]) => shown)
    .map(
      ([href, label]) =>
        `<a href="${href}"${href === current ? ' aria-current="page"' : ''}>${escape(String(label))}</a>`,
    )
    .join('');
  const signOut = `<form method="post" action="logout">${csrfOf(session)}<button type="submit" class="secondary">Sign out</button></form>`;
  return page(`${title} · ${COMPANY}`, body, { brand: COMPANY, nav: `${links}${signOut}` });
}

/** Why a service failed, in plain words, from the step its reason names (`health check: GET … did not answer`). */
const FAILED_STEP = {
  'capacity check': 'the server has no room for it right now',
  container: 'its container could not be created',
  database: 'its database could not be set up',
  running: 'it could not be started',
  route: 'its address could not be set up',
  'health check': 'it started but did not answer in time',
};
/** @param {string | null} reason */
function plainReason(reason) {
  const steps = /** @type {(keyof typeof FAILED_STEP)[]} */ (Object.keys(FAILED_STEP));
  const step = steps.find((name) => (reason ?? '').startsWith(`${name}:`));
  return step ? FAILED_STEP[step] : 'setting it up did not work';
}

/** When an unsubscribed service's data goes, from its reason (`… destroyed after <ISO time>`). */
const destroyedAfter = (/** @type {string | null} */ reason) =>
  /destroyed after (\d{4}-\d{2}-\d{2}T[\d:.]+Z)/.exec(reason ?? '')?.[1];

/**
 * A service's state: a badge and a sentence in plain words.
 * @param {TenantService} s
 * @param {HealthTarget | undefined} h
 */
function stateOf(s, h) {
  switch (s.status) {
    case 'active':
      if (h?.state === 'failing') return [badge('bad', 'Not answering'), escape(h.summary)];
      if (h?.state === 'degraded') return [badge('warn', 'Slow or unsteady'), escape(h.summary)];
      return [badge('ok', 'Running'), 'Open it with the link.'];
    case 'pending':
    case 'deploying':
      return [badge('info', 'Being set up'), 'This page shows when it is ready.'];
    case 'failed':
      return [
        badge('bad', 'Failed'),
        `Setting it up failed: ${escape(plainReason(s.statusReason))}.${
          s.statusReason ? ` <small class="muted">${escape(s.statusReason)}</small>` : ''
        }`,
      ];
    case 'removing': {
      const at = destroyedAfter(s.statusReason);
      return [
        badge('warn', 'Unsubscribed'),
        `Its data is destroyed after ${at ? escape(when(at)) : 'the grace period'}; subscribe again before then to keep it.`,
      ];
    }
    case 'stopped':
      return [badge('off', 'Stopped'), ''];
    default:
      return [badge('off', s.status), escape(s.statusReason ?? '')];
  }
}

/** Uptime over 24 h, 7 d and 30 d (a percentage, or "–" before any check). */
function uptimeCell(/** @type {HealthTarget | undefined} */ h) {
  if (!h) return '<span class="muted">Not checked yet</span>';
  const pct = (/** @type {number | null} */ v) => (v === null ? '–' : `${v.toFixed(1)}%`);
  return `<span class="uptime">24 h ${pct(h.uptime['24h'])} · 7 d ${pct(h.uptime['7d'])} · 30 d ${pct(h.uptime['30d'])}</span>`;
}

function incidentCell(/** @type {HealthTarget | undefined} */ h) {
  if (!h?.openIncident) return '<span class="muted">None</span>';
  return `${badge('bad', 'Open')} since ${escape(when(h.openIncident.openedAt))}: ${escape(h.openIncident.reason)}`;
}

/**
 * @param {Session} session
 * @param {TenantService} s
 * @param {number} i its row (dialog ids)
 * @param {HealthTarget | undefined} health
 * @param {number | undefined} graceHours
 */
function serviceRow(session, s, i, health, graceHours) {
  const owner = isOwner(session);
  const name =
    s.status === 'active'
      ? `<a href="${escape(s.url)}">${escape(s.name)}</a><br><small class="mono">${escape(s.url)}</small>`
      : escape(s.name);
  const [state, words] = stateOf(s, health);
  const actions = [
    `<a class="button secondary" href="logs?service=${encodeURIComponent(s.service)}" aria-label="Logs of ${escape(s.name)}">Logs</a>`,
  ];
  let dialog = '';
  if (owner && s.status === 'failed') actions.push(button(session, 'retry', { service: s.service }, 'Retry'));
  if (owner && s.status === 'removing')
    actions.push(button(session, 'subscribe', { service: s.service }, 'Subscribe again'));
  if (owner && s.status !== 'removing') {
    const id = `unsubscribe-${i}`;
    actions.push(`<a class="button secondary" href="#${id}">Unsubscribe…</a>`);
    const until = graceHours === undefined ? undefined : new Date(Date.now() + graceHours * 3_600_000);
    dialog = confirmDialog({
      id,
      title: `Unsubscribe from ${s.name}?`,
      text: `${s.name} stops at once and its address stops answering. Its data is kept ${
        graceHours === undefined || !until
          ? 'for a grace period'
          : `for ${duration(graceHours)}, until ${when(until)},`
      } and then destroyed for good. To undo, subscribe to ${s.name} again before then: it comes back with its data.`,
      action: 'unsubscribe',
      fields: `${csrfOf(session)}${hidden('service', s.service)}`,
      confirm: `Unsubscribe from ${s.name}`,
    });
  }
  return {
    row: [
      name,
      `${state}<br>${words}`,
      uptimeCell(health),
      incidentCell(health),
      actions.length ? `<div class="actions">${actions.join('')}</div>` : '',
    ],
    dialog,
  };
}

/** Services that take one of the plan's places (as the API counts them). */
const TAKES_A_PLACE = new Set(['pending', 'deploying', 'active', 'stopped', 'degraded']);

/**
 * The overview: the workspace's state, its services (state, URL, uptime, open incident, retry,
 * unsubscribe) and what can be added, with its price.
 * @param {Session} session
 * @param {URL} url
 */
async function overview(session, url) {
  const [tenant, mine, catalog, health, plans] = await Promise.all([
    /** @type {Promise<Tenant | undefined>} */ (read(`/api/v1/tenants/${tid}`)),
    /** @type {Promise<TenantServices | undefined>} */ (read(`/api/v1/tenants/${tid}/services`)),
    /** @type {Promise<Catalog | undefined>} */ (publicRead('/api/v1/catalog')),
    /** @type {Promise<TenantStatus | undefined>} */ (read(`/api/v1/tenants/${tid}/status`)),
    /** @type {Promise<Plans | undefined>} */ (publicRead('/api/v1/plans')),
  ]);
  const healthOf = (/** @type {string} */ id) => (health?.targets ?? []).find((t) => t.id === id);
  const owner = isOwner(session);
  const live = (mine?.services ?? []).filter((s) => s.status !== 'removed');
  const rows = live.map((s, i) => serviceRow(session, s, i, healthOf(s.id), mine?.graceHours));
  const plan = (plans?.plans ?? []).find((p) => p.key === tenant?.plan);
  const used = live.filter((s) => TAKES_A_PLACE.has(s.status)).length;
  const full = plan !== undefined && used >= plan.services;
  const price = plan
    ? `Included in your ${escape(plan.name)} plan (${money(plan.monthlyCents)} a month): ${used} of ${plan.services} services in use.`
    : 'Included in your plan.';
  const taken = new Set(live.map((s) => s.service));
  const offer = (catalog?.services ?? [])
    .filter((c) => !taken.has(c.key))
    .map((c) => [
      `<strong>${escape(c.name)}</strong><br><small class="muted">${escape(c.description)}</small>`,
      price,
      !owner
        ? '<span class="muted">Owners subscribe</span>'
        : full
          ? `<span class="muted">Your plan's ${plan?.services} services are in use: unsubscribe one first.</span>`
          : button(session, 'subscribe', { service: c.key }, `Subscribe to ${c.name}`),
    ]);
  const status = tenant?.status ?? health?.workspace?.status ?? 'unknown';
  const waiting = health?.workspace?.waitingFor;
  const workspace =
    status === 'active'
      ? ''
      : notice(
          `Your workspace is ${status.replace(/_/g, ' ')}${waiting ? ` (waiting for ${waiting})` : ''}.`,
          status === 'failed' ? 'error' : 'info',
        );
  const body = `<h1>${escape(COMPANY)}</h1>
<p class="muted">Signed in as ${escape(session.email)} (${session.role === 'tenant_owner' ? 'owner' : 'member'})</p>
<p>Workspace status: <strong>${escape(status)}</strong></p>
${messageOf(url)}${workspace}
<h2>Your services</h2>
${
  rows.length
    ? table(
        'Your services',
        ['Service', 'State', 'Uptime', 'Open incident', 'Actions'],
        rows.map((r) => r.row),
      )
    : emptyState(
        'No services yet',
        owner ? 'Subscribe to one below.' : 'An owner of this workspace subscribes.',
      )
}
${rows.map((r) => r.dialog).join('\n')}
${offer.length ? `<h2>Add a service</h2>${table('Add a service', ['Service', 'Price', 'Subscribe'], offer)}` : ''}`;
  return frame(session, './', 'Overview', body);
}

/**
 * Subscribe, unsubscribe or retry as the signed-in user; the API's answer (or refusal) is shown on the next page.
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 * @param {Session} session
 * @param {'subscribe' | 'unsubscribe' | 'retry'} kind
 */
async function change(req, res, session, kind) {
  const form = await readForm(req);
  if (!keys.csrfOk(session.sid, form.csrf)) return forbidden(res);
  const service = String(form.service ?? '');
  const one = `/api/v1/tenants/${tid}/services/${encodeURIComponent(service)}`;
  /** @type {Answer<TenantService>} */
  const answer =
    kind === 'subscribe'
      ? await asUser(session, `/api/v1/tenants/${tid}/services`, {
          method: 'POST',
          body: JSON.stringify({ service }),
        })
      : kind === 'retry'
        ? await asUser(session, `${one}/retry`, { method: 'POST' })
        : await asUser(session, one, { method: 'DELETE' });
  const { status, body } = answer;
  const at = destroyedAfter(body?.statusReason ?? null);
  const done = {
    subscribe: `${body?.name} is being set up; this page shows when it is active.`,
    retry: `${body?.name} is being set up again; this page shows when it is active.`,
    unsubscribe: `${body?.name} is unsubscribed. Its data is destroyed after ${at ? when(at) : 'the grace period'}; subscribe again before then to keep it.`,
  };
  return status === 202 ? back(res, './', done[kind]) : back(res, './', refusedWith(answer), true);
}

/** The team's roles in words. */
const ROLE_WORDS = { tenant_owner: 'Owner', tenant_member: 'Member' };
const roleWords = (/** @type {string} */ role) =>
  ROLE_WORDS[/** @type {keyof typeof ROLE_WORDS} */ (role)] ?? role;

/**
 * @param {string} name
 * @param {string} selected
 * @param {string} label
 * @param {string} id
 */
const roleSelect = (name, selected, label, id) =>
  `<select id="${escape(id)}" name="${escape(name)}" aria-label="${escape(label)}">${Object.entries(
    ROLE_WORDS,
  )
    .map(([v, w]) => `<option value="${v}"${v === selected ? ' selected' : ''}>${w}</option>`)
    .join('')}</select>`;

/**
 * The team: members with their roles; owners invite by e-mail, change roles, remove members and
 * withdraw open invitations.
 * @param {Session} session
 * @param {URL} url
 */
async function teamPage(session, url, invite = { email: '', role: 'tenant_member', error: '' }) {
  const owner = isOwner(session);
  const [users, invitations] = await Promise.all([
    /** @type {Promise<TeamUsers | undefined>} */ (read(`/api/v1/tenants/${tid}/users`)),
    owner
      ? /** @type {Promise<Answer<Invitations>>} */ (asUser(session, `/api/v1/tenants/${tid}/invitations`))
          .then((r) => (r.status === 200 ? /** @type {Invitations} */ (r.body) : undefined))
          .catch(() => undefined)
      : Promise.resolve(undefined),
  ]);
  /** @type {string[]} */
  const dialogs = [];
  const rows = (users?.users ?? []).map((u, i) => {
    const you = u.email === session.email;
    const cells = [
      `${escape(u.email)}${you ? ' <span class="muted">(you)</span>' : ''}`,
      badge(u.role === 'tenant_owner' ? 'info' : 'off', roleWords(u.role)),
      escape(when(u.createdAt).slice(0, 10)),
    ];
    if (owner) {
      if (you) cells.push('');
      else {
        dialogs.push(
          confirmDialog({
            id: `remove-${i}`,
            title: `Remove ${u.email}?`,
            text: `${u.email} is signed out everywhere at once and can no longer sign in to ${COMPANY}. What they made stays. To undo, invite them again.`,
            action: 'member-remove',
            fields: `${csrfOf(session)}${hidden('user', u.id)}`,
            confirm: 'Remove from the team',
          }),
        );
        cells.push(`<div class="actions"><form method="post" action="member-role" class="row">${csrfOf(session)}${hidden('user', u.id)}${roleSelect(
          'role',
          u.role,
          `Role of ${u.email}`,
          `role-${i}`,
        )}<button type="submit" class="secondary">Change role</button></form>
<a class="button secondary" href="#remove-${i}">Remove…</a></div>`);
      }
    }
    return cells;
  });
  const open = invitations?.invitations ?? [];
  const invitationRows = open.map((inv) => [
    escape(inv.email),
    escape(roleWords(inv.role)),
    escape(when(inv.expiresAt)),
    button(session, 'invitation-withdraw', { invitation: inv.id }, 'Withdraw', 'secondary'),
  ]);
  const inviteForm = `<h2>Invite someone</h2>
<form method="post" action="invite-member" class="card">${csrfOf(session)}
<div class="field"><label for="f-invite-email">Email<span class="hint" id="f-invite-email-hint">They get a link that works once, for 72 hours, to set a password and sign in.</span></label>
<input id="f-invite-email" name="email" type="email" autocomplete="off" required value="${escape(invite.email)}" aria-describedby="f-invite-email-hint${invite.error ? ' f-invite-email-error' : ''}"${invite.error ? ' aria-invalid="true"' : ''}>${
    invite.error ? `<div class="field-error" id="f-invite-email-error">${escape(invite.error)}</div>` : ''
  }</div>
<div class="field"><label for="f-invite-role">Role</label>${roleSelect('role', invite.role, 'Role', 'f-invite-role')}</div>
<button type="submit">Send invitation</button></form>`;
  const body = `<h1>Team</h1>
${messageOf(url)}
<p class="muted">Owners manage services, the team, backups and billing; members use the services.</p>
${table('Team members', owner ? ['Email', 'Role', 'Since', 'Actions'] : ['Email', 'Role', 'Since'], rows)}
${dialogs.join('\n')}
${
  owner
    ? `<h2>Open invitations</h2>${
        invitationRows.length
          ? table('Open invitations', ['Email', 'Role', 'Link works until', 'Withdraw'], invitationRows)
          : emptyState('No open invitations', 'Invite someone below.')
      }${inviteForm}`
    : ''
}`;
  return frame(session, 'team', 'Team', body);
}

/**
 * The team's changes as the signed-in user: invite, change a role, remove, withdraw an invitation.
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 * @param {Session} session
 * @param {'invite' | 'role' | 'remove' | 'withdraw'} kind
 */
async function teamChange(req, res, session, kind) {
  const form = await readForm(req);
  if (!keys.csrfOk(session.sid, form.csrf)) return forbidden(res);
  const user = encodeURIComponent(String(form.user ?? ''));
  /** @type {Answer<{ email: string, role: string, expiresAt?: string }>} */
  const answer =
    kind === 'invite'
      ? await asUser(session, `/api/v1/tenants/${tid}/invitations`, {
          method: 'POST',
          body: JSON.stringify({
            email: String(form.email ?? ''),
            role: String(form.role ?? 'tenant_member'),
          }),
        })
      : kind === 'role'
        ? await asUser(session, `/api/v1/tenants/${tid}/users/${user}`, {
            method: 'PATCH',
            body: JSON.stringify({ role: String(form.role ?? '') }),
          })
        : kind === 'remove'
          ? await asUser(session, `/api/v1/tenants/${tid}/users/${user}`, { method: 'DELETE' })
          : await asUser(
              session,
              `/api/v1/tenants/${tid}/invitations/${encodeURIComponent(String(form.invitation ?? ''))}`,
              { method: 'DELETE' },
            );
  const { status, body } = answer;
  if (kind === 'invite' && status >= 400 && status < 500) {
    // Refused: the team page again, the reason next to the address, what was typed kept.
    const invite = {
      email: String(form.email ?? ''),
      role: String(form.role ?? 'tenant_member'),
      error: refusedWith(answer),
    };
    return send(res, status, await teamPage(session, new URL('http://dashboard/team'), invite));
  }
  if (status !== 200 && status !== 201) return back(res, 'team', refusedWith(answer), true);
  const done = {
    invite: `Invitation sent to ${body.email}. The link works until ${body.expiresAt ? when(body.expiresAt) : 'it expires'}.`,
    role: `${body.email} is now ${roleWords(String(body.role)).toLowerCase()}.`,
    remove: `${body.email} is removed from the team and signed out.`,
    withdraw: `The invitation to ${body.email} is withdrawn; its link no longer works.`,
  };
  return back(res, 'team', done[kind]);
}

/**
 * The page an invitation's link opens: choose a password, then signed in.
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 * @param {string} token
 * @param {{ status?: number, error?: string, field?: string }} [shown]
 */
function invitePage(req, res, token, shown = {}) {
  const v = visitor(req);
  const fieldError = shown.field === 'password' ? shown.error : undefined;
  const html = page(
    `Join ${COMPANY}`,
    `<h1>Join ${escape(COMPANY)}</h1>
<p>Choose a password to finish setting up your account; you are signed in right after.</p>
${shown.error && !fieldError ? notice(shown.error, 'error') : ''}
<form method="post" action="invite">${csrfField(keys.csrf(`visitor:${v.id}`))}${hidden('token', token)}
<div class="field"><label for="f-password">Password<span class="hint" id="f-password-hint">At least 12 characters, not a common password.</span></label>
<input id="f-password" name="password" type="password" autocomplete="new-password" required minlength="12" aria-describedby="f-password-hint${fieldError ? ' f-password-error' : ''}"${fieldError ? ' aria-invalid="true"' : ''}>${
      fieldError ? `<div class="field-error" id="f-password-error">${escape(fieldError)}</div>` : ''
    }</div>
<button type="submit">Set password and sign in</button></form>`,
    { brand: COMPANY, narrow: true },
  );
  return send(res, shown.status ?? 200, html, v.setCookie.length ? { 'set-cookie': v.setCookie } : {});
}

/**
 * Accept an invitation (the platform checks the token, once, for this tenant), then sign in.
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 */
async function acceptInvitation(req, res) {
  const form = await readForm(req);
  const token = String(form.token ?? '');
  const v = keys.unseal(readCookies(req)[COOKIE.visitor]);
  if (!v || !keys.csrfOk(`visitor:${v}`, form.csrf))
    return invitePage(req, res, token, { status: 403, error: 'Reload the page and try again.' });
  const password = String(form.password ?? '');
  /** @type {Answer<User>} */
  const accepted = await api('/api/v1/invitations/accept', {
    method: 'POST',
    body: JSON.stringify({ token, tenant: TENANT_ID, password }),
  }).catch(() => ({ status: 503, body: {} }));
  if (accepted.status !== 201) {
    const error =
      accepted.status === 404
        ? 'This invitation link is not valid any more: it was used, withdrawn or has expired. Ask whoever invited you for a new one.'
        : refusedWith(/** @type {Answer<unknown>} */ (accepted));
    const field = accepted.body?.error?.details?.field === 'password' ? 'password' : undefined;
    return invitePage(req, res, token, { status: accepted.status === 404 ? 404 : 400, error, field });
  }
  const email = /** @type {User} */ (accepted.body).email;
  const { status, body } = await platformLogin(req, { email, password });
  if (status === 200 && body?.user?.tenantId === TENANT_ID) {
    const welcome = `/?msg=${encodeURIComponent(`Welcome to ${COMPANY}.`)}`;
    return startSession(
      res,
      req,
      body.user,
      { accessToken: body.accessToken, refreshToken: body.refreshToken },
      welcome,
    );
  }
  return loginPage(res, req, 200, 'Your account is ready; sign in with your new password.');
}

/** Actions in the audit log, in words. */
const ACTIONS = {
  'tenant.service.subscribe': 'Subscribed to a service',
  'tenant.service.unsubscribe': 'Unsubscribed from a service',
  'tenant.service.retry': 'Retried a failed service',
  'tenant.service.restore': 'Restored a service from a backup',
  'tenant.user.create': 'Added a user',
  'tenant.user.role': "Changed a member's role",
  'tenant.user.remove': 'Removed a member',
  'tenant.invitation.create': 'Invited someone',
  'tenant.invitation.revoke': 'Withdrew an invitation',
  'tenant.invitation.accept': 'Accepted an invitation',
  'tenant.backup.run': 'Started a backup',
  'tenant.api_key.create': 'Created an API key',
  'tenant.api_key.revoke': 'Revoked an API key',
  'tenant.suspend': 'An operator suspended the workspace',
  'tenant.reactivate': 'An operator reactivated the workspace',
  'tenant.cancel': 'Cancelled the workspace',
  'tenant.billing.plan': 'Asked to change the plan',
  'tenant.billing.portal': 'Opened payment methods and invoices',
  'tenant.plan_changed': 'The plan changed',
  'auth.login': 'Signed in',
  'auth.logout': 'Signed out',
};
const PAGE_SIZE = 20;

/**
 * The tenant's audit log (owners), newest first, in pages of PAGE_SIZE.
 * @param {Session} session
 * @param {URL} url
 */
async function activityPage(session, url) {
  const before = url.searchParams.get('before') ?? '';
  const query = `tenant=${tid}&limit=${PAGE_SIZE}${/^\d{1,19}$/.test(before) ? `&before=${before}` : ''}`;
  const [log, users] = await Promise.all([
    /** @type {Promise<Answer<AuditPage>>} */ (asUser(session, `/api/v1/audit?${query}`)).catch(() => ({
      status: 503,
      body: {},
    })),
    /** @type {Promise<TeamUsers | undefined>} */ (read(`/api/v1/tenants/${tid}/users`)),
  ]);
  const emails = new Map((users?.users ?? []).map((u) => [u.id, u.email]));
  if (log.status !== 200) {
    const why = log.status === 403 ? 'Only owners can read the activity log.' : refusedWith(log);
    return frame(session, 'activity', 'Activity', `<h1>Activity</h1>${notice(why, 'error')}`);
  }
  const { entries = [], next = null } = /** @type {AuditPage} */ (log.body);
  const rows = entries.map((e) => [
    escape(when(e.at)),
    e.actorId
      ? escape(emails.get(e.actorId) ?? (e.actorType === 'api_key' ? `API key ${e.actorId}` : e.actorId))
      : '<span class="muted">the platform</span>',
    `${escape(ACTIONS[/** @type {keyof typeof ACTIONS} */ (e.action)] ?? e.action)}${
      e.targetId ? `<br><small class="mono">${escape(e.targetType ?? '')} ${escape(e.targetId)}</small>` : ''
    }`,
    badge(e.result === 'success' ? 'ok' : e.result === 'denied' ? 'warn' : 'bad', e.result),
  ]);
  const pager = `<nav class="pager" aria-label="Activity pages"><span>${
    before ? '<a href="activity">Newest</a>' : 'Newest first'
  }</span>${next ? `<a href="activity?before=${encodeURIComponent(next)}">Older entries</a>` : '<span class="muted">No older entries</span>'}</nav>`;
  const body = `<h1>Activity</h1><p class="muted">Everything done in this workspace, newest first: who, what and whether it worked.</p>
${rows.length ? table('Activity', ['When', 'Who', 'What', 'Result'], rows) : emptyState('Nothing here yet', 'Changes to the workspace show up here.')}
${pager}`;
  return frame(session, 'activity', 'Activity', body);
}

/** "1.2 MB" */
const bytes = (/** @type {number | null} */ n) =>
  n === null
    ? '–'
    : n >= 1e9
      ? `${(n / 1e9).toFixed(2)} GB`
      : n >= 1e6
        ? `${(n / 1e6).toFixed(1)} MB`
        : `${(n / 1e3).toFixed(1)} kB`;

/**
 * The tenant's backups (owners) and "Back up now".
 * @param {Session} session
 * @param {URL} url
 */
async function backupsPage(session, url) {
  /** @type {Answer<Backups>} */
  const list = await asUser(session, `/api/v1/tenants/${tid}/backups`).catch(() => ({
    status: 503,
    body: {},
  }));
  if (list.status !== 200) {
    const why = list.status === 403 ? 'Only owners can see the backups.' : refusedWith(list);
    return frame(session, 'backups', 'Backups', `<h1>Backups</h1>${notice(why, 'error')}`);
  }
  const { backups = [] } = /** @type {Backups} */ (list.body);
  const rows = backups.map((b) => [
    escape(when(b.time)),
    escape(b.service ?? 'the whole workspace'),
    escape(`${b.kind}, ${b.purpose}`),
    escape(bytes(b.sizeBytes)),
    b.verified ? badge('ok', 'Verified') : badge('off', 'Not verified yet'),
  ]);
  const body = `<h1>Backups</h1>${messageOf(url)}
<p class="muted">Every service's database and data are backed up on a schedule, encrypted. An owner can back up now, once every 10 minutes.</p>
<div class="actions">${button(session, 'backup-now', {}, 'Back up now')}</div>
${rows.length ? table('Backups', ['When', 'Service', 'Kind', 'Size', 'Checked'], rows) : emptyState('No backups yet', 'The first scheduled backup runs tonight, or back up now.')}
${await exportsSection(session)}`;
  return frame(session, 'backups', 'Backups', body);
}

/**
 * "Export my data": every service's database (a dump and a CSV per table), its files and the
 * workspace's records in one archive, downloadable here by an owner until it expires.
 * @param {Session} session
 */
async function exportsSection(session) {
  /** @type {Answer<Exports>} */
  const answer = await asUser(session, `/api/v1/tenants/${tid}/exports`).catch(() => ({
    status: 503,
    body: {},
  }));
  const intro = `<h2 id="exports">Export my data</h2>
<p class="muted">One archive with every service's database (a dump and one CSV per table), its files and your workspace's records. You get an e-mail when it is ready; it can be downloaded here for 7 days, then it is deleted.</p>
<div class="actions">${button(session, 'export-now', {}, 'Export my data')}</div>`;
  if (answer.status !== 200) return `${intro}${notice(refusedWith(answer), 'error')}`;
  const { exports = [] } = /** @type {Exports} */ (answer.body);
  const states = /** @type {Record<string, string>} */ ({
    building: 'Being built',
    ready: 'Ready',
    failed: 'Failed',
    expired: 'Expired',
  });
  const rows = exports.map((e) => [
    escape(when(e.requestedAt)),
    badge({ ready: 'ok', failed: 'bad', building: 'info' }[e.status] ?? 'off', states[e.status] ?? e.status),
    escape(e.status === 'failed' ? (e.error ?? '') : bytes(e.sizeBytes)),
    escape(when(e.expiresAt)),
    e.status === 'ready' ? `<a href="exports/${escape(e.id)}/download">Download</a>` : '',
  ]);
  return `${intro}${rows.length ? table('Data exports', ['Asked for', 'State', 'Size', 'Until', ''], rows) : ''}`;
}

/** @param {IncomingMessage} req @param {ServerResponse} res @param {Session} session */
async function exportNow(req, res, session) {
  const form = await readForm(req);
  if (!keys.csrfOk(session.sid, form.csrf)) return forbidden(res);
  const answer = await asUser(session, `/api/v1/tenants/${tid}/exports`, { method: 'POST' });
  return answer.status === 202
    ? back(res, 'backups', 'Your export is being built; you get an e-mail when it is ready.')
    : back(res, 'backups', refusedWith(answer), true);
}

const EXPORT_DOWNLOAD = /^\/exports\/(exp_[0-9a-z]{26})\/download$/;

/**
 * Stream an export's archive to a signed-in owner: the platform checks tenant, role and expiry
 * on the user's own token; a refusal is shown in words.
 * @param {ServerResponse} res
 * @param {Session} session
 * @param {string} exportId
 */
async function downloadExport(res, session, exportId) {
  const path = `/api/v1/tenants/${tid}/exports/${exportId}/download`;
  const call = () =>
    fetch(`${API}${path}`, {
      headers: {
        authorization: `Bearer ${session.accessToken}`,
        ...(API_KEY ? { 'x-aiqso-dashboard-key': API_KEY } : {}),
      },
    });
  let answer = await call();
  if (answer.status === 401) {
    // The access token expired: one refresh through the usual path, then again.
    await answer.body?.cancel();
    await asUser(session, `/api/v1/tenants/${tid}/exports`);
    answer = await call();
  }
  if (answer.status !== 200 || !answer.body) {
    const body = /** @type {Answer<unknown>['body']} */ (await answer.json().catch(() => ({})));
    const why = refusedWith({ status: answer.status, body });
    return send(
      res,
      answer.status === 410 ? 410 : answer.status === 404 ? 404 : 409,
      page(
        'Export not available',
        `<h1>Export not available</h1>${notice(why, 'error')}<p><a class="button" href="../../backups#exports">Back to backups</a></p>`,
        { brand: COMPANY },
      ),
    );
  }
  res.writeHead(200, {
    'content-type': answer.headers.get('content-type') ?? 'application/gzip',
    'content-disposition':
      answer.headers.get('content-disposition') ?? `attachment; filename="${SLUG}-export.tar.gz"`,
    ...(answer.headers.get('content-length')
      ? { 'content-length': String(answer.headers.get('content-length')) }
      : {}),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  await pipeline(
    Readable.fromWeb(/** @type {import('node:stream/web').ReadableStream} */ (answer.body)),
    res,
  );
}

/** @param {IncomingMessage} req @param {ServerResponse} res @param {Session} session */
async function backupNow(req, res, session) {
  const form = await readForm(req);
  if (!keys.csrfOk(session.sid, form.csrf)) return forbidden(res);
  const answer = await asUser(session, `/api/v1/tenants/${tid}/backups`, { method: 'POST' });
  return answer.status === 202
    ? back(res, 'backups', 'A backup is running; it shows here when it is done.')
    : back(res, 'backups', refusedWith(answer), true);
}

/**
 * This month's usage against what the plan includes, with the 80% and 100% warnings.
 * @param {Session} session
 */
async function usagePage(session) {
  const now = new Date();
  const from = `${now.toISOString().slice(0, 7)}-01`;
  const [usage, tenant, plans] = await Promise.all([
    /** @type {Promise<Usage | undefined>} */ (
      read(`/api/v1/tenants/${tid}/usage?from=${from}&granularity=day`)
    ),
    /** @type {Promise<Tenant | undefined>} */ (read(`/api/v1/tenants/${tid}`)),
    /** @type {Promise<Plans | undefined>} */ (publicRead('/api/v1/plans')),
  ]);
  if (!usage)
    return frame(
      session,
      'usage',
      'Usage',
      `<h1>Usage</h1>${notice('The usage cannot be read right now; try again shortly.', 'error')}`,
    );
  const plan = (plans?.plans ?? []).find((p) => p.key === tenant?.plan);
  const rows = usage.usage;
  const requests = rows.filter((r) => r.metric === 'requests').reduce((sum, r) => sum + (r.value ?? 0), 0);
  // Storage: container disk plus databases on the latest day measured (each a day's average).
  const storageDays = rows.filter(
    (r) => (r.metric === 'disk_bytes' || r.metric === 'db_bytes') && r.value !== null,
  );
  const lastDay = storageDays
    .map((r) => r.period)
    .sort()
    .pop();
  const storageGb =
    storageDays.filter((r) => r.period === lastDay).reduce((sum, r) => sum + (r.value ?? 0), 0) / 1e9;
  const month = now.toLocaleString('en-US', { month: 'long', year: 'numeric', timeZone: 'UTC' });
  const amounts = [
    { label: 'Storage', used: storageGb, included: plan?.includes.storageGb, unit: 'GB', digits: 2 },
    { label: 'Requests', used: requests, included: plan?.includes.requests, unit: 'requests', digits: 0 },
  ];
  const fmt = (/** @type {number} */ n, /** @type {number} */ d) =>
    n.toLocaleString('en-US', { maximumFractionDigits: d });
  /** @type {string[]} */
  const warnings = [];
  const tableRows = amounts.map((a) => {
    if (a.included === undefined)
      return [
        escape(a.label),
        escape(`${fmt(a.used, a.digits)} ${a.unit}`),
        '<span class="muted">not limited</span>',
        '',
      ];
    const pct = (a.used / a.included) * 100;
    const level = pct >= 100 ? 100 : pct >= 80 ? 80 : 0;
    if (level)
      warnings.push(
        notice(
          `${a.label}: you have used ${fmt(pct, 0)}% of what your plan includes this month${level === 100 ? ', more than it includes' : ''}. Nothing is switched off; remove data you no longer need or change to a larger plan.`,
          level === 100 ? 'error' : 'info',
        ),
      );
    return [
      escape(a.label),
      escape(`${fmt(a.used, a.digits)} ${a.unit}`),
      escape(`${fmt(a.included, a.digits)} ${a.unit}`),
      `<meter min="0" max="100" low="80" high="99.99" optimum="0" value="${Math.min(100, pct).toFixed(1)}" aria-label="${escape(a.label)}: ${fmt(pct, 0)}% used"></meter> ${badge(
        level === 100 ? 'bad' : level === 80 ? 'warn' : 'ok',
        `${fmt(pct, 0)}%`,
      )}`,
    ];
  });
  const body = `<h1>Usage</h1>
<p class="muted">${escape(month)} so far${plan ? `, against what your ${escape(plan.name)} plan includes` : ''}. Storage is the latest day's container disk and databases; requests are counted since the 1st.</p>
${warnings.join('\n')}
${table('Usage this month', ['Amount', 'Used', 'Included', 'Share'], tableRows)}`;
  return frame(session, 'usage', 'Usage', body);
}

/**
 * Cancelling the workspace (owners): what happens and when the data goes, behind a confirmation.
 * @param {Session} session
 * @param {URL} url
 */
async function workspacePage(session, url) {
  /** @type {Answer<Cancellation>} */
  const state = await asUser(session, `/api/v1/tenants/${tid}/cancellation`).catch(() => ({
    status: 503,
    body: {},
  }));
  if (state.status !== 200) {
    const why = state.status === 403 ? 'Only owners can cancel the workspace.' : refusedWith(state);
    return frame(session, 'workspace', 'Workspace', `<h1>Workspace</h1>${notice(why, 'error')}`);
  }
  const c = /** @type {Cancellation} */ (state.body);
  if (c.status === 'cancelled' || c.status === 'purged')
    return frame(
      session,
      'workspace',
      'Workspace',
      `<h1>Workspace</h1>${notice(
        `${COMPANY} is cancelled${c.purgeAfter ? `; its data is deleted for good after ${when(c.purgeAfter)}` : ''}.`,
      )}`,
    );
  const until = new Date(Date.now() + c.graceDays * 86_400_000);
  const body = `<h1>Workspace</h1>${messageOf(url)}
<div class="card"><h2>Cancel the workspace</h2>
<p>Everything stops at once: your services, their addresses and this dashboard, and billing ends. The data is kept for ${c.graceDays} days, until ${escape(when(until))}, and then deleted for good.</p>
<a class="button danger" href="#confirm-cancel">Cancel the workspace…</a></div>
${confirmDialog({
  id: 'confirm-cancel',
  title: `Cancel ${COMPANY}?`,
  text: `Your services, their addresses and this dashboard stop at once, and billing ends. The data is kept for ${c.graceDays} days, until ${when(until)}, and then deleted for good.`,
  action: 'cancel-workspace',
  fields: csrfOf(session),
  confirm: 'Cancel the workspace',
})}`;
  return frame(session, 'workspace', 'Workspace', body);
}

/** @param {IncomingMessage} req @param {ServerResponse} res @param {Session} session */
async function cancelWorkspace(req, res, session) {
  const form = await readForm(req);
  if (!keys.csrfOk(session.sid, form.csrf)) return forbidden(res);
  /** @type {Answer<Cancellation>} */
  const answer = await asUser(session, `/api/v1/tenants/${tid}/cancellation`, { method: 'POST' });
  if (answer.status !== 200) return back(res, 'workspace', refusedWith(answer), true);
  const c = /** @type {Cancellation} */ (answer.body);
  // The workspace's addresses stop answering now: this is the last page it shows.
  return send(
    res,
    200,
    page(
      `Cancelled · ${COMPANY}`,
      `<h1>${escape(COMPANY)} is cancelled</h1>${notice(
        `Your services and their addresses have stopped and billing has ended. The data is deleted for good after ${
          c.purgeAfter ? when(c.purgeAfter) : 'the grace period'
        }.`,
      )}`,
      { brand: COMPANY, narrow: true },
    ),
  );
}

/**
 * The sign-in page the edge sends browsers to; signed in already, a new edge session and back to `next`.
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 * @param {URL} url
 */
async function signInFor(req, res, url) {
  const next = safeNext(url.searchParams.get('next'));
  const session = await liveSession(req);
  if (!session) return loginPage(res, req, 200, '', [], next);
  const edge = await edgeCookie(session, req);
  if (!edge) return send(res, 303, '', { location: `./?msg=${encodeURIComponent(SERVICES_DOWN)}` });
  return send(res, 303, '', { location: next, 'set-cookie': edge });
}

const billing = billingPages({
  asUser,
  frame,
  csrfOf,
  csrfOk: (session, token) => keys.csrfOk(session.sid, token),
  back,
  forbidden,
  refusedWith,
  messageOf,
  tenant: tid,
});

/**
 * After a password change (which ends every login of the user, this one too): sign in again with
 * the new password and stay; with two-factor authentication on, that needs a code, so the browser
 * goes to the sign-in page instead.
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 * @param {Session} session
 * @param {string} password
 */
async function signInAgain(req, res, session, password) {
  const { status, body } = await platformLogin(req, { email: session.email, password });
  if (status === 200 && body?.user?.tenantId === TENANT_ID) {
    session.accessToken = body.accessToken;
    session.refreshToken = body.refreshToken;
    const edge = await edgeCookie(session, req);
    return send(res, 303, '', {
      location: `security?msg=${encodeURIComponent('Your password is changed. Every other session is signed out.')}`,
      ...(edge ? { 'set-cookie': edge } : {}),
    });
  }
  sessions.delete(session.sid);
  const message = 'Your password is changed and every session is signed out. Sign in with the new password.';
  return loginPage(
    res,
    req,
    200,
    message,
    [clearCookie(COOKIE.session), clearCookie(EDGE_COOKIE)],
    '/security',
  );
}

const account = accountPages({
  asUser,
  once,
  frame,
  csrfOf,
  csrfOk: (session, given) => keys.csrfOk(session.sid, given),
  forbidden,
  back,
  send,
  messageOf,
  refusedWith,
  when,
  tid,
  signInAgain,
});

/** A live tail lasts this long; then the page offers to continue. */
const LIVE_SECONDS = Number(env.AIQSO_DASHBOARD_LIVE_SECONDS ?? 300);
/** Live tails open at once in this process (each holds one connection to the platform). */
const LIVE_MAX = 20;
let liveOpen = 0;
const SERVICE_KEY = /^[a-z0-9][a-z0-9-]{0,39}$/;

/** Lines as the log shows them: escaped, one per line. */
const logText = (/** @type {string[]} */ lines) => lines.map((l) => `${escape(l)}\n`).join('');

/**
 * A service's logs: its last 200 lines in a `<pre role="log">`, or with `?live=1` a live tail: the
 * page is sent as it grows (no script: lines are appended to the open `<pre>` as the service writes
 * them), for LIVE_SECONDS, then a link continues it. Read as the signed-in user.
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 * @param {Session} session
 * @param {URL} url
 */
async function logsPage(req, res, session, url) {
  const key = url.searchParams.get('service') ?? '';
  if (!SERVICE_KEY.test(key)) return notFound(res);
  const live = url.searchParams.get('live') === '1';
  const base = `/api/v1/tenants/${tid}/services/${encodeURIComponent(key)}/logs`;
  const here = `logs?service=${encodeURIComponent(key)}`;
  /** @type {Answer<TenantServices>} */
  const mine = await asUser(session, `/api/v1/tenants/${tid}/services`).catch(() => ({
    status: 503,
    body: {},
  }));
  const name = (mine.body.services ?? []).find((s) => s.service === key)?.name ?? key;
  const title = `Logs of ${name}`;
  const heading = `<h1>${escape(title)}</h1>
<p class="muted">What ${escape(name)} itself writes (its output and errors), oldest first.</p>`;
  const refused = (/** @type {number} */ status, /** @type {string} */ why) =>
    send(
      res,
      status === 404 ? 404 : 200,
      frame(
        session,
        '',
        title,
        `${heading}${notice(why, 'error')}<p><a class="button" href="./">Back to the overview</a></p>`,
      ),
    );
  if (!live) {
    /** @type {Answer<ServiceLogLines>} */
    const answer = await asUser(session, `${base}?lines=200`).catch(() => ({ status: 503, body: {} }));
    if (answer.status !== 200) return refused(answer.status, refusedWith(answer));
    const logs = /** @type {ServiceLogLines} */ (answer.body);
    const body = `${heading}
<div class="actions"><a class="button" href="${here}&amp;live=1">Live tail</a><a class="button secondary" href="${here}">Refresh</a></div>
${logs.truncated ? '<p class="muted">Older lines are not shown.</p>' : ''}
${
  logs.lines.length
    ? `<pre class="log" role="log" aria-live="polite" aria-label="${escape(title)}" tabindex="0">${logText(logs.lines)}</pre>`
    : emptyState('No output yet', `${name} has not written anything yet.`)
}`;
    return send(res, 200, frame(session, '', title, body));
  }
  if (liveOpen >= LIVE_MAX)
    return refused(
      429,
      'Too many live tails are open right now; try again in a minute, or refresh the page.',
    );
  const ac = new AbortController();
  /** @type {Response} */
  let answer;
  try {
    answer = await fetch(`${API}${base}/stream?lines=50&seconds=${LIVE_SECONDS}`, {
      headers: {
        authorization: `Bearer ${session.accessToken}`,
        accept: 'text/event-stream',
        ...(API_KEY ? { 'x-aiqso-dashboard-key': API_KEY } : {}),
      },
      signal: ac.signal,
    });
  } catch {
    return refused(503, 'The platform is unreachable; try again.');
  }
  if (answer.status !== 200 || !answer.body) {
    const body = /** @type {Answer<unknown>['body']} */ (await answer.json().catch(() => ({})));
    return refused(answer.status, refusedWith({ status: answer.status, body }));
  }
  liveOpen++;
  const span =
    LIVE_SECONDS % 60 === 0
      ? `${LIVE_SECONDS / 60} minute${LIVE_SECONDS === 60 ? '' : 's'}`
      : `${LIVE_SECONDS} seconds`;
  const marker = '<!--log-->';
  const [head, tail] = frame(
    session,
    '',
    title,
    `${heading}
<p class="muted">Live: new lines appear below as ${escape(name)} writes them, for ${span}.</p>
${marker}`,
  ).split(marker);
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-accel-buffering': 'no',
    ...SECURITY_HEADERS,
  });
  res.write(
    `${head}<pre class="log" role="log" aria-live="polite" aria-label="${escape(title)}" tabindex="0">`,
  );
  // The browser going away ends the tail at the platform too.
  res.once('close', () => ac.abort());
  let ended = 'ended';
  try {
    const decoder = new TextDecoder();
    let pending = '';
    for await (const chunk of /** @type {AsyncIterable<Uint8Array>} */ (answer.body)) {
      pending += decoder.decode(chunk, { stream: true });
      let cut;
      while ((cut = pending.indexOf('\n\n')) !== -1) {
        const event = pending.slice(0, cut);
        pending = pending.slice(cut + 2);
        if (!event.startsWith('data: ')) continue;
        const data = /** @type {{ lines: string[] }} */ (JSON.parse(event.slice(6)));
        if (data.lines.length) res.write(logText(data.lines));
      }
    }
  } catch {
    ended = 'stopped';
  } finally {
    liveOpen--;
  }
  if (res.destroyed) return;
  res.end(
    `</pre>
<p>The live tail ${ended === 'ended' ? `ended after ${span}` : 'was interrupted'}.</p>
<div class="actions"><a class="button" href="${here}&amp;live=1">Continue the live tail</a><a class="button secondary" href="${here}">Back to the last lines</a></div>${tail}`,
  );
}

/**
 * Forms that need a live session; without one, the browser goes to the sign-in page.
 * @type {Record<string, (req: IncomingMessage, res: ServerResponse, session: Session) => Promise<void>>}
 */
const SIGNED_IN = {
  '/subscribe': (req, res, s) => change(req, res, s, 'subscribe'),
  '/unsubscribe': (req, res, s) => change(req, res, s, 'unsubscribe'),
  '/retry': (req, res, s) => change(req, res, s, 'retry'),
  '/invite-member': (req, res, s) => teamChange(req, res, s, 'invite'),
  '/member-role': (req, res, s) => teamChange(req, res, s, 'role'),
  '/member-remove': (req, res, s) => teamChange(req, res, s, 'remove'),
  '/invitation-withdraw': (req, res, s) => teamChange(req, res, s, 'withdraw'),
  '/backup-now': backupNow,
  '/export-now': exportNow,
  '/cancel-workspace': cancelWorkspace,
  '/billing-plan': billing.change,
  '/billing-portal': billing.portal,
  '/logout': logout,
  ...account.forms,
};

/**
 * Pages that need a live session.
 * @type {Record<string, (session: Session, url: URL) => Promise<string>>}
 */
const PAGES = {
  '/': overview,
  '/team': teamPage,
  '/activity': activityPage,
  '/backups': backupsPage,
  '/usage': usagePage,
  '/billing': billing.page,
  '/workspace': workspacePage,
  ...account.pages,
};

/**
 * Where the Billing page's "Payment methods and invoices" leads: Stripe's customer portal, or
 * local billing mode's page on the platform's own address.
 * @param {IncomingMessage} req
 */
function portalOrigins(req) {
  const origins = ['https://billing.stripe.com'];
  try {
    const portal = portalUrl(req);
    if (portal) origins.push(new URL(portal).origin);
  } catch {
    // No usable address for the platform: only Stripe's portal can be reached from the page.
  }
  return origins;
}

/**
 * Headers of pages whose forms are answered with a redirect to another site (browsers hold that
 * redirect to the page's form-action).
 * @type {Record<string, (req: IncomingMessage) => Record<string, string>>}
 */
const PAGE_HEADERS = {
  '/billing': (req) => ({ 'content-security-policy': cspWithFormsTo(portalOrigins(req)) }),
};

const notFound = (/** @type {ServerResponse} */ res) =>
  send(
    res,
    404,
    page(
      'Page not found',
      '<h1>Page not found</h1><p>There is nothing at this address.</p><p><a class="button" href="./">Back to the overview</a></p>',
      { brand: COMPANY },
    ),
  );

/**
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 */
async function route(req, res) {
  const url = new URL(req.url ?? '/', 'http://dashboard');
  const path = url.pathname;
  const reading = req.method === 'GET' || req.method === 'HEAD';
  if (path === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ status: 'ok', tenant: SLUG }));
  }
  if (reading && path === `/${STYLESHEET_PATH}`) {
    res.writeHead(200, {
      'content-type': 'text/css; charset=utf-8',
      'cache-control': 'public, max-age=31536000, immutable',
      'x-content-type-options': 'nosniff',
    });
    return res.end(STYLESHEET);
  }
  const post = req.method === 'POST';
  if (post && path === '/login') return login(req, res);
  if (post && path === '/login/code') return secondStep(req, res);
  if (reading && path === '/login') return signInFor(req, res, url);
  if (path === '/invite') {
    if (post) return acceptInvitation(req, res);
    const token = url.searchParams.get('token') ?? '';
    if (reading && token) return invitePage(req, res, token);
    return notFound(res);
  }
  if (SIGNED_IN[path]) {
    if (!post)
      return send(res, 405, page('Not allowed', '<h1>Not allowed</h1>', { brand: COMPANY }), {
        allow: 'POST',
      });
    const session = await liveSession(req);
    if (!session) return send(res, 303, '', { location: './', 'set-cookie': clearCookie(COOKIE.session) });
    return SIGNED_IN[path](req, res, session);
  }
  const download = reading ? EXPORT_DOWNLOAD.exec(path) : null;
  if (download) {
    const session = await liveSession(req);
    if (!session) return loginPage(res, req, 200, '', [], path);
    return downloadExport(res, session, /** @type {string} */ (download[1]));
  }
  if (reading && path === '/logs') {
    const session = await liveSession(req);
    if (!session) return loginPage(res, req, 200, '', [], `${path}${url.search}`);
    return logsPage(req, res, session, url);
  }
  const render = PAGES[path];
  if (!render || !reading) return notFound(res);
  const session = await liveSession(req);
  if (!session) {
    if (readCookies(req)[COOKIE.session] === undefined) return loginPage(res, req, 200, '', [], path);
    const message = 'Your session has ended; sign in again.';
    return loginPage(res, req, 200, message, [clearCookie(COOKIE.session)], path);
  }
  const renewed = edgeDue(session) ? await edgeCookie(session, req) : undefined;
  const headers = { ...PAGE_HEADERS[path]?.(req), ...(renewed ? { 'set-cookie': renewed } : {}) };
  return send(res, 200, await render(session, url), headers);
}

const server = createServer((req, res) => {
  route(req, res).catch((err) => {
    console.error(JSON.stringify({ level: 'error', msg: 'request failed', err: String(err) }));
    if (!res.headersSent)
      send(
        res,
        500,
        page(
          'Something went wrong',
          '<h1>Something went wrong</h1><p>Try again in a moment.</p><p><a class="button" href="./">Back to the overview</a></p>',
          { brand: COMPANY },
        ),
      );
  });
});

server.listen(PORT, HOST, () => {
  console.log(JSON.stringify({ level: 'info', msg: 'dashboard listening', port: PORT, tenant: SLUG }));
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
