import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { DomainError } from '../core/errors.ts';

/**
 * Secrets at rest: AES-256-GCM under the master key. A sealed value names the
 * key that sealed it (`aes256gcm:<keyId>:<iv>:<tag>:<ciphertext>`), so a box
 * holding several keys (during rotation) opens each with the right one and a
 * missing key is reported by id instead of as garbage. `context` is bound as
 * additional data: a value copied into another row or column does not open.
 */
export interface SecretBox {
  /** Id of the key new values are sealed with. */
  readonly keyId: string;
  seal(plain: string, context: string): string;
  open(sealed: string, context: string): string;
  /** The key id a sealed value names. */
  keyIdOf(sealed: string): string;
}

const PREFIX = 'aes256gcm';

export function keyIdFor(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 12);
}

export function parseMasterKey(base64: string): Buffer {
  const key = Buffer.from(base64.trim(), 'base64');
  if (key.length !== 32) {
    throw new DomainError('bad_request', 'master key must be 32 bytes in base64 (44 characters)');
  }
  return key;
}

export function generateMasterKey(): string {
  return randomBytes(32).toString('base64');
}

/** A box that seals with `primary` and opens with it or any of `others`. */
export function createSecretBox(primary: Buffer, others: Buffer[] = []): SecretBox {
  const keys = new Map<string, Buffer>();
  for (const k of [primary, ...others]) keys.set(keyIdFor(k), k);
  const keyId = keyIdFor(primary);
  const split = (sealed: string) => {
    const parts = sealed.split(':');
    if (parts.length !== 5 || parts[0] !== PREFIX) {
      throw new DomainError('internal', 'a stored secret is not in the sealed format');
    }
    return { id: parts[1]!, iv: parts[2]!, tag: parts[3]!, body: parts[4]! };
  };
  return {
    keyId,
    seal(plain, context) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', primary, iv);
      cipher.setAAD(Buffer.from(context));
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      const b64 = (b: Buffer) => b.toString('base64url');
      return [PREFIX, keyId, b64(iv), b64(cipher.getAuthTag()), b64(body)].join(':');
    },
    open(sealed, context) {
      const { id, iv, tag, body } = split(sealed);
      const key = keys.get(id);
      if (!key) {
        throw new DomainError(
          'internal',
          `a stored secret is sealed with master key ${id}, which is not configured (AIQSO_MASTER_KEY or <data>/master.key)`,
        );
      }
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
        decipher.setAAD(Buffer.from(context));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
          'utf8',
        );
      } catch (err) {
        throw new DomainError('internal', `a stored secret (${context}) failed authentication`, {
          cause: err,
        });
      }
    },
    keyIdOf(sealed) {
      return split(sealed).id;
    },
  };
}
