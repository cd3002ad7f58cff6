import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../../observability/logger.ts';

const run = promisify(execFile);

export type ApplyResult =
  | { result: 'applied' | 'unchanged' }
  | { result: 'invalid'; error: string }
  | { result: 'failed'; error: string };

export interface NginxProcess {
  /**
   * Validate `config` with `nginx -t`; only a valid one replaces the live file, then nginx reloads (HUP).
   * An unchanged configuration is left alone unless `reload` (certificate files changed: nginx reads
   * them only when it loads its configuration).
   */
  apply(config: string, options?: { reload?: boolean }): Promise<ApplyResult>;
  /** The live configuration file. */
  readonly configFile: string;
  running(): boolean;
  stop(): Promise<void>;
}

export function findNginx(): string | undefined {
  return ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
}

/**
 * Thin apply for the nginx edge: nginx runs as our child in the foreground
 * (`daemon off`) with its own prefix directory, so several platforms (and
 * tests) can run side by side. A configuration that fails `nginx -t` is kept
 * beside the live one as `nginx.conf.rejected` for the operator and never
 * replaces it.
 */
export async function startNginx(options: { dir: string; log: Logger; bin?: string }): Promise<NginxProcess> {
  const { dir, log } = options;
  const bin = options.bin ?? findNginx() ?? 'nginx';
  const configFile = path.join(dir, 'nginx.conf');
  for (const t of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    await mkdir(path.join(dir, 'tmp', t), { recursive: true });
  }
  let child: ChildProcess | undefined;
  let exited: Promise<void> | undefined;
  let live: string | undefined;
  let queue: Promise<unknown> = Promise.resolve();

  const validate = async (file: string): Promise<string | undefined> => {
    try {
      await run(bin, ['-t', '-q', '-p', `${dir}/`, '-c', file], { timeout: 60_000 });
      return undefined;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      return (e.stderr || e.message).trim();
    }
  };

  const launch = () => {
    const c = spawn(bin, ['-p', `${dir}/`, '-c', configFile, '-g', 'daemon off;'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    c.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    exited = new Promise((resolve) =>
      c.once('exit', (code, signal) => {
        if (child === c) {
          child = undefined;
          log.error({ code, signal, stderr: stderr.slice(-2000) }, 'nginx exited');
        }
        resolve();
      }),
    );
    child = c;
  };

  const applyNow = async (config: string, reload = false): Promise<ApplyResult> => {
    if (config === live && !reload) return { result: 'unchanged' };
    const candidate = path.join(dir, 'nginx.conf.next');
    await writeFile(candidate, config, { mode: 0o600 });
    const error = await validate(candidate);
    if (error) {
      await rename(candidate, path.join(dir, 'nginx.conf.rejected'));
      log.error({ error }, 'nginx refused the rendered configuration; the working one stays in service');
      return { result: 'invalid', error };
    }
    await rename(candidate, configFile);
    live = config;
    try {
      if (child?.pid) child.kill('SIGHUP');
      else launch();
    } catch (err) {
      return { result: 'failed', error: (err as Error).message };
    }
    return { result: 'applied' };
  };

  return {
    configFile,
    apply(config, options) {
      const next = queue.then(() => applyNow(config, options?.reload));
      queue = next.catch(() => undefined);
      return next;
    },
    running: () => child !== undefined,
    async stop() {
      const c = child;
      child = undefined;
      if (!c) return;
      c.kill('SIGQUIT');
      const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The live configuration as nginx has it on disk (for tests and `doctor`). */
export async function readLiveConfig(dir: string): Promise<string> {
  return readFile(path.join(dir, 'nginx.conf'), 'utf8');
}
