import {
  spawn,
  type ChildProcess,
  type ChildProcessWithoutNullStreams,
  type SpawnOptions,
} from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { DomainError } from '../../core/errors.ts';
import type { ExecResult } from '../../core/compute.ts';

export interface RunOptions {
  /** Written to the child's stdin: the only way secrets reach a command. */
  stdin?: string;
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Each complete line the program writes to stdout, as it comes (progress). */
  onLine?: (line: string) => void;
  /** Killed by the kernel when this process dies ({@link endingWithParent}). */
  endWithParent?: boolean;
}

/**
 * The argv that runs `file` so that the kernel kills it when the process that
 * started it dies: util-linux `setpriv` sets the parent-death signal and execs
 * the program (same pid, same exit status). For the tools that move a
 * tenant's data (restic, pg_dump, pg_restore, tar): killed with the platform,
 * none goes on writing into a repository, a database or a file that the
 * resumed attempt works on too.
 */
function endingWithParent(file: string, args: string[]): [string, string[]] {
  return ['setpriv', ['--pdeathsig', 'KILL', '--', file, ...args]];
}

/**
 * `spawn` for a tool that must not outlive this process ({@link endingWithParent}).
 * A program not on the PATH is spawned as it is, so the caller sees the usual
 * ENOENT error naming it rather than setpriv's exit status.
 */
export function spawnTool(file: string, args: string[], options: SpawnOptions): ChildProcess {
  const searchPath = options.env?.PATH ?? WORKLOAD_PATH;
  const found = file.includes('/')
    ? existsSync(file)
    : searchPath.split(':').some((dir) => dir !== '' && existsSync(path.join(dir, file)));
  return found ? spawn(...endingWithParent(file, args), options) : spawn(file, args, options);
}

/**
 * Run a program with an argv array (never a shell string) and collect its
 * output. Never rejects for a non-zero exit: callers decide what an exit code
 * means. Rejects only when the program cannot be started or times out.
 */
export function run(file: string, args: string[], options: RunOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const spawnOptions: SpawnOptions = {
      cwd: options.cwd,
      env: options.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    };
    const child = (
      options.endWithParent ? spawnTool(file, args, spawnOptions) : spawn(file, args, spawnOptions)
    ) as ChildProcessWithoutNullStreams;
    let stdout = '';
    let stderr = '';
    let pending = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
      if (!options.onLine) return;
      pending += c;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (line.trim()) options.onLine(line.trim());
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    // A command that exits before reading stdin closes the pipe; that is not our failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
    const timer =
      options.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            child.kill('SIGKILL');
            reject(new DomainError('dependency_failed', `${file} timed out after ${options.timeoutMs} ms`));
          }, options.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new DomainError('dependency_failed', `cannot run ${file}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ exitCode: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

/** Run and require exit code 0; the error names the command (never its stdin). */
export async function runOk(file: string, args: string[], options: RunOptions = {}): Promise<string> {
  const result = await run(file, args, options);
  if (result.exitCode !== 0) {
    const detail = (result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ');
    throw new DomainError(
      'dependency_failed',
      `${file} ${args[0] ?? ''} failed (${result.exitCode}): ${detail}`,
    );
  }
  return result.stdout;
}

/**
 * `tar` archiving a live container's files. A file that changes or goes while
 * it is read (a log the workload writes) is taken as it was read, as any copy
 * of a running system is: GNU tar says so with exit status 1 and, with these
 * warnings off, nothing on stderr. Any other problem fails.
 */
export async function tarLive(args: string[]): Promise<void> {
  const result = await run('tar', ['--warning=no-file-changed', '--warning=no-file-removed', ...args], {
    endWithParent: true,
  });
  if (result.exitCode === 0 || (result.exitCode === 1 && result.stderr.trim() === '')) return;
  const detail = (result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ');
  throw new DomainError('dependency_failed', `tar failed (${result.exitCode}): ${detail}`);
}

/** Serialise async work per key (one clone per template, one edit per container). */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await next;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * PATH for workloads and exec: fixed, not the control plane's, with the running
 * Node's directory first so `node` is the same binary everywhere.
 */
export const WORKLOAD_PATH = `${path.dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`;
