import { isIP } from 'node:net';
import type { FastifyRequest } from 'fastify';
import { DomainError } from '../../core/errors.ts';
import type { Database } from '../../db/database.ts';
import { dashboardKeyTenant } from '../../identity/api-keys.ts';
import type { LoginSource } from '../../identity/sessions.ts';

/**
 * A tenant's dashboard signs its users in by calling the API from the
 * platform's side (one address for every dashboard), so it forwards the
 * browser's address, and proves it is a dashboard with its own key (made for
 * the dashboard, not one a tenant owner can create). The API believes the
 * forwarded address only then, so the attempt limits count real clients; and
 * at a dashboard, only that tenant's users sign in.
 */
export const DASHBOARD_KEY_HEADER = 'x-aiqso-dashboard-key';
export const CLIENT_ADDRESS_HEADER = 'x-aiqso-client-address';

function single(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (Array.isArray(value)) throw new DomainError('bad_request', `send one ${name} header`);
  return value;
}

export async function loginSource(db: Database, request: FastifyRequest): Promise<LoginSource> {
  const key = single(request, DASHBOARD_KEY_HEADER);
  const forwarded = single(request, CLIENT_ADDRESS_HEADER);
  if (key === undefined) {
    if (forwarded !== undefined) {
      throw new DomainError(
        'bad_request',
        `${CLIENT_ADDRESS_HEADER} is accepted only from a tenant dashboard (with ${DASHBOARD_KEY_HEADER})`,
      );
    }
    return { ip: request.ip };
  }
  const tenantId = await dashboardKeyTenant(db, key);
  if (!tenantId) throw new DomainError('unauthenticated', 'the dashboard credential is unknown or revoked');
  if (forwarded === undefined || isIP(forwarded) === 0) {
    throw new DomainError(
      'bad_request',
      `a dashboard must forward the client's address in ${CLIENT_ADDRESS_HEADER} (an IP address)`,
    );
  }
  return { ip: forwarded, tenantId };
}
