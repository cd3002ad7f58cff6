import { DomainError } from '../core/errors.ts';
import type { Role } from '../core/identity.ts';

/** Who is calling: a logged-in user (access token) or an API key, with the one tenant they belong to. */
export interface Principal {
  kind: 'user' | 'api_key';
  /** The user id, or the API key id. */
  id: string;
  role: Role;
  /** null for the platform (admins, platform API keys). */
  tenantId: string | null;
  sessionId?: string;
}

const RANK: Record<Role, number> = { tenant_member: 1, tenant_owner: 2, platform_admin: 3 };

/** Platform admins pass every role check; tenant roles are ordered member < owner. */
export function hasRole(principal: Principal, min: Role): boolean {
  return RANK[principal.role] >= RANK[min];
}

export function requireRole(principal: Principal, min: Role): void {
  if (!hasRole(principal, min)) {
    throw new DomainError('forbidden', `this needs the ${min.replace('_', ' ')} role`);
  }
}

export const isPlatformAdmin = (p: Principal) => p.role === 'platform_admin' && p.tenantId === null;
