// Load generation for bench/edge.bench.ts, all by wrk (one thread, pinned to
// the load core): unpaced for peak throughput, and paced by wrk's `delay()`
// for latency at a given rate. wrk is C on epoll: the load generator adds
// no garbage collector or timer jitter of its own to the latencies it reports.
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface WrkResult {
  rps: number;
  requests: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

export interface WrkOptions {
  core: number;
  seconds: number;
  connections: number;
  /** Rotate Host over `<hostPrefix><i><hostSuffix>` for i < tenants, and the path over the prefixes; without it, GET / as is. */
  hostSuffix?: string;
  /** `t` unless given. */
  hostPrefix?: string;
  tenants: number;
  /** Each request's path is `<prefix>/x`, rotating over these... */
  prefixes: string[];
  /** ...unless whole paths are given here. */
  paths?: string[];
}

/**
 * wrk's Lua script: the request rotation, an optional pause before each
 * request (drawn from an exponential distribution with mean `meanDelayMs`,
 * rounded to wrk's whole milliseconds), and a parseable summary.
 */
function script(opts: WrkOptions, meanDelayMs?: number): string {
  const paths = (opts.paths ?? opts.prefixes.map((p) => `${p}/x`)).map((p) => `"${p}"`).join(', ');
  const rotate = opts.hostSuffix
    ? `local paths = { ${paths} }
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], { Host = "${opts.hostPrefix ?? 't'}" .. (i % ${opts.tenants}) .. "${opts.hostSuffix}" })
end
`
    : '';
  const pause =
    meanDelayMs === undefined
      ? ''
      : `math.randomseed(${Date.now() % 1_000_000})
delay = function() return math.floor(-${meanDelayMs} * math.log(1 - math.random()) + 0.5) end
`;
  return `${rotate}${pause}done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("AIQSO %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status + e.connect + e.read + e.write + e.timeout))
end
`;
}

async function wrk(url: string, opts: WrkOptions, meanDelayMs?: number): Promise<WrkResult> {
  const file = `/tmp/aiqso-bench-${process.pid}.lua`;
  writeFileSync(file, script(opts, meanDelayMs));
  try {
    const { stdout } = await run(
      'taskset',
      [
        ...['-c', String(opts.core), 'wrk', '-t1', `-c${opts.connections}`, `-d${opts.seconds}s`],
        ...['--timeout', '5s', '-s', file, url],
      ],
      { timeout: (opts.seconds + 30) * 1000 },
    );
    const m = /AIQSO (\d+) (\d+) (\d+) (\d+) (\d+)/.exec(stdout);
    if (!m) throw new Error(`could not read wrk output:\n${stdout}`);
    const [requests, durationUs, p50us, p99us, errors] = m.slice(1, 6).map(Number) as [
      number,
      number,
      number,
      number,
      number,
    ];
    return { rps: requests / (durationUs / 1e6), requests, p50ms: p50us / 1000, p99ms: p99us / 1000, errors };
  } finally {
    rmSync(file, { force: true });
  }
}

/** Peak requests/s: every connection sends its next request as soon as the answer is in. */
export const wrkPeak = (url: string, opts: WrkOptions): Promise<WrkResult> => wrk(url, opts);

/**
 * About `rate` requests/s: each connection pauses before each request (wrk's
 * `delay()`), so connections = rate × mean pause. The pauses are random
 * (exponential, mean `pauseMs`), so requests arrive spread out in time, about
 * as a Poisson process, the way independent clients' do. A fixed pause would
 * keep the connections in lockstep: every `pauseMs` all of them send at once,
 * and the figure would be how long a proxy takes to drain a burst of that
 * many requests rather than its latency at that rate. Latency is from the
 * request's write to the end of its answer; the rate reached is reported (a
 * little under `rate`, by each answer's own latency).
 */
export function wrkPaced(
  url: string,
  opts: Omit<WrkOptions, 'connections'> & { rate: number; pauseMs?: number },
): Promise<WrkResult> {
  const pauseMs = opts.pauseMs ?? 10;
  const connections = Math.max(1, Math.round((opts.rate * pauseMs) / 1000));
  return wrk(url, { ...opts, connections }, pauseMs);
}
