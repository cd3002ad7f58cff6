// A small service app shipped with the platform, deployed per tenant with its
// own PostgreSQL database and role: Notes, Social Media Manager and Content
// Creation Suite are this app with a different APP_TITLE/APP_KIND.
//
// Environment: PORT (default 3000), HOST (default 0.0.0.0), DATABASE_URL (required),
// APP_TITLE, APP_KIND. The edge strips the service's path prefix, so the app
// serves at / and links relatively.
//
// Users sign in at the platform's edge, which passes who they are in headers it
// sets (and strips from clients): X-AIQSO-User-Id, -User-Email, -User-Role and
// X-AIQSO-Tenant-Id. A request without them did not come through the edge's
// sign-in and is refused (403), whatever else lets it reach this port.
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import path from 'node:path';
import pg from 'pg';

const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST ?? '0.0.0.0';
const TITLE = process.env.APP_TITLE ?? 'Drafts';
const KIND = process.env.APP_KIND ?? 'notes';
if (!process.env.DATABASE_URL) {
  console.error('DATABASE_URL is required');
  process.exit(2);
}
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
pool.on('error', () => undefined);

/** @type {Record<string, string>} */
const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
/** @param {unknown} s */
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c);

async function migrate() {
  await pool.query(`CREATE TABLE IF NOT EXISTS drafts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind text NOT NULL, body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now())`);
  // Who wrote each note (the edge's identity headers); notes from before have none.
  await pool.query(`ALTER TABLE drafts ADD COLUMN IF NOT EXISTS author_id text,
    ADD COLUMN IF NOT EXISTS author_email text`);
}

/**
 * The signed-in user as the edge tells it, or undefined when the request did not come through its sign-in.
 * @param {import('node:http').IncomingMessage} req
 */
function signedIn(req) {
  /** @param {string} name */
  const one = (name) => {
    const v = req.headers[name];
    return typeof v === 'string' && v !== '' ? v : undefined;
  };
  const user = {
    id: one('x-aiqso-user-id'),
    email: one('x-aiqso-user-email'),
    role: one('x-aiqso-user-role'),
    tenantId: one('x-aiqso-tenant-id'),
  };
  return user.id && user.email && user.role && user.tenantId ? user : undefined;
}

/**
 * @param {import('node:http').IncomingMessage} req
 * @returns {Promise<string>}
 */
function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (/** @type {string} */ c) => {
      data += c;
      if (data.length > 65_536) req.destroy(new Error('too large'));
    });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

/**
 * @param {import('node:http').IncomingMessage} req
 * @param {import('node:http').ServerResponse} res
 */
async function handle(req, res) {
  const url = new URL(req.url ?? '/', 'http://app');
  if (url.pathname === '/healthz') {
    // A fault switch for the platform's self-healing tests: a `health-fault` file in the service's home
    // (its data directory, reachable only from inside its container) saying `500` or `hang`. No file, no
    // effect; a re-created container starts without it.
    const fault = await readFile(path.join(process.env.HOME ?? '/nonexistent', 'health-fault'), 'utf8').catch(
      () => '',
    );
    if (fault.trim() === 'hang') return;
    if (fault.trim() === '500') {
      res.writeHead(500, { 'content-type': 'text/plain' });
      return res.end('fault switch');
    }
    await pool.query('SELECT 1');
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(
      JSON.stringify({
        status: 'ok',
        app: KIND,
        database: (await pool.query('SELECT current_database() AS d')).rows[0].d,
      }),
    );
  }
  const user = signedIn(req);
  if (!user) {
    res.writeHead(403, { 'content-type': 'text/plain' });
    return res.end('sign in to your workspace first: this service is reached through the platform');
  }
  if (url.pathname === '/' && req.method === 'POST') {
    const body = new URLSearchParams(await readBody(req)).get('body')?.trim();
    if (!body) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      return res.end('body is required');
    }
    await pool.query('INSERT INTO drafts (kind, body, author_id, author_email) VALUES ($1, $2, $3, $4)', [
      KIND,
      body.slice(0, 10_000),
      user.id,
      user.email,
    ]);
    res.writeHead(303, { location: './' });
    return res.end();
  }
  if (url.pathname !== '/') {
    res.writeHead(404, { 'content-type': 'text/plain' });
    return res.end('not found');
  }
  const { rows } = await pool.query(
    'SELECT body, author_email, created_at FROM drafts ORDER BY id DESC LIMIT 50',
  );
  const items = rows
    .map((r) => {
      const by = r.author_email ? ` — ${escape(r.author_email)}` : '';
      return `<li>${escape(r.body)} <small>${r.created_at.toISOString()}${by}</small></li>`;
    })
    .join('');
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(TITLE)}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem"><h1>${escape(TITLE)}</h1>
<p>Signed in as <strong>${escape(user.email)}</strong> · <a href="/">Dashboard</a></p>
<form method="post" action="./"><label for="body">New entry</label><br>
<textarea id="body" name="body" rows="3" required style="width:100%;box-sizing:border-box"></textarea><br><button>Save</button></form>
<ul style="overflow-wrap:anywhere">${items || '<li>Nothing yet.</li>'}</ul></body></html>`);
}

const server = createServer((req, res) => {
  handle(req, res).catch((err) => {
    console.error(JSON.stringify({ level: 'error', msg: 'request failed', err: String(err) }));
    if (!res.headersSent) res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('unavailable');
  });
});

await migrate();
server.listen(PORT, HOST, () =>
  console.log(JSON.stringify({ level: 'info', msg: `${KIND} listening`, port: PORT })),
);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => pool.end().then(() => process.exit(0))));
}
