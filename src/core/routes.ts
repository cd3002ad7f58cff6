/** What the edge answers on a route: the upstream, or a page saying why not. */
export const ROUTE_STATES = ['active', 'provisioning', 'suspended', 'unavailable'] as const;
export type RouteState = (typeof ROUTE_STATES)[number];

/**
 * Who signs a route's users in: `edge` (the edge lets a request through only
 * with a valid edge session for the route's tenant; src/edge/auth/) or `app`
 * (the upstream does: the tenant dashboard, a service with its own login).
 */
export const ROUTE_AUTHS = ['edge', 'app'] as const;
export type RouteAuth = (typeof ROUTE_AUTHS)[number];
