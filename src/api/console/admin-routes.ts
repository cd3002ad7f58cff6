import type { FastifyReply, FastifyRequest } from 'fastify';
import { DomainError } from '../../core/errors.ts';
import { METRICS } from '../../core/usage.ts';
import type { ApiServer } from '../server.ts';
import { refused, type ConsoleClient } from './client.ts';
import {
  backupsPage,
  catalogPage,
  configPage,
  tenantBackupsSection,
  usagePage,
  usersPage,
  webhooksPage,
  type CatalogAnswer,
  type DeliveryRow,
  type EndpointRow,
  type RunRow,
  type SettingRow,
  type SnapshotRow,
  type UsageAnswer,
  type UserRow,
  type VerificationRow,
} from './admin-pages.ts';

const PAGE = { config: { public: true }, schema: { hide: true } } as const;
const FORM = { config: { public: true, form: true, auditedByApi: true }, schema: { hide: true } } as const;
const USERS_PAGE_SIZE = 50;
const USAGE_PAGE_SIZE = 50;
const TENANT_BACKUP_ROWS = 10;

type Query = Record<string, string | string[] | undefined>;
const one = (q: Query, key: string) => {
  const v = q[key];
  return ((Array.isArray(v) ? v[0] : v) ?? '').trim();
};
const html = (reply: FastifyReply, status: number, body: string) =>
  reply.status(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(body);

function pageNumber(q: Query): number {
  const text = one(q, 'page') || '1';
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1)
    throw new DomainError('validation_failed', 'The page number must be a whole number from 1.');
  return Number(text);
}

const Ref = /^[a-z0-9_-]{1,80}$/i;
function param(request: FastifyRequest, name: string, what: string): string {
  const value = (request.params as Record<string, string>)[name] ?? '';
  if (!Ref.test(value)) throw new DomainError('not_found', `There is no such ${what}.`);
  return value;
}

/** Where a form may send the browser back to: a console page, nothing else. */
function backTo(value: string | undefined, fallback: string): string {
  return value && /^\/admin\/[a-z/]*(\?[^#\s]*)?$/i.test(value) && !value.startsWith('//') ? value : fallback;
}

/**
 * The console's platform pages: users (reset a user's two-factor), plans and
 * catalog, backups across tenants, usage, event webhooks (redeliver) and the
 * configuration; and the Backups section of a tenant's page (back up now,
 * restore a tenant or a service). Each reads, and each action does, the
 * public API's routes as the signed-in operator.
 */
export function adminConsoleRoutes(app: ApiServer, client: ConsoleClient): void {
  /** A page's read: the answer's body, or undefined once the browser is sent to sign in. */
  const read = async (request: FastifyRequest, reply: FastifyReply, url: string) =>
    (await client.read(request, reply, url))?.body;

  /** A form's API call as the operator, then back to `to`. */
  async function act(
    request: FastifyRequest,
    reply: FastifyReply,
    url: string,
    to: string,
    payload: object = {},
  ) {
    client.checkCsrf(request);
    const answer = await client.asOperator(request, reply, 'POST', url, payload);
    if (!answer) {
      client.endSession(reply);
      return reply.redirect('/admin/login?expired', 303);
    }
    if (answer.status >= 300) throw refused(answer);
    return reply.redirect(to, 303);
  }

  // ── Users ──────────────────────────────────────────────────────────────
  app.get('/admin/users', PAGE, async (request, reply) => {
    const q = request.query as Query;
    const page = pageNumber(q);
    const filters = { q: one(q, 'q'), tenant: one(q, 'tenant'), role: one(q, 'role'), totp: one(q, 'totp') };
    const params = new URLSearchParams({
      limit: String(USERS_PAGE_SIZE),
      offset: String((page - 1) * USERS_PAGE_SIZE),
    });
    for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);
    const body = await read(request, reply, `/api/v1/platform/users?${params.toString()}`);
    if (!body) return reply;
    const { users, total } = body as { users: UserRow[]; total: number };
    return html(
      reply,
      200,
      usersPage({
        csrf: client.csrf(request, reply),
        ...filters,
        page,
        pageSize: USERS_PAGE_SIZE,
        total,
        users,
        done: one(q, 'done') || undefined,
      }),
    );
  });

  app.post('/admin/users/:user/totp/reset', FORM, (request, reply) => {
    const user = param(request, 'user', 'user');
    const back = backTo((request.body as Record<string, string | undefined>).back, '/admin/users');
    return act(
      request,
      reply,
      `/api/v1/platform/users/${user}/totp/reset`,
      `${back}${back.includes('?') ? '&' : '?'}done=totp-reset`,
    );
  });

  // ── Plans and catalog ──────────────────────────────────────────────────
  app.get('/admin/catalog', PAGE, async (request, reply) => {
    const body = await read(request, reply, '/api/v1/platform/catalog');
    if (!body) return reply;
    return html(reply, 200, catalogPage(client.csrf(request, reply), body as unknown as CatalogAnswer));
  });

  // ── Backups ────────────────────────────────────────────────────────────
  app.get('/admin/backups', PAGE, async (request, reply) => {
    const tenant = one(request.query as Query, 'tenant');
    if (tenant && !Ref.test(tenant))
      throw new DomainError('validation_failed', 'A tenant is named by its slug (letters, digits, - and _).');
    const body = await read(
      request,
      reply,
      `/api/v1/platform/backups${tenant ? `?tenant=${encodeURIComponent(tenant)}` : ''}`,
    );
    if (!body) return reply;
    const { runs, verifications } = body as { runs: RunRow[]; verifications: VerificationRow[] };
    return html(reply, 200, backupsPage({ csrf: client.csrf(request, reply), tenant, runs, verifications }));
  });

  app.post('/admin/tenants/:tenant/backups', FORM, (request, reply) => {
    const tenant = param(request, 'tenant', 'tenant');
    return act(
      request,
      reply,
      `/api/v1/tenants/${tenant}/backups`,
      `/admin/tenants/${tenant}?backups=backup-started#backups`,
    );
  });

  app.post('/admin/tenants/:tenant/restore', FORM, (request, reply) => {
    const tenant = param(request, 'tenant', 'tenant');
    return act(
      request,
      reply,
      `/api/v1/tenants/${tenant}/restore`,
      `/admin/tenants/${tenant}?backups=tenant-restore-started#backups`,
    );
  });

  app.post('/admin/tenants/:tenant/services/:service/restore', FORM, (request, reply) => {
    const tenant = param(request, 'tenant', 'tenant');
    const service = param(request, 'service', 'service');
    const snapshot = (request.body as Record<string, string | undefined>).snapshot ?? '';
    if (!/^[0-9a-f]{8,64}$/.test(snapshot))
      throw new DomainError('validation_failed', 'Choose a snapshot to restore from the list.');
    return act(
      request,
      reply,
      `/api/v1/tenants/${tenant}/services/${service}/restore`,
      `/admin/tenants/${tenant}?backups=restore-started#backups`,
      { snapshot },
    );
  });

  // ── Usage ──────────────────────────────────────────────────────────────
  app.get('/admin/usage', PAGE, async (request, reply) => {
    const q = request.query as Query;
    const page = pageNumber(q);
    const params = new URLSearchParams({
      limit: String(USAGE_PAGE_SIZE),
      offset: String((page - 1) * USAGE_PAGE_SIZE),
    });
    const month = one(q, 'month');
    const sort = one(q, 'sort');
    if (month) params.set('month', month);
    if (sort) params.set('sort', sort);
    const body = await read(request, reply, `/api/v1/usage?${params.toString()}`);
    if (!body) return reply;
    return html(
      reply,
      200,
      usagePage({
        csrf: client.csrf(request, reply),
        usage: body as unknown as UsageAnswer,
        page,
        metrics: METRICS,
      }),
    );
  });

  // ── Event webhooks ─────────────────────────────────────────────────────
  app.get('/admin/webhooks', PAGE, async (request, reply) => {
    const endpoints = await read(request, reply, '/api/v1/webhooks');
    if (!endpoints) return reply;
    const deliveries = await read(request, reply, '/api/v1/webhooks/deliveries?limit=50');
    if (!deliveries) return reply;
    return html(
      reply,
      200,
      webhooksPage({
        csrf: client.csrf(request, reply),
        endpoints: (endpoints as { endpoints: EndpointRow[] }).endpoints,
        deliveries: (deliveries as { deliveries: DeliveryRow[] }).deliveries,
        done: one(request.query as Query, 'done') || undefined,
      }),
    );
  });

  app.post('/admin/webhooks/deliveries/:delivery/redeliver', FORM, (request, reply) => {
    const delivery = param(request, 'delivery', 'delivery');
    return act(
      request,
      reply,
      `/api/v1/webhooks/deliveries/${delivery}/redeliver`,
      '/admin/webhooks?done=redelivered',
    );
  });

  // ── Configuration ──────────────────────────────────────────────────────
  app.get('/admin/config', PAGE, async (request, reply) => {
    const body = await read(request, reply, '/api/v1/platform/config');
    if (!body) return reply;
    return html(
      reply,
      200,
      configPage(client.csrf(request, reply), (body as { settings: SettingRow[] }).settings),
    );
  });
}

/** The Backups section of a tenant's page, from the API (undefined: the reply went to sign-in). */
export async function tenantBackups(
  client: ConsoleClient,
  request: FastifyRequest,
  reply: FastifyReply,
  tenant: { id: string; slug: string; status: string },
): Promise<string | undefined> {
  const get = async (url: string) => {
    const answer = await client.asOperator(request, reply, 'GET', url);
    if (!answer) return undefined;
    if (answer.status !== 200) throw refused(answer);
    return answer.body;
  };
  const [across, own] = await Promise.all([
    get(`/api/v1/platform/backups?tenant=${tenant.id}&limit=${TENANT_BACKUP_ROWS}`),
    get(`/api/v1/tenants/${tenant.id}/backups`),
  ]);
  if (!across || !own) return undefined;
  const { runs, verifications } = across as { runs: RunRow[]; verifications: VerificationRow[] };
  return tenantBackupsSection({
    csrf: client.csrf(request, reply),
    slug: tenant.slug,
    status: tenant.status,
    runs,
    verifications,
    snapshots: (own as { backups: SnapshotRow[] }).backups.slice(0, 30),
    done: one(request.query as Query, 'backups') || undefined,
  });
}
