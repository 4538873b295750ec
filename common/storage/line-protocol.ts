import { escape as lp } from '@influxdata/influxdb-client';
import { type AnyPoint, type FieldType, MEASUREMENTS, type MeasurementDef } from '../../contracts/influx.js';

/**
 * Serialises typed points to InfluxDB line protocol, checked against the measurement definitions in
 * `contracts/influx.ts`: an undefined measurement, tag or field is a programming error and throws, so a tag
 * with unbounded values can never be introduced by accident. Escaping uses the client library's own rules
 * (commas, spaces, `=`, quotes, backslashes); UTF-8 such as Chinese school names passes through unchanged.
 */
export class PointSchemaError extends Error {
  override name = 'PointSchemaError';
}

const INT64_MAX = (1n << 63n) - 1n;
const STRING_SPECIAL = /["\\\n\r]/;
const TWO_64 = 1n << 64n;

/**
 * InfluxDB 1.x/2.x integers are signed 64-bit. An unsigned 64-bit counter above 2^63-1 is stored as its two's
 * complement (value − 2^64): differences modulo 2^64 stay right, which is all a counter is for.
 */
const SAFE_DIGITS = /^-?\d{1,18}$/; // fits int64 whatever the digits
const DIGITS = /^\d{19,20}$/;

function intLiteral(v: number | bigint | string, measurement: string, field: string): string {
  if (typeof v === 'string') {
    if (SAFE_DIGITS.test(v)) return `${v}i`;
    if (DIGITS.test(v)) return intLiteral(BigInt(v), measurement, field);
    throw new PointSchemaError(
      `${measurement}.${field}: integer string ${JSON.stringify(v.slice(0, 30))} is not decimal`,
    );
  }
  if (typeof v === 'bigint') return `${v > INT64_MAX ? v - TWO_64 : v}i`;
  if (Number.isInteger(v)) return `${v}i`;
  if (!Number.isFinite(v)) throw new PointSchemaError(`${measurement}.${field}: integer field is not finite`);
  return `${Math.round(v)}i`;
}

/** A field's literal by its type; undefined when the value is not written (a float that is NaN or ±Inf). */
const LITERALS: Record<FieldType, (v: unknown, measurement: string, field: string) => string | undefined> = {
  float(v, measurement, field) {
    if (typeof v === 'number') return Number.isFinite(v) ? String(v) : undefined; // InfluxDB rejects NaN, ±Inf
    if (typeof v === 'bigint') return String(Number(v));
    throw new PointSchemaError(`${measurement}.${field}: expected a number`);
  },
  int(v, measurement, field) {
    if (typeof v !== 'number' && typeof v !== 'bigint' && typeof v !== 'string') {
      throw new PointSchemaError(`${measurement}.${field}: expected an integer`);
    }
    return intLiteral(v, measurement, field);
  },
  string(v, measurement, field) {
    if (typeof v !== 'string') throw new PointSchemaError(`${measurement}.${field}: expected a string`);
    // lp.quoted adds the quotes. A raw line break would end the line for InfluxDB 1.x's parser
    // ("unable to parse … bad timestamp"), so breaks become the two characters `\n`.
    if (!STRING_SPECIAL.test(v)) return `"${v}"`; // the common case: nothing to escape
    return lp.quoted(v.includes('\n') || v.includes('\r') ? v.replace(/\r?\n|\r/g, '\\n') : v);
  },
  bool(v, measurement, field) {
    if (typeof v !== 'boolean') throw new PointSchemaError(`${measurement}.${field}: expected a boolean`);
    return v ? 't' : 'f';
  },
};

/** Characters that need escaping in a tag key/value or field key (line protocol §Special characters). */
const TAG_SPECIAL = /[,= \\\n\r\t]/;
const escTag = (s: string) => (TAG_SPECIAL.test(s) ? lp.tag(s) : s);

/**
 * The same string, flattened in place: V8 keeps a string built with `+=` as a tree of its pieces, and every
 * line that starts with a cached series prefix copies that tree again when the line is encoded (#18: a quarter
 * of the line's cost). Converting it to a number flattens it once (the same trick as pino's flatstr).
 */
function flat(s: string): string {
  Number(s);
  return s;
}

/** Escaped `measurement,tag=value…` by tag values; cleared when it outgrows a large city's series count. */
const seriesCache = new Map<string, string>();
const SERIES_CACHE_MAX = 500_000;

/**
 * Escaped `measurement,tag=value…` by tags object, for frozen tags objects only (they cannot change under the
 * cache): the collector's point builders keep one frozen tags object per device and series (collector/points.ts),
 * so a point of a known series finds its line prefix by identity — no key built, no tag checked again. Weak: a
 * tags object the builders drop takes its entry with it.
 */
const prefixByTags = new WeakMap<object, Map<string, string>>();

/**
 * `prefix` + ` field=value,…` for a measurement's fields: null when no field has a value. Generated once per
 * measurement from its definition (compileFields): each defined field read by name, in definition order.
 */
type FieldsWriter = (prefix: string, fields: Record<string, unknown>) => string | null;

/** Per measurement, computed once: escaped name, tag keys in sorted order, its fields writer. */
interface Plan {
  prefix: string;
  tags: readonly string[];
  tagSet: ReadonlySet<string>;
  fields: FieldsWriter;
}

/**
 * The fields writer of measurement `m` (#18: the generic loop — a `for…in` over the point's fields, a Map lookup
 * and a type switch per field — was a third of the collector's line cost). Field names and types come from
 * contracts/influx.ts, never from a device. A field the definition lacks still throws, whatever its value: the
 * writer counts the defined fields the point has and, when it has more, names the first undefined one.
 */
function compileFields(m: string, d: MeasurementDef): FieldsWriter {
  const entries = Object.entries(d.fields);
  let body = 'let line = prefix, sep = " ", n = 0, v, lit;\n';
  entries.forEach(([f, type], k) => {
    const key = JSON.stringify(f);
    body +=
      `v = fields[${key}];\n` +
      `if (v !== undefined) { n++; if (v !== null) { lit = L${type}(v, M, ${key});` +
      ` if (lit !== undefined) { line += sep + K[${k}] + lit; sep = ","; } } }\n` +
      `else if (${key} in fields) n++;\n`;
  });
  body +=
    'let seen = 0; for (const f in fields) seen++;\n' +
    'if (seen !== n) unknownField(fields);\n' +
    'return sep === " " ? null : line;';
  const defined = new Set(Object.keys(d.fields));
  const unknownField = (fields: Record<string, unknown>) => {
    for (const f in fields)
      if (!defined.has(f)) throw new PointSchemaError(`${m}: field ${JSON.stringify(f)} is not defined`);
  };
  const keys = entries.map(([f]) => `${escTag(f)}=`);
  // Generated from our own measurement definitions (constants), never from input.
  const make = new Function(
    'M',
    'K',
    'Lfloat',
    'Lint',
    'Lstring',
    'Lbool',
    'unknownField',
    `return function fields_${m.replace(/\W/g, '_')}(prefix, fields) {\n${body}\n};`,
  );
  return make(
    m,
    keys,
    LITERALS.float,
    LITERALS.int,
    LITERALS.string,
    LITERALS.bool,
    unknownField,
  ) as FieldsWriter;
}

const plans = new Map<string, Plan>(
  Object.entries(MEASUREMENTS as Record<string, MeasurementDef>).map(([m, d]) => [
    m,
    {
      prefix: lp.measurement(m),
      tags: [...d.tags].sort(),
      tagSet: new Set(d.tags),
      fields: compileFields(m, d),
    },
  ]),
);

/**
 * One point → one line, timestamp in milliseconds (write precision `ms`). Returns undefined when no field has
 * a value (InfluxDB rejects a line without fields). Hot path of the collector: no sorting or allocation beyond
 * the string itself.
 */
export function toLine(point: AnyPoint): string | undefined {
  const plan = plans.get(point.measurement);
  if (!plan) throw new PointSchemaError(`unknown measurement ${JSON.stringify(point.measurement)}`);
  const byTags = prefixByTags.get(point.tags);
  const line = byTags?.get(point.measurement) ?? seriesPrefix(point, plan, byTags);
  return withFields(line, point, plan);
}

/** The escaped series part of a line, remembered by tags object when that is frozen. */
function seriesPrefix(point: AnyPoint, plan: Plan, byTags: Map<string, string> | undefined): string {
  const tags = point.tags as Record<string, string | undefined>;
  for (const k in tags) {
    if (!plan.tagSet.has(k))
      throw new PointSchemaError(`${point.measurement}: tag ${JSON.stringify(k)} is not defined`);
  }
  // Tags in sorted key order: InfluxDB's recommendation, and deterministic series keys. The escaped series key
  // is cached per distinct tag set: a fleet has a bounded number of series, each written every few seconds.
  let key = point.measurement;
  for (const k of plan.tags) key += `\u0000${tags[k] ?? ''}`;
  let line = seriesCache.get(key);
  if (line === undefined) {
    line = plan.prefix;
    for (const k of plan.tags) {
      const v = tags[k];
      // Line protocol cannot end a tag value with a backslash (it would escape the next separator): drop it.
      const t = v?.endsWith('\\') ? v.replace(/\\+$/, '') : v;
      if (t === undefined || t === '') continue; // empty tag values are not allowed in line protocol
      line += `,${k}=${escTag(t)}`;
    }
    if (seriesCache.size >= SERIES_CACHE_MAX) seriesCache.clear();
    seriesCache.set(key, flat(line));
  }
  if (Object.isFrozen(tags)) {
    if (byTags) byTags.set(point.measurement, line);
    else prefixByTags.set(tags, new Map([[point.measurement, line]]));
  }
  return line;
}

function withFields(prefix: string, point: AnyPoint, plan: Plan): string | undefined {
  const line = plan.fields(prefix, point.fields as Record<string, unknown>);
  if (line === null) return undefined;
  if (!Number.isInteger(point.ts))
    throw new PointSchemaError(`${point.measurement}: ts must be integer epoch ms`);
  return `${line} ${point.ts}`;
}
