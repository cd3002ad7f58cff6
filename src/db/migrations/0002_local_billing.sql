-- Local billing mode (no Stripe key): the checkout sessions, customers and
-- subscriptions that Stripe would hold, so the same webhook path runs locally.
CREATE TABLE local_billing_objects (
  id         text PRIMARY KEY,
  kind       text NOT NULL CHECK (kind IN ('checkout_session', 'customer', 'subscription')),
  tenant_id  text REFERENCES tenants (id) ON DELETE CASCADE,
  data       jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX local_billing_objects_tenant_idx ON local_billing_objects (tenant_id);
