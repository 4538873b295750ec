import type { IfaceReading } from '../../contracts/messages.js';
import type { ColumnData, SnmpValue } from './client.js';
import { COLUMN, OPER_STATUS } from './oids.js';
import type { CounterSample } from './rates.js';

/** Counter64 arrives from net-snmp as a big-endian Buffer, Counter32/Gauge32 as numbers. */
export function toBigInt(v: SnmpValue | undefined): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? BigInt(v) : undefined;
  if (Buffer.isBuffer(v)) {
    // Counter64 is 8 bytes or fewer (BER drops leading zeros, net-snmp hands them over as they came).
    if (v.length === 8) return v.readBigUInt64BE(0);
    if (v.length <= 6) return v.length === 0 ? 0n : BigInt(v.readUIntBE(0, v.length));
    return BigInt(`0x${v.toString('hex')}`);
  }
  return undefined;
}

/** A counter as the decimal string a reading carries (`counterSchema`); numbers need no bigint on the way. */
function counterString(v: SnmpValue | undefined): string | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? String(v) : undefined;
  const b = toBigInt(v);
  return b === undefined ? undefined : String(b);
}

const NO_ROWS: ReadonlyMap<string, SnmpValue> = new Map();

const utf8 = new TextDecoder('utf-8', { fatal: true });
const gb18030 = new TextDecoder('gb18030');

/**
 * OCTET STRING → text. Chinese switches (Huawei, H3C, Ruijie) often return ifAlias in GBK, so anything that is
 * not valid UTF-8 is read as GB18030 (a superset of GBK).
 */
export function decodeText(v: SnmpValue | undefined): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (!Buffer.isBuffer(v)) return String(v);
  try {
    return utf8.decode(v);
  } catch {
    return gb18030.decode(v);
  }
}

export const num = (v: SnmpValue | undefined) => (typeof v === 'number' ? v : undefined);

/**
 * One poll's walked columns → one reading per interface, and the counter samples the rate tracker needs.
 * Pure: what a device answered in, rows out (table-tested in tests/agents/snmp/join.test.ts).
 *
 * An interface is a positive integer index seen in ifOperStatus or the in-octets column; one without both
 * octet counters is left out. `hc`: the 64-bit ifXTable counters were answered (else the 32-bit ifTable ones).
 * The name is ifName, else ifDescr, else `if{index}`; the speed ifHighSpeed (Mb/s) when above 0, else ifSpeed,
 * which saturates at 4,294,967,295 b/s (RFC 2863). `uplink` (a target's ifName or ifIndex) marks its row.
 */
export function joinColumns(
  cols: ColumnData,
  hc: boolean,
  uplink: string | number | undefined,
): { rows: IfaceReading[]; samples: Map<number, CounterSample> } {
  const col = (c: string): ReadonlyMap<string, SnmpValue> => cols.get(c) ?? NO_ROWS;
  // Each column's rows looked up once per poll, not once per interface.
  const operCol = col(COLUMN.ifOperStatus);
  const inCol = col(hc ? COLUMN.ifHCInOctets : COLUMN.ifInOctets);
  const outCol = col(hc ? COLUMN.ifHCOutOctets : COLUMN.ifOutOctets);
  const highSpeedCol = col(COLUMN.ifHighSpeed);
  const speedCol = col(COLUMN.ifSpeed);
  const discontinuityCol = col(COLUMN.ifCounterDiscontinuityTime);
  const nameCol = col(COLUMN.ifName);
  const descrCol = col(COLUMN.ifDescr);
  const aliasCol = col(COLUMN.ifAlias);
  const inErrorsCol = col(COLUMN.ifInErrors);
  const outErrorsCol = col(COLUMN.ifOutErrors);
  const inDiscardsCol = col(COLUMN.ifInDiscards);

  const keys = new Set<string>(operCol.keys());
  for (const k of inCol.keys()) keys.add(k);
  const indexes: number[] = [];
  for (const k of keys) {
    const i = Number(k);
    if (Number.isInteger(i) && i > 0) indexes.push(i);
  }
  indexes.sort((a, b) => a - b);

  const samples = new Map<number, CounterSample>();
  const rows: IfaceReading[] = [];
  const bits: 32 | 64 = hc ? 64 : 32;
  for (const index of indexes) {
    const k = String(index);
    const inOctets = toBigInt(inCol.get(k));
    const outOctets = toBigInt(outCol.get(k));
    if (inOctets === undefined || outOctets === undefined) continue;
    const highSpeed = num(highSpeedCol.get(k));
    const ifSpeed = num(speedCol.get(k));
    // ifSpeed saturates at 4,294,967,295 (RFC 2863): then only ifHighSpeed is right.
    const speedMbps =
      highSpeed !== undefined && highSpeed > 0
        ? highSpeed
        : ifSpeed !== undefined
          ? ifSpeed / 1e6
          : undefined;
    const discontinuity = num(discontinuityCol.get(k));
    const sample: CounterSample = { inOctets, outOctets, bits, speedMbps };
    if (discontinuity !== undefined) sample.discontinuity = discontinuity;
    samples.set(index, sample);
    const name = decodeText(nameCol.get(k)) || decodeText(descrCol.get(k)) || `if${index}`;
    const alias = decodeText(aliasCol.get(k));
    const row: IfaceReading = {
      index,
      name: name.slice(0, 128),
      uplink: typeof uplink === 'number' ? uplink === index : uplink === name,
      operStatus: OPER_STATUS[num(operCol.get(k)) ?? 4] ?? 'unknown',
      counterBits: bits,
      inOctets: String(inOctets),
      outOctets: String(outOctets),
      inBps: null,
      outBps: null,
    };
    if (alias) row.alias = alias.slice(0, 255);
    if (speedMbps !== undefined) row.speedMbps = speedMbps;
    const ie = counterString(inErrorsCol.get(k));
    const oe = counterString(outErrorsCol.get(k));
    const id = counterString(inDiscardsCol.get(k));
    if (ie !== undefined) row.inErrors = ie;
    if (oe !== undefined) row.outErrors = oe;
    if (id !== undefined) row.inDiscards = id;
    rows.push(row);
  }

  return { rows, samples };
}
