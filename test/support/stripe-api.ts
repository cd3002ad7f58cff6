import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A local stand-in for the part of Stripe's API the platform calls to report
 * usage, `POST /v1/billing/meter_events`, enforcing its published contract
 * rather than accepting anything: a secret key, form encoding, `event_name`
 * (≤ 100 characters), `payload[stripe_customer_id]` naming a customer it
 * knows, `payload[value]` a number, `identifier` (≤ 100, unique for 24 hours),
 * `timestamp` within the past 35 days or 5 minutes ahead, and idempotency
 * keys (the same key with the same parameters replays the first answer; with
 * other parameters it is refused).
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
  /** Answer the next `n` requests with a 500, as an outage would. */
  failNext(n: number): void;
  close(): Promise<void>;
}

async function body(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += String(chunk);
  return text;
}

export async function startStripeApi(customers: string[]): Promise<StripeApiStandIn> {
  const events: RecordedMeterEvent[] = [];
  const known = new Set(customers);
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
    if (req.method !== 'POST' || req.url !== '/v1/billing/meter_events')
      return send(404, { error: { type: 'invalid_request_error', message: `Unrecognized request URL` } });
    if (!req.headers['content-type']?.startsWith('application/x-www-form-urlencoded'))
      return invalid('Invalid request: expected a form-encoded body');
    const raw = await body(req);
    const key = req.headers['idempotency-key'];
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
    failNext(n) {
      failures = n;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
