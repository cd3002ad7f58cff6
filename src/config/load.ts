import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { z } from 'zod';
import { CONFIG_VARIABLES, configSchema, type RawConfig } from './schema.ts';

/** Configuration as the rest of the program sees it: parsed once, typed, with derived values filled in. */
export interface Config {
  /** The settings as parsed, defaults filled in (secrets too): only the masked view leaves the process (`settingsView`). */
  settings?: RawConfig;
  dataDir: string;
  http: { bind: string; port: number };
  https?: { port: number; certFile: string; keyFile: string };
  /** The oldest TLS version the HTTPS listener (builtin or nginx) accepts. */
  tlsMinVersion: RawConfig['AIQSO_TLS_MIN_VERSION'];
  /** Bearer token for /metrics; without one, /metrics answers loopback clients only. */
  metricsToken?: string;
  baseDomain: string;
  publicUrl: string;
  databaseUrl?: string;
  redisUrl?: string;
  /** The Redis where services that need one (`database.redis`) get their own ACL user; its URL's user is an admin. */
  servicesRedisUrl?: string;
  driver: RawConfig['AIQSO_DRIVER'];
  edge: RawConfig['AIQSO_EDGE'];
  stripe: { secretKey?: string; webhookSecret?: string };
  /**
   * Stripe, or local billing mode (simulated payments: its Pay button
   * activates any tenant for free). `explicit` says whether AIQSO_BILLING
   * chose it; only then may local mode serve a base domain other than localhost.
   */
  billing: { mode: 'local' | 'stripe'; explicit: boolean };
  smtpUrl?: string;
  admin: { email?: string; password?: string };
  masterKey?: string;
  lxc: { subnet: string; bridge: string; path: string; registriesConf?: string };
  /** What placement may promise on a host: its memory less `reserveMb`, times `overcommit`. */
  hostCapacity: { reserveMb: number; overcommit: number };
  /** Containers' internet access (lxc: masqueraded by the host; proxmox: let out by the firewall). */
  egress: RawConfig['AIQSO_EGRESS'];
  proxmox?: {
    url: string;
    tokenId: string;
    tokenSecret: string;
    caFile?: string;
    fingerprint?: string;
    storage: string;
    backupStorage: string;
    templateStorage: string;
    bridge: string;
    subnet: string;
    vmidRange: [number, number];
  };
  listmonkUrl?: string;
  graceDays: number;
  /** Backups: the restic repository base (tenant repositories below it), retention, backend credentials. */
  backup: {
    repository: string;
    keep: { daily: number; weekly: number; monthly: number };
    /** Percent of a repository's data the verification reads back (`restic check --read-data-subset`). */
    verifyReadPercent: number;
    /** restic's backend variables (S3, rest-server, B2, Azure) as set in the environment, passed to restic only. */
    credentials: Record<string, string>;
    /** How ssh reaches an sftp: repository: the identity file and the platform's known_hosts file. */
    ssh: { key?: string; knownHosts: string };
    /** PEM file of the CA certificates restic trusts for an HTTPS repository (restic's `--cacert`). */
    cacert?: string;
  };
  /** Unpaid signups older than this many hours are removed, freeing their slug and email. */
  pendingSignupHours: number;
  /** Signups that create a tenant, per client address and hour; 0 turns the limit off. */
  signupRatePerIp: number;
  /** Hours an unsubscribed service's stopped container and database are kept before they are destroyed. */
  serviceGraceHours: number;
  /** How long usage is kept: hourly rows in days, monthly roll-ups in months. */
  usageRetention: { hourlyDays: number; monthlyMonths: number };
  /** Service templates directory; unset means the catalog shipped with the platform. */
  catalogDir?: string;
  resyncSeconds: number;
  /** The health monitor: seconds between rounds, probe timeout, failures in a row before a repair. */
  health: { intervalSeconds: number; timeoutSeconds: number; failures: number };
  /** Event webhooks: which private targets are allowed, the per-attempt timeout, back-off and retry window. */
  webhooks: {
    allowPrivate: boolean;
    allow: string[];
    timeoutSeconds: number;
    backoffSeconds: number;
    retryHours: number;
    /** Deliveries in flight at once per worker process, apart from the platform's own jobs. */
    concurrency: number;
  };
  /** Where alerts go instead of every platform admin. */
  alertEmail?: string;
  /** Time zone the schedules' cron expressions are read in. */
  timeZone: string;
  orphanGraceSeconds: number;
  logLevel: RawConfig['AIQSO_LOG_LEVEL'];
  workerConcurrency: number;
  /** Edge tuning (src/edge/). Rates are requests per second; 0 turns a limit off. */
  edgeTuning: {
    ratePerIp: number;
    ratePerTenant: number;
    reloadSeconds: number;
    /** Waiting this long for an upstream's answer, or between two pieces of its body, is a timeout. */
    upstreamTimeoutSeconds: number;
    trustedProxies: string[];
    certDir?: string;
    /**
     * `aiqso edge` only: forward the base domain's requests here instead of
     * serving the platform app in the edge process.
     */
    platformUpstream?: { host: string; port: number };
  };
  /** ACME CA for `aiqso certs order` and renewals (certificates go to `edgeTuning.certDir`). */
  acme?: {
    directoryUrl: string;
    email?: string;
    /** The operator's executable that creates and removes DNS-01 TXT records (needed for a wildcard). */
    dnsHook?: { path: string; propagationSeconds: number; env: Record<string, string | undefined> };
  };
  /** A recorded certificate is renewed once it expires within this many days. */
  certRenewDays: number;
}

/** A configuration value that cannot be used; its message is the one line start-up prints. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Source = Record<string, string | undefined>;

function readYaml(file: string): Source {
  // Loaded only when there is a file to read: most processes are configured by the environment alone.
  const { parse } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`${file}: not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  if (doc == null) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new ConfigError(`${file}: expected a mapping of VARIABLE: value`);
  }
  const out: Source = {};
  for (const [key, value] of Object.entries(doc)) {
    if (!(CONFIG_VARIABLES as string[]).includes(key)) {
      throw new ConfigError(`${file}: unknown setting ${key}`);
    }
    if (value != null) out[key] = String(value);
  }
  return out;
}

function firstIssue(error: z.ZodError, merged: Source): string {
  const issue = error.issues[0];
  const key = String(issue?.path[0] ?? 'configuration');
  const got = merged[key];
  const shown =
    got === undefined
      ? 'nothing'
      : JSON.stringify(
          key.includes('SECRET') || key.includes('PASSWORD') || key.includes('KEY') || key.includes('TOKEN')
            ? '…'
            : got,
        );
  return `${key}: ${issue?.message ?? 'invalid'}, got ${shown}`;
}

/**
 * Parse configuration from the environment and the optional YAML file
 * (`AIQSO_CONFIG`, else `./aiqso.config.yaml`). Empty environment values count
 * as unset, so `FOO= aiqso up` behaves like leaving FOO out.
 */
export function loadConfig(env: Source = process.env, cwd = process.cwd()): Config {
  const file = env.AIQSO_CONFIG ?? path.join(cwd, 'aiqso.config.yaml');
  const fromFile = env.AIQSO_CONFIG || existsSync(file) ? readYaml(path.resolve(cwd, file)) : {};
  const merged: Source = { ...fromFile };
  for (const key of CONFIG_VARIABLES) {
    const value = env[key];
    if (value !== undefined && value !== '') merged[key] = value;
  }
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(firstIssue(parsed.error, merged));
  return toConfig(parsed.data, cwd, env);
}

/** restic's backend credentials, read from the environment only (never from the YAML file). */
const BACKUP_CREDENTIALS = [
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_DEFAULT_REGION',
  'RESTIC_REST_USERNAME',
  'RESTIC_REST_PASSWORD',
  'B2_ACCOUNT_ID',
  'B2_ACCOUNT_KEY',
  'AZURE_ACCOUNT_NAME',
  'AZURE_ACCOUNT_KEY',
] as const;

/** The ports the platform itself listens on: nothing else it starts (its database, a container) takes one. */
export function platformPorts(config: Pick<Config, 'http' | 'https'>): number[] {
  return [config.http.port, ...(config.https ? [config.https.port] : [])];
}

/** `daily=30,weekly=12,monthly=12` (the schema checked the shape); an unnamed period keeps 0. */
export function parseKeep(value: string): { daily: number; weekly: number; monthly: number } {
  const keep = { daily: 0, weekly: 0, monthly: 0 };
  for (const part of value.split(',')) {
    const [k, n] = part.split('=') as ['daily' | 'weekly' | 'monthly', string];
    keep[k] = Number(n);
  }
  return keep;
}

function requireTogether(raw: RawConfig, keys: (keyof RawConfig)[]): boolean {
  const set = keys.filter((k) => raw[k] !== undefined);
  if (set.length > 0 && set.length < keys.length) {
    const missing = keys.find((k) => raw[k] === undefined);
    throw new ConfigError(`${String(missing)}: required when ${set.join(', ')} is set, got nothing`);
  }
  return set.length === keys.length;
}

function toConfig(raw: RawConfig, cwd: string, env: Source): Config {
  const hasHttps = requireTogether(raw, ['AIQSO_HTTPS_PORT', 'AIQSO_TLS_CERT', 'AIQSO_TLS_KEY']);
  const hasProxmox = requireTogether(raw, ['PROXMOX_URL', 'PROXMOX_TOKEN_ID', 'PROXMOX_TOKEN_SECRET']);
  if (raw.AIQSO_DRIVER === 'proxmox' && !hasProxmox) {
    throw new ConfigError('PROXMOX_URL: required when AIQSO_DRIVER=proxmox, got nothing');
  }
  if (raw.AIQSO_BILLING === 'stripe' && !raw.STRIPE_SECRET_KEY) {
    throw new ConfigError('STRIPE_SECRET_KEY: required when AIQSO_BILLING=stripe, got nothing');
  }
  if (raw.STRIPE_SECRET_KEY && !raw.STRIPE_WEBHOOK_SECRET) {
    throw new ConfigError('STRIPE_WEBHOOK_SECRET: required when STRIPE_SECRET_KEY is set, got nothing');
  }
  if (raw.AIQSO_ACME_DNS_HOOK && !raw.AIQSO_ACME_DIRECTORY_URL) {
    throw new ConfigError('AIQSO_ACME_DIRECTORY_URL: required when AIQSO_ACME_DNS_HOOK is set, got nothing');
  }
  const publicUrl = raw.AIQSO_PUBLIC_URL ?? derivePublicUrl(raw, hasHttps);
  return {
    settings: raw,
    dataDir: path.resolve(cwd, raw.AIQSO_DATA_DIR),
    http: { bind: raw.AIQSO_BIND, port: raw.AIQSO_HTTP_PORT },
    https: hasHttps
      ? { port: raw.AIQSO_HTTPS_PORT!, certFile: raw.AIQSO_TLS_CERT!, keyFile: raw.AIQSO_TLS_KEY! }
      : undefined,
    tlsMinVersion: raw.AIQSO_TLS_MIN_VERSION,
    metricsToken: raw.AIQSO_METRICS_TOKEN,
    baseDomain: raw.AIQSO_BASE_DOMAIN,
    publicUrl: publicUrl.replace(/\/+$/, ''),
    databaseUrl: raw.DATABASE_URL,
    redisUrl: raw.REDIS_URL,
    servicesRedisUrl: raw.AIQSO_SERVICES_REDIS_URL,
    driver: raw.AIQSO_DRIVER,
    edge: raw.AIQSO_EDGE,
    stripe: { secretKey: raw.STRIPE_SECRET_KEY, webhookSecret: raw.STRIPE_WEBHOOK_SECRET },
    billing: {
      mode: raw.AIQSO_BILLING ?? (raw.STRIPE_SECRET_KEY ? 'stripe' : 'local'),
      explicit: raw.AIQSO_BILLING !== undefined,
    },
    smtpUrl: raw.SMTP_URL,
    admin: { email: raw.AIQSO_ADMIN_EMAIL, password: raw.AIQSO_ADMIN_PASSWORD },
    masterKey: raw.AIQSO_MASTER_KEY,
    lxc: {
      subnet: raw.AIQSO_LXC_SUBNET,
      bridge: raw.AIQSO_LXC_BRIDGE,
      path: raw.AIQSO_LXC_PATH,
      registriesConf: raw.AIQSO_REGISTRIES_CONF,
    },
    hostCapacity: { reserveMb: raw.AIQSO_HOST_RESERVE_MB, overcommit: raw.AIQSO_HOST_OVERCOMMIT },
    egress: raw.AIQSO_EGRESS,
    proxmox: hasProxmox
      ? {
          url: raw.PROXMOX_URL!,
          tokenId: raw.PROXMOX_TOKEN_ID!,
          tokenSecret: raw.PROXMOX_TOKEN_SECRET!,
          caFile: raw.PROXMOX_CA_FILE,
          fingerprint: raw.PROXMOX_FINGERPRINT,
          storage: raw.PROXMOX_STORAGE,
          backupStorage: raw.PROXMOX_BACKUP_STORAGE,
          templateStorage: raw.PROXMOX_TEMPLATE_STORAGE,
          bridge: raw.PROXMOX_BRIDGE,
          subnet: raw.PROXMOX_SUBNET,
          vmidRange: raw.PROXMOX_VMID_RANGE.split('-').map(Number) as [number, number],
        }
      : undefined,
    listmonkUrl: raw.LISTMONK_URL,
    graceDays: raw.AIQSO_GRACE_DAYS,
    backup: {
      repository: raw.AIQSO_BACKUP_REPOSITORY
        ? /^[a-z0-9]+:/.test(raw.AIQSO_BACKUP_REPOSITORY)
          ? raw.AIQSO_BACKUP_REPOSITORY
          : path.resolve(cwd, raw.AIQSO_BACKUP_REPOSITORY)
        : path.join(path.resolve(cwd, raw.AIQSO_DATA_DIR), 'backups'),
      keep: parseKeep(raw.AIQSO_BACKUP_KEEP),
      verifyReadPercent: raw.AIQSO_BACKUP_VERIFY_READ_PERCENT,
      credentials: Object.fromEntries(
        BACKUP_CREDENTIALS.filter((k) => env[k]).map((k) => [k, String(env[k])]),
      ),
      ssh: {
        ...(raw.AIQSO_BACKUP_SSH_KEY ? { key: path.resolve(cwd, raw.AIQSO_BACKUP_SSH_KEY) } : {}),
        knownHosts: raw.AIQSO_BACKUP_SSH_KNOWN_HOSTS
          ? path.resolve(cwd, raw.AIQSO_BACKUP_SSH_KNOWN_HOSTS)
          : path.join(path.resolve(cwd, raw.AIQSO_DATA_DIR), 'ssh', 'known_hosts'),
      },
      ...(raw.AIQSO_BACKUP_CACERT ? { cacert: path.resolve(cwd, raw.AIQSO_BACKUP_CACERT) } : {}),
    },
    pendingSignupHours: raw.AIQSO_PENDING_SIGNUP_HOURS,
    signupRatePerIp: raw.AIQSO_SIGNUP_RATE_IP,
    serviceGraceHours: raw.AIQSO_SERVICE_GRACE_HOURS,
    usageRetention: {
      hourlyDays: raw.AIQSO_USAGE_HOURLY_DAYS,
      monthlyMonths: raw.AIQSO_USAGE_MONTHLY_MONTHS,
    },
    catalogDir: raw.AIQSO_CATALOG_DIR ? path.resolve(cwd, raw.AIQSO_CATALOG_DIR) : undefined,
    resyncSeconds: raw.AIQSO_RESYNC_SECONDS,
    health: {
      intervalSeconds: raw.AIQSO_HEALTH_INTERVAL_SECONDS,
      timeoutSeconds: raw.AIQSO_HEALTH_TIMEOUT_SECONDS,
      failures: raw.AIQSO_HEALTH_FAILURES,
    },
    webhooks: {
      allowPrivate: raw.AIQSO_WEBHOOKS_ALLOW_PRIVATE === '1',
      allow: raw.AIQSO_WEBHOOKS_ALLOW,
      timeoutSeconds: raw.AIQSO_WEBHOOKS_TIMEOUT_SECONDS,
      backoffSeconds: raw.AIQSO_WEBHOOKS_BACKOFF_SECONDS,
      retryHours: raw.AIQSO_WEBHOOKS_RETRY_HOURS,
      concurrency: raw.AIQSO_WEBHOOKS_CONCURRENCY,
    },
    alertEmail: raw.AIQSO_ALERT_EMAIL,
    timeZone: raw.AIQSO_TIMEZONE,
    orphanGraceSeconds: raw.AIQSO_ORPHAN_GRACE_SECONDS,
    logLevel: raw.AIQSO_LOG_LEVEL,
    workerConcurrency: raw.AIQSO_WORKER_CONCURRENCY,
    edgeTuning: {
      ratePerIp: raw.AIQSO_EDGE_RATE_IP,
      ratePerTenant: raw.AIQSO_EDGE_RATE_TENANT,
      reloadSeconds: raw.AIQSO_EDGE_RELOAD_SECONDS,
      upstreamTimeoutSeconds: raw.AIQSO_EDGE_UPSTREAM_TIMEOUT_SECONDS,
      trustedProxies: raw.AIQSO_EDGE_TRUSTED_PROXIES?.split(',') ?? [],
      certDir: raw.AIQSO_TLS_CERT_DIR,
      platformUpstream: raw.AIQSO_EDGE_PLATFORM_URL ? hostPort(raw.AIQSO_EDGE_PLATFORM_URL) : undefined,
    },
    acme: raw.AIQSO_ACME_DIRECTORY_URL
      ? {
          directoryUrl: raw.AIQSO_ACME_DIRECTORY_URL,
          email: raw.AIQSO_ACME_EMAIL,
          dnsHook: raw.AIQSO_ACME_DNS_HOOK
            ? {
                path: raw.AIQSO_ACME_DNS_HOOK,
                propagationSeconds: raw.AIQSO_ACME_DNS_PROPAGATION_SECONDS,
                env: hookEnvironment(env),
              }
            : undefined,
        }
      : undefined,
    certRenewDays: raw.AIQSO_CERT_RENEW_DAYS,
  };
}

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(u.port || 80) };
}

/**
 * The DNS hook's environment: the operator's (a DNS provider's token, say)
 * without the platform's own settings — the database URL, Stripe and master
 * keys have no business in a DNS script.
 */
function hookEnvironment(env: Source): Source {
  const platform = new Set<string>(CONFIG_VARIABLES);
  return Object.fromEntries(Object.entries(env).filter(([k]) => !platform.has(k) && k !== 'AIQSO_CONFIG'));
}

function derivePublicUrl(raw: RawConfig, https: boolean): string {
  const scheme = https ? 'https' : 'http';
  const port = https ? raw.AIQSO_HTTPS_PORT! : raw.AIQSO_HTTP_PORT;
  const defaultPort = https ? 443 : 80;
  return `${scheme}://${raw.AIQSO_BASE_DOMAIN}${port === defaultPort ? '' : `:${port}`}`;
}
