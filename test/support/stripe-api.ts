import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { localId, stripeEvent, stripeObject } from '../../src/billing/stripe-objects.ts';

/**
 * A local stand-in for the part of Stripe's API the platform calls to report
 * usage, `POST /v1/billing/meter_events`, enforcing its published contract
 * rather than accepting anything: a secret key, form encoding, `event_name`
 * (≤ 100 characters), `payload[stripe_customer_id]` naming a customer it
 * knows, `payload[value]` a number, `identifier` (≤ 100, unique for 24 hours),
 * `timestamp` within the past 35 days or 5 minutes ahead, and idempotency
 * keys (the same key with the same parameters replays the first answer; with
 * other parameters it is refused).
 *
 * Subscriptions too, for plan changes: `GET /v1/subscriptions/{id}` and
 * `POST /v1/subscriptions/{id}` (the parameters the platform may send:
 * `items[n][id]` naming an item of that subscription, `items[n][price]` a
 * price it knows, `metadata[…]`, `proration_behavior` one of Stripe's three;
 * anything else is an unknown parameter; a canceled subscription may change
 * only its metadata). Objects have the shape of Stripe's published fixtures.
 * Each update makes the `customer.subscription.updated` event Stripe would
 * send (with `previous_attributes`), kept in `sent` for the test to deliver.
 *
 * Customer Portal sessions, for payment methods and invoices:
 * `POST /v1/billing_portal/sessions` with `customer` (required, a customer it
 * knows), `return_url` (a valid http(s) URL; Stripe needs it when the portal
 * configuration has no default return URL, and this account's has none),
 * optionally `configuration` (a portal configuration it knows), `locale` and
 * `expand[]`; anything else is an unknown parameter. Until a portal
 * configuration is saved (`portalConfigured = false`), Stripe refuses every
 * session, as in a new account. The answer is a `billing_portal.session`
 * shaped like Stripe's fixture, its `url` a `https://billing.stripe.com/p/session/…`
 * address; each is kept in `portalSessions`.
 */
export interface RecordedMeterEvent {
  event_name: string;
  identifier: string;
  timestamp: number;
  payload: { stripe_customer_id: string; value: string };
}

export interface StripeApiStandIn {
  endpoint: { host: string; port: number; protocol: 'http' };
  events: RecordedMeterEvent[];
  customers: Set<string>;
  /** Prices it knows. */
  prices: Set<string>;
  subscriptions: Map<string, Record<string, unknown>>;
  /** A subscription of `customer` to one `price`, active. */
  addSubscription(
    customer: string,
    price: string,
    metadata?: Record<string, string>,
  ): Record<string, unknown>;
  /** The webhook events Stripe would send, oldest first. */
  sent: Record<string, unknown>[];
  /** Every request it answered: method, path and form body. */
  requests: { method: string; path: string; form: URLSearchParams; idempotencyKey?: string }[];
  /** The Customer Portal sessions it created, oldest first. */
  portalSessions: Record<string, unknown>[];
  /** Whether the account has saved its Customer Portal settings (a default configuration). */
  portalConfigured: boolean;
  /** Answer the next `n` requests with a 500, as an outage would. */
  failNext(n: number): void;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return text;
}

const PRORATIONS = new Set(['create_prorations', 'none', 'always_invoice']);
const PORTAL_CONFIGURATION = 'bpc_1StandInDefaultPortal';
const PORTAL_PARAM = /^(customer|return_url|configuration|locale|expand\[\d+\])$/;

/** A URL as Stripe accepts one for `return_url`: absolute, http or https. */
function validUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.hostname !== '';
  } catch {
    return false;
  }
}
const ITEM_PARAM = /^items\[(\d+)\]\[(id|price|quantity|deleted)\]$/;

export async function startStripeApi(
  customers: string[],
  options: { prices?: string[] } = {},
): Promise<StripeApiStandIn> {
  const events: RecordedMeterEvent[] = [];
  const known = new Set(customers);
  const prices = new Set(options.prices ?? []);
  const subscriptions = new Map<string, Record<string, unknown>>();
  const sent: Record<string, unknown>[] = [];
  const requests: StripeApiStandIn['requests'] = [];
  const fixtureItem =
    (stripeObject('subscription', {}).items as { data: Record<string, unknown>[] }).data[0] ?? {};
  const priceObject = (id: string) => ({ ...(fixtureItem.price as object), id });

  function addSubscription(customer: string, price: string, metadata: Record<string, string> = {}) {
    const id = localId('sub');
    const now = Math.floor(Date.now() / 1000);
    const sub = stripeObject('subscription', {
      id,
      customer,
      status: 'active',
      cancel_at_period_end: false,
      cancel_at: null,
      canceled_at: null,
      ended_at: null,
      metadata,
      items: {
        object: 'list',
        has_more: false,
        url: `/v1/subscription_items?subscription=${id}`,
        data: [
          {
            ...structuredClone(fixtureItem),
            id: localId('si'),
            subscription: id,
            price: priceObject(price),
            quantity: 1,
            current_period_start: now,
            current_period_end: now + 30 * 86_400,
          },
        ],
      },
    });
    subscriptions.set(id, sub);
    return sub;
  }

  /** `POST /v1/subscriptions/{id}`: an answer, or a refusal as Stripe words it. */
  function updateSubscription(id: string, form: URLSearchParams): { status: number; body: object } {
    const refuse = (message: string, param?: string, status = 400) => ({
      status,
      body: {
        error: {
          type: 'invalid_request_error',
          message,
          ...(param ? { param } : {}),
          ...(status === 404 ? { code: 'resource_missing' } : {}),
        },
      },
    });
    const sub = subscriptions.get(id);
    if (!sub) return refuse(`No such subscription: '${id}'`, 'id', 404);
    const items = new Map<number, Record<string, string>>();
    const metadata: Record<string, string> = {};
    for (const [key, value] of form) {
      const item = ITEM_PARAM.exec(key);
      const meta = /^metadata\[([^\]]{1,40})\]$/.exec(key);
      if (item) {
        const n = Number(item[1]);
        items.set(n, { ...items.get(n), [item[2]!]: value });
      } else if (meta) metadata[meta[1]!] = value;
      else if (key === 'proration_behavior') {
        if (!PRORATIONS.has(value))
          return refuse(
            `Invalid proration_behavior: must be one of create_prorations, none, or always_invoice`,
            'proration_behavior',
          );
      } else return refuse(`Received unknown parameter: ${key}`, key);
    }
    if (sub.status === 'canceled' && items.size > 0)
      return refuse(
        'A canceled subscription can only update its cancellation_details, default_payment_method and metadata.',
      );
    const current = sub.items as { data: Record<string, unknown>[] };
    const data = current.data.map((i) => ({ ...i }));
    for (const [n, change] of items) {
      const param = `items[${n}]`;
      if (!change.id) {
        if (!change.price) return refuse('Missing required param: price.', `${param}[price]`);
        return refuse('This plan change would add a second item; the platform never does that', param);
      }
      const at = data.findIndex((i) => i.id === change.id);
      if (at < 0)
        return refuse(`Invalid subscription item: ${change.id} is not an item of ${id}`, `${param}[id]`);
      if (change.price !== undefined) {
        if (!prices.has(change.price)) return refuse(`No such price: '${change.price}'`, `${param}[price]`);
        data[at] = { ...data[at], price: priceObject(change.price) };
      }
      if (change.quantity !== undefined) {
        if (!/^\d+$/.test(change.quantity))
          return refuse('Invalid integer: ' + change.quantity, `${param}[quantity]`);
        data[at] = { ...data[at], quantity: Number(change.quantity) };
      }
    }
    const previous: Record<string, unknown> = {};
    if (items.size > 0) previous.items = structuredClone(sub.items);
    if (Object.keys(metadata).length > 0) previous.metadata = structuredClone(sub.metadata);
    const updated = {
      ...sub,
      items: { ...(sub.items as object), data },
      metadata: { ...(sub.metadata as object), ...metadata },
    };
    subscriptions.set(id, updated);
    const event = stripeEvent('customer.subscription.updated', structuredClone(updated));
    sent.push({ ...event, data: { object: structuredClone(updated), previous_attributes: previous } });
    return { status: 200, body: updated };
  }

  const portalSessions: Record<string, unknown>[] = [];
  const portal = { configured: true };

  /** `POST /v1/billing_portal/sessions`: a session, or a refusal as Stripe words it. */
  function createPortalSession(form: URLSearchParams): { status: number; body: object } {
    const refuse = (message: string, param?: string, code?: string) => ({
      status: 400,
      body: {
        error: {
          type: 'invalid_request_error',
          message,
          ...(param ? { param } : {}),
          ...(code ? { code } : {}),
        },
      },
    });
    for (const key of form.keys()) {
      if (!PORTAL_PARAM.test(key)) return refuse(`Received unknown parameter: ${key}`, key);
    }
    const customer = form.get('customer');
    if (!customer) return refuse('Missing required param: customer.', 'customer', 'parameter_missing');
    if (!known.has(customer))
      return refuse(`No such customer: '${customer}'`, 'customer', 'resource_missing');
    const returnUrl = form.get('return_url');
    if (returnUrl === null)
      return refuse('Missing required param: return_url.', 'return_url', 'parameter_missing');
    if (!validUrl(returnUrl)) return refuse('Not a valid URL', 'return_url', 'url_invalid');
    const configuration = form.get('configuration');
    if (configuration !== null && configuration !== PORTAL_CONFIGURATION)
      return refuse(`No such configuration: '${configuration}'`, 'configuration', 'resource_missing');
    const locale = form.get('locale');
    if (locale !== null && !/^(auto|[a-z]{2}(-[A-Z]{2})?)$/.test(locale))
      return refuse(`Invalid locale: ${locale}`, 'locale');
    if (!portal.configured)
      return refuse(
        'You can’t create a portal session in test mode until you save your customer portal settings in test mode at https://dashboard.stripe.com/test/settings/billing/portal.',
      );
    const id = `bps_${randomBytes(12).toString('hex')}`;
    const session = stripeObject('billing_portal.session', {
      id,
      configuration: configuration ?? PORTAL_CONFIGURATION,
      customer,
      flow: null,
      locale,
      return_url: returnUrl,
      url: `https://billing.stripe.com/p/session/test_${randomBytes(24).toString('base64url')}`,
    });
    portalSessions.push(session);
    return { status: 200, body: session };
  }

  const idempotent = new Map<string, { hash: string; status: number; body: string }>();
  let failures = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const send = (status: number, payload: object, replayed = false) => {
      const text = JSON.stringify(payload);
      res.writeHead(status, {
        'content-type': 'application/json',
        'request-id': `req_${createHash('sha256').update(text).digest('hex').slice(0, 14)}`,
        ...(replayed ? { 'idempotent-replayed': 'true' } : {}),
      });
      res.end(text);
      return { status, body: text };
    };
    const invalid = (message: string, param?: string) =>
      send(400, { error: { type: 'invalid_request_error', message, ...(param ? { param } : {}) } });
    if (failures > 0) {
      failures--;
      return send(500, { error: { type: 'api_error', message: 'An unknown error occurred' } });
    }
    if (!/^Bearer sk_(test|live)_\w+$/.test(req.headers.authorization ?? ''))
      return send(401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } });
    const path = (req.url ?? '/').split('?')[0]!;
    const subscription = /^\/v1\/subscriptions\/([^/]+)$/.exec(path);
    if (req.method === 'GET' && subscription) {
      requests.push({ method: 'GET', path, form: new URLSearchParams() });
      const sub = subscriptions.get(decodeURIComponent(subscription[1]!));
      if (!sub)
        return send(404, {
          error: {
            type: 'invalid_request_error',
            code: 'resource_missing',
            param: 'id',
            message: `No such subscription: '${subscription[1]}'`,
          },
        });
      return send(200, sub);
    }
    const portalPath = path === '/v1/billing_portal/sessions';
    const handled =
      req.method === 'POST' && (path === '/v1/billing/meter_events' || subscription || portalPath);
    if (!handled)
      return send(404, { error: { type: 'invalid_request_error', message: `Unrecognized request URL` } });
    if (!req.headers['content-type']?.startsWith('application/x-www-form-urlencoded'))
      return invalid('Invalid request: expected a form-encoded body');
    const raw = await body(req);
    const key = req.headers['idempotency-key'];
    requests.push({
      method: 'POST',
      path,
      form: new URLSearchParams(raw),
      ...(typeof key === 'string' ? { idempotencyKey: key } : {}),
    });
    const hash = createHash('sha256').update(raw).digest('hex');
    if (typeof key === 'string') {
      const seen = idempotent.get(key);
      if (seen && seen.hash !== hash)
        return send(400, {
          error: {
            type: 'idempotency_error',
            message: `Keys for idempotent requests can only be used with the same parameters they were first used with.`,
          },
        });
      if (seen) {
        res.writeHead(seen.status, { 'content-type': 'application/json', 'idempotent-replayed': 'true' });
        return res.end(seen.body);
      }
    }
    const form = new URLSearchParams(raw);
    const remember = (answer: { status: number; body: string }) => {
      if (typeof key === 'string') idempotent.set(key, { hash, ...answer });
    };
    if (subscription) {
      const answer = updateSubscription(decodeURIComponent(subscription[1]!), form);
      return remember(send(answer.status, answer.body));
    }
    if (portalPath) {
      const answer = createPortalSession(form);
      return remember(send(answer.status, answer.body));
    }
    const eventName = form.get('event_name');
    if (!eventName) return remember(invalid('Missing required param: event_name.', 'event_name'));
    if (eventName.length > 100) return remember(invalid('event_name is too long (max 100)', 'event_name'));
    const customer = form.get('payload[stripe_customer_id]');
    const value = form.get('payload[value]');
    if (!customer)
      return remember(invalid('Missing required param: payload[stripe_customer_id].', 'payload'));
    if (!known.has(customer)) return remember(invalid(`No such customer: '${customer}'`, 'payload'));
    if (value === null || value === '' || !Number.isFinite(Number(value)))
      return remember(invalid('payload[value] must be a number', 'payload'));
    const identifier = form.get('identifier') ?? `gen_${hash.slice(0, 16)}`;
    if (identifier.length > 100) return remember(invalid('identifier is too long (max 100)', 'identifier'));
    const now = Math.floor(Date.now() / 1000);
    const timestamp = form.has('timestamp') ? Number(form.get('timestamp')) : now;
    if (!Number.isInteger(timestamp) || timestamp < now - 35 * 86_400 || timestamp > now + 300)
      return remember(
        invalid(
          'timestamp must be within the past 35 calendar days or up to 5 minutes in the future',
          'timestamp',
        ),
      );
    if (events.some((e) => e.identifier === identifier))
      return remember(invalid(`An event with identifier ${identifier} already exists.`, 'identifier'));
    const event: RecordedMeterEvent = {
      event_name: eventName,
      identifier,
      timestamp,
      payload: { stripe_customer_id: customer, value },
    };
    events.push(event);
    remember(send(200, { object: 'billing.meter_event', created: now, livemode: false, ...event }));
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: { host: '127.0.0.1', port: (server.address() as AddressInfo).port, protocol: 'http' },
    events,
    customers: known,
    prices,
    subscriptions,
    addSubscription,
    sent,
    requests,
    portalSessions,
    get portalConfigured() {
      return portal.configured;
    },
    set portalConfigured(value: boolean) {
      portal.configured = value;
    },
    failNext(n) {
      failures = n;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
