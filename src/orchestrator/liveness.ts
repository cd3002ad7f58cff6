import { randomInt } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { newId } from '../core/ids.ts';

/** Advisory lock namespace (classid) of worker-process liveness locks. */
export const PROCESS_LOCK_NS = 7_344_212;

export interface ProcessRegistration {
  id: string;
  /** Record a graphile-worker pool id as this process's (its jobs are `locked_by` it). */
  addPool(poolId: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * Register this worker process: take a session advisory lock on a dedicated
 * connection and record it in `worker_processes`. PostgreSQL drops the lock
 * when the process dies, however it dies; `sweepDeadWorkers` relies on that.
 */
export async function registerProcess(
  url: string,
  onLost: (err: Error) => void,
): Promise<ProcessRegistration> {
  const client = new pg.Client({ connectionString: url, application_name: 'aiqso-worker-liveness' });
  client.on('error', onLost);
  await client.connect();
  const id = newId('host').replace(/^hst_/, 'wkp_');
  let lockKey = 0;
  for (;;) {
    lockKey = randomInt(1, 2 ** 31 - 1);
    const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [
      PROCESS_LOCK_NS,
      lockKey,
    ]);
    if (rows[0]!.ok) break;
  }
  // A row left with this key by a dead process is stale: its lock was free.
  await client.query(
    `INSERT INTO worker_processes (id, lock_key, hostname, pid) VALUES ($1, $2, $3, $4)
     ON CONFLICT (lock_key) DO UPDATE SET id = excluded.id, hostname = excluded.hostname,
       pid = excluded.pid, pool_ids = '{}', started_at = now()`,
    [id, lockKey, os.hostname(), process.pid],
  );
  return {
    id,
    async addPool(poolId) {
      await client.query('UPDATE worker_processes SET pool_ids = array_append(pool_ids, $2) WHERE id = $1', [
        id,
        poolId,
      ]);
    },
    async close() {
      client.removeListener('error', onLost);
      client.on('error', () => undefined);
      await client.query('DELETE FROM worker_processes WHERE id = $1', [id]).catch(() => undefined);
      await client.end().catch(() => undefined);
    },
  };
}

/**
 * Release the jobs of worker processes that died (their liveness lock is
 * gone), and of pools no live process claims once they have held a job for
 * `unclaimedGraceSeconds` (a pool is claimed a moment after it starts).
 * Without this a killed worker's jobs would wait out graphile-worker's
 * four-hour lock expiry. Returns the number of jobs released.
 */
export async function sweepDeadWorkers(pool: pg.Pool, unclaimedGraceSeconds = 30): Promise<number> {
  const { rows } = await pool.query<{ pools: string[] }>(
    `WITH live_locks AS (
       SELECT objid::bigint AS lock_key FROM pg_locks
        WHERE locktype = 'advisory' AND classid = $1 AND objsubid = 2 AND granted
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
     ), dead AS (
       DELETE FROM worker_processes WHERE lock_key NOT IN (SELECT lock_key FROM live_locks)
       RETURNING pool_ids
     ), live_pools AS (
       SELECT unnest(pool_ids) AS pool_id FROM worker_processes
        WHERE lock_key IN (SELECT lock_key FROM live_locks)
     )
     SELECT array(
       SELECT DISTINCT locked_by FROM graphile_worker._private_jobs
        WHERE locked_by IS NOT NULL
          AND (locked_by IN (SELECT unnest(pool_ids) FROM dead)
               OR (locked_by NOT IN (SELECT pool_id FROM live_pools)
                   AND locked_at < now() - make_interval(secs => $2)))
     ) AS pools`,
    [PROCESS_LOCK_NS, unclaimedGraceSeconds],
  );
  const pools = rows[0]?.pools ?? [];
  if (pools.length === 0) return 0;
  const { rows: counted } = await pool.query<{ n: number }>(
    `WITH n AS (SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE locked_by = ANY($1))
     SELECT n.n, graphile_worker.force_unlock_workers($1) FROM n`,
    [pools],
  );
  return counted[0]?.n ?? 0;
}
