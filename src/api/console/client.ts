import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DomainError, ERROR_CODES, type ErrorCode } from '../../core/errors.ts';

/**
 * The operator console is a client of the public API: every page and action
 * is one or more API calls (made in-process with the operator's own bearer
 * token and the browser's address), so whatever the console does, the API
 * does, with the same checks, limits and audit rows.
 *
 * Its cookies live under `/admin` only, HttpOnly and SameSite=Strict: the
 * access token, the refresh token (traded for a new pair when the access
 * token expires), a CSRF token every form echoes, and, between the password
 * and the second factor, the short-lived token of that step.
 */
export const CONSOLE_COOKIE = {
  access: 'aiqso_console_at',
  refresh: 'aiqso_console_rt',
  csrf: 'aiqso_console_csrf',
  step: 'aiqso_console_step',
} as const;
const PATH = '/admin';
const REFRESH_MAX_AGE = 30 * 24 * 3600;
const STEP_MAX_AGE = 10 * 60;

export interface ApiAnswer {
  status: number;
  // The API's JSON, read by the page that asked for it.
  body: Record<string, unknown>;
}

/** A signed-in step in progress: a platform admin enrolling, or anyone with TOTP owing a code. */
export interface PendingStep {
  kind: 'enrol' | 'code';
  token: string;
  /** While enrolling: the secret's URI, so a wrong first code does not start enrolment over. */
  otpauthUrl?: string;
}

export interface ConsoleClient {
  /** An API call without a session (login), from the browser's address. */
  call(
    request: FastifyRequest,
    method: 'GET' | 'POST',
    url: string,
    options?: { payload?: object; token?: string },
  ): Promise<ApiAnswer>;
  /** An API call as the signed-in operator; undefined when there is no session (sign in again). */
  asOperator(
    request: FastifyRequest,
    reply: FastifyReply,
    method: 'GET' | 'POST',
    url: string,
    payload?: object,
  ): Promise<ApiAnswer | undefined>;
  startSession(
    reply: FastifyReply,
    tokens: { accessToken: string; refreshToken: string; expiresIn: number },
  ): void;
  endSession(reply: FastifyReply): void;
  /**
   * A page's read as the signed-in operator: the API's answer; a refusal thrown as the console's
   * error page; no session: the browser is sent to sign in again and undefined returned.
   */
  read(request: FastifyRequest, reply: FastifyReply, url: string): Promise<ApiAnswer | undefined>;
  step(request: FastifyRequest): PendingStep | undefined;
  setStep(reply: FastifyReply, step: PendingStep): void;
  clearStep(reply: FastifyReply): void;
  /** The CSRF token for this browser's forms (set when missing). */
  csrf(request: FastifyRequest, reply: FastifyReply): string;
  /** Refuses a form post whose CSRF field does not match the cookie. */
  checkCsrf(request: FastifyRequest): void;
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function consoleClient(app: FastifyInstance, options: { secureCookies: boolean }): ConsoleClient {
  const base = { path: PATH, httpOnly: true, sameSite: 'strict' as const, secure: options.secureCookies };
  const issued = new WeakMap<FastifyRequest, string>();

  async function call(
    request: FastifyRequest,
    method: 'GET' | 'POST',
    url: string,
    opts: { payload?: object; token?: string } = {},
  ): Promise<ApiAnswer> {
    const res = await app.inject({
      method,
      url,
      remoteAddress: request.ip,
      headers: {
        'x-request-id': String(request.id),
        ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        ...(request.headers['user-agent'] ? { 'user-agent': request.headers['user-agent'] } : {}),
      },
      ...(opts.payload !== undefined ? { payload: opts.payload } : {}),
    });
    let body: Record<string, unknown> = {};
    try {
      body = res.body ? (res.json<Record<string, unknown>>() ?? {}) : {};
    } catch {
      body = {};
    }
    return { status: res.statusCode, body };
  }

  function startSession(
    reply: FastifyReply,
    tokens: { accessToken: string; refreshToken: string; expiresIn: number },
  ): void {
    void reply
      .setCookie(CONSOLE_COOKIE.access, tokens.accessToken, { ...base, maxAge: tokens.expiresIn })
      .setCookie(CONSOLE_COOKIE.refresh, tokens.refreshToken, { ...base, maxAge: REFRESH_MAX_AGE });
  }

  function endSession(reply: FastifyReply): void {
    for (const name of [CONSOLE_COOKIE.access, CONSOLE_COOKIE.refresh, CONSOLE_COOKIE.step])
      void reply.clearCookie(name, { path: PATH });
  }

  return {
    call,
    startSession,
    endSession,
    async read(request, reply, url) {
      const answer = await this.asOperator(request, reply, 'GET', url);
      if (!answer) {
        endSession(reply);
        await reply.redirect('/admin/login?expired', 303);
        return undefined;
      }
      if (answer.status !== 200) throw refused(answer);
      return answer;
    },
    async asOperator(request, reply, method, url, payload) {
      const access = request.cookies[CONSOLE_COOKIE.access];
      if (access) {
        const answer = await call(request, method, url, { payload, token: access });
        if (answer.status !== 401) return answer;
      }
      const refreshToken = request.cookies[CONSOLE_COOKIE.refresh];
      if (!refreshToken) return undefined;
      const renewed = await call(request, 'POST', '/api/v1/auth/refresh', { payload: { refreshToken } });
      if (renewed.status !== 200) return undefined;
      const tokens = renewed.body as { accessToken: string; refreshToken: string; expiresIn: number };
      startSession(reply, tokens);
      const answer = await call(request, method, url, { payload, token: tokens.accessToken });
      return answer.status === 401 ? undefined : answer;
    },
    step(request) {
      const raw = request.cookies[CONSOLE_COOKIE.step];
      if (!raw) return undefined;
      try {
        const step = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as PendingStep;
        return (step.kind === 'enrol' || step.kind === 'code') && typeof step.token === 'string'
          ? step
          : undefined;
      } catch {
        return undefined;
      }
    },
    setStep(reply, step) {
      const value = Buffer.from(JSON.stringify(step)).toString('base64url');
      void reply.setCookie(CONSOLE_COOKIE.step, value, { ...base, maxAge: STEP_MAX_AGE });
    },
    clearStep(reply) {
      void reply.clearCookie(CONSOLE_COOKIE.step, { path: PATH });
    },
    csrf(request, reply) {
      const known = request.cookies[CONSOLE_COOKIE.csrf] ?? issued.get(request);
      if (known) return known;
      const token = randomBytes(24).toString('base64url');
      issued.set(request, token);
      void reply.setCookie(CONSOLE_COOKIE.csrf, token, base);
      return token;
    },
    checkCsrf(request) {
      const sent = (request.body as Record<string, unknown> | undefined)?.csrf;
      const expected = request.cookies[CONSOLE_COOKIE.csrf];
      if (typeof sent !== 'string' || !expected || !same(sent, expected)) {
        throw new DomainError('forbidden', 'This form has expired. Go back, reload the page and try again.');
      }
    },
  };
}

/** An API refusal as the console's own error (an HTML page, with the API's words and status). */
export function refused(answer: ApiAnswer): DomainError {
  const error = (answer.body.error ?? {}) as { code?: string; message?: string };
  const code = error.code && error.code in ERROR_CODES ? (error.code as ErrorCode) : 'internal';
  return new DomainError(code, error.message ?? `the API answered ${answer.status}`);
}
