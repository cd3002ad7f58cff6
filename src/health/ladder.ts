import type { HealthState } from '../db/tables.ts';

/**
 * The repair ladder, as a pure function of a target's health record and one
 * probe's result. Failing `failures` probes in a row starts it: restart the
 * container (rung 1), then recreate it from its template keeping its data
 * (rung 2), then `degraded` (rung 3: a person is needed). One rung per round
 * at most. A healthy probe ends the failure; the rung reached is remembered
 * until the target has stayed healthy for `stableProbes` probes, so a
 * flapping target climbs the ladder instead of being restarted in a loop.
 */
export interface LadderRecord {
  state: HealthState;
  consecutiveFailures: number;
  consecutiveOk: number;
  rung: number;
  /** No further rung before this time. */
  nextRungAt: Date | null;
}

export interface LadderPolicy {
  /** Failed probes in a row before the first rung. */
  failures: number;
  /** Time between rounds; the next rung waits at least half of it. */
  intervalMs: number;
  /** Healthy probes in a row after which the ladder starts again at the bottom. */
  stableProbes: number;
}

export type Rung = 'restart' | 'recreate' | 'degraded';
export const RUNGS: readonly Rung[] = ['restart', 'recreate', 'degraded'];

export interface LadderStep {
  next: LadderRecord;
  /** The rung to climb now, if any. */
  climb: Rung | null;
  /** The target became healthy after not being so: an open incident resolves. */
  recovered: boolean;
  /** The state changed (a transition to record). */
  changed: boolean;
}

export const NEW_RECORD: LadderRecord = {
  state: 'unknown',
  consecutiveFailures: 0,
  consecutiveOk: 0,
  rung: 0,
  nextRungAt: null,
};

/**
 * `hold`: a repair is under way (its job queued or running, or the resource
 * being reconciled): a failed probe then is recorded but climbs no rung.
 */
export function ladderStep(
  record: LadderRecord,
  ok: boolean,
  policy: LadderPolicy,
  now: Date,
  hold = false,
): LadderStep {
  if (ok) {
    const consecutiveOk = record.consecutiveOk + 1;
    const stable = consecutiveOk >= policy.stableProbes;
    const next: LadderRecord = {
      state: 'healthy',
      consecutiveFailures: 0,
      consecutiveOk,
      rung: stable ? 0 : record.rung,
      nextRungAt: stable ? null : record.nextRungAt,
    };
    const recovered = record.state === 'failing' || record.state === 'degraded';
    return { next, climb: null, recovered, changed: record.state !== 'healthy' };
  }
  const consecutiveFailures = record.consecutiveFailures + 1;
  const base: LadderRecord = {
    ...record,
    consecutiveFailures,
    consecutiveOk: 0,
    state: record.state === 'degraded' ? 'degraded' : 'failing',
  };
  const due = record.nextRungAt === null || now.getTime() >= record.nextRungAt.getTime();
  if (hold || consecutiveFailures < policy.failures || record.rung >= RUNGS.length || !due) {
    return { next: base, climb: null, recovered: false, changed: base.state !== record.state };
  }
  const rung = record.rung + 1;
  const climb = RUNGS[rung - 1]!;
  const next: LadderRecord = {
    ...base,
    rung,
    state: climb === 'degraded' ? 'degraded' : 'failing',
    nextRungAt: new Date(now.getTime() + policy.intervalMs / 2),
  };
  return { next, climb, recovered: false, changed: next.state !== record.state };
}
