import { readdir, readFile } from 'node:fs/promises';
import { DomainError } from '../core/errors.ts';
import {
  requeueAfter,
  type Observation,
  type ReconcileStep,
  type RequeueAfter,
  type StepContext,
} from '../core/reconcile.ts';
import type { Restic, ResticRepository } from './restic.ts';

/**
 * Locks a killed attempt left in a repository. restic's `unlock` removes a
 * lock once the process that took it is gone from this host (or the lock is
 * older than 30 minutes). A killed restic that init has not reaped yet is
 * still a process to restic (a zombie answers its "are you there" signal),
 * so its lock stays; a run that went on beside it would end with that lock
 * in place, and the repository's next `check` or `prune`, which need it to
 * themselves, would fail. So a step clearing locks waits, a moment at a time,
 * while such a process is there (any init reaps within seconds), up to
 * `maxWaitMs`; the locks of live processes (another run, a verification) are
 * theirs and stay.
 */
export async function clearStaleLocks(
  restic: Restic,
  repo: ResticRepository,
  waitingSince: Date | null,
  maxWaitMs = 60_000,
): Promise<RequeueAfter | undefined> {
  await restic.unlock(repo);
  if ((await restic.locks(repo)).length === 0) return undefined;
  const waited = waitingSince ? Date.now() - waitingSince.getTime() : 0;
  if (waited < maxWaitMs && (await unreapedProcesses('restic')) > 0)
    return requeueAfter(
      1000,
      'a killed restic process has not been reaped yet; its lock can be removed once it has',
    );
  return undefined;
}

/**
 * How many processes named `command` on this host have exited and not been
 * reaped (state Z in /proc/<pid>/stat). Read only when a lock outlives
 * `restic unlock`, which is rare.
 */
export async function unreapedProcesses(command: string): Promise<number> {
  let count = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // "<pid> (<comm>) <state> …": the name may hold spaces and parentheses; the state follows the last ')'.
    const close = stat.lastIndexOf(')');
    if (close < 0) continue;
    const name = stat.slice(stat.indexOf('(') + 1, close);
    if (name === command && stat[close + 2] === 'Z') count++;
  }
  return count;
}

/** The repository's locks, or 'missing' when no repository is there yet (one restic run for both). */
async function repositoryLocks(restic: Restic, repo: ResticRepository): Promise<string[] | 'missing'> {
  try {
    return await restic.locks(repo);
  } catch (err) {
    if (err instanceof DomainError && err.details?.missing === true) return 'missing';
    throw err;
  }
}

/**
 * The first two steps of a backup run (a tenant's or the platform's): the
 * repository made if missing, then the locks a killed attempt left removed
 * (`clearStaleLocks`). Both look at one `restic list locks`, which also says
 * whether the repository is there: each restic run costs about half a second
 * of its key derivation. `unlessDone` skips the looks of a run that is over.
 */
export function repositorySteps<Spec>(
  restic: Restic,
  repo: (ctx: StepContext<Spec>) => Promise<ResticRepository>,
  unlessDone: (observe: (ctx: StepContext<Spec>) => Promise<Observation>) => ReconcileStep<Spec>['observe'],
): ReconcileStep<Spec>[] {
  const locks = (ctx: StepContext<Spec>) =>
    ctx.look('restic locks', async () => repositoryLocks(restic, await repo(ctx)));
  return [
    {
      name: 'repository',
      observe: unlessDone(async (ctx) => ((await locks(ctx)) === 'missing' ? 'missing' : 'ok')),
      async apply(ctx) {
        await restic.init(await repo(ctx));
      },
    },
    {
      name: 'stale locks',
      observe: unlessDone(async (ctx) => {
        const held = await locks(ctx);
        return held !== 'missing' && held.length > 0 ? 'drifted' : 'ok';
      }),
      async apply(ctx) {
        return clearStaleLocks(restic, await repo(ctx), ctx.waitingSince);
      },
    },
  ];
}
