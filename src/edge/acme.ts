import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DomainError } from '../core/errors.ts';
import type { Database } from '../db/database.ts';
import type { ChallengeResponder } from './handler.ts';

/**
 * Optional ACME (Let's Encrypt and the like) through acme-client.
 *
 * - HTTP-01 for single names (a tenant's custom domain): the key
 *   authorisation goes into `acme_challenges`, and every edge instance
 *   answers `/.well-known/acme-challenge/<token>` from there, on any host.
 * - DNS-01 for the wildcard: the operator supplies a `DnsHook` that creates
 *   and removes the `_acme-challenge` TXT record at their DNS provider.
 *
 * The issued certificate and key are written where the TLS certificate store
 * polls (`<certDir>/<name>.crt|.key`), so the edge serves them without a restart.
 */
export interface ChallengeStore extends ChallengeResponder {
  put(token: string, keyAuthorization: string, domain: string): Promise<void>;
  remove(token: string): Promise<void>;
}

const CHALLENGE_KIND = 'acme-challenge';
const TOKEN = /^[A-Za-z0-9_-]{1,256}$/;

/**
 * HTTP-01 answers kept as `resources` rows (kind `acme-challenge`, id = the
 * token): any edge instance may receive the CA's request, so the answer must
 * not live in one process.
 */
export function databaseChallengeStore(db: Database): ChallengeStore {
  return {
    async put(token, keyAuthorization, domain) {
      if (!TOKEN.test(token)) throw new DomainError('bad_request', 'ACME token has unexpected characters');
      const spec = JSON.stringify({ keyAuthorization, domain });
      await db
        .insertInto('resources')
        .values({ kind: CHALLENGE_KIND, id: token, spec, steps: '[]', phase: 'ready' })
        .onConflict((oc) => oc.columns(['kind', 'id']).doUpdateSet({ spec, updated_at: new Date() }))
        .execute();
    },
    async remove(token) {
      await db.deleteFrom('resources').where('kind', '=', CHALLENGE_KIND).where('id', '=', token).execute();
    },
    async keyAuthorization(token) {
      if (!TOKEN.test(token)) return undefined;
      const row = await db
        .selectFrom('resources')
        .select('spec')
        .where('kind', '=', CHALLENGE_KIND)
        .where('id', '=', token)
        .executeTakeFirst();
      const answer = (row?.spec as { keyAuthorization?: unknown } | undefined)?.keyAuthorization;
      return typeof answer === 'string' ? answer : undefined;
    },
  };
}

/** Creates and removes `_acme-challenge.<domain>` TXT records (DNS-01). */
export interface DnsHook {
  createTxt(name: string, value: string): Promise<void>;
  removeTxt(name: string, value: string): Promise<void>;
}

type Authz = { identifier: { value: string } };
type Challenge = { type: string; token: string };

/** The challenge callbacks acme-client's `auto` calls: HTTP-01 into the store, DNS-01 through the hook. */
export function challengeHandlers(store: ChallengeStore, dns?: DnsHook) {
  const txtName = (authz: Authz) => `_acme-challenge.${authz.identifier.value.replace(/^\*\./, '')}`;
  return {
    create: async (authz: Authz, challenge: Challenge, keyAuthorization: string): Promise<void> => {
      if (challenge.type === 'http-01')
        return store.put(challenge.token, keyAuthorization, authz.identifier.value);
      if (challenge.type === 'dns-01' && dns) return dns.createTxt(txtName(authz), keyAuthorization);
      throw new DomainError('bad_request', `no way to answer an ACME ${challenge.type} challenge`);
    },
    remove: async (authz: Authz, challenge: Challenge, keyAuthorization: string): Promise<void> => {
      if (challenge.type === 'http-01') return store.remove(challenge.token);
      if (challenge.type === 'dns-01' && dns) return dns.removeTxt(txtName(authz), keyAuthorization);
    },
  };
}

export interface CertificateOrder {
  directoryUrl: string;
  /** PEM account key (keep it: it identifies the account for renewals). */
  accountKey: string | Buffer;
  email?: string;
  /** The names on the certificate; a `*.` name needs a DNS hook. */
  domains: string[];
  certDir: string;
  store: ChallengeStore;
  dns?: DnsHook;
}

/** The file name (without `.crt`/`.key`) a certificate is installed under: its first name, `*.` as `_wildcard.`. */
export const certificateFileBase = (domains: readonly string[]): string =>
  domains[0]!.replace(/^\*\./, '_wildcard.');

export interface InstalledCertificate {
  certFile: string;
  keyFile: string;
  /** When the issued certificate expires. */
  notAfter: Date;
  challenge: 'http-01' | 'dns-01';
}

/** Order a certificate and install it as `<certDir>/<first name>.crt|.key` (a wildcard as `_wildcard.<rest>`). */
export async function orderCertificate(order: CertificateOrder): Promise<InstalledCertificate> {
  const wildcard = order.domains.some((d) => d.startsWith('*.'));
  if (wildcard && !order.dns) {
    throw new DomainError('bad_request', 'a wildcard certificate needs a DNS-01 hook (AIQSO_ACME_DNS_HOOK)');
  }
  // acme-client is large (~20 MB resident); only a process that orders certificates loads it.
  const acme = await import('acme-client');
  const client = new acme.Client({ directoryUrl: order.directoryUrl, accountKey: order.accountKey });
  // ECDSA P-256, like the usual wildcard pair: Node (OpenSSL 3.0) keeps serving an ECDSA default
  // certificate to a name whose SNI certificate has an RSA key (test/edge.acme-order.test.ts).
  const [key, csr] = await acme.crypto.createCsr(
    { commonName: order.domains[0]!, altNames: order.domains },
    await acme.crypto.createPrivateEcdsaKey('P-256'),
  );
  const handlers = challengeHandlers(order.store, order.dns);
  let cert: string;
  try {
    cert = await client.auto({
      csr,
      email: order.email,
      termsOfServiceAgreed: true,
      // The CA's own validation is the check that counts: the machine ordering may not reach the
      // public address (NAT), and the answer is in the database for every edge anyway.
      skipChallengeVerification: true,
      challengePriority: wildcard ? ['dns-01'] : ['http-01', 'dns-01'],
      challengeCreateFn: handlers.create,
      challengeRemoveFn: handlers.remove,
    });
  } catch (err) {
    // The reason in the message: a CA's problem detail ("incorrect TXT record …") or the DNS hook's own line.
    const reason = err instanceof Error ? err.message.split('\n')[0] : '';
    throw new DomainError(
      'dependency_failed',
      `ACME order for ${order.domains.join(', ')} failed${reason ? `: ${reason}` : ''}`,
      { cause: err },
    );
  }
  const base = path.join(order.certDir, certificateFileBase(order.domains));
  await mkdir(order.certDir, { recursive: true });
  // Key first, then certificate, each replaced atomically: the store reloads a pair when the .crt changes.
  await writeFile(`${base}.key.tmp`, key, { mode: 0o600 });
  await chmod(`${base}.key.tmp`, 0o600);
  await rename(`${base}.key.tmp`, `${base}.key`);
  await writeFile(`${base}.crt.tmp`, cert);
  await rename(`${base}.crt.tmp`, `${base}.crt`);
  return {
    certFile: `${base}.crt`,
    keyFile: `${base}.key`,
    notAfter: new Date(new X509Certificate(cert).validTo),
    challenge: wildcard ? 'dns-01' : 'http-01',
  };
}
