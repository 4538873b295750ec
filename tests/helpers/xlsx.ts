import { constants, deflateRawSync } from 'node:zlib';

/**
 * Registry files built by hand, fast enough for hundreds of thousands of rows: a workbook is a zip of XML parts
 * (ECMA-376 part 1; APPNOTE.TXT for the zip), written here with real deflate data and CRCs so that any reader
 * accepts it — and, for hostile tests, with deflate data that inflates to gigabytes or a directory that lies.
 */

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32(chunks: readonly Buffer[]): number {
  let c = -1;
  for (const b of chunks) for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

export interface ZipPart {
  name: string;
  /** The content, or (for a bomb) `chunk` repeated `times` times, deflated once and repeated as deflate blocks. */
  data: Buffer | { chunk: Buffer; times: number };
  /** The size the zip's directory declares; default the true size (a lie when set otherwise). */
  declaredSize?: number;
}

/**
 * Deflate data for `chunk` × `times` without deflating (or holding) the whole: the chunk deflated with a sync
 * flush ends on a byte boundary with no reference outside itself, so copies of it concatenate into one valid
 * stream (RFC 1951 §3.2.3), ended by an empty final block.
 */
function repeatedDeflate(chunk: Buffer, times: number): Buffer[] {
  const block = deflateRawSync(chunk, { finishFlush: constants.Z_SYNC_FLUSH });
  return [...Array.from({ length: times }, () => block), deflateRawSync(Buffer.alloc(0))];
}

export function zip(parts: readonly ZipPart[]): Buffer {
  const out: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const p of parts) {
    const name = Buffer.from(p.name, 'utf8');
    let compressed: Buffer[];
    let size: number;
    let crc: number;
    if (Buffer.isBuffer(p.data)) {
      compressed = [deflateRawSync(p.data)];
      size = p.data.length;
      crc = crc32([p.data]);
    } else {
      compressed = repeatedDeflate(p.data.chunk, p.data.times);
      size = p.data.chunk.length * p.data.times;
      crc = 0; // a bomb's CRC is never reached: it is refused before or while inflating
    }
    const csize = compressed.reduce((n, b) => n + b.length, 0);
    const declared = p.declaredSize ?? size;
    const header = (sig: number, len: number) => {
      const h = Buffer.alloc(len);
      h.writeUInt32LE(sig, 0);
      return h;
    };
    const local = header(0x04034b50, 30);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6);
    local.writeUInt16LE(8, 8);
    local.writeUInt16LE(0x21, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(csize, 18);
    local.writeUInt32LE(Math.min(declared, 0xffffffff), 22);
    local.writeUInt16LE(name.length, 26);
    const cdh = header(0x02014b50, 46);
    cdh.writeUInt16LE(20, 4);
    cdh.writeUInt16LE(20, 6);
    cdh.writeUInt16LE(0x0800, 8);
    cdh.writeUInt16LE(8, 10);
    cdh.writeUInt16LE(0x21, 14);
    cdh.writeUInt32LE(crc, 16);
    cdh.writeUInt32LE(csize, 20);
    cdh.writeUInt32LE(Math.min(declared, 0xffffffff), 24);
    cdh.writeUInt16LE(name.length, 28);
    cdh.writeUInt32LE(offset, 42);
    out.push(local, name, ...compressed);
    central.push(cdh, name);
    offset += 30 + name.length + csize;
  }
  const cd = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(parts.length, 8);
  eocd.writeUInt16LE(parts.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...out, cd, eocd]);
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A cell: text, a number, or a formula with (`value`) or without a computed value. */
export type Cell = string | number | null | { formula: string; value?: string | number };

/** `<row>`s of a sheet: text as inline strings, so no shared-strings part is needed. */
export function sheetRowsXml(rows: readonly (readonly Cell[])[], firstRow = 1): string {
  let xml = '';
  rows.forEach((cells, i) => {
    const r = firstRow + i;
    xml += `<row r="${r}">`;
    cells.forEach((c, j) => {
      if (c === null) return;
      const ref = `${String.fromCharCode(65 + j)}${r}`;
      if (typeof c === 'number') xml += `<c r="${ref}"><v>${c}</v></c>`;
      else if (typeof c === 'string') xml += `<c r="${ref}" t="inlineStr"><is><t>${esc(c)}</t></is></c>`;
      else if (c.value === undefined) xml += `<c r="${ref}"><f>${esc(c.formula)}</f></c>`;
      else if (typeof c.value === 'number')
        xml += `<c r="${ref}"><f>${esc(c.formula)}</f><v>${c.value}</v></c>`;
      else xml += `<c r="${ref}" t="str"><f>${esc(c.formula)}</f><v>${esc(c.value)}</v></c>`;
    });
    xml += '</row>';
  });
  return xml;
}

const SHEET_HEAD =
  '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>';
const SHEET_TAIL = '</sheetData></worksheet>';

/**
 * A workbook of the given sheets. A sheet's `body` may replace its XML part (a bomb: `{chunk, times}` of
 * `<row>` elements between the sheet's head and tail is not needed — any bytes inflate the same way).
 */
export function workbook(
  sheets: readonly { name: string; rows?: readonly (readonly Cell[])[]; part?: Omit<ZipPart, 'name'> }[],
): Buffer {
  const overrides = sheets
    .map(
      (_, i) =>
        `<Override PartName="/xl/worksheets/sheet${i + 1}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>`,
    )
    .join('');
  const parts: ZipPart[] = [
    {
      name: '[Content_Types].xml',
      data: Buffer.from(
        `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>${overrides}</Types>`,
      ),
    },
    {
      name: '_rels/.rels',
      data: Buffer.from(
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>',
      ),
    },
    {
      name: 'xl/workbook.xml',
      data: Buffer.from(
        `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>${sheets
          .map((s, i) => `<sheet name="${esc(s.name)}" sheetId="${i + 1}" r:id="rId${i + 1}"/>`)
          .join('')}</sheets></workbook>`,
      ),
    },
    {
      name: 'xl/_rels/workbook.xml.rels',
      data: Buffer.from(
        `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">${sheets
          .map(
            (_, i) =>
              `<Relationship Id="rId${i + 1}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet${i + 1}.xml"/>`,
          )
          .join('')}</Relationships>`,
      ),
    },
    ...sheets.map(
      (s, i): ZipPart => ({
        name: `xl/worksheets/sheet${i + 1}.xml`,
        ...(s.part ?? { data: Buffer.from(SHEET_HEAD + sheetRowsXml(s.rows ?? []) + SHEET_TAIL) }),
      }),
    ),
  ];
  return zip(parts);
}

/** A devices CSV of `n` rows in school `school` (which the registry must hold). */
export function devicesCsv(n: number, school: string): Buffer {
  const lines = ['id,school,kind,serial,vendor,model,batch,purchasedOn'];
  for (let i = 0; i < n; i++)
    lines.push(
      `dev-${i},${school},panel,SN-${100_000 + i},Seewo,F86EA,2024-西湖-班班通-0${i % 9},2024-08-15`,
    );
  return Buffer.from(`${lines.join('\n')}\n`);
}
