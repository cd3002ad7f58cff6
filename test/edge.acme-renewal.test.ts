import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../src/config/load.ts';
import { databaseChallengeStore } from '../src/edge/acme.ts';
import { findCertificate } from '../src/edge/certificate-records.ts';
import { commandDnsHook } from '../src/edge/dns-hook.ts';
import { acmeSettings, certificateRenewalHandler, orderAndRecord } from '../src/edge/renewal.ts';
import { createLogger } from '../src/observability/logger.ts';
import { SCHEDULES, scheduleTask, scheduleTasks } from '../src/orchestrator/schedules.ts';
import { runCli } from './support/cli.ts';
import { countRows, createTestDatabase, type TestDatabase } from './support/db.ts';
import { startTestEdge, type TestEdge } from './support/edge.ts';
import { startFakeAcme, type FakeAcme } from './support/fake-acme.ts';
import { missingPart } from './support/strict.ts';
import { hasOpenssl, selfSigned, tlsGet } from './support/tls.ts';
import { eventually } from './support/upstreams.ts';

/**
 * DNS-01 through the operator's hook executable and the daily renewal, with
 * the real acme-client against the local CA (test/support/fake-acme.ts). The
 * hook scripts keep TXT records as files in a zone directory, which the CA
 * reads as its DNS: it accepts only base64url(SHA-256(key authorisation)) at
 * `_acme-challenge.<domain>`. The edge serves the wildcard by SNI and, with
 * AIQSO_TLS_CERT pointing at the same files, the apex too.
 */
const skip = missingPart('openssl', hasOpenssl, 'apt-get install openssl');

const log = createLogger('silent');
const ALERTS = "SELECT 1 FROM outbox WHERE kind = 'alert' AND key LIKE 'alert:certificate-renewal:%'";

function script(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, `#!/bin/sh\nset -eu\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

describe.skipIf(skip)('DNS-01 hook and certificate renewal against a local CA', () => {
  let database: TestDatabase;
  let ca: FakeAcme;
  let edge: TestEdge;
  let dir: string;
  let sni: string;
  let zone: string;
  const hooks: Record<'good' | 'wrong' | 'failing' | 'slow', string> = {} as never;
  let env: Record<string, string>;
  const config = (extra: Record<string, string> = {}): Config => loadConfig({ ...env, ...extra }, dir);
  const records = (name: string): string[] => {
    try {
      return readdirSync(path.join(zone, name));
    } catch {
      return [];
    }
  };
  const served = (servername: string, cn: string, notSerial?: string) =>
    eventually(async () => {
      const r = await tlsGet(edge.httpsPort!, servername, servername, [ca.caPem]).catch(() => undefined);
      return r?.cn === cn && r.serial !== notSerial ? r : undefined;
    });
  /** One run of the `certificates` schedule, through the task the worker registers. */
  const runSchedule = async (cfg: Config) => {
    const tasks = scheduleTasks(
      SCHEDULES,
      { certificates: certificateRenewalHandler(cfg, database.db, log) },
      log,
    );
    await tasks[scheduleTask('certificates')]!({ _cron: { ts: new Date().toISOString() } }, {} as never);
  };

  beforeAll(async () => {
    database = await createTestDatabase();
    dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-acme-dns-'));
    sni = path.join(dir, 'sni');
    zone = path.join(dir, 'zone');
    mkdirSync(sni);
    mkdirSync(zone);
    // The default pair is the wildcard's own files (as an operator sets AIQSO_TLS_CERT): self-signed until ordered.
    selfSigned(path.join(sni, '_wildcard.shop.test'), ['*.shop.test', 'shop.test']);
    hooks.good = script(
      dir,
      'dns-hook',
      `# The platform's own settings are not passed on.
[ -z "\${DATABASE_URL:-}" ] || { echo "DATABASE_URL reached the hook" >&2; exit 9; }
case "$1" in
  create) mkdir -p "${zone}/$2" && : > "${zone}/$2/$3" ;;
  remove) rm -f "${zone}/$2/$3" ;;
  *) echo "unknown action $1" >&2; exit 64 ;;
esac`,
    );
    hooks.wrong = script(dir, 'dns-hook-wrong', `mkdir -p "${zone}/$2" && : > "${zone}/$2/not-$3"`);
    hooks.failing = script(
      dir,
      'dns-hook-failing',
      'echo "calling the provider" >&2\necho "provider said: token expired" >&2\nexit 3',
    );
    hooks.slow = script(dir, 'dns-hook-slow', 'sleep 30');
    edge = await startTestEdge(database, {
      challenges: databaseChallengeStore(database.db),
      listen: {
        https: {
          port: 0,
          certFile: path.join(sni, '_wildcard.shop.test.crt'),
          keyFile: path.join(sni, '_wildcard.shop.test.key'),
          certDir: sni,
        },
      },
    });
    ca = await startFakeAcme({ host: '127.0.0.1', port: edge.port }, { txt: records });
    env = {
      DATABASE_URL: database.url,
      AIQSO_DATA_DIR: path.join(dir, 'data'),
      AIQSO_TLS_CERT_DIR: sni,
      AIQSO_ACME_DIRECTORY_URL: ca.directoryUrl,
      AIQSO_ACME_EMAIL: 'ops@aiqso.test',
      AIQSO_ACME_DNS_HOOK: hooks.good,
      AIQSO_ACME_DNS_PROPAGATION_SECONDS: '0',
    };
  });

  afterAll(async () => {
    await ca?.close();
    await edge?.close();
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('orders the wildcard and its apex through the hook; the edge serves it by SNI and as the default, without a restart', async () => {
    const installed = await orderAndRecord(database.db, acmeSettings(config(), database.db), [
      '*.shop.test',
      'shop.test',
    ]);
    expect(installed).toMatchObject({
      certFile: path.join(sni, '_wildcard.shop.test.crt'),
      challenge: 'dns-01',
    });
    expect(ca.validations).toEqual([
      { type: 'dns-01', identifier: 'shop.test', token: expect.any(String) as string, ok: true },
      { type: 'dns-01', identifier: 'shop.test', token: expect.any(String) as string, ok: true },
    ]);
    // Both values were removed again once validated.
    expect(records('_acme-challenge.shop.test')).toEqual([]);

    expect((await served('tenant-a.shop.test', '*.shop.test')).cn).toBe('*.shop.test');
    expect((await served('shop.test', '*.shop.test')).cn).toBe('*.shop.test');

    const row = await findCertificate(database.db, '*.shop.test');
    expect(row).toMatchObject({
      names: ['*.shop.test', 'shop.test'],
      fileBase: '_wildcard.shop.test',
      challenge: 'dns-01',
      lastError: null,
    });
    expect(row!.notAfter.getTime()).toBe(installed.notAfter.getTime());
  });

  it('fails an order whose hook publishes the wrong TXT value, naming the record, and installs nothing', async () => {
    const settings = acmeSettings(config({ AIQSO_ACME_DNS_HOOK: hooks.wrong }), database.db);
    const failure = orderAndRecord(database.db, settings, ['*.wrong.test']);
    await expect(failure).rejects.toMatchObject({ code: 'dependency_failed' });
    await expect(failure).rejects.toThrow(
      /^ACME order for \*\.wrong\.test failed: Incorrect TXT record "not-[\w-]+" found at _acme-challenge\.wrong\.test$/,
    );
    expect(ca.validations.at(-1)).toMatchObject({ type: 'dns-01', identifier: 'wrong.test', ok: false });
    expect(existsSync(path.join(sni, '_wildcard.wrong.test.crt'))).toBe(false);
    expect(await findCertificate(database.db, '*.wrong.test')).toBeUndefined();
  });

  it("reports a hook's failure and timeout in one line with its last stderr line", async () => {
    const failing = commandDnsHook({ path: hooks.failing, propagationSeconds: 0 });
    await expect(failing.createTxt('_acme-challenge.x.test', 'v')).rejects.toThrow(
      `DNS hook ${hooks.failing} create _acme-challenge.x.test failed (exit 3): provider said: token expired`,
    );
    const slow = commandDnsHook({ path: hooks.slow, propagationSeconds: 0, timeoutMs: 300 });
    const started = Date.now();
    await expect(slow.createTxt('_acme-challenge.x.test', 'v')).rejects.toThrow(
      `DNS hook ${hooks.slow} create _acme-challenge.x.test timed out after 0.3s`,
    );
    expect(Date.now() - started).toBeLessThan(5000);
    const missing = commandDnsHook({ path: path.join(dir, 'no-such-hook'), propagationSeconds: 0 });
    await expect(missing.createTxt('_acme-challenge.x.test', 'v')).rejects.toMatchObject({
      code: 'dependency_failed',
      message: expect.stringContaining(
        'no-such-hook create _acme-challenge.x.test could not start',
      ) as string,
    });
  });

  it('the schedule renews a certificate near its expiry: new serial, later notAfter, served, row updated', async () => {
    const before = await served('tenant-a.shop.test', '*.shop.test');
    const row = (await findCertificate(database.db, '*.shop.test'))!;
    const orders = ca.ordered;
    ca.validityDays = 90; // the first was valid one day: within AIQSO_CERT_RENEW_DAYS (30)
    await runSchedule(config());
    expect(ca.ordered).toBe(orders + 1);

    const after = await served('tenant-a.shop.test', '*.shop.test', before.serial);
    expect(after.serial).not.toBe(before.serial);
    expect(after.validTo.getTime()).toBeGreaterThan(before.validTo.getTime() + 80 * 86_400_000);
    expect((await served('shop.test', '*.shop.test', before.serial)).serial).toBe(after.serial);
    const renewed = (await findCertificate(database.db, '*.shop.test'))!;
    expect(renewed.notAfter.getTime()).toBe(after.validTo.getTime());
    expect(renewed.orderedAt.getTime()).toBeGreaterThan(row.orderedAt.getTime());
    expect(renewed.lastError).toBeNull();
  });

  it('leaves a certificate far from expiry alone', async () => {
    const orders = ca.ordered;
    await runSchedule(config());
    expect(ca.ordered).toBe(orders);
  });

  it('a failed renewal keeps the working files, records the error and raises one alert; the next run tries again', async () => {
    const crt = path.join(sni, '_wildcard.shop.test.crt');
    const key = path.join(sni, '_wildcard.shop.test.key');
    const files = [readFileSync(crt, 'utf8'), readFileSync(key, 'utf8')];
    const before = await served('tenant-a.shop.test', '*.shop.test');
    // Due now (renew within a year), with a hook that fails: twice, as a retried job or a second run that day.
    const failingConfig = config({ AIQSO_ACME_DNS_HOOK: hooks.failing, AIQSO_CERT_RENEW_DAYS: '365' });
    await runSchedule(failingConfig);
    await runSchedule(failingConfig);

    expect([readFileSync(crt, 'utf8'), readFileSync(key, 'utf8')]).toEqual(files);
    expect((await served('tenant-a.shop.test', '*.shop.test')).serial).toBe(before.serial);
    const row = (await findCertificate(database.db, '*.shop.test'))!;
    expect(row.lastError).toContain('provider said: token expired');
    expect(row.lastError).toContain(hooks.failing);
    expect(await countRows(database, ALERTS)).toBe(1);
    const { rows } = await database.pool.query<{ payload: { subject: string; text: string } }>(
      "SELECT payload FROM outbox WHERE kind = 'alert'",
    );
    expect(rows[0]!.payload.subject).toBe('certificate renewal for *.shop.test failed');
    expect(rows[0]!.payload.text).toContain('provider said: token expired');

    // Fixed: the next run renews and clears the error.
    await runSchedule(config({ AIQSO_CERT_RENEW_DAYS: '365' }));
    const fixed = (await findCertificate(database.db, '*.shop.test'))!;
    expect(fixed.lastError).toBeNull();
    expect((await served('tenant-a.shop.test', '*.shop.test', before.serial)).serial).not.toBe(before.serial);
  });

  it('renews a certificate whose files are missing', async () => {
    const installed = await orderAndRecord(database.db, acmeSettings(config(), database.db), [
      'www.shop.test',
    ]);
    expect(installed.challenge).toBe('http-01');
    rmSync(installed.certFile);
    const orders = ca.ordered;
    await runSchedule(config());
    expect(ca.ordered).toBe(orders + 1);
    expect(existsSync(installed.certFile)).toBe(true);
    expect((await served('www.shop.test', 'www.shop.test')).cn).toBe('www.shop.test');
  });

  it('keeps acme-client out of the edge and the worker until something is ordered', () => {
    const probe = `
      import { createRequire } from 'node:module';
      const require = createRequire(import.meta.url);
      await import('./src/cli/commands/edge-serve.ts');
      await import('./src/platform/worker.ts');
      await import('./src/cli/commands/certs.ts');
      console.log(Object.keys(require.cache).filter((k) => k.includes('acme-client')).length);`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(out.trim()).toBe('0');
  });

  it('aiqso certs order, list and renew', async () => {
    const order = await runCli(['certs', 'order', '*.cli.test', 'cli.test', '--json'], env);
    expect(order.code, order.stderr).toBe(0);
    expect(JSON.parse(order.stdout)).toMatchObject({
      domains: ['*.cli.test', 'cli.test'],
      certFile: path.join(sni, '_wildcard.cli.test.crt'),
      challenge: 'dns-01',
    });

    const list = await runCli(['certs', 'list', '--json'], env);
    expect(list.code, list.stderr).toBe(0);
    const listed = JSON.parse(list.stdout) as {
      names: string[];
      file: string;
      daysLeft: number;
      lastError: null;
    }[];
    expect(listed.map((c) => c.file)).toEqual(['_wildcard.cli.test', '_wildcard.shop.test', 'www.shop.test']);
    expect(listed[0]).toMatchObject({ names: ['*.cli.test', 'cli.test'], daysLeft: 89, lastError: null });

    const orders = ca.ordered;
    const renew = await runCli(['certs', 'renew', 'cli.test'], env);
    expect(renew.code, renew.stderr).toBe(0);
    expect(renew.stdout).toMatch(/^\*\.cli\.test, cli\.test: renewed, valid until \S+\n$/);
    expect(ca.ordered).toBe(orders + 1);

    const nosuch = await runCli(['certs', 'renew', 'nosuch.example'], env);
    expect(nosuch.code).toBe(2);
    expect(nosuch.stderr.trim().split('\n')).toEqual([
      'aiqso: no recorded certificate for nosuch.example (see `aiqso certs list`; order it with `aiqso certs order`)',
    ]);

    // Settings gone: the renewal fails as the caller's mistake, and is recorded and alerted like any other.
    const unset = await runCli(['certs', 'renew', 'www.shop.test'], {
      ...env,
      AIQSO_ACME_DIRECTORY_URL: '',
      AIQSO_ACME_DNS_HOOK: '',
    });
    expect(unset.code).toBe(2);
    expect(unset.stderr.trim().split('\n')).toEqual([
      'Checking 1 certificate(s), renewing each now…',
      'aiqso: renewing www.shop.test failed: set AIQSO_ACME_DIRECTORY_URL to order certificates',
    ]);
    expect((await findCertificate(database.db, 'www.shop.test'))!.lastError).toBe(
      'set AIQSO_ACME_DIRECTORY_URL to order certificates',
    );

    const noHook = await runCli(['certs', 'order', '*.nohook.test', 'nohook.test'], {
      ...env,
      AIQSO_ACME_DNS_HOOK: '',
    });
    expect(noHook.code).toBe(2);
    expect(noHook.stderr.trim().split('\n')).toEqual([
      'aiqso: a wildcard certificate needs a DNS-01 hook: set AIQSO_ACME_DNS_HOOK',
    ]);
  });
});
