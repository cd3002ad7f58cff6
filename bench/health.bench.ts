// Health monitoring cost: one health round over 1,000 healthy dashboards
// (1,000 routes to 1,000 small HTTP upstreams in a child process), on a real
// PostgreSQL. Measured: CPU time of the control-plane process per round
// (user + system, `process.cpuUsage`; the upstreams' and PostgreSQL's own CPU
// are not in it), wall time per round, and what that CPU is as a share of one
// core at the default interval (AIQSO_HEALTH_INTERVAL_SECONDS=300; goal < 2%).
// Baseline, in the same run: the same 1,000 probes as bare fetches with the
// same concurrency, recording nothing.
// PostgreSQL: TEST_DATABASE_URL's server, else an embedded one in a temp dir.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { newId } from '../src/core/ids.ts';
import { upsertRoute } from '../src/edge/routes-store.ts';
import { healthRound, probeTarget } from '../src/health/monitor.ts';
import { createLogger } from '../src/observability/logger.ts';
import { benchDatabase } from './database.ts';

const TARGETS = Number(process.env.BENCH_TARGETS ?? 1000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const INTERVAL_S = 300;
const log = createLogger('silent');
const tmp = await mkdtemp(path.join(os.tmpdir(), 'aiqso-bench-health-'));

// The upstreams: one process, TARGETS servers, each answering 200 at /healthz.
const upstreams = spawn(
  process.execPath,
  [
    '-e',
    `const http = require('node:http');
     const n = Number(process.argv[1]); const ports = []; let up = 0;
     for (let i = 0; i < n; i++) {
       const s = http.createServer((req, res) => { res.writeHead(req.url === '/healthz' ? 200 : 404); res.end('ok'); });
       s.listen(0, '127.0.0.1', () => { ports.push(s.address().port); if (++up === n) console.log(JSON.stringify(ports)); });
     }`,
    String(TARGETS),
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
const ports = await new Promise<number[]>((resolve) => {
  createInterface({ input: upstreams.stdout }).once('line', (line) => resolve(JSON.parse(line) as number[]));
});

const db = await benchDatabase(tmp, log, { max: 10 });
const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;
try {
  for (let i = 0; i < TARGETS; i++) {
    const id = newId('tenant');
    await db.db
      .insertInto('tenants')
      .values({ id, slug: `h${i}`, company: `H ${i}`, status: 'active' })
      .execute();
    await upsertRoute(db.db, {
      hostname: `h${i}.bench.test`,
      tenantId: id,
      upstream: { host: '127.0.0.1', port: ports[i]! },
      stripPrefix: false,
    });
  }
  const targets = ports.map((port) => ({
    upstream: { host: '127.0.0.1', port },
    path: '/healthz',
    expect: 200,
  }));

  const bare: { cpu: number; wall: number }[] = [];
  const round: { cpu: number; wall: number; unhealthy: number }[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let c = process.cpuUsage();
    let t = performance.now();
    const results: boolean[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        while (next < targets.length) results.push((await probeTarget(targets[next++]!, 5000)).ok);
      }),
    );
    bare.push({ cpu: cpuMs(process.cpuUsage(c)), wall: performance.now() - t });
    if (results.some((ok) => !ok)) throw new Error('a bare probe failed');

    c = process.cpuUsage();
    t = performance.now();
    const s = await healthRound({
      db: db.db,
      log,
      intervalSeconds: INTERVAL_S,
      timeoutSeconds: 5,
      failures: 2,
    });
    round.push({ cpu: cpuMs(process.cpuUsage(c)), wall: performance.now() - t, unhealthy: s.unhealthy });
    if (s.probed !== TARGETS) throw new Error(`round probed ${s.probed}, expected ${TARGETS}`);
  }
  // The first round creates each target's record; the later ones are the steady state.
  const steady = round.slice(1);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const bareCpu = mean(bare.slice(1).map((x) => x.cpu));
  const roundCpu = mean(steady.map((x) => x.cpu));
  console.log(`\n${TARGETS} targets, ${ROUNDS} rounds (first round not counted: it creates the records)`);
  console.log(
    'case                      | CPU per round | wall per round | vs baseline | share of one core at 300 s',
  );
  const row = (label: string, cpu: number, wall: number) =>
    console.log(
      [
        label.padEnd(25),
        `${cpu.toFixed(0)} ms`.padEnd(13),
        `${wall.toFixed(0)} ms`.padEnd(14),
        `${(cpu / bareCpu).toFixed(2)}x`.padEnd(11),
        `${((cpu / (INTERVAL_S * 1000)) * 100).toFixed(3)}%`,
      ].join(' | '),
    );
  row('baseline (bare probes)', bareCpu, mean(bare.slice(1).map((x) => x.wall)));
  row('health round', roundCpu, mean(steady.map((x) => x.wall)));
  console.log(`unhealthy probes in the rounds: ${round.map((x) => x.unhealthy).join(', ')}`);
  const share = (roundCpu / (INTERVAL_S * 1000)) * 100;
  console.log(
    `goal: a round's CPU < 2% of one core at the default interval: ${share < 2 ? 'met' : 'missed'} (${share.toFixed(3)}%)`,
  );
} finally {
  upstreams.kill('SIGKILL');
  await db.close();
  await rm(tmp, { recursive: true, force: true });
}
