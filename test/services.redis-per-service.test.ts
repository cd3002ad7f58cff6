import { createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CATALOG_DIR, loadCatalog } from '../src/catalog/load.ts';
import { serviceTemplateSchema } from '../src/catalog/schema.ts';
import { syncCatalog } from '../src/catalog/sync.ts';
import { checkServicesRedis } from '../src/cli/commands/doctor.ts';
import { loadConfig } from '../src/config/load.ts';
import { redisOrphans } from '../src/lifecycle/orphan-sources.ts';
import {
  dropServiceRedisUser,
  ensureServiceRedisUser,
  listServiceRedisUsers,
  serviceRedisPassword,
  serviceRedisPrefix,
  serviceRedisUrl,
  serviceRedisUser,
  serviceRedisUserState,
  servicesRedis,
  servicesRedisNamespace,
} from '../src/services/redis.ts';
import { countRows, createTestDatabase } from './support/db.ts';
import { createHarness, type Harness } from './support/identity.ts';
import { driverCases, pollUntil, startLivePlatform } from './support/live-platform.ts';
import { missingPart } from './support/strict.ts';

/**
 * A Redis ACL user per tenant service (`database.redis`), on the machine's
 * real Redis: each service reads and writes only below its own key prefix,
 * subscribes and publishes only on its own channels, runs no administrative
 * command and lists nothing of the others; its user and keys are gone once
 * removed. And a platform without AIQSO_SERVICES_REDIS_URL neither offers nor
 * accepts a service that needs Redis.
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function redisAnswers(): Promise<boolean> {
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

/** A connection, or the error Redis answered (WRONGPASS…) rather than ioredis's "Connection is closed". */
const connect = async (url: string): Promise<Redis> => {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let last: Error | undefined;
  r.on('error', (err: Error) => (last = err));
  try {
    await r.connect();
  } catch (err) {
    r.disconnect();
    throw last ?? err;
  }
  return r;
};

/** The reply error a command got, or 'ok'. */
const refusal = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => 'ok',
    (err: Error) => err.message,
  );

const NOPERM = /^NOPERM /;

let skip = false;
let admin: Redis;
// A namespace of this run's own, so nothing here touches another platform's (or test's) users.
const namespace = servicesRedisNamespace('redis-test.example', `aiqso_t_${randomBytes(6).toString('hex')}`);
const A = serviceRedisUser(namespace, 'ten_01jdaaaaaaaaaaaaaaaaaaaaaa', 'paperless-ngx');
const B = serviceRedisUser(namespace, 'ten_01jdbbbbbbbbbbbbbbbbbbbbbb', 'paperless-ngx');
const passA = serviceRedisPassword('root-secret-of-a');
const passB = serviceRedisPassword('root-secret-of-b');
let base: { tls: boolean; host: string; port: number; db: number };
const opened: Redis[] = [];
const as = async (user: string, password: string) => {
  const r = await connect(serviceRedisUrl(base, user, password));
  opened.push(r);
  return r;
};

beforeAll(async () => {
  skip = missingPart('Redis', await redisAnswers(), 'apt-get install redis-server, or set TEST_REDIS_URL');
  if (skip) return;
  admin = await connect(REDIS_URL);
  const url = new URL(REDIS_URL);
  base = { tls: false, host: url.hostname, port: Number(url.port || 6379), db: 0 };
});

afterAll(async () => {
  if (skip) return;
  for (const r of opened) r.disconnect();
  for (const user of await listServiceRedisUsers(admin, namespace)) await dropServiceRedisUser(admin, user);
  // Keys a failed test left for a user it never made.
  for (const key of await admin.keys(`${namespace}-*`)) await admin.del(key);
  admin.disconnect();
});

describe('a Redis user per tenant service', () => {
  it('derives deterministic names, a prefix and a password from the sealed root secret', () => {
    expect(namespace).toMatch(/^aiqso-[0-9a-f]{8}$/);
    expect(servicesRedisNamespace('aiqso.io', 'aiqso')).toBe(servicesRedisNamespace('aiqso.io', 'aiqso'));
    expect(servicesRedisNamespace('aiqso.io', 'aiqso')).not.toBe(servicesRedisNamespace('other.io', 'aiqso'));
    expect(A).toBe(`${namespace}-s_01jdaaaaaaaaaaaaaaaaaaaaaa_paperless_ngx`);
    expect(serviceRedisPrefix(A)).toBe(`${A}:`);
    expect(serviceRedisPassword('root-secret-of-a')).toBe(passA);
    expect(passA).not.toBe(passB);
    expect(passA).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(serviceRedisUrl({ tls: true, host: '10.10.0.1', port: 6380, db: 2 }, A, 'p/w')).toBe(
      `rediss://${A}:p%2Fw@10.10.0.1:6380/2`,
    );
  });

  it('creates each user with its rules, repeating it changes nothing, and drift is seen and repaired', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    for (const [user, password] of [
      [A, passA],
      [B, passB],
    ] as const) {
      expect(await serviceRedisUserState(admin, user, password)).toBe('missing');
      await ensureServiceRedisUser(admin, user, password);
      await ensureServiceRedisUser(admin, user, password);
      expect(await serviceRedisUserState(admin, user, password)).toBe('ok');
    }
    // Redis keeps only the password's SHA-256, never the password.
    const rules = (await admin.call('ACL', 'LIST')) as string[];
    const line = rules.find((l) => l.startsWith(`user ${A} `))!;
    expect(line).toContain(` ~${A}:* resetchannels &${A}:* +@all -@dangerous `);
    expect(line).toContain(` #${createHash('sha256').update(passA).digest('hex')} `);
    expect(line).not.toContain(passA);
    // Someone widened it, or its password changed: drifted, and ensure puts it back.
    await admin.call('ACL', 'SETUSER', A, '~*');
    expect(await serviceRedisUserState(admin, A, passA)).toBe('drifted');
    await admin.call('ACL', 'SETUSER', A, '+@admin');
    await ensureServiceRedisUser(admin, A, passA);
    expect(await serviceRedisUserState(admin, A, passA)).toBe('ok');
    expect(await serviceRedisUserState(admin, A, 'another-password')).toBe('drifted');
  });

  it("reads and writes its own prefix and nothing of another service's", async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    const a = await as(A, passA);
    await a.set(`${A}:celery`, 'task-1');
    expect(await a.get(`${A}:celery`)).toBe('task-1');
    await a.lpush(`${A}:queue`, 'job');
    expect(await a.lrange(`${A}:queue`, 0, -1)).toEqual(['job']);
    await admin.set(`${B}:secret`, 'of-b');
    await admin.set('platform:secret', 'of-the-platform');
    for (const key of [`${B}:secret`, 'platform:secret', `${A}`, `x${A}:k`]) {
      expect(await refusal(a.get(key)), key).toMatch(NOPERM);
      expect(await refusal(a.set(key, 'overwritten')), key).toMatch(NOPERM);
      expect(await refusal(a.del(key)), key).toMatch(NOPERM);
    }
    // A copy or rename into another's prefix, or a script touching its keys, is refused too.
    expect(await refusal(a.rename(`${A}:celery`, `${B}:secret`))).toMatch(NOPERM);
    expect(await refusal(a.copy(`${B}:secret`, `${A}:stolen`))).toMatch(NOPERM);
    expect(await refusal(a.eval("return redis.call('get', KEYS[1])", 1, `${B}:secret`))).toMatch(NOPERM);
    expect(await refusal(a.eval(`return redis.call('get', '${B}:secret')`, 0))).toMatch(
      /can't access at least one of the keys/,
    );
    expect(await refusal(a.sort(`${A}:queue`, 'BY', `${B}:*`))).not.toBe('ok');
    expect(await admin.get(`${B}:secret`)).toBe('of-b');
    expect(await admin.get('platform:secret')).toBe('of-the-platform');
    await admin.del('platform:secret');
  });

  it('runs no administrative command and lists nothing of the others', async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    const a = await as(A, passA);
    // Commands that would harm everyone on this shared Redis: first asked of ACL DRYRUN (which runs
    // nothing), and sent for real only once Redis has said it refuses them.
    const harmful: string[][] = [
      ['FLUSHALL'],
      ['FLUSHDB'],
      ['SWAPDB', '0', '1'],
      ['CONFIG', 'SET', 'maxmemory', '1'],
      ['ACL', 'SETUSER', A, '~*'],
      ['ACL', 'DELUSER', B],
      ['CLIENT', 'KILL', 'USER', B],
      ['FUNCTION', 'FLUSH'],
      ['SCRIPT', 'FLUSH'],
      ['SCRIPT', 'KILL'],
      ['DEBUG', 'SLEEP', '0'],
      ['SAVE'],
      ['SHUTDOWN', 'NOSAVE'],
      ['REPLICAOF', '127.0.0.1', '1'],
      ['MONITOR'],
      ['MIGRATE', '127.0.0.1', '1', `${A}:k`, '0', '1'],
    ];
    for (const argv of harmful) {
      const dry = String(await admin.call('ACL', 'DRYRUN', A, ...argv));
      expect(dry, argv.join(' ')).toMatch(/no permissions/);
      // (MONITOR would turn the connection into a feed, DEBUG is also off by configuration.)
      if (!['MONITOR', 'SHUTDOWN', 'DEBUG'].includes(argv[0]!))
        expect(await refusal(a.call(argv[0]!, ...argv.slice(1))), argv.join(' ')).toMatch(NOPERM);
    }
    const listing: [string, Promise<unknown>][] = [
      ['ACL LIST', a.call('ACL', 'LIST')],
      ['ACL GETUSER', a.call('ACL', 'GETUSER', B)],
      ['CONFIG GET', a.config('GET', 'requirepass')],
      ['KEYS *', a.keys('*')],
      [`KEYS ${B}:*`, a.keys(`${B}:*`)],
      ['SCAN', a.scan(0, 'MATCH', '*')],
      ['RANDOMKEY', a.randomkey()],
      ['DBSIZE', a.dbsize()],
      ['INFO', a.info()],
      ['CLIENT LIST', a.client('LIST')],
      ['CLIENT TRACKING BCAST', a.call('CLIENT', 'TRACKING', 'ON', 'BCAST', 'PREFIX', `${B}:`)],
      ['PUBSUB CHANNELS', a.call('PUBSUB', 'CHANNELS', '*')],
      ['SLOWLOG GET', a.call('SLOWLOG', 'GET')],
      ['MODULE LIST', a.call('MODULE', 'LIST')],
    ];
    for (const [name, p] of listing) expect(await refusal(p), name).toMatch(NOPERM);
    // What a client library needs still works.
    expect(await a.ping()).toBe('PONG');
    expect(await a.call('CLIENT', 'SETNAME', 'paperless')).toBe('OK');
    expect(await a.call('ACL', 'WHOAMI')).toBe(A);
    expect(await a.eval("return redis.call('incr', KEYS[1])", 1, `${A}:counter`)).toBe(1);
  });

  it('subscribes and publishes on its own channels only', async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    const sub = await as(A, passA);
    const got: string[] = [];
    sub.on('message', (channel: string, message: string) => got.push(`${channel} ${message}`));
    await sub.subscribe(`${A}:events`);
    expect(await admin.publish(`${A}:events`, 'hello')).toBe(1);
    for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(got).toEqual([`${A}:events hello`]);
    expect(await refusal(sub.subscribe(`${B}:events`))).toMatch(NOPERM);
    expect(await refusal(sub.psubscribe('*'))).toMatch(NOPERM);
    expect(await refusal(sub.psubscribe(`${B}:*`))).toMatch(NOPERM);
    const pub = await as(A, passA);
    expect(await refusal(pub.publish(`${B}:events`, 'spoofed'))).toMatch(NOPERM);
    expect(await refusal(pub.publish('__keyspace@0__:x', 'spoofed'))).toMatch(NOPERM);
    expect(await pub.publish(`${A}:events`, 'own')).toBe(1);
  });

  it("refuses a wrong password and another service's password", async ({ skip: skipTest }) => {
    if (skip) return skipTest();
    expect(await refusal(connect(serviceRedisUrl(base, A, 'wrong')))).toMatch(/WRONGPASS/);
    expect(await refusal(connect(serviceRedisUrl(base, A, passB)))).toMatch(/WRONGPASS/);
  });

  it('aiqso doctor checks the Redis for services: reachable, Redis 7, a user that may manage users', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const check = (env: Record<string, string>) =>
      checkServicesRedis(loadConfig({ AIQSO_DATA_DIR: os.tmpdir(), ...env }));
    expect(await check({})).toMatchObject({ part: 'services redis', status: 'not used' });
    expect(await check({ AIQSO_SERVICES_REDIS_URL: REDIS_URL })).toMatchObject({
      status: 'ok',
      detail: expect.stringMatching(
        /^reachable, Redis 7\.\S+, user default manages service users$/,
      ) as unknown,
    });
    // A service's own user is no admin: refused, with why and the fix.
    await ensureServiceRedisUser(admin, A, passA);
    expect(await check({ AIQSO_SERVICES_REDIS_URL: serviceRedisUrl(base, A, passA) })).toMatchObject({
      status: 'failed',
      detail: expect.stringMatching(
        new RegExp(`^user ${A} is not an admin: NOPERM .*'acl\\|dryrun'`),
      ) as unknown,
      fix: expect.stringContaining('AIQSO_SERVICES_REDIS_URL') as unknown,
    });
    expect(
      await check({ AIQSO_SERVICES_REDIS_URL: serviceRedisUrl(base, A, 'wrong-password') }),
    ).toMatchObject({ status: 'failed', detail: expect.stringMatching(/WRONGPASS/) as unknown });
  });

  it("lists only this platform's users, and an orphan's removal takes its keys and connections", async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const other = serviceRedisUser(
      servicesRedisNamespace('other-platform.example', 'aiqso'),
      'ten_01jdcccccccccccccccccccccc',
      'paperless-ngx',
    );
    await ensureServiceRedisUser(admin, other, 'pw-of-another-platform');
    try {
      expect(await listServiceRedisUsers(admin, namespace)).toEqual([A, B].sort());
      const source = redisOrphans(
        servicesRedis({
          url: REDIS_URL,
          namespace,
          reach: { host: base.host, port: base.port },
          hostAddress: base.host,
        }),
      );
      expect(await source.list()).toEqual([A, B].sort());
      // B's keys in two databases, and B connected.
      const b = await as(B, passB);
      await b.set(`${B}:own`, '1');
      await b.select(3);
      await b.set(`${B}:in-db-3`, '1');
      await admin.set(`${B}x:not-b`, 'kept'); // A look-alike outside B's prefix stays.
      await source.remove(B);
      await source.remove(B); // again: nothing there, nothing fails
      expect(await admin.call('ACL', 'GETUSER', B)).toBeNull();
      expect(await admin.exists(`${B}:own`, `${B}:secret`)).toBe(0);
      const db3 = await connect(REDIS_URL);
      await db3.select(3);
      expect(await db3.exists(`${B}:in-db-3`)).toBe(0);
      db3.disconnect();
      expect(await admin.get(`${B}x:not-b`)).toBe('kept');
      await admin.del(`${B}x:not-b`);
      // Its open connection was closed with it, and it cannot sign in again.
      expect(await refusal(b.get(`${B}:own`))).not.toBe('ok');
      expect(await refusal(connect(serviceRedisUrl(base, B, passB)))).toMatch(/WRONGPASS/);
      // The other platform's user is untouched; A is still there.
      expect(await serviceRedisUserState(admin, other, 'pw-of-another-platform')).toBe('ok');
      expect(await source.list()).toEqual([A]);
    } finally {
      await dropServiceRedisUser(admin, other);
    }
  });
});

/** An app service that needs Redis, to show what the platform offers with and without a Redis for services. */
const QUEUE = serviceTemplateSchema.parse({
  key: 'queue',
  name: 'Queue',
  kind: 'app',
  app: { dir: 'apps/drafts', entry: 'server.mjs' },
  resources: { memory_mb: 128, cores: 1, disk_gb: 1 },
  port: 3000,
  health: { path: '/healthz' },
  route: { path: '/queue' },
  database: { postgres: true, redis: true },
  env: { DATABASE_URL: '${db.url}', REDIS_URL: '${redis.url}', REDIS_PREFIX: '${redis.prefix}' },
});

describe('a service that needs Redis, offered only where the platform has a Redis for services', () => {
  const harnesses: Harness[] = [];
  afterAll(async () => {
    for (const h of harnesses) await h.close();
  });
  const start = async (env: Record<string, string>) => {
    const h = await createHarness({ env });
    harnesses.push(h);
    await syncCatalog(h.db.db, [...loadCatalog(), QUEUE]);
    return h;
  };
  const offered = async (h: Harness) =>
    (await h.api.inject({ method: 'GET', url: '/api/v1/catalog' }))
      .json<{ services: { key: string }[] }>()
      .services.map((s) => s.key);

  it('without AIQSO_SERVICES_REDIS_URL: not in the catalog, and subscribing is refused with the reason, nothing written', async () => {
    const h = await start({});
    expect(await offered(h)).not.toContain('queue');
    expect(await offered(h)).toContain('notes');
    const res = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/services`,
      headers: h.bearer(h.a.owner.token),
      payload: { service: 'queue' },
    });
    expect(res.statusCode).toBe(409);
    expect(res.json<{ error: { message: string } }>().error.message).toBe(
      'queue needs a Redis user of its own, and this platform has no Redis for services (AIQSO_SERVICES_REDIS_URL is not set)',
    );
    expect(await countRows(h.db, 'SELECT 1 FROM tenant_services')).toBe(0);
    expect(await countRows(h.db, "SELECT 1 FROM resources WHERE kind = 'tenant_service'")).toBe(0);
  }, 120_000);

  it('with it: offered, and a subscription is accepted', async () => {
    const h = await start({ AIQSO_SERVICES_REDIS_URL: REDIS_URL });
    expect(await offered(h)).toContain('queue');
    const res = await h.api.inject({
      method: 'POST',
      url: `/api/v1/tenants/${h.a.slug}/services`,
      headers: h.bearer(h.a.owner.token),
      payload: { service: 'queue' },
    });
    expect(res.statusCode, res.body).toBe(202);
  }, 120_000);
});

const QUEUE_YAML = `key: queue
name: Queue
description: Drafts with a Redis user of its own.
kind: app
app: { dir: apps/drafts, entry: server.mjs }
resources: { memory_mb: 128, cores: 1, disk_gb: 1 }
port: 3000
health: { path: /healthz, status: 200, timeout_seconds: 60 }
route: { path: /queue, strip_prefix: true }
database: { postgres: true, redis: true }
env:
  APP_TITLE: Queue
  DATABASE_URL: \${db.url}
  REDIS_URL: \${redis.url}
  REDIS_PREFIX: \${redis.prefix}
`;

describe('on aiqso up: subscribe → its Redis user → unsubscribe → gone', { timeout: 600_000 }, () => {
  it('creates the user the container is given, repairs it, removes orphans, and removes it after the grace period', async ({
    skip: skipTest,
  }) => {
    if (skip) return skipTest();
    const testDb = await createTestDatabase();
    const catalogDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-catalog-'));
    await copyFile(path.join(CATALOG_DIR, 'notes.yaml'), path.join(catalogDir, 'notes.yaml'));
    await writeFile(path.join(catalogDir, 'queue.yaml'), QUEUE_YAML);
    const driver = driverCases().find((d) => d.name === 'process')!;
    const platform = await startLivePlatform({
      databaseUrl: testDb.url,
      driver,
      env: {
        AIQSO_CATALOG_DIR: catalogDir,
        AIQSO_SERVICES_REDIS_URL: REDIS_URL,
        // 3.6 s of grace, a resync every second, orphans removed after 2 s.
        AIQSO_SERVICE_GRACE_HOURS: '0.001',
        AIQSO_RESYNC_SECONDS: '1',
        AIQSO_ORPHAN_GRACE_SECONDS: '2',
      },
    });
    const base = `http://127.0.0.1:${platform.port}`;
    const ns = servicesRedisNamespace('localhost', testDb.name);
    const stray = serviceRedisUser(ns, 'ten_01jdzzzzzzzzzzzzzzzzzzzzzz', 'queue');
    try {
      const signup = await platform.signup({ company: 'Acme', slug: 'acme', email: 'o@acme.test' });
      expect(signup.status).toBe(201);
      await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
      expect((await platform.until('acme', (p) => p.status === 200, 180_000)).status).toBe(200);
      const login = await fetch(`${base}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'o@acme.test', password: 'correct horse battery staple' }),
      });
      const auth = {
        authorization: `Bearer ${((await login.json()) as { accessToken: string }).accessToken}`,
      };
      const offered = (await (await fetch(`${base}/api/v1/catalog`)).json()) as {
        services: { key: string }[];
      };
      expect(offered.services.map((s) => s.key)).toEqual(['notes', 'queue']);
      const subscribed = await fetch(`${base}/api/v1/tenants/acme/services`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ service: 'queue' }),
      });
      expect(subscribed.status).toBe(202);
      const row = await pollUntil(
        () =>
          testDb.db
            .selectFrom('tenant_services')
            .select(['status', 'status_reason', 'tenant_id', 'container_name'])
            .executeTakeFirstOrThrow(),
        (r) => r.status === 'active' || r.status === 'failed',
        180_000,
      );
      expect(row.status, row.status_reason ?? '').toBe('active');
      const user = serviceRedisUser(ns, row.tenant_id, 'queue');
      const steps = (
        (await (await fetch(`${base}/api/v1/tenants/acme/services`, { headers: auth })).json()) as {
          services: { steps: { name: string; state: string }[] }[];
        }
      ).services[0]!.steps;
      expect(steps).toContainEqual(expect.objectContaining({ name: 'redis user', state: 'done' }));

      // The container was given its own user's URL and prefix; with them it reaches its keys only.
      const env = JSON.parse(
        await readFile(path.join(platform.dataDir, 'containers', row.container_name!, 'env.json'), 'utf8'),
      ) as Record<string, string>;
      expect(env.REDIS_PREFIX).toBe(`${user}:`);
      expect(env.REDIS_URL).toMatch(new RegExp(`^redis://${user}:[A-Za-z0-9_-]{43}@127\\.0\\.0\\.1:\\d+$`));
      const service = await connect(env.REDIS_URL!);
      opened.push(service);
      await service.set(`${user}:k`, 'v');
      expect(await service.get(`${user}:k`)).toBe('v');
      await admin.set(`${stray}:other`, 'x');
      expect(await refusal(service.get(`${stray}:other`))).toMatch(NOPERM);
      expect(await refusal(service.keys('*'))).toMatch(NOPERM);

      // A user this platform made that no subscription owns is reported, then removed with its keys.
      await ensureServiceRedisUser(admin, stray, 'stray-password');
      const orphanRows = () =>
        testDb.db.selectFrom('orphans').select(['source', 'name']).where('source', '=', 'redis').execute();
      expect(await pollUntil(orphanRows, (r) => r.length === 1, 60_000, 100)).toEqual([
        { source: 'redis', name: stray },
      ]);
      await pollUntil(
        () => admin.call('ACL', 'GETUSER', stray),
        (u) => u === null,
        60_000,
      );
      expect(await admin.exists(`${stray}:other`)).toBe(0);
      expect(await orphanRows()).toEqual([]);

      // Users gone from Redis (a restart without an ACL file) are made again by the resync.
      await admin.call('ACL', 'DELUSER', user);
      await pollUntil(
        () => admin.call('ACL', 'GETUSER', user),
        (u) => u !== null,
        60_000,
      );
      const again = await connect(env.REDIS_URL!);
      opened.push(again);
      expect(await again.get(`${user}:k`)).toBe('v');

      // Unsubscribed: after the grace period its user and its keys are gone.
      const unsubscribed = await fetch(`${base}/api/v1/tenants/acme/services/queue`, {
        method: 'DELETE',
        headers: auth,
      });
      expect(unsubscribed.status).toBe(202);
      await pollUntil(
        () => testDb.db.selectFrom('tenant_services').select('status').executeTakeFirstOrThrow(),
        (r) => r.status === 'removed',
        120_000,
      );
      expect(await admin.call('ACL', 'GETUSER', user)).toBeNull();
      expect(await admin.exists(`${user}:k`)).toBe(0);
      expect(await refusal(connect(env.REDIS_URL!))).toMatch(/WRONGPASS/);
    } finally {
      await dropServiceRedisUser(admin, stray).catch(() => undefined);
      await platform.stop(testDb.db);
      await testDb.drop();
    }
  });
});

/** Run in the container with its own environment: connect to ${redis.url}, write below its prefix, read a platform key. */
const INSIDE = `
const net = require('node:net');
const u = new URL(process.env.REDIS_URL);
const cmds = [
  ['AUTH', decodeURIComponent(u.username), decodeURIComponent(u.password)],
  ['SET', process.env.REDIS_PREFIX + 'from-inside', 'yes'],
  ['GET', 'platform:secret'],
];
const enc = (a) => '*' + a.length + '\\r\\n' + a.map((x) => '$' + Buffer.byteLength(x) + '\\r\\n' + x + '\\r\\n').join('');
const s = net.connect(Number(u.port), u.hostname, () => s.write(cmds.map(enc).join('')));
let out = '';
s.on('data', (d) => {
  out += d;
  if (out.split('\\r\\n').length > 3) process.stdout.write(out, () => process.exit(0));
});
s.on('error', (e) => { console.log('ERR ' + e.message); process.exit(1); });
setTimeout(() => { console.log('TIMEOUT ' + JSON.stringify(out)); process.exit(2); }, 10000);
`;

describe(
  'on aiqso up with the lxc driver: a container reaches its Redis user through the walls',
  { timeout: 600_000 },
  () => {
    const lxc = driverCases().find((d) => d.name === 'lxc')!;
    it('gets a URL at the bridge gateway, and with it writes its prefix and reads nothing else', async ({
      skip: skipTest,
    }) => {
      if (skip || lxc.skip()) return skipTest();
      const testDb = await createTestDatabase();
      const catalogDir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-catalog-'));
      await writeFile(path.join(catalogDir, 'queue.yaml'), QUEUE_YAML);
      const platform = await startLivePlatform({
        databaseUrl: testDb.url,
        driver: lxc,
        env: { AIQSO_CATALOG_DIR: catalogDir, AIQSO_SERVICES_REDIS_URL: REDIS_URL },
      });
      const base = `http://127.0.0.1:${platform.port}`;
      const compute = await lxc.open(platform.dataDir, testDb.db);
      try {
        const signup = await platform.signup({ company: 'Acme', slug: 'acme', email: 'o@acme.test' });
        await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
        expect((await platform.until('acme', (p) => p.status === 200, 300_000)).status).toBe(200);
        const login = await fetch(`${base}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email: 'o@acme.test', password: 'correct horse battery staple' }),
        });
        const auth = {
          authorization: `Bearer ${((await login.json()) as { accessToken: string }).accessToken}`,
        };
        const subscribed = await fetch(`${base}/api/v1/tenants/acme/services`, {
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json' },
          body: JSON.stringify({ service: 'queue' }),
        });
        expect(subscribed.status).toBe(202);
        const row = await pollUntil(
          () =>
            testDb.db
              .selectFrom('tenant_services')
              .select(['status', 'status_reason', 'tenant_id', 'container_name'])
              .executeTakeFirstOrThrow(),
          (r) => r.status === 'active' || r.status === 'failed',
          300_000,
        );
        expect(row.status, row.status_reason ?? '').toBe('active');
        const user = serviceRedisUser(
          servicesRedisNamespace('localhost', testDb.name),
          row.tenant_id,
          'queue',
        );
        await admin.set('platform:secret', 'of-the-platform');
        // The script and the URL travel on stdin and in the container's env file, never in argv.
        const inside = await compute.exec(row.container_name!, ['sh', '-c', '. /aiqso/env && exec node -'], {
          stdin: INSIDE,
          timeoutMs: 30_000,
        });
        expect(inside.stdout).toMatch(/^\+OK\r\n\+OK\r\n-NOPERM [^\r]*\r\n$/);
        expect(await admin.get(`${user}:from-inside`)).toBe('yes');
        const env = await readFile(
          path.join(platform.dataDir, 'lxc', row.container_name!, 'aiqso', 'env'),
          'utf8',
        );
        const hostAddress = await compute.hostAddress();
        expect(env).toMatch(
          new RegExp(
            `^export REDIS_URL='redis://${user}:[A-Za-z0-9_-]{43}@${hostAddress.replace(/\./g, '\\.')}:\\d+'$`,
            'm',
          ),
        );
      } finally {
        await admin.del('platform:secret');
        await compute.close();
        await platform.stop(testDb.db);
        for (const u of await listServiceRedisUsers(admin, servicesRedisNamespace('localhost', testDb.name)))
          await dropServiceRedisUser(admin, u);
        await testDb.drop();
      }
    });
  },
);
