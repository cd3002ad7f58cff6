import type { Kysely } from 'kysely';
import type { DB, HealthState, HealthTargetKind, IncidentRung } from '../db/tables.ts';

/**
 * What a tenant sees of its health: each probed dashboard and service with
 * its state, its last probe, uptime over 24 h / 7 d / 30 d, its open incident,
 * and the recent incident history. Uptime is the share of the measured time a
 * target was healthy, computed from its state changes (time before its first
 * probe is not measured); null when nothing was measured in the window.
 */
export interface IncidentView {
  id: string;
  target: string;
  reason: string;
  rungs: IncidentRung[];
  openedAt: string;
  resolvedAt: string | null;
}

export interface TargetStatus {
  kind: HealthTargetKind;
  id: string;
  name: string;
  state: HealthState;
  /** The state in plain words, for people. */
  summary: string;
  lastProbe: { at: string; result: string } | null;
  uptime: { '24h': number | null; '7d': number | null; '30d': number | null };
  openIncident: IncidentView | null;
}

export interface TenantHealthStatus {
  targets: TargetStatus[];
  incidents: IncidentView[];
}

const WINDOWS = { '24h': 86_400_000, '7d': 7 * 86_400_000, '30d': 30 * 86_400_000 } as const;

/** Share of [now - windowMs, now] the target was healthy, from its state changes (ascending). */
export function uptime(
  transitions: { at: Date; healthy: boolean }[],
  windowMs: number,
  now: Date,
): number | null {
  const start = now.getTime() - windowMs;
  let measured = 0;
  let healthy = 0;
  for (let i = 0; i < transitions.length; i++) {
    const from = Math.max(transitions[i]!.at.getTime(), start);
    const to = Math.min(
      i + 1 < transitions.length ? transitions[i + 1]!.at.getTime() : now.getTime(),
      now.getTime(),
    );
    if (to <= from) continue;
    measured += to - from;
    if (transitions[i]!.healthy) healthy += to - from;
  }
  return measured > 0 ? Math.round((healthy / measured) * 100_000) / 1000 : null;
}

const incidentView = (i: {
  id: string;
  target_name: string;
  reason: string;
  rungs: IncidentRung[];
  opened_at: Date;
  resolved_at: Date | null;
}): IncidentView => ({
  id: i.id,
  target: i.target_name,
  reason: i.reason,
  rungs: i.rungs,
  openedAt: i.opened_at.toISOString(),
  resolvedAt: i.resolved_at?.toISOString() ?? null,
});

const SUMMARY: Record<HealthState, string> = {
  unknown: 'not checked yet',
  healthy: 'working',
  failing: 'not answering; being repaired',
  degraded: 'not working; an operator has been alerted',
};

/** `db` is the caller's scope: a tenant-scoped transaction for the API, the platform's handle for the CLI. */
export async function tenantHealthStatus(
  db: Kysely<DB>,
  tenantId: string,
  now = new Date(),
): Promise<TenantHealthStatus> {
  const checks = await db
    .selectFrom('health_checks as h')
    .leftJoin('tenant_services as ts', 'ts.id', 'h.target_id')
    .leftJoin('services as s', 's.id', 'ts.service_id')
    .select(['h.target_id', 'h.target_kind', 'h.state', 'h.last_result', 'h.last_probe_at', 's.name'])
    .where('h.tenant_id', '=', tenantId)
    .orderBy('h.target_kind')
    .orderBy('s.name')
    .execute();
  const since = new Date(now.getTime() - WINDOWS['30d']);
  const transitions = await db
    .selectFrom('health_transitions')
    .select(['target_id', 'healthy', 'at'])
    .where('tenant_id', '=', tenantId)
    .where((eb) =>
      eb.or([
        eb('at', '>=', since),
        // The state a target was in when the window opened.
        eb(
          'id',
          'in',
          eb
            .selectFrom('health_transitions as p')
            .select((e) => e.fn.max('p.id').as('id'))
            .where('p.tenant_id', '=', tenantId)
            .where('p.at', '<', since)
            .groupBy('p.target_id'),
        ),
      ]),
    )
    .orderBy('at')
    .orderBy('id')
    .execute();
  const incidents = await db
    .selectFrom('incidents')
    .select(['id', 'target_id', 'target_name', 'reason', 'rungs', 'opened_at', 'resolved_at'])
    .where('tenant_id', '=', tenantId)
    .orderBy('opened_at', 'desc')
    .limit(50)
    .execute();
  const targets = checks.map((c): TargetStatus => {
    const mine = transitions.filter((t) => t.target_id === c.target_id);
    const open = incidents.find((i) => i.target_id === c.target_id && i.resolved_at === null);
    return {
      kind: c.target_kind,
      id: c.target_id,
      name: c.target_kind === 'dashboard' ? 'dashboard' : (c.name ?? c.target_id),
      state: c.state,
      summary: SUMMARY[c.state],
      lastProbe: c.last_probe_at ? { at: c.last_probe_at.toISOString(), result: c.last_result ?? '' } : null,
      uptime: {
        '24h': uptime(mine, WINDOWS['24h'], now),
        '7d': uptime(mine, WINDOWS['7d'], now),
        '30d': uptime(mine, WINDOWS['30d'], now),
      },
      openIncident: open ? incidentView(open) : null,
    };
  });
  return { targets, incidents: incidents.map(incidentView) };
}
