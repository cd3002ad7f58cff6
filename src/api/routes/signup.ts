import { tenantUrl } from '../../core/services.ts';
import { z } from 'zod';
import { DomainError } from '../../core/errors.ts';
import { validateSlug } from '../../core/tenants.ts';
import { signup, type SignupDeps } from '../../lifecycle/signup.ts';
import { escapeHtml, page } from '../../web/html.ts';
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

function signupPage(baseDomain: string, values: Record<string, string> = {}, error = ''): string {
  const field = (name: string, label: string, type = 'text', extra = '') =>
    `<label>${label}<br><input name="${name}" type="${type}" value="${type === 'password' ? '' : escapeHtml(values[name] ?? '')}" required ${extra}></label><br>`;
  return page(
    'Sign up',
    `<h1>Create your workspace</h1>
${error ? `<p role="alert" class="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/signup">
${field('company', 'Company')}
${field('slug', `Address: <span class="muted">your-name.${escapeHtml(baseDomain)}</span>`, 'text', 'pattern="[a-z0-9-]{3,40}"')}
${field('email', 'Email', 'email', 'autocomplete="username"')}
${field('password', 'Password (at least 12 characters)', 'password', 'autocomplete="new-password" minlength="12"')}
<button type="submit">Continue to payment</button></form>`,
  );
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
        const retryAfter = refusal.details?.retryAfterSeconds;
        if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter));
        return reply
          .status(refusal.status)
          .type('text/html; charset=utf-8')
          .send(signupPage(deps.baseDomain, form, refusal.message));
      }
    },
  );

  app.get(
    '/signup/welcome',
    {
      config: { public: true },
      schema: { hide: true, querystring: z.object({ tenant: z.string().max(63).optional() }) },
    },
    (request, reply) => {
      // The query is the visitor's to change: a link is made only from a valid slug, so it stays on
      // this platform (`evil.example/#` would otherwise become http://evil.example/#.<base>).
      const slug = request.query.tenant ?? '';
      const where =
        validateSlug(slug) === undefined
          ? `It will be at <a href="${escapeHtml(tenantUrl(deps.publicUrl, slug))}/">${escapeHtml(tenantUrl(deps.publicUrl, slug))}</a>; you`
          : 'You';
      return reply
        .type('text/html; charset=utf-8')
        .send(
          page(
            'Payment received',
            `<h1>Thank you</h1><p>We are preparing your workspace. ${where} will also get an email when it is ready.</p>`,
          ),
        );
    },
  );
}
