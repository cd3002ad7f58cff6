// Load generation for bench/edge.bench.ts: wrk for peak throughput, and a
// small paced generator (raw keep-alive sockets) for latency at a fixed rate.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Peak {
  rps: number;
  requests: number;
  p99ms: number;
  errors: number;
}

/** Peak requests/s with wrk (one thread, pinned to `core`), rotating Host and path with a Lua script. */
export async function wrkPeak(
  url: string,
  opts: {
    core: number;
    seconds: number;
    connections: number;
    tenants: number;
    hostSuffix?: string;
    prefixes: string[];
  },
): Promise<Peak> {
  const script = `/tmp/aiqso-bench-${process.pid}.lua`;
  const paths = opts.prefixes.map((p) => `"${p}/x"`).join(', ');
  writeFileSync(
    script,
    opts.hostSuffix
      ? `local paths = { ${paths} }
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], { Host = "t" .. (i % ${opts.tenants}) .. "${opts.hostSuffix}" })
end
done = function(summary, latency, requests)
  io.write(string.format("AIQSO %d %d %d %d\\n", summary.requests, summary.duration, latency:percentile(99), summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
`
      : `done = function(summary, latency, requests)
  io.write(string.format("AIQSO %d %d %d %d\\n", summary.requests, summary.duration, latency:percentile(99), summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
`,
  );
  const { stdout } = await run(
    'taskset',
    [
      '-c',
      String(opts.core),
      'wrk',
      '-t1',
      `-c${opts.connections}`,
      `-d${opts.seconds}s`,
      '--timeout',
      '5s',
      '-s',
      script,
      url,
    ],
    { timeout: (opts.seconds + 30) * 1000 },
  );
  const m = /AIQSO (\d+) (\d+) (\d+) (\d+)/.exec(stdout);
  if (!m) throw new Error(`could not read wrk output:\n${stdout}`);
  const [requests, durationUs, p99us, errors] = m.slice(1).map(Number) as [number, number, number, number];
  return { rps: requests / (durationUs / 1e6), requests, p99ms: p99us / 1000, errors };
}

export interface Paced {
  sent: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

/**
 * `rate` requests/s for `seconds` over `connections` keep-alive sockets, each
 * sending its next request at its scheduled time (or when the previous
 * answer arrives, if later). Latency is from send to the end of the answer.
 * Answers must carry Content-Length.
 */
export async function paced(
  port: number,
  opts: { rate: number; seconds: number; connections: number; request: (i: number) => string },
): Promise<Paced> {
  const latencies: number[] = [];
  let errors = 0;
  let counter = 0;
  const interval = (1000 * opts.connections) / opts.rate;
  const end = performance.now() + opts.seconds * 1000;
  await Promise.all(
    Array.from(
      { length: opts.connections },
      (_, c) =>
        new Promise<void>((resolve) => {
          const socket = net.connect(port, '127.0.0.1');
          socket.setNoDelay(true);
          let buf: Buffer = Buffer.alloc(0);
          let sentAt = 0;
          let next = performance.now() + (interval * c) / opts.connections;
          const send = () => {
            if (performance.now() >= end) {
              socket.destroy();
              return resolve();
            }
            const wait = next - performance.now();
            if (wait > 0) return void setTimeout(send, wait);
            next += interval;
            sentAt = performance.now();
            socket.write(opts.request(counter++));
          };
          socket.on('connect', send);
          socket.on('error', () => {
            errors++;
            resolve();
          });
          socket.on('data', (chunk: Buffer) => {
            buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
            const head = buf.indexOf('\r\n\r\n');
            if (head < 0) return;
            const len = Number(/content-length: *(\d+)/i.exec(buf.subarray(0, head).toString())?.[1] ?? 0);
            if (buf.length < head + 4 + len) return;
            if (!buf.subarray(0, 12).toString().startsWith('HTTP/1.1 200')) errors++;
            latencies.push(performance.now() - sentAt);
            buf = buf.subarray(head + 4 + len);
            send();
          });
        }),
    ),
  );
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return { sent: latencies.length, p50ms: pct(0.5), p99ms: pct(0.99), errors };
}
