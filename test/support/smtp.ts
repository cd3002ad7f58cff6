import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  from: string;
  to: string[];
  raw: string;
}

export interface SmtpSink {
  port: number;
  /** Every message accepted, in order of arrival. */
  received: ReceivedMail[];
  /** Messages to `address`, waiting up to `waitMs` for at least `atLeast` of them. */
  to(address: string, options?: { atLeast?: number; waitMs?: number }): Promise<ReceivedMail[]>;
  close(): Promise<void>;
}

/** A real SMTP server (smtp-server) on a loopback port that keeps what it receives. */
export async function startSmtpSink(
  options: { refuse?: (address: string) => boolean } = {},
): Promise<SmtpSink> {
  const received: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    onRcptTo(address, _session, callback) {
      if (options.refuse?.(address.address)) return callback(new Error('mailbox unavailable'));
      callback();
    },
    onData(stream, session, callback) {
      let raw = '';
      stream.on('data', (chunk: Buffer) => (raw += chunk.toString()));
      stream.on('end', () => {
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw,
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const mine = (address: string) => received.filter((m) => m.to.includes(address));
  return {
    port: (server.server.address() as AddressInfo).port,
    received,
    async to(address, { atLeast = 1, waitMs = 30_000 } = {}) {
      const deadline = Date.now() + waitMs;
      while (mine(address).length < atLeast && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      return mine(address);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
