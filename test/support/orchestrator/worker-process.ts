// A worker process for the orchestrator tests: `node --import tsx worker-process.ts`
// with DATABASE_URL and MAIL_DIR set. Prints "worker ready" once it takes jobs. With
// HEALTH_INTERVAL_SECONDS (and HEALTH_TIMEOUT_SECONDS) it also runs health rounds, printing
// "health <event>" for each of their events.
import type { ComputeDriver } from '../../../src/core/compute.ts';
import { openDatabase } from '../../../src/db/database.ts';
import { HEALTH_TASK, healthMonitor } from '../../../src/health/monitor.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { startWorker } from '../../../src/orchestrator/worker.ts';
import { testWorkerOptions } from './reconcilers.ts';

const url = process.env.DATABASE_URL!;
const log = createLogger(process.env.LOG_LEVEL ?? 'warn', process.stderr);
const monitor = process.env.HEALTH_INTERVAL_SECONDS
  ? healthMonitor({
      db: openDatabase(url, { max: 4 }).db,
      url,
      compute: {} as ComputeDriver,
      log,
      intervalSeconds: Number(process.env.HEALTH_INTERVAL_SECONDS),
      timeoutSeconds: Number(process.env.HEALTH_TIMEOUT_SECONDS ?? 1),
      failures: 2,
      onRound: (e) => process.stdout.write(`health ${e.kind}\n`),
    })
  : undefined;
const { options } = testWorkerOptions(url, process.env.MAIL_DIR!, log, {
  concurrency: Number(process.env.CONCURRENCY ?? 4),
  ...(monitor ? { tasks: { [HEALTH_TASK]: monitor.task }, onStop: [() => monitor.stop()] } : {}),
});
const worker = await startWorker(options);
process.stdout.write('worker ready\n');
process.on('SIGTERM', () => {
  void worker.stop().then(() => process.exit(0));
});
