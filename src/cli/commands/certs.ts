import { DomainError } from '../../core/errors.ts';
import { listCertificates, type CertificateRecord } from '../../edge/certificate-records.ts';
import {
  acmeSettings,
  certificateNames,
  installedNotAfter,
  orderAndRecord,
  orderableNames,
  renewCertificates,
} from '../../edge/renewal.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson, printTable } from '../output.ts';

/**
 * `aiqso certs order <domain…>`: order a certificate from
 * AIQSO_ACME_DIRECTORY_URL into AIQSO_TLS_CERT_DIR — HTTP-01 (the answers go
 * into the master database, so whichever edge the CA reaches answers), or
 * DNS-01 through AIQSO_ACME_DNS_HOOK for a wildcard — and record it for the
 * daily renewal. The edges serve the new pair without a restart.
 */
export async function certsOrder(
  ctx: CommandContext,
  domains: string[],
  options: { json?: boolean },
): Promise<void> {
  let names = certificateNames(domains);
  const files = await withDatabase(ctx, ({ db }) => {
    const settings = acmeSettings(ctx.config, db);
    names = orderableNames(settings, names);
    if (!options.json) process.stderr.write(`Ordering a certificate for ${names.join(', ')}…\n`);
    return orderAndRecord(db, settings, names);
  });
  const { certFile, keyFile, notAfter, challenge } = files;
  if (options.json) return printJson({ domains: names, certFile, keyFile, notAfter, challenge });
  process.stdout.write(
    `Certificate for ${names.join(', ')} installed: ${certFile} (valid until ${notAfter.toISOString()})\n`,
  );
}

const DAY_MS = 86_400_000;

/** `aiqso certs list`: the recorded certificates, with what is installed now. */
export async function certsList(ctx: CommandContext, options: { json?: boolean }): Promise<void> {
  const certDir = ctx.config.edgeTuning.certDir;
  const rows = await withDatabase(ctx, async ({ db }) => {
    const records = await listCertificates(db);
    const now = Date.now();
    return Promise.all(
      records.map(async (r) => {
        // The files are what the edge serves: their expiry, not only what the last order recorded
        // (which is all there is to show without AIQSO_TLS_CERT_DIR).
        const notAfter = certDir ? ((await installedNotAfter(certDir, r.fileBase)) ?? null) : r.notAfter;
        return {
          names: r.names,
          file: r.fileBase,
          challenge: r.challenge,
          notAfter,
          daysLeft: notAfter ? Math.floor((notAfter.getTime() - now) / DAY_MS) : null,
          orderedAt: r.orderedAt,
          lastError: r.lastError,
        };
      }),
    );
  });
  if (options.json) return printJson(rows);
  if (rows.length === 0) {
    process.stdout.write('No certificates recorded. Order one with `aiqso certs order <domain…>`.\n');
    return;
  }
  printTable(
    rows.map((r) => ({
      names: r.names.join(' '),
      file: r.file,
      notAfter: r.notAfter?.toISOString() ?? 'files missing',
      daysLeft: r.daysLeft ?? '',
      lastError: r.lastError ?? '',
    })),
    ['names', 'file', 'notAfter', 'daysLeft', 'lastError'],
  );
}

function select(records: CertificateRecord[], domain: string): CertificateRecord {
  const name = domain.trim().toLowerCase();
  const found = records.find((r) => r.name === name) ?? records.find((r) => r.names.includes(name));
  if (!found)
    throw new DomainError(
      'bad_request',
      `no recorded certificate for ${name} (see \`aiqso certs list\`; order it with \`aiqso certs order\`)`,
    );
  return found;
}

/**
 * `aiqso certs renew [--all | <domain>]`: what the daily schedule does, now.
 * Without arguments, the certificates that are due; with a domain or
 * `--all`, those whatever their expiry.
 */
export async function certsRenew(
  ctx: CommandContext,
  domain: string | undefined,
  options: { all?: boolean; json?: boolean },
): Promise<void> {
  if (domain && options.all) throw new DomainError('bad_request', 'name a domain or --all, not both');
  const outcomes = await withDatabase(ctx, async ({ db }) => {
    const records = await listCertificates(db);
    const chosen = domain ? [select(records, domain)] : records;
    if (!options.json && chosen.length > 0)
      process.stderr.write(
        `Checking ${chosen.length} certificate(s)${domain || options.all ? ', renewing each now' : ''}…\n`,
      );
    // Each outcome is printed below; the renewal's own log lines would only repeat them on stderr.
    const log = ctx.log.child({}, { level: 'silent' });
    return renewCertificates(
      { db, log, settings: () => acmeSettings(ctx.config, db), renewDays: ctx.config.certRenewDays },
      { records: chosen, force: Boolean(domain || options.all) },
    );
  });
  if (options.json) printJson(outcomes);
  else if (outcomes.length === 0) process.stdout.write('No certificates recorded.\n');
  else
    for (const o of outcomes) {
      const until = o.notAfter ? `valid until ${o.notAfter.toISOString()}` : 'files missing';
      const line =
        o.status === 'renewed'
          ? `renewed, ${until}`
          : o.status === 'not_due'
            ? `not due, ${until}`
            : `FAILED: ${o.error}`;
      process.stdout.write(`${o.names.join(', ')}: ${line}\n`);
    }
  const failed = outcomes.filter((o) => o.status === 'failed');
  if (failed.length === 1 && outcomes.length === 1) {
    // The one certificate asked about: its own error is the line (a missing setting stays the caller's mistake).
    throw new DomainError(
      failed[0]!.code ?? 'dependency_failed',
      `renewing ${failed[0]!.name} failed: ${failed[0]!.error}`,
    );
  }
  if (failed.length > 0)
    throw new DomainError(
      'dependency_failed',
      `${failed.length} of ${outcomes.length} certificate renewal(s) failed: ${failed.map((f) => f.name).join(', ')}`,
    );
}
