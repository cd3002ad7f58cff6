// A collector process for the usage crash test: opens the database (argv[2])
// and the process driver over argv[3], prints `start`, runs one collection
// pass as of argv[4] (an ISO time) and prints `done`. The test kills it with
// SIGKILL at moments in between.
import { ProcessDriver } from '../../src/compute/process/driver.ts';
import { openDatabase } from '../../src/db/database.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { collectUsage } from '../../src/usage/collect.ts';

const [url, root, at] = process.argv.slice(2) as [string, string, string];
const log = createLogger('silent');
const handle = openDatabase(url, { max: 2 });
const compute = await ProcessDriver.open({ root, log, pollMs: 100 });
await handle.pool.query('SELECT 1');
process.stdout.write('start\n');
await collectUsage(
  {
    db: handle.db,
    admin: handle.pool,
    compute,
    log,
    timeZone: 'UTC',
    retention: { hourlyDays: 90, monthlyMonths: 13 },
  },
  new Date(at),
);
process.stdout.write('done\n');
await compute.close();
await handle.close();
