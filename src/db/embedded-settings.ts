import { readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from 'pino';

/**
 * What the embedded server is started with that outlives one start: its port
 * (kept in `<data>/pg-port`) and its client authentication (`pg_hba.conf`,
 * rewritten at every start). Workloads keep the database URL they were given,
 * so the port must not change across restarts: it moves only when something
 * else has taken it, and then the reconcilers see every container's
 * configuration differ from its spec and reconfigure it.
 */

const portFile = (dataDir: string) => path.join(dataDir, 'pg-port');

/**
 * Whether nothing listens on `port` at any of `hosts` (a listener on every
 * interface counts). An address this host does not have (a bridge not made
 * yet) takes nothing.
 */
export async function portFree(port: number, hosts: string[]): Promise<boolean> {
  for (const host of hosts) {
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'EADDRINUSE'));
      srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
    });
    if (!free) return false;
  }
  return true;
}

/**
 * The port recorded in the data directory when it is still free at every
 * address the server listens on; otherwise a new free one, recorded.
 *
 * `avoid` are the ports the platform itself is about to serve (its HTTP and
 * HTTPS listeners). They are free while the database starts, because the
 * platform binds them only afterwards, so a free-port pick alone could hand
 * one of them to the database and the platform would then fail to start.
 */
export async function choosePort(
  dataDir: string,
  hosts: string[],
  freePort: () => Promise<number>,
  log: Logger,
  avoid: readonly number[] = [],
): Promise<number> {
  const recorded = Number((await readFile(portFile(dataDir), 'utf8').catch(() => '')).trim());
  if (Number.isInteger(recorded) && recorded > 0 && recorded < 65536) {
    if (avoid.includes(recorded)) {
      log.warn(
        { port: recorded },
        "the embedded PostgreSQL port recorded in the data directory is now one of the platform's own listening ports; moving to another (the reconcilers reconfigure every container)",
      );
    } else if (await portFree(recorded, hosts)) {
      return recorded;
    } else {
      log.warn(
        { port: recorded },
        'the embedded PostgreSQL port recorded in the data directory is taken by something else; moving to another (the reconcilers reconfigure every container)',
      );
    }
  }
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await freePort();
    if (avoid.includes(port) || !(await portFree(port, hosts))) continue;
    await writeFile(portFile(dataDir), `${port}\n`, { mode: 0o644 });
    return port;
  }
  throw new Error(`no port is free on ${hosts.join(', ')} for the embedded PostgreSQL`);
}

/**
 * Client authentication of the embedded server (pure). The platform's
 * superuser only from this host; any other role only into the database that
 * bears its name (`sameuser`: a service's database and role share a name, see
 * services/databases.ts), from anywhere its containers are; nothing else.
 */
export function renderPgHba(superuser: string): string {
  return [
    '# Managed by aiqso: rewritten at every start of the embedded server; edits are lost.',
    '# TYPE  DATABASE  USER  ADDRESS  METHOD',
    `host    all       ${superuser}  127.0.0.1/32  scram-sha-256`,
    `host    all       ${superuser}  ::1/128       scram-sha-256`,
    `host    all       ${superuser}  0.0.0.0/0     reject`,
    `host    all       ${superuser}  ::/0          reject`,
    'host    sameuser  all    0.0.0.0/0     scram-sha-256',
    'host    sameuser  all    ::/0          scram-sha-256',
    '',
  ].join('\n');
}

/** `listen_addresses` of a running server, from its `postmaster.opts` (the command line it was started with). */
export async function runningListenAddresses(dir: string): Promise<string[]> {
  const opts = await readFile(path.join(dir, 'postmaster.opts'), 'utf8').catch(() => '');
  const value = /"listen_addresses=([^"]*)"/.exec(opts)?.[1] ?? '127.0.0.1';
  return value
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
}
