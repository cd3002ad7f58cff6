import { createPrivateKey } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import tls, { type SecureContext } from 'node:tls';
import type { Logger } from '../observability/logger.ts';

/**
 * Certificates for the HTTPS listener: the default (wildcard) pair from two
 * files, plus per-host pairs from a directory (`<hostname>.crt` and
 * `<hostname>.key`, e.g. a tenant's custom domain; `_wildcard.<domain>` for
 * `*.<domain>`) chosen by SNI. Files are
 * polled; a renewed certificate is used for new connections without a
 * restart. A pair that fails to load keeps the previous one in service.
 */
export interface CertificateSource {
  certFile: string;
  keyFile: string;
  /** Directory of per-host certificates for SNI. */
  certDir?: string;
}

export interface CertificateStore {
  /** The default pair, for connections without SNI (`server.setSecureContext`). */
  defaultPair(): PemPair;
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

/** A per-host pair in a certificate directory, and the TLS server name it answers. */
export interface DirCertificate {
  /** `shop.example.com`, or `*.example.com` for `_wildcard.example.com`. */
  serverName: string;
  certFile: string;
  keyFile: string;
}

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

export interface PemPair {
  cert: Buffer;
  key: Buffer;
}

function readPair(certFile: string, keyFile: string): PemPair {
  return { cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

function load(certFile: string, keyFile: string): SecureContext {
  return tls.createSecureContext(readPair(certFile, keyFile));
}

export function createCertificateStore(
  source: CertificateSource,
  log: Logger,
  pollMs = 2000,
): CertificateStore {
  let defaultPair = readPair(source.certFile, source.keyFile);
  let defaultCtx = tls.createSecureContext(defaultPair);
  let defaultPrint = fingerprint([source.certFile, source.keyFile]);
  let byHost = new Map<string, SecureContext>();
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
    for (const crt of files.filter((f) => f.endsWith('.crt'))) {
      const host = path.basename(crt, '.crt').toLowerCase();
      const key = crt.slice(0, -4) + '.key';
      try {
        next.set(host, load(crt, key));
        const keyType = createPrivateKey(readFileSync(key)).asymmetricKeyType;
        const defaultType = createPrivateKey(defaultPair.key).asymmetricKeyType;
        if (defaultType === 'ec' && keyType !== 'ec')
          log.warn(
            { host, keyType },
            'Node keeps serving an ECDSA default certificate to a name whose certificate has another key type; use an ECDSA key for this host',
          );
      } catch (err) {
        const previous = byHost.get(host);
        if (previous) next.set(host, previous);
        log.error({ err, host }, 'could not load the certificate for this host; keeping the previous one');
      }
    }
    byHost = next;
  };

  const refresh = (): boolean => {
    let changed = false;
    const print = fingerprint([source.certFile, source.keyFile]);
    if (print !== defaultPrint) {
      defaultPrint = print;
      try {
        const pair = readPair(source.certFile, source.keyFile);
        defaultCtx = tls.createSecureContext(pair);
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
    defaultPair: () => defaultPair,
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
