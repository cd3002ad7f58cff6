import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { DomainError, isDomainError } from '../../core/errors.ts';
import { tenantUrl } from '../../core/services.ts';
import type { Database } from '../../db/database.ts';
import {
  confirmPasswordReset,
  findWorkspaces,
  requestPasswordReset,
  resetTokenOpen,
  RESET_TTL_MINUTES,
  type RecoveryDeps,
  type RecoveryOutcome,
} from '../../identity/account-recovery.ts';
import { readPreferences, recordMarketingChoice } from '../../identity/preferences.ts';
import { escapeHtml } from '../../web/html.ts';
import { designPage, field, notice } from '../../web/design.ts';
import type { ApiServer } from '../server.ts';
import { principalOf } from './authenticate.ts';

const tags = ['auth'];
const EmailBody = z.object({ email: z.string().max(320) });
const Accepted = z.object({ message: z.string() });
const PreferencesOut = z.object({
  marketingEmails: z.boolean(),
  marketingEmailsSince: z.string().nullable(),
  marketingEmailsWording: z.string(),
});

const RESET_SENT =
  'If an account uses this address, a link to choose a new password is on its way. It works once, for the next hour.';
const FIND_SENT =
  'We have sent the addresses of the workspaces this address belongs to (or that there is none).';

const PAGE = { config: { public: true }, schema: { hide: true } } as const;
const html = (reply: FastifyReply, status: number, body: string) =>
  reply.status(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(body);

/** The audit row of a recovery request names the account the address belongs to (the caller never learns it). */
function auditOutcome(request: FastifyRequest, outcome: RecoveryOutcome, extra?: Record<string, unknown>) {
  request.audit = {
    targetType: 'user',
    ...(outcome.userId ? { actorId: outcome.userId, targetId: outcome.userId } : {}),
    ...(outcome.tenantId !== undefined ? { tenantId: outcome.tenantId } : {}),
    ...(extra ? { details: extra } : {}),
  };
}

/** A refusal a form shows: next to its field, or on top; a rate limit with its Retry-After. */
function formRefusal(err: unknown, reply: FastifyReply): { field?: string; message: string; status: number } {
  if (!isDomainError(err) || err.blame !== 'caller') throw err;
  const retryAfter = err.details?.retryAfterSeconds;
  if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
  const onField = typeof err.details?.field === 'string' ? err.details.field : undefined;
  return {
    field: onField,
    message: onField ? err.message.replace(new RegExp(`^${onField}: `), '') : err.message,
    status: err.status,
  };
}

function emailPage(options: {
  title: string;
  intro: string;
  action: string;
  button: string;
  email?: string;
  error?: string;
  topError?: string;
  sent?: string;
}): string {
  const form = `<div class="card"><form method="post" action="${options.action}">
${field({ name: 'email', label: 'Email', type: 'email', value: options.email ?? '', autocomplete: 'username', error: options.error })}
<button type="submit">${escapeHtml(options.button)}</button></form></div>`;
  return designPage({
    title: options.title,
    narrow: true,
    body: `<h1>${escapeHtml(options.title)}</h1>
${options.topError ? notice(options.topError, 'error') : ''}${options.sent ? `${notice(options.sent)}<p>Nothing arrived? Look in the spam folder, or ask again below in a few minutes.</p>` : `<p>${escapeHtml(options.intro)}</p>`}
${form}
<p class="muted"><a href="/">Home</a> · <a href="/find-workspace">Find my workspace</a> · <a href="/password-reset">Reset a password</a></p>`,
  });
}

function newPasswordPage(token: string, error?: string, topError?: string): string {
  return designPage({
    title: 'Choose a new password',
    narrow: true,
    body: `<h1>Choose a new password</h1>
${topError ? notice(topError, 'error') : ''}<p>Setting it signs you out on every device.</p>
<div class="card"><form method="post" action="/password-reset/new">
<input type="hidden" name="token" value="${escapeHtml(token)}">
${field({ name: 'newPassword', label: 'New password', type: 'password', hint: 'At least 12 characters', autocomplete: 'new-password', error })}
<button type="submit">Set the new password</button></form></div>`,
  });
}

function linkGonePage(): string {
  return designPage({
    title: 'This link no longer works',
    narrow: true,
    body: `<h1>This link no longer works</h1>
<p>A password reset link works once, for ${RESET_TTL_MINUTES} minutes, and a newer reset spends the older links. Ask for a new one.</p>
<p><a class="button" href="/password-reset">Ask for a new link</a></p>`,
  });
}

/**
 * Getting back in by e-mail (password reset, find my workspace) as the API
 * and as the portal's pages, and the signed-in user's own preferences (the
 * opt-in to product e-mails). The requests are public and answer the same
 * whether or not the address has an account; every one is audited.
 */
export function recoveryRoutes(app: ApiServer, deps: RecoveryDeps & { db: Database }): void {
  // ── API ─────────────────────────────────────────────────────────────
  app.post(
    '/api/v1/auth/password-reset',
    {
      config: { public: true, auditAction: 'auth.password.reset.request' },
      schema: {
        tags,
        summary:
          'Mail a single-use link (1 hour) to choose a new password; the same answer whether or not the address has an account',
        body: EmailBody,
        response: { 202: Accepted },
      },
    },
    async (request, reply) => {
      const outcome: RecoveryOutcome = {};
      try {
        await requestPasswordReset(deps, request.body.email, request.ip, outcome);
      } finally {
        auditOutcome(request, outcome);
      }
      return reply.status(202).send({ message: RESET_SENT });
    },
  );

  app.post(
    '/api/v1/auth/password-reset/confirm',
    {
      config: { public: true, auditAction: 'auth.password.reset' },
      schema: {
        tags,
        summary:
          'Set a new password with the token of a reset link; the link is spent and every login of the user ends',
        body: z.object({ token: z.string().min(1).max(256), newPassword: z.string().max(1024) }),
        response: { 200: z.object({ sessionsEnded: z.number() }) },
      },
    },
    async (request) => {
      const outcome: RecoveryOutcome = {};
      let sessionsEnded: number | undefined;
      try {
        ({ sessionsEnded } = await confirmPasswordReset(deps.db, request.body, outcome));
        return { sessionsEnded };
      } finally {
        auditOutcome(request, outcome, sessionsEnded === undefined ? undefined : { sessionsEnded });
      }
    },
  );

  app.post(
    '/api/v1/auth/find-workspace',
    {
      config: { public: true, auditAction: 'auth.find_workspace' },
      schema: {
        tags,
        summary:
          'Mail the addresses of the workspaces an e-mail address belongs to; the same answer whether or not it belongs to any',
        body: EmailBody,
        response: { 202: Accepted },
      },
    },
    async (request, reply) => {
      const outcome: RecoveryOutcome = {};
      try {
        await findWorkspaces(deps, request.body.email, request.ip, outcome);
      } finally {
        auditOutcome(request, outcome);
      }
      return reply.status(202).send({ message: FIND_SENT });
    },
  );

  app.get(
    '/api/v1/auth/me/preferences',
    {
      schema: {
        tags,
        summary:
          'Your own preferences: whether you get product e-mails, since when, and the words you agreed to',
        response: { 200: PreferencesOut },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      if (principal.kind !== 'user') throw new DomainError('forbidden', 'only users have preferences');
      return readPreferences(deps.db, principal.id);
    },
  );

  app.put(
    '/api/v1/auth/me/preferences',
    {
      config: { auditAction: 'auth.preferences.update' },
      schema: {
        tags,
        summary:
          'Opt in to or out of product e-mails; each change is a consent record and an entry in the tenant’s audit log',
        body: z.object({ marketingEmails: z.boolean() }),
        response: { 200: PreferencesOut },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      if (principal.kind !== 'user') throw new DomainError('forbidden', 'only users have preferences');
      const granted = request.body.marketingEmails;
      const changed = await deps.db
        .transaction()
        .execute((trx) => recordMarketingChoice(trx, principal.id, granted, 'api'));
      request.audit = {
        targetType: 'user',
        targetId: principal.id,
        details: { marketingEmails: granted, changed },
      };
      return readPreferences(deps.db, principal.id);
    },
  );

  // ── Pages ───────────────────────────────────────────────────────────
  const resetPage = (extra: Partial<Parameters<typeof emailPage>[0]> = {}) =>
    emailPage({
      title: 'Reset your password',
      intro: 'Enter the address you sign in with. We will mail you a link to choose a new password.',
      action: '/password-reset',
      button: 'Send the link',
      ...extra,
    });
  const findPage = (extra: Partial<Parameters<typeof emailPage>[0]> = {}) =>
    emailPage({
      title: 'Find my workspace',
      intro: 'Enter the address you sign in with. We will mail you the addresses of your workspaces.',
      action: '/find-workspace',
      button: 'Send my workspaces',
      ...extra,
    });

  app.get('/password-reset', PAGE, (_request, reply) => html(reply, 200, resetPage()));
  app.get('/find-workspace', PAGE, (_request, reply) => html(reply, 200, findPage()));

  const emailForm = (
    path: '/password-reset' | '/find-workspace',
    auditAction: string,
    act: typeof requestPasswordReset,
    render: typeof resetPage,
    sent: string,
  ) =>
    app.post(
      path,
      {
        config: { public: true, form: true, auditAction },
        schema: { hide: true, body: z.record(z.string(), z.string()) },
      },
      async (request, reply) => {
        const email = request.body.email ?? '';
        const outcome: RecoveryOutcome = {};
        try {
          await act(deps, email, request.ip, outcome);
        } catch (err) {
          // Before the answer is sent: the audit row is written as it goes out.
          auditOutcome(request, outcome);
          const refusal = formRefusal(err, reply);
          return html(
            reply,
            refusal.status,
            render(
              refusal.field === 'email'
                ? { email, error: refusal.message }
                : { email, topError: `Please try again later: ${refusal.message}.` },
            ),
          );
        }
        auditOutcome(request, outcome);
        return html(reply, 200, render({ sent }));
      },
    );
  emailForm('/password-reset', 'auth.password.reset.request', requestPasswordReset, resetPage, RESET_SENT);
  emailForm('/find-workspace', 'auth.find_workspace', findWorkspaces, findPage, FIND_SENT);

  app.get(
    '/password-reset/new',
    {
      config: { public: true },
      schema: { hide: true, querystring: z.object({ token: z.string().max(256).optional() }) },
    },
    async (request, reply) => {
      const token = request.query.token ?? '';
      if (!(await resetTokenOpen(deps.db, token))) return html(reply, 410, linkGonePage());
      return html(reply, 200, newPasswordPage(token));
    },
  );

  app.post(
    '/password-reset/new',
    {
      config: { public: true, form: true, auditAction: 'auth.password.reset' },
      schema: { hide: true, body: z.record(z.string(), z.string()) },
    },
    async (request, reply) => {
      const token = request.body.token ?? '';
      const newPassword = request.body.newPassword ?? '';
      const outcome: RecoveryOutcome = {};
      try {
        const done = await confirmPasswordReset(deps.db, { token, newPassword }, outcome);
        auditOutcome(request, outcome, { sessionsEnded: done.sessionsEnded });
        const where = done.tenantSlug
          ? `<p><a class="button" href="${escapeHtml(tenantUrl(deps.publicUrl, done.tenantSlug))}/">Sign in to your workspace</a></p>`
          : '<p><a class="button" href="/admin/login">Sign in to the console</a></p>';
        return html(
          reply,
          200,
          designPage({
            title: 'Your password is changed',
            narrow: true,
            body: `<h1>Your password is changed</h1>${notice('You were signed out everywhere. Sign in with the new password.')}${where}`,
          }),
        );
      } catch (err) {
        auditOutcome(request, outcome);
        const refusal = formRefusal(err, reply);
        if (refusal.field === 'token') return html(reply, 410, linkGonePage());
        return html(
          reply,
          refusal.status,
          refusal.field === 'newPassword'
            ? newPasswordPage(token, refusal.message)
            : newPasswordPage(token, undefined, refusal.message),
        );
      }
    },
  );
}
