import { DomainError } from './errors.ts';

/**
 * Tenant: one customer of the platform, reachable at `<slug>.<base domain>`.
 *
 *   pending_payment → provisioning → active ⇄ suspended → cancelled → purged
 *                                 ↘ failed (with a reason)
 *
 * Transitions are decided here, without I/O; the lifecycle applies them.
 */
export type TenantStatus =
  'pending_payment' | 'provisioning' | 'active' | 'suspended' | 'cancelled' | 'purged' | 'failed';

const ALLOWED: Record<TenantStatus, readonly TenantStatus[]> = {
  pending_payment: ['provisioning', 'cancelled'],
  provisioning: ['active', 'failed', 'suspended', 'cancelled'],
  active: ['suspended', 'cancelled'],
  suspended: ['active', 'cancelled'],
  // A customer who pays again within the grace period gets their workspace back.
  cancelled: ['provisioning', 'purged'],
  failed: ['provisioning', 'cancelled'],
  purged: [],
};

export function canTransition(from: TenantStatus, to: TenantStatus): boolean {
  return ALLOWED[from].includes(to);
}

/**
 * Names a tenant may not take: the portal's own hosts and names that would
 * mislead (a tenant called "admin" or "api" under the platform's domain).
 */
export const RESERVED_SLUGS: ReadonlySet<string> = new Set([
  'www',
  'api',
  'app',
  'admin',
  'portal',
  'dashboard',
  'mail',
  'smtp',
  'imap',
  'pop',
  'mx',
  'ns',
  'ns1',
  'ns2',
  'dns',
  'ftp',
  'ssh',
  'vpn',
  'status',
  'help',
  'support',
  'docs',
  'blog',
  'billing',
  'pay',
  'payments',
  'stripe',
  'webhooks',
  'static',
  'assets',
  'cdn',
  'auth',
  'login',
  'signup',
  'account',
  'accounts',
  'root',
  'system',
  'aiqso',
  'localhost',
  'n8n',
  'grafana',
  'metrics',
  'logs',
  'test',
  'staging',
  'internal',
]);

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A slug must be a lowercase DNS label (RFC 1123), not reserved, and not look like an IDN or an id. */
export function validateSlug(slug: string): string | undefined {
  if (slug.length < 3) return 'must be at least 3 characters';
  if (slug.length > 40) return 'must be at most 40 characters';
  if (!LABEL.test(slug)) {
    return 'may contain only lowercase letters, digits and hyphens, and must start and end with a letter or digit';
  }
  if (slug.startsWith('xn--') || slug.includes('--')) return 'may not contain two hyphens in a row';
  if (RESERVED_SLUGS.has(slug)) return 'is reserved';
  return undefined;
}

export function assertValidSlug(slug: string): void {
  const problem = validateSlug(slug);
  if (problem) {
    throw new DomainError('validation_failed', `slug: ${problem}`, { details: { field: 'slug', problem } });
  }
}
