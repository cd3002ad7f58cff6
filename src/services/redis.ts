import { createHash, createHmac } from 'node:crypto';
import type { Redis } from 'ioredis';
import { serviceDatabaseName } from './databases.ts';

/**
 * Each tenant service whose template says `database.redis` gets a Redis ACL
 * user of its own on the Redis the platform manages for services
 * (AIQSO_SERVICES_REDIS_URL, reached with an admin user). The user may touch
 * only keys and Pub/Sub channels below its own prefix (`<user>:`), may run no
 * administrative or dangerous command (ACL, CONFIG, FLUSHALL, KEYS, INFO,
 * MONITOR…) and none that lists what others have (SCAN, RANDOMKEY, PUBSUB,
 * DBSIZE, key-tracking broadcasts, functions shared by all). Its password is
 * derived from the tenant service's sealed random root secret, so it is
 * stable across redeploys and never stored in clear; Redis only ever gets its
 * SHA-256. Names are deterministic and carry the platform's tag, so orphan
 * detection lists only this platform's users on a Redis shared with others.
 */

/**
 * The part of every user name that says which platform made it: `aiqso-`
 * and 8 hex digits of the base domain and the platform database's name (two
 * platforms sharing one Redis never serve the same base domain from the same
 * database).
 */
export function servicesRedisNamespace(baseDomain: string, platformDatabase: string): string {
  const tag = createHash('sha256').update(`${baseDomain}\n${platformDatabase}`).digest('hex').slice(0, 8);
  return `aiqso-${tag}`;
}

/** The Redis user of a tenant service: `<namespace>-s_<tenant ulid>_<service key>`, as its database is named. */
export function serviceRedisUser(namespace: string, tenantId: string, serviceKey: string): string {
  return `${namespace}-${serviceDatabaseName(tenantId, serviceKey)}`;
}

/** The service's keys and channels begin with this. */
export const serviceRedisPrefix = (user: string): string => `${user}:`;

/** The user's password: a keyed hash of the service's root secret (its own name, never a template's `${secret:…}`). */
export function serviceRedisPassword(root: string): string {
  return createHmac('sha256', root).update('redis-user').digest('base64url');
}

const USER = /^aiqso-[0-9a-f]{8}-s_[a-z0-9_]{1,80}$/;

/**
 * Commands a service user may not run, beyond `@admin` and `@dangerous`:
 * those that name or count other services' keys and channels (key patterns do
 * not apply to them), and those that act on what every user shares.
 */
export const DENIED_COMMANDS = [
  'scan',
  'randomkey',
  'dbsize',
  'pubsub',
  'client|tracking',
  'function',
  'script|flush',
  'script|kill',
] as const;

/** The ACL rules of a service user, from a clean slate (`reset`): one atomic ACL SETUSER. */
export function serviceAclRules(user: string, password: string): string[] {
  if (!USER.test(user)) throw new Error(`unsafe Redis user name ${JSON.stringify(user)}`);
  const prefix = serviceRedisPrefix(user);
  return [
    'reset',
    'on',
    `#${sha256(password)}`,
    `~${prefix}*`,
    'resetchannels',
    `&${prefix}*`,
    '+@all',
    '-@admin',
    '-@dangerous',
    ...DENIED_COMMANDS.map((c) => `-${c}`),
  ];
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The URL a service connects with: the services Redis as containers reach it, as its own user. */
export function serviceRedisUrl(
  base: { tls: boolean; host: string; port: number; db: number },
  user: string,
  password: string,
): string {
  const host = base.host.includes(':') ? `[${base.host}]` : base.host;
  const db = base.db ? `/${base.db}` : '';
  return `${base.tls ? 'rediss' : 'redis'}://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${base.port}${db}`;
}

/** Keep what ACL SETUSER/DELUSER changed across a Redis restart where Redis keeps users in an ACL file. */
async function saveAcl(admin: Redis): Promise<void> {
  await admin.call('ACL', 'SAVE').catch((err: Error) => {
    // Users then live until Redis restarts; the resync creates them again (docs/services.md).
    if (!/not configured to use an ACL file/i.test(err.message)) throw err;
  });
}

/** Create (or repair) the user with exactly its rules; repeating it changes nothing. */
export async function ensureServiceRedisUser(admin: Redis, user: string, password: string): Promise<void> {
  await admin.call('ACL', 'SETUSER', user, ...serviceAclRules(user, password));
  await saveAcl(admin);
}

/** Parse ACL GETUSER's flat reply (field, value, field, value…). */
function fields(reply: unknown[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = reply[i + 1];
  return out;
}

/**
 * Commands ACL DRYRUN asks about to tell a user's rules from its reply: Redis
 * rewrites the rules it was given (`-@admin` folds into `-@dangerous`, …), so
 * what they allow is asked, not their text compared.
 */
const PROBES: { argv: (prefix: string) => string[]; allowed: boolean }[] = [
  { argv: (p) => ['SET', `${p}probe`, '1'], allowed: true },
  { argv: (p) => ['EVAL', 'return 1', '1', `${p}probe`], allowed: true },
  { argv: () => ['GET', 'probe'], allowed: false },
  { argv: () => ['FLUSHALL'], allowed: false },
  { argv: () => ['CONFIG', 'GET', 'maxmemory'], allowed: false },
  { argv: () => ['ACL', 'LIST'], allowed: false },
  { argv: () => ['KEYS', '*'], allowed: false },
  { argv: () => ['SCAN', '0'], allowed: false },
  { argv: () => ['PUBSUB', 'CHANNELS'], allowed: false },
  { argv: () => ['FUNCTION', 'FLUSH'], allowed: false },
  { argv: () => ['CLIENT', 'TRACKING', 'ON', 'BCAST'], allowed: false },
];

/** Whether the user exists with its rules: `missing`, `drifted` (another password, prefix or command set) or `ok`. */
export async function serviceRedisUserState(
  admin: Redis,
  user: string,
  password: string,
): Promise<'ok' | 'missing' | 'drifted'> {
  const reply = (await admin.call('ACL', 'GETUSER', user)) as unknown[] | null;
  if (!reply) return 'missing';
  const f = fields(reply);
  const prefix = serviceRedisPrefix(user);
  const same =
    (f.flags as string[]).includes('on') &&
    JSON.stringify(f.passwords) === JSON.stringify([sha256(password)]) &&
    f.keys === `~${prefix}*` &&
    f.channels === `&${prefix}*` &&
    String(f.commands).startsWith('+@all ') &&
    Array.isArray(f.selectors) &&
    f.selectors.length === 0;
  if (!same) return 'drifted';
  const pipeline = admin.pipeline();
  for (const probe of PROBES) pipeline.call('ACL', 'DRYRUN', user, ...probe.argv(prefix));
  const answers = (await pipeline.exec()) ?? [];
  const asExpected = PROBES.every((probe, i) => {
    const [err, answer] = answers[i] ?? [new Error('no answer')];
    return !err && (answer === 'OK') === probe.allowed;
  });
  return asExpected ? 'ok' : 'drifted';
}

/**
 * Remove the service's keys (in every database of the server), then its user,
 * which also closes the connections it has open. Missing ones are fine; safe
 * to repeat after a crash at any point.
 */
export async function dropServiceRedisUser(admin: Redis, user: string): Promise<void> {
  if (!USER.test(user)) throw new Error(`unsafe Redis user name ${JSON.stringify(user)}`);
  const match = `${serviceRedisPrefix(user)}*`;
  // Only databases that hold keys are scanned (INFO keyspace lists them).
  const keyspace = String(await admin.call('INFO', 'keyspace'));
  const dbs = [...keyspace.matchAll(/^db(\d+):/gm)].map((m) => Number(m[1]));
  if (dbs.length > 0) {
    const conn = admin.duplicate();
    try {
      for (const db of dbs) {
        await conn.select(db);
        let cursor = '0';
        do {
          const [next, keys] = await conn.scan(cursor, 'MATCH', match, 'COUNT', 1000);
          if (keys.length > 0) await conn.unlink(...keys);
          cursor = next;
        } while (cursor !== '0');
      }
    } finally {
      conn.disconnect();
    }
  }
  await admin.call('ACL', 'DELUSER', user);
  await saveAcl(admin);
}

/** This platform's service users (named with its namespace), for orphan detection. */
export async function listServiceRedisUsers(admin: Redis, namespace: string): Promise<string[]> {
  const users = (await admin.call('ACL', 'USERS')) as string[];
  return users.filter((u) => u.startsWith(`${namespace}-`) && USER.test(u)).sort();
}

/**
 * The Redis for services, as the platform uses it: an admin connection made
 * on first use (ioredis loads only then), where containers reach it, and the
 * platform's namespace of user names.
 */
export interface ServicesRedis {
  namespace: string;
  /** Where containers reach the server (the host gateway forwards a loopback one). */
  reach: { tls: boolean; host: string; port: number; db: number };
  /** The port containers open on the host to reach it, when they reach it there (not on another machine). */
  hostPort?: number;
  admin(): Promise<Redis>;
  close(): Promise<void>;
}

/** The database index of a redis:// URL (its path), 0 when it names none. */
export function redisDb(url: URL): number {
  const db = Number(url.pathname.replace(/^\//, '') || 0);
  return Number.isInteger(db) && db >= 0 ? db : 0;
}

export function servicesRedis(options: {
  url: string;
  namespace: string;
  reach: { host: string; port: number };
  /** The address containers reach this host at (compute.hostAddress()). */
  hostAddress: string;
}): ServicesRedis {
  const url = new URL(options.url);
  let client: Promise<Redis> | undefined;
  return {
    namespace: options.namespace,
    reach: { ...options.reach, tls: url.protocol === 'rediss:', db: redisDb(url) },
    ...(options.reach.host === options.hostAddress ? { hostPort: options.reach.port } : {}),
    admin() {
      client ??= import('ioredis').then(({ Redis }) => {
        const redis = new Redis(options.url, {
          maxRetriesPerRequest: 1,
          connectionName: 'aiqso-services-admin',
          ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
        });
        // Failures reach the step that sent a command; reconnects are ioredis's.
        redis.on('error', () => undefined);
        return redis;
      });
      return client;
    },
    async close() {
      const c = client;
      client = undefined;
      if (c) (await c).disconnect();
    },
  };
}

/** What a tenant service's container gets: its URL and prefix (and the host port it opens to reach Redis). */
export function serviceRedisAccess(
  redis: ServicesRedis,
  tenantId: string,
  serviceKey: string,
  root: string,
): { user: string; password: string; url: string; prefix: string; hostPort?: number } {
  const user = serviceRedisUser(redis.namespace, tenantId, serviceKey);
  const password = serviceRedisPassword(root);
  return {
    user,
    password,
    url: serviceRedisUrl(redis.reach, user, password),
    prefix: serviceRedisPrefix(user),
    ...(redis.hostPort !== undefined ? { hostPort: redis.hostPort } : {}),
  };
}
