import { z } from 'zod';
import { DomainError } from '../../core/errors.ts';
import { interpretEvent, MalformedEvent } from '../../billing/events.ts';
import { storeStripeEvent, verifyStripeEvent } from '../../billing/webhook.ts';
import type { Database } from '../../db/database.ts';
import type { ApiServer } from '../server.ts';

export interface StripeWebhookDeps {
  db: Database;
  webhookSecret: string;
}

const Received = z.object({ received: z.literal(true), duplicate: z.boolean() });

/**
 * `POST /webhooks/stripe`: verify, reject what is forged, stale, future-dated
 * or malformed with a 400, store the event in the inbox keyed by its id
 * together with the job that processes it, and answer 200. Workers process
 * it; this process only stores, so an edge serving the API needs no billing
 * logic and a crash after the 200 loses nothing. Stripe delivers at least once
 * and in any order; the inbox makes a redelivery a no-op and processing acts
 * on current objects.
 */
export async function stripeWebhookRoutes(app: ApiServer, deps: StripeWebhookDeps): Promise<void> {
  await app.register((scope, _opts, done) => {
    // The signature covers the exact bytes sent, so this route keeps the raw body.
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, next) =>
      next(null, body),
    );
    scope.post(
      '/webhooks/stripe',
      {
        // Stripe's signature is its credential.
        config: { public: true },
        bodyLimit: 512 * 1024,
        schema: {
          tags: ['billing'],
          summary: 'Stripe events (signature checked with STRIPE_WEBHOOK_SECRET)',
          response: { 200: Received },
        },
      },
      async (request) => {
        if (!Buffer.isBuffer(request.body))
          throw new DomainError('unsupported_media_type', 'send application/json');
        const signature = request.headers['stripe-signature'];
        const event = await verifyStripeEvent(
          request.body,
          typeof signature === 'string' ? signature : undefined,
          deps.webhookSecret,
        );
        try {
          interpretEvent(event);
        } catch (err) {
          if (err instanceof MalformedEvent)
            throw new DomainError('bad_request', `malformed event: ${err.message}`);
          throw err;
        }
        const { duplicate } = await storeStripeEvent(deps.db, event);
        request.log.info({ eventId: event.id, type: event.type, duplicate }, 'stripe event received');
        return { received: true as const, duplicate };
      },
    );
    done();
  });
}
