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
  if (Number.isInteger(v)) return `${intText(v)}i`;
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
 * A growable byte buffer lines are encoded into: the storage writer's open chunk, and toLine's scratch. Pieces
 * go in one by one — no line is built as a string first (#18: the concatenations of a line, their flattening
 * and the copy into the buffer were the largest part of the collector's allocations).
 */
export class LineBuffer {
  buf: Buffer;
  at = 0;
  constructor(size = 1 << 16) {
    this.buf = Buffer.allocUnsafeSlow(size);
  }

  /** Room for `n` more bytes. */
  reserve(n: number): void {
    if (this.buf.length - this.at >= n) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(2 * this.buf.length, this.at + n));
    this.buf.copy(bigger, 0, 0, this.at);
    this.buf = bigger;
  }

  /** An integer's decimal digits: a 32-bit one without a string, any other number as String() writes it. */
  int(v: number): void {
    if ((v | 0) !== v) {
      this.text(String(v));
      return;
    }
    if (this.buf.length - this.at < 11) this.reserve(11);
    const buf = this.buf;
    let x = v;
    if (x < 0) {
      if (x === -2_147_483_648) {
        this.text('-2147483648');
        return;
      }
      buf[this.at++] = 0x2d;
      x = -x;
    }
    let digits = 1;
    for (let t = x; t >= 10; t = (t / 10) | 0) digits++;
    let at = this.at + digits;
    this.at = at;
    do {
      buf[--at] = 48 + (x % 10);
      x = (x / 10) | 0;
    } while (x > 0);
  }

  byte(b: number): void {
    if (this.at === this.buf.length) this.reserve(1);
    this.buf[this.at++] = b;
  }

  /** `s` as UTF-8 (a lone surrogate becomes U+FFFD, as Buffer.from writes it). */
  text(s: string): void {
    const n = s.length;
    // A UTF-16 code unit takes at most 3 bytes in UTF-8.
    if (this.buf.length - this.at < 3 * n) this.reserve(3 * n);
    const buf = this.buf;
    const start = this.at;
    if (n <= 256) {
      // The common case, short ASCII pieces: a loop costs less than a call into the runtime.
      let at = start;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[at++] = c;
      }
      if (i === n) {
        this.at = at;
        return;
      }
    }
    this.at = start + buf.write(s, start);
  }
}

/**
 * A measurement's fields appended to `out` as ` field=value,…`: false (nothing appended) when no field has a
 * value. Generated once per measurement from its definition (compileFields): each defined field read by name, in
 * definition order.
 */
type FieldsWriter = (fields: Record<string, unknown>, out: LineBuffer) => boolean;

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
  let body = 'let first = true, n = 0, v, lit;\n';
  entries.forEach(([f, type], k) => {
    const key = JSON.stringify(f);
    // `field=` (after a space for the first written, a comma for the others), then `value`: generated code.
    const put = (...value: string[]) =>
      `{ out.text(first ? FIRST[${k}] : NEXT[${k}]); ${value.join(' ')} first = false; }`;
    // The common values straight into the buffer, no literal string made: a small integer's digits, a counter's
    // decimal string that fits int64 whatever its digits, a string with nothing to escape between its quotes.
    // Any other value through its literal.
    const direct =
      type === 'int'
        ? `if (typeof v === "number" && (v | 0) === v) ${put('out.int(v);', 'out.byte(105);')} else ` +
          `if (typeof v === "string" && SAFE_DIGITS.test(v)) ${put('out.text(v);', 'out.byte(105);')} else `
        : type === 'string'
          ? `if (typeof v === "string" && !SPECIAL.test(v)) ${put('out.byte(34);', 'out.text(v);', 'out.byte(34);')} else `
          : '';
    body +=
      `v = fields[${key}];\n` +
      `if (v !== undefined) { n++; if (v !== null) { ${direct}{ lit = L${type}(v, M, ${key});` +
      ` if (lit !== undefined) ${put('out.text(lit);')} } } }\n` +
      `else if (${key} in fields) n++;\n`;
  });
  body +=
    'let seen = 0; for (const f in fields) seen++;\n' +
    'if (seen !== n) unknownField(fields);\n' +
    'return !first;';
  const defined = new Set(Object.keys(d.fields));
  const unknownField = (fields: Record<string, unknown>) => {
    for (const f in fields)
      if (!defined.has(f)) throw new PointSchemaError(`${m}: field ${JSON.stringify(f)} is not defined`);
  };
  const first = entries.map(([f]) => ` ${escTag(f)}=`);
  const next = entries.map(([f]) => `,${escTag(f)}=`);
  // Generated from our own measurement definitions (constants), never from input.
  const make = new Function(
    'M',
    'FIRST',
    'NEXT',
    'Lfloat',
    'Lint',
    'Lstring',
    'Lbool',
    'SPECIAL',
    'SAFE_DIGITS',
    'unknownField',
    `return function fields_${m.replace(/\W/g, '_')}(fields, out) {\n${body}\n};`,
  );
  return make(
    m,
    first,
    next,
    LITERALS.float,
    LITERALS.int,
    LITERALS.string,
    LITERALS.bool,
    STRING_SPECIAL,
    SAFE_DIGITS,
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
 * One point → one line appended to `out` (UTF-8, no break), timestamp in milliseconds (write precision `ms`).
 * False, and nothing appended, when no field has a value (InfluxDB rejects a line without fields); on a
 * PointSchemaError nothing is appended either. The collector's hot path (the storage writer encodes each point
 * straight into its open chunk): no allocation beyond the fields' literals.
 */
export function encodePoint(point: AnyPoint, out: LineBuffer): boolean {
  const plan = plans.get(point.measurement);
  if (!plan) throw new PointSchemaError(`unknown measurement ${JSON.stringify(point.measurement)}`);
  const byTags = prefixByTags.get(point.tags);
  const prefix = byTags?.get(point.measurement) ?? seriesPrefix(point, plan, byTags);
  const start = out.at;
  try {
    out.text(prefix);
    if (!plan.fields(point.fields as Record<string, unknown>, out)) {
      out.at = start;
      return false;
    }
    const ts = timestamp(point);
    out.byte(0x20);
    out.text(ts);
  } catch (e) {
    out.at = start;
    throw e;
  }
  return true;
}

const lineScratch = new LineBuffer(1 << 12);

/** One point → one line (see encodePoint); undefined when no field has a value. */
export function toLine(point: AnyPoint): string | undefined {
  lineScratch.at = 0;
  if (!encodePoint(point, lineScratch)) return undefined;
  const line = lineScratch.buf.toString('utf8', 0, lineScratch.at);
  // A very long line grew the scratch buffer: it is not kept that large.
  if (lineScratch.buf.length > 1 << 16) lineScratch.buf = Buffer.allocUnsafeSlow(1 << 12);
  return line;
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

let lastTs = Number.NaN;
let lastTsText = '';

/**
 * A point's timestamp as text. The points of one message share theirs, so the last one is kept; an epoch in
 * milliseconds is past V8's small integers, and written as two of them it costs a fifth of `String(ts)`.
 */
function timestamp(point: AnyPoint): string {
  const ts = point.ts;
  if (ts === lastTs) return lastTsText;
  if (!Number.isInteger(ts)) throw new PointSchemaError(`${point.measurement}: ts must be integer epoch ms`);
  lastTs = ts;
  lastTsText = intText(ts);
  return lastTsText;
}

/** An integer's decimal digits: above 2^30, as two small integers (six digits below, zero-padded). */
function intText(v: number): string {
  if (v < 1_073_741_824 && v > -1_073_741_824) return String(v);
  if (v < 0 || v > Number.MAX_SAFE_INTEGER) return String(v);
  const hi = Math.floor(v / 1_000_000);
  return String(hi) + String(v - hi * 1_000_000 + 1_000_000).slice(1);
}
