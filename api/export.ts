import ExcelJS from 'exceljs';

/**
 * Reports as files for the bureaus' own paperwork: CSV (UTF-8 with a BOM, so Excel in China opens it without
 * garbling the Chinese) and XLSX. Columns carry an English key and a Chinese header.
 */
export interface ExportColumn<T> {
  header: string;
  value: (row: T) => string | number | boolean | null | undefined;
}

/**
 * RFC 4180 quoting; a leading =, +, -, @, tab or CR is prefixed with ' so a spreadsheet does not run it (OWASP
 * CSV injection). A cell holding `;` is quoted too: Excel in locales whose list separator is `;` splits an
 * unquoted `;=1+1` into an empty cell and the formula `=1+1` (OWASP: quote fields containing , or ;).
 */
function csvCell(v: string | number | boolean | null | undefined): string {
  if (v === null || v === undefined) return '';
  let s = String(v);
  if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",;\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv<T>(rows: readonly T[], columns: readonly ExportColumn<T>[]): Buffer {
  const lines = [columns.map((c) => csvCell(c.header)).join(',')];
  for (const r of rows) lines.push(columns.map((c) => csvCell(c.value(r))).join(','));
  return Buffer.from(`\uFEFF${lines.join('\r\n')}\r\n`, 'utf8');
}

/** The rows as sheet `sheet`; `notes` (label, text), when given, as a second sheet 说明. */
export async function toXlsx<T>(
  sheet: string,
  rows: readonly T[],
  columns: readonly ExportColumn<T>[],
  notes?: readonly (readonly [string, string])[],
): Promise<Buffer> {
  const wb = new ExcelJS.Workbook();
  const ws = wb.addWorksheet(sheet.slice(0, 31)); // Excel's sheet-name limit
  ws.addRow(columns.map((c) => c.header));
  ws.getRow(1).font = { bold: true };
  for (const r of rows) ws.addRow(columns.map((c) => c.value(r) ?? null));
  ws.columns.forEach((col, i) => {
    col.width = Math.min(40, Math.max(8, columns[i]!.header.length * 2 + 2));
  });
  if (notes) {
    const ns = wb.addWorksheet('说明');
    for (const [label, text] of notes) ns.addRow([label, text]);
    ns.getColumn(1).font = { bold: true };
    ns.getColumn(1).width = 12;
    ns.getColumn(2).width = 100;
  }
  return Buffer.from(await wb.xlsx.writeBuffer());
}

export const CONTENT_TYPES = {
  csv: 'text/csv; charset=utf-8',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
} as const;
