/**
 * Secrets never reach a log line or a printed config. A key is secret when its name says so; matching on names
 * (not values) means a new `fooToken` option is covered without anyone remembering to list it.
 */
export const SECRET_KEY_PATTERN =
  /(token|password|passwd|secret|passphrase|community|authkey|privkey|apikey|credential)s?$/i;

export const REDACTED = '[redacted]';

export function isSecretKey(key: string): boolean {
  return SECRET_KEY_PATTERN.test(key);
}

/** Deep copy of `value` with every secret-named key's value replaced. */
export function redact<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => redact(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = isSecretKey(k) && v !== undefined && v !== '' ? REDACTED : redact(v);
    }
    return out as T;
  }
  return value;
}
