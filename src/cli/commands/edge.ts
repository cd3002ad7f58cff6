import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { CommandContext } from '../context.ts';
import { baselineWasmOnly } from '../wasm.ts';

/**
 * `aiqso edge`. From the built CLI, bin/edge-supervisor.js runs this command
 * in worker threads: once to learn the settings it needs before it starts
 * the serving thread (`edgeSettings` in the worker's data: the heap limit and
 * AIQSO_EDGE_GC_HELPERS, from the configuration read and checked as for any
 * command), then to serve (edge-serve.ts) from a thread whose V8 heap it
 * sizes: Node sizes the main thread's heap only from flags given at launch.
 * Under load V8 lets the young generation grow to 32 MB, and the old one to
 * several times what is live before it collects; with these limits a
 * 50,000-route edge stayed 30–40 MB smaller under sustained load, for a
 * latency tail a few milliseconds longer (bench/README.md).
 * AIQSO_EDGE_HEAP_MB=0 serves on the main thread, as does the CLI run
 * through tsx's loader.
 */
export async function edge(ctx: CommandContext): Promise<void> {
  if ((workerData as { edgeSettings?: boolean } | null)?.edgeSettings) {
    const { heapMb, gcHelpers } = ctx.config.edgeTuning;
    parentPort!.postMessage({ heapMb, gcHelpers });
    return;
  }
  if (isMainThread) baselineWasmOnly();
  return (await import('./edge-serve.ts')).serveEdge(ctx);
}
