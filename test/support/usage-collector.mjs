// A collector process for the usage crash test: opens the database (argv[2])
// and the process driver over argv[3], prints `start`, runs one collection
// pass as of argv[4] (an ISO time) and prints `done`. The test kills it with
// SIGKILL at moments in between. It runs the built platform (dist/, rebuilt by
// the global setup when src/ changed) so that it starts in a fraction of a
// second and the kill lands inside the pass, not inside a TypeScript loader.
import { ProcessDriver } from '../../dist/compute/process/driver.js';
import { openDatabase } from '../../dist/db/database.js';
import { createLogger } from '../../dist/observability/logger.js';
import { collectUsage } from '../../dist/usage/collect.js';

const [url, root, at] = process.argv.slice(2);
if (!url || !root || !at)
  throw new Error('usage: usage-collector.mjs <database url> <process root> <iso time>');
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
