import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { DomainError } from '../core/errors.ts';
import type { DnsHook } from './acme.ts';

/**
 * DNS-01 through an executable the operator provides (AIQSO_ACME_DNS_HOOK),
 * run with an argv array, never through a shell:
 *
 *     <hook> create _acme-challenge.example.com <txt-value>
 *     <hook> remove _acme-challenge.example.com <txt-value>
 *
 * `<txt-value>` is what the TXT record must hold: acme-client hands the
 * base64url SHA-256 digest of the key authorisation to the challenge callback
 * for dns-01 (RFC 8555 §8.4). A wildcard and its apex share one record name
 * with two values, so `create` adds a value and `remove` removes only that one.
 *
 * Calls are made one at a time (acme-client answers an order's authorisations
 * in parallel, and a provider's API may replace the whole record set), and the
 * wait for propagation after `create` happens outside that queue.
 */
export interface CommandDnsHookOptions {
  path: string;
  /** Seconds to wait after a successful `create` before the CA is told to look. */
  propagationSeconds: number;
  /** How long one call may take before it is killed (with everything it started). */
  timeoutMs?: number;
  /** The hook's environment (config gives the operator's without the platform's settings); default this process's. */
  env?: Record<string, string | undefined>;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const STDERR_LIMIT = 64 * 1024;

function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim());
  return lines.filter(Boolean).at(-1) ?? '';
}

/** Run the hook once; resolves on exit 0, otherwise rejects with one line naming the hook and its stderr's last line. */
function runHook(
  hook: string,
  args: [string, string, string],
  timeoutMs: number,
  env: Record<string, string | undefined> | undefined,
): Promise<void> {
  const what = `DNS hook ${hook} ${args[0]} ${args[1]}`;
  return new Promise((resolve, reject) => {
    let stderr = '';
    let timedOut = false;
    let child;
    try {
      // Its own process group, so a timeout kills whatever the hook started too (curl, a provider CLI).
      child = spawn(hook, args, {
        stdio: ['ignore', 'ignore', 'pipe'],
        detached: true,
        env,
      });
    } catch (err) {
      reject(new DomainError('dependency_failed', `${what} could not start: ${(err as Error).message}`));
      return;
    }
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-STDERR_LIMIT);
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new DomainError('dependency_failed', `${what} could not start: ${err.message}`, { cause: err }));
    });
    // 'exit', not 'close': a grandchild left holding stderr open must not hold the order up.
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const said = lastLine(stderr);
      const tail = said ? `: ${said}` : '';
      if (timedOut)
        reject(new DomainError('dependency_failed', `${what} timed out after ${timeoutMs / 1000}s${tail}`));
      else if (code === 0) resolve();
      else
        reject(
          new DomainError(
            'dependency_failed',
            `${what} failed (${code === null ? `signal ${signal}` : `exit ${code}`})${tail}`,
          ),
        );
    });
  });
}

export function commandDnsHook(options: CommandDnsHookOptions): DnsHook {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let queue: Promise<unknown> = Promise.resolve();
  const serial = (args: [string, string, string]): Promise<void> => {
    const run = queue.then(() => runHook(options.path, args, timeoutMs, options.env));
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    async createTxt(name, value) {
      await serial(['create', name, value]);
      if (options.propagationSeconds > 0) await sleep(options.propagationSeconds * 1000);
    },
    removeTxt: (name, value) => serial(['remove', name, value]),
  };
}
