// A worker process for the orchestrator tests: `node --import tsx worker-process.ts`
// with DATABASE_URL and MAIL_DIR set. Prints "worker ready" once it takes jobs.
import { createLogger } from '../../../src/observability/logger.ts';
import { startWorker } from '../../../src/orchestrator/worker.ts';
import { testWorkerOptions } from './reconcilers.ts';

const url = process.env.DATABASE_URL!;
const log = createLogger(process.env.LOG_LEVEL ?? 'warn', process.stderr);
const { options } = testWorkerOptions(url, process.env.MAIL_DIR!, log, {
  concurrency: Number(process.env.CONCURRENCY ?? 4),
});
const worker = await startWorker(options);
process.stdout.write('worker ready\n');
process.on('SIGTERM', () => {
  void worker.stop().then(() => process.exit(0));
});
