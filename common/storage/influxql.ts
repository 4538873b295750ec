/**
 * InfluxQL literal quoting. Every value placed in a query goes through one of these, usually via the `iql`
 * tagged template, so a school name such as `实验小学'; DROP` stays a string.
 * Grammar: https://docs.influxdata.com/influxdb/v1/query_language/spec/ (string_lit, identifier, regex_lit).
 */

/** A string literal: single quotes, with `\` and `'` escaped. */
export function quoteString(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** An identifier (database, measurement, tag or field name): double quotes, with `\` and `"` escaped. */
export function quoteIdent(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** A regex literal that matches `s` literally; `anchor: 'prefix'` gives `/^s/`. */
export function regexLiteral(s: string, anchor: 'prefix' | 'exact' | 'none' = 'none'): string {
  const body = s.replace(/[\\^$.*+?()[\]{}|/]/g, (c) => `\\${c}`);
  return `/${anchor === 'none' ? '' : '^'}${body}${anchor === 'exact' ? '$' : ''}/`;
}

/** Marks text as already-safe InfluxQL (identifiers built with quoteIdent, fixed fragments). */
export class Raw {
  constructor(readonly text: string) {}
}
export const raw = (text: string): Raw => new Raw(text);
export const ident = (name: string): Raw => new Raw(quoteIdent(name));

/** Epoch milliseconds as an InfluxQL time literal. */
export const timeMs = (ms: number): Raw => new Raw(`${Math.trunc(ms)}ms`);

type IqlValue = string | number | boolean | Raw | readonly (string | number)[];

function literal(v: IqlValue): string {
  if (v instanceof Raw) return v.text;
  if (typeof v === 'string') return quoteString(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error('InfluxQL literal must be finite');
    return String(v);
  }
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  throw new Error('arrays are not InfluxQL literals; build an OR list');
}

/** `iql\`SELECT * FROM iface WHERE school = ${id} AND time > ${timeMs(t)}\`` — values quoted as literals. */
export function iql(strings: TemplateStringsArray, ...values: IqlValue[]): string {
  let out = strings[0] ?? '';
  values.forEach((v, i) => {
    out += literal(v) + (strings[i + 1] ?? '');
  });
  return out;
}
