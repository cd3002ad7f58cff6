import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { DomainError, ERROR_CODES, type ErrorCode } from '../core/errors.ts';
import { redactText } from '../observability/redact.ts';
import { errorPage } from '../web/error-page.ts';

/** The JSON body of every error response. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  410: 'gone',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
};

/**
 * Turn anything thrown in a request into a domain error. Fastify's own errors
 * for malformed requests (bad JSON, wrong content type, oversized body, failed
 * schema) carry a 4xx statusCode and become the matching caller error; anything
 * else is the platform's fault and is reported without internals.
 */
export function toDomainError(err: unknown): DomainError {
  if (err instanceof DomainError) return err;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issues = err.validation as { instancePath: string; message?: string }[];
    const fields = issues.map((v) => ({
      field: [err.validationContext, ...v.instancePath.split('/').filter(Boolean)].join('.'),
      message: v.message ?? 'invalid',
    }));
    const first = fields[0];
    return new DomainError(
      'validation_failed',
      first ? `${first.field}: ${first.message}` : 'invalid request',
      {
        details: { fields },
      },
    );
  }
  const fe = err as Partial<FastifyError>;
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    const code = BY_STATUS[status] ?? 'bad_request';
    return new DomainError(code, callerMessage(fe), { cause: err });
  }
  return new DomainError('internal', 'internal error; the platform logged the details', { cause: err });
}

function callerMessage(err: Partial<FastifyError>): string {
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'request body is not valid JSON';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'unsupported Content-Type; send application/json';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'request body is too large';
    default:
      return (err.message ?? 'bad request').replace(/^FST_\w+: /, '');
  }
}

export function errorBody(err: DomainError): ErrorBody {
  return {
    error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) },
  };
}

/** Paths whose answers are for programs: always JSON, whatever the client accepts. */
const MACHINE_PATHS = /^\/(api|webhooks|healthz|readyz|metrics|internal)(\/|$|\?)/;

/**
 * A browser asking for a page (its Accept names text/html) of a route that is
 * not the API gets an HTML error page; API clients, and anything not naming
 * HTML, get the JSON error body.
 */
function wantsHtml(request: FastifyRequest): boolean {
  if (MACHINE_PATHS.test(request.url)) return false;
  const accept = request.headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

function sendError(request: FastifyRequest, reply: FastifyReply, domain: DomainError) {
  if (!wantsHtml(request)) return reply.status(domain.status).send(errorBody(domain));
  return reply
    .status(domain.status)
    .type('text/html; charset=utf-8')
    .send(
      errorPage({
        status: domain.status,
        message: domain.message,
        path: request.url.split('?')[0]!,
        requestId: String(request.id),
      }),
    );
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const domain = toDomainError(err);
    if (ERROR_CODES[domain.code].blame === 'platform') {
      request.log.error({ err, code: domain.code }, 'request failed');
    } else {
      request.log.info({ code: domain.code, reason: redactText(domain.message) }, 'request refused');
    }
    if (domain.code === 'rate_limited' && typeof domain.details?.retryAfterSeconds === 'number') {
      void reply.header('retry-after', String(domain.details.retryAfterSeconds));
    }
    return sendError(request, reply, domain);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(
      request,
      reply,
      wantsHtml(request)
        ? new DomainError('not_found', 'There is no page at this address.')
        : new DomainError('not_found', `no route for ${request.method} ${request.url.split('?')[0]}`),
    ),
  );
}
