import { existsSync, readFileSync } from 'node:fs';

/**
 * The kernel confinement a container gets besides its id map: an AppArmor
 * profile and a seccomp filter, each where the host has it. What this host
 * offers is probed once; what goes into a config is rendered from it, purely.
 */
export interface HostSecurity {
  /** LXC's generated AppArmor profile applies (AppArmor enabled in the kernel, apparmor_parser present). */
  apparmor: { enabled: boolean; why: string };
  /** LXC's default seccomp denylist applies (kernel filter mode and the profile file present). */
  seccomp: { enabled: boolean; profile?: string; why: string };
}

export const SECCOMP_PROFILE = '/usr/share/lxc/config/common.seccomp';
const APPARMOR_FS = '/sys/kernel/security/apparmor';
const APPARMOR_ENABLED = '/sys/module/apparmor/parameters/enabled';
const APPARMOR_PARSER = ['/sbin/apparmor_parser', '/usr/sbin/apparmor_parser'];
const SECCOMP_ACTIONS = '/proc/sys/kernel/seccomp/actions_avail';

const read = (file: string) => {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
};

export function probeHostSecurity(): HostSecurity {
  const enabled = read(APPARMOR_ENABLED);
  const apparmor =
    enabled !== 'Y'
      ? { enabled: false, why: 'the kernel has AppArmor off or not built in (no /sys/module/apparmor)' }
      : !existsSync(APPARMOR_FS)
        ? { enabled: false, why: `AppArmor's file system is not mounted (${APPARMOR_FS})` }
        : !APPARMOR_PARSER.some((p) => existsSync(p))
          ? { enabled: false, why: 'apparmor_parser is not installed (apt-get install apparmor)' }
          : { enabled: true, why: "LXC's generated profile, nesting not allowed" };
  const actions = read(SECCOMP_ACTIONS);
  const seccomp = !actions?.split(/\s+/).includes('errno')
    ? { enabled: false, why: 'the kernel has no seccomp filter mode' }
    : !existsSync(SECCOMP_PROFILE)
      ? { enabled: false, why: `LXC's profile ${SECCOMP_PROFILE} is missing (apt-get install lxc)` }
      : {
          enabled: true,
          profile: SECCOMP_PROFILE,
          why: `LXC's default denylist (${SECCOMP_PROFILE}: kexec, module loading, open_by_handle_at, forced umount)`,
        };
  return { apparmor, seccomp };
}

/** Config lines for the confinement the host offers; unconfined only where AppArmor is not there. */
export function securityLines(security: HostSecurity): string[] {
  return [
    ...(security.apparmor.enabled
      ? ['lxc.apparmor.profile = generated', 'lxc.apparmor.allow_nesting = 0']
      : ['lxc.apparmor.profile = unconfined']),
    ...(security.seccomp.enabled && security.seccomp.profile
      ? [`lxc.seccomp.profile = ${security.seccomp.profile}`]
      : []),
  ];
}
