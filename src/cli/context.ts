import { loadConfig, type Config } from '../config/load.ts';
import { connectMasterDatabase, type MasterDatabase } from '../db/connect.ts';
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
  return { config, log: createLogger(level, process.stderr) };
}

/** Run `fn` with the master database open, closing it (and any embedded server) afterwards. */
export async function withDatabase<T>(
  ctx: CommandContext,
  fn: (db: MasterDatabase) => Promise<T>,
): Promise<T> {
  const database = await connectMasterDatabase(ctx.config, ctx.log, {
    poolSize: 2,
    applicationName: 'aiqso-cli',
  });
  try {
    return await fn(database);
  } finally {
    await database.close();
  }
}
