import http from 'node:http';
import https from 'node:https';
import type { LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Kysely } from 'kysely';
import type { Task } from 'graphile-worker';
import { SIGNATURE_HEADER, signatureFor, type EventBody, type EventType } from '../core/events.ts';
import type { DB } from '../db/tables.ts';
import { sealedContext } from '../identity/rotate-master-key.ts';
import type { SecretBox } from '../identity/secrets.ts';
import type { Logger } from '../observability/logger.ts';
import { VERSION } from '../version.ts';
import { queueLane, type LanePayload } from './lanes.ts';
import { addressesFor, urlHost, type Resolver, type TargetPolicy } from './targets.ts';

export interface DeliveryDeps {
  db: Kysely<DB>;
  box: () => Promise<SecretBox>;
  policy: TargetPolicy;
  timeoutMs: number;
  /** Wait before the first retry; each further one waits twice as long, at most MAX_BACKOFF_MS. */
  backoffMs: number;
  /** Retries stop this long after a delivery's first attempt (or its redelivery). */
  retryMs: number;
  log: Logger;
  resolve?: Resolver;
}

const MAX_BACKOFF_MS = 3_600_000;
/** Deliveries one lane run makes before it yields its worker slot (and queues itself again). */
const PER_RUN = 50;
const EXCERPT_CHARS = 500;

export interface AttemptResult {
  statusCode: number | null;
  excerpt: string | null;
  durationMs: number;
  error: string | null;
}

/** The delay before retry number `failures` (1 = the first retry). */
export function backoffFor(failures: number, baseMs: number): number {
  return Math.min(baseMs * 2 ** Math.max(0, failures - 1), MAX_BACKOFF_MS);
}

/** The body an event is delivered with: the same for every attempt and every endpoint. */
export function eventBody(event: {
  id: string;
  type: string;
  tenant_id: string | null;
  created_at: Date;
  data: Record<string, unknown>;
}): string {
  const body: EventBody = {
    id: event.id,
    type: event.type as EventType,
    created: event.created_at.toISOString(),
    tenant: event.tenant_id,
    data: event.data,
  };
  return JSON.stringify(body);
}

/**
 * POST `body` to `url`, connecting only to addresses the policy allows (the
 * host is resolved and checked for this very connection, so a name that
 * resolves to a private address after registration is refused). Redirects
 * are not followed; any answer but 2xx is a failure.
 */
export async function postSigned(
  url: string,
  body: string,
  headers: Record<string, string>,
  options: { policy: TargetPolicy; timeoutMs: number; resolve?: Resolver },
): Promise<AttemptResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let target: URL;
  try {
    target = new URL(url);
    const host = urlHost(target);
    if (isIP(host)) await addressesFor(host, options.policy, options.resolve);
  } catch (err) {
    return { statusCode: null, excerpt: null, durationMs: elapsed(), error: (err as Error).message };
  }
  const lookup = (
    hostname: string,
    opts: { all?: boolean },
    cb: (err: Error | null, address: string | LookupAddress[], family?: number) => void,
  ) => {
    addressesFor(hostname, options.policy, options.resolve).then(
      (list) => (opts.all ? cb(null, list) : cb(null, list[0]!.address, list[0]!.family)),
      (err: unknown) => cb(err as Error, ''),
    );
  };
  return new Promise<AttemptResult>((resolve) => {
    const client = target.protocol === 'https:' ? https : http;
    const req = client.request(
      target,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
        lookup: lookup,
        signal: AbortSignal.timeout(options.timeoutMs),
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (size < EXCERPT_CHARS * 4) chunks.push(chunk);
          size += chunk.length;
        });
        const finish = () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8').slice(0, EXCERPT_CHARS);
          resolve({
            statusCode: status,
            excerpt: text,
            durationMs: elapsed(),
            error: status >= 200 && status < 300 ? null : `the receiver answered ${status}`,
          });
        };
        res.on('end', finish);
        res.on('error', (err) =>
          resolve({
            statusCode: res.statusCode ?? null,
            excerpt: null,
            durationMs: elapsed(),
            error: err.message,
          }),
        );
      },
    );
    req.on('error', (err) => {
      const message =
        err.name === 'AbortError' || err.name === 'TimeoutError'
          ? `no answer within ${options.timeoutMs} ms`
          : err.message;
      resolve({ statusCode: null, excerpt: null, durationMs: elapsed(), error: message });
    });
    req.end(body);
  });
}

/**
 * The lane task: delivers an endpoint's pending deliveries of one lane in
 * event order, one at a time. A failed attempt is recorded and the lane waits
 * for its retry (exponential back-off) before anything later goes out; after
 * the retry window the delivery is `failed` and the lane moves on.
 */
export function laneTask(deps: DeliveryDeps): Task {
  const { db } = deps;
  return async (payload) => {
    const { endpoint, lane } = payload as LanePayload;
    for (let n = 0; n < PER_RUN; n++) {
      const head = await db
        .selectFrom('webhook_deliveries as d')
        .innerJoin('webhook_events as e', 'e.id', 'd.event_id')
        .innerJoin('webhook_endpoints as w', 'w.id', 'd.endpoint_id')
        .select([
          'd.id',
          'd.attempts',
          'd.retry_from',
          'd.next_attempt_at',
          'd.event_seq',
          'e.id as event_id',
          'e.type',
          'e.tenant_id',
          'e.created_at',
          'e.data',
          'w.url',
          'w.secret_enc',
        ])
        .where('d.endpoint_id', '=', endpoint)
        .where('d.lane', '=', lane)
        .where('d.status', '=', 'pending')
        .orderBy('d.event_seq')
        .limit(1)
        .executeTakeFirst();
      if (!head) return;
      // An earlier event of this lane whose deliveries are not made yet goes first.
      const earlier = await db
        .selectFrom('webhook_events')
        .select('id')
        .where((eb) => (lane === '' ? eb('tenant_id', 'is', null) : eb('tenant_id', '=', lane)))
        .where('fanned_out_at', 'is', null)
        .where('seq', '<', head.event_seq)
        .where('created_at', '>', new Date(Date.now() - 3_600_000))
        .executeTakeFirst();
      if (earlier) {
        await queueLane(db, endpoint, lane, new Date(Date.now() + 500));
        return;
      }
      if (head.next_attempt_at.getTime() > Date.now()) {
        await queueLane(db, endpoint, lane, head.next_attempt_at);
        return;
      }
      const secret = (await deps.box()).open(head.secret_enc, sealedContext('webhook_endpoints', endpoint));
      const body = eventBody({ ...head, id: head.event_id });
      const timestamp = Math.floor(Date.now() / 1000);
      const result = await postSigned(
        head.url,
        body,
        {
          'content-type': 'application/json',
          'user-agent': `AIQSO-Webhooks/${VERSION}`,
          [SIGNATURE_HEADER.toLowerCase()]: signatureFor(secret, body, timestamp),
          'aiqso-event': head.type,
          'aiqso-event-id': head.event_id,
          'aiqso-delivery': head.id,
        },
        { policy: deps.policy, timeoutMs: deps.timeoutMs, resolve: deps.resolve },
      );
      const attempts = head.attempts + 1;
      const delivered = result.error === null;
      const givesUp = !delivered && Date.now() - head.retry_from.getTime() >= deps.retryMs;
      const next = new Date(Date.now() + backoffFor(attempts, deps.backoffMs));
      const recorded = await db.transaction().execute(async (trx) => {
        const updated = await trx
          .updateTable('webhook_deliveries')
          .set({
            attempts,
            status: delivered ? 'delivered' : givesUp ? 'failed' : 'pending',
            last_status: result.statusCode,
            last_error: result.error,
            delivered_at: delivered ? new Date() : null,
            next_attempt_at: delivered || givesUp ? new Date() : next,
          })
          .where('id', '=', head.id)
          .where('status', '=', 'pending')
          .where('attempts', '=', head.attempts)
          .executeTakeFirst();
        if (updated.numUpdatedRows === 0n) return false;
        await trx
          .insertInto('webhook_attempts')
          .values({
            delivery_id: head.id,
            status_code: result.statusCode,
            response_excerpt: result.excerpt,
            duration_ms: result.durationMs,
            error: result.error,
          })
          .execute();
        return true;
      });
      if (!recorded) continue;
      if (!delivered) {
        const fields = {
          endpoint,
          delivery: head.id,
          event: head.type,
          attempt: attempts,
          err: result.error,
        };
        if (givesUp) deps.log.error(fields, 'webhook delivery failed for good');
        else {
          deps.log.warn(fields, 'webhook delivery failed; will retry');
          await queueLane(db, endpoint, lane, next);
          return;
        }
      }
    }
    await queueLane(db, endpoint, lane);
  };
}
