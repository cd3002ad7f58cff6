import { z } from 'zod';
import type { LocalBilling } from '../../billing/local.ts';
import { DomainError } from '../../core/errors.ts';
import { escapeHtml, page } from '../../web/html.ts';
import type { ApiServer } from '../server.ts';

const Params = z.object({
  id: z.string().regex(/^cs_local[0-9a-z]{26}$/, 'expected a local checkout session id'),
});

/**
 * Local billing mode's stand-in for Stripe Checkout: a page with a Pay button.
 * Paying writes the Stripe-format events a payment makes into the inbox, with
 * the checkout's change, in one transaction; paying again changes nothing.
 */
export function localCheckoutRoutes(app: ApiServer, billing: LocalBilling): void {
  app.get(
    '/billing/checkout/:id',
    {
      // Like Stripe's hosted checkout it stands in for: reached by its unguessable session id.
      config: { public: true },
      schema: { tags: ['billing'], summary: 'Local billing mode checkout page', params: Params },
    },
    async (request, reply) => {
      const session = await billing.session(request.params.id);
      if (!session) throw new DomainError('not_found', 'checkout session not found');
      const paid = session.status === 'complete';
      const body = `<h1>Checkout</h1>
<p class="muted">Local billing mode: no card is charged. Paying makes the same Stripe events a real payment would.</p>
<div class="box"><p>Plan: <strong>${escapeHtml(session.plan)}</strong><br>Billed to: ${escapeHtml(session.customer_email)}</p></div>
${
  paid
    ? `<p>This checkout is paid. <a href="${escapeHtml(session.success_url)}">Continue</a></p>`
    : `<form method="post" action="/billing/checkout/${escapeHtml(session.id)}/pay"><button type="submit">Pay</button></form>`
}`;
      return reply.type('text/html; charset=utf-8').send(page('Checkout', body));
    },
  );

  app.post(
    '/billing/checkout/:id/pay',
    {
      config: { public: true, form: true },
      schema: { tags: ['billing'], summary: 'Pay a local checkout session', params: Params },
    },
    async (request, reply) => {
      const { successUrl } = await billing.pay(request.params.id);
      return reply.redirect(successUrl, 303);
    },
  );
}
