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
const TWO_64 = 1n << 64n;

/**
 * InfluxDB 1.x/2.x integers are signed 64-bit. An unsigned 64-bit counter above 2^63-1 is stored as its two's
 * complement (value − 2^64): differences modulo 2^64 stay right, which is all a counter is for.
 */
function intLiteral(v: number | bigint, measurement: string, field: string): string {
  if (typeof v === 'bigint') return `${v > INT64_MAX ? v - TWO_64 : v}i`;
  if (!Number.isFinite(v)) throw new PointSchemaError(`${measurement}.${field}: integer field is not finite`);
  return `${Math.round(v)}i`;
}

function fieldLiteral(type: FieldType, v: unknown, measurement: string, field: string): string | undefined {
  switch (type) {
    case 'float':
      if (typeof v === 'bigint') return String(Number(v));
      if (typeof v !== 'number') throw new PointSchemaError(`${measurement}.${field}: expected a number`);
      // InfluxDB rejects NaN and ±Inf; a missing value is better than a rejected batch.
      return Number.isFinite(v) ? String(v) : undefined;
    case 'int':
      if (typeof v !== 'number' && typeof v !== 'bigint') {
        throw new PointSchemaError(`${measurement}.${field}: expected an integer`);
      }
      return intLiteral(v, measurement, field);
    case 'string':
      if (typeof v !== 'string') throw new PointSchemaError(`${measurement}.${field}: expected a string`);
      // lp.quoted adds the quotes. A raw line break would end the line for InfluxDB 1.x's parser
      // ("unable to parse … bad timestamp"), so breaks become the two characters `\n`.
      return lp.quoted(v.includes('\n') || v.includes('\r') ? v.replace(/\r?\n|\r/g, '\\n') : v);
    case 'bool':
      if (typeof v !== 'boolean') throw new PointSchemaError(`${measurement}.${field}: expected a boolean`);
      return v ? 't' : 'f';
  }
}

const defs: Record<string, MeasurementDef> = MEASUREMENTS;
const tagSets = new Map(Object.entries(defs).map(([m, d]) => [m, new Set(d.tags)]));

/**
 * One point → one line, timestamp in milliseconds (write precision `ms`). Returns undefined when no field has
 * a value (InfluxDB rejects a line without fields).
 */
export function toLine(point: AnyPoint): string | undefined {
  const def = defs[point.measurement];
  const allowedTags = tagSets.get(point.measurement);
  if (!def || !allowedTags)
    throw new PointSchemaError(`unknown measurement ${JSON.stringify(point.measurement)}`);
  let line = lp.measurement(point.measurement);
  // Tags sorted by key: InfluxDB's recommended order, and what makes series keys deterministic.
  const tags = point.tags as Record<string, string | undefined>;
  for (const k of Object.keys(tags).sort()) {
    if (!allowedTags.has(k))
      throw new PointSchemaError(`${point.measurement}: tag ${JSON.stringify(k)} is not defined`);
    const v = tags[k];
    if (v === undefined || v === '') continue; // empty tag values are not allowed in line protocol
    line += `,${lp.tag(k)}=${lp.tag(v)}`;
  }
  let sep = ' ';
  let n = 0;
  for (const [k, v] of Object.entries(point.fields as Record<string, unknown>)) {
    const type = def.fields[k];
    if (!type) throw new PointSchemaError(`${point.measurement}: field ${JSON.stringify(k)} is not defined`);
    if (v === undefined || v === null) continue;
    const lit = fieldLiteral(type, v, point.measurement, k);
    if (lit === undefined) continue;
    line += `${sep}${lp.tag(k)}=${lit}`;
    sep = ',';
    n++;
  }
  if (n === 0) return undefined;
  if (!Number.isInteger(point.ts))
    throw new PointSchemaError(`${point.measurement}: ts must be integer epoch ms`);
  return `${line} ${point.ts}`;
}
