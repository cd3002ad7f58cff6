import { loadConfig, type Config } from '../config/load.ts';
import type { MasterDatabase } from '../db/connect.ts';
import { pino } from 'pino';
import { createLogger, type Logger } from '../observability/logger.ts';

export interface CommandContext {
  config: Config;
  log: Logger;
}

/**
 * Configuration and a logger for a command. One-shot commands log only
 * warnings to stderr so their stdout stays clean for `--json`.
 */
export function commandContext(options: { quiet?: boolean } = {}): CommandContext {
  const config = loadConfig();
  const level = options.quiet && config.logLevel === 'info' ? 'warn' : config.logLevel;
  return { config, log: createLogger(level, bufferedStderr()) };
}

/**
 * stderr written in blocks of 4 KiB, and at least every second (as nginx's
 * `access_log … buffer=64k flush=1s`): a busy edge's access log costs a
 * syscall per few dozen requests, not one each. What is buffered is written
 * by pino when the process exits.
 */
function bufferedStderr() {
  const stream = pino.destination({ fd: 2, sync: false, minLength: 4096 });
  setInterval(() => stream.flush(), 1000).unref();
  return stream;
}

/** Run `fn` with the master database open, closing it (and any embedded server) afterwards. */
export async function withDatabase<T>(
  ctx: CommandContext,
  fn: (db: MasterDatabase) => Promise<T>,
  options: { poolSize?: number } = {},
): Promise<T> {
  // Imported here, not above: the database modules (pg, and graphile-worker's migrations) stay
  // out of the processes of commands that do not open one.
  const { connectMasterDatabase } = await import('../db/connect.ts');
  const database = await connectMasterDatabase(ctx.config, ctx.log, {
    poolSize: options.poolSize ?? 2,
    applicationName: 'aiqso-cli',
  });
  try {
    return await fn(database);
  } finally {
    await database.close();
  }
}
