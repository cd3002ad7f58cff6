import { execFileSync } from 'node:child_process';
import { readFileSync, renameSync } from 'node:fs';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { Echo } from './upstreams.ts';

export const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version']);
    return true;
  } catch {
    return false;
  }
})();

/** A self-signed certificate for `names` (first is the CN), written as <base>.crt / <base>.key. */
export function selfSigned(base: string, names: string[], cn = names[0]!) {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
    '-keyout', `${base}.key.tmp`, '-out', `${base}.crt.tmp`,
  ], { stdio: 'ignore' }); // prettier-ignore
  // Replace atomically, as a renewal tool does.
  renameSync(`${base}.key.tmp`, `${base}.key`);
  renameSync(`${base}.crt.tmp`, `${base}.crt`);
}

/**
 * Trust every certificate `files` have held so far: an edge serves the old
 * one until it notices a renewal.
 */
export function trustStore(files: () => string[]): () => string[] {
  const trusted: string[] = [];
  return () => {
    for (const f of files()) {
      const pem = readFileSync(f, 'utf8');
      if (!trusted.includes(pem)) trusted.push(pem);
    }
    return trusted;
  };
}

/** GET / over HTTPS with `servername` for SNI (none when undefined): the status, the certificate's CN, the echo. */
export function tlsGet(port: number, servername: string | undefined, host: string, ca: string[]) {
  return new Promise<{ status: number; echo?: Echo; cn: string; serial: string; validTo: Date }>(
    (resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port, path: '/', servername, headers: { host }, ca, agent: false },
        (res) => {
          let body = '';
          const peer = (res.socket as TLSSocket).getPeerCertificate();
          const cn = String(peer.subject?.CN);
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () =>
            resolve({
              status: res.statusCode!,
              cn,
              serial: peer.serialNumber,
              validTo: new Date(peer.valid_to),
              echo: res.headers['x-upstream'] ? (JSON.parse(body) as Echo) : undefined,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    },
  );
}
