import { describe, expect, it } from 'vitest';
import { type DeviceDay, usagePoints } from '../../rollup/rollup.js';

describe('packed daily usage', () => {
  it('splits a very large school into parts of at most 500 devices, each a string well under 64 KB', () => {
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
    }));
    const pts = usagePoints(0, 300, '330000/330100/330106', '3301060001', rows);
    const packed = pts.filter((p) => p.measurement === 'usage_packed_day');
    expect(packed.map((p) => (p.tags as { part: string }).part)).toEqual(['0', '1', '2']);
    expect(packed.map((p) => (p.fields as { n: number }).n)).toEqual([500, 500, 201]);
    for (const p of packed)
      expect(Buffer.byteLength((p.fields as { devices: string }).devices)).toBeLessThan(40_000);
    const first = (packed[0]!.fields as { devices: string }).devices.split('|')[0];
    expect(first).toBe(`dp-3301060001-${'x'.repeat(40)}-0:56,50,40,0,5`);
    expect(pts.filter((p) => p.measurement === 'usage_day')).toHaveLength(1_201);
  });

  it('writes a packed point for a school without classroom devices too, so a re-run overwrites old figures', () => {
    const packed = usagePoints(0, 300, '330000', 'S', []).filter((p) => p.measurement === 'usage_packed_day');
    expect(packed).toHaveLength(1);
    expect(packed[0]!.fields).toMatchObject({ devices: '', n: 0 });
  });
});
