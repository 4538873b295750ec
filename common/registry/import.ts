import { basename, extname } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import ExcelJS from 'exceljs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import {
  type ColumnSpec,
  classroomSchema,
  deviceSchema,
  ENTITIES,
  ENUM_LABELS,
  type EntityName,
  type Registry,
  regionSchema,
  SHEETS,
  schoolSchema,
} from '../../contracts/registry.js';
import { rowKey } from './key.js';
import { DEFAULT_IMPORT_LIMITS, ImportLimitError, type ImportLimits, RowBudget } from './limits.js';
import { inflateEntry, looksLikeZip, readZipDirectory, storedZipStream } from './zip.js';

/**
 * Spreadsheet and YAML files → registry rows. Every cell is converted by its column's type, then the row is
 * validated by the entity's zod schema; every error names the file, the row as the spreadsheet shows it (header
 * = row 1) and the column (header and letter). Nothing here touches the stored registry: `merge.ts` decides.
 * Every file is read within `ImportLimits` (`limits.ts`); `store.ts` runs this in a worker process
 * (`import-run.ts`).
 */

export interface ImportFile {
  /** The file name as uploaded; its extension picks the format, and for a CSV its name picks the entity. */
  name: string;
  data: Buffer;
  /** For a CSV whose name does not say which entity it holds. */
  entity?: EntityName;
}

export interface ImportIssue {
  file: string;
  /** The spreadsheet row (header = 1), or the 1-based list item in a YAML file. */
  row?: number;
  /** The column header as written in the file, with its letter for spreadsheets: `D (班级数)`. */
  column?: string;
  /** The entity (sheet) concerned. */
  entity?: EntityName;
  message: string;
}

export function formatIssue(i: ImportIssue): string {
  const where = [i.file, i.entity && !i.file.includes(i.entity) ? `sheet ${i.entity}` : undefined]
    .concat(i.row !== undefined ? `row ${i.row}` : [], i.column ? `column ${i.column}` : [])
    .filter(Boolean)
    .join(', ');
  return `${where}: ${i.message}`;
}

/** Where a parsed row came from, so that later checks (references, duplicates) can name it. */
export interface RowSource {
  file: string;
  entity: EntityName;
  row: number;
  /** key → column as the file names it. */
  columns: Record<string, string>;
}

export type ParsedRows = { [E in EntityName]: { value: Registry[E][number]; source: RowSource }[] };

export class ImportError extends Error {
  override name = 'ImportError';
  constructor(readonly issues: ImportIssue[]) {
    const shown = issues.slice(0, 20).map(formatIssue);
    if (issues.length > 20) shown.push(`… and ${issues.length - 20} more`);
    super(
      `import rejected, nothing changed (${issues.length} error${issues.length === 1 ? '' : 's'}):\n${shown.join('\n')}`,
    );
  }
}

export const SCHEMAS: Record<EntityName, z.ZodObject> = {
  regions: regionSchema,
  schools: schoolSchema,
  classrooms: classroomSchema,
  devices: deviceSchema,
};

/** Whether a column must be there (and filled): its field has no default and is not optional. */
export function requiredColumn(entity: EntityName, key: string): boolean {
  return !SCHEMAS[entity].shape[key]!.safeParse(undefined).success;
}

/** At most this many issues are collected per file: a wrong column would otherwise repeat on every row. */
const MAX_ISSUES_PER_FILE = 200;

export function emptyRows(): ParsedRows {
  return { regions: [], schools: [], classrooms: [], devices: [] };
}

/**
 * Checks what can be checked without parsing — each file's size, an .xlsx's inflated size from its zip
 * directory — and throws ImportLimitError on the first limit exceeded. Cheap (no inflating, no parsing): the
 * API runs it before it starts a worker. A damaged zip is left for `readFiles` to report with the file's name.
 */
export function checkFileLimits(
  files: readonly ImportFile[],
  limits: ImportLimits = DEFAULT_IMPORT_LIMITS,
): void {
  for (const f of files) {
    if (f.data.length > limits.maxFileBytes)
      throw new ImportLimitError(
        'maxFileBytes',
        limits.maxFileBytes,
        `${f.name}: the file is ${f.data.length} bytes, more than ${limits.maxFileBytes}`,
      );
    if (extname(f.name).toLowerCase() === '.xlsx' && looksLikeZip(f.data)) {
      try {
        readZipDirectory(f.data, f.name, limits.maxInflatedBytes);
      } catch (e) {
        if (e instanceof ImportLimitError) throw e;
      }
    }
  }
}

/**
 * What the files hold: the rows that parsed, every problem found in the cells (cell types, schemas, headers),
 * and which rows were refused for their cells — so that the reference checks that follow (merge.ts) run over the
 * rows that parsed, and a reference to a refused row is not reported a second time.
 */
export interface ReadResult {
  rows: ParsedRows;
  issues: ImportIssue[];
  /**
   * `${entity}:${rowKey}` of each row refused for its cells whose id (and school) could be read, and
   * `${entity}:*` for a list not read at all (a wrong header, a file that cannot be read).
   */
  refused: Set<string>;
  /** The files' names, as uploaded: the unit `boundIssues` counts per. */
  files: string[];
}

/** What the readers below fill in as they go. */
interface Reading {
  rows: ParsedRows;
  refused: Set<string>;
}

/** Lists not read (all, when which is not known): what refers to their rows is not checked. */
function unread(out: Reading, entities: readonly EntityName[] = ENTITIES): void {
  for (const e of entities) out.refused.add(`${e}:*`);
}

/**
 * Reads every file, collecting every problem rather than stopping at the first; throws ImportLimitError the
 * moment a limit is exceeded (an import over a limit is refused whole, not listed row by row).
 */
export async function readFiles(
  files: readonly ImportFile[],
  limits: ImportLimits = DEFAULT_IMPORT_LIMITS,
): Promise<ReadResult> {
  checkFileLimits(files, limits);
  const out: Reading = { rows: emptyRows(), refused: new Set() };
  const issues: ImportIssue[] = [];
  const budget = new RowBudget(limits);
  for (const f of files) {
    try {
      const ext = extname(f.name).toLowerCase();
      if (ext === '.xlsx') await parseXlsx(f, out, issues, limits, budget);
      else if (ext === '.csv') parseCsvFile(f, out, issues, budget);
      else if (ext === '.yaml' || ext === '.yml' || ext === '.json') parseYamlFile(f, out, issues, budget);
      else issues.push({ file: f.name, message: 'unsupported file type: use .xlsx, .csv, .yaml or .json' });
    } catch (e) {
      if (e instanceof ImportLimitError) throw e;
      issues.push({ file: f.name, message: `cannot be read: ${(e as Error).message}` });
      unread(out);
    }
  }
  return { rows: out.rows, issues, refused: out.refused, files: files.map((f) => f.name) };
}

/**
 * The issues of one import as its answer: grouped by sheet (or file) and list, in the order they first
 * appear, by row within each — a file's cell errors and its reference errors side by side — and at most
 * MAX_ISSUES_PER_FILE per uploaded file (a wrong column would otherwise repeat on every row), with a last line
 * per file saying how many more there are.
 */
export function boundIssues(issues: readonly ImportIssue[], files: readonly string[]): ImportIssue[] {
  const upload = (i: ImportIssue) => files.find((f) => i.file === f || i.file.startsWith(`${f} [`)) ?? i.file;
  const groups = new Map<string, number>();
  const group = (i: ImportIssue) => {
    const g = `${i.file}\u0000${i.entity ?? ''}`;
    if (!groups.has(g)) groups.set(g, groups.size);
    return groups.get(g)!;
  };
  const sorted = issues
    .map((i, n) => ({ i, n, g: group(i) }))
    .sort((a, b) => a.g - b.g || (a.i.row ?? 0) - (b.i.row ?? 0) || a.n - b.n)
    .map((x) => x.i);
  const kept: ImportIssue[] = [];
  const shown = new Map<string, number>();
  const left = new Map<string, number>();
  for (const i of sorted) {
    const f = upload(i);
    const n = shown.get(f) ?? 0;
    if (n < MAX_ISSUES_PER_FILE) {
      kept.push(i);
      shown.set(f, n + 1);
    } else left.set(f, (left.get(f) ?? 0) + 1);
  }
  for (const [file, n] of left) kept.push({ file, message: `${n} more errors not shown` });
  return kept;
}

// ---- formats -------------------------------------------------------------------------------------------------

/** The entity a sheet or CSV file name denotes: `schools`, `学校`, `2026-schools.csv`, `学校名单.csv`. */
export function entityFromName(name: string): EntityName | undefined {
  const n = basename(name, extname(name)).toLowerCase();
  for (const e of ENTITIES) {
    if (n === e || n === e.slice(0, -1)) return e;
    if (SHEETS[e].labels.some((l) => n === l)) return e;
  }
  for (const e of ENTITIES) {
    if (n.includes(e.slice(0, -1)) || SHEETS[e].labels.some((l) => n.includes(l))) return e;
  }
  return undefined;
}

/** Excel in China saves CSV as GBK unless told otherwise; UTF-8 (with or without BOM) is tried first. */
function decodeText(data: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    return new TextDecoder('gbk').decode(data);
  }
}

function parseCsvFile(f: ImportFile, out: Reading, issues: ImportIssue[], budget: RowBudget): void {
  const entity = f.entity ?? entityFromName(f.name);
  if (!entity) {
    issues.push({
      file: f.name,
      message: `cannot tell which list this is: name the file after one of ${ENTITIES.join(', ')} (or 区域, 学校, 教室, 设备)`,
    });
    unread(out);
    return;
  }
  let header = true;
  const records = parseCsv(decodeText(f.data), {
    bom: true,
    info: true,
    skip_empty_lines: true,
    relax_column_count: true,
    trim: false,
    // Counted as they are read: parsing stops at the first record over a limit. (With `info`, a record
    // arrives as {record, info}; csv-parse's types do not say so.)
    on_record: ((r: { record: string[] }) => {
      budget.addCells(f.name, r.record.length);
      if (!header) budget.addRow(f.name);
      header = false;
      return r;
    }) as unknown as (record: string[]) => string[],
  }) as unknown as { record: string[]; info: { lines: number } }[];
  const rows = records.map((r) => ({ cells: r.record as unknown[], row: r.info.lines }));
  readTable(f.name, entity, rows, out, issues);
}

/**
 * The parts of an .xlsx the reader needs, in the order it needs them: relations, sheet names, styles (which say
 * which numbers are dates) and shared strings before any sheet. Other parts (images, themes, pivot caches) are
 * never inflated.
 */
const WORKBOOK_PARTS = [
  'xl/_rels/workbook.xml.rels',
  'xl/workbook.xml',
  'xl/styles.xml',
  'xl/sharedStrings.xml',
];
const SHEET_PART = /^xl\/worksheets\/sheet\d+\.xml$/;
const EMPTY_SHARED_STRINGS = Buffer.from(
  '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="0" uniqueCount="0"/>',
);

/**
 * A workbook is read as a stream, row by row (exceljs' streaming reader), so rows and cells are counted as they
 * arrive and memory holds one sheet part and the rows kept so far, never the whole workbook model. The zip is
 * read by `zip.ts` within the inflated-size limit and handed to the reader as stored parts.
 */
async function parseXlsx(
  f: ImportFile,
  out: Reading,
  issues: ImportIssue[],
  limits: ImportLimits,
  budget: RowBudget,
): Promise<void> {
  const data = Buffer.isBuffer(f.data) ? f.data : Buffer.from(f.data);
  const entries = readZipDirectory(data, f.name, limits.maxInflatedBytes);
  const byName = new Map(entries.map((e) => [e.name, e]));
  const part = (name: string) => {
    const e = byName.get(name)!;
    return { name, data: () => inflateEntry(data, e, f.name, limits.maxInflatedBytes) };
  };
  const parts: { name: string; data: () => Buffer }[] = [];
  for (const name of WORKBOOK_PARTS) {
    if (byName.has(name)) parts.push(part(name));
    else if (name === 'xl/sharedStrings.xml') parts.push({ name, data: () => EMPTY_SHARED_STRINGS });
    else if (name !== 'xl/styles.xml') throw new Error(`not an Excel workbook (${name} is missing)`);
  }
  for (const e of entries) if (SHEET_PART.test(e.name)) parts.push(part(e.name));

  const failed: { error?: unknown } = {};
  const reader = new ExcelJS.stream.xlsx.WorkbookReader(storedZipStream(parts, failed), {
    worksheets: 'emit',
    sharedStrings: 'cache',
    styles: 'cache',
    hyperlinks: 'ignore',
    entries: 'ignore',
  });
  let used = 0;
  try {
    for await (const ws of reader) {
      const name = (ws as unknown as { name: string }).name; // set from xl/workbook.xml; exceljs' types omit it
      const entity = entityFromName(name);
      if (!entity) continue; // notes, pivot tables and the like
      used++;
      const file = `${f.name} [${name}]`;
      const rows: { cells: unknown[]; row: number }[] = [];
      for await (const row of ws) {
        budget.addCells(file, row.cellCount);
        const cells: unknown[] = [];
        row.eachCell({ includeEmpty: true }, (cell, col) => {
          cells[col - 1] = cellValue(cell.value);
        });
        if (!cells.some((c) => c !== undefined && c !== '')) continue;
        if (rows.length > 0) budget.addRow(file);
        rows.push({ cells, row: row.number });
      }
      readTable(file, entity, rows, out, issues);
    }
  } catch (e) {
    throw failed.error ?? e;
  }
  if (failed.error) throw failed.error; // a part over a limit or damaged: the sheets read so far are moot
  if (used === 0) {
    issues.push({
      file: f.name,
      message: `no sheet named ${ENTITIES.join(', ')} (or 区域, 学校, 教室, 设备) in this workbook`,
    });
    unread(out);
  }
}

/**
 * A formula cell whose file holds no computed value (written by a program, not saved by a spreadsheet): the
 * importer computes nothing, so the cell is refused rather than read as the formula's text.
 */
class FormulaWithoutValue {
  constructor(readonly formula: string) {}
  toString(): string {
    return `=${this.formula}`;
  }
}

function formulaIssue(v: FormulaWithoutValue, col: number, row: number): string {
  // A cell sharing another cell's formula (`<f t="shared" si="0"/>`) carries no text of its own.
  const f =
    v.formula === ''
      ? 'a shared formula'
      : `the formula =${v.formula.length > 60 ? `${v.formula.slice(0, 60)}…` : v.formula}`;
  return `cell ${columnLetter(col)}${row} holds ${f} without a computed value: open and save the file in Excel or WPS, or paste the values`;
}

/** An exceljs cell value as a plain value: rich text joined, formulas by their cached result. */
function cellValue(v: ExcelJS.CellValue): unknown {
  if (v === null || v === undefined) return undefined;
  if (v instanceof Date || typeof v !== 'object') return v;
  if ('richText' in v) return v.richText.map((t) => t.text).join('');
  if ('formula' in v || 'sharedFormula' in v) {
    const result = (v as { result?: unknown }).result;
    // The streaming reader gives an error result (#REF!) as NaN; neither is a value to import.
    if (
      result === undefined ||
      result === null ||
      (typeof result === 'number' && Number.isNaN(result)) ||
      (typeof result === 'object' && 'error' in (result as object))
    ) {
      const formula = v as { formula?: string; sharedFormula?: string };
      return new FormulaWithoutValue(formula.formula ?? formula.sharedFormula ?? '');
    }
    return cellValue(result as ExcelJS.CellValue);
  }
  if ('text' in v) return (v as { text: unknown }).text;
  if ('error' in v) return undefined;
  return String(v);
}

function parseYamlFile(f: ImportFile, out: Reading, issues: ImportIssue[], budget: RowBudget): void {
  const doc = parseYaml(decodeText(f.data)) as unknown;
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    issues.push({ file: f.name, message: `must be a mapping with lists ${ENTITIES.join(', ')}` });
    unread(out);
    return;
  }
  for (const [key, list] of Object.entries(doc)) {
    if (!(ENTITIES as readonly string[]).includes(key)) {
      issues.push({ file: f.name, column: key, message: `unknown list; expected ${ENTITIES.join(', ')}` });
      continue;
    }
    const entity = key as EntityName;
    if (!Array.isArray(list)) {
      issues.push({ file: f.name, entity, message: `${key} must be a list` });
      unread(out, [entity]);
      continue;
    }
    list.forEach((item, i) => {
      budget.addRow(f.name);
      budget.addCells(f.name, item !== null && typeof item === 'object' ? Object.keys(item).length : 1);
      if (item === null || typeof item !== 'object' || Array.isArray(item)) {
        issues.push({ file: f.name, entity, row: i + 1, message: 'must be a mapping of fields' });
        return;
      }
      const columns = Object.fromEntries(Object.keys(item).map((k) => [k, k]));
      readRow(
        { file: f.name, entity, row: i + 1, columns },
        item as Record<string, unknown>,
        out,
        issues,
        false,
      );
    });
  }
}

// ---- rows ----------------------------------------------------------------------------------------------------

/** A, B, …, Z, AA, AB, … */
export function columnLetter(index: number): string {
  let s = '';
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26))
    s = String.fromCharCode(65 + ((n - 1) % 26)) + s;
  return s;
}

function matchHeader(entity: EntityName, header: string): ColumnSpec | undefined {
  const h = header.trim().replace(/\s+/g, '').toLowerCase();
  return SHEETS[entity].columns.find(
    (c) => c.key.toLowerCase() === h || c.labels.some((l) => l.replace(/\s+/g, '').toLowerCase() === h),
  );
}

function readTable(
  file: string,
  entity: EntityName,
  rows: { cells: unknown[]; row: number }[],
  out: Reading,
  issues: ImportIssue[],
): void {
  const [header, ...data] = rows;
  if (!header) {
    issues.push({ file, entity, message: 'is empty: the first row must name the columns' });
    return;
  }
  const before = issues.length;
  const specs: (ColumnSpec | undefined)[] = [];
  const columns: Record<string, string> = {};
  header.cells.forEach((cell, i) => {
    if (cell instanceof FormulaWithoutValue) {
      issues.push({
        file,
        entity,
        row: header.row,
        column: columnLetter(i),
        message: formulaIssue(cell, i, header.row),
      });
      return;
    }
    const text = cell === undefined ? '' : String(cell);
    if (text.trim() === '') return;
    const label = `${columnLetter(i)} (${text.trim()})`;
    const spec = matchHeader(entity, text);
    if (!spec) {
      const known = SHEETS[entity].columns.map((c) => `${c.key}/${c.labels[0]}`).join(', ');
      issues.push({
        file,
        entity,
        row: header.row,
        column: label,
        message: `unknown column; expected ${known}`,
      });
      return;
    }
    if (columns[spec.key]) {
      issues.push({ file, entity, row: header.row, column: label, message: `${spec.key} appears twice` });
      return;
    }
    specs[i] = spec;
    columns[spec.key] = label;
  });
  for (const c of SHEETS[entity].columns) {
    if (!columns[c.key] && requiredColumn(entity, c.key))
      issues.push({
        file,
        entity,
        row: header.row,
        message: `required column ${c.key} (${c.labels[0]}) is missing`,
      });
  }
  if (issues.length > before) {
    unread(out, [entity]); // the header is wrong: every row would repeat it
    return;
  }
  for (const r of data) {
    const item: Record<string, unknown> = {};
    let formulas = false;
    specs.forEach((spec, i) => {
      if (!spec) return;
      const cell = r.cells[i];
      if (cell instanceof FormulaWithoutValue) {
        issues.push({
          file,
          entity,
          row: r.row,
          column: columns[spec.key],
          message: formulaIssue(cell, i, r.row),
        });
        formulas = true;
      } else item[spec.key] = cell;
    });
    readRow({ file, entity, row: r.row, columns }, item, out, issues, true, formulas);
  }
}

/**
 * Converts the cells of one row (`fromCells`: spreadsheet text/number/Date values) and validates the row;
 * `refused`: a cell of it was refused already (a formula without a value), so the row is only checked.
 */
function readRow(
  source: RowSource,
  item: Record<string, unknown>,
  out: Reading,
  issues: ImportIssue[],
  fromCells: boolean,
  refused = false,
): void {
  const { file, entity, row, columns } = source;
  const converted: Record<string, unknown> = {};
  let bad = false;
  for (const [key, raw] of Object.entries(item)) {
    const spec = SHEETS[entity].columns.find((c) => c.key === key);
    if (!spec) {
      converted[key] = raw; // the schema is strict: an unknown key is reported below
      continue;
    }
    const r = convertCell(spec, raw, fromCells);
    if (!r.ok) {
      issues.push({ file, entity, row, column: columns[key] ?? key, message: r.message });
      bad = true;
    } else if (r.value !== undefined) converted[key] = r.value;
  }
  if (bad || refused) {
    refuse(out, entity, converted);
    return;
  }
  const parsed = SCHEMAS[entity].safeParse(converted);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = String(issue.path[0] ?? (issue.code === 'unrecognized_keys' ? issue.keys[0] : ''));
      const message =
        issue.code === 'unrecognized_keys'
          ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}`
          : issue.code === 'invalid_type' && converted[key] === undefined
            ? 'is required'
            : issue.message;
      issues.push({ file, entity, row, column: key ? (columns[key] ?? key) : undefined, message });
    }
    refuse(out, entity, converted);
    return;
  }
  (out.rows[entity] as { value: unknown; source: RowSource }[]).push({ value: parsed.data, source });
}

/** Remembers a row refused for its cells by its identity, when that could be read (`ReadResult.refused`). */
function refuse(out: Reading, entity: EntityName, row: Record<string, unknown>): void {
  const { id, school } = row;
  if (typeof id !== 'string' || (school !== undefined && typeof school !== 'string')) return;
  out.refused.add(`${entity}:${rowKey(entity, { id, school })}`);
}

type Converted = { ok: true; value: unknown } | { ok: false; message: string };

const TRUE = new Set(['true', 'yes', 'y', '1', '是', '√', '✓']);
const FALSE = new Set(['false', 'no', 'n', '0', '否', '×', '✗']);

/** One cell → the value the schema expects. Empty → undefined (the schema says whether that is allowed). */
export function convertCell(spec: ColumnSpec, raw: unknown, fromCells = true): Converted {
  if (raw === undefined || raw === null) return { ok: true, value: undefined };
  if (typeof raw === 'string' && raw.trim() === '') return { ok: true, value: undefined };
  // YAML is typed, except that an unquoted numeric code (`id: 330106`) arrives as a number.
  if (!fromCells && spec.type === 'id' && Number.isInteger(raw)) return { ok: true, value: String(raw) };
  if (!fromCells && spec.type !== 'date' && !spec.enumLabels) return { ok: true, value: raw };
  const text = raw instanceof Date ? '' : String(raw).trim();
  switch (spec.type) {
    case 'id':
      // A numeric code typed into Excel arrives as a number: 3301060001, never 3.30106E+09.
      if (typeof raw === 'number' && !Number.isSafeInteger(raw))
        return { ok: false, message: `${raw} is not a code (a whole number, or text)` };
      return { ok: true, value: typeof raw === 'number' ? String(raw) : text };
    case 'text': {
      if (spec.enumLabels) {
        const table = ENUM_LABELS[spec.enumLabels]!;
        for (const [value, labels] of Object.entries(table)) {
          if (value === text.toLowerCase() || labels.includes(text)) return { ok: true, value };
        }
        const names = Object.entries(table).map(([v, l]) => `${v} (${l[0]})`);
        return { ok: false, message: `"${text}" is not one of ${names.join(', ')}` };
      }
      return { ok: true, value: text };
    }
    case 'int':
    case 'port':
    case 'number': {
      const n = typeof raw === 'number' ? raw : Number(text.replace(/[,，\s]/g, ''));
      if (!Number.isFinite(n)) return { ok: false, message: `"${text}" is not a number` };
      if (spec.type !== 'number' && !Number.isInteger(n))
        return { ok: false, message: `"${text}" must be a whole number` };
      return { ok: true, value: n };
    }
    case 'idOrInt':
      return { ok: true, value: typeof raw === 'number' ? raw : /^\d+$/.test(text) ? Number(text) : text };
    case 'bool': {
      const t = typeof raw === 'boolean' ? String(raw) : text.toLowerCase();
      if (TRUE.has(t)) return { ok: true, value: true };
      if (FALSE.has(t)) return { ok: true, value: false };
      return { ok: false, message: `"${text}" is not yes/no (是/否, true/false, 1/0)` };
    }
    case 'date':
      return convertDate(raw, text);
  }
}

/** Dates: an Excel date cell, `2024-09-01`, `2024/9/1`, `2024.9.1` or `2024年9月1日`. */
function convertDate(raw: unknown, text: string): Converted {
  if (raw instanceof Date) {
    if (Number.isNaN(raw.getTime())) return { ok: false, message: 'is not a valid date' };
    return { ok: true, value: raw.toISOString().slice(0, 10) }; // Excel dates carry no zone: read as UTC
  }
  const m = /^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?$/.exec(text);
  if (!m) return { ok: false, message: `"${text}" is not a date (YYYY-MM-DD)` };
  const iso = `${m[1]}-${m[2]!.padStart(2, '0')}-${m[3]!.padStart(2, '0')}`;
  const d = new Date(`${iso}T00:00:00Z`);
  if (Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== iso)
    return { ok: false, message: `"${text}" is not a real date` };
  return { ok: true, value: iso };
}
