/**
 * The closed set of domain errors. Every failure that leaves the platform —
 * as an HTTP response, a CLI message or a step's last error — is one of these,
 * with a stable `code`. `src/api/errors.ts` and `src/cli/exit.ts` are the only
 * places that map them to HTTP statuses and exit codes.
 *
 * `blame` separates "the caller did something wrong" (fix your input) from
 * "the platform failed" (retry may help, operators should look).
 */
export const ERROR_CODES = {
  bad_request: { status: 400, blame: 'caller', retryable: false },
  validation_failed: { status: 400, blame: 'caller', retryable: false },
  unauthenticated: { status: 401, blame: 'caller', retryable: false },
  payment_required: { status: 402, blame: 'caller', retryable: false },
  forbidden: { status: 403, blame: 'caller', retryable: false },
  not_found: { status: 404, blame: 'caller', retryable: false },
  method_not_allowed: { status: 405, blame: 'caller', retryable: false },
  conflict: { status: 409, blame: 'caller', retryable: false },
  /** What was there and is not any more, for good (an expired export's archive). */
  gone: { status: 410, blame: 'caller', retryable: false },
  payload_too_large: { status: 413, blame: 'caller', retryable: false },
  unsupported_media_type: { status: 415, blame: 'caller', retryable: false },
  rate_limited: { status: 429, blame: 'caller', retryable: true },
  capacity_exhausted: { status: 409, blame: 'platform', retryable: true },
  /** A deployment that cannot succeed by retrying (a service that never became healthy in its time). */
  deploy_failed: { status: 502, blame: 'platform', retryable: false },
  dependency_failed: { status: 502, blame: 'platform', retryable: true },
  unavailable: { status: 503, blame: 'platform', retryable: true },
  /**
   * The platform's own settings are wrong, and only an operator can fix them (a backup repository
   * refused the configured credentials, or its certificate is not trusted): retrying cannot help.
   */
  misconfigured: { status: 503, blame: 'platform', retryable: false },
  internal: { status: 500, blame: 'platform', retryable: true },
} as const satisfies Record<string, { status: number; blame: 'caller' | 'platform'; retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface DomainErrorOptions {
  cause?: unknown;
  /** Machine-readable detail for the caller, e.g. which field was wrong. */
  details?: Record<string, unknown>;
}

export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: DomainErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'DomainError';
    this.code = code;
    this.details = options.details;
  }

  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }

  get blame(): 'caller' | 'platform' {
    return ERROR_CODES[this.code].blame;
  }
}

export const notFound = (what: string): DomainError => new DomainError('not_found', `${what} not found`);

export const badRequest = (message: string, details?: Record<string, unknown>): DomainError =>
  new DomainError('bad_request', message, { details });

export const conflict = (message: string, details?: Record<string, unknown>): DomainError =>
  new DomainError('conflict', message, { details });

export function isDomainError(err: unknown): err is DomainError {
  return err instanceof DomainError;
}
