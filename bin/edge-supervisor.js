// `aiqso edge`, run from the built bundle: this thread only sizes and starts the worker thread that
// serves, passes signals on to it, and exits with its exit code. It loads none of the CLI (commander,
// the configuration schema, the logger): with them this thread's own heap kept 10–15 MB of RSS for
// the edge's whole life (three alternating starts of each edge: a forwarding edge idle at 130–131 MB
// against 139–142, one serving the platform app 142–145 against 153–160). The configuration is read
// by the CLI itself, in a worker thread that ends once it has said what this one needs.
import os from 'node:os';
import v8 from 'node:v8';
import { Worker } from 'node:worker_threads';

/** Where each worker thread starts: it keeps one tick object (bin/tick-shape.js), then runs the CLI. */
const WORKER_ENTRY = new URL('./worker-entry.js', import.meta.url);

/** Young generation of the serving thread: two 8 MB semi-spaces (Node's default lets each grow to 16 MB). */
const YOUNG_GENERATION_MB = 24;

/**
 * V8's collector without its helper threads (AIQSO_EDGE_GC_HELPERS): marking in small steps on the
 * thread that runs JavaScript instead of concurrently beside it, and scavenging, compacting and
 * sweeping on that thread alone.
 *
 * On an edge given one CPU (`taskset`, a one-CPU cpuset) the helper threads have no CPU of their own:
 * they take the only one from the thread serving requests, for tens of milliseconds while a
 * mark-compact's concurrent marking runs. Measured with a 50,000-route forwarding edge pinned to one
 * core, 30 s at half its peak rate after 45 s idle, two runs each with one mark-compact in the window:
 * p99.9 6.7 and 8.0 ms against 18.5 and 21.6 ms, p99 2.3 and 2.6 ms against 2.6 and 2.7 ms; scavenges
 * took 0.55–0.65 ms against 0.85. On several CPUs the helpers run beside the serving thread, so they
 * stay on there.
 *
 * Node takes V8 flags from its command line, and NODE_OPTIONS refuses these. Set at run time they
 * reach the heaps made afterwards, so they are set before the serving worker starts. Not every
 * collector flag can be set late: `--single-threaded-gc` and `--no-parallel-marking` stopped V8 at
 * its first collection when tried; these four did not, in the runs above, the bench, the tests, a
 * 5-minute peak run on the smallest heap (5.9 million requests) and 3 minutes more while 2,000 routes
 * changed every 2 s.
 */
const WITHOUT_HELPERS = [
  '--no-concurrent-marking',
  '--no-parallel-scavenge',
  '--no-parallel-compaction',
  '--no-concurrent-sweeping',
];

/**
 * What the configuration says about the serving thread ({ heapMb, gcHelpers }), read by the CLI in a
 * worker thread of its own; undefined when that worker ended without saying (a configuration error,
 * which it printed, and its exit code is set for this process).
 */
function edgeSettings(entry) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_ENTRY, { argv: ['edge'], workerData: { entry, edgeSettings: true } });
    let settings;
    worker.once('message', (m) => {
      settings = m;
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (settings) return resolve(settings);
      process.exitCode = code || 1;
      resolve(undefined);
    });
  });
}

export async function superviseEdge(entry) {
  const settings = await edgeSettings(entry);
  if (!settings) return;
  // AIQSO_EDGE_HEAP_MB=0: serve on this thread, with Node's default heap sizing (the command sets
  // `--liftoff-only` itself there).
  if (settings.heapMb === 0) return import(entry);
  // Keep undici's WebAssembly parser on the baseline compiler (src/cli/wasm.ts says why).
  v8.setFlagsFromString('--liftoff-only');
  const gcHelpers =
    settings.gcHelpers === 'on' || (settings.gcHelpers === 'auto' && os.availableParallelism() > 1);
  if (!gcHelpers) for (const flag of WITHOUT_HELPERS) v8.setFlagsFromString(flag);
  const worker = new Worker(WORKER_ENTRY, {
    argv: process.argv.slice(2),
    workerData: { entry, gcHelpers },
    resourceLimits: {
      maxYoungGenerationSizeMb: YOUNG_GENERATION_MB,
      maxOldGenerationSizeMb: settings.heapMb,
    },
  });
  // An error the worker did not handle itself ends it (exit code 1), and is reported here.
  worker.on('error', (err) => {
    const why =
      err.code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? `the edge used up its ${settings.heapMb} MB heap; raise AIQSO_EDGE_HEAP_MB (0: Node.js defaults)`
        : `the edge stopped: ${err.message}`;
    process.stderr.write(`aiqso: ${why}\n`);
  });
  worker.on('exit', (code) => process.exit(code));
  const forward = (signal) => worker.postMessage({ signal });
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
}
