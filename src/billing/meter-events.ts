import type { BillingPort } from '../core/billing.ts';
import { DomainError } from '../core/errors.ts';
import type { OutboxHandler } from '../orchestrator/outbox.ts';

/**
 * Delivers `stripe` outbox items (meter events the usage pass queued) through
 * the billing port: to Stripe in Stripe mode, checked and kept as the outbox's
 * record in local mode. A malformed item fails with what is wrong.
 */
export function meterEventHandler(billing: BillingPort): OutboxHandler {
  return async (item) => {
    const p = item.payload;
    const text = (name: string) => {
      const v = p[name];
      if (typeof v !== 'string' || v === '')
        throw new DomainError(
          'validation_failed',
          `outbox item ${item.key}: payload.${name} must be a non-empty string`,
        );
      return v;
    };
    if (p.type !== 'meter_event')
      throw new DomainError(
        'validation_failed',
        `outbox item ${item.key}: unknown stripe item type ${String(p.type)}`,
      );
    const value = p.value;
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0)
      throw new DomainError(
        'validation_failed',
        `outbox item ${item.key}: payload.value must be a positive whole number`,
      );
    const timestamp = new Date(text('timestamp'));
    if (Number.isNaN(timestamp.getTime()))
      throw new DomainError(
        'validation_failed',
        `outbox item ${item.key}: payload.timestamp must be an ISO time`,
      );
    await billing.recordMeterEvent({
      eventName: text('eventName'),
      customerId: text('customerId'),
      value,
      identifier: text('identifier'),
      timestamp,
    });
  };
}
