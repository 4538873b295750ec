import { describe, expect, it } from 'vitest';
import { U, USAGE_FIELDS, unpackCounters } from '../../common/figures/days.js';
import { type DeviceDay, PACK_PER_POINT, PACKED_COUNTERS, usagePoints } from '../../rollup/rollup.js';

describe('packed daily usage', () => {
  it('splits a very large school into parts of at most 400 devices, each a string well under 64 KB', () => {
    const rows: DeviceDay[] = Array.from({ length: 1_201 }, (_, i) => ({
      device: `dp-3301060001-${'x'.repeat(40)}-${i}`,
      classroom: `c${i}`,
      kind: 'panel',
      teaching: 56,
      online: 56,
      on: 50,
      use: 40,
      faulty: 0,
      periods: 7,
      periodsUsed: 5,
      unused: 10,
      leftOn: 132,
      activity: 56,
    }));
    const pts = usagePoints(0, 300, '330000/330100/330106', '3301060001', rows);
    const packed = pts.filter((p) => p.measurement === 'usage_packed_day');
    expect(packed.map((p) => (p.tags as { part: string }).part)).toEqual(['0', '1', '2', '3']);
    expect(packed.map((p) => (p.fields as { n: number }).n)).toEqual([400, 400, 400, 1]);
    for (const p of packed)
      expect(Buffer.byteLength((p.fields as { devices: string }).devices)).toBeLessThan(40_000);
    const first = (packed[0]!.fields as { devices: string }).devices.split('|')[0];
    expect(first).toBe(`dp-3301060001-${'x'.repeat(40)}-0:56,50,40,0,5,10,132,56`);
    expect(pts.filter((p) => p.measurement === 'usage_day')).toHaveLength(1_201);
  });

  it('keeps a part under 64 KB at its longest: 64-character ids, every counter at five digits', () => {
    const rows: DeviceDay[] = Array.from({ length: PACK_PER_POINT }, (_, i) => ({
      device: `${i}`.padStart(64, 'd'),
      classroom: 'c',
      kind: 'panel',
      teaching: 32_767,
      online: 32_767,
      on: 32_767,
      use: 32_767,
      faulty: 32_767,
      periods: 32_767,
      periodsUsed: 32_767,
      unused: 32_767,
      leftOn: 32_767,
      activity: 32_767,
    }));
    const [packed] = usagePoints(0, 60, '330000', 'S', rows).filter(
      (p) => p.measurement === 'usage_packed_day',
    );
    expect(Buffer.byteLength((packed!.fields as { devices: string }).devices)).toBeLessThan(64 * 1024 - 1);
  });

  it('writes a packed point for a school without classroom devices too, so a re-run overwrites old figures', () => {
    const packed = usagePoints(0, 300, '330000', 'S', []).filter((p) => p.measurement === 'usage_packed_day');
    expect(packed).toHaveLength(1);
    expect(packed[0]!.fields).toMatchObject({ devices: '', n: 0 });
  });
});

describe('packed counters, old and new', () => {
  it('packs the counters in the order the day cache reads them', () => {
    expect(PACKED_COUNTERS.length).toBe(USAGE_FIELDS.length);
    const row: DeviceDay = {
      device: 'pn-1',
      classroom: 'c1',
      kind: 'panel',
      teaching: 96,
      online: 90,
      on: 90,
      use: 18,
      faulty: 3,
      periods: 8,
      periodsUsed: 2,
      unused: 72,
      leftOn: 30,
      activity: 88,
    };
    const [packed] = usagePoints(0, 300, '330000', 'S', [row]).filter(
      (p) => p.measurement === 'usage_packed_day',
    );
    const item = (packed!.fields as { devices: string }).devices;
    const counters = unpackCounters(item.slice(item.indexOf(':') + 1))!;
    expect(counters[U.online]).toBe(90);
    expect(counters[U.on]).toBe(90);
    expect(counters[U.use]).toBe(18);
    expect(counters[U.faulty]).toBe(3);
    expect(counters[U.periodsUsed]).toBe(2);
    expect(counters[U.unused]).toBe(72);
    expect(counters[U.leftOn]).toBe(30);
    expect(counters[U.activity]).toBe(88);
  });

  it('reads a row rolled up before #16 (5 counters): unused is on less in use, no left-on time, use by power', () => {
    expect(unpackCounters('56,50,40,0,5')).toEqual([56, 50, 40, 0, 5, 10, 0, 0]);
    // in use never exceeds on in a consistent row; a row that says otherwise has no negative unused time
    expect(unpackCounters('56,10,40,0,5')).toEqual([56, 10, 40, 0, 5, 0, 0, 0]);
  });

  it('reads a later format by its first eight counters, and refuses what is neither', () => {
    expect(unpackCounters('1,2,3,4,5,6,7,8,9,10')).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(unpackCounters('1,2,3,4,5,6')).toBeNull();
    expect(unpackCounters('1,2,3,4')).toBeNull();
    expect(unpackCounters('')).toBeNull();
    // Damaged numbers are 0, never negative or beyond a 16-bit counter.
    expect(unpackCounters('x,-3,99999,1e400,NaN,0,0,0')).toEqual([0, 0, 32_767, 0, 0, 0, 0, 0]);
  });
});
