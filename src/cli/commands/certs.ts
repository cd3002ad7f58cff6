import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DomainError } from '../../core/errors.ts';
import { databaseChallengeStore, orderCertificate } from '../../edge/acme.ts';
import { withDatabase, type CommandContext } from '../context.ts';
import { printJson } from '../output.ts';

/** The ACME account key, created once in `<data>/acme-account.key` (0600); it identifies the account for renewals. */
async function accountKey(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'acme-account.key');
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const acme = await import('acme-client');
  const key = (await acme.crypto.createPrivateEcdsaKey('P-256')).toString();
  try {
    // Exclusive: of two processes creating it at once, both go on with the one written first.
    await writeFile(file, key, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  await chmod(file, 0o600);
  return readFile(file, 'utf8');
}

/**
 * `aiqso certs order <domain…>`: order a certificate over HTTP-01 from
 * AIQSO_ACME_DIRECTORY_URL into AIQSO_TLS_CERT_DIR. The answers go into the
 * master database, so whichever edge the CA reaches answers; the edges serve
 * the new pair without a restart.
 */
export async function certsOrder(
  ctx: CommandContext,
  domains: string[],
  options: { json?: boolean },
): Promise<void> {
  const { config } = ctx;
  if (!config.acme)
    throw new DomainError('bad_request', 'set AIQSO_ACME_DIRECTORY_URL to order certificates');
  const certDir = config.edgeTuning.certDir;
  if (!certDir) throw new DomainError('bad_request', 'set AIQSO_TLS_CERT_DIR: ordered certificates go there');
  const key = await accountKey(config.dataDir);
  const files = await withDatabase(ctx, ({ db }) =>
    orderCertificate({
      directoryUrl: config.acme!.directoryUrl,
      accountKey: key,
      email: config.acme!.email,
      domains,
      certDir,
      store: databaseChallengeStore(db),
    }),
  );
  if (options.json) return printJson({ domains, ...files });
  process.stdout.write(`Certificate for ${domains.join(', ')} installed: ${files.certFile}\n`);
}
