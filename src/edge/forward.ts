import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { isPlatformCookie, setCookieName } from './auth/cookies.ts';
import { isHopByHop } from './forwarding.ts';

/**
 * The builtin edge's HTTP forwarding: each request dispatched on undici's
 * keep-alive pool for its upstream, the bodies streamed both ways with
 * backpressure. (WebSocket upgrades go through http-proxy-3.) Measured with
 * `node --cpu-prof` under load, this costs a third less CPU per request than
 * `http.request`, and a general-purpose proxy's option handling and pass
 * pipeline cost more again.
 *
 * Hop-by-hop response headers (`isHopByHop`) are not passed to the client, nor,
 * from a service, a Set-Cookie for one of the platform's cookies (which would
 * overwrite the user's dashboard or edge session on the tenant's host).
 * (The request's headers are the caller's: `upstreamRequestHeaders`.)
 *
 * Written for every request, so it costs one object per exchange: no closure
 * or listener of its own per request. A client connection that closes cancels
 * what is in flight on it through one listener per connection.
 *
 * The upstream timeout is kept by the forwarder, not by undici nor by a timer
 * per exchange. undici keeps a timer object per request in a list it sweeps
 * twice a second, so under load thousands of them outlived a young-generation
 * collection and, in a sampling heap profile, were a third of what the edge
 * promoted to V8's old generation. A Node timer per exchange (set, restarted
 * with each piece of the answer, cleared) cost about 0.7 µs a request in
 * `perf`. Instead the forwarder counts the ticks of one interval, each
 * exchange notes the tick of its last news from the upstream, and each tick
 * times out the exchanges quiet for the timeout. A timeout fires up to one
 * tick late; a tick is a quarter of the timeout, and at most 1 s.
 */
export interface ForwardOptions {
  /** Failing to connect for this long is an upstream timeout. */
  connectTimeoutMs: number;
  /** Waiting this long for the answer's headers, or between two pieces of its body, is an upstream timeout. */
  idleTimeoutMs: number;
}

export type ForwardError = Error & { code?: string };

/** How an exchange ends, told to the caller with the `tag` it forwarded with. */
export interface ExchangeEvents<T> {
  /**
   * Over: the answer written in full (`complete`), or cut short (the client
   * left, or the upstream failed after answering). Called once.
   */
  ended(tag: T, res: ServerResponse, complete: boolean): void;
  /**
   * The upstream failed before answering (refused, timed out, reset): the
   * caller answers the client, then `ended` follows. Not called when the
   * client had already left.
   */
  failed(tag: T, res: ServerResponse, err: ForwardError): void;
}

export interface ForwardRequest {
  upstream: { host: string; port: number };
  path: string;
  /** Name, value, name, value…: the headers for the upstream. */
  headers: string[];
  /** The request body to send (read from `req` by the caller), or null for none. */
  body: Readable | null;
  /** A service's answer: its Set-Cookie headers for the platform's cookies are dropped. */
  service: boolean;
}

export interface Forwarder<T> {
  forward(req: IncomingMessage, res: ServerResponse, request: ForwardRequest, tag: T): void;
  close(): Promise<void>;
}

function clientHeaders(
  headers: Record<string, string | string[] | undefined>,
  service: boolean,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || isHopByHop(name)) continue;
    if (service && name === 'set-cookie') {
      const kept = [value].flat().filter((v) => !isPlatformCookie(setCookieName(v)));
      if (kept.length) out[name] = kept;
    } else out[name] = value;
  }
  return out;
}

const inFlight = Symbol('aiqso.inFlight');
const watched = Symbol('aiqso.closeWatched');
/**
 * A client connection, with the newest of the exchanges in flight on it (each
 * links to the one before), and whether its close is listened for.
 */
type ClientSocket = Socket & { [inFlight]?: Exchange<unknown>; [watched]?: true };

/** A client connection closed: cancel what it was waiting for. `this` is the socket. */
function clientClosed(this: ClientSocket) {
  for (let e = this[inFlight]; e;) {
    const older = e.older; // ending unlinks it
    e.clientLeft();
    e = older;
  }
}

/**
 * The exchanges in flight through a forwarder, and its clock for upstream
 * timeouts: `tick` counts its intervals.
 */
class InFlight {
  tick = 0;
  /** The newest exchange in flight; each links to the one before (`olderAll`). */
  newest: Exchange<unknown> | undefined = undefined;

  /** A tick: time out every exchange whose upstream has been quiet for `ticks` ticks. */
  sweep(ticks: number) {
    this.tick++;
    for (let e = this.newest; e;) {
      const next = e.olderAll;
      if (this.tick - e.quietSince >= ticks) e.timedOut();
      e = next;
    }
  }
}

/**
 * One forwarded exchange, as undici's handler. The exchanges in flight on a
 * connection (more than one only when the client pipelines) are a linked list
 * through `older`/`newer`, not a Set: a Set shrinks and grows its table as its
 * one exchange comes and goes, and under load those tables were a fifth of
 * what the edge promoted to V8's old generation (a sampling heap profile).
 * All the forwarder's exchanges in flight are another such list
 * (`olderAll`/`newerAll`), for its timeouts.
 */
class Exchange<T> implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private over = false;
  private gone = false;
  older: Exchange<T> | undefined = undefined;
  private newer: Exchange<T> | undefined = undefined;
  olderAll: Exchange<unknown> | undefined = undefined;
  private newerAll: Exchange<unknown> | undefined = undefined;
  /** The forwarder's tick at the dispatch, then at the last piece of the answer. */
  quietSince: number;
  /** Waiting for a slow client to take what was sent: the upstream is not late meanwhile. */
  private paused = false;

  constructor(
    private readonly socket: ClientSocket,
    private readonly res: ServerResponse,
    private readonly events: ExchangeEvents<T>,
    private readonly tag: T,
    private readonly all: InFlight,
    private readonly service: boolean,
  ) {
    this.quietSince = all.tick;
    const newestAll = all.newest;
    if (newestAll) {
      newestAll.newerAll = this;
      this.olderAll = newestAll;
    }
    all.newest = this;
    const newest = socket[inFlight] as Exchange<T> | undefined;
    if (newest) {
      newest.newer = this;
      this.older = newest;
    } else if (!socket[watched]) {
      socket[watched] = true;
      socket.once('close', clientClosed);
    }
    socket[inFlight] = this;
    // A request read before its client left (pipelined behind another) is not sent upstream.
    if (socket.destroyed) this.clientLeft();
  }

  private end(complete: boolean) {
    if (this.over) return;
    this.over = true;
    if (this.newerAll) this.newerAll.olderAll = this.olderAll;
    else this.all.newest = this.olderAll;
    if (this.olderAll) this.olderAll.newerAll = this.newerAll;
    if (this.newer) this.newer.older = this.older;
    else this.socket[inFlight] = this.older;
    if (this.older) this.older.newer = this.newer;
    // An exchange that is over links to none: one kept alive (by undici, or promoted to V8's old
    // generation) must not keep the ones it linked to alive, nor those theirs.
    this.olderAll = this.newerAll = this.older = this.newer = undefined;
    this.events.ended(this.tag, this.res, complete);
  }

  /** The client's connection closed before the exchange was over. */
  clientLeft() {
    this.gone = true;
    if (this.controller) this.controller.abort(new Error('client closed the connection'));
    else this.end(false);
  }

  /**
   * The upstream sent nothing for the idle timeout: before its answer's head
   * (the caller answers 504), or between two pieces of its body (the answer is
   * cut). Not while a slow client holds the answer back.
   */
  timedOut() {
    if (this.over) return;
    if (this.paused) return void (this.quietSince = this.all.tick);
    const err: ForwardError = new Error(
      this.res.headersSent ? 'upstream body timeout' : 'upstream headers timeout',
    );
    err.code = 'ETIMEDOUT';
    // Not yet on a connection (every one busy, or still connecting): nothing to abort but the exchange.
    if (this.controller) this.controller.abort(err);
    else this.onResponseError(undefined, err);
  }

  onRequestStart(c: Dispatcher.DispatchController) {
    this.controller = c;
    if (this.gone) c.abort(new Error('client closed the connection'));
    else if (this.over) c.abort(new Error('the exchange timed out before it was sent'));
  }

  onResponseStart(
    _c: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ) {
    if (statusCode < 200 || this.over) return; // 1xx: this edge's server speaks for itself
    this.quietSince = this.all.tick;
    this.res.writeHead(statusCode, statusMessage, clientHeaders(headers, this.service));
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer) {
    this.quietSince = this.all.tick;
    if (this.res.write(chunk)) return;
    // The client reads slower than the upstream sends: wait for it.
    this.paused = true;
    c.pause();
    this.res.once('drain', () => {
      this.paused = false;
      this.quietSince = this.all.tick;
      c.resume();
    });
  }

  onResponseEnd() {
    if (this.over) return;
    this.res.end();
    this.end(true);
  }

  onResponseError(_c: Dispatcher.DispatchController | undefined, err: Error) {
    if (this.over) return;
    if (this.res.headersSent || this.gone) this.res.destroy();
    else this.events.failed(this.tag, this.res, err);
    this.end(false);
  }
}

export function createForwarder<T>(options: ForwardOptions, events: ExchangeEvents<T>): Forwarder<T> {
  const agent = new Agent({
    connections: 256,
    pipelining: 1,
    connect: { timeout: options.connectTimeoutMs },
    // Each exchange times its upstream itself (see above).
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const all = new InFlight();
  // A quarter of the timeout a tick (at most 1 s): quiet for `ticks` ticks is quiet for the timeout.
  const tickMs = Math.min(1000, Math.max(1, Math.floor(options.idleTimeoutMs / 4)));
  const ticks = Math.ceil(options.idleTimeoutMs / tickMs) + 1;
  const clock = setInterval(() => all.sweep(ticks), tickMs).unref();
  // Each upstream's origin, made once: undici looks its pool up by the origin string, and a string
  // built per request is hashed afresh each time (routes share their upstream objects: RouteInterner).
  const origins = new WeakMap<ForwardRequest['upstream'], string>();
  const originOf = (upstream: ForwardRequest['upstream']) => {
    let origin = origins.get(upstream);
    if (origin === undefined) origins.set(upstream, (origin = `http://${upstream.host}:${upstream.port}`));
    return origin;
  };
  return {
    forward(req, res, { upstream, path, headers, body, service }, tag) {
      const exchange = new Exchange(req.socket, res, events, tag, all, service);
      try {
        agent.dispatch({ origin: originOf(upstream), path, method: req.method!, headers, body }, exchange);
      } catch (err) {
        exchange.onResponseError(undefined, err as ForwardError);
      }
    },
    close: () => {
      clearInterval(clock);
      return agent.destroy();
    },
  };
}
