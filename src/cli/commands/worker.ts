import { openCheckedDatabase } from '../../platform/database.ts';
import { listWork } from '../../orchestrator/jobs.ts';
import { startPlatformWorker } from '../../platform/worker.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson, printTable } from '../output.ts';
import { onShutdownSignal } from '../shutdown.ts';

/** `aiqso worker`: orchestrator workers alone, until SIGINT/SIGTERM. */
export async function worker(ctx: CommandContext): Promise<void> {
  const { config, log } = ctx;
  const database = await openCheckedDatabase(config, log, { poolSize: 2, applicationName: 'aiqso-worker' });
  let running;
  try {
    running = await startPlatformWorker(config, log, database);
  } catch (err) {
    await database.close();
    throw err;
  }
  onShutdownSignal(async () => {
    await running.stop();
    await database.close();
  }, log);
  process.stderr.write(
    `AIQSO worker ${running.worker.processId} is running (${config.workerConcurrency} jobs at once). Press Ctrl-C to stop.\n`,
  );
}

/** `aiqso jobs`: queued, running and failed work. */
export async function jobs(ctx: CommandContext, options: { json?: boolean }): Promise<void> {
  const work = await withDatabase(ctx, ({ db }) => listWork(db));
  if (options.json) return printJson(work);
  const out = process.stdout;
  if (work.jobs.length === 0) out.write('No jobs queued or running.\n');
  else
    printTable(work.jobs as unknown as Record<string, unknown>[], [
      'id',
      'task',
      'state',
      'runAt',
      'attempts',
      'key',
      'lastError',
    ]);
  if (work.failedResources.length > 0) {
    out.write('\nFailed resources (need an operator):\n');
    printTable(work.failedResources, ['kind', 'id', 'failures', 'lastError']);
  }
  if (work.failedOutbox.length > 0) {
    out.write('\nUndelivered side effects:\n');
    printTable(work.failedOutbox, ['kind', 'key', 'attempts', 'lastError']);
  }
  if (work.failingInbox.length > 0) {
    out.write('\nReceived events that keep failing:\n');
    printTable(work.failingInbox, ['source', 'type', 'id', 'state', 'attempts', 'lastError']);
  }
  out.write(
    `\nWorkers: ${work.workers.length === 0 ? 'none running' : work.workers.map((w) => `${w.hostname}:${w.pid}`).join(', ')}\n`,
  );
}
