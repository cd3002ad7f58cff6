import { describe, expect, it } from 'vitest';
import { canTransition, validateSlug } from '../../src/core/tenants.ts';
import { decideBillingAction } from '../../src/billing/decide.ts';
import type { BillingEvent } from '../../src/billing/events.ts';

describe('tenant slugs', () => {
  it.each(['acme', 'acme-corp', 'a1b', 'x'.repeat(40)])('accepts %s', (slug) => {
    expect(validateSlug(slug)).toBeUndefined();
  });

  it.each([
    ['ab', /at least 3/],
    ['x'.repeat(41), /at most 40/],
    ['Acme', /lowercase/],
    ['-acme', /start and end/],
    ['acme-', /start and end/],
    ['ac_me', /lowercase letters, digits and hyphens/],
    ['ac.me', /lowercase letters, digits and hyphens/],
    ['xn--80ak6aa92e', /two hyphens/],
    ['a--b', /two hyphens/],
    ['www', /reserved/],
    ['api', /reserved/],
    ['admin', /reserved/],
    ['mail', /reserved/],
    ['acmé', /lowercase letters/],
  ])('refuses %s', (slug, problem) => {
    expect(validateSlug(slug)).toMatch(problem);
  });

  // Names clients, mail servers and CAs look up under any domain, and the usual infrastructure names.
  it.each([
    'wpad',
    'autodiscover',
    'autoconfig',
    'mta-sts',
    'isatap',
    'sso',
    'postmaster',
    'hostmaster',
    'abuse',
    'webmaster',
    'lyncdiscover',
    'enterpriseregistration',
    'webmail',
    'ns3',
    'ocsp',
    'proxy',
    'gateway',
    'ldap',
    'registry',
    'proxmox',
  ])('refuses the reserved name %s', (slug) => {
    expect(validateSlug(slug)).toBe('is reserved');
  });
});

describe('tenant transitions', () => {
  it('follows pending_payment → provisioning → active ⇄ suspended → cancelled → purged', () => {
    expect(canTransition('pending_payment', 'provisioning')).toBe(true);
    expect(canTransition('provisioning', 'active')).toBe(true);
    expect(canTransition('active', 'suspended')).toBe(true);
    expect(canTransition('suspended', 'active')).toBe(true);
    expect(canTransition('active', 'cancelled')).toBe(true);
    expect(canTransition('cancelled', 'purged')).toBe(true);
  });

  it('never leaves purged and never skips payment', () => {
    for (const to of [
      'pending_payment',
      'provisioning',
      'active',
      'suspended',
      'cancelled',
      'failed',
    ] as const) {
      expect(canTransition('purged', to)).toBe(false);
    }
    expect(canTransition('pending_payment', 'active')).toBe(false);
  });
});

describe('billing decisions', () => {
  const base = { eventId: 'evt_1', created: new Date() };
  const failed = (attemptCount: number, finalAttempt: boolean): BillingEvent => ({
    kind: 'invoice_payment_failed',
    ...base,
    subscriptionId: 'sub_1',
    attemptCount,
    finalAttempt,
  });

  it('provisions only a paid checkout of a tenant that is waiting for it', () => {
    const checkout = (paid: boolean): BillingEvent => ({
      kind: 'checkout_completed',
      ...base,
      tenantId: 'ten_x',
      customerId: null,
      subscriptionId: null,
      paid,
    });
    expect(decideBillingAction(checkout(true), { status: 'pending_payment', statusReason: null })).toEqual({
      action: 'provision',
    });
    expect(
      decideBillingAction(checkout(false), { status: 'pending_payment', statusReason: null }).action,
    ).toBe('none');
    expect(decideBillingAction(checkout(true), { status: 'active', statusReason: null }).action).toBe('none');
  });

  it('suspends on the final failed attempt or after the dunning limit, not before', () => {
    const active = { status: 'active' as const, statusReason: null };
    expect(decideBillingAction(failed(1, false), active).action).toBe('none');
    expect(decideBillingAction(failed(3, false), active)).toEqual({
      action: 'suspend',
      reason: 'payment_failed',
    });
    expect(decideBillingAction(failed(1, true), active)).toEqual({
      action: 'suspend',
      reason: 'payment_failed',
    });
    expect(decideBillingAction(failed(5, true), { status: 'cancelled', statusReason: null }).action).toBe(
      'none',
    );
  });

  it('cancels on a deleted subscription whatever status the event shows', () => {
    const deleted: BillingEvent = {
      kind: 'subscription_changed',
      ...base,
      deleted: true,
      subscription: {
        id: 'sub_1',
        customerId: null,
        status: 'active',
        priceId: null,
        cancelAtPeriodEnd: false,
        currentPeriodEnd: null,
        tenantId: null,
      },
    };
    expect(decideBillingAction(deleted, { status: 'active', statusReason: null })).toEqual({
      action: 'cancel',
      reason: 'subscription cancelled',
    });
  });
});
