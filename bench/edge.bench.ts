// Edge benchmark: direct-to-upstream vs the builtin edge vs nginx, each proxy
// pinned to one core, with 10,000 tenants × 5 routes in the table. Prints
// figures and ratios (builtin/nginx throughput, added p99 latency at half the
// builtin edge's peak, edge memory). Needs wrk and nginx (apt-get install wrk nginx).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openDatabase } from '../src/db/database.ts';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { findNginx } from '../src/edge/nginx/apply.ts';
import { renderNginxConfig } from '../src/edge/nginx/render.ts';
import { loadRoutes } from '../src/edge/routes-store.ts';
import { createLogger } from '../src/observability/logger.ts';
import { wrkPaced, wrkPeak, type WrkResult } from './load.ts';

const TENANTS = 10_000;
const PREFIXES = ['', '/crm', '/docs', '/mail', '/cal'];
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const PROXY_CORE = 1;
const LOAD_CORE = 0;
const BASE = 'bench.test';
/** Rounds of the latency runs (each target once a round); the figures are their medians. */
const LATENCY_ROUNDS = Number(process.env.BENCH_LATENCY_ROUNDS ?? 3);
/** NODE_OPTIONS of this checkout's edges but one (docs/running.md). */
const SIZED_HEAP = '--max-semi-space-size=8 --max-old-space-size=512';
const AIQSO_BIN = path.resolve(import.meta.dirname, '../bin/aiqso.js');
/** Another checkout's bin/aiqso.js, whose edge is measured beside this one's. */
const BEFORE = process.env.BENCH_EDGE_BEFORE ? path.resolve(process.env.BENCH_EDGE_BEFORE) : undefined;
/** The edge's goals: requests/s against nginx's, added p99 over the bare Node proxy's, RSS. */
const GOAL = { nginxShare: 0.5, addedP99OverBareMs: 1.5, rssMb: 150 };

function need(bin: string, hint: string): void {
  try {
    execFileSync('which', [bin], { stdio: 'ignore' });
  } catch {
    console.error(`edge bench needs ${bin}: ${hint}`);
    process.exit(2);
  }
}

async function waitFor(port: number, host: string, pathName = '/healthz'): Promise<void> {
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}${pathName}`, { headers: { host } });
      if (res.status < 500) return;
    } catch {
      // not up yet
    }
    if (Date.now() > end) throw new Error(`nothing answered on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function rssMb(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/**
 * CPU seconds (user + system) used so far by `pid` and its children (nginx's
 * workers). Unlike requests/s, CPU per request hardly moves when other
 * processes compete for the core.
 */
function cpuSeconds(pid: number): number {
  const stat = (p: string) => {
    try {
      // Fields after the command name: state is [0], ppid [1], utime [11], stime [12].
      return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
    } catch {
      return undefined;
    }
  };
  let ticks = 0;
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const f = stat(p);
    if (f && (p === String(pid) || f[1] === String(pid))) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / 100; // USER_HZ
}

/**
 * RSS of `pid` every 200 ms while `run` runs, after its first second (the burst of a load's
 * start: JIT compilation, the young generation filling): the median and the largest sample.
 */
async function rssDuring<T>(
  pid: number,
  run: () => Promise<T>,
): Promise<T & { loadRss: { p50: number; max: number } }> {
  const samples: number[] = [];
  const started = performance.now();
  const timer = setInterval(() => {
    if (performance.now() - started >= 1000) samples.push(rssMb(pid).rss);
  }, 200);
  try {
    const result = await run();
    samples.sort((a, b) => a - b);
    return {
      ...result,
      loadRss: { p50: samples[Math.floor(samples.length / 2)] ?? NaN, max: samples.at(-1) ?? NaN },
    };
  } finally {
    clearInterval(timer);
  }
}

async function measured<T extends { requests: number }>(
  pid: number,
  run: () => Promise<T>,
): Promise<T & { cpuUs: number }> {
  const before = cpuSeconds(pid);
  const result = await run();
  return { ...result, cpuUs: ((cpuSeconds(pid) - before) / result.requests) * 1e6 };
}

function startNginxProcess(dir: string, config: string, core: number): ChildProcess {
  mkdirSync(dir, { recursive: true });
  for (const t of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'])
    mkdirSync(path.join(dir, 'tmp', t), { recursive: true });
  const file = path.join(dir, 'nginx.conf');
  writeFileSync(file, config);
  const bin = findNginx()!;
  execFileSync(bin, ['-t', '-q', '-p', `${dir}/`, '-c', file]);
  return spawn('taskset', ['-c', String(core), bin, '-p', `${dir}/`, '-c', file, '-g', 'daemon off;'], {
    stdio: 'ignore',
  });
}

const staticUpstream = (dir: string, port: number) => `worker_processes 1;
pid "${dir}/nginx.pid";
error_log "${dir}/error.log" warn;
events { worker_connections 4096; }
http {
  access_log off;
${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path "${dir}/tmp/${t}";`).join('\n')}
  keepalive_requests 1000000;
  server { listen 127.0.0.1:${port}; location / { return 200 "ok\\n"; } }
}
`;

/** A minimal Node reverse proxy to one upstream: what node:http and undici cost with nothing else. */
const bareProxy = (port: number, upstream: number) => `import http from 'node:http';
import { createRequire } from 'node:module';
const { Agent } = createRequire(process.env.NODE_PATH + '/').call(null, 'undici');
const agent = new Agent({ connections: 256, pipelining: 1 });
http.createServer((req, res) => {
  const headers = { ...req.headers };
  delete headers.connection;
  agent.dispatch({ origin: 'http://127.0.0.1:${upstream}', path: req.url, method: req.method, headers }, {
    onRequestStart() {},
    onResponseStart(_c, status, h) { delete h.connection; delete h['keep-alive']; res.writeHead(status, h); },
    onResponseData(_c, chunk) { res.write(chunk); },
    onResponseEnd() { res.end(); },
    onResponseError() { res.destroy(); },
  });
}).listen(${port}, '127.0.0.1');
`;

interface Paced {
  median: WrkResult;
  min: WrkResult;
  max: WrkResult;
  answers: number;
  errors: number;
}

/** Median, smallest and largest of each figure over a target's rounds (each figure on its own). */
function summarise(results: WrkResult[]): Paced {
  const pick = (at: (sorted: number[]) => number): WrkResult => {
    const figure = (k: keyof WrkResult) => at(results.map((r) => r[k]).sort((a, b) => a - b));
    return {
      rps: figure('rps'),
      requests: figure('requests'),
      p50ms: figure('p50ms'),
      p99ms: figure('p99ms'),
      errors: figure('errors'),
    };
  };
  return {
    median: pick((v) => v[Math.floor(v.length / 2)]!),
    min: pick((v) => v[0]!),
    max: pick((v) => v.at(-1)!),
    answers: results.reduce((n, r) => n + r.requests, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
  };
}

async function main() {
  need('wrk', 'apt-get install wrk');
  need('taskset', 'apt-get install util-linux');
  if (!findNginx()) need('nginx', 'apt-get install nginx');
  // This process paces the latency runs: keep it (and what it starts without taskset) on the load
  // core, so it never takes the proxy's core from the proxy being measured.
  execFileSync('taskset', ['-a', '-p', '-c', String(LOAD_CORE), String(process.pid)], { stdio: 'ignore' });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'aiqso-bench-edge-'));
  const children: ChildProcess[] = [];
  let pg: EmbeddedPostgres | undefined;
  const log = createLogger('warn', process.stderr);
  const adminUrl =
    process.env.BENCH_DATABASE_URL ??
    process.env.TEST_DATABASE_URL ??
    (pg = await startEmbeddedPostgres(tmp, log)).url;
  const dbName = `aiqso_bench_${process.pid}`;
  const admin = openDatabase(adminUrl, { max: 1 });
  await admin.pool.query(`CREATE DATABASE ${dbName}`);
  const u = new URL(adminUrl);
  u.pathname = `/${dbName}`;
  const db = openDatabase(u.toString(), { max: 2 });
  try {
    await migrate(db.pool);
    // The upstream: a static nginx answering "ok" on the load core, so it costs the proxy's core nothing.
    const upstreamPort = await freePort();
    children.push(
      startNginxProcess(
        path.join(tmp, 'upstream'),
        staticUpstream(path.join(tmp, 'upstream'), upstreamPort),
        LOAD_CORE,
      ),
    );
    await db.pool.query(
      `INSERT INTO tenants (id, slug, company, status)
       SELECT 'ten_b' || i, 't' || i, 'Tenant ' || i, 'active' FROM generate_series(0, $1 - 1) i`,
      [TENANTS],
    );
    await db.pool.query(
      // auth 'app': the tenant's app checks its own sessions, so the edge proxies every request
      // (routes default to 'edge', forward auth, which would answer the bench's anonymous load itself).
      `INSERT INTO routes (id, hostname, path_prefix, tenant_id, upstream_host, upstream_port, auth)
       SELECT 'rte_b' || i || '_' || p.n, 't' || i || '.${BASE}', p.prefix, 'ten_b' || i, '127.0.0.1', $2, 'app'
       FROM generate_series(0, $1 - 1) i, unnest($3::text[]) WITH ORDINALITY AS p(prefix, n)`,
      [TENANTS, upstreamPort, PREFIXES],
    );
    const routes = await loadRoutes(db.db);
    console.log(`route table: ${TENANTS} tenants x ${PREFIXES.length} routes = ${routes.length} routes`);
    await waitFor(upstreamPort, 'x', '/');

    // The builtin edge: the real `aiqso edge` command pinned to the proxy core, two ways. First serving
    // the platform app on the base domain itself, then forwarding it (AIQSO_EDGE_PLATFORM_URL) to the first.
    const startBuiltin = async (name: string, extraEnv: Record<string, string>, bin = AIQSO_BIN) => {
      const port = await freePort();
      const child = spawn(
        'taskset',
        [
          '-c',
          String(PROXY_CORE),
          process.execPath,
          // e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the edge under load (not allowed in NODE_OPTIONS)
          ...(process.env.BENCH_EDGE_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? []),
          bin,
          'edge',
        ],
        {
          env: {
            PATH: process.env.PATH,
            HOME: process.env.HOME,
            DATABASE_URL: u.toString(),
            AIQSO_BASE_DOMAIN: BASE,
            AIQSO_HTTP_PORT: String(port),
            AIQSO_DATA_DIR: path.join(tmp, `edge-data-${port}`),
            AIQSO_LOG_LEVEL: process.env.BENCH_EDGE_LOG_LEVEL ?? 'info', // access log on, as in production (to /dev/null here)
            AIQSO_EDGE_RATE_IP: '1000000', // limiter on, budget out of reach
            AIQSO_EDGE_RATE_TENANT: '1000000',
            AIQSO_BILLING: 'local', // chosen explicitly: the edge refuses to start on a domain without a billing mode
            // e.g. --max-semi-space-size=2 to see what a smaller young generation saves (bench/README.md)
            ...extraEnv,
            ...(process.env.BENCH_EDGE_NODE_OPTIONS
              ? { NODE_OPTIONS: process.env.BENCH_EDGE_NODE_OPTIONS }
              : {}),
          },
          stdio: 'ignore',
        },
      );
      children.push(child);
      await waitFor(port, BASE);
      return { name, port, pid: child.pid!, idle: rssMb(child.pid!) };
    };
    // Each with its heap sized as docs/running.md suggests (NODE_OPTIONS: a young generation of two
    // 8 MB semi-spaces, where Node lets each grow to 16 MB), and the forwarding edge once more with
    // Node's default sizing, to show what that choice changes in the same run.
    const sizedHeap = { NODE_OPTIONS: SIZED_HEAP };
    const serving = await startBuiltin('builtin', sizedHeap);
    const forwarding = await startBuiltin('builtin, forwarding', {
      ...sizedHeap,
      AIQSO_EDGE_PLATFORM_URL: `http://127.0.0.1:${serving.port}`,
    });
    const defaults = await startBuiltin('forwarding, Node defaults', {
      AIQSO_EDGE_PLATFORM_URL: `http://127.0.0.1:${serving.port}`,
    });
    const builtins = [serving, forwarding, defaults];
    // Another version's edge in the same run (BENCH_EDGE_BEFORE: that checkout's bin/aiqso.js), both
    // ways, so a change is compared on one machine at one time.
    if (BEFORE) {
      const beforeServing = await startBuiltin('before: builtin', {}, BEFORE);
      const beforeForwarding = await startBuiltin(
        'before: forwarding',
        { AIQSO_EDGE_PLATFORM_URL: `http://127.0.0.1:${beforeServing.port}` },
        BEFORE,
      );
      builtins.push(beforeServing, beforeForwarding);
    }

    // The floor for any Node proxy here: node:http in, undici out to the one upstream, nothing else
    // (no routing, limits, logs or metrics), pinned to the proxy core like the others.
    const barePort = await freePort();
    const bareFile = path.join(tmp, 'bare-proxy.mjs');
    writeFileSync(bareFile, bareProxy(barePort, upstreamPort));
    const bare = spawn('taskset', ['-c', String(PROXY_CORE), process.execPath, bareFile], {
      stdio: 'ignore',
      env: { PATH: process.env.PATH, NODE_PATH: path.resolve(import.meta.dirname, '../node_modules') },
    });
    children.push(bare);
    await waitFor(barePort, 'x', '/');

    // nginx from the same route table, one worker pinned to the proxy core.
    const nginxPort = await freePort();
    const nginxDir = path.join(tmp, 'nginx');
    const { config } = renderNginxConfig({
      routes,
      baseDomain: BASE,
      dir: nginxDir,
      listen: { bind: '127.0.0.1', httpPort: nginxPort },
      internal: { host: '127.0.0.1', port: serving.port },
      rate: { perIp: 1_000_000, perTenant: 1_000_000 },
      workerProcesses: 1,
    });
    const tTest = performance.now();
    const nginxProcess = startNginxProcess(nginxDir, config, PROXY_CORE);
    children.push(nginxProcess);
    console.log(
      `nginx -t + start with ${routes.length} routes: ${Math.round(performance.now() - tTest)} ms to validate`,
    );
    await waitFor(nginxPort, BASE);

    const wrkOpts = {
      core: LOAD_CORE,
      seconds: SECONDS,
      connections: 64,
      tenants: TENANTS,
      prefixes: PREFIXES,
    };
    const viaEdge = { ...wrkOpts, hostSuffix: `.${BASE}` };
    // Warm up each, then measure.
    for (const port of [upstreamPort, barePort, ...builtins.map((b) => b.port), nginxPort]) {
      await wrkPeak(`http://127.0.0.1:${port}/`, {
        ...wrkOpts,
        seconds: 2,
        hostSuffix: port === upstreamPort ? undefined : `.${BASE}`,
      });
    }
    const direct = await wrkPeak(`http://127.0.0.1:${upstreamPort}/`, wrkOpts);
    const barePeak = await measured(bare.pid!, () => wrkPeak(`http://127.0.0.1:${barePort}/`, viaEdge));
    const peaks = [];
    for (const b of builtins) {
      const peak = await rssDuring(b.pid, () =>
        measured(b.pid, () => wrkPeak(`http://127.0.0.1:${b.port}/`, viaEdge)),
      );
      peaks.push({ ...b, peak, afterPeak: rssMb(b.pid) });
    }
    const viaNginx = await measured(nginxProcess.pid!, () =>
      wrkPeak(`http://127.0.0.1:${nginxPort}/`, viaEdge),
    );

    // Latency at half the (first) builtin edge's peak, the same rate for every proxy, in rounds
    // that take each target in turn, so a slow spell of the machine falls on all of them alike.
    // Each target waits idle while the others run, so each of its rounds starts with a second at
    // the same rate that is reported apart (`settling`): what the first second after a quiet spell
    // looks like, not the steady latency at that rate.
    const half = Math.round(peaks[0]!.peak.rps / 2);
    const pacedOpts = { ...wrkOpts, rate: half };
    const targets = [
      { name: 'direct', port: upstreamPort, hostSuffix: undefined, pid: undefined },
      { name: 'bare Node proxy', port: barePort, hostSuffix: `.${BASE}`, pid: bare.pid },
      ...peaks.map((b) => ({ name: b.name, port: b.port, hostSuffix: `.${BASE}`, pid: b.pid })),
      { name: 'nginx', port: nginxPort, hostSuffix: `.${BASE}`, pid: nginxProcess.pid },
    ];
    const rounds: Record<string, WrkResult[]> = {};
    const settling: Record<string, WrkResult[]> = {};
    /** Share of its core each proxy used over its measured rounds (user + system time / wrk's duration). */
    const busy: Record<string, { cpu: number; wall: number }> = {};
    for (let round = 0; round < LATENCY_ROUNDS; round++) {
      for (const t of targets) {
        const opts = { ...pacedOpts, hostSuffix: t.hostSuffix };
        const url = `http://127.0.0.1:${t.port}/`;
        (settling[t.name] ??= []).push(await wrkPaced(url, { ...opts, seconds: 1 }));
        if (t.pid === undefined) {
          (rounds[t.name] ??= []).push(await wrkPaced(url, opts));
          continue;
        }
        const r = await measured(t.pid, () => wrkPaced(url, opts));
        (rounds[t.name] ??= []).push(r);
        const b = (busy[t.name] ??= { cpu: 0, wall: 0 });
        b.cpu += (r.cpuUs * r.requests) / 1e6;
        b.wall += r.requests / r.rps;
      }
    }
    const lat = (name: string) => summarise(rounds[name]!);
    const directLat = lat('direct');
    const latencies = peaks.map((b) => ({ ...b, lat: lat(b.name), end: rssMb(b.pid) }));

    const f = (n: number) => n.toFixed(0);
    const ms = (n: number) => n.toFixed(3);
    const row = (name: string, r: { rps: number; p99ms: number; errors: number }) =>
      console.log(`  ${name.padEnd(24)} ${f(r.rps)} req/s  p99 ${ms(r.p99ms)} ms  errors ${r.errors}`);
    console.log(
      `\npeak throughput (wrk, 1 thread, 64 connections, ${SECONDS}s; proxies pinned to core ${PROXY_CORE})`,
    );
    row('direct to upstream', direct);
    row('bare Node proxy', barePeak);
    for (const b of peaks) row(b.name, b.peak);
    row('nginx', viaNginx);
    for (const b of peaks) {
      console.log(
        `  ${b.name} / nginx: ${(b.peak.rps / viaNginx.rps).toFixed(2)} (goal >= 0.50); CPU per request ${f(b.peak.cpuUs)} us against nginx's ${f(viaNginx.cpuUs)} us, nginx/builtin ${(viaNginx.cpuUs / b.peak.cpuUs).toFixed(2)} (the ratio an otherwise idle proxy core would give)`,
      );
    }
    console.log(
      `\nlatency at ${half} req/s (half the builtin peak; wrk, each connection pausing a random time, mean 10 ms, before each request), ${LATENCY_ROUNDS} rounds of ${SECONDS}s, each after a settling second: median (smallest-largest); the share of its core the proxy used`,
    );
    const range = (r: Paced, k: 'p50ms' | 'p99ms') => `${ms(r.median[k])} (${ms(r.min[k])}-${ms(r.max[k])})`;
    for (const t of targets) {
      const r = lat(t.name);
      const b = busy[t.name];
      console.log(
        `  ${t.name.padEnd(24)} p50 ${range(r, 'p50ms')} ms  p99 ${range(r, 'p99ms')} ms  (${f(r.median.rps)} req/s, ${r.answers} answers, ${r.errors} errors${b ? `; core ${f((b.cpu / b.wall) * 100)}% busy` : ''})`,
      );
    }
    console.log('  the settling seconds (the first second after the target sat idle while the others ran):');
    for (const t of targets) {
      const r = summarise(settling[t.name]!);
      console.log(`  ${t.name.padEnd(24)} p99 ${range(r, 'p99ms')} ms  (${r.errors} errors)`);
    }
    console.log(
      `  CPU per request of the bare Node proxy ${f(barePeak.cpuUs)} us: ${peaks.map((b) => `${b.name} ${(b.peak.cpuUs / barePeak.cpuUs).toFixed(2)}x`).join(', ')}`,
    );
    const added = (name: string) => ms(lat(name).median.p99ms - directLat.median.p99ms);
    console.log(
      `  added p99 (medians): bare Node proxy ${added('bare Node proxy')} ms, ${peaks.map((b) => `${b.name} ${added(b.name)} ms`).join(', ')} (goal <= the bare Node proxy's + ${GOAL.addedP99OverBareMs} ms); nginx ${added('nginx')} ms`,
    );
    console.log(
      `\nbuiltin edge memory (RSS of the whole aiqso edge process; "builtin" also serves the platform app on the base domain${process.env.BENCH_EDGE_NODE_OPTIONS ? `; NODE_OPTIONS=${process.env.BENCH_EDGE_NODE_OPTIONS}` : ''})`,
    );
    for (const b of latencies) {
      console.log(
        `  ${b.name.padEnd(24)} idle with ${routes.length} routes ${f(b.idle.rss)} MB; under peak load ${f(b.peak.loadRss.p50)} MB (largest ${f(b.peak.loadRss.max)}); after peak ${f(b.afterPeak.rss)} MB; end ${f(b.end.rss)} MB; high-water ${f(b.end.hwm)} MB (goal <= ${GOAL.rssMb} MB)`,
      );
    }
    const addedMs = (name: string) => lat(name).median.p99ms - directLat.median.p99ms;
    const bareAdded = addedMs('bare Node proxy');
    const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
    console.log(
      `\ngoals, this run (requests/s >= ${GOAL.nginxShare} of nginx's; added p99 at half load <= the bare Node proxy's ${ms(bareAdded)} + ${GOAL.addedP99OverBareMs} ms; RSS high-water <= ${GOAL.rssMb} MB with ${routes.length} routes)`,
    );
    for (const b of latencies) {
      const share = b.peak.rps / viaNginx.rps;
      const over = addedMs(b.name) - bareAdded;
      console.log(
        `  ${b.name.padEnd(24)} requests/s ${share.toFixed(2)} of nginx's (${met(share >= GOAL.nginxShare)}); added p99 ${over >= 0 ? '+' : ''}${ms(over)} ms over the bare Node proxy's (${met(over <= GOAL.addedP99OverBareMs)}); RSS high-water ${f(b.end.hwm)} MB, ${(b.end.hwm / GOAL.rssMb).toFixed(2)} of the goal (${met(b.end.hwm <= GOAL.rssMb)})`,
      );
    }
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await db.close();
    await admin.pool.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.close();
    await pg?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
