/** Resource kinds of the tenant lifecycle, as stored in `resources.kind`. */
export const TENANT_KIND = 'tenant';
/** A tenant's subscription to a catalog service: its container, database, route and health. */
export const TENANT_SERVICE_KIND = 'tenant_service';
