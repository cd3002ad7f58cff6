import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ApiServer } from '../server.ts';
import { DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import type { SecretBox } from '../../identity/secrets.ts';
import {
  changePassword,
  endOtherSessions,
  endUserSession,
  listUserSessions,
  login,
  loginSecondFactor,
  logout,
  refresh,
  type SessionDeps,
  type Tokens,
} from '../../identity/sessions.ts';
import { beginEnrolment, confirmEnrolment, disableTotp, totpStatus } from '../../identity/totp.ts';
import { totpQrSvg } from '../../web/qr.ts';
import { COOKIE, principalOf, requireCsrfHeader } from './authenticate.ts';
import { loginSource } from './login-source.ts';

export interface AuthRouteDeps {
  sessions: SessionDeps;
  db: Database;
  box: () => Promise<SecretBox>;
  totpIssuer: string;
  /** Cookies get `Secure` when the platform is served over HTTPS. */
  secureCookies: boolean;
}

const LoginBody = z.object({
  email: z.string().min(3).max(320),
  password: z.string().min(1).max(1024),
  totp: z.string().max(16).optional(),
  recoveryCode: z.string().max(64).optional(),
  mode: z.enum(['bearer', 'cookie']).default('bearer'),
});
const UserOut = z.object({
  id: z.string(),
  email: z.string(),
  role: z.string(),
  tenantId: z.string().nullable(),
});
const TokensOut = z.object({
  accessToken: z.string().optional(),
  tokenType: z.literal('Bearer'),
  expiresIn: z.number(),
  refreshToken: z.string().optional(),
  csrfToken: z.string().optional(),
  user: UserOut,
});
const tags = ['auth'];

function send(reply: FastifyReply, tokens: Tokens, mode: 'bearer' | 'cookie', secure: boolean) {
  if (mode === 'bearer') return tokens;
  // Portal mode: tokens live in HttpOnly cookies the page's scripts cannot read; the CSRF token is
  // readable on purpose (double submit: unsafe requests echo it in a header).
  const csrfToken = randomBytes(24).toString('base64url');
  const base = { secure, sameSite: 'strict' as const, path: '/' };
  void reply
    .setCookie(COOKIE.access, tokens.accessToken, { ...base, httpOnly: true, maxAge: tokens.expiresIn })
    .setCookie(COOKIE.refresh, tokens.refreshToken, {
      ...base,
      httpOnly: true,
      path: '/api/v1/auth',
      maxAge: 30 * 24 * 3600,
    })
    .setCookie(COOKIE.csrf, csrfToken, { ...base, httpOnly: false });
  return { tokenType: tokens.tokenType, expiresIn: tokens.expiresIn, csrfToken, user: tokens.user };
}

function clearCookies(reply: FastifyReply): void {
  for (const name of Object.values(COOKIE))
    void reply.clearCookie(name, { path: name === COOKIE.refresh ? '/api/v1/auth' : '/' });
}

/**
 * A login step's audit and answer: the entry names the user the step found
 * (or none), whether it succeeded or threw, and the tokens go out as asked.
 */
async function auditedLogin(
  deps: AuthRouteDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  mode: 'bearer' | 'cookie',
  step: (
    source: Awaited<ReturnType<typeof loginSource>>,
    outcome: { userId?: string; tenantId?: string | null },
  ) => ReturnType<typeof login>,
) {
  const outcome: { userId?: string; tenantId?: string | null } = {};
  request.audit = { targetType: 'user' };
  try {
    const source = await loginSource(deps.db, request);
    request.audit = { targetType: 'user', sourceIp: source.ip };
    return send(reply, await step(source, outcome), mode, deps.secureCookies);
  } finally {
    request.audit = {
      ...request.audit,
      actorId: outcome.userId ?? null,
      tenantId: outcome.tenantId ?? null,
      targetType: 'user',
      targetId: outcome.userId,
    };
  }
}

export function authRoutes(app: ApiServer, deps: AuthRouteDeps): void {
  app.post(
    '/api/v1/auth/login',
    {
      config: { public: true, auditAction: 'auth.login' },
      schema: {
        tags,
        summary: 'Log in: a short-lived bearer access token and a refresh token',
        body: LoginBody,
        response: { 200: TokensOut },
      },
    },
    (request, reply) =>
      auditedLogin(deps, request, reply, request.body.mode, (source, outcome) =>
        login(deps.sessions, request.body, source, outcome),
      ),
  );

  app.post(
    '/api/v1/auth/login/second-factor',
    {
      config: { public: true, auditAction: 'auth.login.second_factor' },
      schema: {
        tags,
        summary:
          'Second step of a login: the secondFactorToken a password login answered with (or an enrolled admin’s enrolmentToken) and a TOTP or recovery code',
        body: z.object({
          token: z.string().min(1).max(4096),
          totp: z.string().max(16).optional(),
          recoveryCode: z.string().max(64).optional(),
          mode: z.enum(['bearer', 'cookie']).default('bearer'),
        }),
        response: { 200: TokensOut },
      },
    },
    (request, reply) =>
      auditedLogin(deps, request, reply, request.body.mode, (source, outcome) =>
        loginSecondFactor(deps.sessions, request.body, source, outcome),
      ),
  );

  app.post(
    '/api/v1/auth/refresh',
    {
      config: { public: true, auditAction: 'auth.refresh' },
      schema: {
        tags,
        summary:
          'Trade a refresh token (body, or cookie with the x-csrf-token header) for a new pair; the old one stops working',
        body: z
          .object({
            refreshToken: z.string().max(256).optional(),
            mode: z.enum(['bearer', 'cookie']).default('bearer'),
          })
          .default({ mode: 'bearer' }),
        response: { 200: TokensOut },
      },
    },
    async (request, reply) => {
      const fromBody = request.body.refreshToken;
      const token = fromBody ?? request.cookies[COOKIE.refresh];
      if (!token) throw new DomainError('unauthenticated', 'a refresh token is required');
      // The cookie travels with any request the browser makes, also one another site starts.
      if (fromBody === undefined) requireCsrfHeader(request);
      const tokens = await refresh(deps.sessions, token);
      request.audit = { actorId: tokens.user.id, tenantId: tokens.user.tenantId };
      return send(reply, tokens, request.body.mode, deps.secureCookies);
    },
  );

  app.post(
    '/api/v1/auth/logout',
    {
      config: { auditAction: 'auth.logout' },
      schema: {
        tags,
        summary: 'End this login: its access and refresh tokens stop working',
        response: { 204: z.null() },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      if (!principal.sessionId)
        throw new DomainError('bad_request', 'API keys have no session; revoke the key instead');
      await logout(deps.db, principal.sessionId);
      clearCookies(reply);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/v1/auth/password',
    {
      config: { auditAction: 'auth.password.change' },
      schema: {
        tags,
        summary:
          'Change your own password (the current one is checked); every login of yours ends, this one too',
        body: z.object({
          currentPassword: z.string().min(1).max(1024),
          newPassword: z.string().max(1024),
        }),
        response: { 200: z.object({ sessionsEnded: z.number() }) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      if (principal.kind !== 'user') throw new DomainError('forbidden', 'only users have passwords');
      request.audit = { targetType: 'user', targetId: principal.id };
      const sessionsEnded = await changePassword(deps.sessions, principal.id, request.body, request.ip);
      clearCookies(reply);
      return { sessionsEnded };
    },
  );

  app.get(
    '/api/v1/auth/me',
    {
      schema: {
        tags,
        summary: 'Who the credentials belong to',
        response: {
          200: z.object({
            kind: z.string(),
            id: z.string(),
            role: z.string(),
            tenantId: z.string().nullable(),
          }),
        },
      },
    },
    (request) => {
      const p = principalOf(request);
      return { kind: p.kind, id: p.id, role: p.role, tenantId: p.tenantId };
    },
  );

  /** The caller's own login: only a signed-in user (an API key has no sessions). */
  const ownSession = (request: FastifyRequest) => {
    const principal = principalOf(request);
    if (principal.kind !== 'user' || !principal.sessionId)
      throw new DomainError('forbidden', 'only signed-in users have sessions; an API key is revoked instead');
    return { userId: principal.id, sessionId: principal.sessionId };
  };
  const SessionOut = z.object({
    id: z.string(),
    createdAt: z.string(),
    lastUsedAt: z.string(),
    expiresAt: z.string(),
    current: z.boolean(),
  });

  app.get(
    '/api/v1/auth/sessions',
    {
      schema: {
        tags,
        summary:
          'Your own signed-in sessions: when each began, when it was last used (its token renewed) and which one this is',
        response: { 200: z.object({ sessions: z.array(SessionOut) }) },
      },
    },
    async (request) => {
      const { userId, sessionId } = ownSession(request);
      return { sessions: await listUserSessions(deps.db, userId, sessionId) };
    },
  );

  app.delete(
    '/api/v1/auth/sessions/:sessionId',
    {
      config: { auditAction: 'auth.session.end' },
      schema: {
        tags,
        summary:
          'Sign out one of your own sessions (its id from the list): its tokens stop working at once; another user’s is 404',
        params: z.object({ sessionId: z.string().min(1).max(80) }),
        response: { 204: z.null() },
      },
    },
    async (request, reply) => {
      const { userId } = ownSession(request);
      request.audit = { targetType: 'session', targetId: request.params.sessionId };
      if (!(await endUserSession(deps.db, userId, request.params.sessionId)))
        throw new DomainError('not_found', `session ${request.params.sessionId} not found`);
      return reply.status(204).send(null);
    },
  );

  app.delete(
    '/api/v1/auth/sessions',
    {
      config: { auditAction: 'auth.session.end_others' },
      schema: {
        tags,
        summary: 'Sign out everywhere else: every session of yours ends except this one',
        response: { 200: z.object({ sessionsEnded: z.number() }) },
      },
    },
    async (request) => {
      const { userId, sessionId } = ownSession(request);
      const sessionsEnded = await endOtherSessions(deps.db, userId, sessionId);
      request.audit = { targetType: 'user', targetId: userId, details: { sessionsEnded } };
      return { sessionsEnded };
    },
  );

  app.post(
    '/api/v1/auth/totp/enrol',
    {
      config: { enrolment: true, auditAction: 'auth.totp.enrol' },
      schema: {
        tags,
        summary:
          'Start TOTP enrolment: a secret for an authenticator app (access or enrolment token), also as an inline SVG QR code',
        response: { 200: z.object({ secret: z.string(), otpauthUrl: z.string(), qrSvg: z.string() }) },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      if (principal.kind !== 'user')
        throw new DomainError('forbidden', 'only users enrol two-factor authentication');
      const user = await deps.db
        .selectFrom('users')
        .select(['id', 'email'])
        .where('id', '=', principal.id)
        .executeTakeFirstOrThrow();
      request.audit = { targetType: 'user', targetId: user.id };
      const started = await beginEnrolment(
        { db: deps.db, box: await deps.box(), issuer: deps.totpIssuer },
        user,
      );
      return { ...started, qrSvg: await totpQrSvg(started.otpauthUrl) };
    },
  );

  app.get(
    '/api/v1/auth/totp',
    {
      schema: {
        tags,
        summary:
          'Whether your two-factor authentication is on, since when, and how many unused recovery codes are left',
        response: {
          200: z.object({
            enabled: z.boolean(),
            enabledAt: z.string().nullable(),
            recoveryCodesLeft: z.number(),
          }),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      if (principal.kind !== 'user')
        throw new DomainError('forbidden', 'only users have two-factor authentication');
      return totpStatus(deps.db, principal.id);
    },
  );

  app.post(
    '/api/v1/auth/totp/confirm',
    {
      config: { enrolment: true, auditAction: 'auth.totp.confirm' },
      schema: {
        tags,
        summary: 'Finish TOTP enrolment with a first code; returns single-use recovery codes, shown once',
        body: z.object({ code: z.string().max(16) }),
        response: { 200: z.object({ recoveryCodes: z.array(z.string()) }) },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      if (principal.kind !== 'user')
        throw new DomainError('forbidden', 'only users enrol two-factor authentication');
      request.audit = { targetType: 'user', targetId: principal.id };
      await deps.sessions.limiter.attempt('totp', principal.id, request.ip);
      const recoveryCodes = await confirmEnrolment(
        { db: deps.db, box: await deps.box(), issuer: deps.totpIssuer },
        principal.id,
        request.body.code,
      );
      return { recoveryCodes };
    },
  );

  app.post(
    '/api/v1/auth/totp/disable',
    {
      config: { auditAction: 'auth.totp.disable' },
      schema: {
        tags,
        summary:
          'Turn your own optional TOTP off with a current code or a recovery code (not for platform admins, who must keep it)',
        body: z.object({ code: z.string().max(16).optional(), recoveryCode: z.string().max(64).optional() }),
        response: { 204: z.null() },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      if (principal.kind !== 'user')
        throw new DomainError('forbidden', 'only users have two-factor authentication');
      if (principal.role === 'platform_admin') {
        throw new DomainError(
          'forbidden',
          'platform admins must keep two-factor authentication; another admin can reset it',
        );
      }
      request.audit = { targetType: 'user', targetId: principal.id };
      await deps.sessions.limiter.attempt('totp', principal.id, request.ip);
      await disableTotp(
        { db: deps.db, box: await deps.box(), issuer: deps.totpIssuer },
        principal.id,
        request.body,
      );
      return reply.status(204).send(null);
    },
  );
}
