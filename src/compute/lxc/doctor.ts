import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../../config/load.ts';
import type { DoctorCheck } from '../shared/doctor-check.ts';
import { run } from '../shared/run.ts';
import { bridgePorts } from './bridge.ts';
import { oldContainers } from './convert.ts';
import { inspectNetworkPolicy } from './firewall.ts';
import { readIdMap } from './idmap.ts';
import { tableName } from './netpolicy.ts';
import { probeHostSecurity } from './security.ts';

/**
 * What walls the lxc driver's containers in on this host, as `aiqso doctor`
 * reports it: the id map, AppArmor, seccomp, the bridge's network policy and
 * egress, each in force or why not. Reads only; the driver sets them up.
 */

const installed = async (bin: string) =>
  (await run(bin, ['--version']).catch(() => undefined))?.exitCode === 0;

/** The first directory on the way to `dir` that others may not search (the container root needs an ACL there). */
async function closedOnTheWay(dir: string): Promise<string | undefined> {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const d = `/${parts.slice(0, i).join('/')}`;
    const st = await stat(d).catch(() => undefined);
    if (st?.isDirectory() && !(st.mode & 0o001)) return d;
  }
  return undefined;
}

async function unprivileged(config: Config): Promise<DoctorCheck> {
  const part = 'isolation: unprivileged';
  const privileged = await oldContainers(config.lxc.path);
  if (privileged.length) {
    return {
      part,
      status: 'failed',
      detail: `${privileged.length} container(s) still privileged (made by an older version), e.g. ${privileged[0]}`,
      fix: 'start aiqso up or aiqso worker: the lxc driver converts them in place as it starts',
    };
  }
  const closed = await closedOnTheWay(config.lxc.path);
  if (closed && !(await installed('setfacl'))) {
    return {
      part,
      status: 'missing',
      detail: `${closed} is closed to others and setfacl is not installed, so container roots cannot reach ${config.lxc.path}`,
      fix: `apt-get install acl (or chmod o+x ${closed})`,
    };
  }
  const map = await readIdMap();
  return {
    part,
    status: 'ok',
    detail: map
      ? `root in a container is host uid ${map.uid.start} (and gid ${map.gid.start}), ${map.uid.size} ids mapped from root's /etc/subuid and /etc/subgid ranges`
      : 'root has no /etc/subuid or /etc/subgid range yet: the lxc driver adds one (from uid 100000) when it starts',
  };
}

function confinement(): DoctorCheck[] {
  const { apparmor, seccomp } = probeHostSecurity();
  return [
    apparmor.enabled
      ? { part: 'isolation: apparmor', status: 'ok', detail: apparmor.why }
      : {
          part: 'isolation: apparmor',
          status: 'warning',
          detail: `not in force: ${apparmor.why}; containers run unconfined by AppArmor (the id map and seccomp still apply)`,
          fix: 'a kernel with AppArmor enabled (apparmor=1 security=apparmor) and apt-get install apparmor',
        },
    seccomp.enabled
      ? { part: 'isolation: seccomp', status: 'ok', detail: seccomp.why }
      : {
          part: 'isolation: seccomp',
          status: 'warning',
          detail: `not in force: ${seccomp.why}`,
          fix: 'a kernel with seccomp filters, and apt-get install lxc',
        },
  ];
}

async function network(config: Config): Promise<DoctorCheck[]> {
  const { bridge } = config.lxc;
  if (!(await installed('nft'))) {
    const missing = { status: 'missing' as const, fix: 'apt-get install nftables' };
    return [
      {
        part: 'isolation: network',
        detail: 'nft not found: the lxc driver cannot wall its bridge',
        ...missing,
      },
      { part: 'isolation: egress', detail: `AIQSO_EGRESS=${config.egress}, not enforceable`, ...missing },
    ];
  }
  const policy = await inspectNetworkPolicy(bridge);
  const ports = await bridgePorts(bridge);
  const net: DoctorCheck = policy
    ? {
        part: 'isolation: network',
        status: 'ok',
        detail:
          `nftables tables ${tableName(bridge)} on ${bridge}: ${policy.containers} container(s) bound to their port, MAC and address, ` +
          `none reaching another; host ports open to them: ${policy.reach.join(', ') || 'none'}`,
      }
    : ports.length
      ? {
          part: 'isolation: network',
          status: 'failed',
          detail: `${ports.length} container port(s) on ${bridge} and no policy applied`,
          fix: 'start aiqso up or aiqso worker: the lxc driver applies the policy as it starts',
        }
      : {
          part: 'isolation: network',
          status: 'ok',
          detail: `nothing on ${bridge} now; the lxc driver applies the policy as it starts`,
        };
  const applied = policy
    ? policy.egress === config.egress
      ? 'in force'
      : `applied: ${policy.egress}`
    : 'not applied yet';
  const egress: DoctorCheck = {
    part: 'isolation: egress',
    status: policy && policy.egress !== config.egress ? 'failed' : 'ok',
    detail:
      config.egress === 'nat'
        ? `AIQSO_EGRESS=nat: containers reach beyond the bridge, masqueraded by this host (${applied})`
        : `AIQSO_EGRESS=none: containers have no route beyond the bridge (${applied})`,
    ...(policy && policy.egress !== config.egress
      ? { fix: 'restart aiqso up or aiqso worker: the lxc driver re-applies the policy as it starts' }
      : {}),
  };
  return [net, egress];
}

export async function checkLxcIsolation(config: Config): Promise<DoctorCheck[]> {
  return [await unprivileged(config), ...confinement(), ...(await network(config))];
}
