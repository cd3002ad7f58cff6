-- Sign-in at the edge in front of tenant services (issue #20). Each route says
-- who signs its users in: `edge` (the edge lets a request through only with a
-- valid edge session of a member of the route's tenant, and passes the user in
-- X-AIQSO-* headers) or `app` (the upstream signs users in itself: the tenant
-- dashboard, or a service whose template says `auth: app`). `public_paths` are
-- paths below the route's prefix that an `edge` route serves without a session
-- (e.g. Cal.com's booking pages), each `/segment[/segment…]`, matched with the
-- paths below it.
--
-- Existing service routes become `edge` (that is the fix); the hosts' root
-- routes, which are the tenant dashboards, sign in themselves.
ALTER TABLE routes
  ADD COLUMN auth text NOT NULL DEFAULT 'edge' CHECK (auth IN ('edge', 'app')),
  ADD COLUMN public_paths text[] NOT NULL DEFAULT '{}'
    CHECK (array_position(public_paths, NULL) IS NULL);
UPDATE routes SET auth = 'app' WHERE path_prefix = '';
