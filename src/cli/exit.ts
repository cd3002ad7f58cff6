import { CatalogError } from '../catalog/load.ts';
import { ConfigError } from '../config/load.ts';
import { DomainError } from '../core/errors.ts';

/** Exit codes of the `aiqso` command; the only place errors become them. */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3 } as const;

export function exitCodeFor(err: unknown): number {
  if (err instanceof ConfigError || err instanceof CatalogError) return EXIT.usage;
  if (err instanceof DomainError) {
    if (err.code === 'not_found') return EXIT.notFound;
    return err.blame === 'caller' ? EXIT.usage : EXIT.failure;
  }
  return EXIT.failure;
}

/** One line for the operator: what went wrong, never a stack trace. */
export function messageFor(err: unknown): string {
  if (err instanceof ConfigError) return `aiqso: configuration error: ${err.message}`;
  if (err instanceof CatalogError) return `aiqso: service catalog error: ${err.message}`;
  if (err instanceof Error) return `aiqso: ${err.message}`;
  return `aiqso: ${String(err)}`;
}
