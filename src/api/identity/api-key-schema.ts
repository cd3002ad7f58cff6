import { z } from 'zod';

/** An API key as the API shows it: never the secret (only its prefix). */
export const ApiKeyOut = z.object({
  id: z.string(),
  tenantId: z.string().nullable(),
  name: z.string(),
  role: z.string(),
  prefix: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
  /** The user who created it; null for the keys the platform makes (a tenant dashboard's). */
  createdBy: z.string().nullable(),
});
