/** Resource kinds of the tenant lifecycle, as stored in `resources.kind`. */
export const TENANT_KIND = 'tenant';
