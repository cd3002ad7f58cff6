import type { ImageWorkload } from '../../core/compute.ts';
import { DomainError } from '../../core/errors.ts';

/**
 * Init commands and a working directory for an image container on Proxmox.
 * The 9.1 API gives a container only an `entrypoint` (one string, split by
 * liblxc on blanks, quotes grouping) and an `env` (NUL-separated): there is no
 * working-directory key and no exec channel. So a container that needs either
 * starts the image's own shell, which reads a boot script from its
 * environment: change to the working directory, run the init commands unless
 * this container ran them already (a marker in its own root filesystem, so
 * once per deployment: a restart, or a restore of its backup, does not run
 * them again), then `exec` the workload, which stays PID 1 as without the
 * script. The image's own command, which Proxmox set as the entrypoint when it
 * created the container, is kept in `AIQSO_IMAGE_CMD` so later updates of the
 * spec find it. The image needs `/bin/sh` for this (a distroless image cannot
 * take init commands or a working directory on Proxmox).
 */

/** The container's `entrypoint` when it boots through the script. */
export const BOOT_ENTRYPOINT = `/bin/sh -c 'eval "$AIQSO_BOOT"'`;
/** Written once the init commands have all succeeded; its presence skips them. */
export const BOOT_MARKER = '/.aiqso-init-done';
export const BOOT_ENV = 'AIQSO_BOOT';
export const IMAGE_CMD_ENV = 'AIQSO_IMAGE_CMD';

/** Whether the workload needs the boot script on Proxmox. */
export const needsBoot = (w: ImageWorkload): boolean => Boolean(w.init?.length || w.workdir);

/** `lxc.init.cmd` splitting, as liblxc does it: words separated by blanks, quotes around a word with blanks. */
export function splitInitCommand(cmd: string): string[] {
  return [...cmd.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

const shellQuote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

/**
 * The boot script: one line (an `env` value carries no line breaks), shell
 * builtins only besides the commands themselves. An init command that fails
 * stops the container, its status and command line in the container's output.
 */
export function bootScript(workdir: string | undefined, init: string[][], argv: string[]): string {
  for (const a of [workdir ?? '', ...init.flat(), ...argv]) {
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(a))
      throw new DomainError(
        'deploy_failed',
        `argument ${JSON.stringify(a)} holds a control character, which a Proxmox container's environment cannot carry`,
      );
  }
  if (argv.length === 0)
    throw new DomainError('deploy_failed', 'the image names no command to run (no entrypoint, no cmd)');
  const parts = [`unset ${BOOT_ENV} ${IMAGE_CMD_ENV}`];
  if (workdir) parts.push(`cd ${shellQuote(workdir)} || exit 1`);
  if (init.length) {
    const steps = init.map((cmd) => {
      const shown = shellQuote(cmd.join(' '));
      return (
        `echo "aiqso: init: "${shown}; ${cmd.map(shellQuote).join(' ')} || ` +
        `{ echo "aiqso: init command failed ($?): "${shown}; exit 1; }`
      );
    });
    parts.push(`if [ ! -e ${BOOT_MARKER} ]; then ${steps.join('; ')}; : >${BOOT_MARKER}; fi`);
  }
  parts.push(`exec ${argv.map(shellQuote).join(' ')}`);
  return parts.join('; ');
}

/**
 * The `entrypoint` and the environment entries an image container gets on
 * Proxmox: `entrypoint` undefined keeps what the container has. `current` is
 * its config now (`entrypoint` and the environment as a map).
 */
export function imageBoot(
  w: ImageWorkload,
  explicit: string | undefined,
  current: { entrypoint?: string; env: Record<string, string> },
): { entrypoint?: string; env: Record<string, string>; drop: string[] } {
  // The image's own command: recorded, else what Proxmox set at creation (its default: /sbin/init).
  const imageCmd =
    current.env[IMAGE_CMD_ENV] ??
    (current.entrypoint && current.entrypoint !== BOOT_ENTRYPOINT ? current.entrypoint : '/sbin/init');
  if (!needsBoot(w)) {
    // Booted through the script before: back to the image's own command (or the catalog's).
    const back = explicit ?? (current.entrypoint === BOOT_ENTRYPOINT ? imageCmd : undefined);
    return { entrypoint: back, env: {}, drop: [BOOT_ENV, IMAGE_CMD_ENV] };
  }
  const argv = w.entrypoint ? [...w.entrypoint, ...(w.command ?? [])] : splitInitCommand(imageCmd);
  return {
    entrypoint: BOOT_ENTRYPOINT,
    env: { [BOOT_ENV]: bootScript(w.workdir, w.init ?? [], argv), [IMAGE_CMD_ENV]: imageCmd },
    drop: [],
  };
}
