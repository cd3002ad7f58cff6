import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { DomainError } from '../../core/errors.ts';
import { run, runOk } from '../shared/run.ts';

/** Thin wrappers over the `lxc-*` tools, always with `-P <lxcPath>` and argv arrays. */
export class LxcTools {
  constructor(readonly lxcPath: string) {}

  private args(name: string, rest: string[]): string[] {
    return ['-P', this.lxcPath, '-n', name, ...rest];
  }

  /** `RUNNING`, `STOPPED`, or a transition state such as `STOPPING`. */
  async state(name: string): Promise<string> {
    return (await this.statePid(name)).state;
  }

  /** State and init pid in one call (each lxc-* spawn costs tens of ms on a busy host). */
  async statePid(name: string): Promise<{ state: string; pid?: number }> {
    const out = await run('lxc-info', this.args(name, ['-s', '-p', '-H']));
    if (out.exitCode !== 0) return { state: 'STOPPED' };
    // With two fields lxc-info labels them ("State: RUNNING", "PID: 123") even with -H.
    const state = /^State:\s*(\S+)/m.exec(out.stdout)?.[1] ?? 'STOPPED';
    const pid = /^PID:\s*(\d+)/m.exec(out.stdout)?.[1];
    return { state, ...(pid ? { pid: Number(pid) } : {}) };
  }

  async info(name: string): Promise<Record<string, string>> {
    const out = await runOk('lxc-info', this.args(name, ['-H']));
    const fields: Record<string, string> = {};
    for (const line of out.split('\n')) {
      const m = /^\s*([^:]+):\s*(.*)$/.exec(line);
      // Repeated keys (several links) sum up where numeric.
      if (m)
        fields[m[1]!.trim()] =
          fields[m[1]!.trim()] && /^\d+$/.test(m[2]!)
            ? String(Number(fields[m[1]!.trim()]) + Number(m[2]))
            : m[2]!.trim();
    }
    return fields;
  }

  /** The container's LXC config file as text. */
  config(name: string): Promise<string> {
    return readFile(`${this.lxcPath}/${name}/config`, 'utf8');
  }

  async cgroup(name: string, key: string): Promise<string | undefined> {
    const out = await run('lxc-cgroup', this.args(name, [key]));
    return out.exitCode === 0 ? out.stdout.trim() : undefined;
  }

  async copy(source: string, name: string): Promise<void> {
    if (!existsSync(`${this.lxcPath}/${source}/config`)) {
      throw new DomainError('not_found', `template container ${source} not found in ${this.lxcPath}`);
    }
    await runOk('lxc-copy', ['-P', this.lxcPath, '-n', source, '-N', name, '-s', '-B', 'overlayfs']);
  }

  /**
   * Start (daemonised) and return the container's init pid, and whether this
   * call started it; a container already running is fine. `defines` are
   * `-s KEY=VALUE` pairs over its config for this start (lxcfs.ts).
   */
  async start(
    name: string,
    dir: string,
    defines: string[] = [],
  ): Promise<{ pid?: number; started: boolean }> {
    const pidFile = `${dir}/init.pid`;
    const out = await run(
      'lxc-start',
      this.args(name, ['-o', `${dir}/lxc.log`, '-l', 'WARN', '-p', pidFile, ...defines]),
    );
    if (out.exitCode !== 0) {
      const live = await this.statePid(name);
      if (live.state === 'RUNNING') return { pid: live.pid, started: false };
      throw new DomainError(
        'dependency_failed',
        `lxc-start ${name} failed: ${out.stderr.trim().split('\n').at(-1)} (see ${dir}/lxc.log)`,
      );
    }
    // The pid file names the monitor (lxc-start daemon); the container's init is its child.
    const monitor = (await readFile(pidFile, 'utf8').catch(() => '')).trim();
    const children = await readFile(`/proc/${monitor}/task/${monitor}/children`, 'utf8').catch(() => '');
    const init = Number(children.trim().split(' ')[0]);
    return { pid: init > 0 ? init : (await this.statePid(name)).pid, started: true };
  }

  async stop(name: string, timeoutSeconds: number): Promise<void> {
    const out = await run('lxc-stop', this.args(name, ['-t', String(timeoutSeconds)]));
    // Exit 2 means "not running": stopping a stopped container is a no-op.
    if (out.exitCode !== 0 && out.exitCode !== 2 && (await this.state(name)) === 'RUNNING') {
      await runOk('lxc-stop', this.args(name, ['-k']));
    }
  }

  async destroy(name: string): Promise<void> {
    await run('lxc-stop', this.args(name, ['-k']));
    await run('lxc-destroy', this.args(name, []));
  }

  attach(name: string, argv: string[], stdin: string | undefined, timeoutMs: number) {
    // The workload's environment comes from /aiqso/env inside the container, never from argv.
    const script = '. /aiqso/env; cd /root; exec "$@"';
    return run('lxc-attach', this.args(name, ['--clear-env', '--', '/bin/sh', '-c', script, 'sh', ...argv]), {
      stdin,
      timeoutMs,
    });
  }
}
