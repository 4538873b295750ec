import { escape as lp } from '@influxdata/influxdb-client';
import { describe, expect, it } from 'vitest';
import { rng } from '../../../bench/fixtures.js';
import { encodePoint, LineBuffer, PointSchemaError, toLine } from '../../../common/storage/line-protocol.js';
import {
  type AnyPoint,
  type FieldType,
  MEASUREMENTS,
  type MeasurementDef,
} from '../../../contracts/influx.js';

// The storage writer encodes points straight into bytes (common/storage/line-protocol.ts encodePoint: no line
// string, small integers as digits, plain strings between quotes without a literal), #18. Checked here against
// an oracle written for this test from the line protocol's rules, as plainly as they read — on seeded random
// points of every measurement with hostile values: integers at and past 32 and 53 bits, decimal strings, bigints,
// NaN and infinities, -0, strings with quotes, backslashes, line breaks, Chinese and lone surrogates, tag values
// to escape or with trailing backslashes — into buffers already holding bytes and too small to start with.

const INT64_MAX = (1n << 63n) - 1n;

/** What a field's value becomes, or undefined when it is not written; throws for a wrong type. */
function literal(type: FieldType, v: unknown): string | undefined {
  switch (type) {
    case 'float':
      if (typeof v === 'bigint') return String(Number(v));
      if (typeof v !== 'number') throw new PointSchemaError('float');
      return Number.isFinite(v) ? String(v) : undefined;
    case 'int':
      if (typeof v === 'bigint') return `${v > INT64_MAX ? v - (1n << 64n) : v}i`;
      if (typeof v === 'string') {
        if (/^-?\d{1,18}$/.test(v)) return `${v}i`;
        if (/^\d{19,20}$/.test(v)) return literal('int', BigInt(v));
        throw new PointSchemaError('int string');
      }
      if (typeof v !== 'number') throw new PointSchemaError('int');
      if (!Number.isFinite(v)) throw new PointSchemaError('int not finite');
      return `${Math.round(v)}i`;
    case 'string':
      if (typeof v !== 'string') throw new PointSchemaError('string');
      return lp.quoted(v.replace(/\r?\n|\r/g, '\\n'));
    case 'bool':
      if (typeof v !== 'boolean') throw new PointSchemaError('bool');
      return v ? 't' : 'f';
  }
}

/** The line of a point, from the rules: undefined without a field; throws what encodePoint must refuse. */
function oracle(p: AnyPoint): string | undefined {
  const def = (MEASUREMENTS as Record<string, MeasurementDef>)[p.measurement];
  if (!def) throw new PointSchemaError('measurement');
  const tags = p.tags as Record<string, string | undefined>;
  for (const k of Object.keys(tags)) if (!def.tags.includes(k)) throw new PointSchemaError('tag');
  let line = lp.measurement(p.measurement);
  for (const k of [...def.tags].sort()) {
    const v = tags[k]?.replace(/\\+$/, '');
    if (v) line += `,${lp.tag(k)}=${lp.tag(v)}`;
  }
  const fields = p.fields as Record<string, unknown>;
  for (const k of Object.keys(fields)) if (!(k in def.fields)) throw new PointSchemaError('field');
  const parts: string[] = [];
  for (const [k, type] of Object.entries(def.fields)) {
    const v = fields[k];
    if (v === undefined || v === null) continue;
    const l = literal(type, v);
    if (l !== undefined) parts.push(`${lp.tag(k)}=${l}`);
  }
  if (parts.length === 0) return undefined;
  if (!Number.isInteger(p.ts)) throw new PointSchemaError('ts');
  return `${line} ${parts.join(',')} ${p.ts}`;
}

const STRINGS = [
  'ok',
  'error',
  '',
  ' ',
  'a b,c=d',
  'say "hi"',
  'C:\\path\\',
  'line\nbreak\r\nand\rreturn',
  '西湖区第一小学',
  '教室 3,东=楼',
  'emoji 😀',
  'lone \ud800 surrogate',
  'x'.repeat(300),
  '长'.repeat(200),
];
const NUMBERS = [
  0,
  -0,
  1,
  -1,
  7,
  42.5,
  -3.25,
  2_147_483_647,
  2_147_483_648,
  -2_147_483_648,
  -2_147_483_649,
  1_073_741_824,
  8_589_934_592,
  Number.MAX_SAFE_INTEGER,
  -Number.MAX_SAFE_INTEGER,
  2 ** 60,
  1e21,
  5e-324,
  0.1 + 0.2,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
];
const INT_STRINGS = [
  '0',
  '-12',
  '999999999999999999',
  '18446744073709551615',
  '9223372036854775808',
  '12x',
  '-',
  '',
];
const BIGINTS = [0n, -5n, INT64_MAX, INT64_MAX + 1n, (1n << 64n) - 1n];
const TIMES = [1_788_000_000_000, 0, 1, -1_500, 1_788_000_000_000.5, Number.NaN];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

/** A value for a field of `type`: mostly of its type, sometimes of another (which must be refused alike). */
function value(r: () => number, type: FieldType): unknown {
  const x = r();
  if (x < 0.04) return pick(r, [null, undefined, {}, [], true]);
  if (x < 0.08) return pick(r, STRINGS);
  switch (type) {
    case 'float':
      return x < 0.15 ? pick(r, BIGINTS) : pick(r, NUMBERS);
    case 'int':
      return x < 0.2 ? pick(r, INT_STRINGS) : x < 0.3 ? pick(r, BIGINTS) : pick(r, NUMBERS);
    case 'string':
      return x < 0.12 ? pick(r, NUMBERS) : pick(r, STRINGS);
    case 'bool':
      return x < 0.12 ? pick(r, NUMBERS) : r() < 0.5;
  }
}

function randomPoint(r: () => number): AnyPoint {
  const names = Object.keys(MEASUREMENTS);
  const measurement = r() < 0.01 ? 'no_such_measurement' : pick(r, names);
  const def = (MEASUREMENTS as Record<string, MeasurementDef>)[measurement] ?? MEASUREMENTS.host;
  const tags: Record<string, string> = {};
  for (const t of def.tags) if (r() < 0.7) tags[t] = pick(r, STRINGS);
  if (r() < 0.02) tags.not_a_tag = 'x';
  const fields: Record<string, unknown> = {};
  for (const [f, type] of Object.entries(def.fields)) if (r() < 0.5) fields[f] = value(r, type);
  if (r() < 0.02) fields.not_a_field = 1;
  const p = { measurement, tags, fields, ts: r() < 0.1 ? pick(r, TIMES) : TIMES[0]! + Math.floor(r() * 1e9) };
  // The collector's tags objects are frozen (their prefixes cached by identity): both kinds.
  if (r() < 0.5) Object.freeze(p.tags);
  return p as AnyPoint;
}

/** The oracle's verdict: the line's bytes, null for no line, or 'throws'. */
function expected(p: AnyPoint): Buffer | null | 'throws' {
  try {
    const l = oracle(p);
    return l === undefined ? null : Buffer.from(l);
  } catch {
    return 'throws';
  }
}

describe('line encoder', () => {
  it('writes each point exactly as the rules say, after what the buffer holds, or nothing at all', () => {
    const r = rng(18);
    const counts = { lines: 0, none: 0, refused: 0 };
    for (let i = 0; i < 20_000; i++) {
      const p = randomPoint(r);
      const want = expected(p);
      // A buffer too small for most lines (it grows), already holding some bytes it must keep.
      const out = new LineBuffer(8);
      const before = Buffer.from(`before ${i}\n`);
      out.text(before.toString());
      let got: boolean | 'throws';
      try {
        got = encodePoint(p, out);
      } catch (e) {
        expect(e).toBeInstanceOf(PointSchemaError);
        got = 'throws';
      }
      const bytes = out.buf.subarray(0, out.at);
      if (want === 'throws' || want === null) {
        expect(
          got,
          JSON.stringify(p, (_, v) => (typeof v === 'bigint' ? `${v}n` : v)),
        ).toBe(want === 'throws' ? 'throws' : false);
        expect(bytes.equals(before)).toBe(true);
        counts[want === null ? 'none' : 'refused']++;
      } else {
        expect(got).toBe(true);
        expect(bytes.subarray(0, before.length).equals(before)).toBe(true);
        expect(bytes.subarray(before.length).toString()).toBe(want.toString());
        expect(toLine(p)).toBe(want.toString());
        counts.lines++;
      }
    }
    // Every verdict met often enough to mean something.
    expect(counts.lines).toBeGreaterThan(2_000);
    expect(counts.none).toBeGreaterThan(100);
    expect(counts.refused).toBeGreaterThan(2_000);
  });

  it('keeps writing the same points right once their prefixes and timestamps are remembered', () => {
    const r = rng(7);
    const points = Array.from({ length: 300 }, () => randomPoint(r));
    const want = points.map(expected);
    for (let pass = 0; pass < 3; pass++) {
      const out = new LineBuffer(64);
      for (const [i, p] of points.entries()) {
        const at = out.at;
        let ok: boolean | 'throws';
        try {
          ok = encodePoint(p, out);
        } catch {
          ok = 'throws';
        }
        const w = want[i]!;
        if (w instanceof Buffer) expect(out.buf.subarray(at, out.at).equals(w)).toBe(true);
        else {
          expect(ok).toBe(w === null ? false : 'throws');
          expect(out.at).toBe(at); // nothing appended
        }
      }
    }
  });

  it('writes UTF-8 as Buffer.from does, whatever the length', () => {
    for (const s of STRINGS) {
      const out = new LineBuffer(1);
      out.text('>');
      out.text(s);
      expect(out.buf.subarray(0, out.at).equals(Buffer.from(`>${s}`))).toBe(true);
    }
    const out = new LineBuffer(1);
    for (const v of [
      0, -0, 7, -7, 10, 99, 100, 2_147_483_647, -2_147_483_648, -2_147_483_647, 3e10, 1e12, -5e9, 1.5, 1e21,
    ]) {
      out.at = 0;
      out.int(v);
      expect(out.buf.toString('utf8', 0, out.at)).toBe(String(v));
    }
  });
});
