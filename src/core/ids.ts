import { monotonicFactory } from 'ulid';

/**
 * Prefixed, time-sortable ids: `ten_01jd…`. The prefix names the entity so an
 * id in a log line or URL says what it points at; the ULID body sorts by
 * creation time so listings and indexes stay ordered without a second column.
 */
export const ID_PREFIXES = {
  tenant: 'ten',
  user: 'usr',
  service: 'svc',
  subscription: 'sub',
  tenantService: 'tsv',
  host: 'hst',
  route: 'rte',
  backup: 'bkp',
  backupRepository: 'brp',
  restore: 'rst',
  verification: 'bvf',
  export: 'exp',
  email: 'eml',
  apiKey: 'key',
  session: 'ses',
  event: 'evt',
  incident: 'inc',
  webhookEndpoint: 'whe',
  webhookEvent: 'wev',
  invitation: 'inv',
} as const;

export type IdKind = keyof typeof ID_PREFIXES;

const ulid = monotonicFactory();

export function newId(kind: IdKind): string {
  return `${ID_PREFIXES[kind]}_${ulid().toLowerCase()}`;
}

const ID_BODY = /^[0-9a-hjkmnp-tv-z]{26}$/;

export function isId(kind: IdKind, value: string): boolean {
  const prefix = `${ID_PREFIXES[kind]}_`;
  return value.startsWith(prefix) && ID_BODY.test(value.slice(prefix.length));
}
