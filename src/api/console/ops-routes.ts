import type { FastifyReply, FastifyRequest } from 'fastify';
import { DomainError } from '../../core/errors.ts';
import type { ApiServer } from '../server.ts';
import { refused, type ConsoleClient } from './client.ts';
import {
  auditPage,
  auditVerifyPage,
  certificatesPage,
  hostsPage,
  jobsPage,
  type AuditEntryView,
  type CertificateView,
  type HostView,
  type JobsView,
  type VerifyView,
} from './ops-pages.ts';

/** Console pages sign in themselves (no API credentials to reach them) and are not in the API reference. */
const PAGE = { config: { public: true }, schema: { hide: true } } as const;
const FORM = { config: { public: true, form: true, auditedByApi: true }, schema: { hide: true } } as const;
const AUDIT_PAGE = 50;

type Query = Record<string, string | string[] | undefined>;
const one = (v: string | string[] | undefined) => ((Array.isArray(v) ? v[0] : v) ?? '').trim();
const html = (reply: FastifyReply, status: number, body: string) =>
  reply.status(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(body);

/** An API refusal as the console's own error (an HTML page with the API's words and status). */
/** `2031-05-01` or `2031-05-01T09:30` (a datetime-local field, in UTC) as the API's ISO time. */
function isoTime(name: string, value: string): string | undefined {
  if (!value) return undefined;
  const m = /^(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2})(?::(\d{2}))?)?$/.exec(value);
  const iso = m ? `${m[1]}T${m[2] ?? '00:00'}:${m[3] ?? '00'}Z` : '';
  if (!m || Number.isNaN(Date.parse(iso))) {
    throw new DomainError(
      'validation_failed',
      `"${name}" must be a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM), in UTC.`,
    );
  }
  return iso;
}

/**
 * The console's operations pages, each a client of the admin API: jobs and
 * failed work (`/api/v1/jobs`, retry), hosts and capacity (`/api/v1/hosts`,
 * drain/undrain), certificates (`/api/v1/certificates`, renew now) and the
 * audit log (`/api/v1/audit`, `/api/v1/audit/verify`). Actions go through a
 * confirmation dialog, then come back to their page saying what happened.
 */
export function opsConsoleRoutes(app: ApiServer, client: ConsoleClient): void {
  const read = (request: FastifyRequest, reply: FastifyReply, url: string) =>
    client.read(request, reply, url);

  /** An action: the API call as the operator, then back to `back` with `done` saying what happened. */
  async function act(request: FastifyRequest, reply: FastifyReply, url: string, back: string, done: string) {
    client.checkCsrf(request);
    const answer = await client.asOperator(request, reply, 'POST', url, {});
    if (!answer) {
      client.endSession(reply);
      return reply.redirect('/admin/login?expired', 303);
    }
    if (answer.status >= 300) throw refused(answer);
    return reply.redirect(`${back}?done=${done}`, 303);
  }

  const param = (request: FastifyRequest, name: string, pattern: RegExp, what: string) => {
    const value = (request.params as Record<string, string>)[name] ?? '';
    if (!pattern.test(value)) throw new DomainError('not_found', `There is no such ${what}.`);
    return encodeURIComponent(value);
  };

  // ── Jobs and failed work ───────────────────────────────────────────────
  app.get('/admin/jobs', PAGE, async (request, reply) => {
    const answer = await read(request, reply, '/api/v1/jobs');
    if (!answer) return reply;
    const done = one((request.query as Query).done) || undefined;
    return html(
      reply,
      200,
      jobsPage({ csrf: client.csrf(request, reply), work: answer.body as unknown as JobsView, done }),
    );
  });

  app.post('/admin/jobs/resources/:kind/:id/retry', FORM, (request, reply) => {
    const kind = param(request, 'kind', /^[a-z_]{1,40}$/, 'resource');
    const id = param(request, 'id', /^[A-Za-z0-9_-]{1,80}$/, 'resource');
    return act(request, reply, `/api/v1/jobs/resources/${kind}/${id}/retry`, '/admin/jobs', 'retried');
  });

  app.post('/admin/jobs/inbox/:id/retry', FORM, (request, reply) => {
    const id = param(request, 'id', /^[\x21-\x7e]{1,255}$/, 'event');
    return act(request, reply, `/api/v1/jobs/inbox/${id}/retry`, '/admin/jobs', 'inbox-retried');
  });

  // ── Hosts and capacity ─────────────────────────────────────────────────
  app.get('/admin/hosts', PAGE, async (request, reply) => {
    const answer = await read(request, reply, '/api/v1/hosts');
    if (!answer) return reply;
    const done = one((request.query as Query).done) || undefined;
    const hosts = (answer.body as { hosts: HostView[] }).hosts;
    return html(reply, 200, hostsPage({ csrf: client.csrf(request, reply), hosts, done }));
  });

  for (const [verb, done] of [
    ['drain', 'drained'],
    ['undrain', 'undrained'],
  ] as const) {
    app.post(`/admin/hosts/:host/${verb}`, FORM, (request, reply) => {
      const host = param(request, 'host', /^[\x21-\x7e]{1,100}$/, 'host');
      return act(request, reply, `/api/v1/hosts/${host}/${verb}`, '/admin/hosts', done);
    });
  }

  // ── Certificates ───────────────────────────────────────────────────────
  app.get('/admin/certificates', PAGE, async (request, reply) => {
    const answer = await read(request, reply, '/api/v1/certificates');
    if (!answer) return reply;
    const body = answer.body as {
      certificates: CertificateView[];
      renewDays: number;
      acme: { configured: boolean; directoryUrl: string | null };
    };
    const done = one((request.query as Query).done) || undefined;
    return html(reply, 200, certificatesPage({ csrf: client.csrf(request, reply), ...body, done }));
  });

  app.post('/admin/certificates/:name/renew', FORM, (request, reply) => {
    const name = param(request, 'name', /^[*a-z0-9.-]{1,253}$/i, 'certificate');
    return act(request, reply, `/api/v1/certificates/${name}/renew`, '/admin/certificates', 'renewed');
  });

  // ── Audit log ──────────────────────────────────────────────────────────
  app.get('/admin/audit', PAGE, async (request, reply) => {
    const q = request.query as Query;
    const filter = { tenant: one(q.tenant), actor: one(q.actor), from: one(q.from), to: one(q.to) };
    const before = one(q.before);
    for (const key of ['tenant', 'actor'] as const) {
      if (filter[key].length > 80)
        throw new DomainError('validation_failed', `The ${key} filter is too long (80 characters at most).`);
    }
    if (before && !/^\d{1,19}$/.test(before)) {
      throw new DomainError('validation_failed', '"before" must be an entry number.');
    }
    const from = isoTime('from', filter.from);
    const to = isoTime('to', filter.to);
    if (from && to && from >= to) throw new DomainError('validation_failed', '"from" must be before "to".');
    const params = new URLSearchParams({ limit: String(AUDIT_PAGE) });
    if (filter.tenant) params.set('tenant', filter.tenant);
    if (filter.actor) params.set('actor', filter.actor);
    if (from) params.set('from', from);
    if (to) params.set('to', to);
    if (before) params.set('before', before);
    const answer = await read(request, reply, `/api/v1/audit?${params.toString()}`);
    if (!answer) return reply;
    const body = answer.body as { entries: AuditEntryView[]; next: string | null };
    const pageUrl = (b: string | null) => {
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(filter)) if (v) p.set(k, v);
      if (b) p.set('before', b);
      const s = p.toString();
      return `/admin/audit${s ? `?${s}` : ''}`;
    };
    return html(
      reply,
      200,
      auditPage({
        csrf: client.csrf(request, reply),
        filter,
        entries: body.entries,
        next: body.next,
        before,
        pageUrl,
      }),
    );
  });

  app.get('/admin/audit/verify', PAGE, async (request, reply) => {
    const q = request.query as Query;
    const expect = one(q.expect);
    const csrf = client.csrf(request, reply);
    if (!one(q.run)) return html(reply, 200, auditVerifyPage({ csrf, expect }));
    if (expect && !/^\d{1,19}:[0-9a-f]{64}$/.test(expect)) {
      throw new DomainError(
        'validation_failed',
        'The head must be written as a verify shows it: the row number, a colon and 64 hex digits.',
      );
    }
    const url = `/api/v1/audit/verify${expect ? `?expect=${encodeURIComponent(expect)}` : ''}`;
    const answer = await read(request, reply, url);
    if (!answer) return reply;
    return html(reply, 200, auditVerifyPage({ csrf, expect, report: answer.body as unknown as VerifyView }));
  });
}
