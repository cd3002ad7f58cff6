import type { Kysely } from 'kysely';
import { DomainError } from '../core/errors.ts';
import { findInputProblem, jsonNestsDeeperThan, MAX_JSON_DEPTH } from '../core/input.ts';
import type { DB } from '../db/tables.ts';
import { storeInbox, writeInbox } from '../orchestrator/inbox.ts';

/**
 * Stripe's own tolerance: a signed event older than this is refused as a
 * replay, and so is one dated further ahead (a clock that far off, or a
 * signature made now for replaying later).
 */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

/** The `t=` of a Stripe-Signature header, when there is exactly one number there. */
function signedAt(header: string): number | undefined {
  const t = header
    .split(',')
    .map((part) => part.trim())
    .find((part) => part.startsWith('t='));
  return t && /^t=\d{1,12}$/.test(t) ? Number(t.slice(2)) : undefined;
}

/** What the SDK does not refuse: a body nested too deeply to walk, a timestamp in the future. */
function refuseBeforeVerifying(raw: Buffer, header: string, now: number): void {
  if (jsonNestsDeeperThan(raw)) {
    throw new DomainError('bad_request', `event body is nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  const t = signedAt(header);
  if (t !== undefined && t - now > SIGNATURE_TOLERANCE_SECONDS) {
    throw new DomainError(
      'bad_request',
      `Stripe-Signature timestamp is more than ${SIGNATURE_TOLERANCE_SECONDS} s in the future (a clock that far off, or a replay prepared in advance)`,
    );
  }
}

/**
 * Verify `Stripe-Signature` over the raw body and parse the event. Every
 * failure is the sender's: a 400 naming what was wrong, and nothing stored.
 * The Stripe SDK is loaded with the first event, not with the platform: in
 * local billing mode no process loads it (3 MB less RSS for an edge).
 */
export async function verifyStripeEvent(
  raw: Buffer,
  header: string | undefined,
  secret: string,
): Promise<Record<string, unknown>> {
  if (!header) throw new DomainError('bad_request', 'missing Stripe-Signature header');
  refuseBeforeVerifying(raw, header, Math.floor(Date.now() / 1000));
  const { default: Stripe } = await import('stripe');
  let event: unknown;
  try {
    event = Stripe.webhooks.constructEvent(raw, header, secret, SIGNATURE_TOLERANCE_SECONDS);
  } catch (err) {
    const message = (err as Error).message;
    if (/No signatures found matching/i.test(message)) {
      throw new DomainError('bad_request', 'Stripe-Signature does not match the payload');
    }
    if (/tolerance/i.test(message)) {
      throw new DomainError(
        'bad_request',
        'Stripe-Signature timestamp is outside the 300 s tolerance (stale or replayed event)',
      );
    }
    if (/extract timestamp|header/i.test(message))
      throw new DomainError('bad_request', 'Stripe-Signature header is malformed');
    // The signature checked out, so what failed is parsing the body.
    if (err instanceof SyntaxError) throw new DomainError('bad_request', 'event body is not valid JSON');
    throw new DomainError('bad_request', 'Stripe-Signature does not match the payload');
  }
  if (typeof event !== 'object' || event === null || typeof (event as { id?: unknown }).id !== 'string') {
    throw new DomainError('bad_request', 'event has no id');
  }
  const e = event as { id: string; type?: unknown };
  if (!e.id.startsWith('evt_') || typeof e.type !== 'string') {
    throw new DomainError('bad_request', 'event is not a Stripe event (id evt_…, type)');
  }
  const problem = findInputProblem(event, 'event');
  if (problem) {
    throw new DomainError('bad_request', `${problem.field}: ${problem.message}`, {
      details: { field: problem.field },
    });
  }
  return event as Record<string, unknown>;
}

const asInboxEvent = (event: Record<string, unknown>) => ({
  id: event.id as string,
  source: 'stripe',
  type: event.type as string,
  payload: event,
});

/**
 * Store a verified event in the inbox, keyed by its id, with the job that
 * processes it. A redelivery stores nothing and says so.
 */
export async function storeStripeEvent(
  db: Kysely<DB>,
  event: Record<string, unknown>,
): Promise<{ duplicate: boolean }> {
  return { duplicate: !(await storeInbox(db, asInboxEvent(event))) };
}

/** `storeStripeEvent` in the caller's transaction (local billing mode writes its events with its changes). */
export async function writeStripeEvent(trx: Kysely<DB>, event: Record<string, unknown>): Promise<boolean> {
  return writeInbox(trx, asInboxEvent(event));
}
