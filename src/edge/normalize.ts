/**
 * Normalising what a client asks for, once, before any routing decision.
 *
 * Invariant: routing, access control and forwarding all see the same
 * normalised host and path. Anything that could be read two ways (an encoded
 * slash, a backslash, a NUL, a broken %-escape) is refused with 400 rather
 * than guessed at, because a proxy and an upstream that disagree on a path is
 * how requests reach what they should not.
 */

export interface NormalizedTarget {
  /** Lowercase, no trailing dot, no port. */
  host: string;
  /** Starts with '/', no dot segments, no empty segments, only unreserved characters decoded. */
  path: string;
  /** The raw query including its '?', or ''. */
  query: string;
}

export class TargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TargetError';
  }
}

const HOST_LABELS = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;
const PORT = /^\d{1,5}$/;

/** `Acme.Example.COM.:8080` → `acme.example.com`. Throws TargetError on anything that is not a DNS name or address. */
export function normalizeHost(raw: string | undefined): string {
  if (raw === undefined || raw === '') throw new TargetError('missing Host');
  let host = raw.trim().toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) throw new TargetError('bad Host');
    const rest = host.slice(end + 1);
    if (rest !== '' && !(rest.startsWith(':') && PORT.test(rest.slice(1)))) throw new TargetError('bad Host');
    const inner = host.slice(1, end);
    if (!/^[0-9a-f:.]+$/.test(inner)) throw new TargetError('bad Host');
    return `[${inner}]`;
  }
  const colon = host.indexOf(':');
  if (colon >= 0) {
    if (!PORT.test(host.slice(colon + 1))) throw new TargetError('bad Host port');
    host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length > 253 || !(HOST_LABELS.test(host) || IPV4.test(host))) throw new TargetError('bad Host');
  return host;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;
// Raw characters allowed in a path: RFC 3986 pchar and '/', minus '%' (handled apart).
const PATH_CHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/]$/;
const HEX = /^[0-9A-Fa-f]{2}$/;

/** Decode %-escapes of unreserved characters, refuse the dangerous ones, keep the rest upper-cased. */
function decodeUnreserved(raw: string): string {
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '%') {
      const hex = raw.slice(i + 1, i + 3);
      if (!HEX.test(hex)) throw new TargetError('invalid percent-encoding in path');
      const code = parseInt(hex, 16);
      const ch = String.fromCharCode(code);
      if (code === 0x2f || code === 0x5c) throw new TargetError('encoded slash or backslash in path');
      if (code < 0x20 || code === 0x7f) throw new TargetError('encoded control character in path');
      out += code < 0x80 && UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
      i += 2;
    } else if (c === '\\') {
      throw new TargetError('backslash in path');
    } else if (PATH_CHAR.test(c)) {
      out += c;
    } else {
      throw new TargetError('invalid character in path');
    }
  }
  return out;
}

/** RFC 3986 §5.2.4 on already-split segments, also merging empty segments (as nginx's merge_slashes). */
function removeDotSegments(path: string): string {
  const out: string[] = [];
  const segments = path.split('/');
  for (const seg of segments) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  const last = segments[segments.length - 1];
  const trailing = out.length > 0 && (last === '' || last === '.' || last === '..');
  return `/${out.join('/')}${trailing ? '/' : ''}`;
}

// Already normal: only plain path characters, no escapes, no empty or dot segments.
const ALREADY_NORMAL = /^(\/[A-Za-z0-9\-_~!$&'()*+,;=:@][A-Za-z0-9\-._~!$&'()*+,;=:@]*)*\/?$/;

const QUERY_CHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$/;

/** The normalised target of a request to `host` for an origin-form `rawTarget` (path and query). */
function normalized(host: string, rawTarget: string): NormalizedTarget {
  if (!rawTarget.startsWith('/')) throw new TargetError('request target must start with /');
  const q = rawTarget.indexOf('?');
  const rawPath = q < 0 ? rawTarget : rawTarget.slice(0, q);
  const query = q < 0 ? '' : rawTarget.slice(q);
  if (query !== '' && !QUERY_CHAR.test(query.slice(1))) throw new TargetError('invalid character in query');
  // The common case skips the character-by-character pass (a segment starting with '.' takes the slow path).
  const path = ALREADY_NORMAL.test(rawPath) ? rawPath : removeDotSegments(decodeUnreserved(rawPath));
  return { host, path, query };
}

/** Normalise the path and query of an origin-form target. */
export function normalizePath(rawTarget: string): { path: string; query: string } {
  const { path, query } = normalized('', rawTarget);
  return { path, query };
}

const SLASH = 0x2f;

/**
 * Normalise a request: origin-form (`/path` plus the Host header) or
 * absolute-form (`http://host/path`, whose host wins over the Host header,
 * as RFC 9112 §3.2.2 requires).
 */
export function normalizeTarget(url: string | undefined, hostHeader: string | undefined): NormalizedTarget {
  if (!url) throw new TargetError('missing request target');
  // Origin-form, as nearly every request is: no scheme to look for.
  if (url.charCodeAt(0) === SLASH) return normalized(normalizeHost(hostHeader), url);
  const absolute = /^https?:\/\/([^/?#]*)(.*)$/i.exec(url);
  if (absolute) {
    const authority = absolute[1]!;
    if (authority.includes('@')) throw new TargetError('userinfo in request target');
    const rest = absolute[2] === '' ? '/' : absolute[2]!;
    return normalized(normalizeHost(authority), rest.startsWith('?') ? `/${rest}` : rest);
  }
  return normalized(normalizeHost(hostHeader), url);
}
