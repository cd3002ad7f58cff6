/** What the edge answers on a route: the upstream, or a page saying why not. */
export type RouteState = 'active' | 'provisioning' | 'suspended' | 'unavailable';

/**
 * Who signs a route's users in: `edge` (the edge lets a request through only
 * with a valid edge session for the route's tenant; src/edge/auth/) or `app`
 * (the upstream does: the tenant dashboard, a service with its own login).
 */
export type RouteAuth = 'edge' | 'app';
