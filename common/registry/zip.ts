import { Readable } from 'node:stream';
import { inflateRawSync } from 'node:zlib';
import { ImportLimitError } from './limits.js';

/**
 * The zip container of an .xlsx, read with bounds (APPNOTE.TXT, the PKWARE ZIP specification, is the source of
 * every offset below). An .xlsx is a zip of XML parts; a hostile one declares or holds parts that inflate a
 * thousandfold. So the central directory is read first and its declared sizes summed against
 * `maxInflatedBytes` before a byte is inflated, and each part is then inflated with its declared size as a hard
 * cap (zlib's `maxOutputLength`), so a directory that understates a size is caught while inflating, never after.
 */

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated (APPNOTE 4.4.5); nothing else appears in spreadsheets. */
  method: number;
  compressedSize: number;
  /** As the central directory declares it. */
  size: number;
  localHeaderOffset: number;
}

/** An .xlsx holds a few dozen parts; a zip of thousands is not a spreadsheet (and costs per entry to walk). */
export const MAX_ZIP_ENTRIES = 10_000;

const EOCD_SIG = 0x06054b50; // APPNOTE 4.3.16 end of central directory record
const CDH_SIG = 0x02014b50; // APPNOTE 4.3.12 central directory file header
const LFH_SIG = 0x04034b50; // APPNOTE 4.3.7 local file header

/** Whether the bytes start like a zip (a local file header): an .xlsx always does. */
export function looksLikeZip(data: Uint8Array): boolean {
  return data.length >= 4 && Buffer.from(data.buffer, data.byteOffset, 4).readUInt32LE(0) === LFH_SIG;
}

/**
 * The entries of a zip as its central directory lists them. Throws ImportLimitError (413) when the declared
 * inflated sizes add up to more than `maxInflatedBytes`, and a plain Error when the container is malformed.
 */
export function readZipDirectory(buf: Buffer, file: string, maxInflatedBytes: number): ZipEntry[] {
  // The EOCD record is 22 bytes plus a comment of at most 65,535 (APPNOTE 4.3.16): search back that far only.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 0xffff); i--) {
    if (buf.readUInt32LE(i) === EOCD_SIG) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not an .xlsx workbook (no zip directory found)');
  const count = buf.readUInt16LE(eocd + 10);
  const cdSize = buf.readUInt32LE(eocd + 12);
  const cdOffset = buf.readUInt32LE(eocd + 16);
  // 0xFFFF / 0xFFFFFFFF defer to a ZIP64 record (APPNOTE 4.4.1.4): only archives over 4 GB need one.
  if (count === 0xffff || cdOffset === 0xffffffff || cdSize === 0xffffffff)
    throw new Error('a ZIP64 workbook (over 4 GB) is not supported');
  if (count > MAX_ZIP_ENTRIES)
    throw new Error(`the workbook holds ${count} parts, more than ${MAX_ZIP_ENTRIES}`);
  if (cdOffset + cdSize > eocd) throw new Error('damaged workbook: the zip directory lies outside the file');

  const entries: ZipEntry[] = [];
  let declared = 0;
  let p = cdOffset;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cdOffset + cdSize || buf.readUInt32LE(p) !== CDH_SIG)
      throw new Error('damaged workbook: bad zip directory entry');
    const flags = buf.readUInt16LE(p + 8);
    const method = buf.readUInt16LE(p + 10);
    const compressedSize = buf.readUInt32LE(p + 20);
    const size = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const localHeaderOffset = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, Math.min(p + 46 + nameLen, cdOffset + cdSize));
    p += 46 + nameLen + extraLen + commentLen;
    if (flags & 1) throw new Error(`${name} is encrypted: save the workbook without a password`);
    if (method !== 0 && method !== 8) throw new Error(`${name} uses zip compression method ${method}`);
    declared += size; // a 0xFFFFFFFF (ZIP64) size counts as 4 GB: far over any limit
    if (declared > maxInflatedBytes)
      throw new ImportLimitError(
        'maxInflatedBytes',
        maxInflatedBytes,
        `${file}: its zip directory declares more than ${maxInflatedBytes} bytes inflated (refused before inflating)`,
      );
    entries.push({ name, method, compressedSize, size, localHeaderOffset });
  }
  return entries;
}

/**
 * One entry inflated, never to more than its declared size: an entry that would inflate further is refused
 * at that point (413), so the sum checked by `readZipDirectory` bounds the memory actually used.
 */
export function inflateEntry(buf: Buffer, e: ZipEntry, file: string, maxInflatedBytes: number): Buffer {
  const h = e.localHeaderOffset;
  if (h + 30 > buf.length || buf.readUInt32LE(h) !== LFH_SIG)
    throw new Error(`damaged workbook: no zip entry where the directory puts ${e.name}`);
  const start = h + 30 + buf.readUInt16LE(h + 26) + buf.readUInt16LE(h + 28);
  const end = start + e.compressedSize;
  if (end > buf.length) throw new Error(`damaged workbook: ${e.name} runs past the end of the file`);
  const raw = buf.subarray(start, end);
  const lies = () =>
    new ImportLimitError(
      'maxInflatedBytes',
      maxInflatedBytes,
      `${file}: ${e.name} inflates to more than the ${e.size} bytes its zip directory declares (refused while inflating)`,
    );
  if (e.method === 0) {
    if (raw.length > e.size) throw lies();
    if (raw.length < e.size) throw new Error(`damaged workbook: ${e.name} is shorter than declared`);
    return raw;
  }
  let out: Buffer;
  try {
    out = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw lies();
    throw new Error(`damaged workbook: ${e.name}: ${(err as Error).message}`);
  }
  if (out.length !== e.size) {
    if (out.length > e.size) throw lies(); // only when e.size is 0 (maxOutputLength is at least 1)
    throw new Error(
      `damaged workbook: ${e.name} inflates to ${out.length} bytes, not the declared ${e.size}`,
    );
  }
  return out;
}

/**
 * The named parts as a new zip whose entries are stored (not compressed), in the order given, each inflated
 * only when the reader reaches it. It lets a streaming reader see the workbook's parts in the order it needs
 * them (shared strings before the sheets) while at most one part is inflated in memory at a time. A part that
 * cannot be produced (over a limit, damaged) ends the zip cleanly before it, and its error is kept in
 * `failed.error` for the caller to throw: an error event would not reach a reader the stream is piped to.
 */
export function storedZipStream(
  parts: readonly { name: string; data: () => Buffer }[],
  failed: { error?: unknown },
): Readable {
  function* chunks(): Generator<Buffer> {
    const central: Buffer[] = [];
    let offset = 0;
    let count = 0;
    for (const part of parts) {
      let data: Buffer;
      try {
        data = part.data();
      } catch (e) {
        failed.error = e;
        break;
      }
      const name = Buffer.from(part.name, 'utf8');
      const local = Buffer.alloc(30);
      local.writeUInt32LE(LFH_SIG, 0);
      local.writeUInt16LE(20, 4); // version needed: 2.0
      local.writeUInt16LE(0x0800, 6); // names are UTF-8 (APPNOTE 4.4.4 bit 11)
      local.writeUInt16LE(0, 8); // stored
      local.writeUInt16LE(0x21, 12); // 1980-01-01: the readers here ignore dates and CRCs
      local.writeUInt32LE(data.length, 18);
      local.writeUInt32LE(data.length, 22);
      local.writeUInt16LE(name.length, 26);
      const cdh = Buffer.alloc(46);
      cdh.writeUInt32LE(CDH_SIG, 0);
      cdh.writeUInt16LE(20, 4);
      cdh.writeUInt16LE(20, 6);
      cdh.writeUInt16LE(0x0800, 8);
      cdh.writeUInt16LE(0x21, 14);
      cdh.writeUInt32LE(data.length, 20);
      cdh.writeUInt32LE(data.length, 24);
      cdh.writeUInt16LE(name.length, 28);
      cdh.writeUInt32LE(offset, 42);
      central.push(cdh, name);
      count++;
      yield local;
      yield name;
      for (let i = 0; i < data.length; i += 64 * 1024) yield data.subarray(i, i + 64 * 1024);
      offset += 30 + name.length + data.length;
    }
    const cd = Buffer.concat(central);
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(EOCD_SIG, 0);
    eocd.writeUInt16LE(count, 8);
    eocd.writeUInt16LE(count, 10);
    eocd.writeUInt32LE(cd.length, 12);
    eocd.writeUInt32LE(offset, 16);
    yield cd;
    yield eocd;
  }
  return Readable.from(chunks(), { objectMode: false });
}
