import os from 'node:os';
import v8 from 'node:v8';

/**
 * V8's collector without its helper threads: marking in small steps on the
 * thread that runs JavaScript instead of concurrently beside it, and
 * scavenging, compacting and sweeping on that thread alone.
 *
 * On an edge given one CPU (`taskset`, a one-CPU cpuset) the helper threads
 * have no CPU of their own: they take the only one from the thread serving
 * requests, for tens of milliseconds while a mark-compact's concurrent
 * marking runs. Measured with a 50,000-route forwarding edge pinned to one
 * core, 30 s at half its peak rate after 45 s idle, two runs each with one
 * mark-compact in the window: p99.9 6.7 and 8.0 ms against 18.5 and 21.6 ms,
 * p99 2.3 and 2.6 ms against 2.6 and 2.7 ms; scavenges took 0.55–0.65 ms
 * against 0.85. On several CPUs the helpers run beside the serving thread,
 * so they stay on there.
 *
 * Node takes V8 flags from its command line, and NODE_OPTIONS refuses these.
 * Set at run time they reach the heaps made afterwards, so they are set before
 * the worker thread that serves requests starts (the main thread, which only
 * passes signals on, gets them too). Not every collector flag can be set
 * late: `--single-threaded-gc` and `--no-parallel-marking` stopped V8 at its
 * first collection when tried; these four did not, in the runs above, the
 * bench, the tests, a 5-minute peak run on the smallest heap (5.9 million
 * requests) and 3 minutes more while 2,000 routes changed every 2 s.
 */
const WITHOUT_HELPERS = [
  '--no-concurrent-marking',
  '--no-parallel-scavenge',
  '--no-parallel-compaction',
  '--no-concurrent-sweeping',
];

/**
 * Apply AIQSO_EDGE_GC_HELPERS before the serving worker starts: `off`, or
 * `auto` when this process may run on one CPU only, turns the helpers off.
 * Returns whether they are on.
 */
export function applyGcHelpers(setting: 'auto' | 'on' | 'off'): boolean {
  const on = setting === 'on' || (setting === 'auto' && os.availableParallelism() > 1);
  if (!on) for (const flag of WITHOUT_HELPERS) v8.setFlagsFromString(flag);
  return on;
}
