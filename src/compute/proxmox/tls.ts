import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { Agent, buildConnector } from 'undici';

export interface ProxmoxTrust {
  /** PEM of the CA that signed the cluster's certificates (Proxmox's own CA: /etc/pve/pve-root-ca.pem). */
  caFile?: string;
  /** SHA-256 fingerprint `AA:BB:…` of the node's certificate, pinned instead of a CA. */
  fingerprint?: string;
}

/**
 * The HTTPS dispatcher for the Proxmox API. With a CA file, normal verification
 * against that CA. With a fingerprint, the chain is not verified (a fresh node's
 * certificate is self-signed) but the connection is refused unless the peer's
 * certificate has exactly that fingerprint — checked before any request
 * (and its token) is written.
 */
export function proxmoxDispatcher(trust: ProxmoxTrust): Agent {
  if (trust.fingerprint) {
    const pin = trust.fingerprint.toUpperCase();
    const connect = buildConnector({ rejectUnauthorized: false });
    return new Agent({
      connect: (options, callback) =>
        connect(options, (err, socket) => {
          if (err || !socket) return callback(err ?? new Error('no socket'), null);
          const seen = (socket as TLSSocket).getPeerCertificate?.().fingerprint256?.toUpperCase();
          if (seen !== pin) {
            socket.destroy();
            return callback(
              new Error(
                `Proxmox certificate fingerprint ${seen ?? 'none'} does not match PROXMOX_FINGERPRINT`,
              ),
              null,
            );
          }
          callback(null, socket);
        }),
    });
  }
  if (trust.caFile) return new Agent({ connect: { ca: readFileSync(trust.caFile) } });
  return new Agent();
}
