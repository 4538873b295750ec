import { describe, expect, it } from 'vitest';
import type { ColumnData, SnmpValue } from '../../../agents/snmp/client.js';
import { joinColumns } from '../../../agents/snmp/join.js';
import { COLUMN } from '../../../agents/snmp/oids.js';

/** The poller's column join (agents/snmp/join.ts): what a device answered → one reading per interface. */
type Columns = Partial<Record<keyof typeof COLUMN, Record<string, SnmpValue>>>;
const cols = (c: Columns): ColumnData =>
  new Map(
    Object.entries(c).map(([name, rows]) => [
      COLUMN[name as keyof typeof COLUMN],
      new Map(Object.entries(rows as Record<string, SnmpValue>)),
    ]),
  );
const text = (s: string) => Buffer.from(s, 'utf8');

describe('joinColumns', () => {
  const cases: {
    name: string;
    hc: boolean;
    uplink?: string | number;
    columns: Columns;
    rows: Record<string, unknown>[];
    samples: [number, Record<string, unknown>][];
  }[] = [
    {
      name: '64-bit counters, names, speeds, the uplink by name',
      hc: true,
      uplink: 'Gi0/1',
      columns: {
        ifOperStatus: { 1: 1, 2: 2 },
        ifHCInOctets: { 1: 1_000n, 2: 5n },
        ifHCOutOctets: { 1: 2_000n, 2: 6n },
        ifName: { 1: text('Gi0/1'), 2: text('Gi0/2') },
        ifHighSpeed: { 1: 1_000, 2: 0 },
        ifSpeed: { 2: 100_000_000 },
        ifAlias: { 1: text('联通专线') },
        ifInErrors: { 1: 3 },
      },
      rows: [
        {
          index: 1,
          name: 'Gi0/1',
          alias: '联通专线',
          uplink: true,
          operStatus: 'up',
          counterBits: 64,
          inOctets: '1000',
          outOctets: '2000',
          speedMbps: 1_000,
          inErrors: '3',
        },
        {
          index: 2,
          name: 'Gi0/2',
          uplink: false,
          operStatus: 'down',
          counterBits: 64,
          inOctets: '5',
          outOctets: '6',
          speedMbps: 100,
        },
      ],
      samples: [
        [1, { inOctets: 1_000n, outOctets: 2_000n, bits: 64, speedMbps: 1_000 }],
        [2, { inOctets: 5n, outOctets: 6n, bits: 64, speedMbps: 100 }],
      ],
    },
    {
      name: 'no ifXTable: the 32-bit counters, ifDescr for the name, the uplink by index',
      hc: false,
      uplink: 7,
      columns: {
        ifInOctets: { 7: 10, 8: 20 },
        ifOutOctets: { 7: 11, 8: 21 },
        ifDescr: { 7: text('eth0') },
        ifSpeed: { 7: 4_294_967_295 },
      },
      rows: [
        {
          index: 7,
          name: 'eth0',
          uplink: true,
          operStatus: 'unknown',
          counterBits: 32,
          inOctets: '10',
          outOctets: '11',
          speedMbps: 4_294.967295,
        },
        { index: 8, name: 'if8', uplink: false, counterBits: 32, inOctets: '20', outOctets: '21' },
      ],
      samples: [
        [7, { bits: 32, speedMbps: 4_294.967295 }],
        [8, { bits: 32, speedMbps: undefined }],
      ],
    },
    {
      name: 'rows without both counters, and indexes that are not positive integers, are left out',
      hc: true,
      columns: {
        ifOperStatus: { 0: 1, 3: 1, 4: 1, x: 1 },
        ifHCInOctets: { 3: 1n, 4: 1n, '-1': 1n },
        ifHCOutOctets: { 3: 2n },
        ifCounterDiscontinuityTime: { 3: 500 },
      },
      rows: [{ index: 3, name: 'if3', counterBits: 64, inOctets: '1', outOctets: '2' }],
      samples: [[3, { inOctets: 1n, outOctets: 2n, discontinuity: 500 }]],
    },
    {
      name: 'a GBK ifAlias (Chinese switches) is decoded, long names are cut to 128 characters',
      hc: true,
      columns: {
        ifHCInOctets: { 1: 0n },
        ifHCOutOctets: { 1: 0n },
        ifName: { 1: text('x'.repeat(300)) },
        ifAlias: { 1: Buffer.from([0xd6, 0xd0, 0xce, 0xc4]) }, // 中文 in GBK
      },
      rows: [{ index: 1, name: 'x'.repeat(128), alias: '中文' }],
      samples: [[1, { bits: 64 }]],
    },
  ];

  for (const c of cases)
    it(c.name, () => {
      const { rows, samples } = joinColumns(cols(c.columns), c.hc, c.uplink);
      expect(rows).toHaveLength(c.rows.length);
      rows.forEach((r, i) => {
        expect(r).toMatchObject({ inBps: null, outBps: null, ...c.rows[i] });
      });
      expect([...samples.keys()]).toEqual(c.samples.map(([i]) => i));
      for (const [i, s] of c.samples) expect(samples.get(i)).toMatchObject(s);
    });

  it('a row with no operStatus answer is unknown, not up', () => {
    const { rows } = joinColumns(
      cols({ ifHCInOctets: { 1: 0n }, ifHCOutOctets: { 1: 0n } }),
      true,
      undefined,
    );
    expect(rows[0]!.operStatus).toBe('unknown');
    expect(rows[0]!.uplink).toBe(false);
  });
});
