/**
 * One e-mail address as a customer gives it: a single RFC 5321 mailbox,
 * `local-part@domain`, and nothing else — no list ("a@x, b@y"), no display
 * name ("Eve <e@x>"), no CR/LF, no comments, no quoted local part. Such extra
 * text would become extra recipients or headers of the mail the platform sends
 * to it. Pure; signup and the mail handlers use it.
 */

/** RFC 5321's dot-string: atoms of the characters RFC 5322 allows, joined by single dots. */
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

export interface MailboxRules {
  /**
   * Accept a domain without a dot (`owner@localhost`): only a platform whose
   * own base domain is `localhost` has mail for such names.
   */
  dotlessDomain: boolean;
}

/** Why `address` is not one mailbox, or undefined when it is. */
export function mailboxProblem(address: string, rules: MailboxRules): string | undefined {
  if (address.length > 254) return 'is longer than 254 characters';
  const at = address.lastIndexOf('@');
  if (at <= 0 || at === address.length - 1) return 'expected one address such as name@example.com';
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length > 64) return 'has a part before the @ longer than 64 characters';
  if (!LOCAL_PART.test(local)) {
    return 'expected one address such as name@example.com (no list, no name, no spaces or line breaks)';
  }
  const labels = domain.split('.');
  if (domain.length > 253 || !labels.every((l) => LABEL.test(l))) {
    return `has no valid domain after the @ ("${domain.slice(0, 60)}")`;
  }
  if (labels.length < 2 && !rules.dotlessDomain) return `has a domain without a dot ("${domain}")`;
  return undefined;
}
