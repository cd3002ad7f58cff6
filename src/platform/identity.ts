import type { ApiServer } from '../api/server.ts';
import type { Config } from '../config/load.ts';
import type { Database } from '../db/database.ts';
import type { Logger } from '../observability/logger.ts';
import { createAuthenticator } from '../api/identity/authenticate.ts';
import { installIdentityHooks } from '../api/identity/hooks.ts';
import { authRoutes } from '../api/identity/routes-auth.ts';
import { recoveryRoutes } from '../api/identity/routes-recovery.ts';
import { createRecoveryLimiter } from '../identity/account-recovery.ts';
import { auditRoutes } from '../api/identity/routes-audit.ts';
import { platformRoutes } from '../api/identity/routes-platform.ts';
import { tenantRoutes } from '../api/identity/routes-tenants.ts';
import { teamRoutes } from '../api/identity/routes-team.ts';
import { loadSecretBox } from '../identity/master-key.ts';
import { createAttemptLimiter, type AttemptLimits } from '../identity/rate-limit.ts';
import type { SecretBox } from '../identity/secrets.ts';
import { createTenantAccess } from '../identity/tenant-access.ts';
import { createTokenIssuer } from '../identity/tokens.ts';

export interface IdentityOptions {
  limits?: Partial<AttemptLimits>;
  /** Prefix of the rate-limit keys in Redis; default `aiqso`. */
  rateLimitNamespace?: string;
  /** Password reset and find-my-workspace limits (requests per address an hour, mails per recipient an hour). */
  recoveryLimits?: { perIp?: number; perAddress?: number };
}

/**
 * Identity's wiring: the master-key box (loaded on first use, so processes
 * that never touch a secret never create `<data>/master.key`), the token
 * issuer, the attempt limiter, the authentication and audit hooks, and the
 * routes.
 */
export async function installIdentity(
  api: ApiServer,
  deps: { config: Config; db: Database; log: Logger },
  options: IdentityOptions = {},
) {
  const { config, db, log } = deps;
  let boxPromise: Promise<SecretBox> | undefined;
  const box = () => (boxPromise ??= loadSecretBox({ configured: config.masterKey, dataDir: config.dataDir }));
  const tokens = createTokenIssuer({
    db,
    box,
    issuer: config.publicUrl,
    audience: `${config.publicUrl}/api`,
  });
  // ioredis loads only when Redis is configured.
  const redis = config.redisUrl
    ? new (await import('ioredis')).Redis(config.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: false })
    : undefined;
  redis?.on('error', (err) => log.warn({ err }, 'redis error (rate limits)'));
  api.addHook('onClose', async () => {
    await redis?.quit().catch(() => undefined);
  });
  const limiter = createAttemptLimiter({
    redis,
    limits: options.limits,
    namespace: options.rateLimitNamespace,
  });
  const totpIssuer = `AIQSO ${config.baseDomain}`;
  await installIdentityHooks(api, { authenticate: createAuthenticator({ db, tokens }), db, log });
  authRoutes(api, {
    sessions: { db, tokens, box, limiter, totpIssuer },
    db,
    box,
    totpIssuer,
    secureCookies: config.publicUrl.startsWith('https:'),
  });
  recoveryRoutes(api, {
    db,
    publicUrl: config.publicUrl,
    baseDomain: config.baseDomain,
    limiter: createRecoveryLimiter({
      redis,
      namespace: options.rateLimitNamespace,
      ...options.recoveryLimits,
    }),
  });
  tenantRoutes(api, { db, access: createTenantAccess(db) });
  teamRoutes(api, { db, access: createTenantAccess(db), publicUrl: config.publicUrl });
  platformRoutes(api, { db });
  auditRoutes(api, { db });
  return { tokens, box, limiter };
}
