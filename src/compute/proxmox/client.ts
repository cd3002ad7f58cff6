import { openAsBlob } from 'node:fs';
import { basename } from 'node:path';
import { fetch, FormData, type Agent } from 'undici';
import { DomainError } from '../../core/errors.ts';
import type { Logger } from '../../observability/logger.ts';
import { sleep } from '../shared/run.ts';
import { proxmoxDispatcher, type ProxmoxTrust } from './tls.ts';

export interface PveClientOptions extends ProxmoxTrust {
  url: string;
  tokenId: string;
  tokenSecret: string;
  log: Logger;
  /** How often a task's status is polled (default 250 ms). */
  taskPollMs?: number;
  /** Attempts for an operation that hits "can't lock file … got timeout" (default 6). */
  lockAttempts?: number;
}

type Params = Record<string, string | number | boolean | undefined>;

/** A failed Proxmox call or task, before it becomes a DomainError. */
export class PveError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
  get lockTimeout(): boolean {
    return /can't lock file .* got timeout/.test(this.message);
  }
}

const LOCK_BACKOFF_MS = 200;

/**
 * The Proxmox VE REST client: API-token auth, form-encoded parameters, errors
 * read from the reason phrase or body, tasks awaited by UPID with their exit
 * status checked, and lock timeouts retried with backoff.
 */
export class PveClient {
  private readonly dispatcher: Agent;
  private readonly base: string;

  constructor(private readonly options: PveClientOptions) {
    this.dispatcher = proxmoxDispatcher(options);
    this.base = `${options.url.replace(/\/+$/, '')}/api2/json`;
  }

  /** One API call; lock timeouts are retried. */
  async call<T>(method: string, path: string, params: Params = {}): Promise<T> {
    return this.retryLocks(`${method} ${path}`, () => this.once<T>(method, path, params));
  }

  /** A call that starts a task, awaited to its end; a lock timeout in the call or the task retries both. */
  async task(method: string, path: string, params: Params = {}, timeoutMs = 600_000): Promise<void> {
    await this.retryLocks(`${method} ${path}`, async () => {
      const upid = await this.once<string>(method, path, params);
      await this.waitTask(upid, timeoutMs);
    });
  }

  /**
   * Upload `file` (multipart, as the web interface does) to a storage:
   * `fields` plus the file under `filename`, then await the import task.
   */
  async upload(
    apiPath: string,
    fields: Record<string, string>,
    file: string,
    timeoutMs = 1_800_000,
  ): Promise<void> {
    await this.retryLocks(`POST ${apiPath}`, async () => {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      form.append('filename', await openAsBlob(file), basename(file));
      const upid = await this.once<string>('POST', apiPath, {}, { form, timeoutMs });
      await this.waitTask(upid, timeoutMs);
    });
  }

  async waitTask(upid: string, timeoutMs: number): Promise<void> {
    const node = upid.split(':')[1]!;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.once<{ status: string; exitstatus?: string }>(
        'GET',
        `/nodes/${node}/tasks/${encodeURIComponent(upid)}/status`,
      );
      if (s.status === 'stopped') {
        if (s.exitstatus === 'OK' || s.exitstatus?.startsWith('WARNINGS')) return;
        throw new PveError(500, s.exitstatus ?? 'task ended without an exit status');
      }
      if (Date.now() > deadline) throw new PveError(504, `task ${upid} still running after ${timeoutMs} ms`);
      await sleep(this.options.taskPollMs ?? 250);
    }
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async retryLocks<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const attempts = this.options.lockAttempts ?? 6;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof PveError && err.lockTimeout) || attempt >= attempts) throw toDomain(err, what);
        const delay = LOCK_BACKOFF_MS * 2 ** (attempt - 1) * (0.5 + Math.random());
        this.options.log.warn(
          { what, attempt, delayMs: Math.round(delay) },
          'proxmox lock timeout, retrying',
        );
        await sleep(delay);
      }
    }
  }

  private async once<T>(
    method: string,
    path: string,
    params: Params = {},
    multipart?: { form: FormData; timeoutMs: number },
  ): Promise<T> {
    const entries = Object.entries(params)
      .filter((e): e is [string, string | number | boolean] => e[1] !== undefined)
      .map(([k, v]): [string, string] => [k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v)]);
    const form = new URLSearchParams(entries).toString();
    const inBody = method === 'POST' || method === 'PUT';
    const url = `${this.base}${path}${!inBody && form ? `?${form}` : ''}`;
    let res;
    try {
      res = await fetch(url, {
        method,
        dispatcher: this.dispatcher,
        headers: {
          authorization: `PVEAPIToken=${this.options.tokenId}=${this.options.tokenSecret}`,
          ...(inBody && !multipart ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        },
        body: multipart ? multipart.form : inBody ? form : undefined,
        signal: AbortSignal.timeout(multipart?.timeoutMs ?? 30_000),
      });
    } catch (err) {
      const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
      throw new PveError(599, `cannot reach ${this.options.url}: ${cause}`);
    }
    const body = (await res.json().catch(() => ({}))) as {
      data?: T;
      message?: string;
      errors?: Record<string, string>;
    };
    if (res.ok) return body.data as T;
    const detail = body.errors ? ` ${JSON.stringify(body.errors)}` : '';
    throw new PveError(res.status, `${(body.message ?? res.statusText).trim()}${detail}`);
  }
}

function toDomain(err: unknown, what: string): DomainError {
  if (!(err instanceof PveError))
    return err instanceof DomainError ? err : new DomainError('internal', String(err), { cause: err });
  const message = `Proxmox ${what}: ${err.message}`;
  if (err.status === 401 || err.status === 403)
    return new DomainError(
      'dependency_failed',
      `${message} (check PROXMOX_TOKEN_ID/SECRET and its permissions)`,
      { cause: err },
    );
  if (err.status === 595 || err.status === 599)
    return new DomainError('unavailable', message, { cause: err });
  // A 400 means this driver sent what the API rejects: a platform bug, not the caller's.
  if (err.status === 400) return new DomainError('internal', message, { cause: err });
  return new DomainError('dependency_failed', message, { cause: err, details: { status: err.status } });
}
