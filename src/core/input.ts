/**
 * What every piece of text from outside must satisfy before anything stores
 * or acts on it: no NUL and no other control character (PostgreSQL cannot
 * store NUL in text or jsonb, and control characters have no business in
 * names, addresses or ids), and no nesting deeper than a sane limit (a
 * recursive walk over it overflows the stack). Pure functions; the API server
 * applies them to every request (src/api/input-guard.ts), the Stripe webhook
 * to its raw body.
 */

/** The deepest nesting of objects and arrays accepted in a JSON body (Stripe's events use about ten). */
export const MAX_JSON_DEPTH = 64;

/** C0 controls except tab, line feed and carriage return, and DEL: finding them is the point. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;

export interface InputProblem {
  /** Where: `body.email`, `params.tenant`, `event.data.object.name`. */
  field: string;
  message: string;
}

const codePoint = (c: string) => `U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;

function controlIn(text: string): string | undefined {
  const found = CONTROL.exec(text);
  return found ? codePoint(found[0]) : undefined;
}

/** A key as it can be shown in a field path: its control characters written as escapes. */
function shownKey(key: string): string {
  return key.replace(
    new RegExp(CONTROL.source, 'g'),
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * The first string (or key) in `value` holding a control character, or the
 * first place nested deeper than `maxDepth`. Walks without recursion, so any
 * depth JSON.parse accepted is safe to look at.
 */
export function findInputProblem(
  value: unknown,
  root: string,
  maxDepth = MAX_JSON_DEPTH,
): InputProblem | undefined {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value, path: root, depth: 0 }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (typeof item.value === 'string') {
      const bad = controlIn(item.value);
      if (bad) return { field: item.path, message: `contains the control character ${bad}` };
      continue;
    }
    if (typeof item.value !== 'object' || item.value === null) continue;
    if (item.depth >= maxDepth) {
      return { field: item.path, message: `is nested deeper than ${maxDepth} levels` };
    }
    const entries: [string, unknown][] = Array.isArray(item.value)
      ? item.value.map((v: unknown, i) => [String(i), v])
      : Object.entries(item.value);
    // Pushed in reverse, so the first problem in document order is the one reported.
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, child] = entries[i]!;
      const path = `${item.path}.${shownKey(key)}`;
      const bad = controlIn(key);
      if (bad) return { field: path, message: `has a name with the control character ${bad}` };
      stack.push({ value: child, path, depth: item.depth + 1 });
    }
  }
  return undefined;
}

const OPEN = [0x7b, 0x5b]; // { [
const CLOSE = [0x7d, 0x5d]; // } ]
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Whether raw JSON nests objects and arrays deeper than `maxDepth`, found by
 * a scan of its bytes before anything parses it. UTF-8 never uses these
 * ASCII bytes inside a multi-byte character, so bytes are enough.
 */
export function jsonNestsDeeperThan(raw: Uint8Array, maxDepth = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (inString) {
      if (b === BACKSLASH) i++;
      else if (b === QUOTE) inString = false;
    } else if (b === QUOTE) inString = true;
    else if (OPEN.includes(b)) {
      if (++depth > maxDepth) return true;
    } else if (CLOSE.includes(b)) depth--;
  }
  return false;
}
