import type { IfaceReading } from '../../contracts/messages.js';
import type { ColumnData, SnmpValue } from './client.js';
import { COLUMN, OPER_STATUS } from './oids.js';
import type { CounterSample } from './rates.js';

/** Counter64 arrives from net-snmp as a big-endian Buffer, Counter32/Gauge32 as numbers. */
export function toBigInt(v: SnmpValue | undefined): bigint | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? BigInt(v) : undefined;
  if (Buffer.isBuffer(v)) return v.length === 0 ? 0n : BigInt(`0x${v.toString('hex')}`);
  return undefined;
}

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
  const col = (c: string) => cols.get(c) ?? new Map<string, SnmpValue>();
  const indexes = [
    ...new Set([
      ...col(COLUMN.ifOperStatus).keys(),
      ...col(hc ? COLUMN.ifHCInOctets : COLUMN.ifInOctets).keys(),
    ]),
  ]
    .map(Number)
    .filter((i) => Number.isInteger(i) && i > 0)
    .sort((a, b) => a - b);

  const samples = new Map<number, CounterSample>();
  const rows: IfaceReading[] = [];
  for (const index of indexes) {
    const k = String(index);
    const inOctets = toBigInt(col(hc ? COLUMN.ifHCInOctets : COLUMN.ifInOctets).get(k));
    const outOctets = toBigInt(col(hc ? COLUMN.ifHCOutOctets : COLUMN.ifOutOctets).get(k));
    if (inOctets === undefined || outOctets === undefined) continue;
    const highSpeed = num(col(COLUMN.ifHighSpeed).get(k));
    const ifSpeed = num(col(COLUMN.ifSpeed).get(k));
    // ifSpeed saturates at 4,294,967,295 (RFC 2863): then only ifHighSpeed is right.
    const speedMbps =
      highSpeed !== undefined && highSpeed > 0
        ? highSpeed
        : ifSpeed !== undefined
          ? ifSpeed / 1e6
          : undefined;
    const bits: 32 | 64 = hc ? 64 : 32;
    const discontinuity = num(col(COLUMN.ifCounterDiscontinuityTime).get(k));
    samples.set(index, {
      inOctets,
      outOctets,
      bits,
      speedMbps,
      ...(discontinuity !== undefined ? { discontinuity } : {}),
    });
    const name =
      decodeText(col(COLUMN.ifName).get(k)) || decodeText(col(COLUMN.ifDescr).get(k)) || `if${index}`;
    const alias = decodeText(col(COLUMN.ifAlias).get(k));
    const counter = (c: string) => {
      const v = toBigInt(col(c).get(k));
      return v === undefined ? undefined : String(v);
    };
    const row: IfaceReading = {
      index,
      name: name.slice(0, 128),
      uplink: typeof uplink === 'number' ? uplink === index : uplink === name,
      operStatus: OPER_STATUS[num(col(COLUMN.ifOperStatus).get(k)) ?? 4] ?? 'unknown',
      counterBits: bits,
      inOctets: String(inOctets),
      outOctets: String(outOctets),
      inBps: null,
      outBps: null,
    };
    if (alias) row.alias = alias.slice(0, 255);
    if (speedMbps !== undefined) row.speedMbps = speedMbps;
    const ie = counter(COLUMN.ifInErrors);
    const oe = counter(COLUMN.ifOutErrors);
    const id = counter(COLUMN.ifInDiscards);
    if (ie !== undefined) row.inErrors = ie;
    if (oe !== undefined) row.outErrors = oe;
    if (id !== undefined) row.inDiscards = id;
    rows.push(row);
  }

  return { rows, samples };
}
