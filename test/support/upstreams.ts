import { createHash } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Plain Node upstreams for edge tests: each answers every request with JSON
 * naming itself and echoing what it received, and echoes WebSocket text
 * frames prefixed with its name.
 */
export interface EchoUpstream {
  name: string;
  port: number;
  /** Every request it received (WebSocket upgrades too), oldest first. */
  received: Echo[];
  close(): Promise<void>;
}

export interface Echo {
  name: string;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function wsAccept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

function frame(text: string): Buffer {
  const payload = Buffer.from(text);
  if (payload.length >= 126) throw new Error('test frames are short');
  return Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
}

/** Minimal RFC 6455 echo for short, masked client text frames. */
function echoWebSocket(name: string, req: http.IncomingMessage, socket: Duplex) {
  const key = req.headers['sec-websocket-key'];
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${wsAccept(String(key))}\r\n\r\n`,
  );
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 6) {
      const opcode = buf[0]! & 0x0f;
      const len = buf[1]! & 0x7f;
      if (len >= 126 || buf.length < 6 + len) return;
      const mask = buf.subarray(2, 6);
      const data = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]!));
      buf = buf.subarray(6 + len);
      if (opcode === 0x8) return void socket.end(Buffer.from([0x88, 0]));
      if (opcode === 0x1) socket.write(frame(`${name}:${data.toString()}`));
    }
  });
  socket.on('error', () => socket.destroy());
}

export async function startEchoUpstream(name: string): Promise<EchoUpstream> {
  const received: Echo[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const echo: Echo = { name, method: req.method!, url: req.url!, headers: req.headers, body };
      received.push(echo);
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
      res.end(JSON.stringify(echo));
    });
  });
  const upgraded = new Set<Duplex>();
  server.on('upgrade', (req, socket) => {
    received.push({ name, method: req.method!, url: req.url!, headers: req.headers, body: '' });
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    echoWebSocket(name, req, socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    name,
    port: (server.address() as AddressInfo).port,
    received,
    close: () =>
      new Promise<void>((r) => {
        for (const s of upgraded) s.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Send bytes exactly as given (no client-side normalisation) and read the whole response. */
export function rawRequest(port: number, text: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('connect', () => socket.write(text));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const raw = Buffer.concat(chunks);
      const split = raw.indexOf('\r\n\r\n');
      const head = raw
        .subarray(0, split < 0 ? raw.length : split)
        .toString()
        .split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      const body = split < 0 ? Buffer.alloc(0) : raw.subarray(split + 4);
      const text = (headers['transfer-encoding'] === 'chunked' ? dechunk(body) : body).toString();
      resolve({ status, headers, body: text });
    });
  });
}

function dechunk(body: Buffer): Buffer {
  const out: Buffer[] = [];
  let rest = body;
  for (;;) {
    const nl = rest.indexOf('\r\n');
    const size = parseInt(rest.subarray(0, nl).toString(), 16);
    if (!size) return Buffer.concat(out);
    out.push(rest.subarray(nl + 2, nl + 2 + size));
    rest = rest.subarray(nl + 2 + size + 2);
  }
}

/**
 * GET with the given target and Host as a client that takes the first piece of
 * the answer, then stops reading for `pauseMs`, then reads the rest: how many
 * bytes came in all (head included).
 */
export function readSlowly(port: number, target: string, host: string, pauseMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let bytes = 0;
    socket.on('error', reject);
    socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    socket.once('data', (first: Buffer) => {
      bytes += first.length;
      socket.pause();
      setTimeout(() => socket.resume(), pauseMs);
      socket.on('data', (c: Buffer) => (bytes += c.length));
    });
    socket.on('end', () => resolve(bytes));
  });
}

/** GET with the given target and Host, connection closed after. */
export function rawGet(port: number, target: string, host: string, extra = ''): Promise<RawResponse> {
  return rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`);
}

export async function eventually<T>(fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * A WebSocket round trip over a raw socket (browsers and undici do not let a
 * caller choose the Host header): handshake, one masked text frame, one reply.
 */
export function wsRoundTrip(
  port: number,
  host: string,
  path: string,
  message: string,
  extraHeaders = '',
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const key = Buffer.from('aiqso-edge-test!').toString('base64');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    socket.on('connect', () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`,
      ),
    );
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed before a reply: ${buf.toString()}`)));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        if (!head.startsWith('HTTP/1.1 101') || !head.includes(wsAccept(key))) {
          socket.destroy();
          return reject(new Error(`no upgrade: ${head.split('\r\n')[0]}`));
        }
        upgraded = true;
        buf = buf.subarray(end + 4);
        const payload = Buffer.from(message);
        const mask = Buffer.from([1, 2, 3, 4]);
        socket.write(
          Buffer.concat([
            Buffer.from([0x81, 0x80 | payload.length]),
            mask,
            payload.map((b, i) => b ^ mask[i % 4]!),
          ]),
        );
      }
      if (buf.length >= 2 && buf.length >= 2 + (buf[1]! & 0x7f)) {
        const text = buf.subarray(2, 2 + (buf[1]! & 0x7f)).toString();
        socket.removeAllListeners('close');
        socket.destroy();
        resolve(text);
      }
    });
  });
}
