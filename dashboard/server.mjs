// The tenant dashboard: the app deployed into every tenant's dashboard container.
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
import {
  clearCookie,
  cookie,
  csrfField,
  escape,
  page,
  randomId,
  readCookies,
  readForm,
  send,
  signer,
} from './web.mjs';

const env = process.env;
const PORT = Number(env.PORT ?? 3000);
const HOST = env.HOST ?? '0.0.0.0';
const API = (env.AIQSO_API_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
const TENANT_ID = env.AIQSO_TENANT_ID ?? '';
const SLUG = env.AIQSO_TENANT_SLUG ?? '';
const COMPANY = env.AIQSO_COMPANY ?? SLUG;
const API_KEY = env.AIQSO_API_KEY ?? '';
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
/** @typedef {{ services: TenantService[] }} TenantServices */
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
/** @typedef {{ targets: HealthTarget[] }} TenantStatus */

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
 * @property {string} email
 * @property {string} role
 * @property {number} exp when it ends (Unix seconds)
 * @property {string | undefined} accessToken
 * @property {string | undefined} refreshToken
 * @property {number} edgeExpires
 * @property {number} edgeSeconds
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
  if (me.status === 200) session.role = /** @type {Me} */ (me.body).role;
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
    COMPANY,
    `<h1>${escape(COMPANY)}</h1><p class="muted">Sign in with your platform account.</p>
${message ? `<p role="alert">${escape(message)}</p>` : ''}
<form method="post" action="login">${csrfField(keys.csrf(`visitor:${v.id}`))}
<input type="hidden" name="next" value="${escape(safeNext(next))}">
<label>Email<br><input name="email" type="email" autocomplete="username" required></label><br>
<label>Password<br><input name="password" type="password" autocomplete="current-password" required></label><br>
<button type="submit">Sign in</button></form>`,
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
    COMPANY,
    `<h1>${escape(COMPANY)}</h1><p class="muted">Two-factor authentication for ${escape(step.email)}.</p>
${message ? `<p role="alert">${escape(message)}</p>` : ''}
<form method="post" action="login/code">${csrf}
<label>Code from your authenticator app<br><input name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" required></label><br>
<button type="submit">Verify</button></form>
<form method="post" action="login/code">${csrf}
<label>Or a recovery code<br><input name="recovery" autocomplete="off" required></label><br>
<button type="submit">Use recovery code</button></form>`,
  );
  return send(res, status, html);
}

const forbidden = (/** @type {ServerResponse} */ res) =>
  send(res, 403, page('Forbidden', '<h1>Forbidden</h1><p>Reload the page and try again.</p>'));

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

/**
 * A one-button form posting `service` to `action`.
 * @param {Session} session
 * @param {string} action
 * @param {string} service
 * @param {string} label
 */
function button(session, action, service, label) {
  return `<form method="post" action="${action}" class="inline">${csrfField(keys.csrf(session.sid))}
<input type="hidden" name="service" value="${escape(service)}"><button type="submit">${label}</button></form>`;
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

/**
 * A service's health in plain words: its state, uptime over 24 h and 30 d, and its open incident.
 * @param {HealthTarget | undefined} h
 */
function healthCell(h) {
  if (!h) return '<span class="muted">not checked yet</span>';
  const pct = (/** @type {number | null} */ v) => (v === null ? '–' : `${v.toFixed(1)}%`);
  const incident = h.openIncident
    ? `<br><small>Open incident since ${escape(h.openIncident.openedAt.slice(0, 16).replace('T', ' '))} UTC: ${escape(h.openIncident.reason)}</small>`
    : '';
  return `${escape(h.summary)} <small class="muted">(up ${pct(h.uptime['24h'])} in 24 h, ${pct(h.uptime['30d'])} in 30 d)</small>${incident}`;
}

/**
 * @param {Session} session
 * @param {TenantService} s
 * @param {boolean} owner whether the user may subscribe, unsubscribe and retry
 * @param {HealthTarget | undefined} health
 */
function serviceRow(session, s, owner, health) {
  const name = s.status === 'active' ? `<a href="${escape(s.url)}">${escape(s.name)}</a>` : escape(s.name);
  const detail = s.statusReason ? ` <small class="muted">${escape(s.statusReason)}</small>` : '';
  const status =
    s.status === 'failed'
      ? `failed: ${escape(plainReason(s.statusReason))}.${detail}`
      : `${escape(s.status)}${detail}`;
  const actions = [];
  if (owner && s.status === 'failed') actions.push(button(session, 'retry', s.service, 'Retry'));
  if (owner && s.status !== 'removing')
    actions.push(button(session, 'unsubscribe', s.service, 'Unsubscribe'));
  return `<tr><td>${name}</td><td>${status}</td><td>${healthCell(health)}</td><td>${actions.join(' ')}</td></tr>`;
}

/**
 * The dashboard's page: the workspace's status, its services and the catalog.
 * @param {Session} session
 * @param {string} message what the last change did
 */
async function home(session, message) {
  const tid = encodeURIComponent(TENANT_ID);
  const [tenant, mine, catalog, health] = await Promise.all([
    /** @type {Promise<Tenant | undefined>} */ (read(`/api/v1/tenants/${tid}`)),
    /** @type {Promise<TenantServices | undefined>} */ (read(`/api/v1/tenants/${tid}/services`)),
    /** @type {Promise<Answer<Catalog>>} */ (api('/api/v1/catalog'))
      .then((r) => (r.status === 200 ? /** @type {Catalog} */ (r.body) : undefined))
      .catch(() => undefined),
    /** @type {Promise<TenantStatus | undefined>} */ (read(`/api/v1/tenants/${tid}/status`)),
  ]);
  const healthOf = (/** @type {string} */ id) => (health?.targets ?? []).find((t) => t.id === id);
  const owner = session.role === 'tenant_owner';
  const live = (mine?.services ?? []).filter((s) => s.status !== 'removed');
  const rows = live.length
    ? live.map((s) => serviceRow(session, s, owner, healthOf(s.id))).join('')
    : '<tr><td colspan="4" class="muted">No services yet.</td></tr>';
  const taken = new Set(live.map((s) => s.service));
  const offer = (catalog?.services ?? [])
    .filter((c) => !taken.has(c.key))
    .map(
      (c) =>
        `<tr><td>${escape(c.name)}<br><small class="muted">${escape(c.description)}</small></td><td>${
          owner
            ? button(session, 'subscribe', c.key, 'Subscribe')
            : '<span class="muted">owners subscribe</span>'
        }</td></tr>`,
    )
    .join('');
  const signOut = `<form method="post" action="logout" class="inline">${csrfField(keys.csrf(session.sid))}<button type="submit">Sign out</button></form>`;
  return page(
    COMPANY,
    `<h1>${escape(COMPANY)}</h1><p class="muted">Signed in as ${escape(session.email)} · ${signOut}</p>
${message ? `<p role="status">${escape(message)}</p>` : ''}
<p>Workspace status: <strong>${escape(tenant?.status ?? 'unknown')}</strong></p>
<h2>Services</h2><table><thead><tr><th>Service</th><th>Status</th><th>Health</th><th></th></tr></thead><tbody>${rows}</tbody></table>
${offer ? `<h2>Catalog</h2><table><tbody>${offer}</tbody></table>` : ''}`,
  );
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
  const tid = encodeURIComponent(TENANT_ID);
  const one = `/api/v1/tenants/${tid}/services/${encodeURIComponent(service)}`;
  /** @type {Answer<TenantService>} */
  const { status, body } =
    kind === 'subscribe'
      ? await asUser(session, `/api/v1/tenants/${tid}/services`, {
          method: 'POST',
          body: JSON.stringify({ service }),
        })
      : kind === 'retry'
        ? await asUser(session, `${one}/retry`, { method: 'POST' })
        : await asUser(session, one, { method: 'DELETE' });
  const done = {
    subscribe: `${body?.name} is being set up; this page shows when it is active.`,
    retry: `${body?.name} is being set up again; this page shows when it is active.`,
    unsubscribe: `${body?.name} is unsubscribed.`,
  };
  const message = status === 202 ? done[kind] : (body?.error?.message ?? `The platform answered ${status}.`);
  return send(res, 303, '', { location: `./?msg=${encodeURIComponent(message)}` });
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

/**
 * Routes that need a live session; without one, the browser goes to the sign-in page.
 * @type {Record<string, (req: IncomingMessage, res: ServerResponse, session: Session) => Promise<void>>}
 */
const SIGNED_IN = {
  '/subscribe': (req, res, s) => change(req, res, s, 'subscribe'),
  '/unsubscribe': (req, res, s) => change(req, res, s, 'unsubscribe'),
  '/retry': (req, res, s) => change(req, res, s, 'retry'),
  '/logout': logout,
};

/**
 * @param {IncomingMessage} req
 * @param {ServerResponse} res
 */
async function route(req, res) {
  const url = new URL(req.url ?? '/', 'http://dashboard');
  const path = url.pathname;
  if (path === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ status: 'ok', tenant: SLUG }));
  }
  const post = req.method === 'POST';
  if (post && path === '/login') return login(req, res);
  if (post && path === '/login/code') return secondStep(req, res);
  if (path === '/login' && (req.method === 'GET' || req.method === 'HEAD')) return signInFor(req, res, url);
  if (SIGNED_IN[path]) {
    if (!post) return send(res, 405, page('Not allowed', '<h1>Not allowed</h1>'), { allow: 'POST' });
    const session = await liveSession(req);
    if (!session) return send(res, 303, '', { location: './', 'set-cookie': clearCookie(COOKIE.session) });
    return SIGNED_IN[path](req, res, session);
  }
  if (path !== '/' || (req.method !== 'GET' && req.method !== 'HEAD'))
    return send(res, 404, page('Not found', '<h1>Not found</h1>'));
  const session = await liveSession(req);
  if (!session) {
    if (readCookies(req)[COOKIE.session] === undefined) return loginPage(res, req);
    const message = 'Your session has ended; sign in again.';
    return loginPage(res, req, 200, message, [clearCookie(COOKIE.session)]);
  }
  const renewed = edgeDue(session) ? await edgeCookie(session, req) : undefined;
  const headers = renewed ? { 'set-cookie': renewed } : {};
  return send(res, 200, await home(session, url.searchParams.get('msg') ?? ''), headers);
}

const server = createServer((req, res) => {
  route(req, res).catch((err) => {
    console.error(JSON.stringify({ level: 'error', msg: 'request failed', err: String(err) }));
    if (!res.headersSent) send(res, 500, page('Error', '<h1>Something went wrong</h1>'));
  });
});

server.listen(PORT, HOST, () => {
  console.log(JSON.stringify({ level: 'info', msg: 'dashboard listening', port: PORT, tenant: SLUG }));
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
