import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startFakeAcme, type FakeAcme } from './fake-acme.ts';

/**
 * A local ACME CA (./fake-acme.ts) validating DNS-01 only, with the operator's
 * DNS hook as a shell script that keeps TXT records as files in a zone
 * directory the CA reads as its DNS: the settings (`env`) a platform needs to
 * order and renew certificates for any `*.<domain>` without a network.
 */
export interface AcmeDns {
  ca: FakeAcme;
  env: Record<string, string>;
  certDir: string;
  close(): Promise<void>;
}

export async function startAcmeDns(): Promise<AcmeDns> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'aiqso-acme-dns-'));
  const certDir = path.join(dir, 'certs');
  const zone = path.join(dir, 'zone');
  mkdirSync(certDir);
  mkdirSync(zone);
  const hook = path.join(dir, 'dns-hook');
  writeFileSync(
    hook,
    `#!/bin/sh
set -eu
case "$1" in
  create) mkdir -p "${zone}/$2" && : > "${zone}/$2/$3" ;;
  remove) rm -f "${zone}/$2/$3" ;;
  *) echo "unknown action $1" >&2; exit 64 ;;
esac
`,
  );
  chmodSync(hook, 0o755);
  const records = (name: string): string[] => {
    try {
      return readdirSync(path.join(zone, name));
    } catch {
      return [];
    }
  };
  // HTTP-01 is never offered for a wildcard, so nothing is fetched from `validateAt`.
  const ca = await startFakeAcme({ host: '127.0.0.1', port: 9 }, { txt: records });
  return {
    ca,
    certDir,
    env: {
      AIQSO_TLS_CERT_DIR: certDir,
      AIQSO_ACME_DIRECTORY_URL: ca.directoryUrl,
      AIQSO_ACME_EMAIL: 'ops@aiqso.test',
      AIQSO_ACME_DNS_HOOK: hook,
      AIQSO_ACME_DNS_PROPAGATION_SECONDS: '0',
    },
    async close() {
      await ca.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
