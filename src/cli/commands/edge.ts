import { isMainThread, Worker } from 'node:worker_threads';
import type { CommandContext } from '../context.ts';
import { applyGcHelpers } from '../gc.ts';
import { baselineWasmOnly } from '../wasm.ts';

/** Young generation of the serving thread: two 8 MB semi-spaces (Node's default lets each grow to 16 MB). */
const YOUNG_GENERATION_MB = 24;

/**
 * `aiqso edge`. Requests are served from a worker thread running this same
 * command (edge-serve.ts), so that its V8 heap can be sized: Node sizes the
 * main thread's heap only from flags given at launch. Under load V8 lets the
 * young generation grow to 32 MB, and the old one to several times what is
 * live before it collects; with these limits a 50,000-route edge stayed
 * 30–40 MB smaller under sustained load, for a latency tail a few
 * milliseconds longer (bench/README.md). This module loads nothing else,
 * so the main thread stays small: it only passes signals on, and exits with
 * the worker's exit code. AIQSO_EDGE_HEAP_MB=0 serves on the main thread.
 */
export async function edge(ctx: CommandContext): Promise<void> {
  if (isMainThread) baselineWasmOnly();
  const entry = builtEntry();
  if (isMainThread && entry && ctx.config.edgeTuning.heapMb > 0) return superviseWorker(ctx, entry);
  return (await import('./edge-serve.ts')).serveEdge(ctx);
}

/** The built CLI entry, which bin/aiqso.js publishes for a worker to run; unset under tsx's loader. */
function builtEntry(): string | undefined {
  return (globalThis as Record<symbol, unknown>)[Symbol.for('aiqso.cliEntry')] as string | undefined;
}

function superviseWorker(ctx: CommandContext, entry: string): Promise<void> {
  const { config, log } = ctx;
  const heapMb = config.edgeTuning.heapMb;
  const gcHelpers = applyGcHelpers(config.edgeTuning.gcHelpers);
  const worker = new Worker(new URL(entry), {
    argv: process.argv.slice(2),
    workerData: { gcHelpers },
    resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB, maxOldGenerationSizeMb: heapMb },
  });
  // An error the worker did not handle itself ends it (exit code 1), and is reported here.
  worker.on('error', (err: Error & { code?: string }) => {
    const why =
      err.code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? `the edge used up its ${heapMb} MB heap; raise AIQSO_EDGE_HEAP_MB (0: Node.js defaults)`
        : `the edge stopped: ${err.message}`;
    log.fatal({ err }, why);
    process.stderr.write(`aiqso: ${why}\n`);
  });
  worker.on('exit', (code) => {
    log.flush();
    process.exit(code);
  });
  const forward = (signal: NodeJS.Signals) => worker.postMessage({ signal });
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  return new Promise(() => {}); // the process ends with the worker
}
