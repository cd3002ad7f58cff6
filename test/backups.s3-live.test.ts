import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/db.ts';
import {
  dashboardLogin,
  driverCases,
  pollUntil,
  startLivePlatform,
  viaEdge,
} from './support/live-platform.ts';
import { missingPart } from './support/strict.ts';
import { hasOpenssl } from './support/tls.ts';

/**
 * An operator's backup and restore of a tenant's service against a real
 * `aiqso up` (process driver) whose backup repository is an S3 bucket: s3rver,
 * a real S3 HTTP API server, on 127.0.0.1 over HTTPS with its own certificate
 * (trusted through AIQSO_BACKUP_CACERT) and a key pair of its own. Note A →
 * `aiqso backups run` → note B → `aiqso restore service` → Notes answers with A
 * and without B; `aiqso doctor` says the bucket is reachable and writable. The
 * credentials reach restic through its environment only: never an argv (every
 * process's is sampled from /proc throughout), never a log line or CLI output.
 * Then the bad paths: the server refuses the key (unknown, then revoked while
 * the platform runs), does not answer, or its certificate is not trusted →
 * doctor fails the `backups` line with the reason and exit 1, and a backup run
 * fails at once with the reason.
 *
 * HTTPS, not plain HTTP: over HTTP restic's S3 client signs each upload as an
 * `aws-chunked` stream (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), which s3rver 3.7.1
 * stores with its chunk framing (so restic cannot read back its own config);
 * over HTTPS it sends the body as it is (UNSIGNED-PAYLOAD). s3rver 3.7.1 checks
 * the access key id of a signature v4 request, not the signature itself: a
 * wrong secret key is not refused by it, an unknown or revoked key id is.
 */
const skip = missingPart('openssl', hasOpenssl, 'apt-get install openssl');

const EMAIL = 'owner@acme.test';
const PASSWORD = 'correct horse battery staple';
const BROWSER = { accept: 'text/html,application/xhtml+xml' };
const BUCKET = 'aiqso-backups';

/** s3rver's accounts (its only way to hold a key pair other than the built-in S3RVER/S3RVER). */
interface S3rverAccount {
  createKeyPair(accessKeyId: string, secretAccessKey: string): void;
  revokeAccessKey(accessKeyId: string): void;
}
type AccountModule = (new (id: number, name: string) => S3rverAccount) & { DUMMY_ACCOUNT: S3rverAccount };
const Account = createRequire(import.meta.url)('s3rver/lib/models/account.js') as AccountModule;

interface DoctorCheck {
  part: string;
  status: string;
  detail: string;
  fix?: string;
}
const backupsLine = (doctor: CliResult): DoctorCheck =>
  (JSON.parse(doctor.stdout) as DoctorCheck[]).find((c) => c.part === 'backups')!;

/** doctor's `backups` line failed, its detail and fix saying what they must, and doctor exited 1. */
function expectFailedBackups(doctor: CliResult, detail: RegExp, fix?: RegExp) {
  const line = backupsLine(doctor);
  expect(doctor.code, doctor.stdout).toBe(1);
  expect(line.status).toBe('failed');
  expect(line.detail).toMatch(detail);
  if (fix) expect(line.fix).toMatch(fix);
}

/** A self-signed certificate for 127.0.0.1 (an IP subject alternative name, as Go's TLS requires). */
function certificateFor127(base: string): { cert: string; key: string } {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', `${base}.key`, '-out', `${base}.crt`,
  ], { stdio: 'ignore' }); // prettier-ignore
  return { cert: `${base}.crt`, key: `${base}.key` };
}

/**
 * Every process's argv, read from /proc every few milliseconds until stopped: the command lines
 * holding any of `secrets`, and how many restic processes had the S3 credentials in their
 * environment (the sampler saw the calls it was watching for).
 */
function watchProcesses(secrets: string[], secretKey: string) {
  const leaks = new Set<string>();
  const restics = new Set<string>();
  let running = true;
  const sample = async () => {
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (secrets.some((s) => argv.includes(s))) leaks.add(argv.split('\0').join(' '));
      if (!path.basename(argv.split('\0')[0] ?? '').startsWith('restic')) continue;
      const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
      if (environ.split('\0').includes(`AWS_SECRET_ACCESS_KEY=${secretKey}`))
        restics.add(`${pid} ${argv.split('\0')[1] ?? ''}`);
    }
  };
  const done = (async () => {
    while (running) {
      await sample();
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return { leaks: [...leaks], restics: restics.size };
    },
  };
}

let dir: string;
let server: S3rver;
let s3Port: number;
let tls: { cert: string; key: string };
let testDb: TestDatabase;
const accessKeyId = `AKIA${randomBytes(8).toString('hex').toUpperCase()}`;
const secretKey = `s3-secret-${randomBytes(16).toString('hex')}`;
const account = new Account(123456789012, 'aiqso');

describe.skipIf(skip)(
  'backup and restore of a service to an S3 bucket (s3rver over HTTPS), end to end',
  { timeout: 600_000 },
  () => {
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'aiqso-s3-live-'));
      tls = certificateFor127(path.join(dir, 's3'));
      await mkdir(path.join(dir, 's3'));
      account.createKeyPair(accessKeyId, secretKey);
      // Only this test's key pair opens the bucket.
      Account.DUMMY_ACCOUNT.revokeAccessKey('S3RVER');
      server = new S3rver({
        address: '127.0.0.1',
        port: 0,
        silent: true,
        directory: path.join(dir, 's3'),
        key: await readFile(tls.key),
        cert: await readFile(tls.cert),
        configureBuckets: [{ name: BUCKET, configs: [] }],
      });
      s3Port = (await server.run()).port;
      testDb = await createTestDatabase();
    }, 120_000);
    afterAll(async () => {
      await testDb?.drop();
      await server?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('process driver: note A, backup to S3, note B, restore → A without B; then refused, unreachable, untrusted', async () => {
      const base = `s3:https://127.0.0.1:${s3Port}/${BUCKET}/aiqso`;
      const watch = watchProcesses([secretKey, accessKeyId], secretKey);
      const platform = await startLivePlatform({
        databaseUrl: testDb.url,
        driver: driverCases().find((d) => d.name === 'process')!,
        env: {
          AIQSO_BACKUP_REPOSITORY: base,
          AIQSO_BACKUP_CACERT: tls.cert,
          AWS_ACCESS_KEY_ID: accessKeyId,
          AWS_SECRET_ACCESS_KEY: secretKey,
          AIQSO_LOG_LEVEL: 'debug',
        },
      }).catch(async (err: unknown) => {
        await watch.stop();
        throw err;
      });
      const { port } = platform;
      const host = `acme.localhost:${port}`;
      const outputs: string[] = [];
      const cli = async (args: string[], env: Record<string, string> = platform.env) => {
        const result = await runCli(args, env, 180_000);
        outputs.push(result.stdout, result.stderr);
        return result;
      };
      try {
        const signup = await platform.signup({
          company: 'Acme Widgets',
          slug: 'acme',
          email: EMAIL,
          password: PASSWORD,
        });
        expect(signup.status).toBe(201);
        await fetch(`${signup.checkoutUrl}/pay`, { method: 'POST', redirect: 'manual' });
        expect((await platform.until('acme', (p) => p.status === 200, 180_000)).status).toBe(200);
        const login = await fetch(`http://127.0.0.1:${port}/api/v1/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ email: EMAIL, password: PASSWORD }),
        });
        const { accessToken } = (await login.json()) as { accessToken: string };
        const subscribed = await fetch(`http://127.0.0.1:${port}/api/v1/tenants/acme/services`, {
          method: 'POST',
          headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ service: 'notes' }),
        });
        expect(subscribed.status).toBe(202);
        await pollUntil(
          () => testDb.db.selectFrom('tenant_services').select('status').executeTakeFirstOrThrow(),
          (r) => r.status === 'active',
          180_000,
        );
        const { cookies: cookie } = await dashboardLogin(host, port, EMAIL, PASSWORD, '/notes/');
        const note = (body: string) =>
          viaEdge(host, port, {
            method: 'POST',
            path: '/notes/',
            headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
            body: `body=${encodeURIComponent(body)}`,
          });
        const page = async () =>
          (await viaEdge(host, port, { path: '/notes/', headers: { ...BROWSER, cookie } })).body;

        const doctor = await cli(['doctor', '--json']);
        expect(backupsLine(doctor).status).toBe('ok');
        expect(backupsLine(doctor).detail.replace(/^restic \d+\.\d+\.\d+; /, '')).toBe(
          `${base} is reachable and writable`,
        );
        const healthy = doctor.code;

        expect((await note('Note A before the backup')).status).toBe(303);
        const run = await cli(['backups', 'run', '--tenant', 'acme', '--json']);
        expect(run.stderr).toBe('');
        expect(run.code, run.stdout).toBe(0);

        const listed = await cli(['backups', 'list', '--tenant', 'acme', '--json']);
        expect(listed.code).toBe(0);
        const backups = (JSON.parse(listed.stdout) as { backups: Record<string, unknown>[] }).backups;
        const database = backups.find((b) => b.kind === 'database')!;
        expect(database).toMatchObject({
          tenant: 'acme',
          service: 'notes',
          rowCounts: { 'public.drafts': 1 },
        });
        // The tenant's repository is in the bucket, as objects s3rver stored.
        const tenant = await testDb.db
          .selectFrom('tenants')
          .select('id')
          .where('slug', '=', 'acme')
          .executeTakeFirstOrThrow();
        const repository = await testDb.db
          .selectFrom('backup_repositories')
          .select('location')
          .where('tenant_id', '=', tenant.id)
          .executeTakeFirstOrThrow();
        expect(repository.location).toBe(`${base}/tenants/${tenant.id}`);
        const objects = path.join(dir, 's3', BUCKET, 'aiqso', 'tenants', tenant.id);
        expect(await readdir(objects)).toEqual(
          expect.arrayContaining(['config._S3rver_object', 'snapshots', 'data', 'keys']),
        );
        expect((await readdir(path.join(objects, 'snapshots'))).length).toBeGreaterThan(0);
        // doctor's probe repository sits beside the tenants', and keeps no lock.
        expect(await readdir(path.join(dir, 's3', BUCKET, 'aiqso', 'doctor-probe'))).toEqual(
          expect.arrayContaining(['config._S3rver_object', 'keys']),
        );
        expect(
          await readdir(path.join(dir, 's3', BUCKET, 'aiqso', 'doctor-probe', 'locks')).catch(() => []),
        ).toEqual([]);

        expect((await note('Note B after the backup')).status).toBe(303);
        expect(await page()).toContain('Note B after the backup');

        const restored = await cli(['restore', 'service', 'acme', 'notes', '--json']);
        expect(restored.stderr).toBe('');
        expect(restored.code, restored.stdout).toBe(0);
        expect(JSON.parse(restored.stdout)).toMatchObject({ snapshot: database.snapshot, status: 'done' });
        const after = await page();
        expect(after).toContain('Note A before the backup');
        expect(after).not.toContain('Note B after the backup');

        // The bad paths. A key id the server does not know: refused, said with the variables to fix.
        const unknownKey = await cli(['doctor', '--json'], {
          ...platform.env,
          AWS_ACCESS_KEY_ID: 'AKIAUNKNOWNKEY000000',
        });
        expectFailedBackups(
          unknownKey,
          /backup repository refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.*Access Key Id you provided does not exist/,
          /AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/,
        );
        // No server on that port: unreachable.
        const closed = await cli(['doctor', '--json'], {
          ...platform.env,
          AIQSO_BACKUP_REPOSITORY: `s3:https://127.0.0.1:1/${BUCKET}/aiqso`,
        });
        expectFailedBackups(closed, /backup repository unreachable: .*connection refused/, /host and port/);
        // The server's certificate without the CA that signed it: not trusted, and the setting to fix.
        const untrustedEnv = { ...platform.env };
        delete untrustedEnv.AIQSO_BACKUP_CACERT;
        expectFailedBackups(
          await cli(['doctor', '--json'], untrustedEnv),
          /TLS certificate is not trusted .*x509: certificate signed by unknown authority/,
          /AIQSO_BACKUP_CACERT/,
        );

        // The key pair revoked at the server while the platform runs with it.
        account.revokeAccessKey(accessKeyId);
        expectFailedBackups(await cli(['doctor', '--json']), /refused the credentials/);
        // A backup run fails at once (a retry cannot fix a refused key), with the reason.
        const started = Date.now();
        const refused = await cli(['backups', 'run', '--tenant', 'acme', '--json']);
        const refusedMs = Date.now() - started;
        expect(refused.code).toBe(1);
        const [failedRun] = (JSON.parse(refused.stdout) as { runs: { phase: string; error: string }[] }).runs;
        expect(failedRun!.phase).toBe('failed');
        expect(failedRun!.error).toMatch(
          /backup repository refused the credentials: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.*Access Key Id you provided does not exist/,
        );
        expect(refusedMs).toBeLessThan(30_000);
        process.stderr.write(`s3-live: a refused backup run failed in ${refusedMs} ms\n`);
        // A restore asks the repository for the snapshot first: refused, with the reason, and exit 1.
        const refusedRestore = await cli(['restore', 'service', 'acme', 'notes', '--json']);
        expect(refusedRestore.code).toBe(1);
        expect(refusedRestore.stderr).toMatch(/backup repository refused the credentials/);
        // Back to a healthy state, so the doctor's exit code above was the backups line's doing.
        account.createKeyPair(accessKeyId, secretKey);
        expect((await cli(['doctor', '--json'])).code).toBe(healthy);
      } finally {
        await platform.stop(testDb.db);
        await watch.stop();
        await rm(platform.dataDir, { recursive: true, force: true });
      }
      // The credentials were in restic's environment, and in no process's argv, log line or output.
      const { leaks, restics } = await watch.stop();
      process.stderr.write(`s3-live: ${restics} restic processes seen with the key in their environment\n`);
      expect(leaks).toEqual([]);
      expect(restics).toBeGreaterThan(0);
      for (const text of [platform.output(), ...outputs]) {
        expect(text).not.toContain(secretKey);
        expect(text).not.toContain(accessKeyId);
      }
    });
  },
);
