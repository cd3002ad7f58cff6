import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { requeueAfter, type RequeueAfter } from '../core/reconcile.ts';

/** How often a workload still booting is tried: a refused connect costs next to nothing. */
const CONNECT_EVERY_MS = 20;
/** How often one that listens but does not answer as it should yet is asked again. */
const ASK_EVERY_MS = 100;
const ASK_TIMEOUT_MS = 2_000;
/**
 * When a reconcile that hands over a watch looks again anyway: a fallback for
 * when the process watching is not there any more, not a poll.
 */
const WATCHED_LOOK_MS = 1_000;

/** Whether something accepts a TCP connection at `endpoint` now. */
function accepts(endpoint: { host: string; port: number }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(endpoint);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Whether `GET <path>` at `endpoint` answers `status` now. */
function answersWith(
  endpoint: { host: string; port: number },
  path: string,
  status: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ ...endpoint, path, agent: false, timeout: ASK_TIMEOUT_MS }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode === status));
      res.once('error', () => resolve(false));
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}

/**
 * Resolves true once a workload booting at `endpoint` answers `GET <path>`
 * with `status` (200 by default), false when `signal` aborts first. It tries a bare connect until
 * the port listens (a refused connect is one round trip on the host), then
 * the request itself: a watch for a reconcile's "not yet" (`RequeueAfter.wake`),
 * so that the look comes when the workload is up rather than at its next poll.
 */
export async function whenAnswering(
  endpoint: { host: string; port: number },
  path: string,
  signal: AbortSignal,
  status = 200,
): Promise<boolean> {
  try {
    while (!signal.aborted) {
      if (await accepts(endpoint)) {
        if (await answersWith(endpoint, path, status)) return !signal.aborted;
        await sleep(ASK_EVERY_MS, undefined, { signal, ref: false });
      } else await sleep(CONNECT_EVERY_MS, undefined, { signal, ref: false });
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  }
  return false;
}

/**
 * A health wait's "not yet": with the workload's endpoint known, watched
 * meanwhile off the slots (`whenAnswering`), the queued look a fallback at
 * least `WATCHED_LOOK_MS` away; without one, the look after `pollMs`.
 */
export function lookWhenAnswering(
  pollMs: number,
  reason: string,
  endpoint: { host: string; port: number } | undefined,
  path: string,
  status = 200,
): RequeueAfter {
  if (!endpoint) return requeueAfter(pollMs, reason);
  return requeueAfter(Math.max(pollMs, WATCHED_LOOK_MS), reason, (signal) =>
    whenAnswering(endpoint, path, signal, status),
  );
}
