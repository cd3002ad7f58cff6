import { request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

/**
 * Helpers for end-to-end tests against a real `aiqso up`: a real SMTP server
 * that keeps what it receives, and requests through the platform's edge with
 * a tenant's Host header.
 */
export interface Mailbox {
  port: number;
  mail: { to: string[]; raw: string }[];
  /** Messages to `address` once at least `count` arrived (or the time ran out). */
  waitFor(address: string, count?: number, timeoutMs?: number): Promise<{ to: string[]; raw: string }[]>;
  close(): Promise<void>;
}

export async function startMailbox(): Promise<Mailbox> {
  const mail: { to: string[]; raw: string }[] = [];
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onData(stream, session, callback) {
      let raw = '';
      stream.on('data', (c: Buffer) => (raw += c.toString()));
      stream.on('end', () => {
        mail.push({ to: session.envelope.rcptTo.map((r) => r.address), raw });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  const to = (address: string) => mail.filter((m) => m.to.includes(address));
  return {
    port: (smtp.server.address() as AddressInfo).port,
    mail,
    async waitFor(address, count = 1, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (to(address).length < count && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200));
      return to(address);
    },
    close: () => new Promise<void>((resolve) => smtp.close(() => resolve())),
  };
}

/** GET through the platform's edge with a tenant's Host header. */
export async function getAs(
  host: string,
  port: number,
  urlPath = '/',
): Promise<{ status: number; body: string }> {
  const { status, body } = await sendAs(host, port, 'GET', urlPath);
  return { status, body };
}

/** Any request through the platform's edge with a tenant's Host header. */
export function sendAs(
  host: string,
  port: number,
  method: string,
  urlPath: string,
  options: { headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path: urlPath, headers: { ...options.headers, host } },
      (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Poll `probe` until `done` holds for its value or the time runs out; returns the last value. */
export async function pollUntil<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = await probe();
  while (!done(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, everyMs));
    value = await probe();
  }
  return value;
}
