import os from 'node:os';
import { sql } from 'kysely';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { hourOf } from './metrics.ts';

/**
 * An edge's requests per tenant, reported to the master database
 * (`usage_edge_counts`), so edges that run apart from the collector count
 * too. It reads the edge's own request counter (what `/metrics` serves; no
 * work per request) and adds what grew since its last report to the current
 * hour's row of this edge and tenant. A report that fails is retried with the
 * next one; what an edge counted after its last report is lost if it dies
 * (never counted twice).
 */
export interface EdgeUsageReporter {
  /** Report now; `now` picks the hour the counts are filed under. */
  flush(now?: Date): Promise<void>;
  close(): Promise<void>;
}

/** The part of an edge's metrics the reporter reads: its request counter, labelled by tenant. */
export interface RequestCounter {
  requests: {
    get(): Promise<{ values: { labels: Partial<Record<string, string | number>>; value: number }[] }>;
  };
}

export function startEdgeUsageReporter(deps: {
  db: Database;
  metrics: RequestCounter;
  log: Logger;
  /** This edge's name in the table; default: the host name and process id. */
  edge?: string;
  intervalMs?: number;
}): EdgeUsageReporter {
  const edge = deps.edge ?? `${os.hostname()}:${process.pid}`;
  const reported = new Map<string, number>();
  let running: Promise<void> | undefined;

  async function report(now: Date): Promise<void> {
    const totals = new Map<string, number>();
    for (const v of (await deps.metrics.requests.get()).values) {
      const tenant = v.labels.tenant;
      if (typeof tenant !== 'string' || tenant === '') continue;
      totals.set(tenant, (totals.get(tenant) ?? 0) + v.value);
    }
    const grown = [...totals]
      .map(([tenant, total]) => ({ tenant, total, add: total - (reported.get(tenant) ?? 0) }))
      .filter((t) => t.add > 0);
    if (grown.length === 0) return;
    const hour = hourOf(now);
    await sql`
      INSERT INTO usage_edge_counts (edge, tenant_id, period_start, requests)
      SELECT ${edge}, g.tenant_id, ${hour}::timestamptz, g.requests
      FROM unnest(${grown.map((g) => g.tenant)}::text[], ${grown.map((g) => g.add)}::bigint[]) AS g (tenant_id, requests)
      WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = g.tenant_id)
      ON CONFLICT (edge, tenant_id, period_start)
      DO UPDATE SET requests = usage_edge_counts.requests + excluded.requests
    `.execute(deps.db);
    for (const g of grown) reported.set(g.tenant, g.total);
  }

  const flush = (now: Date = new Date()): Promise<void> => {
    running = (running ?? Promise.resolve()).then(() =>
      report(now).catch((err: unknown) =>
        deps.log.warn({ err }, 'edge usage report failed; retried next time'),
      ),
    );
    return running;
  };
  const timer = setInterval(() => void flush(), deps.intervalMs ?? 60_000);
  timer.unref();
  return {
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
  };
}
