import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const AIQSO_BIN = fileURLToPath(new URL('../../bin/aiqso.js', import.meta.url));

// A test that times out must not leave a platform running: whatever this file started dies with the test process.
const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of started)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

function track(child: ChildProcess): ChildProcess {
  started.add(child);
  child.on('exit', () => started.delete(child));
  return child;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Environment for a child `aiqso`: the test's own, minus anything that would point it at another platform. */
export function cliEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, AIQSO_LOG_LEVEL: 'info' };
  return { ...env, ...extra };
}

export function runCli(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [AIQSO_BIN, ...args], {
      env: cliEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`aiqso ${args.join(' ')} timed out\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Start a long-running `aiqso` command; resolves once `ready` appears in its
 * stderr. With `cpu`, the process may run on that CPU only (`taskset`).
 * `launcher` is what runs before `args`: this checkout's bin/aiqso.js by default.
 */
export function startCli(
  args: string[],
  env: Record<string, string>,
  ready: string,
  timeoutMs = 60_000,
  cpu?: number,
  launcher: string[] = [process.execPath, AIQSO_BIN],
): Promise<{ child: ChildProcess; output: () => string; exited: Promise<CliResult> }> {
  return new Promise((resolve, reject) => {
    const command = [...launcher, ...args];
    if (cpu !== undefined) command.unshift('taskset', '-c', String(cpu));
    const child = spawn(command[0]!, command.slice(1), {
      env: cliEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    let stdout = '';
    let stderr = '';
    const exited = new Promise<CliResult>((done) =>
      child.on('close', (code, signal) => done({ code, signal, stdout, stderr })),
    );
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`aiqso ${args.join(' ')} did not print "${ready}" in time\n${stderr}\n${stdout}`));
    }, timeoutMs);
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (stderr.includes(ready)) {
        clearTimeout(timer);
        resolve({ child, output: () => stderr + stdout, exited });
      }
    });
    void exited.then((r) => {
      clearTimeout(timer);
      if (!stderr.includes(ready))
        reject(
          new Error(
            `aiqso ${args.join(' ')} exited early (${r.code ?? r.signal})\n${r.stderr}\n${r.stdout.slice(-2000)}`,
          ),
        );
    });
  });
}
