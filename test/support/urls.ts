/** The same server URL pointed at another database. */
export function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * A port nothing listens on, for "connection refused" cases: the discard port, below 1024, which no test
 * binds. A free port picked with `freePort()` and left closed is not safe for this: test files run side
 * by side, and another one's server may bind it before the refusal is tried (a registry answered
 * "access denied" where the refusal was expected).
 */
export const CLOSED_PORT = 9;
