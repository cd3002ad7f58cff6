import { createHash } from 'node:crypto';
import type { ResourceLimits } from '../../core/compute.ts';
import { appNodeFlags } from '../shared/app-snapshot.ts';
import { idmapLines, type IdMap } from './idmap.ts';
import { securityLines, type HostSecurity } from './security.ts';

/**
 * Pure rendering of what the lxc driver writes into a container: the managed
 * block of its LXC config, its init script and its environment file. Tested by
 * value; `driver.ts` only writes the results.
 */

export const MANAGED_MARKER = '# --- aiqso managed: rewritten by ensure, edits below are lost ---';

export interface ManagedConfig {
  name: string;
  bridge: string;
  ip: string;
  prefix: number;
  gateway: string;
  resources: ResourceLimits;
  /** Host directory bind-mounted read-only at /aiqso (init script, env file). */
  aiqsoDir: string;
  /** Host directory of an app workload, bind-mounted read-only at /app. */
  appDir?: string;
  /**
   * The host's node_modules the app resolves its packages from (the platform's
   * own), bind-mounted read-only at /node_modules, where Node looks last.
   */
  appModules?: string;
  cgroup: 'v1' | 'v2';
  isolation: Isolation;
  /** Per-container data directories bind-mounted read-write (an image's volumes). */
  volumes?: { source: string; target: string }[];
  /** Who PID 1 (and so the workload) runs as inside, when not root: an image's USER. */
  initUser?: { uid: number; gid: number };
}

/**
 * `lxc.init.uid`/`gid` lines that make PID 1 run as an image's USER (ids inside
 * the container). No `lxc.init.groups`: LXC applies it only to privileged
 * containers, so the workload has no supplementary groups.
 */
export function initUserLines(user: ManagedConfig['initUser']): string[] {
  if (!user || (user.uid === 0 && user.gid === 0)) return [];
  return [`lxc.init.uid = ${user.uid}`, `lxc.init.gid = ${user.gid}`];
}

/** What walls a container in: its id map, the host's confinement, its named bridge port. */
export interface Isolation {
  idmap: IdMap;
  security: HostSecurity;
  /** Host end of the veth (`netpolicy.ts` vethName): the network policy matches on it. */
  vethPair: string;
}

export function isolationLines(i: Isolation): string[] {
  return [...idmapLines(i.idmap), ...securityLines(i.security)];
}

/** LXC reads `veth.pair` only after the interface's type. */
const NET_TYPE = 'lxc.net.0.type = veth';
const vethLine = (i: Isolation) => `lxc.net.0.veth.pair = ${i.vethPair}`;

const CPU_PERIOD_US = 100_000;

/** A stable, locally administered MAC per container name (no ARP churn across restarts). */
export function macFor(name: string): string {
  const h = createHash('sha256').update(name).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export function cgroupLimitKeys(resources: ResourceLimits, cgroup: 'v1' | 'v2'): [string, string][] {
  const bytes = String(resources.memoryMb * 1024 * 1024);
  const quota = String(Math.round(resources.cores * CPU_PERIOD_US));
  return cgroup === 'v1'
    ? [
        ['memory.limit_in_bytes', bytes],
        ['cpu.cfs_period_us', String(CPU_PERIOD_US)],
        ['cpu.cfs_quota_us', quota],
      ]
    : [
        ['memory.max', bytes],
        ['cpu.max', `${quota} ${CPU_PERIOD_US}`],
      ];
}

/** `existing` (a clone's config) with the keys and block we manage replaced by the ones for `c`. */
export function renderConfig(existing: string, c: ManagedConfig): string {
  const base = stripManagedKeys(existing).replace(/\s*$/, '\n');
  const prefix = c.cgroup === 'v1' ? 'lxc.cgroup' : 'lxc.cgroup2';
  const lines = [
    MANAGED_MARKER,
    `lxc.uts.name = ${c.name}`,
    ...isolationLines(c.isolation),
    'lxc.signal.halt = SIGTERM',
    // No terminals: nothing in the container logs in, and each tty and the console would take one of
    // the host's pseudo-terminals (kernel.pty.max less its reserve: 3,072 here), which ran out at
    // about 660 containers (LXC's common.conf gives each 4 ttys and a console).
    'lxc.tty.max = 0',
    'lxc.console.path = none',
    ...initUserLines(c.initUser),
    `lxc.mount.entry = ${c.aiqsoDir} aiqso none ro,bind,create=dir 0 0`,
    ...(c.appDir ? [`lxc.mount.entry = ${c.appDir} app none ro,bind,create=dir 0 0`] : []),
    ...(c.appModules ? [`lxc.mount.entry = ${c.appModules} node_modules none ro,bind,create=dir 0 0`] : []),
    ...(c.volumes ?? []).map(
      (v) => `lxc.mount.entry = ${v.source} ${v.target.slice(1)} none rw,bind,create=dir 0 0`,
    ),
    NET_TYPE,
    vethLine(c.isolation),
    `lxc.net.0.link = ${c.bridge}`,
    'lxc.net.0.flags = up',
    'lxc.net.0.name = eth0',
    `lxc.net.0.hwaddr = ${macFor(c.name)}`,
    `lxc.net.0.ipv4.address = ${c.ip}/${c.prefix}`,
    `lxc.net.0.ipv4.gateway = ${c.gateway}`,
    ...cgroupLimitKeys(c.resources, c.cgroup).map(([k, v]) => `${prefix}.${k} = ${v}`),
  ];
  return `${base}${lines.join('\n')}\n`;
}

/** Keys the managed block owns: removed from the part above the marker so ours win. */
const MANAGED_KEYS =
  /^\s*lxc\.(uts\.name|apparmor\.|seccomp\.|idmap|signal\.halt|tty\.max|console\.path|init\.(uid|gid|groups)|net\.|cgroup2?\.)/;

/** Keys `isolationLines` owns, wherever they are. */
const ISOLATION_KEYS = /^\s*lxc\.(apparmor\.|seccomp\.|idmap|net\.0\.veth\.pair)/;

/**
 * A config written before containers were unprivileged, made unprivileged: the
 * isolation keys replaced at the top of the managed block, the port named
 * after its network type. Everything else is kept as it was.
 */
export function convertConfig(existing: string, isolation: Isolation): string {
  const lines = existing.split('\n').filter((l) => !ISOLATION_KEYS.test(l));
  const type = lines.findIndex((l) => /^\s*lxc\.net\.0\.type\s*=\s*veth\s*$/.test(l));
  if (type >= 0) lines.splice(type + 1, 0, vethLine(isolation));
  const at = lines.indexOf(MANAGED_MARKER);
  if (at >= 0) lines.splice(at + 1, 0, ...isolationLines(isolation));
  else lines.push(MANAGED_MARKER, ...isolationLines(isolation));
  return lines.join('\n');
}

/** Whether a container config makes it unprivileged (written by this version of the driver). */
export function isUnprivileged(config: string): boolean {
  return /^\s*lxc\.idmap\s*=\s*u 0 [1-9]/m.test(config);
}

/** A template's config (as a clone copied it) without the keys the managed block sets. */
export function stripManagedKeys(config: string): string {
  const cut = config.indexOf(MANAGED_MARKER);
  const head = cut >= 0 ? config.slice(0, cut) : config;
  return head
    .split('\n')
    .filter((l) => !MANAGED_KEYS.test(l))
    .join('\n');
}

/** Shell-quote one value for the env file (single quotes; a quote becomes '\''). */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function renderEnvFile(env: Record<string, string>): string {
  const lines = Object.entries(env).map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`environment name "${k}" is not valid`);
    return `export ${k}=${shellQuote(v)}`;
  });
  return `${lines.join('\n')}\n`;
}

/**
 * PID 1 of an app container: a tiny sh supervisor that restarts the workload
 * when it dies (1 s, doubling to 30 s; reset after 60 s of uptime) and stops it
 * on SIGTERM (`lxc.signal.halt`). Secrets stay in /aiqso/env, never argv.
 * `blob` (a file in the app's directory): the app's start-up snapshot, used
 * while it is there (src/compute/shared/app-snapshot.ts); else the app starts from its files.
 */
export function renderInit(node: string, entry: string, memoryMb: number, blob?: string): string {
  const app = shellQuote(`/app/${entry}`);
  const file = blob && shellQuote(`/app/${blob}`);
  const args = file
    ? `set -- ${app}; if [ -r ${file} ]; then set -- --snapshot-blob ${file} ${app}; fi`
    : `set -- ${app}`;
  // Shell builtins where they do: every exec in a container that is starting costs (its clock is
  // the seconds of /proc/uptime, read with \`read\`, not \`date\`).
  return `#!/bin/sh
. /aiqso/env
[ -d /var/log/aiqso ] || mkdir -p /var/log/aiqso
cd /root
child=
trap 'test -n "$child" && kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT
delay=1
while :; do
  read -r started _ </proc/uptime; started=\${started%.*}
  ${args}
  ${[node, ...appNodeFlags(memoryMb)].join(' ')} "$@" >>/var/log/aiqso/app.log 2>&1 &
  child=$!
  wait "$child"
  read -r now _ </proc/uptime
  if [ $(( \${now%.*} - started )) -ge 60 ]; then delay=1; fi
  sleep "$delay"
  delay=$(( delay * 2 )); if [ "$delay" -gt 30 ]; then delay=30; fi
done
`;
}

/** What an image container runs: its argv, working directory and environment, image config and catalog merged. */
export interface ImageRun {
  argv: string[];
  workdir: string;
  env: Record<string, string>;
}

/**
 * Docker's rules: the catalog's entrypoint replaces the image's and clears its
 * command unless the catalog gives one; environment is the image's, then the
 * service's on top. Pure.
 */
export function imageRun(
  image: { entrypoint: string[]; cmd: string[]; env: string[]; workdir: string },
  w: { entrypoint?: string[]; command?: string[]; workdir?: string },
  env: Record<string, string>,
  /** The image's USER when not root: its home becomes HOME unless the image or the service sets one. */
  user?: { home: string },
): ImageRun {
  const entrypoint = w.entrypoint ?? image.entrypoint;
  const command = w.command ?? (w.entrypoint ? [] : image.cmd);
  const argv = [...entrypoint, ...command];
  if (argv.length === 0)
    throw new Error('the image has no entrypoint or command, and the catalog gives none');
  const fromImage = Object.fromEntries(
    image.env.map((kv) => [kv.slice(0, Math.max(0, kv.indexOf('='))), kv.slice(kv.indexOf('=') + 1)]),
  );
  delete fromImage[''];
  return {
    argv,
    workdir: w.workdir ?? (image.workdir || '/'),
    env: {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      ...(user ? { HOME: user.home } : {}),
      ...fromImage,
      ...env,
    },
  };
}

/** Inside an image container: the workload's output, and the marker of its init commands having run. */
export const IMAGE_LOG = '/var/log/aiqso/app.log';
export const INIT_MARKER = '/var/lib/aiqso/init-done';

/**
 * PID 1 of an image container, run by the static helper (`helper sh`) so it
 * needs nothing from the image: reads the environment, runs the init commands
 * once per deployment (the marker lives in the container's own layer, written
 * only after every command succeeded, so a failed or interrupted init runs
 * again at the next start), then runs the workload and passes SIGTERM on to
 * it: when the workload exits, the container stops. Secrets stay in
 * /aiqso/env, never argv.
 */
export function renderImageInit(helper: string, run: ImageRun, init: string[][]): string {
  const q = (argv: string[]) => argv.map(shellQuote).join(' ');
  const lines = [
    '#!/bin/sh',
    '. /aiqso/env',
    `${helper} mkdir -p /var/log/aiqso /var/lib/aiqso`,
    `cd ${shellQuote(run.workdir)} || exit 1`,
  ];
  if (init.length) {
    lines.push(`if [ ! -e ${INIT_MARKER} ]; then`);
    for (const argv of init) {
      lines.push(
        `  echo "aiqso: init: "${shellQuote(argv.join(' '))} >>${IMAGE_LOG}`,
        `  ${q(argv)} >>${IMAGE_LOG} 2>&1 || { echo "aiqso: init command failed ($?): "${shellQuote(argv.join(' '))} >>${IMAGE_LOG}; exit 1; }`,
      );
    }
    lines.push(`  : >${INIT_MARKER}.tmp && ${helper} mv ${INIT_MARKER}.tmp ${INIT_MARKER}`, 'fi');
  }
  // PID 1 ignores signals it has no handler for: the shell stays PID 1 and hands SIGTERM on.
  lines.push(
    `trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 0' TERM INT`,
    `${q(run.argv)} >>${IMAGE_LOG} 2>&1 &`,
    'child=$!',
    'wait "$child"',
    'exit $?',
    '',
  );
  return lines.join('\n');
}
