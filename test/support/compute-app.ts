import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { ContainerInfo, Workload } from '../../src/core/compute.ts';
import { sleep } from '../../src/compute/shared/run.ts';

/** The small Node HTTP app tests and benchmarks run in containers. */
export const APP_DIR = fileURLToPath(new URL('../fixtures/compute-app/', import.meta.url));
/** An app that prints what it is asked to (GET /say?text=…), for the service-log tests. */
export const LOG_APP_DIR = fileURLToPath(new URL('../fixtures/log-app/', import.meta.url));
export const appWorkload = (): Workload => ({ kind: 'app', dir: path.resolve(APP_DIR), entry: 'server.mjs' });

/** GET / on the container's endpoint, retrying while the app boots (up to `waitMs`). */
export async function fetchApp(
  info: ContainerInfo,
  waitMs = 20_000,
): Promise<{ name: string | null; pid: number; packages: boolean }> {
  if (!info.endpoint) throw new Error(`${info.name} has no endpoint`);
  const url = `http://${info.endpoint.host}:${info.endpoint.port}/`;
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      return (await res.json()) as { name: string | null; pid: number; packages: boolean };
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${url} did not answer: ${(err as Error).message}`);
      await sleep(50);
    }
  }
}
