import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import path from 'node:path';
import { REPO_ROOT } from '../../src/catalog/load.ts';
import { freePort } from '../../src/db/embedded.ts';
import { loadSecretBox } from '../../src/identity/master-key.ts';
import { dashboardCredentials } from '../../src/lifecycle/dashboard-credential.ts';
import type { Harness, TenantFixture } from './identity.ts';

/**
 * A tenant's dashboard (dashboard/server.mjs) as the platform deploys it: its
 * own process, its own tenant-scoped key, calling the harness's API over HTTP.
 * Requests reach it as the edge sends them (X-Forwarded-For set to the client).
 */
export interface RunningDashboard {
  port: number;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** The harness's API on a real port (once per harness). */
const listening = new WeakMap<Harness, Promise<string>>();
export function apiUrl(h: Harness): Promise<string> {
  let url = listening.get(h);
  if (!url) {
    url = h.api.listen({ host: '127.0.0.1', port: 0 });
    listening.set(h, url);
  }
  return url;
}

export async function startDashboard(
  h: Harness,
  tenant: TenantFixture,
  company = `${tenant.slug} Inc.`,
  /** More of the dashboard's environment (e.g. AIQSO_DASHBOARD_LIVE_SECONDS). */
  extraEnv: Record<string, string> = {},
): Promise<RunningDashboard> {
  const box = () => loadSecretBox({ configured: h.config.masterKey, dataDir: h.dataDir });
  const key = await dashboardCredentials(h.db.db, box).get(tenant.id);
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'dashboard', 'server.mjs')], {
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      HOST: '127.0.0.1',
      AIQSO_API_URL: await apiUrl(h),
      AIQSO_TENANT_ID: tenant.id,
      AIQSO_TENANT_SLUG: tenant.slug,
      AIQSO_COMPANY: company,
      AIQSO_API_KEY: key,
      // The portal as a browser reaches it (`localhost` resolves in the tests' Chromium).
      AIQSO_PUBLIC_URL: (await apiUrl(h)).replace('127.0.0.1', 'localhost'),
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      if (c.toString().includes('dashboard listening')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`dashboard exited (${code}): ${stderr}`)));
  });
  return {
    port,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      running.delete(child);
    },
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A browser at one address: keeps cookies, reads forms' CSRF tokens, posts forms. */
export class Browser {
  readonly jar = new Map<string, string>();
  constructor(
    readonly port: number,
    readonly address = '198.51.100.1',
  ) {}

  request(method: string, target: string, form?: Record<string, string>): Promise<Answer> {
    const body = form ? new URLSearchParams(form).toString() : undefined;
    const cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: this.port,
          method,
          path: target,
          headers: {
            'x-forwarded-for': this.address,
            ...(cookie ? { cookie } : {}),
            ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
          },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => {
            for (const c of ([] as string[]).concat(res.headers['set-cookie'] ?? [])) {
              const [pair, ...attrs] = c.split(';');
              const eq = pair!.indexOf('=');
              const name = pair!.slice(0, eq);
              const value = pair!.slice(eq + 1);
              if (value === '' || attrs.some((a) => a.trim() === 'Max-Age=0')) this.jar.delete(name);
              else this.jar.set(name, value);
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text });
          });
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  get(target = '/'): Promise<Answer> {
    return this.request('GET', target);
  }

  /** The CSRF token of the first form on `page` (every form on a page carries the same one). */
  static csrf(page: Answer): string {
    const m = /name="csrf" value="([^"]+)"/.exec(page.body);
    if (!m) throw new Error(`no CSRF token on the page (${page.status}): ${page.body.slice(0, 200)}`);
    return m[1]!;
  }

  /** Post `form` to `action` with the CSRF token of the page `from` (the sign-in page by default). */
  async submit(action: string, form: Record<string, string>, from?: Answer): Promise<Answer> {
    const page = from ?? (await this.get('/'));
    return this.request('POST', action, { csrf: Browser.csrf(page), ...form });
  }

  /** Sign in with email and password; returns the answer (303 when signed in, or the second step). */
  signIn(email: string, password: string): Promise<Answer> {
    return this.submit('/login', { email, password });
  }
}
