import { z } from 'zod';

/**
 * Secrets are a type: a config field that holds one says so in its zod schema, and every output — printed
 * configuration, log lines, /health, /metrics, error messages — redacts it by walking the parsed config with
 * that schema. Key names decide nothing here: a URL field whose query carries a robot's `?key=` is as secret as
 * a field called `password`, and a field called `tokensFile` is not one.
 *
 * - `secret(schema)`: the whole value is secret (passwords, tokens, SNMP communities, USM keys, signing keys).
 * - `urlWithSecrets(schema)`: a URL whose user-info (`user:pass@`), query values (WeCom `?key=`, DingTalk
 *   `?access_token=`) and fragment are secret; scheme, host and port stay visible, so an operator still sees
 *   where it points. `{ path: true }` also hides the path (Feishu `/open-apis/bot/v2/hook/<token>`, a generic
 *   webhook whose path is its credential).
 *
 * The marker is zod metadata (`.meta({ secret })`), so the generated reference (docs/config.md) shows it too.
 */
export const REDACTED = '[redacted]';

export type SecretKind = 'value' | 'url' | 'url-path';

declare module 'zod' {
  interface GlobalMeta {
    /** How much of the value is secret (common/redact.ts). */
    secret?: SecretKind;
  }
}

/** Marks a field whose whole value is secret. */
export function secret<T extends z.ZodType>(schema: T): T {
  return schema.meta({ secret: 'value' });
}

/** Marks a URL field that may carry secrets in its user-info and query (and, with `path`, its path). */
export function urlWithSecrets<T extends z.ZodType>(schema: T, opts: { path?: boolean } = {}): T {
  return schema.meta({ secret: opts.path ? 'url-path' : 'url' });
}

/** The secret marker of this very schema (inherited through `.describe()`/`.meta()` clones), if any. */
export function secretKindOf(schema: z.ZodType): SecretKind | undefined {
  return z.globalRegistry.get(schema)?.secret;
}

// ---- the schema walk ------------------------------------------------------------------------------------------

/** What a walk meets: a secret (by its marker), or a value the schema does not describe (`z.unknown()`). */
export type Found = SecretKind | 'opaque';

type Def = {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  getter?: () => z.ZodType;
  shape?: Record<string, z.ZodType>;
  catchall?: z.ZodType;
  element?: z.ZodType;
  items?: z.ZodType[];
  rest?: z.ZodType | null;
  valueType?: z.ZodType;
  options?: z.ZodType[];
  discriminator?: string;
  left?: z.ZodType;
  right?: z.ZodType;
  values?: unknown[];
};
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'catch', 'readonly', 'nonoptional']);
const OPAQUE = new Set(['unknown', 'any', 'custom']);

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** A discriminated (or de-facto discriminated) union's tag: the key every object option pins to literals. */
function discriminator(def: Def): string | undefined {
  if (def.discriminator) return def.discriminator;
  const shapes = def.options?.map((o) => objectShape(o));
  if (!shapes?.length || shapes.some((s) => !s)) return undefined;
  return Object.keys(shapes[0]!).find((k) => shapes.every((s) => literalValues(s![k]) !== undefined));
}

function objectShape(s: z.ZodType): Record<string, z.ZodType> | undefined {
  const d = defOf(s);
  if (WRAPPERS.has(d.type)) return objectShape(d.innerType!);
  return d.type === 'object' ? d.shape : undefined;
}

function literalValues(s: z.ZodType | undefined): unknown[] | undefined {
  if (!s) return undefined;
  const d = defOf(s);
  if (WRAPPERS.has(d.type)) return literalValues(d.innerType);
  return d.type === 'literal' ? d.values : undefined;
}

function variantLabel(def: Def, option: z.ZodType, index: number): string {
  const tag = discriminator(def);
  const values = tag ? literalValues(objectShape(option)?.[tag]) : undefined;
  return tag && values ? `{${tag}=${values.map(String).join('|')}}` : `{${index}}`;
}

/** The option of a union that `value` (parsed output) belongs to: by its tag, else the first that accepts it. */
function pickOption(def: Def, value: unknown): number {
  const options = def.options ?? [];
  const tag = discriminator(def);
  if (tag && isPlainObject(value)) {
    const i = options.findIndex((o) => literalValues(objectShape(o)?.[tag])?.includes(value[tag]));
    if (i >= 0) return i;
  }
  return options.findIndex((o) => o.safeParse(value).success);
}

/**
 * Walks `value` (a parsed config, or part of one) along `schema` and replaces each secret — and each value the
 * schema cannot describe — by what `fn` returns. Absent optional values are left alone. `path` names the field
 * the way `configFields` does (`alerts.channels[]{kind=dingtalk}.secret`).
 */
export function mapSecrets(
  schema: z.ZodType,
  value: unknown,
  fn: (value: unknown, found: Found, path: string) => unknown,
  path = '',
): unknown {
  if (value === undefined) return value;
  const kind = secretKindOf(schema);
  if (kind) return fn(value, kind, path);
  const def = defOf(schema);
  const at = (key: string) => (path ? `${path}.${key}` : key);
  if (WRAPPERS.has(def.type)) return mapSecrets(def.innerType!, value, fn, path);
  switch (def.type) {
    case 'pipe':
      // A transform says nothing about shape: walk the side that does.
      return mapSecrets(defOf(def.out!).type === 'transform' ? def.in! : def.out!, value, fn, path);
    case 'lazy':
      return mapSecrets(def.getter!(), value, fn, path);
    case 'object': {
      if (!isPlainObject(value)) return value;
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        const s =
          def.shape![k] ?? (def.catchall && defOf(def.catchall).type !== 'never' ? def.catchall : undefined);
        out[k] = s ? mapSecrets(s, v, fn, at(k)) : v === undefined ? v : fn(v, 'opaque', at(k));
      }
      return out;
    }
    case 'array':
      return Array.isArray(value) ? value.map((v) => mapSecrets(def.element!, v, fn, `${path}[]`)) : value;
    case 'tuple':
      return Array.isArray(value)
        ? value.map((v, i) => {
            const s = def.items![i] ?? def.rest ?? undefined;
            return s ? mapSecrets(s, v, fn, `${path}[${i}]`) : fn(v, 'opaque', `${path}[${i}]`);
          })
        : value;
    case 'record':
      return isPlainObject(value)
        ? Object.fromEntries(
            Object.entries(value).map(([k, v]) => [k, mapSecrets(def.valueType!, v, fn, at('*'))]),
          )
        : value;
    case 'union': {
      const i = pickOption(def, value);
      if (i < 0) return fn(value, 'opaque', path);
      const option = def.options![i]!;
      return mapSecrets(option, value, fn, `${path}${variantLabel(def, option, i)}`);
    }
    case 'intersection':
      return mapSecrets(def.right!, mapSecrets(def.left!, value, fn, path), fn, path);
    default:
      return OPAQUE.has(def.type) ? fn(value, 'opaque', path) : value;
  }
}

export interface ConfigField {
  /** `influx.url`, `poller.targets[].v3.authKey`, `alerts.channels[]{kind=feishu}.url`. */
  path: string;
  /** The field's own key (the last name in `path`). */
  key: string;
  secret?: SecretKind;
}

/** Every leaf field of a schema (objects are descended, each union option in turn), with its secret marker. */
export function configFields(schema: z.ZodType, path = '', key = '', depth = 0): ConfigField[] {
  const kind = secretKindOf(schema);
  if (kind) return [{ path, key, secret: kind }];
  const def = defOf(schema);
  if (depth > 32) return [{ path, key }];
  const at = (k: string) => (path ? `${path}.${k}` : k);
  if (WRAPPERS.has(def.type)) return configFields(def.innerType!, path, key, depth + 1);
  switch (def.type) {
    case 'pipe':
      return configFields(defOf(def.out!).type === 'transform' ? def.in! : def.out!, path, key, depth + 1);
    case 'lazy':
      return configFields(def.getter!(), path, key, depth + 1);
    case 'object':
      return Object.entries(def.shape!).flatMap(([k, s]) => configFields(s, at(k), k, depth + 1));
    case 'array':
      return configFields(def.element!, `${path}[]`, key, depth + 1);
    case 'tuple':
      return def.items!.flatMap((s, i) => configFields(s, `${path}[${i}]`, key, depth + 1));
    case 'record':
      return configFields(def.valueType!, at('*'), key, depth + 1);
    case 'union': {
      const opts = def.options!;
      // A union of plain values (`string | number`) is one field; of objects, one set of fields per option.
      if (opts.every((o) => configFields(o).every((f) => f.path === '' && !f.secret))) return [{ path, key }];
      return opts.flatMap((o, i) => configFields(o, `${path}${variantLabel(def, o, i)}`, key, depth + 1));
    }
    case 'intersection':
      return [
        ...configFields(def.left!, path, key, depth + 1),
        ...configFields(def.right!, path, key, depth + 1),
      ];
    default:
      return [{ path, key }];
  }
}

// ---- redaction ---------------------------------------------------------------------------------------------

/**
 * A URL with its secret parts replaced: user-info, every query value and the fragment (and with `path`, the
 * path); scheme, host and port are kept. Text that is not a URL is redacted whole.
 */
export function redactUrl(text: string, opts: { path?: boolean } = {}): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return REDACTED;
  }
  const userinfo = u.username || u.password ? `${REDACTED}@` : '';
  // Non-special schemes (mqtt:) keep an empty path as empty; special ones (http:) normalise it to `/`.
  const path = opts.path && u.pathname !== '/' && u.pathname !== '' ? `/${REDACTED}` : u.pathname;
  const query = u.search
    ? `?${u.search
        .slice(1)
        .split('&')
        .map((p) => {
          const eq = p.indexOf('=');
          return eq < 0 ? REDACTED : `${p.slice(0, eq)}=${REDACTED}`;
        })
        .join('&')}`
    : '';
  const hash = u.hash ? `#${REDACTED}` : '';
  return `${u.protocol}//${userinfo}${u.host}${path}${query}${hash}`;
}

function redactOne(value: unknown, found: Found): unknown {
  if (found === 'url' || found === 'url-path')
    return typeof value === 'string' ? redactUrl(value, { path: found === 'url-path' }) : REDACTED;
  // An empty secret hides nothing, and saying it is empty tells the operator why authentication fails.
  return value === '' ? value : REDACTED;
}

/**
 * The one redaction of configuration: a deep copy of `value` with every field its schema marks secret replaced
 * (URLs keep where they point), and whatever the schema cannot describe replaced whole.
 */
export function redactConfig<T>(schema: z.ZodType, value: T): T {
  return mapSecrets(schema, value, redactOne) as T;
}

/**
 * The literal texts an error message could carry out of a config's secrets, to be scrubbed from every log line
 * (`rememberSecrets`): each secret value, and the parts of a secret URL that look like credentials — its
 * password and query values of 8 characters or more, and (with `path`) the path and a last segment of 16 or
 * more (a Feishu hook token is 36). A user name, or a URL part as short as `json` or `alerts`, would scrub
 * ordinary words from every line; URLs quoted in messages lose their user-info and credential parameters by
 * pattern anyway (`scrubText`). Raw and percent-decoded forms both.
 */
export function secretValues(schema: z.ZodType, value: unknown): string[] {
  const out = new Set<string>();
  const add = (s: string, minLength = 0) => {
    if (s.length < minLength) return;
    out.add(s);
    try {
      out.add(decodeURIComponent(s));
    } catch {
      // not percent-encoded
    }
  };
  mapSecrets(schema, value, (v, found) => {
    if (found === 'opaque' || typeof v !== 'string') return v;
    if (found === 'value') {
      add(v);
      return v;
    }
    let u: URL;
    try {
      u = new URL(v);
    } catch {
      add(v);
      return v;
    }
    add(u.password, 8);
    for (const [, q] of u.searchParams) add(q, 8);
    add(u.hash.slice(1), 8);
    if (found === 'url-path' && u.pathname.length > 1) {
      add(u.pathname.slice(1), 8);
      add(u.pathname.split('/').filter(Boolean).at(-1) ?? '', 16);
    }
    return v;
  });
  return [...out];
}

// ---- free text ------------------------------------------------------------------------------------------

/** Shorter secrets are not scrubbed from free text (they would hit ordinary words); config output still hides them. */
export const MIN_SCRUB_LENGTH = 4;

const known = new Set<string>();
let knownPattern: RegExp | undefined;

/** Registers secret values (from `secretValues`) to be scrubbed from log lines and error messages. */
export function rememberSecrets(values: Iterable<string>): void {
  for (const v of values) if (v.length >= MIN_SCRUB_LENGTH) known.add(v);
  knownPattern = known.size
    ? new RegExp(
        [...known]
          .sort((a, b) => b.length - a.length)
          .map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
          .join('|'),
        'g',
      )
    : undefined;
}

/** Forgets every registered secret (tests). */
export function forgetSecrets(): void {
  known.clear();
  knownPattern = undefined;
}

// `scheme://user:pass@` — any user-info in a URL inside a message (fetch, mqtt.js and nodemailer quote theirs).
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@"'<>]+@/gi;
// Query parameters that carry credentials by convention (robots, APIs, InfluxDB 1.x `u`/`p`).
const SECRET_QUERY =
  /([?&](?:key|access_token|token|secret|sign|signature|password|passwd|pass|pwd|p|apikey|api_key|auth)=)[^&\s#"'<>]+/gi;

/**
 * Free text (an error message, a stack) with secrets removed: URL user-info, credential query parameters, and
 * every value registered with `rememberSecrets` or passed in `extra`.
 */
export function scrubText(text: string, extra: readonly string[] = []): string {
  let out = text.includes('://') ? text.replace(USERINFO, `$1${REDACTED}@`) : text;
  if (out.includes('=')) out = out.replace(SECRET_QUERY, `$1${REDACTED}`);
  if (knownPattern) out = out.replace(knownPattern, REDACTED);
  for (const v of extra) if (v.length >= MIN_SCRUB_LENGTH) out = out.split(v).join(REDACTED);
  return out;
}

/** An error's message and stack (and its causes') scrubbed in place; returns the error. */
export function scrubError<E>(err: E, extra: readonly string[] = []): E {
  let e: unknown = err;
  for (let depth = 0; e instanceof Error && depth < 8; depth++, e = e.cause) {
    replaceText(e, 'message', scrubText(e.message, extra));
    if (e.stack) replaceText(e, 'stack', scrubText(e.stack, extra));
  }
  return err;
}

/**
 * Sets an error's message or stack when it changed. Some errors have them as getters only (a DOMException, such
 * as fetch's TimeoutError): they get an own property instead, so scrubbing never throws.
 */
function replaceText(e: Error, key: 'message' | 'stack', value: string): void {
  if (e[key] === value) return;
  try {
    e[key] = value;
  } catch {
    Object.defineProperty(e, key, { value, writable: true, configurable: true });
  }
}

/** Every string in a plain value (objects, arrays; at most `depth` deep) scrubbed; copies only what changes. */
export function scrubDeep<T>(value: T, depth = 6): T {
  if (typeof value === 'string') return scrubText(value) as T;
  if (depth <= 0 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    let changed = false;
    const out = value.map((v) => {
      const s = scrubDeep(v, depth - 1);
      changed ||= s !== v;
      return s;
    });
    return (changed ? out : value) as T;
  }
  // Errors are the `err` serializer's; class instances are left as they are.
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const s = scrubDeep(v, depth - 1);
    if (s === v) continue;
    out ??= { ...(value as Record<string, unknown>) };
    out[k] = s;
  }
  return (out ?? value) as T;
}
