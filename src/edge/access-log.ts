import { pino } from 'pino';
import type { Logger } from '../observability/logger.ts';
import { redactUrl } from '../observability/redact.ts';

/** What one access log line says about a request. */
export interface AccessEntry {
  tenantId: string | null | undefined;
  route: string | undefined;
  host: string | undefined;
  method: string | undefined;
  path: string | undefined;
  status: number;
  /** Duration in milliseconds, written to a tenth. */
  ms: number;
}

export interface AccessLog {
  write(entry: AccessEntry): void;
  /** Hand what is buffered to the logger's destination, and stop the flush timer. */
  close(): void;
}

interface PinoInternals {
  [pino.symbols.streamSym]: { write(line: string): unknown };
  [pino.symbols.chindingsSym]: string;
}

/** What JSON must escape in a string: quote, backslash, control characters, surrogates (a lone one is escaped). */
// eslint-disable-next-line no-control-regex -- control characters are what this looks for
const ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * A string as a JSON string. Most need no escaping, and a test for that costs
 * a fraction of a call to JSON.stringify (written five times a line).
 */
export function str(s: string | null | undefined): string | undefined {
  if (s == null) return undefined;
  return ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

/**
 * Milliseconds to a tenth, as JSON: the same text as `String(Math.round(ms * 10) / 10)`
 * for any duration a request can take, built from integers (a double that is not
 * whole takes V8's slow number-to-string path, about 0.25 µs a line in `perf`).
 */
export function millis(ms: number): string {
  const tenths = Math.round(ms * 10);
  const whole = Math.trunc(tenths / 10);
  const tenth = tenths - whole * 10;
  return tenth === 0 ? `${whole}` : `${whole}.${tenth}`;
}

/**
 * The edge's access log: one JSON line per request, in the same shape as the
 * platform logger's lines (`level`, `time`, its bindings, then the fields and
 * `msg: "edge request"`), handed to that logger's destination.
 *
 * Built here rather than by pino because it is written for every request:
 * pino's general path (mixin, redaction, serialising an object of unknown
 * shape) and one destination write per line cost about a tenth of the edge's
 * CPU under load. Lines are gathered and handed over in blocks of 16 KiB, and
 * at least every `flushMs` (as nginx's `access_log … buffer= flush=`), so one
 * write carries a hundred lines; the rest on `close` and at exit. The fields
 * are fixed; bearer-like values in the path (a checkout id, a token in the
 * query) are redacted (`redactUrl`). Host and path come from the client: a
 * string with anything JSON must escape goes through JSON.stringify (`str`).
 * Returns undefined when the logger's level hides `info` lines.
 */
export function createAccessLog(log: Logger, flushMs = 200): AccessLog | undefined {
  if (!log.isLevelEnabled('info')) return undefined;
  const internals = log as unknown as PinoInternals;
  const stream = internals[pino.symbols.streamSym];
  const bindings = internals[pino.symbols.chindingsSym];
  let pending = '';
  const flush = () => {
    if (pending === '') return;
    const block = pending;
    pending = '';
    stream.write(block);
  };
  const timer = setInterval(flush, flushMs).unref();
  // Runs before the destination's own exit flush (registered when the logger was made, so first).
  const atExit = () => {
    flush();
    try {
      (stream as { flushSync?: () => void }).flushSync?.();
    } catch {
      // A destination that cannot write synchronously now keeps what it could not write.
    }
  };
  process.once('exit', atExit);
  // toISOString costs more than the rest of the line: one per millisecond is enough.
  let lastMs = 0;
  let lastTime = '';
  return {
    write(e) {
      const now = Date.now();
      if (now !== lastMs) {
        lastMs = now;
        lastTime = new Date(now).toISOString();
      }
      let line = `{"level":"info","time":"${lastTime}"${bindings}`;
      const tenant = str(e.tenantId);
      if (tenant) line += `,"tenantId":${tenant}`;
      const route = str(e.route);
      if (route) line += `,"route":${route}`;
      const host = str(e.host);
      if (host) line += `,"host":${host}`;
      line += `,"method":${str(e.method) ?? 'null'},"path":${str(redactUrl(e.path)) ?? 'null'},"status":${e.status},"ms":${millis(e.ms)},"msg":"edge request"}\n`;
      pending += line;
      if (pending.length >= 16_384) flush();
    },
    close() {
      clearInterval(timer);
      process.off('exit', atExit);
      flush();
    },
  };
}
