import { Readable } from 'node:stream';
import { tenantUrl } from '../../core/services.ts';
import type { Database } from '../../db/database.ts';
import { z } from 'zod';
import { DomainError } from '../../core/errors.ts';
import { validateSlug } from '../../core/tenants.ts';
import { signup, signupProblems, type SignupDeps, type SignupField } from '../../lifecycle/signup.ts';
import { escapeHtml } from '../../web/html.ts';
import { badge, designPage, emptyState, field, notice } from '../../web/design.ts';
import { offeredPlans, offeredServices, planFeatures, type OfferedPlan } from '../../catalog/offer.ts';
import type { PlatformProvides } from '../../catalog/runnable.ts';
import type { Plan } from '../../catalog/plans.ts';
import type { ServiceTemplate } from '../../catalog/schema.ts';
import type { DriverKind } from '../../core/compute.ts';
import { MARKETING_WORDING } from '../../identity/preferences.ts';
import { tenantPageFacts } from '../../edge/routes-store.ts';
import { waitingText } from '../../edge/pages.ts';
import type { ApiServer } from '../server.ts';

const SignupBody = z.object({
  company: z.string().max(200),
  slug: z.string().max(63),
  email: z.string().max(254),
  password: z.string().max(1024),
  plan: z.string().max(40).optional(),
  marketingEmails: z.boolean().optional(),
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
 * The address field's pattern for the browser's own check (3 to 40 lowercase
 * letters, digits and hyphens, a letter or digit at each end); the server
 * checks the rest (reserved names, two hyphens in a row). Chromium compiles it
 * with the `v` flag, where a `-` inside a class must be escaped.
 */
const SLUG_PATTERN = '[a-z0-9][a-z0-9\\-]{1,38}[a-z0-9]';

/** The value a ticked checkbox sends. */
const CHECKED = 'yes';

/**
 * The signup form: the plan as a radio group with each price, every field's
 * problem next to it, all at once, with a summary on top; what was typed is
 * kept (never the password), the plan and the opt-in too. The opt-in to
 * product e-mails starts unticked.
 */
function signupPage(
  deps: { baseDomain: string; plans: Plan[] },
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
  const plans = offeredPlans(deps.plans);
  const chosen = plans.some((p) => p.key === values.plan) ? values.plan : plans[0]?.key;
  const planChoices = plans
    .map(
      (p, i) =>
        `<label class="choice"><input type="radio" name="plan" value="${escapeHtml(p.key)}"${i === 0 ? ' id="f-plan"' : ''}${
          p.key === chosen ? ' checked' : ''
        }${problems.plan ? ' aria-describedby="f-plan-error"' : ''}><span><strong>${escapeHtml(p.name)}</strong> · ${escapeHtml(
          p.monthlyPrice,
        )} a month<span class="hint">${escapeHtml(planFeatures(p).slice(0, -1).join(' · '))}</span></span></label>`,
    )
    .join('\n');
  const planError = problems.plan
    ? `<div class="field-error" id="f-plan-error">${escapeHtml(problems.plan)}</div>`
    : '';
  return designPage({
    title: 'Sign up',
    narrow: true,
    body: `<h1>Create your workspace</h1>
${summary}
<div class="card"><form method="post" action="/signup">
<fieldset class="choices"><legend>Plan</legend>
${planChoices}${planError}</fieldset>
${field({ name: 'company', label: 'Company', value: kept('company'), autocomplete: 'organization', error: problems.company })}
${field({ name: 'slug', label: 'Address', hint: `your-name.${deps.baseDomain}: lowercase letters, digits and hyphens`, value: kept('slug'), autocomplete: 'off', pattern: SLUG_PATTERN, error: problems.slug })}
${field({ name: 'email', label: 'Email', type: 'email', value: kept('email'), autocomplete: 'username', error: problems.email })}
${field({ name: 'password', label: 'Password', type: 'password', hint: 'At least 12 characters', autocomplete: 'new-password', error: problems.password })}
<div class="field"><label class="check"><input type="checkbox" id="f-marketing" name="marketingEmails" value="${CHECKED}"${
      kept('marketingEmails') === CHECKED ? ' checked' : ''
    }><span>${escapeHtml(MARKETING_WORDING)} <span class="muted">(optional)</span></span></label></div>
<button type="submit">Continue to payment</button></form></div>
<p class="muted">Already have a workspace? <a href="/find-workspace">Find it by e-mail</a>.</p>`,
  });
}

/**
 * The portal's front page at the base domain: what the platform is, its plans
 * with their prices and what each includes, the services it can run here,
 * and the way into signup with a plan chosen.
 */
function frontPage(baseDomain: string, plans: OfferedPlan[], services: ServiceTemplate[]): string {
  const base = escapeHtml(baseDomain);
  const planCards = plans
    .map(
      (p) => `<li class="card"><h3>${escapeHtml(p.name)}</h3>
<p class="price">${escapeHtml(p.monthlyPrice)} <span class="small muted">a month</span></p>
<ul>${planFeatures(p)
        .map((f) => `<li>${escapeHtml(f)}</li>`)
        .join('')}</ul>
<p><a class="button" href="/signup?plan=${encodeURIComponent(p.key)}">Start with ${escapeHtml(p.name)}</a></p></li>`,
    )
    .join('\n');
  const serviceCards = services.length
    ? `<ul class="grid">${services
        .map(
          (t) =>
            `<li class="card"><h3>${escapeHtml(t.name)}</h3><p>${escapeHtml(t.description)}</p><p class="small muted">At <span class="mono">your-name.${base}${escapeHtml(t.route.path)}/</span></p></li>`,
        )
        .join('\n')}</ul>`
    : emptyState(
        'No services yet',
        'This platform offers no service it can run yet; the workspace comes first.',
      );
  const first = plans[0];
  return designPage({
    title: 'Your team’s workspace',
    nav: '<a href="/find-workspace">Find my workspace</a> <a href="/signup">Sign up</a>',
    body: `<h1>Your team’s workspace, at its own address</h1>
<p class="lead">Each workspace gets a dashboard at <strong>your-name.${base}</strong>, and every service it
subscribes to runs in its own container with its own database, on this platform’s own hardware.</p>
${first ? `<p><a class="button" href="/signup?plan=${encodeURIComponent(first.key)}">Create your workspace</a></p>` : ''}
<h2 id="plans">Plans</h2>
<p>Billed monthly; change or cancel from your workspace.</p>
<ul class="grid">${planCards}</ul>
<h2 id="services">Services on offer</h2>
${serviceCards}
<h2>Already have a workspace?</h2>
<p>Go to its address and sign in. Forgot the address? <a href="/find-workspace">Find my workspace</a>.
Forgot the password? <a href="/password-reset">Reset it by e-mail</a>.</p>
<p class="muted">Integrating? Read the <a href="/api/docs">API reference</a>.</p>`,
  });
}

/**
 * Signup: the JSON API for integrations, and the portal's pages (the front
 * page and the HTML form). All are public.
 */
export function signupRoutes(
  app: ApiServer,
  deps: SignupDeps & { driver: DriverKind; provides: PlatformProvides },
): void {
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
        details: { marketingEmails: request.body.marketingEmails === true },
      };
      return reply.status(201).send({ tenant: result.tenant, checkoutUrl: result.checkoutUrl });
    },
  );

  const plans = offeredPlans(deps.plans);
  app.get('/', { config: { public: true }, schema: { hide: true } }, async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .send(frontPage(deps.baseDomain, plans, await offeredServices(deps.db, deps.driver, deps.provides))),
  );

  app.get(
    '/signup',
    {
      config: { public: true },
      schema: { hide: true, querystring: z.object({ plan: z.string().max(40).optional() }) },
    },
    (request, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .send(signupPage(deps, request.query.plan ? { plan: request.query.plan } : {})),
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
          .send(signupPage(deps, form, problems));
      }
      try {
        const parsed = SignupBody.parse({ ...form, marketingEmails: form.marketingEmails === CHECKED });
        const result = await signup(deps, parsed, request.ip);
        request.audit = {
          tenantId: result.tenant.id,
          actorId: result.ownerId,
          targetType: 'tenant',
          targetId: result.tenant.id,
          details: { marketingEmails: parsed.marketingEmails === true },
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
              ? signupPage(deps, form, {
                  [onField]: refusal.message.replace(new RegExp(`^${onField}: `), ''),
                })
              : signupPage(deps, form, {}, refusal.message),
          );
      }
    },
  );

  app.get(
    '/signup/welcome',
    {
      config: { public: true },
      schema: {
        hide: true,
        querystring: z.object({
          tenant: z.string().max(63).optional(),
          /** How long to follow the provisioning, in seconds (at most FOLLOW_SECONDS; 0: as it is now). */
          follow: z.coerce.number().int().min(0).max(3600).optional(),
        }),
      },
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
          .send(designPage({ title, body, head, narrow: true }));
      if (tenant?.status === 'active') {
        // Ready: the browser goes on to the workspace at once (a link to a valid slug's address only).
        return html(
          'Your workspace is ready',
          `<h1>Your workspace is ready</h1><p>Go to ${link} and sign in with the e-mail and password you chose.</p>`,
          `<meta http-equiv="refresh" content="0; url=${escapeHtml(url)}">`,
        );
      }
      if (tenant?.status === 'failed') return html('Payment received', `<h1>Thank you</h1>${FAILED}`);
      if (tenant?.status === 'pending_payment' || tenant?.status === 'provisioning') {
        const seconds = Math.min(request.query.follow ?? FOLLOW_SECONDS, FOLLOW_SECONDS);
        const here = `/signup/welcome?tenant=${encodeURIComponent(slug)}`;
        const [top, bottom] = designPage({
          title: 'Payment received',
          narrow: true,
          body: `<h1>Thank you</h1><p>We are preparing your workspace. It will be at ${link}; you will also get an email when it is ready. This page follows it as it happens and takes you there.</p>
<h2>Progress</h2><ol class="timeline" aria-live="polite">\u0000</ol>`,
        }).split('\u0000') as [string, string];
        const progress = followProvisioning(deps.db, tenant.id, seconds, { url, here, link });
        return reply
          .type('text/html; charset=utf-8')
          .header('cache-control', 'no-store')
          .send(Readable.from(withEnds(top, progress, bottom)));
      }
      const where = valid ? `It will be at ${link}; you` : 'You';
      return html(
        'Payment received',
        `<h1>Thank you</h1><p>We are preparing your workspace. ${where} will also get an email when it is ready.</p>`,
      );
    },
  );
}

/** How long the thank-you page follows a workspace being set up before it offers to look again. */
const FOLLOW_SECONDS = 120;
/** How often it looks. */
const FOLLOW_EVERY_MS = 1000;

const FAILED = notice(
  'Setting up your workspace did not finish. The platform’s operators can see why; you will hear from them.',
  'error',
);

async function* withEnds(top: string, middle: AsyncIterable<string>, bottom: string): AsyncGenerator<string> {
  yield top;
  yield* middle;
  yield bottom;
}

/**
 * The thank-you page's progress, as it happens: an item for the payment once
 * it is confirmed and for each step each time its state changes, sent down
 * the open page (no script, and no reloading, which would take a screen
 * reader back to the top every few seconds). When the workspace is ready the
 * browser is sent on to it; after `seconds` the page offers to look again.
 * A visitor who leaves ends it at the next look.
 */
async function* followProvisioning(
  db: Database,
  tenantId: string,
  seconds: number,
  page: { url: string; here: string; link: string },
): AsyncGenerator<string> {
  const shown = new Map<string, string>();
  let paid = false;
  let waitingShown = false;
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const tenant = await db
      .selectFrom('tenants')
      .select('status')
      .where('id', '=', tenantId)
      .executeTakeFirst();
    const status = tenant?.status;
    if (status === 'pending_payment' && !waitingShown) {
      waitingShown = true;
      yield '<li class="waiting">Payment <span class="badge warn">waiting for confirmation</span></li>';
    }
    if (status && status !== 'pending_payment' && !paid) {
      paid = true;
      yield `<li class="done">Payment ${badge('done')}</li>`;
    }
    if (status === 'provisioning' || status === 'active') {
      for (const s of (await tenantPageFacts(db, tenantId)).steps) {
        const state = s.state === 'waiting' && s.waitingFor ? `waiting:${s.waitingFor}` : s.state;
        if (shown.get(s.name) === state) continue;
        shown.set(s.name, state);
        const why =
          s.state === 'waiting' && s.waitingFor
            ? ` <span class="muted">${escapeHtml(waitingText(s.waitingFor))}</span>`
            : '';
        yield `<li class="${escapeHtml(s.state)}">${escapeHtml(s.name)} ${badge(s.state)}${why}</li>`;
      }
    }
    if (status === 'active') {
      yield `</ol><p>Your workspace is ready: ${page.link}. Taking you there now.</p><meta http-equiv="refresh" content="0; url=${escapeHtml(page.url)}"><ol hidden>`;
      return;
    }
    if (status !== 'pending_payment' && status !== 'provisioning') {
      yield `</ol>${FAILED}<ol hidden>`;
      return;
    }
    if (Date.now() >= deadline) {
      yield `</ol><p>It is still being set up; you will get an email when it is ready. <a href="${escapeHtml(page.here)}">Follow it again</a></p><ol hidden>`;
      return;
    }
    await new Promise((r) => setTimeout(r, FOLLOW_EVERY_MS));
  }
}
