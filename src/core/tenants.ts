import { DomainError } from './errors.ts';
import type { RouteState } from './routes.ts';

/**
 * Tenant: one customer of the platform, reachable at `<slug>.<base domain>`.
 *
 *   pending_payment → provisioning → active ⇄ suspended → cancelled → purged
 *                                 ↘ failed (with a reason)
 *
 * Transitions are decided here, without I/O; the lifecycle applies them.
 */
export const TENANT_STATUSES = [
  'pending_payment',
  'provisioning',
  'active',
  'suspended',
  'cancelled',
  'purged',
  'failed',
] as const;
export type TenantStatus = (typeof TENANT_STATUSES)[number];

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

/** What the edge answers for a tenant in each status. */
/** Why a tenant is suspended for a payment; billing lifts only the suspensions billing made. */
export const PAYMENT_SUSPENSION = 'payment_failed';
/** Why a tenant an operator suspended is suspended; a payment does not lift it (billing/decide.ts). */
export const OPERATOR_SUSPENSION = 'suspended by an operator';

export function routeStateFor(status: TenantStatus): RouteState {
  if (status === 'active') return 'active';
  if (status === 'provisioning' || status === 'pending_payment' || status === 'failed') return 'provisioning';
  return 'suspended';
}

/**
 * Names a tenant may not take: the portal's own hosts, names that would
 * mislead (a tenant called "admin" or "api" under the platform's domain), and
 * names that clients, mail servers and certificate authorities look up by
 * convention under any domain (WPAD and ISATAP proxy discovery, mail client
 * autoconfiguration, MTA-STS, the RFC 2142 role mailboxes a CA may write to
 * when validating the domain). A tenant holding one of those could serve
 * proxy settings or mail configuration to every user of the base domain.
 * (A word list grouped by why each name is reserved, hence kept as typed.)
 */
// prettier-ignore
export const RESERVED_SLUGS: ReadonlySet<string> = new Set([
  // the platform's own hosts and words
  'www', 'api', 'app', 'admin', 'portal', 'dashboard', 'console', 'control', 'panel', 'aiqso',
  'status', 'help', 'support', 'docs', 'blog', 'billing', 'pay', 'payments', 'stripe', 'webhooks',
  'static', 'assets', 'cdn', 'media', 'files', 'download', 'downloads', 'upload', 'uploads',
  'auth', 'login', 'logout', 'signin', 'sign-in', 'signup', 'sign-up', 'register', 'account',
  'accounts', 'id', 'identity', 'sso', 'oauth', 'oidc', 'openid', 'saml', 'adfs', 'secure',
  'security', 'root', 'system', 'internal', 'test', 'staging', 'localhost', 'localdomain',
  // discovery names clients look up under any domain
  'wpad', 'isatap', 'autodiscover', 'autoconfig', 'mta-sts', 'lyncdiscover', 'sip',
  'enterpriseregistration', 'enterpriseenrollment', 'msoid',
  // mail, and the RFC 2142 role mailboxes (a CA may mail them to validate the domain)
  'mail', 'email', 'webmail', 'smtp', 'imap', 'pop', 'pop3', 'mx', 'mx1', 'mx2', 'relay', 'owa',
  'exchange', 'postmaster', 'hostmaster', 'webmaster', 'abuse', 'noc', 'noreply', 'no-reply',
  'mailer-daemon',
  // network infrastructure
  'ns', 'ns0', 'ns1', 'ns2', 'ns3', 'ns4', 'dns', 'dns1', 'dns2', 'ntp', 'ftp', 'sftp', 'ssh',
  'vpn', 'proxy', 'gateway', 'router', 'ldap', 'kerberos', 'radius', 'syslog',
  // certificates
  'ca', 'pki', 'ocsp', 'crl', 'acme-challenge', 'ssl', 'tls',
  // the platform's parts and tools
  'n8n', 'grafana', 'metrics', 'logs', 'prometheus', 'alertmanager', 'loki', 'kibana',
  'elasticsearch', 'wazuh', 'ollama', 'listmonk', 'proxmox', 'pve', 'registry', 'postgres',
  'redis', 'cpanel', 'whm', 'webdisk',
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
