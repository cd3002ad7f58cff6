import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { EdgeHandler } from './handler.ts';
import type { CertificateStore } from './tls.ts';

export interface EdgeListeners {
  httpPort: number;
  httpsPort?: number;
  close(): Promise<void>;
}

export interface ListenOptions {
  bind: string;
  httpPort: number;
  https?: { port: number; certificates: CertificateStore };
}

function configure(server: http.Server) {
  // Slow clients cannot hold a connection open for ever, nor send headers forever.
  server.headersTimeout = 20_000;
  server.requestTimeout = 120_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 200;
}

function listen(server: http.Server, port: number, bind: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, bind, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Stop accepting, close idle connections, give requests in flight 2 s, then cut what is left. */
function closeServer(server: http.Server, upgraded: Set<Duplex>): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
    // Upgraded (WebSocket) connections are long-lived and no longer tracked by the server.
    for (const s of upgraded) s.destroy();
    setTimeout(() => server.closeAllConnections(), 2000).unref();
  });
}

/** The edge's listeners: plain HTTP, and HTTPS with SNI when certificates are given. */
export async function listenEdge(handler: EdgeHandler, options: ListenOptions): Promise<EdgeListeners> {
  const servers: http.Server[] = [];
  const upgraded = new Set<Duplex>();
  const track = (s: http.Server) => {
    s.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => handler.request(req, res));
    s.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      upgraded.add(socket);
      socket.once('close', () => upgraded.delete(socket));
      handler.upgrade(req, socket, head);
    });
    s.on('clientError', (_err, socket) => {
      if (socket.writable)
        socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
    configure(s);
    servers.push(s);
  };
  const plain = http.createServer();
  track(plain);
  try {
    const httpPort = await listen(plain, options.httpPort, options.bind);
    let httpsPort: number | undefined;
    if (options.https) {
      const certs = options.https.certificates;
      // The default pair serves clients without SNI; SNICallback picks per name otherwise.
      const secure = https.createServer({
        ...certs.defaultPair(),
        SNICallback: certs.sniCallback.bind(certs),
      });
      certs.onDefaultChange(() => secure.setSecureContext({ ...certs.defaultPair() }));
      track(secure);
      httpsPort = await listen(secure, options.https.port, options.bind);
    }
    return {
      httpPort,
      httpsPort,
      close: async () => {
        await Promise.all(servers.map((s) => closeServer(s, upgraded)));
      },
    };
  } catch (err) {
    await Promise.all(servers.filter((s) => s.listening).map((s) => closeServer(s, upgraded)));
    throw err;
  }
}
