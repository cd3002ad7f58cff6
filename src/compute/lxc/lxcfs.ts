import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Debian's lxcfs package gives every container that includes LXC's
 * common.conf two hooks (`common.conf.d/00-lxcfs.conf`): at mount, a shell
 * script that binds lxcfs's views of /proc (meminfo, cpuinfo, uptime: the
 * container's own limits) over the container's; after stop, `sleep 0.5s`.
 * Where lxcfs is not serving (`/var/lib/lxcfs/proc` absent: nothing started
 * the daemon, as on a host without systemd), the mount hook binds nothing:
 * both are only a shell, a `readlink` and half a second added to every stop.
 *
 * A container made from the driver's own templates then starts with both
 * hook lists cleared (`lxc-start -s lxc.hook.mount= -s …`, for that start
 * only, so a later start with lxcfs running gets its views) — but only when
 * every such hook LXC's common config sets is lxcfs's: an operator's own
 * hook in common.conf.d keeps them all.
 */

const LXCFS_PROC = '/var/lib/lxcfs/proc';
const LXC_CONFIG = '/usr/share/lxc/config';
const LXCFS_HOOKS = '/usr/share/lxcfs/';
const HOOK_LINE = /^\s*lxc\.hook\.(mount|post-stop)\s*=\s*(.*?)\s*$/;

/** The config lines these clear, as `lxc-start -s` defines (an empty value clears a hook list). */
const CLEARED = ['-s', 'lxc.hook.mount=', '-s', 'lxc.hook.post-stop='];

/**
 * Whether LXC's common config (common.conf and the files of common.conf.d)
 * sets lxcfs's mount or post-stop hooks and no other. Pure over the texts.
 */
export function onlyLxcfsHooks(configTexts: string[]): boolean {
  const hooks = configTexts
    .flatMap((text) => text.split('\n'))
    .map((line) => HOOK_LINE.exec(line)?.[2])
    .filter((value): value is string => Boolean(value));
  return hooks.length > 0 && hooks.every((value) => value.startsWith(LXCFS_HOOKS));
}

/** The texts of common.conf and common.conf.d/*.conf (what `lxc.include` of common.conf reads). */
function commonConfigTexts(dir: string): string[] {
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  const confD = path.join(dir, 'common.conf.d');
  const parts = existsSync(confD)
    ? readdirSync(confD)
        .filter((f) => f.endsWith('.conf'))
        .map((f) => read(path.join(confD, f)))
    : [];
  return [read(path.join(dir, 'common.conf')), ...parts];
}

export interface LxcfsHost {
  /** Whether lxcfs serves its views now. */
  serving(): boolean;
  /** Whether LXC's common config sets lxcfs's mount or post-stop hooks and no other (read once). */
  onlyLxcfsHooks(): boolean;
}

export function lxcfsHost(configDir = LXC_CONFIG, procDir = LXCFS_PROC): LxcfsHost {
  let only: boolean | undefined;
  return {
    serving: () => existsSync(procDir),
    onlyLxcfsHooks: () => (only ??= onlyLxcfsHooks(commonConfigTexts(configDir))),
  };
}

/**
 * The `lxc-start` defines for a container: none, or the two that clear the
 * hook lists when the container comes from the driver's own templates
 * (`ownTemplate`), lxcfs is not serving, and lxcfs's are the only such hooks.
 */
export function lxcfsDefines(host: LxcfsHost, ownTemplate: boolean): string[] {
  return ownTemplate && !host.serving() && host.onlyLxcfsHooks() ? CLEARED : [];
}
