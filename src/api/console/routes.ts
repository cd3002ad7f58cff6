import type { FastifyReply, FastifyRequest } from 'fastify';
import { DomainError } from '../../core/errors.ts';
import { TENANT_STATUSES } from '../../core/tenants.ts';
import { STYLESHEET, STYLESHEET_PATH } from '../../web/design.ts';
import { totpQrSvg } from '../../web/qr.ts';
import type { ApiServer } from '../server.ts';
import { adminConsoleRoutes, tenantBackups } from './admin-routes.ts';
import { CONSOLE_COOKIE, consoleClient, refused, type ApiAnswer, type ConsoleClient } from './client.ts';
import { opsConsoleRoutes } from './ops-routes.ts';
import {
  codePage,
  enrolPage,
  loginPage,
  recoveryCodesPage,
  tenantPage,
  tenantsPage,
  type AuditView,
  type IncidentView,
  type ServiceView,
  type TenantRow,
  type TenantView,
} from './pages.ts';

const PAGE_SIZE = 20;
/** Console pages: no API credentials needed to reach them (they sign in themselves), not in the API reference. */
const PAGE = { config: { public: true }, schema: { hide: true } } as const;
const FORM = { config: { public: true, form: true, auditedByApi: true }, schema: { hide: true } } as const;

type Form = Record<string, string | undefined>;
const form = (request: FastifyRequest): Form => (request.body ?? {}) as Form;
const html = (reply: FastifyReply, status: number, body: string) =>
  reply.status(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(body);

function errorOf(answer: ApiAnswer): { code?: string; message: string; details?: Record<string, unknown> } {
  const error = (answer.body.error ?? {}) as {
    code?: string;
    message?: string;
    details?: Record<string, unknown>;
  };
  return {
    code: error.code,
    message: error.message ?? `the API answered ${answer.status}`,
    details: error.details,
  };
}

/**
 * The operator console (`/admin`), for platform admins, in server-rendered
 * pages with no script: password, then TOTP (the first sign-in enrols it,
 * with a QR code, and shows the recovery codes once); tenants with search,
 * status filter and pages; a tenant's provisioning timeline, services,
 * incidents and audit; suspend, reactivate and retry a failed service, each
 * after a confirmation dialog. Every page reads, and every action does, what
 * the public API offers (./client.ts).
 */
export function consoleRoutes(app: ApiServer, deps: { secureCookies: boolean; publicUrl: string }): void {
  const client: ConsoleClient = consoleClient(app, { secureCookies: deps.secureCookies });
  const publicUrl = new URL(deps.publicUrl);

  app.get(STYLESHEET_PATH, PAGE, (_request, reply) =>
    reply
      .type('text/css; charset=utf-8')
      .header('cache-control', 'public, max-age=31536000, immutable')
      .send(STYLESHEET),
  );

  app.get('/admin', PAGE, async (request, reply) => {
    const signedIn = request.cookies[CONSOLE_COOKIE.access] ?? request.cookies[CONSOLE_COOKIE.refresh];
    return reply.redirect(signedIn ? '/admin/tenants' : '/admin/login', 303);
  });

  // ── Sign-in ────────────────────────────────────────────────────────────
  app.get('/admin/login', PAGE, (request, reply) => {
    const q = request.query as Record<string, string | undefined>;
    return html(
      reply,
      200,
      loginPage({
        csrf: client.csrf(request, reply),
        info: q.expired !== undefined ? 'Your sign-in expired. Sign in again.' : undefined,
      }),
    );
  });

  app.post('/admin/login', FORM, async (request, reply) => {
    client.checkCsrf(request);
    const { email = '', password = '' } = form(request);
    const csrf = client.csrf(request, reply);
    if (!email.trim() || !password) {
      return html(reply, 400, loginPage({ csrf, email, error: 'Enter your email and password.' }));
    }
    const answer = await client.call(request, 'POST', '/api/v1/auth/login', {
      payload: { email: email.trim(), password },
    });
    if (answer.status === 200) return signedIn(request, reply, answer, email);
    const error = errorOf(answer);
    if (
      error.details?.reason === 'totp_enrolment_required' &&
      typeof error.details.enrolmentToken === 'string'
    ) {
      client.setStep(reply, { kind: 'enrol', token: error.details.enrolmentToken });
      return reply.redirect('/admin/enrol', 303);
    }
    if (error.details?.reason === 'totp_required' && typeof error.details.secondFactorToken === 'string') {
      client.setStep(reply, { kind: 'code', token: error.details.secondFactorToken });
      return reply.redirect('/admin/login/code', 303);
    }
    const message =
      answer.status === 429
        ? `Too many attempts. ${error.message}`
        : answer.status === 400
          ? 'Enter a valid email address and your password.'
          : 'Wrong email or password.';
    return html(
      reply,
      answer.status === 429 ? 429 : answer.status === 400 ? 400 : 401,
      loginPage({ csrf, email, error: message }),
    );
  });

  /** A login the API accepted: platform admins get the console; anyone else is signed out again. */
  async function signedIn(request: FastifyRequest, reply: FastifyReply, answer: ApiAnswer, email = '') {
    const tokens = answer.body as {
      accessToken: string;
      refreshToken: string;
      expiresIn: number;
      user: { role: string };
    };
    client.clearStep(reply);
    if (tokens.user.role !== 'platform_admin') {
      await client.call(request, 'POST', '/api/v1/auth/logout', { token: tokens.accessToken });
      return html(
        reply,
        403,
        loginPage({
          csrf: client.csrf(request, reply),
          email,
          error: 'This console is for platform operators. Tenant users sign in at their workspace.',
        }),
      );
    }
    client.startSession(reply, tokens);
    return reply.redirect('/admin/tenants', 303);
  }

  app.get('/admin/enrol', PAGE, async (request, reply) => {
    const step = client.step(request);
    if (step?.kind !== 'enrol') return reply.redirect('/admin/login', 303);
    let otpauthUrl = step.otpauthUrl;
    if (!otpauthUrl) {
      const started = await client.call(request, 'POST', '/api/v1/auth/totp/enrol', { token: step.token });
      if (started.status === 409) {
        client.setStep(reply, { kind: 'code', token: step.token });
        return reply.redirect('/admin/login/code', 303);
      }
      if (started.status !== 200) {
        client.clearStep(reply);
        return reply.redirect('/admin/login?expired', 303);
      }
      otpauthUrl = String(started.body.otpauthUrl);
      client.setStep(reply, { ...step, otpauthUrl });
    }
    return html(reply, 200, await enrolment(request, reply, otpauthUrl));
  });

  async function enrolment(request: FastifyRequest, reply: FastifyReply, otpauthUrl: string, error?: string) {
    const secret = new URL(otpauthUrl).searchParams.get('secret') ?? '';
    const qrSvg = await totpQrSvg(otpauthUrl);
    return enrolPage({ csrf: client.csrf(request, reply), qrSvg, secret, error });
  }

  app.post('/admin/enrol', FORM, async (request, reply) => {
    client.checkCsrf(request);
    const step = client.step(request);
    if (step?.kind !== 'enrol' || !step.otpauthUrl) return reply.redirect('/admin/login', 303);
    const code = (form(request).code ?? '').replace(/\s/g, '');
    const confirmed = await client.call(request, 'POST', '/api/v1/auth/totp/confirm', {
      token: step.token,
      payload: { code },
    });
    if (confirmed.status === 200) {
      // The enrolment token also carries the second step: the next code finishes the sign-in.
      return html(reply, 200, recoveryCodesPage(confirmed.body.recoveryCodes as string[]));
    }
    if (confirmed.status === 409) {
      client.setStep(reply, { kind: 'code', token: step.token });
      return reply.redirect('/admin/login/code', 303);
    }
    if (confirmed.status === 401 && !errorOf(confirmed).message.startsWith('the code is wrong')) {
      client.clearStep(reply);
      return reply.redirect('/admin/login?expired', 303);
    }
    const message =
      confirmed.status === 429
        ? `Too many attempts. ${errorOf(confirmed).message}`
        : 'That code is wrong or expired.';
    return html(
      reply,
      confirmed.status === 429 ? 429 : 400,
      await enrolment(request, reply, step.otpauthUrl, message),
    );
  });

  app.get('/admin/login/code', PAGE, (request, reply) => {
    if (!client.step(request)) return reply.redirect('/admin/login', 303);
    const q = request.query as Record<string, string | undefined>;
    return html(
      reply,
      200,
      codePage({ csrf: client.csrf(request, reply), enrolled: q.enrolled !== undefined }),
    );
  });

  app.post('/admin/login/code', FORM, async (request, reply) => {
    client.checkCsrf(request);
    const step = client.step(request);
    if (!step) return reply.redirect('/admin/login?expired', 303);
    const { code = '', recovery = '' } = form(request);
    const csrf = client.csrf(request, reply);
    const totp = code.replace(/\s/g, '');
    const recoveryCode = recovery.trim();
    if (!totp && !recoveryCode) {
      return html(reply, 400, codePage({ csrf, error: 'Enter the code from your app, or a recovery code.' }));
    }
    const answer = await client.call(request, 'POST', '/api/v1/auth/login/second-factor', {
      payload: { token: step.token, ...(totp ? { totp } : { recoveryCode }) },
    });
    if (answer.status === 200) return signedIn(request, reply, answer);
    const error = errorOf(answer);
    if (answer.status === 401 && error.message.startsWith('the sign-in has expired')) {
      client.clearStep(reply);
      return reply.redirect('/admin/login?expired', 303);
    }
    const message =
      answer.status === 429
        ? `Too many attempts. ${error.message}`
        : totp
          ? 'That code is wrong, expired or already used.'
          : 'That recovery code is wrong or already used.';
    return html(reply, answer.status === 429 ? 429 : 401, codePage({ csrf, error: message }));
  });

  app.post('/admin/logout', FORM, async (request, reply) => {
    client.checkCsrf(request);
    await client.asOperator(request, reply, 'POST', '/api/v1/auth/logout');
    client.endSession(reply);
    return reply.redirect('/admin/login', 303);
  });

  // ── Pages of a signed-in operator ──────────────────────────────────────
  /** The API's answer as the operator, or a redirect to sign in (undefined: the reply is sent). */
  async function read(
    request: FastifyRequest,
    reply: FastifyReply,
    url: string,
  ): Promise<ApiAnswer | undefined> {
    const answer = await client.asOperator(request, reply, 'GET', url);
    if (!answer) {
      client.endSession(reply);
      await reply.redirect('/admin/login?expired', 303);
      return undefined;
    }
    if (answer.status !== 200) throw refused(answer);
    return answer;
  }

  app.get('/admin/tenants', PAGE, async (request, reply) => {
    const q = request.query as Record<string, string | string[] | undefined>;
    const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v) ?? '';
    const search = one(q.q).trim();
    const status = one(q.status);
    const pageText = one(q.page) || '1';
    if (!/^\d{1,6}$/.test(pageText) || Number(pageText) < 1) {
      throw new DomainError('validation_failed', 'The page number must be a whole number from 1.');
    }
    if (status && !(TENANT_STATUSES as readonly string[]).includes(status)) {
      throw new DomainError('validation_failed', `There is no tenant status "${status}".`);
    }
    if (search.length > 100)
      throw new DomainError('validation_failed', 'The search is too long (100 characters at most).');
    const page = Number(pageText);
    const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String((page - 1) * PAGE_SIZE) });
    if (search) params.set('q', search);
    if (status) params.set('status', status);
    const answer = await read(request, reply, `/api/v1/tenants?${params.toString()}`);
    if (!answer) return reply;
    const body = answer.body as { tenants: TenantRow[]; total: number };
    return html(
      reply,
      200,
      tenantsPage({
        csrf: client.csrf(request, reply),
        q: search,
        status,
        page,
        pageSize: PAGE_SIZE,
        total: body.total,
        tenants: body.tenants,
      }),
    );
  });

  const TenantParam = (request: FastifyRequest) => {
    const ref = (request.params as { tenant: string }).tenant;
    if (!/^[a-z0-9_-]{1,80}$/i.test(ref)) throw new DomainError('not_found', 'There is no such tenant.');
    return ref;
  };

  app.get('/admin/tenants/:tenant', PAGE, async (request, reply) => {
    const ref = TenantParam(request);
    const detail = await read(request, reply, `/api/v1/tenants/${ref}`);
    if (!detail) return reply;
    const tenant = detail.body as unknown as TenantView;
    const [services, status, audit] = await Promise.all([
      read(request, reply, `/api/v1/tenants/${tenant.id}/services`),
      read(request, reply, `/api/v1/tenants/${tenant.id}/status`),
      read(request, reply, `/api/v1/audit?tenant=${tenant.id}&limit=20`),
    ]);
    if (!services || !status || !audit) return reply;
    const backups = await tenantBackups(client, request, reply, tenant);
    if (backups === undefined) {
      client.endSession(reply);
      return reply.redirect('/admin/login?expired', 303);
    }
    const q = request.query as Record<string, string | undefined>;
    return html(
      reply,
      200,
      tenantPage({
        csrf: client.csrf(request, reply),
        tenant,
        workspaceUrl: `${publicUrl.protocol}//${tenant.slug}.${publicUrl.host}/`,
        services: (services.body as { services: ServiceView[] }).services,
        incidents: (status.body as { incidents: IncidentView[] }).incidents,
        audit: (audit.body as { entries: AuditView[] }).entries,
        done: q.done,
        extra: backups,
      }),
    );
  });

  /** An action: the API call as the operator, then back to the tenant's page saying what happened. */
  async function act(request: FastifyRequest, reply: FastifyReply, url: string, done: string) {
    client.checkCsrf(request);
    const ref = TenantParam(request);
    const answer = await client.asOperator(request, reply, 'POST', url, {});
    if (!answer) {
      client.endSession(reply);
      return reply.redirect('/admin/login?expired', 303);
    }
    if (answer.status >= 300) throw refused(answer);
    return reply.redirect(`/admin/tenants/${encodeURIComponent(ref)}?done=${done}`, 303);
  }

  for (const [verb, done] of [
    ['suspend', 'suspended'],
    ['reactivate', 'reactivated'],
  ] as const) {
    app.post(`/admin/tenants/:tenant/${verb}`, FORM, (request, reply) =>
      act(request, reply, `/api/v1/tenants/${TenantParam(request)}/${verb}`, done),
    );
  }

  app.post('/admin/tenants/:tenant/cancel', FORM, (request, reply) =>
    act(request, reply, `/api/v1/tenants/${TenantParam(request)}/cancel`, 'cancelled'),
  );
  // Purge now: the grace period ends early (the API refuses a tenant that is not cancelled, 409).
  app.post('/admin/tenants/:tenant/purge', FORM, (request, reply) =>
    act(request, reply, `/api/v1/tenants/${TenantParam(request)}/purge?now=true`, 'purged'),
  );

  app.post('/admin/tenants/:tenant/services/:service/retry', FORM, (request, reply) => {
    const service = (request.params as { service: string }).service;
    if (!/^[a-z0-9_-]{1,80}$/i.test(service)) throw new DomainError('not_found', 'There is no such service.');
    return act(
      request,
      reply,
      `/api/v1/tenants/${TenantParam(request)}/services/${service}/retry`,
      'retried',
    );
  });

  adminConsoleRoutes(app, client);
  opsConsoleRoutes(app, client);
}
