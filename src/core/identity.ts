/** Who a user or API key acts as: the platform's operator, or an owner or member of one tenant. */
export const ROLES = ['platform_admin', 'tenant_owner', 'tenant_member'] as const;
export type Role = (typeof ROLES)[number];

/** What an API key is for: an integration a user made, or a tenant dashboard's own key. */
export const API_KEY_PURPOSES = ['integration', 'dashboard'] as const;
export type ApiKeyPurpose = (typeof API_KEY_PURPOSES)[number];
