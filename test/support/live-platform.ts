import { request, type IncomingHttpHeaders } from 'node:http';
import { mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { removeBridge } from '../../src/compute/lxc/bridge.ts';
import { LxcDriver } from '../../src/compute/lxc/driver.ts';
import { ProcessDriver } from '../../src/compute/process/driver.ts';
import type { ComputeDriver } from '../../src/core/compute.ts';
import type { Database } from '../../src/db/database.ts';
import { openDatabase } from '../../src/db/database.ts';
import { freePort, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { AIQSO_BIN, startCli, type CliResult } from './cli.ts';
import { middayZone } from './clock.ts';
import { lxcAvailable, privateNetwork } from './lxc.ts';
import { missingPart } from './strict.ts';
import { signed } from './stripe.ts';

/**
 * A whole platform as a user runs it (`aiqso up` in a child process) for
 * end-to-end tests and benchmarks, reached through its edge like a browser
 * would: `<slug>.localhost:<port>`.
 */

export interface EdgeAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body as received (for an archive). */
  bytes: Buffer;
}

/** A request to the platform's port with a tenant's Host header. */
export function viaEdge(
  host: string,
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<EdgeAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: options.method ?? 'GET',
        path: options.path ?? '/',
        headers: { host, ...options.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const bytes = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: bytes.toString(), bytes });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const cookiesOf = (res: EdgeAnswer) =>
  ([] as string[]).concat(res.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]!);

/**
 * Sign in on the tenant's dashboard as a browser does, through the edge: load
 * the sign-in form (its CSRF token and the visitor cookie it is bound to),
 * then post it. Returns the dashboard's session cookie, and `cookies`, the
 * Cookie header a browser would send afterwards (the dashboard's and the edge
 * session, which the tenant's services need).
 */
export async function dashboardLogin(
  host: string,
  port: number,
  email: string,
  password: string,
  next?: string,
) {
  const form = await viaEdge(host, port, { path: next ? `/login?next=${encodeURIComponent(next)}` : '/' });
  const csrf = /name="csrf" value="([^"]+)"/.exec(form.body)?.[1] ?? '';
  const res = await viaEdge(host, port, {
    method: 'POST',
    path: '/login',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: cookiesOf(form).join('; '),
    },
    body: new URLSearchParams({ csrf, email, password, ...(next ? { next } : {}) }).toString(),
  });
  // What a browser keeps: the cookies set with a value (a cleared one has none).
  const set = cookiesOf(res).filter((c) => !c.endsWith('='));
  const cookie = set.find((c) => c.startsWith('aiqso_dash='));
  return { status: res.status, cookie, cookies: set.join('; '), location: res.headers.location };
}

/** Sign out on the tenant's dashboard as a browser does: the sign-out form (a POST with its CSRF token). */
export async function dashboardLogout(host: string, port: number, cookies: string) {
  const home = await viaEdge(host, port, { headers: { cookie: cookies } });
  const form = /<form method="post" action="logout"[^>]*>.*?name="csrf" value="([^"]+)"/s.exec(home.body);
  return viaEdge(host, port, {
    method: 'POST',
    path: '/logout',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookies },
    body: new URLSearchParams({ csrf: form?.[1] ?? '' }).toString(),
  });
}

/** One compute driver's configuration for `aiqso up`, and how a test sees and clears its containers. */
export interface DriverCase {
  name: 'process' | 'lxc' | 'proxmox';
  /** True when the driver cannot run here (throws in strict mode). */
  skip(): boolean;
  env(dataDir: string): Record<string, string>;
  /** The same driver over the platform's state, to list or destroy containers. */
  open(dataDir: string, db: Database): Promise<ComputeDriver>;
  /** What the driver leaves on the host once its containers are gone (the LXC bridge). */
  cleanUp(): Promise<void>;
}

/** `wide`: the lxc case gets a /20 (4,093 containers) instead of a /24 (253). */
export function driverCases(options: { wide?: boolean } = {}): DriverCase[] {
  const lxcNet = privateNetwork('e2e', options.wide ? 20 : 24);
  return [
    {
      name: 'process',
      skip: () => false,
      env: () => ({ AIQSO_DRIVER: 'process' }),
      open: (dataDir) =>
        ProcessDriver.open({ root: path.join(dataDir, 'containers'), log: createLogger('silent') }),
      cleanUp: () => Promise.resolve(),
    },
    {
      name: 'lxc',
      skip: () =>
        missingPart('lxc (root and lxc tools)', lxcAvailable(), 'apt-get install lxc and run as root'),
      env: (dataDir) => ({
        AIQSO_DRIVER: 'lxc',
        AIQSO_LXC_PATH: path.join(dataDir, 'lxc'),
        AIQSO_LXC_BRIDGE: lxcNet.bridge,
        AIQSO_LXC_SUBNET: lxcNet.subnet,
      }),
      open: (dataDir, db) =>
        Promise.resolve(
          new LxcDriver({ db, log: createLogger('silent'), lxcPath: path.join(dataDir, 'lxc'), ...lxcNet }),
        ),
      cleanUp: () => removeBridge(lxcNet.bridge),
    },
  ];
}

export interface LivePlatform {
  port: number;
  dataDir: string;
  env: Record<string, string>;
  /** The webhook secret the platform generated (local billing mode). */
  webhookSecret: string;
  /** Sign `event` with the platform's webhook secret (or `secret`) and POST it to /webhooks/stripe. */
  sendEvent(event: object, options?: { secret?: string; timestamp?: number }): Promise<number>;
  signup(form: { company: string; slug: string; email: string; password?: string }): Promise<{
    status: number;
    checkoutUrl: string;
  }>;
  /** GET `/` of `<slug>.localhost` through the edge. */
  page(slug: string): Promise<EdgeAnswer>;
  /** Poll `<slug>.localhost` every `everyMs` (50) until `want` holds (or `timeoutMs` passes); returns the last answer. */
  until(
    slug: string,
    want: (page: EdgeAnswer) => boolean,
    timeoutMs?: number,
    everyMs?: number,
  ): Promise<EdgeAnswer>;
  /** What the running `aiqso up` wrote to stderr and stdout so far. */
  output(): string;
  /** The running `aiqso up`'s process id (benchmarks read its CPU time). */
  pid(): number;
  /**
   * Stop `aiqso up` with `signal` (SIGINT and SIGTERM stop it cleanly, SIGKILL
   * as a crash would), run `between` while it is down, then start it again on
   * the same data directory, port and environment.
   */
  restart(signal: NodeJS.Signals, between?: () => Promise<void>): Promise<CliResult>;
  /**
   * SIGINT, wait for exit, then destroy every container the driver left (they
   * outlive `aiqso up` by design). `db` is the external master database, if any.
   */
  stop(db?: Database): Promise<CliResult>;
}

export async function startLivePlatform(options: {
  /** The master database; none means `aiqso up`'s embedded PostgreSQL in the data dir. */
  databaseUrl?: string;
  driver: DriverCase;
  env?: Record<string, string>;
  /** Node flags for `aiqso up` (a benchmark's `--cpu-prof`, for one). */
  nodeArgs?: string[];
}): Promise<LivePlatform> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-live-'));
  const port = await freePort();
  const env = {
    AIQSO_DATA_DIR: dataDir,
    AIQSO_HTTP_PORT: String(port),
    // Tests and benchmarks sign up many tenants from one address.
    AIQSO_SIGNUP_RATE_IP: '0',
    // No nightly schedule fires into a long test or benchmark.
    AIQSO_TIMEZONE: middayZone(),
    ...(options.databaseUrl ? { DATABASE_URL: options.databaseUrl } : {}),
    ...options.driver.env(dataDir),
    ...options.env,
  };
  const launcher = [process.execPath, ...(options.nodeArgs ?? []), AIQSO_BIN];
  const start = () => startCli(['up'], env, 'Press Ctrl-C to stop.', 120_000, undefined, launcher);
  let up = await start();
  const webhookSecret = (
    await readFile(path.join(dataDir, 'secrets', 'stripe-webhook-secret'), 'utf8')
  ).trim();
  const base = `http://127.0.0.1:${port}`;
  const page = (slug: string) => viaEdge(`${slug}.localhost:${port}`, port);
  return {
    port,
    dataDir,
    env,
    webhookSecret,
    async sendEvent(event, { secret = webhookSecret, timestamp } = {}) {
      const req = signed(event, secret, timestamp);
      const res = await fetch(`${base}${req.url}`, {
        method: 'POST',
        headers: req.headers,
        body: req.payload,
      });
      await res.arrayBuffer();
      return res.status;
    },
    async signup({ password = 'correct horse battery staple', ...form }) {
      const res = await fetch(`${base}/api/v1/signup`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ...form, password }),
      });
      const body = (await res.json()) as { checkoutUrl: string };
      return { status: res.status, checkoutUrl: body.checkoutUrl };
    },
    page,
    until: (slug, want, timeoutMs = 30_000, everyMs = 50) =>
      pollUntil(() => page(slug), want, timeoutMs, everyMs),
    output: () => up.output(),
    pid: () => up.child.pid!,
    async restart(signal, between) {
      up.child.kill(signal);
      const result = await up.exited;
      await between?.();
      up = await start();
      return result;
    },
    async stop(db) {
      up.child.kill('SIGINT');
      const result = await up.exited;
      // With the embedded server, it stopped with the platform: start it again to clean up.
      const server = db ? undefined : await startEmbeddedPostgres(dataDir, createLogger('silent'));
      const handle = server && openDatabase(server.url.replace(/\/postgres$/, '/aiqso'), { max: 2 });
      try {
        const driver = await options.driver.open(dataDir, db ?? handle!.db);
        // Eight at a time: one after another, a thousand lxc containers went at about ten a minute (each
        // destroy redraws the network policy; destroys at once share a redraw).
        const left = await driver.list();
        const destroyer = async () => {
          for (let c = left.pop(); c; c = left.pop()) await driver.destroy(c.name);
        };
        await Promise.all(Array.from({ length: 8 }, destroyer));
        await driver.close();
        await options.driver.cleanUp();
      } finally {
        await handle?.close();
        await server?.stop();
      }
      return result;
    },
  };
}

/** Poll `probe` until `done` holds for its value or the time runs out; returns the last value. */
export async function pollUntil<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await probe();
  while (!done(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, everyMs));
    value = await probe();
  }
  return value;
}
