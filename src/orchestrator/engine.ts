import {
  isRequeue,
  type Observation,
  type Reconciler,
  type RequeueAfter,
  type ReconcileTarget,
  type StepContext,
} from '../core/reconcile.ts';
import type { StepStatus } from '../db/tables.ts';

/** A step threw; `steps` is the status to record, with the failed step's error. */
export class StepFailed extends Error {
  constructor(
    readonly step: string,
    readonly steps: StepStatus[],
    cause: unknown,
  ) {
    super(`${step}: ${errorText(cause)}`, { cause });
    this.name = 'StepFailed';
  }
}

export interface StepsOutcome {
  steps: StepStatus[];
  /** Creates, repairs and removals performed. 0 means everything was already in place. */
  actions: number;
  /** Steps whose effect had been in place and was found missing or changed (drift). */
  repaired: string[];
  /** A step said "not yet": the run stopped there; look again after this many ms. */
  requeueAfterMs?: number;
  /** What the waiting step gave to watch for it meanwhile (`RequeueAfter.wake`). */
  wake?: RequeueAfter['wake'];
}

export interface RunStepsOptions<Spec> {
  reconciler: Reconciler<Spec>;
  target: ReconcileTarget<Spec>;
  deleting: boolean;
  previous: StepStatus[];
  /** The resource was `ready` at this generation: any action now is drift. */
  converged: boolean;
  signal: AbortSignal;
  /** Persist status before a step acts (not a `quick` one), so a crash mid-step shows which step was running. */
  onProgress(steps: StepStatus[]): Promise<void>;
  /** Least time between two saves of a running step's reported progress. */
  progressEveryMs?: number;
}

/**
 * A running step's `progress`: the latest detail goes into its status at
 * once, and the status is saved at most once per `everyMs` (the last detail
 * always reaches a save while the step runs); `stop` ends it with the step.
 */
function progressReporter(
  status: StepStatus,
  save: () => Promise<void>,
  everyMs: number,
): { report(detail: string): void; stop(): Promise<void> } {
  let lastSave = 0;
  let timer: NodeJS.Timeout | undefined;
  let saving: Promise<void> = Promise.resolve();
  let stopped = false;
  const flush = () => {
    timer = undefined;
    lastSave = Date.now();
    saving = saving.then(save).catch(() => undefined);
  };
  return {
    report(detail) {
      if (stopped) return;
      status.progress = detail.slice(0, 200);
      if (timer) return;
      timer = setTimeout(flush, Math.max(0, lastSave + everyMs - Date.now()));
      timer.unref();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
      await saving;
      delete status.progress;
    },
  };
}

export function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.length > 500 ? `${text.slice(0, 497)}...` : text;
}

/** Status entries for the reconciler's steps, keeping what was recorded for steps of the same name. */
export function initialSteps(names: string[], previous: StepStatus[]): StepStatus[] {
  return names.map((name) => {
    const old = previous.find((s) => s.name === name);
    return old ? { ...old } : { name, state: 'pending', attempts: 0 };
  });
}

/**
 * Run a reconciler's steps once: in order to create, in reverse order to
 * delete. Each step observes first and acts only when its effect is not in
 * place, so a run over a converged resource performs no action and writes
 * nothing. A step that answers "not yet" (`requeueAfter`) ends the run there,
 * `waiting`, with `requeueAfterMs` set; the steps after it wait for it.
 */
export async function runSteps<Spec>(options: RunStepsOptions<Spec>): Promise<StepsOutcome> {
  const { reconciler, deleting, converged } = options;
  const steps = initialSteps(
    reconciler.steps.map((s) => s.name),
    options.previous,
  );
  const base = { resource: options.target, signal: options.signal };
  const order = deleting ? [...reconciler.steps].reverse() : reconciler.steps;
  let actions = 0;
  const repaired: string[] = [];
  // Reads the observes share (StepContext.look): kept until a step acts; an acting step reads afresh.
  const looks = new Map<string, Promise<unknown>>();
  // What the acting step read back (StepContext.saw): the looks after it start from these.
  const seen = new Map<string, unknown>();
  let acting = false;
  const look = <T>(key: string, read: () => Promise<T>): Promise<T> => {
    if (acting) return read();
    let found = looks.get(key) as Promise<T> | undefined;
    if (!found) {
      found = read();
      looks.set(key, found);
      found.catch(() => looks.delete(key));
    }
    return found;
  };
  const saw = <T>(key: string, value: T): T => {
    if (acting) seen.set(key, value);
    return value;
  };
  for (const step of order) {
    const status = steps.find((s) => s.name === step.name)!;
    const waiting = status.state === 'waiting' && status.waitingSince !== undefined;
    const reporter = progressReporter(
      status,
      () => options.onProgress(steps),
      options.progressEveryMs ?? 1000,
    );
    const ctx: StepContext<Spec> = {
      ...base,
      waitingSince: waiting ? new Date(status.waitingSince!) : null,
      progress: (detail) => reporter.report(detail),
      look,
      saw,
    };
    try {
      const found: Observation = await step.observe(ctx);
      const act = deleting ? found !== 'missing' && step.remove !== undefined : found !== 'ok';
      if (!act) {
        if (waiting) status.finishedAt = new Date().toISOString();
        status.state = 'done';
        delete status.lastError;
        delete status.waitingSince;
        delete status.waitingFor;
        continue;
      }
      // A step looking again after "not yet" is the same attempt, still shown waiting, not a new one.
      if (!waiting) {
        status.attempts += 1;
        status.startedAt = new Date().toISOString();
        status.state = 'running';
        delete status.finishedAt;
        if (!step.quick) await options.onProgress(steps);
      }
      acting = true;
      const result = await (
        deleting ? step.remove!(ctx) : step.apply(ctx, found as Exclude<Observation, 'ok'>)
      ).finally(() => {
        acting = false;
        looks.clear();
        for (const [key, value] of seen) looks.set(key, Promise.resolve(value));
        seen.clear();
      });
      await reporter.stop();
      if (isRequeue(result)) {
        status.state = 'waiting';
        status.waitingSince = ctx.waitingSince?.toISOString() ?? new Date().toISOString();
        status.waitingFor = result.reason;
        delete status.lastError;
        return { steps, actions, repaired, requeueAfterMs: result.requeueAfterMs, wake: result.wake };
      }
      delete status.waitingSince;
      delete status.waitingFor;
      actions += 1;
      if (converged && !deleting) {
        repaired.push(step.name);
        status.repairs = (status.repairs ?? 0) + 1;
      }
      status.state = 'done';
      status.finishedAt = new Date().toISOString();
      delete status.lastError;
    } catch (err) {
      await reporter.stop();
      status.state = 'failed';
      status.finishedAt = new Date().toISOString();
      status.lastError = errorText(err);
      delete status.waitingSince;
      delete status.waitingFor;
      throw new StepFailed(step.name, steps, err);
    }
  }
  return { steps, actions, repaired };
}
