import { configSchema, type RawConfig } from './schema.ts';

/**
 * What each setting means, for the operator's configuration reference
 * (docs/configuration.md, written by `npm run docs:config`). Typed by the
 * schema's keys: a variable added to the schema without an entry here does
 * not compile, and the docs test fails when the written page differs from
 * what this renders. Defaults come from the schema itself; `unset` says what
 * happens when a variable without a default is not set.
 */
export interface ConfigEntry {
  group: ConfigGroup;
  unset?: string;
  meaning: string;
  /**
   * `value`: the whole value is a secret, never shown (only whether it is set);
   * `credentials`: a URL or repository whose user-info password is masked.
   */
  secret?: 'value' | 'credentials';
}

export const CONFIG_GROUPS = [
  'Platform',
  'Edge and TLS',
  'Billing and mail',
  'Accounts and secrets',
  'Tenant lifecycle',
  'Backups',
  'Health and alerts',
  'Webhooks',
  'Compute',
  'Compute: Proxmox VE',
] as const;
export type ConfigGroup = (typeof CONFIG_GROUPS)[number];

export const CONFIG_REFERENCE: { [K in keyof RawConfig]-?: ConfigEntry } = {
  AIQSO_DATA_DIR: {
    group: 'Platform',
    meaning:
      'embedded PostgreSQL, generated secrets (mode 0600), mail files, process-driver work dirs, local backups',
  },
  AIQSO_BIND: { group: 'Platform', meaning: 'address the platform listens on' },
  AIQSO_HTTP_PORT: { group: 'Platform', meaning: 'HTTP port: portal, API and every tenant' },
  AIQSO_BASE_DOMAIN: {
    group: 'Platform',
    meaning: 'portal at `<base>`, tenant dashboard at `<slug>.<base>`, a service at `<slug>.<base>/<path>`',
  },
  AIQSO_PUBLIC_URL: {
    group: 'Platform',
    unset: 'derived from `AIQSO_BASE_DOMAIN` and the listening ports',
    meaning: "used in emails and links; never taken from a request's Host",
  },
  DATABASE_URL: {
    secret: 'credentials',
    group: 'Platform',
    unset: 'unset \u2192 embedded PostgreSQL',
    meaning: 'master database (`postgres://…`)',
  },
  REDIS_URL: {
    secret: 'credentials',
    group: 'Platform',
    unset: 'unset \u2192 in-process',
    meaning: 'rate limits, sessions, caches',
  },
  AIQSO_SERVICES_REDIS_URL: {
    secret: 'credentials',
    group: 'Platform',
    unset: 'unset \u2192 services that need Redis (Paperless-ngx) are not offered',
    meaning:
      "Redis for services that need one (`database.redis`): each gets an ACL user of its own, limited to its key and channel prefix, with a random password; the URL's user must be allowed `ACL`, `INFO`, `SCAN` and `UNLINK` (e.g. `default`). Can be the same server as `REDIS_URL`. See docs/services.md",
  },
  AIQSO_CATALOG_DIR: {
    group: 'Platform',
    unset: 'the shipped `catalog/services`',
    meaning: 'service templates, one YAML file per service, validated at start-up',
  },
  AIQSO_TIMEZONE: { group: 'Platform', meaning: 'time zone of the schedules (backups daily at 02:00 there)' },
  AIQSO_LOG_LEVEL: {
    group: 'Platform',
    meaning: '`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`',
  },
  AIQSO_WORKER_CONCURRENCY: {
    group: 'Platform',
    meaning:
      'jobs one worker process runs at once (most of a reconcile waits on the database and the container tools, so slots beyond the cores pay: a resync of 1,000 tenants took 3.4 s with 8, 7.1 s with 4)',
  },
  AIQSO_RESYNC_SECONDS: {
    group: 'Platform',
    meaning: 'how often every resource is reconciled to repair drift',
  },
  AIQSO_ORPHAN_GRACE_SECONDS: {
    group: 'Platform',
    meaning: 'how long something no spec owns is reported before the resync removes it',
  },
  AIQSO_EDGE: { group: 'Edge and TLS', meaning: '`builtin` or `nginx`' },
  AIQSO_HTTPS_PORT: {
    group: 'Edge and TLS',
    unset: 'unset',
    meaning: 'HTTPS port; needs `AIQSO_TLS_CERT` and `AIQSO_TLS_KEY`',
  },
  AIQSO_TLS_CERT: {
    group: 'Edge and TLS',
    unset: 'unset',
    meaning: 'PEM files of the (wildcard) certificate and its key',
  },
  AIQSO_TLS_KEY: {
    group: 'Edge and TLS',
    unset: 'unset',
    meaning: 'PEM files of the (wildcard) certificate and its key',
  },
  AIQSO_TLS_CERT_DIR: {
    group: 'Edge and TLS',
    unset: 'unset',
    meaning:
      'per-host certificates for SNI (`<hostname>.crt` + `<hostname>.key`), e.g. custom domains; reloaded on change',
  },
  AIQSO_TLS_MIN_VERSION: {
    group: 'Edge and TLS',
    meaning: 'oldest TLS version the HTTPS listener accepts (builtin and nginx edge): `TLSv1.2` or `TLSv1.3`',
  },
  AIQSO_ACME_DIRECTORY_URL: {
    secret: 'credentials',
    group: 'Edge and TLS',
    unset: 'unset',
    meaning: "ACME directory `aiqso certs order` orders from (e.g. Let's Encrypt's)",
  },
  AIQSO_ACME_EMAIL: {
    group: 'Edge and TLS',
    unset: 'unset',
    meaning: 'contact address for the ACME account (its key is kept in `<data>/acme-account.key`, 0600)',
  },
  AIQSO_ACME_DNS_HOOK: {
    group: 'Edge and TLS',
    unset: 'unset',
    meaning: 'absolute path of your DNS-01 executable, needed for `*.<domain>` (see docs/edge.md, ACME)',
  },
  AIQSO_ACME_DNS_PROPAGATION_SECONDS: {
    group: 'Edge and TLS',
    meaning: 'wait after the hook created the TXT record before the CA is asked to look',
  },
  AIQSO_CERT_RENEW_DAYS: {
    group: 'Edge and TLS',
    meaning: 'the daily `certificates` schedule renews a certificate expiring within this many days',
  },
  AIQSO_EDGE_RATE_IP: {
    group: 'Edge and TLS',
    meaning: 'requests per second per client IP at the edge (0 = off)',
  },
  AIQSO_EDGE_RATE_TENANT: {
    group: 'Edge and TLS',
    meaning: 'requests per second per tenant at the edge (0 = off)',
  },
  AIQSO_EDGE_RELOAD_SECONDS: {
    group: 'Edge and TLS',
    meaning:
      'how often an edge checks its whole route table against the database (changes arrive at once by LISTEN/NOTIFY)',
  },
  AIQSO_EDGE_UPSTREAM_TIMEOUT_SECONDS: {
    group: 'Edge and TLS',
    meaning:
      "waiting this long for an upstream's answer gives the client a 504 page; this long between two pieces of an answer already started cuts it (nginx edge: `proxy_read_timeout`, `proxy_send_timeout`)",
  },
  AIQSO_EDGE_TRUSTED_PROXIES: {
    group: 'Edge and TLS',
    unset: 'unset',
    meaning: 'comma-separated IPs/CIDRs whose `X-Forwarded-For` the edge believes',
  },
  AIQSO_EDGE_PLATFORM_URL: {
    secret: 'credentials',
    group: 'Edge and TLS',
    unset: 'unset',
    meaning:
      '`aiqso edge` only: forward the base domain to this `http://` platform listener (an `aiqso up`) instead of serving the platform app in the edge',
  },
  AIQSO_METRICS_TOKEN: {
    secret: 'value',
    group: 'Edge and TLS',
    unset: 'unset \u2192 `/metrics` answers only on loopback',
    meaning:
      "bearer token `/metrics` (the platform's and an edge's own) asks for; without it, only a client on this machine reads them",
  },
  AIQSO_BILLING: {
    group: 'Billing and mail',
    unset: '`stripe` with `STRIPE_SECRET_KEY`, else `local`',
    meaning:
      'billing mode: `stripe`, or `local` (simulated payments: `aiqso up` warns; `aiqso up` and `aiqso edge` refuse a base domain other than `localhost` unless it is set explicitly)',
  },
  STRIPE_SECRET_KEY: {
    secret: 'value',
    group: 'Billing and mail',
    unset: 'unset \u2192 local billing mode',
    meaning: 'Stripe API key',
  },
  STRIPE_WEBHOOK_SECRET: {
    secret: 'value',
    group: 'Billing and mail',
    unset: 'generated in local mode',
    meaning: 'verifies `Stripe-Signature` on `POST /webhooks/stripe`',
  },
  SMTP_URL: {
    secret: 'credentials',
    group: 'Billing and mail',
    unset: 'unset \u2192 one `.eml` file per message in `<data>/mail/`',
    meaning: 'outgoing mail',
  },
  LISTMONK_URL: {
    secret: 'credentials',
    group: 'Billing and mail',
    unset: 'unset',
    meaning: 'Listmonk transactional mail',
  },
  AIQSO_ADMIN_EMAIL: {
    group: 'Accounts and secrets',
    unset: 'unset \u2192 `admin@<base domain>`',
    meaning: 'first platform admin',
  },
  AIQSO_ADMIN_PASSWORD: {
    secret: 'value',
    group: 'Accounts and secrets',
    unset: 'unset \u2192 generated and printed once by `aiqso up`',
    meaning: "first platform admin's password (at least 12 characters)",
  },
  AIQSO_MASTER_KEY: {
    secret: 'value',
    group: 'Accounts and secrets',
    unset: 'generated into `<data>` (0600)',
    meaning: 'encrypts secrets at rest (32 bytes, base64)',
  },
  AIQSO_SIGNUP_RATE_IP: {
    group: 'Accounts and secrets',
    meaning:
      'signups that create a tenant, per client address and hour (0 = off); more get 429 with `Retry-After` (counted in Redis when `REDIS_URL` is set)',
  },
  AIQSO_PENDING_SIGNUP_HOURS: {
    group: 'Accounts and secrets',
    meaning:
      'unpaid signups older than this are removed (hourly), freeing their slug and e-mail address; audited as `tenant.signup.expired`',
  },
  AIQSO_HEALTH_INTERVAL_SECONDS: {
    group: 'Health and alerts',
    meaning:
      'how often every active dashboard and service is probed at its health path, over the path the edge uses (docs/health.md)',
  },
  AIQSO_HEALTH_TIMEOUT_SECONDS: {
    group: 'Health and alerts',
    meaning: 'a probe that has no answer after this long counts as a failure',
  },
  AIQSO_HEALTH_FAILURES: {
    group: 'Health and alerts',
    meaning:
      'failed probes in a row before the repair ladder climbs a rung (restart, recreate, degraded with an incident)',
  },
  AIQSO_WEBHOOKS_ALLOW_PRIVATE: {
    group: 'Webhooks',
    meaning:
      '1 lets webhook endpoints target private, loopback and link-local addresses (10/8, 172.16/12, 192.168/16, 127/8, 169.254/16, ::1, fc00::/7, fe80::/10 …); 0 refuses them at registration and at every delivery (docs/webhooks.md)',
  },
  AIQSO_WEBHOOKS_ALLOW: {
    group: 'Webhooks',
    unset: 'no private target is allowed (unless AIQSO_WEBHOOKS_ALLOW_PRIVATE=1)',
    meaning:
      'comma-separated host names, IP addresses and CIDRs that webhook endpoints may target even though they are private (an n8n on the LAN: `n8n.lan,10.0.5.0/24`)',
  },
  AIQSO_WEBHOOKS_TIMEOUT_SECONDS: {
    group: 'Webhooks',
    meaning: 'a receiver that has not answered a delivery within this long fails that attempt',
  },
  AIQSO_WEBHOOKS_BACKOFF_SECONDS: {
    group: 'Webhooks',
    meaning:
      'wait before the first retry of a failed delivery; each further retry waits twice as long, at most an hour',
  },
  AIQSO_WEBHOOKS_CONCURRENCY: {
    group: 'Webhooks',
    meaning:
      "deliveries one worker process makes at once, in slots of their own: receivers that are slow to answer hold these, never the platform's job slots (AIQSO_WORKER_CONCURRENCY)",
  },
  AIQSO_WEBHOOKS_RETRY_HOURS: {
    group: 'Webhooks',
    meaning:
      'a delivery is retried for this long after its first attempt (or a redelivery), then marked failed',
  },
  AIQSO_ALERT_EMAIL: {
    group: 'Health and alerts',
    unset: "the platform admins' addresses",
    meaning: 'where operator alerts go: incidents, failed resources, failed certificate renewals',
  },
  AIQSO_BACKUP_REPOSITORY: {
    secret: 'credentials',
    group: 'Backups',
    unset: '`<data>/backups`',
    meaning:
      "where the restic repositories live (one per tenant under `tenants/<tenant id>`): a path, or `sftp:…`, `s3:…`, `rest:…` as restic spells them, with the backend's credentials from restic's usual variables (`AWS_*`, `RESTIC_REST_*` …); `aiqso doctor` checks it",
  },
  AIQSO_BACKUP_SSH_KEY: {
    group: 'Backups',
    unset: 'no key is offered (an `sftp:` login is refused)',
    meaning:
      "path of the private key file (mode 0600, no passphrase) ssh logs in with to an `sftp:` repository (a NAS's SSH login); only the path reaches restic's argv. ssh runs in batch mode, never asks, and reads nothing from `~/.ssh`",
  },
  AIQSO_BACKUP_SSH_KNOWN_HOSTS: {
    group: 'Backups',
    unset: '`<data>/ssh/known_hosts`',
    meaning:
      "the platform's known_hosts file for an `sftp:` repository: the server's host key must be listed there (add it with `ssh-keyscan` after checking its fingerprint); an unknown or changed key is refused, never accepted",
  },
  AIQSO_BACKUP_CACERT: {
    group: 'Backups',
    unset: "the system's CA certificates",
    meaning:
      "path of a PEM file of CA certificates restic trusts for an HTTPS repository (`s3:https://…`, `rest:https://…`) whose certificate a private CA signed, such as an S3 server on a NAS with its own certificate; passed as restic's `--cacert` (a path, no secret)",
  },
  AIQSO_BACKUP_KEEP: {
    group: 'Backups',
    meaning:
      'snapshots the daily `retention` schedule keeps per tenant, service and kind (grandfather-father-son, as `restic forget --keep-daily/--keep-weekly/--keep-monthly`)',
  },
  AIQSO_BACKUP_VERIFY_READ_PERCENT: {
    group: 'Backups',
    meaning:
      "percent of each tenant repository's data the weekly `verify` schedule (and `aiqso backups verify`) reads back and checks with `restic check --read-data-subset=<n>%`, 1 to 100",
  },
  AIQSO_GRACE_DAYS: { group: 'Tenant lifecycle', meaning: 'days between cancellation and purge' },
  AIQSO_SERVICE_GRACE_HOURS: {
    group: 'Tenant lifecycle',
    meaning:
      "hours an unsubscribed service's stopped container and database are kept before they are destroyed",
  },
  AIQSO_USAGE_HOURLY_DAYS: {
    group: 'Tenant lifecycle',
    meaning: 'days hourly usage rows (`usage_metrics`) are kept; see docs/usage.md',
  },
  AIQSO_USAGE_MONTHLY_MONTHS: {
    group: 'Tenant lifecycle',
    meaning: 'months monthly usage roll-ups (`usage_monthly`) are kept',
  },
  AIQSO_DRIVER: { group: 'Compute', meaning: 'compute driver: `process`, `lxc` or `proxmox`' },
  AIQSO_LXC_SUBNET: {
    group: 'Compute',
    meaning:
      '`lxc` driver network (the host takes the first address; a /20 holds 4,093 containers). Containers made on the former default `10.10.10.0/24` keep their addresses: see docs/drivers.md',
  },
  AIQSO_HOST_RESERVE_MB: {
    group: 'Compute',
    meaning:
      "memory placement keeps back on each host for the host itself; a host's allocatable memory is its total less this (times `AIQSO_HOST_OVERCOMMIT`)",
  },
  AIQSO_HOST_OVERCOMMIT: {
    group: 'Compute',
    meaning:
      "how many times its allocatable memory a host may promise in memory *requests* (what placement counts); each container's *limit* (its cgroup memory.max) is enforced regardless",
  },
  AIQSO_LXC_BRIDGE: { group: 'Compute', meaning: '`lxc` driver bridge' },
  AIQSO_LXC_PATH: { group: 'Compute', meaning: '`lxc` driver container directory (`lxc-* -P`)' },
  AIQSO_REGISTRIES_CONF: {
    group: 'Compute',
    meaning:
      "containers-registries.conf(5) file the `lxc` driver's image pulls (skopeo) use, e.g. to mark a local registry insecure; unset: skopeo's own `/etc/containers/registries.conf`",
  },
  AIQSO_EGRESS: {
    group: 'Compute',
    meaning:
      "containers' internet access: `none`, or `nat` (lxc: masqueraded by the host; proxmox: let out by the container firewall, routed by the cluster); the host and other containers stay walled off either way",
  },
  PROXMOX_URL: {
    secret: 'credentials',
    group: 'Compute: Proxmox VE',
    unset: 'unset',
    meaning: '`proxmox` driver: `https://host:8006`',
  },
  PROXMOX_TOKEN_ID: { group: 'Compute: Proxmox VE', unset: 'unset', meaning: '`user@realm!tokenid`' },
  PROXMOX_TOKEN_SECRET: {
    secret: 'value',
    group: 'Compute: Proxmox VE',
    unset: 'unset',
    meaning: "the API token's secret",
  },
  PROXMOX_CA_FILE: {
    group: 'Compute: Proxmox VE',
    unset: 'unset \u2192 system CAs',
    meaning: "CA that signed the cluster's certificate",
  },
  PROXMOX_FINGERPRINT: {
    group: 'Compute: Proxmox VE',
    unset: 'unset',
    meaning: "or: the certificate's SHA-256 fingerprint",
  },
  PROXMOX_STORAGE: { group: 'Compute: Proxmox VE', meaning: 'storage for full clones and restores' },
  PROXMOX_BACKUP_STORAGE: {
    group: 'Compute: Proxmox VE',
    meaning: 'storage `vzdump` writes container exports to',
  },
  PROXMOX_TEMPLATE_STORAGE: {
    group: 'Compute: Proxmox VE',
    meaning: 'storage (content `vztmpl`) the cluster pulls OCI images to and app archives are uploaded to',
  },
  PROXMOX_BRIDGE: { group: 'Compute: Proxmox VE', meaning: "bridge the containers' `net0` joins" },
  PROXMOX_SUBNET: {
    group: 'Compute: Proxmox VE',
    meaning: "containers' static addresses (gateway `.1`), from the platform's pool",
  },
  PROXMOX_VMID_RANGE: { group: 'Compute: Proxmox VE', meaning: 'VMIDs the platform owns and allocates' },
};

/** The schema's default for a variable, as an operator would write it, or undefined. */
export function schemaDefault(name: keyof RawConfig): string | undefined {
  const field = configSchema.shape[name];
  const parsed = field.safeParse(undefined);
  return parsed.success && parsed.data !== undefined ? String(parsed.data) : undefined;
}

const cell = (text: string) => text.replace(/\|/g, '\\|');

/** docs/configuration.md, from the schema and the entries above. */
export function renderConfigReference(): string {
  const out = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/config/reference.ts and src/config/schema.ts by `npm run docs:config`. Do not edit. -->',
    '',
    'Every setting is an environment variable; the same names are accepted in `aiqso.config.yaml` in the',
    'working directory (`AIQSO_CONFIG` names another file), and the environment wins. A bad value stops',
    'start-up with one line naming the variable and what it expects (exit code 2).',
    '',
    'Tests also read `TEST_DATABASE_URL` (a superuser URL on a PostgreSQL 15+ server to use instead of an',
    'embedded one), `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) and `AIQSO_TEST_STRICT`.',
  ];
  const names = Object.keys(CONFIG_REFERENCE) as (keyof RawConfig)[];
  for (const group of CONFIG_GROUPS) {
    out.push('', `## ${group}`, '', '| variable | default | meaning |', '| --- | --- | --- |');
    for (const name of names.filter((n) => CONFIG_REFERENCE[n].group === group)) {
      const entry = CONFIG_REFERENCE[name];
      const fallback = schemaDefault(name);
      const shown = fallback !== undefined ? `\`${fallback}\`` : (entry.unset ?? 'unset');
      out.push(`| \`${name}\` | ${cell(shown)} | ${cell(entry.meaning)} |`);
    }
  }
  return `${out.join('\n')}\n`;
}
