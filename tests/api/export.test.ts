import ExcelJS from 'exceljs';
import { describe, expect, it } from 'vitest';
import { toCsv, toXlsx } from '../../api/export.js';

const cols = [
  { header: '名称', value: (r: { name: string; n: number | null }) => r.name },
  { header: '数量', value: (r: { name: string; n: number | null }) => r.n },
];

describe('report files', () => {
  it('CSV: UTF-8 with a BOM, RFC 4180 quoting, and no formula a spreadsheet would run', () => {
    const csv = toCsv(
      [
        { name: '=HYPERLINK("http://x")', n: -5 },
        { name: '\t=1+1', n: null },
        { name: '转塘, "教学点"', n: 3 },
        { name: '@SUM(A1)', n: 0 },
      ],
      cols,
    ).toString('utf8');
    expect(csv.charCodeAt(0)).toBe(0xfeff);
    expect(csv.slice(1).split('\r\n')).toEqual([
      '名称,数量',
      `"'=HYPERLINK(""http://x"")",-5`,
      "'\t=1+1,",
      '"转塘, ""教学点""",3',
      "'@SUM(A1),0",
      '',
    ]);
  });

  it('CSV: a cell holding ; is quoted, so Excel with a ; list separator cannot split a formula out of it', () => {
    const csv = toCsv(
      [
        { name: ';=1+1', n: 1 },
        { name: '一小;=HYPERLINK("http://x")', n: 2 },
      ],
      cols,
    ).toString('utf8');
    expect(csv.slice(1).split('\r\n')).toEqual([
      '名称,数量',
      '";=1+1",1',
      '"一小;=HYPERLINK(""http://x"")",2',
      '',
    ]);
  });

  it('XLSX: a header row and typed cells', async () => {
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(
      (await toXlsx('学校达标情况', [{ name: '一小', n: 24 }], cols)) as unknown as ArrayBuffer,
    );
    const ws = wb.getWorksheet('学校达标情况')!;
    expect(ws.getRow(1).values).toEqual([undefined, '名称', '数量']);
    expect(ws.getRow(2).values).toEqual([undefined, '一小', 24]);
  });
});
