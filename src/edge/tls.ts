import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import tls, { type SecureContext } from 'node:tls';
import type { Logger } from '../observability/logger.ts';

/**
 * Certificates for the HTTPS listener: the default (wildcard) pair from two
 * files, plus per-host pairs from a directory (`<hostname>.crt` and
 * `<hostname>.key`, e.g. a tenant's custom domain; `_wildcard.<domain>` for
 * `*.<domain>`) chosen by SNI: by the file's name first, then by the other
 * DNS names the certificate holds (a `*.example.com` + `example.com` pair
 * serves both). Files are polled; a renewed certificate is used for new
 * connections without a restart. A pair that fails to load keeps the previous
 * one in service.
 */
export interface CertificateSource {
  certFile: string;
  keyFile: string;
  /** Directory of per-host certificates for SNI. */
  certDir?: string;
  /** The oldest TLS version accepted (AIQSO_TLS_MIN_VERSION), on every certificate's context. */
  minVersion?: TlsVersion;
}

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

export interface CertificateStore {
  /** The default pair, for connections without SNI (`server.setSecureContext`), with the minimum TLS version. */
  defaultPair(): PemPair & { minVersion: TlsVersion };
  sniCallback(servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void;
  /** Reload what changed on disk now; returns true when something changed. */
  refresh(): boolean;
  onDefaultChange(fn: (pair: PemPair) => void): void;
  close(): void;
}

/** Names, sizes and modification times of `files`: changes when any is replaced. */
export function fingerprint(files: string[]): string {
  return files
    .map((f) => {
      try {
        const s = statSync(f);
        return `${f}:${s.mtimeMs}:${s.size}`;
      } catch {
        return `${f}:missing`;
      }
    })
    .join('|');
}

/** A per-host pair in a certificate directory, and the TLS server name its file is named for. */
export interface DirCertificate {
  /** `shop.example.com`, or `*.example.com` for `_wildcard.example.com`. */
  serverName: string;
  certFile: string;
  keyFile: string;
}

/** The DNS names in a PEM certificate's subjectAltName, lower-cased; none when it cannot be read. */
export function certificateDnsNames(pem: Buffer | string): string[] {
  try {
    const san = new X509Certificate(pem).subjectAltName ?? '';
    return san
      .split(', ')
      .filter((entry) => entry.startsWith('DNS:'))
      .map((entry) => entry.slice(4).toLowerCase());
  } catch {
    return [];
  }
}

/** The lookup key of a server name: the name itself, or `_wildcard.<domain>` for `*.<domain>`. */
const sniKey = (name: string) => (name.startsWith('*.') ? `_wildcard.${name.slice(2)}` : name);

/** The complete `<name>.crt` + `<name>.key` pairs in `dir` (none when it is unset or missing), sorted by name. */
export function dirCertificates(dir: string | undefined): DirCertificate[] {
  if (!dir) return [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const present = new Set(names);
  return names
    .filter((f) => f.endsWith('.crt') && present.has(`${f.slice(0, -4)}.key`))
    .sort()
    .map((f) => {
      const base = f.slice(0, -4).toLowerCase();
      return {
        serverName: base.startsWith('_wildcard.') ? `*.${base.slice('_wildcard.'.length)}` : base,
        certFile: path.join(dir, f),
        keyFile: path.join(dir, `${f.slice(0, -4)}.key`),
      };
    });
}

/** `certs` with the other DNS names each certificate holds (read from its file; none if it cannot be read). */
export function withAltNames(certs: DirCertificate[]): (DirCertificate & { altNames: string[] })[] {
  return certs.map((c) => {
    let pem: Buffer | undefined;
    try {
      pem = readFileSync(c.certFile);
    } catch {
      // Replaced or removed meanwhile: answers for its file's name until the next look.
    }
    return { ...c, altNames: pem ? certificateDnsNames(pem).filter((n) => n !== c.serverName) : [] };
  });
}

export interface PemPair {
  cert: Buffer;
  key: Buffer;
}

function readPair(certFile: string, keyFile: string): PemPair {
  return { cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

export function createCertificateStore(
  source: CertificateSource,
  log: Logger,
  pollMs = 2000,
): CertificateStore {
  const minVersion = source.minVersion ?? 'TLSv1.3';
  const context = (pair: PemPair) => tls.createSecureContext({ ...pair, minVersion });
  let defaultPair = readPair(source.certFile, source.keyFile);
  let defaultCtx = context(defaultPair);
  let defaultPrint = fingerprint([source.certFile, source.keyFile]);
  let byHost = new Map<string, SecureContext>();
  // The other DNS names of each file's last good certificate, kept with it when a new one fails to load.
  let altNamesOf = new Map<string, string[]>();
  let dirPrint = '';
  const listeners: ((pair: PemPair) => void)[] = [];

  const dirFiles = (): string[] => {
    if (!source.certDir) return [];
    try {
      return readdirSync(source.certDir)
        .filter((f) => f.endsWith('.crt') || f.endsWith('.key'))
        .sort()
        .map((f) => path.join(source.certDir!, f));
    } catch {
      return [];
    }
  };

  const loadDir = (files: string[]) => {
    const next = new Map<string, SecureContext>();
    // Names a certificate holds besides its file's: used where no file is named for them.
    const byAltName = new Map<string, SecureContext>();
    const nextAltNames = new Map<string, string[]>();
    const addAltNames = (host: string, names: string[], ctx: SecureContext) => {
      nextAltNames.set(host, names);
      for (const name of names) if (!byAltName.has(sniKey(name))) byAltName.set(sniKey(name), ctx);
    };
    const defaultType = createPrivateKey(defaultPair.key).asymmetricKeyType;
    for (const crt of files.filter((f) => f.endsWith('.crt'))) {
      const host = path.basename(crt, '.crt').toLowerCase();
      const key = crt.slice(0, -4) + '.key';
      try {
        const pair = readPair(crt, key);
        const ctx = context(pair);
        next.set(host, ctx);
        addAltNames(host, certificateDnsNames(pair.cert), ctx);
        const keyType = createPrivateKey(pair.key).asymmetricKeyType;
        if (defaultType === 'ec' && keyType !== 'ec')
          log.warn(
            { host, keyType },
            'Node keeps serving an ECDSA default certificate to a name whose certificate has another key type; use an ECDSA key for this host',
          );
      } catch (err) {
        const previous = byHost.get(host);
        if (previous) {
          next.set(host, previous);
          addAltNames(host, altNamesOf.get(host) ?? [], previous);
        }
        log.error({ err, host }, 'could not load the certificate for this host; keeping the previous one');
      }
    }
    for (const [name, ctx] of byAltName) if (!next.has(name)) next.set(name, ctx);
    byHost = next;
    altNamesOf = nextAltNames;
  };

  const refresh = (): boolean => {
    let changed = false;
    const print = fingerprint([source.certFile, source.keyFile]);
    if (print !== defaultPrint) {
      defaultPrint = print;
      try {
        const pair = readPair(source.certFile, source.keyFile);
        defaultCtx = context(pair);
        defaultPair = pair;
        for (const fn of listeners) fn(pair);
        log.info({ cert: source.certFile }, 'TLS certificate reloaded');
        changed = true;
      } catch (err) {
        log.error({ err }, 'could not reload the TLS certificate; keeping the previous one');
      }
    }
    const files = dirFiles();
    const dp = fingerprint(files);
    if (dp !== dirPrint) {
      dirPrint = dp;
      loadDir(files);
      changed = true;
    }
    return changed;
  };
  refresh();
  const timer = setInterval(refresh, pollMs);
  timer.unref();

  return {
    defaultPair: () => ({ ...defaultPair, minVersion }),
    sniCallback(servername, cb) {
      const name = servername.toLowerCase().replace(/\.$/, '');
      const parent = name.slice(name.indexOf('.') + 1);
      cb(null, byHost.get(name) ?? byHost.get(`_wildcard.${parent}`) ?? defaultCtx);
    },
    refresh,
    onDefaultChange: (fn) => listeners.push(fn),
    close: () => clearInterval(timer),
  };
}
