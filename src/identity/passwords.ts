import { readFileSync } from 'node:fs';
import { hash, verify } from '@node-rs/argon2';
import { DomainError } from '../core/errors.ts';

// OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane. (2 is Algorithm.Argon2id, a const enum.)
const OPTIONS = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export function hashPassword(password: string): Promise<string> {
  return hash(password, OPTIONS);
}

export async function verifyPassword(stored: string, password: string): Promise<boolean> {
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
}

/** A hash to verify against when the account does not exist, so timing does not reveal which emails do. */
let dummy: Promise<string> | undefined;
export function dummyHash(): Promise<string> {
  dummy ??= hashPassword('not-a-real-account-password');
  return dummy;
}

export const PASSWORD_MIN = 12;
export const PASSWORD_MAX = 256;

const COMMON = new Set(
  readFileSync(new URL('./common-passwords.txt', import.meta.url), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#')),
);

/**
 * Password rules after NIST SP 800-63B: a minimum length, a check against
 * passwords attackers try first, and nothing about character classes.
 * Returns the reason a password is refused, or undefined.
 */
export function passwordProblem(password: string, email?: string): string | undefined {
  const length = [...password].length;
  if (length < PASSWORD_MIN) return `password must be at least ${PASSWORD_MIN} characters`;
  if (length > PASSWORD_MAX) return `password must be at most ${PASSWORD_MAX} characters`;
  const lower = password.normalize('NFKC').toLowerCase();
  const stem = lower.replace(/[\d\W_]+$/u, '');
  if (COMMON.has(lower) || COMMON.has(stem)) return 'password is too common; choose another';
  if (/^(.)\1*$/u.test(lower)) return 'password must not be one repeated character';
  const local = email?.split('@')[0]?.toLowerCase();
  if (email && (lower === email.toLowerCase() || (local && local.length >= 4 && stem === local))) {
    return 'password must not be your email address';
  }
  return undefined;
}

export function checkPassword(password: string, email?: string): void {
  const problem = passwordProblem(password, email);
  if (problem) throw new DomainError('validation_failed', problem, { details: { field: 'password' } });
}

/** Emails are compared and stored trimmed and lowercased (NFKC), one account per address. */
export function normaliseEmail(email: string): string {
  return email.normalize('NFKC').trim().toLowerCase();
}
