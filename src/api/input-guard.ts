import type { FastifyInstance } from 'fastify';
import { findInputProblem } from '../core/input.ts';
import { DomainError } from '../core/errors.ts';

/**
 * One check for every route, before authentication and schema validation
 * (like malformed JSON): a NUL or other control character in any string of
 * the path parameters, the query or a parsed body (JSON or form), or a body
 * nested deeper than MAX_JSON_DEPTH, is a 400 naming the field. Routes that
 * keep their raw body (the Stripe webhook) check it themselves.
 */
export function installInputGuard(app: FastifyInstance): void {
  app.addHook('preValidation', (request, _reply, done) => {
    const params = findInputProblem(request.params, 'params');
    if (params) {
      // The audit row of this refusal must not carry the refused value: name the parameter, not its value.
      request.audit = { ...request.audit, targetType: params.field.split('.')[1] ?? 'params' };
    }
    const body = Buffer.isBuffer(request.body) ? undefined : findInputProblem(request.body, 'body');
    const problem = params ?? findInputProblem(request.query, 'query') ?? body;
    if (!problem) return done();
    done(
      new DomainError('bad_request', `${problem.field}: ${problem.message}`, {
        details: { field: problem.field },
      }),
    );
  });
}
