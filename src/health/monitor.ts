import { emitTenantEvent } from '../events/emit.ts';
import { setMaxListeners } from 'node:events';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Task } from 'graphile-worker';
import { containerName, type ComputeDriver } from '../core/compute.ts';
import { newId } from '../core/ids.ts';
import type { Database } from '../db/database.ts';
import type { DB, HealthTargetKind, IncidentRung } from '../db/tables.ts';
import { TENANT_KIND, TENANT_SERVICE_KIND } from '../core/kinds.ts';
import type { Logger } from '../observability/logger.ts';
import { errorText } from '../orchestrator/engine.ts';
import { writeOutbox } from '../orchestrator/outbox.ts';
import { requestReconcile } from '../orchestrator/queue.ts';
import { serviceTemplateSchema } from '../catalog/schema.ts';
import { ladderStep, NEW_RECORD, type LadderPolicy, type LadderRecord, type Rung } from './ladder.ts';

/**
 * The health monitor. Every round probes each active tenant's dashboard and
 * each active (or degraded) service at its template's health path, at the
 * upstream its route points the edge to, all at once with a timeout. The
 * round's job only takes the round and a snapshot of the targets, then ends:
 * the probes wait in this process's probe loop, outside any worker slot, and
 * their results are written back when they are in. Each result moves the
 * target along the repair ladder (ladder.ts); what is recorded is the
 * target's current record with a rolling window of its last probes, its state
 * changes (for uptime) and incidents — never a row per probe. Repairs run as
 * their own jobs; mails go through the outbox.
 *
 * One round at a time across processes: a round is held by a session
 * advisory lock on a connection of its own, from snapshot to last write; a
 * round's job that finds it taken ends at once. Crash safety: every round's
 * job first queues the next one (an interval plus a timeout later), and a
 * round that ends re-queues it an interval after its end; a process killed
 * mid-round loses its lock with its connection and that round's results, and
 * the next round runs on any worker.
 */

export const HEALTH_TASK = 'health';
export const REPAIR_TASK = 'health-repair';
/** Probes kept in a target's rolling window. */
const WINDOW = 32;
/** More incidents than this opening (or resolving) in one round reach the admins as one digest. */
export const DIGEST_THRESHOLD = 5;
/** Probes in flight at once. */
const PROBE_CONCURRENCY = 200;

export interface HealthTarget {
  targetId: string;
  kind: HealthTargetKind;
  tenantId: string;
  slug: string;
  /** What people call it: "dashboard", or the service's name. */
  name: string;
  containerName: string;
  upstream: { host: string; port: number } | null;
  path: string;
  expect: number;
  /** The resource whose reconcile recreates it. */
  resource: { kind: string; id: string };
  /** A repair is under way: its job is queued or running, or the resource is being reconciled. */
  busy: boolean;
}

export interface MonitorDeps {
  db: Database;
  compute: ComputeDriver;
  log: Logger;
  intervalSeconds: number;
  timeoutSeconds: number;
  failures: number;
}

export const policyOf = (deps: Pick<MonitorDeps, 'intervalSeconds' | 'failures'>): LadderPolicy => ({
  failures: deps.failures,
  intervalMs: deps.intervalSeconds * 1000,
  stableProbes: 3,
});

/** Everything the monitor probes now. */
export async function healthTargets(db: Kysely<DB>): Promise<HealthTarget[]> {
  const dashboards = await db
    .selectFrom('tenants as t')
    .leftJoin('routes as r', (j) =>
      j.onRef('r.tenant_id', '=', 't.id').on('r.path_prefix', '=', '').on('r.tenant_service_id', 'is', null),
    )
    .select(['t.id', 't.slug', 'r.upstream_host', 'r.upstream_port'])
    .where('t.status', '=', 'active')
    .execute();
  const services = await db
    .selectFrom('tenant_services as ts')
    .innerJoin('services as s', 's.id', 'ts.service_id')
    .innerJoin('tenants as t', 't.id', 'ts.tenant_id')
    .leftJoin('routes as r', 'r.tenant_service_id', 'ts.id')
    .select(['ts.id', 'ts.tenant_id', 'ts.container_name', 't.slug', 's.name', 's.template'])
    .select(['r.upstream_host', 'r.upstream_port'])
    .where('ts.status', 'in', ['active', 'degraded'])
    .where('t.status', '=', 'active')
    .execute();
  const upstream = (host: string | null, port: number | null) =>
    host !== null && port !== null ? { host, port } : null;
  const targets: HealthTarget[] = dashboards.map((d) => ({
    targetId: d.id,
    kind: 'dashboard',
    tenantId: d.id,
    slug: d.slug,
    name: 'dashboard',
    containerName: containerName(d.id, 'dashboard'),
    upstream: upstream(d.upstream_host, d.upstream_port),
    path: '/healthz',
    expect: 200,
    resource: { kind: TENANT_KIND, id: d.id },
    busy: false,
  }));
  const busy = await busyTargets(db);
  for (const t of targets) t.busy = busy.has(t.targetId);
  for (const s of services) {
    const template = serviceTemplateSchema.safeParse(s.template);
    if (!template.success || !s.container_name) continue;
    targets.push({
      targetId: s.id,
      kind: 'service',
      tenantId: s.tenant_id,
      slug: s.slug,
      name: s.name,
      containerName: s.container_name,
      upstream: upstream(s.upstream_host, s.upstream_port),
      path: template.data.health.path,
      expect: template.data.health.status,
      resource: { kind: TENANT_SERVICE_KIND, id: s.id },
      busy: busy.has(s.id),
    });
  }
  return targets;
}

/** Targets with a repair job queued or running, whose resource is not (yet) reconciled, or being restored. */
async function busyTargets(db: Kysely<DB>): Promise<Set<string>> {
  const { rows } = await sql<{ id: string }>`
    SELECT substr(key, length('health-repair:') + 1) AS id FROM graphile_worker.jobs
     WHERE key LIKE 'health-repair:%' AND attempts < max_attempts
    UNION
    SELECT id FROM resources
     WHERE kind IN (${TENANT_KIND}, ${TENANT_SERVICE_KIND}) AND phase IN ('pending', 'reconciling')
    UNION
    SELECT tenant_service_id FROM restores WHERE status = 'running'`.execute(db);
  return new Set(rows.map((r) => r.id));
}

/** One probe: healthy, or why not ("answered 500", "no answer within 5 s", "connection refused"). */
export async function probeTarget(
  target: Pick<HealthTarget, 'upstream' | 'path' | 'expect'>,
  timeoutMs: number,
  abort?: AbortSignal,
): Promise<{ ok: boolean; result: string }> {
  if (!target.upstream) return { ok: false, result: 'no upstream to probe' };
  const { host, port } = target.upstream;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}${target.path}`;
  // One controller with a timer of our own, not AbortSignal.any([AbortSignal.timeout(), abort]): on
  // Node 20 the timeout signal inside such a composite can be garbage-collected before it fires
  // (nodejs/node#57736), and the probe, hence the whole round, would then never end.
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new DOMException(`no answer within ${timeoutMs} ms`, 'TimeoutError')),
    timeoutMs,
  );
  const stop = () => controller.abort(abort?.reason);
  abort?.addEventListener('abort', stop, { once: true });
  try {
    if (abort?.aborted) stop();
    const res = await fetch(url, { signal: controller.signal, redirect: 'manual' });
    await res.body?.cancel();
    return res.status === target.expect
      ? { ok: true, result: `answered ${res.status}` }
      : { ok: false, result: `answered ${res.status}, expected ${target.expect}` };
  } catch (err) {
    const e = err as Error;
    if (e.name === 'TimeoutError') return { ok: false, result: `no answer within ${timeoutMs / 1000} s` };
    const cause = e.cause instanceof Error ? e.cause.message : e.message;
    return { ok: false, result: cause };
  } finally {
    clearTimeout(timer);
    abort?.removeEventListener('abort', stop);
  }
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export interface RoundSummary {
  probed: number;
  unhealthy: number;
  climbed: { targetId: string; rung: Rung }[];
  recovered: string[];
}

/** One health round in the caller, start to end: snapshot, probe every target, record (tests, bench). */
export async function healthRound(
  deps: Omit<MonitorDeps, 'compute'>,
  now = new Date(),
): Promise<RoundSummary> {
  const targets = await healthTargets(deps.db);
  return recordRound(deps, targets, await probeAll(deps, targets), now);
}

/** Probe every target, up to PROBE_CONCURRENCY at once; an abort ends the probes in flight. */
export function probeAll(
  deps: Pick<MonitorDeps, 'timeoutSeconds'>,
  targets: HealthTarget[],
  abort?: AbortSignal,
): Promise<{ ok: boolean; result: string }[]> {
  // Each probe in flight listens on `abort`: as many as PROBE_CONCURRENCY at once, which is no leak
  // (Node warns from 11 on).
  if (abort) setMaxListeners(PROBE_CONCURRENCY + 10, abort);
  return mapLimit(targets, PROBE_CONCURRENCY, (t) =>
    abort?.aborted
      ? Promise.resolve({ ok: false, result: 'not probed' })
      : probeTarget(t, deps.timeoutSeconds * 1000, abort),
  );
}

/** Record a round's results: climb the ladder where due, resolve what recovered, alert, forget what is gone. */
async function recordRound(
  deps: Omit<MonitorDeps, 'compute'>,
  targets: HealthTarget[],
  results: { ok: boolean; result: string }[],
  now: Date,
): Promise<RoundSummary> {
  const summary: RoundSummary = { probed: targets.length, unhealthy: 0, climbed: [], recovered: [] };
  for (let i = 0; i < targets.length; i++) {
    const target = targets[i]!;
    const probe = results[i]!;
    if (!probe.ok) summary.unhealthy += 1;
    try {
      const step = await recordProbe(deps, target, probe, now);
      if (step.climb) summary.climbed.push({ targetId: target.targetId, rung: step.climb });
      if (step.recovered) summary.recovered.push(target.targetId);
    } catch (err) {
      deps.log.warn({ target: target.targetId, err: errorText(err) }, 'recording a health probe failed');
    }
  }
  await alertAdmins(deps.db);
  // Targets no longer probed (removed, cancelled) lose their record; their history stays.
  await deps.db
    .deleteFrom('health_checks')
    .where('target_id', 'not in', targets.length ? targets.map((t) => t.targetId) : [''])
    .where('state', '!=', 'degraded')
    .execute();
  if (summary.unhealthy > 0 || summary.recovered.length > 0)
    deps.log.info(
      {
        probed: summary.probed,
        unhealthy: summary.unhealthy,
        climbed: summary.climbed,
        recovered: summary.recovered,
      },
      'health round',
    );
  return summary;
}

const toRecord = (row: {
  state: LadderRecord['state'];
  consecutive_failures: number;
  consecutive_ok: number;
  rung: number;
  next_rung_at: Date | null;
}): LadderRecord => ({
  state: row.state,
  consecutiveFailures: row.consecutive_failures,
  consecutiveOk: row.consecutive_ok,
  rung: row.rung,
  nextRungAt: row.next_rung_at,
});

/** Record one probe of one target in one transaction: its record, transition, incident, mails, repair job. */
async function recordProbe(
  deps: Omit<MonitorDeps, 'compute'>,
  target: HealthTarget,
  probe: { ok: boolean; result: string },
  now: Date,
) {
  return deps.db.transaction().execute(async (trx) => {
    await trx
      .insertInto('health_checks')
      .values({ target_id: target.targetId, target_kind: target.kind, tenant_id: target.tenantId })
      .onConflict((oc) => oc.column('target_id').doNothing())
      .execute();
    const row = await trx
      .selectFrom('health_checks')
      .selectAll()
      .where('target_id', '=', target.targetId)
      .forUpdate()
      .executeTakeFirstOrThrow();
    const step = ladderStep(
      row.state === 'unknown' ? NEW_RECORD : toRecord(row),
      probe.ok,
      policyOf(deps),
      now,
      target.busy,
    );
    await trx
      .updateTable('health_checks')
      .set({
        state: step.next.state,
        consecutive_failures: step.next.consecutiveFailures,
        consecutive_ok: step.next.consecutiveOk,
        rung: step.next.rung,
        next_rung_at: step.next.nextRungAt,
        last_result: probe.result,
        recent: (row.recent + (probe.ok ? '1' : '0')).slice(-WINDOW),
        last_probe_at: now,
        changed_at: step.changed ? now : row.changed_at,
      })
      .where('target_id', '=', target.targetId)
      .execute();
    const wasHealthy = row.state === 'healthy' || row.state === 'unknown';
    if (probe.ok !== wasHealthy || row.state === 'unknown')
      await trx
        .insertInto('health_transitions')
        .values({
          target_id: target.targetId,
          tenant_id: target.tenantId,
          healthy: probe.ok,
          detail: probe.result,
          at: now,
        })
        .execute();
    const open = await trx
      .selectFrom('incidents')
      .selectAll()
      .where('target_id', '=', target.targetId)
      .where('resolved_at', 'is', null)
      .executeTakeFirst();
    if (probe.ok && open) {
      await trx.updateTable('incidents').set({ resolved_at: now }).where('id', '=', open.id).execute();
      if (target.kind === 'service')
        await trx
          .updateTable('tenant_services')
          .set({ status: 'active', status_reason: null, updated_at: sql`now()` })
          .where('id', '=', target.targetId)
          .where('status', '=', 'degraded')
          .execute();
      await ownerMail(trx, target, open.id, 'resolved', `${describe(target)} is working again.`);
      await emitTenantEvent(trx, 'incident.resolved', target.tenantId, {
        incident: {
          id: open.id,
          target: { kind: target.kind, id: target.targetId, name: target.name },
          reason: open.reason,
          openedAt: open.opened_at.toISOString(),
          resolvedAt: now.toISOString(),
        },
      });
    }
    if (step.climb) {
      const incidentId = open?.id ?? newId('incident');
      const reason = `${describe(target)}: GET ${target.path} ${probe.result} (${step.next.consecutiveFailures} probe(s) in a row)`;
      if (!open) {
        await trx
          .insertInto('incidents')
          .values({
            id: incidentId,
            tenant_id: target.tenantId,
            target_id: target.targetId,
            target_kind: target.kind,
            target_name: target.name,
            reason,
          })
          .execute();
        await emitTenantEvent(trx, 'incident.opened', target.tenantId, {
          incident: {
            id: incidentId,
            target: { kind: target.kind, id: target.targetId, name: target.name },
            reason,
            openedAt: now.toISOString(),
          },
        });
        await ownerMail(
          trx,
          target,
          incidentId,
          'opened',
          `${describe(target)} stopped answering (${probe.result}). The platform is repairing it; you will get another message when it works again.`,
        );
      }
      const rung: IncidentRung = {
        rung: step.next.rung,
        action: step.climb,
        at: now.toISOString(),
        outcome: step.climb === 'degraded' ? 'could not be repaired; needs an operator' : 'queued',
      };
      await trx
        .updateTable('incidents')
        .set({
          rungs: sql`rungs || ${JSON.stringify([rung])}::jsonb`,
          ...(step.climb === 'degraded'
            ? { reason: `${reason}; restart and recreate did not help: needs an operator` }
            : {}),
        })
        .where('id', '=', incidentId)
        .execute();
      if (step.climb === 'degraded') {
        if (target.kind === 'service')
          await trx
            .updateTable('tenant_services')
            .set({
              status: 'degraded',
              status_reason: `health: GET ${target.path} ${probe.result}; restart and recreate did not help`,
              updated_at: sql`now()`,
            })
            .where('id', '=', target.targetId)
            .where('status', '=', 'active')
            .execute();
      } else {
        await sql`SELECT graphile_worker.add_job(${REPAIR_TASK},
            ${JSON.stringify({ targetId: target.targetId, incidentId, rung: step.next.rung, action: step.climb, containerName: target.containerName, resource: target.resource })}::json,
            max_attempts => 3, job_key => ${`health-repair:${target.targetId}`}, job_key_mode => 'replace')`.execute(
          trx,
        );
      }
    }
    return step;
  });
}

const describe = (t: Pick<HealthTarget, 'kind' | 'name' | 'slug'>) =>
  t.kind === 'dashboard' ? `The ${t.slug} workspace dashboard` : `${t.name} of ${t.slug}`;

async function ownerMail(
  trx: Kysely<DB>,
  target: HealthTarget,
  incidentId: string,
  event: 'opened' | 'resolved',
  text: string,
): Promise<void> {
  const owner = await trx
    .selectFrom('users')
    .select('email')
    .where('tenant_id', '=', target.tenantId)
    .where('role', '=', 'tenant_owner')
    .orderBy('id')
    .executeTakeFirst();
  if (!owner) return;
  await writeOutbox(trx, {
    key: `incident:${incidentId}:${event}:owner`,
    kind: 'email',
    payload: {
      template: `incident-${event}`,
      tenantId: target.tenantId,
      to: owner.email,
      subject: event === 'opened' ? `${describe(target)} is not working` : `${describe(target)} works again`,
      text: `${text}\n`,
    },
  });
}

/**
 * Alert the admins of incidents opened or resolved that they have not been
 * told of: one alert each, or one digest when more than DIGEST_THRESHOLD are
 * pending (a host problem). Incidents are marked alerted in the transaction
 * that writes the alert, so a crash between rounds loses nothing.
 */
export async function alertAdmins(db: Kysely<DB>): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const pending = await trx
      .selectFrom('incidents')
      .selectAll()
      .where((eb) =>
        eb.or([
          eb('admin_opened_alert', '=', false),
          eb.and([eb('resolved_at', 'is not', null), eb('admin_resolved_alert', '=', false)]),
        ]),
      )
      .orderBy('opened_at')
      .forUpdate()
      .skipLocked()
      .execute();
    if (pending.length === 0) return;
    const line = (i: (typeof pending)[number]) =>
      `${i.id}: ${i.target_kind} ${i.target_name} of tenant ${i.tenant_id} — ${i.resolved_at ? `resolved at ${i.resolved_at.toISOString()}` : `opened: ${i.reason}`}`;
    const notices = pending.flatMap((i) => {
      const out: { incident: typeof i; event: 'opened' | 'resolved' }[] = [];
      if (!i.admin_opened_alert) out.push({ incident: i, event: 'opened' });
      if (i.resolved_at && !i.admin_resolved_alert) out.push({ incident: i, event: 'resolved' });
      return out;
    });
    if (notices.length > DIGEST_THRESHOLD) {
      const opened = notices.filter((n) => n.event === 'opened').length;
      await writeOutbox(trx, {
        key: `incident-digest:${pending
          .map((i) => i.id)
          .join(',')
          .slice(0, 400)}:${Date.now()}`,
        kind: 'alert',
        payload: {
          subject: `${opened} incident(s) opened, ${notices.length - opened} resolved`,
          text: `Many incidents at once (a host problem?):\n\n${pending.map(line).join('\n')}\n\nSee aiqso status for each tenant.`,
        },
      });
    } else {
      for (const n of notices) {
        const i = n.incident;
        await writeOutbox(trx, {
          key: `incident:${i.id}:${n.event}:admin`,
          kind: 'alert',
          payload: {
            subject:
              n.event === 'opened'
                ? `incident: ${i.target_kind} ${i.target_name} of ${i.tenant_id} is failing`
                : `resolved: ${i.target_kind} ${i.target_name} of ${i.tenant_id} works again`,
            text: `${line(i)}\n\nRungs tried: ${JSON.stringify(i.rungs)}\n`,
            incident: i.id,
          },
        });
      }
    }
    for (const i of pending)
      await trx
        .updateTable('incidents')
        .set({ admin_opened_alert: true, admin_resolved_alert: i.resolved_at !== null })
        .where('id', '=', i.id)
        .execute();
  });
}

/** Queue the next round `afterMs` from now; `preserve` keeps an already queued round's time (start-up). */
export async function scheduleHealthRound(db: Kysely<DB>, afterMs: number, preserve = false): Promise<void> {
  await sql`SELECT graphile_worker.add_job(${HEALTH_TASK}, '{}'::json,
      run_at => ${new Date(Date.now() + afterMs)}::timestamptz, max_attempts => 3, job_key => ${HEALTH_TASK},
      job_key_mode => ${preserve ? 'preserve_run_at' : 'replace'})`.execute(db);
}

/** What a round's job and probe loop report, in order (tests, logs). */
export type RoundEvent =
  /** A round's job found another round running (here or in another process) and ended. */
  | { kind: 'busy' }
  /** The round is taken and its targets snapshotted; the probes start and the job ends. */
  | { kind: 'probing'; targets: number }
  /** Every probe answered or timed out. */
  | { kind: 'probed' }
  | { kind: 'recorded'; summary: RoundSummary }
  /** The process is stopping: nothing of the round is recorded. */
  | { kind: 'abandoned' };

export interface HealthMonitor {
  /** The `health` task: takes a round and hands it to the probe loop, holding its worker slot only for that. */
  task: Task;
  /** Abandon a round in flight (nothing of it is recorded) and wait until it has let go of its lock. */
  stop(): Promise<void>;
}

/** Session advisory lock (hashtext of this) held by the process whose round runs, on a connection of its own. */
const ROUND_LOCK = 'aiqso.health_round';

/**
 * The monitor of one worker process. A round's job queues the next round
 * first (an interval plus a probe timeout later, in case this process dies),
 * takes the round lock on a connection of its own (`url`: not one of a pool,
 * which a long round would take from other work), snapshots the targets and
 * ends; the probes, the recording and the re-queueing of the next round (an
 * interval after this one ends) run in this process's probe loop. A job that
 * finds the lock taken ends at once: one round at a time however many
 * workers there are.
 */
export function healthMonitor(
  deps: MonitorDeps & { url: string; onRound?: (event: RoundEvent) => void },
): HealthMonitor {
  const abort = new AbortController();
  const rounds = new Set<Promise<void>>();
  const intervalMs = deps.intervalSeconds * 1000;
  const emit = (event: RoundEvent) => {
    try {
      deps.onRound?.(event);
    } catch {
      // An observer's error is not the round's.
    }
  };

  /** Resolves `taken` with whether this process got the round, then runs it to the end. */
  async function runRound(taken: (got: boolean) => void): Promise<void> {
    const lock = new pg.Client({ connectionString: deps.url, application_name: 'aiqso-health' });
    // A connection lost mid-round only ends the round (checked before recording).
    lock.on('error', () => undefined);
    await lock.connect();
    try {
      const { rows } = await lock.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_lock(hashtext($1)) AS locked',
        [ROUND_LOCK],
      );
      if (!rows[0]?.locked) return taken(false);
      const now = new Date();
      const targets = await healthTargets(deps.db);
      taken(true);
      emit({ kind: 'probing', targets: targets.length });
      const results = await probeAll(deps, targets, abort.signal);
      emit({ kind: 'probed' });
      if (abort.signal.aborted) return emit({ kind: 'abandoned' });
      // Still ours: a session that died took its lock with it, and another process may have the round now.
      await lock.query('SELECT 1');
      const summary = await recordRound(deps, targets, results, now);
      emit({ kind: 'recorded', summary });
      await scheduleHealthRound(deps.db, intervalMs);
    } finally {
      // Ending the session releases the lock.
      await lock.end().catch(() => undefined);
    }
  }

  const task: Task = async () => {
    if (abort.signal.aborted) return;
    // First, so that whatever happens from here on (a crash mid-round), a next round is queued.
    await scheduleHealthRound(deps.db, intervalMs + deps.timeoutSeconds * 1000);
    const taken = await new Promise<boolean>((resolve, reject) => {
      const round = runRound(resolve).catch((err: unknown) => {
        reject(err instanceof Error ? err : new Error(String(err)));
        deps.log.warn({ err: errorText(err) }, 'health round failed');
      });
      rounds.add(round);
      void round.finally(() => rounds.delete(round));
    });
    if (!taken) emit({ kind: 'busy' });
  };

  return {
    task,
    async stop() {
      abort.abort();
      await Promise.allSettled([...rounds]);
    },
  };
}

interface RepairPayload {
  targetId: string;
  incidentId: string;
  rung: number;
  action: 'restart' | 'recreate';
  containerName: string;
  resource: { kind: string; id: string };
}

/**
 * A repair rung. Restart: the container restarts in place. Recreate: the
 * container is destroyed and its resource reconciled, which creates it again
 * from its template; what it keeps (a service's database, its secrets) lives
 * outside the container. The outcome is written on the incident's rung.
 */
export function repairTask(deps: Pick<MonitorDeps, 'db' | 'compute' | 'log'>): Task {
  return async (raw) => {
    const p = raw as RepairPayload;
    let outcome: string;
    try {
      if (p.action === 'restart') {
        const info = await deps.compute.restart(p.containerName);
        outcome = `restarted (${info.state})`;
      } else {
        await deps.compute.destroy(p.containerName);
        await requestReconcile(deps.db, p.resource, { reason: 'health-recreate' });
        outcome = 'destroyed; being created again from its template';
      }
    } catch (err) {
      outcome = `failed: ${errorText(err)}`;
    }
    await sql`UPDATE incidents SET rungs = (
        SELECT jsonb_agg(CASE WHEN (r->>'rung')::int = ${p.rung} THEN r || jsonb_build_object('outcome', ${outcome}::text) ELSE r END)
          FROM jsonb_array_elements(rungs) r)
      WHERE id = ${p.incidentId}`.execute(deps.db);
    deps.log.warn({ target: p.targetId, incident: p.incidentId, action: p.action, outcome }, 'health repair');
  };
}
