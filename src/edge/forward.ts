import http, { type IncomingMessage, type ServerResponse } from 'node:http';

/**
 * The builtin edge's HTTP forwarding: one `http.request` over a keep-alive
 * agent per request, the bodies piped both ways. (WebSocket upgrades go
 * through http-proxy-3.) The profile showed a general-purpose proxy's option
 * handling and per-request pass pipeline as a tenth of the edge's CPU; this
 * does only what the edge needs.
 *
 * Hop-by-hop headers (RFC 9110 §7.6.1), and any the client's Connection
 * header names, are not forwarded in either direction; Node frames the
 * bodies again on each side.
 */
export interface ForwardOptions {
  agent: http.Agent;
  /** Failing to connect for this long is an upstream timeout. */
  connectTimeoutMs: number;
  /** No byte from the upstream for this long is an upstream timeout. */
  idleTimeoutMs: number;
}

export type ForwardError = Error & { code?: string };

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Request headers for the upstream, from the (already rewritten) incoming ones. */
function upstreamHeaders(req: IncomingMessage): http.OutgoingHttpHeaders {
  const connection = req.headers.connection;
  const named =
    connection && connection !== 'keep-alive' && connection !== 'close'
      ? new Set(connection.toLowerCase().split(/\s*,\s*/))
      : undefined;
  const out: http.OutgoingHttpHeaders = {};
  for (const name in req.headers) {
    if (HOP_BY_HOP.has(name) || named?.has(name)) continue;
    out[name] = req.headers[name];
  }
  // Node frames the body again; a chunked request keeps being chunked.
  if (req.headers['transfer-encoding'] !== undefined) out['transfer-encoding'] = 'chunked';
  return out;
}

/** Response headers for the client, as [name, value, name, value…] in the upstream's case and order. */
function clientHeaders(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (HOP_BY_HOP.has(raw[i]!.toLowerCase())) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  target: { host: string; port: number; path: string },
  options: ForwardOptions,
  onError: (err: ForwardError) => void,
): void {
  const upstream = http.request({
    host: target.host,
    port: target.port,
    method: req.method,
    path: target.path,
    headers: upstreamHeaders(req),
    agent: options.agent,
  });
  let failed = false;
  const fail = (err: ForwardError) => {
    if (failed) return;
    failed = true;
    upstream.destroy();
    onError(err);
  };
  upstream.on('socket', (socket) => {
    if (!socket.connecting) return;
    const timer = setTimeout(
      () => fail(Object.assign(new Error('upstream connect timeout'), { code: 'ETIMEDOUT' })),
      options.connectTimeoutMs,
    );
    socket.once('connect', () => clearTimeout(timer));
    upstream.once('close', () => clearTimeout(timer));
  });
  upstream.setTimeout(options.idleTimeoutMs, () =>
    fail(Object.assign(new Error('upstream timeout'), { code: 'ETIMEDOUT' })),
  );
  upstream.on('error', fail);
  upstream.on('response', (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.statusMessage, clientHeaders(answer.rawHeaders));
    answer.pipe(res);
    answer.on('error', () => res.destroy());
  });
  // A client that goes away mid-answer releases the upstream connection.
  res.once('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  // Most requests have no body: end the upstream request at once rather than wiring a pipe.
  if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) {
    upstream.end();
  } else {
    req.pipe(upstream);
  }
}
