import type { CommandContext } from './context.ts';

/**
 * Stop cleanly on SIGINT/SIGTERM: stop taking requests, drain, close the
 * database (stopping an embedded server last). A second signal exits at once.
 */
export function onShutdownSignal(stop: () => Promise<void>, log: CommandContext['log']): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting without cleanup');
      process.exit(130);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
