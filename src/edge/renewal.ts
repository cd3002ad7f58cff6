import { X509Certificate } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/load.ts';
import { DomainError, type ErrorCode } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { writeOutbox } from '../orchestrator/outbox.ts';
import type { AlertPayload } from '../orchestrator/mail-handlers.ts';
import { accountKey } from './acme-account.ts';
import {
  certificateFileBase,
  databaseChallengeStore,
  orderCertificate,
  type ChallengeStore,
  type DnsHook,
  type InstalledCertificate,
} from './acme.ts';
import {
  listCertificates,
  recordFailure,
  recordIssued,
  type CertificateRecord,
} from './certificate-records.ts';
import { commandDnsHook } from './dns-hook.ts';

/**
 * Ordering and renewing the platform's certificates: `aiqso certs order`,
 * `aiqso certs renew` and the daily `certificates` schedule all come here, so
 * an order is recorded (and a renewal retried) the same way from each.
 *
 * A renewal replaces the files only once the CA has issued the new pair
 * (orderCertificate writes nothing before that), so a failed renewal leaves
 * the working certificate served; it records the reason on the row and
 * raises one operator alert per certificate and day, and the next day's run
 * tries again.
 */
export interface AcmeSettings {
  directoryUrl: string;
  email?: string;
  certDir: string;
  accountKey: () => Promise<string | Buffer>;
  store: ChallengeStore;
  dns?: DnsHook;
}

export function acmeSettings(config: Config, db: Database): AcmeSettings {
  const acme = config.acme;
  if (!acme) throw new DomainError('bad_request', 'set AIQSO_ACME_DIRECTORY_URL to order certificates');
  const certDir = config.edgeTuning.certDir;
  if (!certDir) throw new DomainError('bad_request', 'set AIQSO_TLS_CERT_DIR: ordered certificates go there');
  return {
    directoryUrl: acme.directoryUrl,
    email: acme.email,
    certDir,
    accountKey: () => accountKey(config.dataDir),
    store: databaseChallengeStore(db),
    dns: acme.dnsHook && commandDnsHook(acme.dnsHook),
  };
}

const LABEL = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?';
const DNS_NAME = new RegExp(`^(\\*\\.)?(?=.{1,253}$)${LABEL}(\\.${LABEL})+$`);

/** The names of an order, lower-cased; an unusable one is the caller's mistake, named in one line. */
export function certificateNames(domains: readonly string[]): string[] {
  const names = domains.map((d) => d.trim().toLowerCase());
  if (names.length === 0) throw new DomainError('bad_request', 'name at least one domain');
  for (const n of names)
    if (!DNS_NAME.test(n) && n !== 'localhost')
      throw new DomainError('bad_request', `not a domain name for a certificate: ${JSON.stringify(n)}`);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new DomainError('bad_request', `${twice} is named twice`);
  return names;
}

function errorLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const line = text.split('\n')[0]!;
  return line.length > 500 ? `${line.slice(0, 497)}...` : line;
}

/** The names of an order these settings can answer for (a wildcard needs the DNS hook), or one line why not. */
export function orderableNames(settings: AcmeSettings, domains: readonly string[]): string[] {
  const names = certificateNames(domains);
  if (names.some((n) => n.startsWith('*.')) && !settings.dns)
    throw new DomainError(
      'bad_request',
      'a wildcard certificate needs a DNS-01 hook: set AIQSO_ACME_DNS_HOOK',
    );
  return names;
}

/** Order a certificate for `domains`, install it and record it for renewal. */
export async function orderAndRecord(
  db: Database,
  settings: AcmeSettings,
  domains: readonly string[],
): Promise<InstalledCertificate> {
  const names = orderableNames(settings, domains);
  let installed: InstalledCertificate;
  try {
    installed = await orderCertificate({
      directoryUrl: settings.directoryUrl,
      accountKey: await settings.accountKey(),
      email: settings.email,
      domains: names,
      certDir: settings.certDir,
      store: settings.store,
      dns: settings.dns,
    });
  } catch (err) {
    await recordFailure(db, names[0]!, errorLine(err));
    throw err;
  }
  await recordIssued(db, {
    names,
    fileBase: certificateFileBase(names),
    challenge: installed.challenge,
    notAfter: installed.notAfter,
  });
  return installed;
}

/** When the installed certificate expires; undefined when its certificate or key file is missing or unreadable. */
export async function installedNotAfter(certDir: string, fileBase: string): Promise<Date | undefined> {
  const base = path.join(certDir, fileBase);
  try {
    await access(`${base}.key`);
    return new Date(new X509Certificate(await readFile(`${base}.crt`)).validTo);
  } catch {
    return undefined;
  }
}

export interface RenewalDeps {
  db: Database;
  log: Logger;
  /** Asked only when there is something to renew; a missing setting fails those renewals (recorded, alerted). */
  settings: () => AcmeSettings;
  renewDays: number;
  now?: () => Date;
}

export interface RenewalOutcome {
  name: string;
  names: string[];
  status: 'renewed' | 'failed' | 'not_due';
  /** Expiry of the certificate now installed (the old one after a failure); null when its files are missing. */
  notAfter: Date | null;
  error?: string;
  /** The failure's domain error code (`bad_request` when a setting is missing). */
  code?: ErrorCode;
}

const DAY_MS = 86_400_000;

/**
 * Renew recorded certificates: those expiring within `renewDays` or whose
 * files are missing, or every one of `which.records` when `which.force`.
 * Failures are recorded and alerted, never thrown: one certificate's trouble
 * does not hold up the others.
 */
export async function renewCertificates(
  deps: RenewalDeps,
  which: { records?: CertificateRecord[]; force?: boolean } = {},
): Promise<RenewalOutcome[]> {
  const now = deps.now?.() ?? new Date();
  const records = which.records ?? (await listCertificates(deps.db));
  let settings: AcmeSettings | undefined;
  let unusable: unknown;
  try {
    if (records.length > 0) settings = deps.settings();
  } catch (err) {
    unusable = err;
  }
  const outcomes: RenewalOutcome[] = [];
  for (const record of records) {
    // Without usable settings the files cannot be found: go by what the last order recorded.
    const installed = settings ? await installedNotAfter(settings.certDir, record.fileBase) : record.notAfter;
    const due = !installed || installed.getTime() - now.getTime() < deps.renewDays * DAY_MS;
    const base = { name: record.name, names: record.names, notAfter: installed ?? null };
    if (!due && !which.force) {
      outcomes.push({ ...base, status: 'not_due' });
      continue;
    }
    try {
      if (!settings) throw unusable;
      deps.log.info({ certificate: record.name, notAfter: installed }, 'renewing certificate');
      const renewed = await orderAndRecord(deps.db, settings, record.names);
      deps.log.info({ certificate: record.name, notAfter: renewed.notAfter }, 'certificate renewed');
      outcomes.push({ ...base, status: 'renewed', notAfter: renewed.notAfter });
    } catch (err) {
      const error = errorLine(err);
      if (!settings) await recordFailure(deps.db, record.name, error);
      await alertRenewalFailed(deps.db, record, installed, error, now);
      deps.log.error({ certificate: record.name, err: error, alert: true }, 'certificate renewal failed');
      const code = err instanceof DomainError ? err.code : 'internal';
      outcomes.push({ ...base, status: 'failed', error, code });
    }
  }
  return outcomes;
}

/** One alert per certificate and day: a retried job or a second `aiqso certs renew` the same day adds none. */
async function alertRenewalFailed(
  db: Database,
  record: CertificateRecord,
  installed: Date | undefined,
  error: string,
  now: Date,
): Promise<void> {
  const day = now.toISOString().slice(0, 10);
  const expiry = installed
    ? `The installed certificate stays in place and expires ${installed.toISOString()}.`
    : 'Its certificate files are missing.';
  const payload: AlertPayload = {
    subject: `certificate renewal for ${record.name} failed`,
    text: `Renewing the certificate for ${record.names.join(', ')} failed.\n\nError: ${error}\n\n${expiry} The renewal is tried again daily; run \`aiqso certs renew ${record.name}\` once the cause is fixed.`,
    certificate: record.name,
    error,
  };
  await writeOutbox(db, { key: `alert:certificate-renewal:${record.name}:${day}`, kind: 'alert', payload });
}

/** The `certificates` schedule's handler. */
export function certificateRenewalHandler(config: Config, db: Database, log: Logger) {
  return async (): Promise<void> => {
    const outcomes = await renewCertificates({
      db,
      log,
      settings: () => acmeSettings(config, db),
      renewDays: config.certRenewDays,
    });
    const count = (s: RenewalOutcome['status']) => outcomes.filter((o) => o.status === s).length;
    log.info(
      { renewed: count('renewed'), failed: count('failed'), notDue: count('not_due') },
      'certificate renewal run done',
    );
  };
}
