import { isIP } from 'node:net';
import { z } from 'zod';
import { DRIVER_KINDS } from '../core/compute.ts';

/**
 * Every setting the platform reads, keyed by its environment variable name.
 * The same names are accepted in `aiqso.config.yaml`; the environment wins.
 * What each means is in src/config/reference.ts, from which (with this
 * schema's defaults) `npm run docs:config` writes docs/configuration.md;
 * a test fails when that page drifts from the schema.
 */

const port = z.coerce
  .number({ error: 'expected a TCP port number (1-65535)' })
  .int('expected a whole TCP port number (1-65535)')
  .min(1, 'expected a TCP port number (1-65535)')
  .max(65535, 'expected a TCP port number (1-65535)');

const url = (what: string) => z.url({ error: `expected ${what}` });

const optionalString = z.string().min(1).optional();

const cidr = z
  .string()
  .regex(
    /^(\d{1,3}\.){3}\d{1,3}\/(1[6-9]|2[0-9]|30)$/,
    'expected an IPv4 CIDR such as 10.10.10.0/24 (/16 to /30)',
  );

const hostname = z
  .string()
  .regex(
    /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
    'expected a lowercase DNS name such as localhost or aiqso.io',
  );

export const configSchema = z.object({
  AIQSO_DATA_DIR: z.string().min(1).default('./.aiqso'),
  AIQSO_BIND: z
    .union([z.ipv4(), z.ipv6(), z.literal('localhost')], { error: 'expected an IP address' })
    .default('127.0.0.1'),
  AIQSO_HTTP_PORT: port.default(8080),
  AIQSO_HTTPS_PORT: port.optional(),
  AIQSO_TLS_CERT: optionalString,
  AIQSO_TLS_KEY: optionalString,
  AIQSO_BASE_DOMAIN: hostname.default('localhost'),
  AIQSO_PUBLIC_URL: url('an absolute URL such as https://aiqso.io').optional(),
  DATABASE_URL: url('a postgres:// connection URL')
    .refine((v) => /^postgres(ql)?:\/\//.test(v), 'expected a postgres:// connection URL')
    .optional(),
  REDIS_URL: url('a redis:// URL')
    .refine((v) => /^rediss?:\/\//.test(v), 'expected a redis:// URL')
    .optional(),
  // The Redis services that need one get their own ACL user on; the URL's user administers them.
  AIQSO_SERVICES_REDIS_URL: url('a redis:// URL')
    .refine((v) => /^rediss?:\/\//.test(v), 'expected a redis:// URL')
    .refine(
      (v) => URL.canParse(v) && /^\/?\d*$/.test(new URL(v).pathname),
      'expected a database number as its path',
    )
    .optional(),
  AIQSO_DRIVER: z.enum(DRIVER_KINDS, { error: 'expected process, lxc or proxmox' }).default('process'),
  AIQSO_EDGE: z.enum(['builtin', 'nginx'], { error: 'expected builtin or nginx' }).default('builtin'),
  AIQSO_BILLING: z
    .enum(['local', 'stripe'], { error: 'expected local (simulated payments) or stripe' })
    .optional(),
  STRIPE_SECRET_KEY: z
    .string()
    .regex(/^(sk|rk)_(test|live)_\w+$/, 'expected a Stripe secret key (sk_test_… or sk_live_…)')
    .optional(),
  STRIPE_WEBHOOK_SECRET: z
    .string()
    .regex(/^whsec_\w+$/, 'expected a Stripe webhook secret (whsec_…)')
    .optional(),
  SMTP_URL: url('an smtp:// or smtps:// URL')
    .refine((v) => /^smtps?:\/\//.test(v), 'expected an smtp:// or smtps:// URL')
    .optional(),
  AIQSO_ADMIN_EMAIL: z.email({ error: 'expected an email address' }).optional(),
  AIQSO_ADMIN_PASSWORD: z.string().min(12, 'expected at least 12 characters').optional(),
  AIQSO_MASTER_KEY: z
    .string()
    .regex(/^[A-Za-z0-9+/]{43}=$/, 'expected 32 bytes in base64 (44 characters)')
    .optional(),
  AIQSO_LXC_SUBNET: cidr.default('10.10.0.0/20'),
  // Memory placement keeps back on every host for the host itself (its OS, the platform, PostgreSQL).
  AIQSO_HOST_RESERVE_MB: z.coerce
    .number({ error: 'expected a number of MB' })
    .int('expected whole MB')
    .min(0, 'expected a number of MB ≥ 0')
    .default(2048),
  // How many times its memory (less the reserve) a host may promise in requests; 1: never more than it has.
  AIQSO_HOST_OVERCOMMIT: z.coerce
    .number({ error: 'expected a ratio such as 1 or 1.5' })
    .min(1, 'expected a ratio of at least 1')
    .max(10, 'expected a ratio of at most 10')
    .default(1),
  AIQSO_LXC_BRIDGE: z
    .string()
    .regex(/^[a-zA-Z0-9_-]{1,15}$/, 'expected a network interface name (at most 15 characters)')
    .default('aiqsobr0'),
  AIQSO_EGRESS: z.enum(['none', 'nat'], { error: 'expected none or nat' }).default('none'),
  AIQSO_LXC_PATH: z
    .string()
    .startsWith('/', 'expected an absolute directory such as /var/lib/lxc')
    .default('/var/lib/lxc'),
  // containers-registries.conf(5) the lxc driver's image pulls (skopeo) use, e.g. to mark a local
  // registry insecure; default: skopeo's own (/etc/containers/registries.conf).
  AIQSO_REGISTRIES_CONF: z
    .string()
    .startsWith('/', 'expected an absolute file such as /etc/aiqso/registries.conf')
    .optional(),
  PROXMOX_URL: url('the cluster URL such as https://pve1:8006').optional(),
  PROXMOX_TOKEN_ID: z
    .string()
    .regex(/^[^@\s]+@[^!\s]+![\w.-]+$/, 'expected an API token id such as aiqso@pve!control')
    .optional(),
  PROXMOX_TOKEN_SECRET: optionalString,
  PROXMOX_CA_FILE: optionalString,
  PROXMOX_FINGERPRINT: z
    .string()
    .regex(/^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$/, 'expected a SHA-256 fingerprint AA:BB:…')
    .optional(),
  PROXMOX_STORAGE: z
    .string()
    .regex(/^[a-z][a-z0-9\-_.]*[a-z0-9]$/i, 'expected a Proxmox storage id such as local-lvm')
    .default('local-lvm'),
  PROXMOX_BACKUP_STORAGE: z
    .string()
    .regex(/^[a-z][a-z0-9\-_.]*[a-z0-9]$/i, 'expected a Proxmox storage id such as local')
    .default('local'),
  PROXMOX_TEMPLATE_STORAGE: z
    .string()
    .regex(/^[a-z][a-z0-9\-_.]*[a-z0-9]$/i, 'expected a Proxmox storage id such as local')
    .default('local'),
  PROXMOX_BRIDGE: z
    .string()
    .regex(/^[a-zA-Z0-9_.-]{1,15}$/, 'expected a bridge name such as vmbr1')
    .default('vmbr1'),
  PROXMOX_SUBNET: cidr.default('10.10.10.0/24'),
  PROXMOX_VMID_RANGE: z
    .string()
    .regex(/^\d{3,9}-\d{3,9}$/, 'expected a VMID range such as 10000-19999')
    .refine((v) => {
      const [a, b] = v.split('-').map(Number);
      return a! >= 100 && a! <= b!;
    }, 'expected a VMID range from at least 100, low-high')
    .default('10000-19999'),
  LISTMONK_URL: url('the Listmonk base URL').optional(),
  AIQSO_GRACE_DAYS: z.coerce
    .number({ error: 'expected a number of days' })
    .min(0, 'expected a number of days ≥ 0')
    .default(90),
  AIQSO_PENDING_SIGNUP_HOURS: z.coerce
    .number({ error: 'expected a number of hours' })
    .min(1, 'expected at least 1 hour')
    .default(24),
  AIQSO_SIGNUP_RATE_IP: z.coerce
    .number({ error: 'expected signups per hour (0 turns the limit off)' })
    .int('expected whole signups per hour')
    .min(0, 'expected signups per hour (0 turns the limit off)')
    .default(10),
  AIQSO_SERVICE_GRACE_HOURS: z.coerce
    .number({ error: 'expected a number of hours' })
    .min(0, 'expected a number of hours ≥ 0')
    .default(168),
  AIQSO_USAGE_HOURLY_DAYS: z.coerce
    .number({ error: 'expected a number of days' })
    .int('expected whole days')
    .min(1, 'expected at least 1 day')
    .default(90),
  AIQSO_USAGE_MONTHLY_MONTHS: z.coerce
    .number({ error: 'expected a number of months' })
    .int('expected whole months')
    .min(1, 'expected at least 1 month')
    .default(13),
  AIQSO_CATALOG_DIR: z.string().min(1).optional(),
  AIQSO_RESYNC_SECONDS: z.coerce
    .number({ error: 'expected a number of seconds' })
    .int('expected whole seconds')
    .min(1, 'expected at least 1 second')
    .default(60),
  // Seconds between two health rounds: every active dashboard and service is probed at its health path.
  AIQSO_HEALTH_INTERVAL_SECONDS: z.coerce
    .number({ error: 'expected a number of seconds' })
    .int('expected whole seconds')
    .min(1, 'expected at least 1 second')
    .default(300),
  // A probe that has not answered within this many seconds counts as a failure.
  AIQSO_HEALTH_TIMEOUT_SECONDS: z.coerce
    .number({ error: 'expected a number of seconds' })
    .int('expected whole seconds')
    .min(1, 'expected at least 1 second')
    .default(5),
  // Failed probes in a row after which the repair ladder starts (restart, recreate, degraded).
  AIQSO_HEALTH_FAILURES: z.coerce
    .number({ error: 'expected a number of probes' })
    .int('expected a whole number of probes')
    .min(1, 'expected at least 1 probe')
    .default(2),
  // Event webhooks: private, loopback and link-local targets are refused unless allowed here.
  AIQSO_WEBHOOKS_ALLOW_PRIVATE: z.enum(['0', '1'], { error: 'expected 0 or 1' }).default('0'),
  AIQSO_WEBHOOKS_ALLOW: z
    .string()
    .optional()
    .transform((v, ctx) => {
      const items = (v ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      for (const item of items) {
        const [address, bits, extra] = item.split('/');
        const family = isIP(address ?? '');
        const max = family === 6 ? 128 : 32;
        const okBits = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max);
        const okHost = bits === undefined && /^[a-z0-9.-]+$/.test(item);
        if (extra !== undefined || !((family !== 0 && okBits) || okHost))
          ctx.addIssue({
            code: 'custom',
            message: `"${item}" is not a host name, an IP address or a CIDR such as 10.0.0.0/8`,
          });
      }
      return items;
    }),
  AIQSO_WEBHOOKS_TIMEOUT_SECONDS: z.coerce
    .number({ error: 'expected a number of seconds' })
    .positive('expected a number of seconds > 0')
    .max(60, 'expected at most 60 seconds')
    .default(10),
  AIQSO_WEBHOOKS_BACKOFF_SECONDS: z.coerce
    .number({ error: 'expected a number of seconds' })
    .positive('expected a number of seconds > 0')
    .default(30),
  AIQSO_WEBHOOKS_CONCURRENCY: z.coerce
    .number({ error: 'expected a number' })
    .int('expected a whole number')
    .min(1, 'expected at least 1')
    .max(256, 'expected at most 256')
    .default(16),
  AIQSO_WEBHOOKS_RETRY_HOURS: z.coerce
    .number({ error: 'expected a number of hours' })
    .positive('expected a number of hours > 0')
    .default(72),
  // Where platform alerts (incidents, failed resources) go instead of every platform admin.
  AIQSO_ALERT_EMAIL: z.email({ error: 'expected an email address' }).optional(),
  AIQSO_TIMEZONE: z
    .string()
    .refine((tz) => {
      try {
        new Intl.DateTimeFormat('en-US', { timeZone: tz });
        return true;
      } catch {
        return false;
      }
    }, 'expected an IANA time zone such as UTC or Europe/Berlin')
    .default('UTC'),
  AIQSO_ORPHAN_GRACE_SECONDS: z.coerce
    .number({ error: 'expected a number of seconds' })
    .int('expected whole seconds')
    .min(0, 'expected a number of seconds ≥ 0')
    .default(3600),
  AIQSO_LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      error: 'expected fatal, error, warn, info, debug, trace or silent',
    })
    .default('info'),
  AIQSO_TLS_CERT_DIR: optionalString,
  AIQSO_ACME_DIRECTORY_URL: url('the URL of an ACME directory').optional(),
  AIQSO_ACME_EMAIL: z.email({ error: 'expected an email address' }).optional(),
  AIQSO_ACME_DNS_HOOK: z.string().regex(/^\//, 'expected the absolute path of an executable').optional(),
  AIQSO_ACME_DNS_PROPAGATION_SECONDS: z.coerce
    .number({ error: 'expected a number of seconds' })
    .int('expected whole seconds')
    .min(0, 'expected a number of seconds ≥ 0')
    .max(3600, 'expected at most 3600 seconds')
    .default(30),
  AIQSO_CERT_RENEW_DAYS: z.coerce
    .number({ error: 'expected a number of days' })
    .int('expected whole days')
    .min(1, 'expected between 1 and 365 days')
    .max(365, 'expected between 1 and 365 days')
    .default(30),
  AIQSO_EDGE_RATE_IP: z.coerce
    .number({ error: 'expected requests per second (0 turns the limit off)' })
    .int('expected whole requests per second')
    .min(0, 'expected requests per second (0 turns the limit off)')
    .default(100),
  AIQSO_EDGE_RATE_TENANT: z.coerce
    .number({ error: 'expected requests per second (0 turns the limit off)' })
    .int('expected whole requests per second')
    .min(0, 'expected requests per second (0 turns the limit off)')
    .default(1000),
  AIQSO_EDGE_RELOAD_SECONDS: z.coerce
    .number({ error: 'expected a number of seconds' })
    .int('expected whole seconds')
    .min(1, 'expected at least 1 second')
    .default(30),
  AIQSO_EDGE_UPSTREAM_TIMEOUT_SECONDS: z.coerce
    .number({ error: 'expected a number of seconds' })
    .int('expected whole seconds')
    .min(1, 'expected at least 1 second')
    .max(3600, 'expected at most 3600 seconds')
    .default(60),
  AIQSO_EDGE_TRUSTED_PROXIES: z
    .string()
    .regex(/^[0-9a-fA-F.:/]+(,[0-9a-fA-F.:/]+)*$/, 'expected comma-separated IP addresses or CIDRs')
    .optional(),
  AIQSO_EDGE_PLATFORM_URL: z
    .url({
      protocol: /^http$/,
      error: 'expected an http:// URL of a platform listener, e.g. http://10.0.0.2:8080',
    })
    .optional(),
  AIQSO_METRICS_TOKEN: z
    .string()
    .regex(/^[\x21-\x7e]{16,256}$/, 'expected 16 to 256 visible ASCII characters (a bearer token)')
    .optional(),
  AIQSO_TLS_MIN_VERSION: z
    .enum(['TLSv1.2', 'TLSv1.3'], { error: 'expected TLSv1.2 or TLSv1.3' })
    .default('TLSv1.3'),
  /** restic repository base: a path (a NAS mount), or sftp:…, s3:…, rest:… as restic spells them; one repository per tenant below it. */
  AIQSO_BACKUP_REPOSITORY: z
    .string()
    .regex(
      /^(\/|\.|[A-Za-z0-9_-]+\/|(sftp|s3|rest|swift|b2|azure|gs|rclone):\S+)/,
      'expected a path, or a restic repository such as sftp:user@host:/backups, s3:host/bucket or rest:https://host/',
    )
    .optional(),
  /** Private key file (mode 0600) the platform's ssh logs in with to an sftp: backup repository; a path, never the key. */
  AIQSO_BACKUP_SSH_KEY: z
    .string()
    .regex(/^[^\s'"\\]+$/, 'expected the path of a private key file, without spaces or quotes')
    .optional(),
  /** The platform's known_hosts file for an sftp: backup repository: its host key must be listed there. */
  AIQSO_BACKUP_SSH_KNOWN_HOSTS: z
    .string()
    .regex(/^[^\s'"\\]+$/, 'expected the path of a known_hosts file, without spaces or quotes')
    .optional(),
  /** CA certificates (PEM) restic trusts for an HTTPS repository signed by a private CA; a path, passed as `--cacert`. */
  AIQSO_BACKUP_CACERT: z.string().min(1, 'expected the path of a PEM file of CA certificates').optional(),
  /** Backups kept per tenant, grandfather-father-son: the newest snapshot of each of the last N days, ISO weeks and months. */
  AIQSO_BACKUP_KEEP: z
    .string()
    .regex(
      /^(daily|weekly|monthly)=\d{1,4}(,(daily|weekly|monthly)=\d{1,4}){0,2}$/,
      'expected a retention such as daily=30,weekly=12,monthly=12',
    )
    .default('daily=30,weekly=12,monthly=12'),
  /** How much of each tenant repository's data the weekly verification reads back (`restic check --read-data-subset`). */
  AIQSO_BACKUP_VERIFY_READ_PERCENT: z.coerce
    .number({ error: 'expected a number' })
    .int('expected a whole number')
    .min(1, 'expected 1 to 100')
    .max(100, 'expected 1 to 100')
    .default(10),
  AIQSO_WORKER_CONCURRENCY: z.coerce
    .number({ error: 'expected a number' })
    .int('expected a whole number')
    .min(1, 'expected at least 1')
    .max(64, 'expected at most 64')
    .default(8),
});

export type RawConfig = z.infer<typeof configSchema>;
export const CONFIG_VARIABLES = Object.keys(configSchema.shape) as (keyof RawConfig)[];
