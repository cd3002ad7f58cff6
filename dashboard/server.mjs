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
//   AIQSO_API_KEY        a tenant-scoped API key for reading the tenant's status
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

function readSession(req) {
  const cookie = (req.headers.cookie ?? '').split(/;\s*/).find((c) => c.startsWith('aiqso_dash='));
  if (!cookie) return undefined;
  const [payload, mac] = cookie.slice('aiqso_dash='.length).split('.');
  if (!payload || !mac) return undefined;
  const expected = Buffer.from(sign(payload));
  const given = Buffer.from(mac);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
  const session = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  return session.exp > Date.now() / 1000 ? session : undefined;
}

function sessionCookie(email, secure) {
  const payload = Buffer.from(
    JSON.stringify({ email, exp: Math.floor(Date.now() / 1000) + SESSION_SECONDS }),
  ).toString('base64url');
  const flags = `Path=/; HttpOnly; SameSite=Lax; Max-Age=${SESSION_SECONDS}${secure ? '; Secure' : ''}`;
  return `aiqso_dash=${payload}.${sign(payload)}; ${flags}`;
}

async function api(path, init = {}) {
  const res = await fetch(`${API}${path}`, {
    ...init,
    headers: { accept: 'application/json', ...(init.headers ?? {}) },
    signal: AbortSignal.timeout(5000),
  });
  const body = await res.json().catch(() => ({}));
  return { status: res.status, body };
}

async function tenantStatus() {
  if (!API_KEY || !TENANT_ID) return undefined;
  try {
    const { status, body } = await api(`/api/v1/tenants/${encodeURIComponent(TENANT_ID)}`, {
      headers: { authorization: `Bearer ${API_KEY}` },
    });
    return status === 200 ? body : undefined;
  } catch {
    return undefined;
  }
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

function loginForm(message = '') {
  return page(
    COMPANY,
    `<h1>${escape(COMPANY)}</h1><p class="muted">Sign in with your platform account.</p>
${message ? `<p role="alert">${escape(message)}</p>` : ''}
<form method="post" action="login"><label>Email<br><input name="email" type="email" autocomplete="username" required></label><br>
<label>Password<br><input name="password" type="password" autocomplete="current-password" required></label><br>
<button type="submit">Sign in</button></form>`,
  );
}

async function home(session) {
  const tenant = await tenantStatus();
  const services = tenant?.services ?? [];
  const rows = services.length
    ? services
        .map(
          (s) =>
            `<tr><td><a href="/${escape(s.key)}/">${escape(s.name ?? s.key)}</a></td><td>${escape(s.status)}</td></tr>`,
        )
        .join('')
    : '<tr><td colspan="2" class="muted">No services yet.</td></tr>';
  return page(
    COMPANY,
    `<h1>${escape(COMPANY)}</h1><p class="muted">Signed in as ${escape(session.email)} · <a href="logout">Sign out</a></p>
<p>Workspace status: <strong>${escape(tenant?.status ?? 'unknown')}</strong></p>
<h2>Services</h2><table><thead><tr><th>Service</th><th>Status</th></tr></thead><tbody>${rows}</tbody></table>`,
  );
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
      loginForm(status === 503 ? 'The platform is unreachable; try again.' : 'Wrong email or password.'),
    );
  }
  const secure = req.headers['x-forwarded-proto'] === 'https';
  return send(res, 303, '', { location: './', 'set-cookie': sessionCookie(body.user.email, secure) });
}

const server = createServer(async (req, res) => {
  try {
    const path = new URL(req.url ?? '/', 'http://dashboard').pathname;
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ status: 'ok', tenant: SLUG }));
    }
    if (path === '/login' && req.method === 'POST') return await login(req, res);
    if (path === '/logout') {
      return send(res, 303, '', {
        location: './',
        'set-cookie': 'aiqso_dash=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax',
      });
    }
    if (path !== '/' || (req.method !== 'GET' && req.method !== 'HEAD'))
      return send(res, 404, page('Not found', '<h1>Not found</h1>'));
    const session = readSession(req);
    return send(res, 200, session ? await home(session) : loginForm());
  } catch (err) {
    console.error(JSON.stringify({ level: 'error', msg: 'request failed', err: String(err) }));
    if (!res.headersSent) send(res, 500, page('Error', '<h1>Something went wrong</h1>'));
  }
});

server.listen(PORT, HOST, () => {
  console.log(JSON.stringify({ level: 'info', msg: 'dashboard listening', port: PORT, tenant: SLUG }));
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
