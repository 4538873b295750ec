import ExcelJS from 'exceljs';
import { ID_PATTERN } from '../../contracts/ids.js';
import { type ColumnSpec, ENTITIES, ENUM_LABELS, type Registry, SHEETS } from '../../contracts/registry.js';
import { requiredColumn } from './import.js';

/**
 * The registry template (`GET /v1/registry/template.xlsx`): the four sheets the importer reads, named and headed
 * with the Chinese labels it accepts (the first label of each in contracts/registry.ts), one example row each,
 * and a notes sheet 说明 — which the importer skips — listing every column with its meaning and the values
 * allowed. Imported as it is, it registers the example; with the example rows deleted, nothing.
 */

/**
 * One region, school, classroom and device that refer to each other, under a division code no real region has
 * (99: no province), so that importing the template as downloaded never changes a real entry.
 */
export const TEMPLATE_EXAMPLE: Registry = {
  regions: [{ id: '990100', name: '示例区', level: 'county' }],
  schools: [
    {
      id: '9901000001',
      name: '示例区第一小学',
      region: '990100',
      area: 'urban',
      level: 'primary',
      classes: 12,
      students: 540,
      teachers: 36,
      contractedMbps: 200,
    },
  ],
  classrooms: [{ id: 'c-101', school: '9901000001', name: '一年级(1)班', isClass: true }],
  devices: [
    {
      id: 'pn-101',
      school: '9901000001',
      classroom: 'c-101',
      kind: 'panel',
      serial: 'SN-2024-000101',
      vendor: '示例品牌',
      model: '示例型号',
      batch: '2024-示例-01',
      purchasedOn: '2024-08-15',
    },
  ],
};

/** A value of the example as a bureau would type it: enumerations by their label, yes/no as 是/否, dates as dates. */
function cell(c: ColumnSpec, v: unknown): ExcelJS.CellValue {
  if (v === undefined) return null;
  if (c.enumLabels) return ENUM_LABELS[c.enumLabels]![String(v)]![0]!;
  if (c.type === 'bool') return v ? '是' : '否';
  if (c.type === 'date') return new Date(`${String(v)}T00:00:00Z`);
  return v as ExcelJS.CellValue;
}

/** The values a column allows, in words. */
function allowed(c: ColumnSpec): string {
  if (c.enumLabels) {
    const table = ENUM_LABELS[c.enumLabels]!;
    const values = Object.entries(table).map(([code, [label]]) => `${label}（${code}）`);
    const aliases = Object.values(table).flatMap(([, ...rest]) => rest);
    return `${values.join('、')}${aliases.length > 0 ? `；也可写：${aliases.join('、')}` : ''}`;
  }
  switch (c.type) {
    case 'id':
      return `编号：1–64 个字母、数字或 _ . -，以字母或数字开头（${ID_PATTERN.source}）；纯数字的代码可以填成数字`;
    case 'text':
      return '文本';
    case 'int':
      return '不小于 0 的整数';
    case 'port':
      return '端口号：1–65535 的整数';
    case 'number':
      return '正数';
    case 'bool':
      return '是 / 否（也可写 true/false、1/0、√/×）';
    case 'date':
      return '日期：Excel 日期，或 2024-08-15、2024/8/15、2024年8月15日';
    case 'idOrInt':
      return '接口名（文本），或接口索引（正整数）';
  }
}

const HOW_TO: readonly string[] = [
  '本模板用于登记区域、学校、教室和设备：填好后导入（POST /v1/registry/import?filename=文件名.xlsx，或 npm run api -- import 文件名.xlsx）。',
  '“区域”“学校”“教室”“设备”四张表：第 1 行是列名（下表的列名、“也可写作”中的名称或英文键都可以），第 2 行起每行一条；不用的表可以删除，可选的列可以留空或删除。',
  '第 2 行是示例（编号 990100 等不属于任何真实区域），可以覆盖或删除；原样导入会登记这个示例区域及其学校、教室、设备。',
  '导入是全有或全无：有任何错误时什么都不改，并一次列出所有错误（文件、行、列）。已登记的区域、学校按编号更新，教室、设备按（学校、编号）更新，只更新文件中有的列。',
  '本“说明”表导入时不读。',
];

type RangeValidations = {
  dataValidations: { add(range: string, validation: ExcelJS.DataValidation): void };
};

/** The template workbook. */
export async function registryTemplate(): Promise<Buffer> {
  const wb = new ExcelJS.Workbook();
  for (const e of ENTITIES) {
    const { labels, columns } = SHEETS[e];
    const ws = wb.addWorksheet(labels[0], { views: [{ state: 'frozen', ySplit: 1 }] });
    ws.addRow(columns.map((c) => c.labels[0]!));
    ws.getRow(1).font = { bold: true };
    for (const row of TEMPLATE_EXAMPLE[e] as Record<string, unknown>[])
      ws.addRow(columns.map((c) => cell(c, row[c.key])));
    columns.forEach((c, i) => {
      const col = ws.getColumn(i + 1);
      col.width = Math.max(12, c.labels[0]!.length * 2 + 4);
      if (c.type === 'date') col.numFmt = 'yyyy-mm-dd';
      // A drop-down of the labels where there is a fixed list (Excel and WPS both show it).
      const list = c.enumLabels
        ? Object.values(ENUM_LABELS[c.enumLabels]!).map(([label]) => label)
        : c.type === 'bool'
          ? ['是', '否']
          : undefined;
      if (list) {
        const letter = col.letter;
        // Worksheet.dataValidations (exceljs 4.3+) validates a range in one rule; exceljs' types omit it.
        (ws as unknown as RangeValidations).dataValidations.add(`${letter}2:${letter}10000`, {
          type: 'list',
          allowBlank: !requiredColumn(e, c.key),
          formulae: [`"${list.join(',')}"`],
        });
      }
    });
  }
  const notes = wb.addWorksheet('说明');
  for (const line of HOW_TO) notes.addRow([line]);
  notes.addRow([]);
  const head = notes.addRow(['工作表', '列名', '也可写作', '英文键', '必填', '含义', '可填的值']);
  head.font = { bold: true };
  for (const e of ENTITIES)
    for (const c of SHEETS[e].columns)
      notes.addRow([
        SHEETS[e].labels[0],
        c.labels[0],
        [...c.labels.slice(1)].join('、'),
        c.key,
        requiredColumn(e, c.key) ? '是' : '否',
        c.note,
        allowed(c),
      ]);
  [10, 16, 16, 16, 6, 60, 70].forEach((w, i) => {
    notes.getColumn(i + 1).width = w;
  });
  return Buffer.from(await wb.xlsx.writeBuffer());
}
