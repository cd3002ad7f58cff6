-- Local billing mode's customer portal (issue #25): a portal session stands in for Stripe's
-- billing_portal.session. Its link carries a random secret of which only the SHA-256 is kept here,
-- and it opens the one tenant's page until it expires.
ALTER TABLE local_billing_objects DROP CONSTRAINT local_billing_objects_kind_check;
ALTER TABLE local_billing_objects ADD CONSTRAINT local_billing_objects_kind_check
  CHECK (kind IN ('checkout_session', 'customer', 'subscription', 'billing_portal_session'));
CREATE UNIQUE INDEX local_billing_portal_secret_idx ON local_billing_objects ((data->>'secret_sha256'))
  WHERE kind = 'billing_portal_session';
