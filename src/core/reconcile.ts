/**
 * Glossary (the orchestrator's words, used the same way everywhere):
 *
 * - **resource**: one managed thing (a tenant, a tenant service; later routes,
 *   hosts, backup schedules), identified by `kind` and `id`.
 * - **spec**: what the resource should be; written by the API or a reconciler
 *   of a parent resource. Every spec change moves `generation`.
 * - **status**: what was last observed: `phase`, the named **steps** with
 *   their state, attempts, timestamps and last error, and
 *   `observedGeneration`, the generation the last successful reconcile saw.
 * - **reconcile**: run a reconciler's steps against one resource. Every step
 *   first observes whether its effect exists (deterministic names from ids),
 *   then creates or repairs it, so running a reconciler again after a crash,
 *   or any number of times, gives the same result.
 * - **drift**: an effect that was in place (the resource was `ready` at its
 *   generation) and is found missing or changed; the resync repairs it.
 * - **orphan**: something a driver reports that no spec owns. Reported at once,
 *   removed only after a grace period.
 *
 * This file holds the types reconcilers are written against; no I/O.
 */

/** What a step found: its effect is in place, absent, or present but not as the spec says. */
export type Observation = 'ok' | 'missing' | 'drifted';

export interface ResourceRef {
  kind: string;
  id: string;
}

export interface ReconcileTarget<Spec> extends ResourceRef {
  tenantId: string | null;
  spec: Spec;
  generation: number;
}

export interface StepContext<Spec> {
  resource: ReconcileTarget<Spec>;
  /** Aborted when the worker shuts down; long steps should pass it on. */
  signal: AbortSignal;
  /**
   * When this step first answered "not yet" (see `requeueAfter`) in the wait
   * it is in now; null when it is not waiting. A step that waits for something
   * with a deadline measures it from here.
   */
  waitingSince: Date | null;
  /**
   * What a long step is doing now ("copying blob sha256:…"): shown in the
   * step's status while it runs (saved at most about once a second), cleared
   * when it ends.
   */
  progress(detail: string): void;
  /**
   * A read shared by the observes of one run: the first `look(key, read)`
   * reads, later observes of the same run get that answer (three steps
   * looking at one container cost one look; a resync runs every resource's
   * observes every interval). Inside `apply` or `remove` it always reads
   * afresh, and once a step has acted every key is read again.
   */
  look<T>(key: string, read: () => Promise<T>): Promise<T>;
  /**
   * Inside `apply` or `remove`: what the act itself read back once done (a
   * driver's answer to ensure or start, taken under the container's lock).
   * The observes after this step take it for `key` instead of reading again.
   */
  saw<T>(key: string, value: T): T;
}

/**
 * "Not yet, look again in `afterMs`" (controller-runtime's `RequeueAfter`):
 * what `apply` or `remove` returns when its effect is under way but not in
 * place yet (a service still booting, services still being removed). The run
 * stops at this step without counting a failure, the job ends and frees its
 * worker slot, and the resource is reconciled again after `afterMs`.
 */
export interface RequeueAfter {
  requeueAfterMs: number;
  /** What the step waits for, shown in status. */
  reason: string;
  /**
   * Watches, off the worker slots, for what the step waits for (a workload
   * that starts answering); resolves true when it is there, so the resource
   * is looked at then rather than at `requeueAfterMs`. Aborted when the look
   * falls due anyway. Only a hint: the look decides.
   */
  wake?: (signal: AbortSignal) => Promise<boolean>;
}

export function requeueAfter(afterMs: number, reason: string, wake?: RequeueAfter['wake']): RequeueAfter {
  return { requeueAfterMs: Math.max(0, Math.round(afterMs)), reason, ...(wake ? { wake } : {}) };
}

/**
 * How long a waiting step waits before looking again: a quarter of what it
 * has waited so far, within [minMs, maxMs] — quick for what is nearly there,
 * cheap for what takes long (every look re-runs the resource's observes).
 */
export function pollDelayMs(waitingSince: Date | null, policy: { minMs: number; maxMs: number }): number {
  const waited = waitingSince ? Date.now() - waitingSince.getTime() : 0;
  return Math.min(policy.maxMs, Math.max(policy.minMs, waited / 4));
}

/** What `apply` and `remove` resolve to: done (nothing), or wait and look again. */
export type StepResult = void | RequeueAfter;

export function isRequeue(result: StepResult): result is RequeueAfter {
  return typeof result === 'object' && result !== null && typeof result.requeueAfterMs === 'number';
}

export interface ReconcileStep<Spec> {
  /** Stable name shown in status (`aiqso tenants show`); never reuse one for another effect. */
  name: string;
  /**
   * Its act is a short write to the platform's own database (or no write at
   * all): the run does not save the step's status as running before it acts,
   * a statement that would only show where a crash struck; a crash in it
   * leaves the step shown as it was, and the next run does it again.
   */
  quick?: boolean;
  /** Look without changing anything: is the effect in place as the spec says? */
  observe(ctx: StepContext<Spec>): Promise<Observation>;
  /** Create (`missing`) or repair (`drifted`) the effect. Runs only when `observe` did not say `ok`. */
  apply(ctx: StepContext<Spec>, found: Exclude<Observation, 'ok'>): Promise<StepResult>;
  /**
   * Deletion: remove the effect. Runs, in reverse step order, only when
   * `observe` did not say `missing`. A step without it leaves nothing behind.
   */
  remove?(ctx: StepContext<Spec>): Promise<StepResult>;
}

/** Something outside the database a resource owns, for orphan detection (`source` as in an OrphanSource). */
export interface OwnedThing {
  source: string;
  name: string;
}

export interface Reconciler<Spec = unknown> {
  kind: string;
  /** Validate a stored spec; throw a DomainError (`validation_failed`) for one that cannot be reconciled. */
  parseSpec(raw: unknown): Spec;
  steps: ReconcileStep<Spec>[];
  /** What this resource's spec owns outside the database (container names, …). */
  owns?(resource: ReconcileTarget<Spec>): OwnedThing[];
  /**
   * Called inside the transaction that marks the resource `failed` (`trx` is the
   * orchestrator's transaction on the master database): for effects that must
   * commit with it — an event, or a reconciler's own record of progress (a
   * restore's or an export's row) saying it failed and why — so that no crash
   * can leave the resource given up on while its record says it is under way.
   */
  onFailed?(
    failure: { id: string; tenantId: string | null; spec: unknown; error: string },
    trx: unknown,
  ): Promise<void>;
}

/** A place orphans can live: one driver's inventory (containers, routes, …). */
export interface OrphanSource {
  name: string;
  /** Names of everything the platform manages there. */
  list(): Promise<string[]>;
  /** Remove one thing; a no-op when it is already gone. */
  remove(name: string): Promise<void>;
}

/** Step states as shown in status. */
export const STEP_STATES = ['pending', 'running', 'waiting', 'done', 'failed'] as const;
export type StepState = (typeof STEP_STATES)[number];

/** A resource's phase: `ready` once its steps are done for its current generation. */
export const RESOURCE_PHASES = ['pending', 'reconciling', 'ready', 'failed', 'deleted'] as const;
export type ResourcePhase = (typeof RESOURCE_PHASES)[number];

/**
 * Delay before retry number `failures` (1-based): exponential, capped.
 * Pure so the policy is tested by value.
 */
export function retryDelayMs(failures: number, policy: { baseMs: number; maxMs: number }): number {
  const exp = Math.min(failures - 1, 30);
  return Math.min(policy.maxMs, policy.baseMs * 2 ** exp);
}
