// A reader of an nginx access log for the usage crash test: opens the database (argv[2]), prints
// `start`, reads the log argv[3] as edge argv[4] in chunks of argv[5] bytes, and prints `done`. The
// test kills it with SIGKILL in between. It runs the built platform (dist/), so it starts fast.
import { openDatabase } from '../../dist/db/database.js';
import { createLogger } from '../../dist/observability/logger.js';
import { startNginxLogReporter } from '../../dist/usage/nginx-log.js';

const [url, file, edge, chunk] = process.argv.slice(2);
if (!url || !file || !edge || !chunk)
  throw new Error('usage: nginx-log-reader.mjs <database url> <log file> <edge> <chunk bytes>');
const handle = openDatabase(url, { max: 2 });
await handle.pool.query('SELECT 1');
const reader = startNginxLogReporter({
  db: handle.db,
  file,
  edge,
  log: createLogger('silent'),
  intervalMs: 3_600_000,
  chunkBytes: Number(chunk),
});
process.stdout.write('start\n');
await reader.close();
process.stdout.write('done\n');
await handle.close();
