import { open, stat } from 'node:fs/promises';
import { sql } from 'kysely';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import type { EdgeUsageReporter } from './edge-report.ts';
import { hourOf } from './metrics.ts';

/**
 * The nginx edge's requests per tenant, read from its access log (the
 * `aiqso` JSON format of src/edge/nginx/render.ts: `time`, `tenantId`,
 * `bytes`). Each read takes the complete lines after the stored offset, adds
 * their requests and response bytes per tenant and hour (the hour of the
 * line's `time`) to `usage_edge_counts`, and moves the offset, in one
 * transaction that holds the offset's row: a reader killed mid-way reads
 * those lines again, never twice, and two readers of one log take turns. A
 * log that was rotated (another file at the path) or truncated is read from
 * its start; lines of the old file not read before the rotation are not
 * counted.
 */
export interface NginxLogReporterOptions {
  db: Database;
  /** The access log nginx writes. */
  file: string;
  /** This edge's name in usage_edge_counts and usage_log_offsets. */
  edge: string;
  log: Logger;
  intervalMs?: number;
  /** The most bytes one transaction reads (a long backlog is read in several). */
  chunkBytes?: number;
}

interface Counted {
  tenant: string;
  hour: Date;
  requests: number;
  bytes: number;
}

/** The lines of `text` (complete lines only) counted per tenant and hour; lines without a tenant count nothing. */
export function countAccessLines(text: string): Counted[] {
  const counts = new Map<string, Counted>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let entry: { time?: unknown; tenantId?: unknown; bytes?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      continue; // Not a line of ours (nginx writes only the aiqso format here): skipped, not fatal.
    }
    if (typeof entry.tenantId !== 'string' || entry.tenantId === '' || typeof entry.time !== 'string')
      continue;
    const at = new Date(entry.time);
    if (Number.isNaN(at.getTime())) continue;
    const hour = hourOf(at);
    const key = `${entry.tenantId}|${hour.getTime()}`;
    let c = counts.get(key);
    if (!c) counts.set(key, (c = { tenant: entry.tenantId, hour, requests: 0, bytes: 0 }));
    c.requests++;
    c.bytes += typeof entry.bytes === 'number' && entry.bytes > 0 ? entry.bytes : 0;
  }
  return [...counts.values()];
}

export function startNginxLogReporter(options: NginxLogReporterOptions): EdgeUsageReporter {
  const { db, file, edge } = options;
  const chunk = options.chunkBytes ?? 4 * 2 ** 20;
  let running: Promise<void> | undefined;

  /** Read one chunk after the stored offset; true when there may be more to read. */
  async function readChunk(): Promise<boolean> {
    const info = await stat(file, { bigint: false }).catch(() => undefined);
    if (!info) return false;
    const fileId = `${info.dev}:${info.ino}`;
    return db.transaction().execute(async (trx) => {
      await trx
        .insertInto('usage_log_offsets')
        .values({ edge, file_id: fileId, read_bytes: 0 })
        .onConflict((oc) => oc.column('edge').doNothing())
        .execute();
      const row = await trx
        .selectFrom('usage_log_offsets')
        .select(['file_id', 'read_bytes'])
        .where('edge', '=', edge)
        .forUpdate()
        .executeTakeFirstOrThrow();
      // Another file at the path (rotated), or the same one cut shorter: from its start.
      let from = row.file_id === fileId ? Number(row.read_bytes) : 0;
      if (from > info.size) from = 0;
      if (from === info.size) {
        if (row.file_id !== fileId)
          await trx
            .updateTable('usage_log_offsets')
            .set({ file_id: fileId, read_bytes: from })
            .where('edge', '=', edge)
            .execute();
        return false;
      }
      const handle = await open(file, 'r');
      let text: string;
      try {
        const want = Math.min(chunk, info.size - from);
        const buf = Buffer.alloc(want);
        const { bytesRead } = await handle.read(buf, 0, want, from);
        // Complete lines only: a line nginx is still writing is read with the next chunk.
        const end = buf.subarray(0, bytesRead).lastIndexOf(0x0a) + 1;
        if (end === 0) return false;
        text = buf.subarray(0, end).toString('utf8');
        from += end;
      } finally {
        await handle.close();
      }
      const counted = countAccessLines(text);
      if (counted.length > 0)
        await sql`
          INSERT INTO usage_edge_counts (edge, tenant_id, period_start, requests, response_bytes)
          SELECT ${edge}, c.tenant_id, c.hour, c.requests, c.bytes
          FROM unnest(${counted.map((c) => c.tenant)}::text[], ${counted.map((c) => c.hour.toISOString())}::timestamptz[],
                      ${counted.map((c) => c.requests)}::bigint[], ${counted.map((c) => c.bytes)}::bigint[])
            AS c (tenant_id, hour, requests, bytes)
          WHERE EXISTS (SELECT 1 FROM tenants t WHERE t.id = c.tenant_id)
          ON CONFLICT (edge, tenant_id, period_start)
          DO UPDATE SET requests = usage_edge_counts.requests + excluded.requests,
            response_bytes = usage_edge_counts.response_bytes + excluded.response_bytes
        `.execute(trx);
      await trx
        .updateTable('usage_log_offsets')
        .set({ file_id: fileId, read_bytes: from, updated_at: sql`now()` })
        .where('edge', '=', edge)
        .execute();
      return from < info.size;
    });
  }

  async function report(): Promise<void> {
    while (await readChunk()) {
      /* the next chunk */
    }
  }

  const flush = (): Promise<void> => {
    running = (running ?? Promise.resolve()).then(() =>
      report().catch((err: unknown) =>
        options.log.warn({ err }, 'nginx access log usage read failed; retried next time'),
      ),
    );
    return running;
  };
  const timer = setInterval(() => void flush(), options.intervalMs ?? 15_000);
  timer.unref();
  return {
    flush: () => flush(),
    async close() {
      clearInterval(timer);
      await flush();
    },
  };
}
