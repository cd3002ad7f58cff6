import { tenantUrl } from '../../core/services.ts';
import { z } from 'zod';
import { DomainError } from '../../core/errors.ts';
import { validateSlug } from '../../core/tenants.ts';
import { signup, signupProblems, type SignupDeps, type SignupField } from '../../lifecycle/signup.ts';
import { escapeHtml, page } from '../../web/html.ts';
import { designPage, field, notice } from '../../web/design.ts';
import { tenantSteps } from '../../edge/routes-store.ts';
import type { ApiServer } from '../server.ts';

const SignupBody = z.object({
  company: z.string().max(200),
  slug: z.string().max(63),
  email: z.string().max(254),
  password: z.string().max(1024),
  plan: z.string().max(40).optional(),
});

const SignupResponse = z.object({
  tenant: z.object({ id: z.string(), slug: z.string(), status: z.literal('pending_payment') }),
  checkoutUrl: z.string(),
});

type Problems = Partial<Record<SignupField, string>>;
const LABELS: Record<SignupField, string> = {
  company: 'Company',
  slug: 'Address',
  email: 'Email',
  password: 'Password',
  plan: 'Plan',
};

/**
 * The signup form: every field's problem next to it, all at once, with a
 * summary on top; what was typed is kept (never the password).
 */
function signupPage(
  baseDomain: string,
  values: Record<string, string> = {},
  problems: Problems = {},
  error = '',
): string {
  const wrong = (Object.keys(problems) as SignupField[]).filter((f) => problems[f]);
  const summary = wrong.length
    ? `<div class="notice error" role="alert"><p><strong>Please correct ${wrong.length === 1 ? 'this field' : `these ${wrong.length} fields`}:</strong></p><ul>${wrong
        .map((f) => `<li><a href="#f-${f}">${LABELS[f]}</a> ${escapeHtml(problems[f]!)}</li>`)
        .join('')}</ul></div>`
    : error
      ? notice(error, 'error')
      : '';
  const kept = (name: string) => values[name] ?? '';
  return designPage({
    title: 'Sign up',
    narrow: true,
    body: `<h1>Create your workspace</h1>
${summary}
<div class="card"><form method="post" action="/signup">
${field({ name: 'company', label: 'Company', value: kept('company'), autocomplete: 'organization', error: problems.company })}
${field({ name: 'slug', label: 'Address', hint: `your-name.${baseDomain}: lowercase letters, digits and hyphens`, value: kept('slug'), autocomplete: 'off', error: problems.slug })}
${field({ name: 'email', label: 'Email', type: 'email', value: kept('email'), autocomplete: 'username', error: problems.email })}
${field({ name: 'password', label: 'Password', type: 'password', hint: 'At least 12 characters', autocomplete: 'new-password', error: problems.password })}
${kept('plan') ? `<input type="hidden" name="plan" value="${escapeHtml(kept('plan'))}">` : ''}
<button type="submit">Continue to payment</button></form></div>`,
  });
}

/** The portal's front page at the base domain: where to sign up, and where the API is described. */
function frontPage(baseDomain: string): string {
  const base = escapeHtml(baseDomain);
  return page(
    'AIQSO',
    `<h1>Your team's workspace, at its own address</h1>
<p>Each workspace gets a dashboard at <span class="muted">your-name.${base}</span> and its own
container and database for every service it subscribes to.</p>
<p><a href="/signup"><strong>Create your workspace</strong></a></p>
<p class="muted">Already have one? Go to its address. Integrating? Read the <a href="/api/docs">API reference</a>.</p>`,
  );
}

/**
 * Signup: the JSON API for integrations, and the portal's pages (the front
 * page and the HTML form). All are public.
 */
export function signupRoutes(app: ApiServer, deps: SignupDeps): void {
  app.post(
    '/api/v1/signup',
    {
      config: { public: true, auditAction: 'tenant.signup' },
      schema: {
        tags: ['tenants'],
        summary: 'Create a tenant (pending payment) and its owner; returns the checkout URL',
        body: SignupBody,
        response: { 201: SignupResponse },
      },
    },
    async (request, reply) => {
      const result = await signup(deps, request.body, request.ip);
      request.audit = {
        tenantId: result.tenant.id,
        actorId: result.ownerId,
        targetType: 'tenant',
        targetId: result.tenant.id,
      };
      return reply.status(201).send({ tenant: result.tenant, checkoutUrl: result.checkoutUrl });
    },
  );

  const front = frontPage(deps.baseDomain);
  app.get('/', { config: { public: true }, schema: { hide: true } }, (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(front),
  );

  app.get('/signup', { config: { public: true }, schema: { hide: true } }, (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(signupPage(deps.baseDomain)),
  );

  app.post(
    '/signup',
    {
      config: { public: true, auditAction: 'tenant.signup', form: true },
      schema: { hide: true, body: z.record(z.string(), z.string()) },
    },
    async (request, reply) => {
      const form = request.body;
      const problems = signupProblems(deps, form);
      if (Object.keys(problems).length > 0) {
        return reply
          .status(400)
          .type('text/html; charset=utf-8')
          .send(signupPage(deps.baseDomain, form, problems));
      }
      try {
        const parsed = SignupBody.parse(form);
        const result = await signup(deps, parsed, request.ip);
        request.audit = {
          tenantId: result.tenant.id,
          actorId: result.ownerId,
          targetType: 'tenant',
          targetId: result.tenant.id,
        };
        return reply.redirect(result.checkoutUrl, 303);
      } catch (err) {
        const refusal =
          err instanceof DomainError && err.blame === 'caller'
            ? err
            : err instanceof z.ZodError
              ? new DomainError('validation_failed', 'please fill in every field')
              : undefined;
        if (!refusal) throw err;
        const onField = refusal.details?.field;
        const retryAfter = refusal.details?.retryAfterSeconds;
        if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
        return reply
          .status(refusal.status)
          .type('text/html; charset=utf-8')
          .send(
            typeof onField === 'string' && onField in LABELS
              ? signupPage(deps.baseDomain, form, {
                  [onField]: refusal.message.replace(new RegExp(`^${onField}: `), ''),
                })
              : signupPage(deps.baseDomain, form, {}, refusal.message),
          );
      }
    },
  );

  app.get(
    '/signup/welcome',
    {
      config: { public: true },
      schema: { hide: true, querystring: z.object({ tenant: z.string().max(63).optional() }) },
    },
    async (request, reply) => {
      // The query is the visitor's to change: a link is made only from a valid slug, so it stays on
      // this platform (`evil.example/#` would otherwise become http://evil.example/#.<base>).
      const slug = request.query.tenant ?? '';
      const valid = validateSlug(slug) === undefined;
      const url = valid ? `${tenantUrl(deps.publicUrl, slug)}/` : '';
      const link = `<a href="${escapeHtml(url)}">${escapeHtml(url)}</a>`;
      const tenant = valid
        ? await deps.db
            .selectFrom('tenants')
            .select(['id', 'status'])
            .where('slug', '=', slug)
            .executeTakeFirst()
        : undefined;
      const html = (title: string, body: string, head?: string) =>
        reply
          .type('text/html; charset=utf-8')
          .header('cache-control', 'no-store')
          .send(page(title, body, head));
      if (tenant?.status === 'active') {
        return html(
          'Your workspace is ready',
          `<h1>Your workspace is ready</h1><p>Go to ${link} and sign in.</p>`,
        );
      }
      if (tenant?.status === 'failed') {
        return html(
          'Payment received',
          '<h1>Thank you</h1><p>Setting up your workspace did not finish. The platform’s operators can see why; you will hear from them.</p>',
        );
      }
      if (tenant?.status === 'pending_payment' || tenant?.status === 'provisioning') {
        // Followed live: the page reloads itself (no script) until the workspace is ready.
        const { steps } = await tenantSteps(deps.db, tenant.id);
        const progress =
          tenant.status === 'pending_payment'
            ? '<p>Waiting for the payment to be confirmed…</p>'
            : `<ol>${steps.map((s) => `<li class="${escapeHtml(s.state)}">${escapeHtml(s.name)}: ${escapeHtml(s.state)}</li>`).join('')}</ol>`;
        return html(
          'Payment received',
          `<h1>Thank you</h1><p>We are preparing your workspace. It will be at ${link}; you will also get an email when it is ready. This page follows it and refreshes itself.</p>${progress}`,
          '<meta http-equiv="refresh" content="5">',
        );
      }
      const where = valid ? `It will be at ${link}; you` : 'You';
      return html(
        'Payment received',
        `<h1>Thank you</h1><p>We are preparing your workspace. ${where} will also get an email when it is ready.</p>`,
      );
    },
  );
}
