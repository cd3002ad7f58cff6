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
//   AIQSO_API_KEY        a tenant-scoped, read-level API key for the tenant's status and services
//
// Subscribing and unsubscribing are done as the signed-in user (their own token, kept in this
// process), never with AIQSO_API_KEY: the API decides (owners only), and the audit log names them.
//
// The tenant's services sit behind the platform's sign-in at the edge: after signing in here, the
// user gets an edge session for this host (POST /api/v1/auth/edge-session) as the `aiqso_edge`
// cookie, renewed while the dashboard is used and cleared at sign-out. The edge sends a browser
// without one to /login?next=<where it was going>, which comes back there once signed in.
import { createServer } from 'node:http';
import { randomBytes, createHmac, timingSafeEqual } from 'node:crypto';

const env = process.env;
const PORT = Number(env.PORT ?? 3000);
const HOST = env.HOST ?? '0.0.0.0';
const API = (env.AIQSO_API_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
const TENANT_ID = env.AIQSO_TENANT_ID ?? '';
const SLUG = env.AIQSO_TENANT_SLUG ?? '';
const COMPANY = env.AIQSO_COMPANY ?? SLUG;
const API_KEY = env.AIQSO_API_KEY ?? '';
// Signs this dashboard's session cookies; a restart logs everyone out, which is acceptable.
const SESSION_KEY = randomBytes(32);
const SESSION_SECONDS = 8 * 3600;
const EDGE_COOKIE = 'aiqso_edge';

const escape = (s) =>
  String(s).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );

function page(title, body) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:48rem;margin:2.5rem auto;padding:0 1rem;color:#1f2933}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #e5e7eb}
.muted{color:#6b7280}input{padding:.4rem;margin:.2rem 0 .8rem;width:18rem}button{padding:.5rem 1.2rem}</style>
</head><body>${body}</body></html>`;
}

function sign(value) {
  return createHmac('sha256', SESSION_KEY).update(value).digest('base64url');
}

// Signed-in users: the cookie carries a signed session id; the user's own platform tokens stay in
// this process (never in the browser). Subscribing and unsubscribing run with them, so the API
// decides what this user may do; the dashboard's own key only reads.
const sessions = new Map();

function readSession(req) {
  const cookie = (req.headers.cookie ?? '').split(/;\s*/).find((c) => c.startsWith('aiqso_dash='));
  if (!cookie) return undefined;
  const [sid, mac] = cookie.slice('aiqso_dash='.length).split('.');
  if (!sid || !mac) return undefined;
  const expected = Buffer.from(sign(sid));
  const given = Buffer.from(mac);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
  const session = sessions.get(sid);
  if (!session || session.exp <= Date.now() / 1000) {
    sessions.delete(sid);
    return undefined;
  }
  return session;
}

function startSession(user, tokens) {
  const sid = randomBytes(24).toString('base64url');
  const exp = Math.floor(Date.now() / 1000) + SESSION_SECONDS;
  sessions.set(sid, { sid, email: user.email, role: user.role, exp, ...tokens });
  for (const [id, s] of sessions) if (s.exp <= Date.now() / 1000) sessions.delete(id);
  return sid;
}

function sessionCookie(sid, secure) {
  const flags = `Path=/; HttpOnly; SameSite=Lax; Max-Age=${SESSION_SECONDS}${secure ? '; Secure' : ''}`;
  return `aiqso_dash=${sid}.${sign(sid)}; ${flags}`;
}

const csrfFor = (session) => sign(`csrf:${session.sid}`);

/** Where to go after signing in: a path on this host (not `//other`, no backslash), else the dashboard. */
function safeNext(next) {
  if (typeof next !== 'string' || next.length > 2048) return './';
  return /^\/(?![/\\])[\x21-\x5b\x5d-\x7e]*$/.test(next) ? next : './';
}

/** This host as the edge names it (it overwrites X-Forwarded-Host); the edge session is for it alone. */
const hostOf = (req) =>
  String(req.headers['x-forwarded-host'] ?? req.headers.host ?? '')
    .replace(/:\d+$/, '')
    .toLowerCase();

const isSecure = (req) => req.headers['x-forwarded-proto'] === 'https';

/** A fresh edge session for this host as the signed-in user: its Set-Cookie, or undefined if refused. */
async function edgeCookie(session, req) {
  const { status, body } = await asUser(session, '/api/v1/auth/edge-session', {
    method: 'POST',
    body: JSON.stringify({ host: hostOf(req) }),
  }).catch(() => ({ status: 503, body: {} }));
  if (status !== 200) return undefined;
  session.edgeExpires = Date.now() / 1000 + body.expiresIn;
  session.edgeSeconds = body.expiresIn;
  const flags = `Path=/; HttpOnly; SameSite=Lax; Max-Age=${body.expiresIn}${isSecure(req) ? '; Secure' : ''}`;
  return `${EDGE_COOKIE}=${body.token}; ${flags}`;
}

/** Renewed once half its life is gone, while the dashboard is used. */
const edgeDue = (session) =>
  !session.edgeExpires || session.edgeExpires - Date.now() / 1000 < session.edgeSeconds / 2;

const CLEAR_EDGE_COOKIE = `${EDGE_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax`;
const SERVICES_DOWN = 'Signed in, but your services cannot be reached right now; try again shortly.';

async function api(path, init = {}) {
  const res = await fetch(`${API}${path}`, {
    ...init,
    headers: { accept: 'application/json', ...(init.headers ?? {}) },
    signal: AbortSignal.timeout(5000),
  });
  const body = await res.json().catch(() => ({}));
  return { status: res.status, body };
}

/** Read with the dashboard's own tenant-scoped, read-level key. */
async function read(path) {
  if (!API_KEY || !TENANT_ID) return undefined;
  try {
    const { status, body } = await api(path, { headers: { authorization: `Bearer ${API_KEY}` } });
    return status === 200 ? body : undefined;
  } catch {
    return undefined;
  }
}

/** Call the API as the signed-in user, refreshing their access token once when it has expired. */
async function asUser(session, path, init = {}) {
  const call = () =>
    api(path, {
      ...init,
      headers: {
        ...(init.body ? { 'content-type': 'application/json' } : {}),
        authorization: `Bearer ${session.accessToken}`,
      },
    });
  let res = await call();
  if (res.status === 401 && session.refreshToken) {
    const fresh = await api('/api/v1/auth/refresh', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ refreshToken: session.refreshToken }),
    });
    if (fresh.status !== 200) return res;
    session.accessToken = fresh.body.accessToken;
    session.refreshToken = fresh.body.refreshToken;
    res = await call();
  }
  return res;
}

function readForm(req) {
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

function send(res, status, html, headers = {}) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(html);
}

function loginForm(message = '', next = './') {
  return page(
    COMPANY,
    `<h1>${escape(COMPANY)}</h1><p class="muted">Sign in with your platform account.</p>
${message ? `<p role="alert">${escape(message)}</p>` : ''}
<form method="post" action="login"><input type="hidden" name="next" value="${escape(next)}">
<label>Email<br><input name="email" type="email" autocomplete="username" required></label><br>
<label>Password<br><input name="password" type="password" autocomplete="current-password" required></label><br>
<button type="submit">Sign in</button></form>`,
  );
}

function button(session, action, service, label) {
  return `<form method="post" action="${action}" style="display:inline"><input type="hidden" name="csrf" value="${csrfFor(session)}">
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
function plainReason(reason) {
  const step = Object.keys(FAILED_STEP).find((name) => (reason ?? '').startsWith(`${name}:`));
  return step ? FAILED_STEP[step] : 'setting it up did not work';
}

function serviceRow(session, s, owner) {
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
  return `<tr><td>${name}</td><td>${status}</td><td>${actions.join(' ')}</td></tr>`;
}

async function home(session, message) {
  const tid = encodeURIComponent(TENANT_ID);
  const [tenant, mine, catalog] = await Promise.all([
    read(`/api/v1/tenants/${tid}`),
    read(`/api/v1/tenants/${tid}/services`),
    api('/api/v1/catalog')
      .then((r) => (r.status === 200 ? r.body : undefined))
      .catch(() => undefined),
  ]);
  const owner = session.role === 'tenant_owner';
  const live = (mine?.services ?? []).filter((s) => s.status !== 'removed');
  const rows = live.length
    ? live.map((s) => serviceRow(session, s, owner)).join('')
    : '<tr><td colspan="3" class="muted">No services yet.</td></tr>';
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
  return page(
    COMPANY,
    `<h1>${escape(COMPANY)}</h1><p class="muted">Signed in as ${escape(session.email)} · <a href="logout">Sign out</a></p>
${message ? `<p role="status">${escape(message)}</p>` : ''}
<p>Workspace status: <strong>${escape(tenant?.status ?? 'unknown')}</strong></p>
<h2>Services</h2><table><thead><tr><th>Service</th><th>Status</th><th></th></tr></thead><tbody>${rows}</tbody></table>
${offer ? `<h2>Catalog</h2><table><tbody>${offer}</tbody></table>` : ''}`,
  );
}

/** Subscribe, unsubscribe or retry as the signed-in user; the API's answer (or refusal) is shown on the next page. */
async function change(req, res, session, kind) {
  const form = await readForm(req);
  const expected = Buffer.from(csrfFor(session));
  const given = Buffer.from(String(form.csrf ?? ''));
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    return send(res, 403, page('Forbidden', '<h1>Forbidden</h1><p>Reload the page and try again.</p>'));
  }
  const service = String(form.service ?? '');
  const tid = encodeURIComponent(TENANT_ID);
  const one = `/api/v1/tenants/${tid}/services/${encodeURIComponent(service)}`;
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

async function login(req, res) {
  const form = await readForm(req);
  const { status, body } = await api('/api/v1/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: form.email ?? '', password: form.password ?? '' }),
  }).catch(() => ({ status: 503, body: {} }));
  // Only this tenant's users may use this dashboard.
  if (status !== 200 || body?.user?.tenantId !== TENANT_ID) {
    return send(
      res,
      401,
      loginForm(
        status === 503 ? 'The platform is unreachable; try again.' : 'Wrong email or password.',
        safeNext(form.next),
      ),
    );
  }
  const sid = startSession(body.user, { accessToken: body.accessToken, refreshToken: body.refreshToken });
  const edge = await edgeCookie(sessions.get(sid), req);
  const location = edge ? safeNext(form.next) : `./?msg=${encodeURIComponent(SERVICES_DOWN)}`;
  const cookies = [sessionCookie(sid, isSecure(req)), ...(edge ? [edge] : [])];
  return send(res, 303, '', { location, 'set-cookie': cookies });
}

/** The sign-in page the edge sends browsers to; signed in already, a new edge session and back to `next`. */
async function loginPage(req, res, url) {
  const next = safeNext(url.searchParams.get('next'));
  const session = readSession(req);
  if (!session) return send(res, 200, loginForm('', next));
  const edge = await edgeCookie(session, req);
  if (!edge) return send(res, 303, '', { location: `./?msg=${encodeURIComponent(SERVICES_DOWN)}` });
  return send(res, 303, '', { location: next, 'set-cookie': edge });
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const path = url.pathname;
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ status: 'ok', tenant: SLUG }));
    }
    if (path === '/login' && req.method === 'POST') return await login(req, res);
    if (path === '/login' && (req.method === 'GET' || req.method === 'HEAD'))
      return await loginPage(req, res, url);
    if (['/subscribe', '/unsubscribe', '/retry'].includes(path) && req.method === 'POST') {
      const session = readSession(req);
      if (!session) return send(res, 303, '', { location: './' });
      return await change(req, res, session, path.slice(1));
    }
    if (path === '/logout') {
      const session = readSession(req);
      if (session) {
        sessions.delete(session.sid);
        // Ends the platform session too: the edge then refuses its edge session wherever it is kept.
        await asUser(session, '/api/v1/auth/logout', { method: 'POST' }).catch(() => undefined);
      }
      return send(res, 303, '', {
        location: './',
        'set-cookie': ['aiqso_dash=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax', CLEAR_EDGE_COOKIE],
      });
    }
    if (path !== '/' || (req.method !== 'GET' && req.method !== 'HEAD'))
      return send(res, 404, page('Not found', '<h1>Not found</h1>'));
    const session = readSession(req);
    if (!session) return send(res, 200, loginForm());
    const renewed = edgeDue(session) ? await edgeCookie(session, req) : undefined;
    const headers = renewed ? { 'set-cookie': renewed } : {};
    return send(res, 200, await home(session, url.searchParams.get('msg') ?? ''), headers);
  } catch (err) {
    console.error(JSON.stringify({ level: 'error', msg: 'request failed', err: String(err) }));
    if (!res.headersSent) send(res, 500, page('Error', '<h1>Something went wrong</h1>'));
  }
});

server.listen(PORT, HOST, () => {
  console.log(JSON.stringify({ level: 'info', msg: 'dashboard listening', port: PORT, tenant: SLUG }));
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
