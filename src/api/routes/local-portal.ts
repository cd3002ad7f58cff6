import { z } from 'zod';
import type { LocalBilling } from '../../billing/local.ts';
import { LOCAL_PORTAL_PATH, type LocalPortalView } from '../../billing/local-portal.ts';
import { planOfPrice } from '../../billing/plans.ts';
import type { Plan } from '../../catalog/plans.ts';
import { DomainError } from '../../core/errors.ts';
import { badge, designPage, emptyState, notice, table } from '../../web/design.ts';
import { escapeHtml } from '../../web/html.ts';
import type { ApiServer } from '../server.ts';

const Query = z.object({
  session: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'expected the session of a portal link'),
});

const day = (d: Date) => d.toISOString().slice(0, 10);

/** "$49.00 a month" (the plan's currency when it is not US dollars). */
function price(plan: Plan): string {
  const amount = (plan.monthly_cents / 100).toFixed(2);
  const currency = plan.currency ?? 'usd';
  return currency === 'usd' ? `$${amount} a month` : `${amount} ${currency.toUpperCase()} a month`;
}

function subscriptions(view: LocalPortalView, plans: Plan[]): string {
  if (view.subscriptions.length === 0)
    return emptyState('No subscription', 'This customer has no subscription in local billing.');
  return view.subscriptions
    .map((s) => {
      const plan = planOfPrice(plans, s.priceId, 'local');
      const end = s.currentPeriodEnd
        ? s.status === 'canceled'
          ? ''
          : `${s.cancelAtPeriodEnd ? 'Ends' : 'Renews'} on ${day(s.currentPeriodEnd)}. `
        : '';
      const started = s.startedAt ? `Started on ${day(s.startedAt)}.` : '';
      return `<div class="card"><h3>${escapeHtml(plan ? `${plan.name} plan` : (s.priceId ?? 'No price'))}</h3>
${plan ? `<p class="price">${escapeHtml(price(plan))}</p>` : ''}
<p>State: ${badge(s.status)}</p><p>${escapeHtml(`${end}${started}`)}</p><p class="muted">Subscription <code>${escapeHtml(s.id)}</code></p></div>`;
    })
    .join('\n');
}

function payments(view: LocalPortalView, plans: Plan[]): string {
  if (view.payments.length === 0)
    return emptyState('No payments', 'Local billing has recorded no paid checkout for this customer.');
  const rows = view.payments.map((p) => {
    const plan = plans.find((x) => x.key === p.plan);
    return [
      escapeHtml(day(p.paidAt)),
      escapeHtml(`Checkout for the ${plan?.name ?? p.plan} plan`),
      'Nothing (simulated)',
    ];
  });
  return table('Payments local billing recorded', ['Date', 'What', 'Charged'], rows);
}

/** The portal page: what local billing knows of one customer, and the way back. */
function portalPage(view: LocalPortalView, plans: Plan[]): string {
  const who = view.tenant.company ?? view.tenant.slug;
  const until = view.expiresAt.toISOString().slice(0, 16).replace('T', ' ');
  const body = `<h1>Payment methods and invoices</h1>
${notice("Local billing mode: this page stands in for Stripe's customer portal. It takes no real payments: no card is kept, no invoice is issued and nothing is charged.")}
<div class="card"><h2>${escapeHtml(who)}</h2>
<p>Billed to: ${escapeHtml(view.customer.email ?? 'no e-mail address')}<br><span class="muted">Customer <code>${escapeHtml(view.customer.id)}</code></span></p></div>
<h2>Subscription</h2>
${subscriptions(view, plans)}
<h2>Payment methods</h2>
<p>None. Local billing mode takes no real payments, so there is no card to add, change or remove.</p>
<h2>Payments and invoices</h2>
${payments(view, plans)}
<p class="muted">Local billing mode issues no invoices.</p>
<p><a class="button" href="${escapeHtml(view.returnUrl)}">Back to your workspace</a></p>
<p class="muted">${escapeHtml(`This link works until ${until} UTC; after that, open Payment methods and invoices again from the workspace's Billing page.`)}</p>`;
  return designPage({ title: 'Payment methods and invoices', body });
}

/**
 * Local billing mode's stand-in for Stripe's Customer Portal. Its link
 * (`POST /api/v1/tenants/{t}/billing/portal` makes one for a signed-in owner)
 * is the credential, like the Stripe portal session's URL it stands in for:
 * it opens one tenant's page for a short while, and any other secret opens
 * nothing.
 */
export function localPortalRoutes(app: ApiServer, deps: { billing: LocalBilling; plans: Plan[] }): void {
  app.get(
    LOCAL_PORTAL_PATH,
    {
      config: { public: true },
      schema: {
        tags: ['billing'],
        summary:
          "Local billing mode's customer portal page: one tenant's subscription and payments, from the link `…/billing/portal` answered (404 for a link that opens nothing, 410 once expired)",
        querystring: Query,
      },
    },
    async (request, reply) => {
      const view = await deps.billing.portal(request.query.session);
      if (view === 'expired')
        throw new DomainError(
          'gone',
          "This link has expired. Open Payment methods and invoices again from your workspace's Billing page.",
        );
      if (!view) throw new DomainError('not_found', 'This link opens nothing.');
      return reply.type('text/html; charset=utf-8').send(portalPage(view, deps.plans));
    },
  );
}
