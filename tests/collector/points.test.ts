import { describe, expect, it } from 'vitest';
import { ifacePoints, telemetryPoints } from '../../collector/points.js';
import { toLine } from '../../common/storage/line-protocol.js';
import { EXAMPLES } from '../../contracts/examples.js';
import type { AnyPoint } from '../../contracts/influx.js';
import type { IfaceReadings, Telemetry } from '../../contracts/messages.js';

// The per-device tags objects of collector/points.ts are frozen and reused, and toLine remembers their line
// prefix by identity (issue #18). Every line must be what the uncached path (fresh, unfrozen tags) gives.
const uncached = (p: AnyPoint) => toLine({ ...p, tags: { ...p.tags } } as AnyPoint);

describe('per-device cached line prefixes', () => {
  const t = EXAMPLES.telemetry as Telemetry;

  it('reuses one frozen tags object per device and series, with the lines of the uncached path', () => {
    const info = { kind: 'panel' as const, classroom: 'c0701', region: '330000/330100' };
    const a = telemetryPoints('s-cache-1', 'd1', t, info);
    const b = telemetryPoints('s-cache-1', 'd1', { ...t, ts: t.ts + 1 }, info);
    expect(a.map((p) => p.measurement)).toEqual(['host', 'nic', 'display']);
    for (let i = 0; i < a.length; i++) {
      expect(b[i]!.tags).toBe(a[i]!.tags);
      expect(Object.isFrozen(a[i]!.tags)).toBe(true);
      expect(toLine(a[i]!)).toBe(uncached(a[i]!));
      expect(toLine(b[i]!)).toBe(uncached(b[i]!));
    }
    expect(toLine(a[1]!)).toMatch(
      /^nic,classroom=c0701,device=d1,kind=panel,nic=Ethernet,region=330000\/330100,school=s-cache-1 /,
    );
  });

  it('writes NIC byte counters as InfluxDB int64, the upper half of the unsigned range wrapped', () => {
    const info = { kind: 'panel' as const };
    const nic = (rxBytes: string) =>
      toLine(
        telemetryPoints(
          's-cache-4',
          'd1',
          { ...t, host: { ...t.host!, nics: [{ ...t.host!.nics[0]!, rxBytes }] } },
          info,
        )[1]!,
      );
    expect(nic('912345678')).toContain(' rx_bytes=912345678i,');
    expect(nic('9223372036854775807')).toContain(' rx_bytes=9223372036854775807i,');
    expect(nic('18446744073709551615')).toContain(' rx_bytes=-1i,');
    expect(nic('18446744073709551000')).toContain(` rx_bytes=${18446744073709551000n - (1n << 64n)}i,`);
  });

  it('follows the registry: a device moved to another classroom and region gets new tags at once', () => {
    const before = telemetryPoints('s-cache-2', 'd1', t, {
      kind: 'panel',
      classroom: 'c1',
      region: '330000/1',
    });
    const after = telemetryPoints('s-cache-2', 'd1', t, {
      kind: 'panel',
      classroom: 'c2',
      region: '330000/2',
    });
    const unassigned = telemetryPoints('s-cache-2', 'd1', t, { kind: 'teacher_pc', region: 'unassigned' });
    expect(toLine(before[0]!)).toContain('classroom=c1,device=d1,kind=panel,region=330000/1,');
    expect(toLine(after[0]!)).toContain('classroom=c2,device=d1,kind=panel,region=330000/2,');
    expect(toLine(after[1]!)).toContain('classroom=c2,');
    expect(toLine(unassigned[0]!)).toMatch(
      /^host,device=d1,kind=teacher_pc,region=unassigned,school=s-cache-2 /,
    );
    expect(toLine(unassigned[1]!)).not.toContain('classroom=');
  });

  it('escapes names a device sends (NIC, interface) as the uncached path does, on every use', () => {
    const hostile = 'Wi-Fi 2,x=y\\';
    const m: Telemetry = { ...t, host: { ...t.host!, nics: [{ ...t.host!.nics[0]!, name: hostile }] } };
    const info = { kind: 'panel' as const };
    for (let k = 0; k < 2; k++) {
      const nic = telemetryPoints('s-cache-3', 'd1', m, info)[1]!;
      expect(toLine(nic)).toBe(uncached(nic));
      expect(toLine(nic)).toContain('nic=Wi-Fi\\ 2\\,x\\=y,school=s-cache-3 ');
    }
    const r = EXAMPLES.iface as IfaceReadings;
    const iface = { ...r, ifaces: [{ ...r.ifaces[0]!, name: 'Gi0/1 uplink', uplink: false }] };
    for (let k = 0; k < 2; k++) {
      const pts = ifacePoints('s-cache-3', 'gw', iface, { kind: 'router' });
      expect(toLine(pts[1]!)).toBe(uncached(pts[1]!));
      expect(toLine(pts[1]!)).toContain('ifname=Gi0/1\\ uplink,');
      expect(toLine(pts[1]!)).toContain('uplink=false');
    }
    // The same name as an uplink is another series.
    const up = ifacePoints(
      's-cache-3',
      'gw',
      { ...iface, ifaces: [{ ...iface.ifaces[0]!, uplink: true }] },
      { kind: 'router' },
    );
    expect(toLine(up[1]!)).toContain('uplink=true');
  });

  it('a frozen tags object with a tag the measurement does not define is still refused', () => {
    const p = {
      measurement: 'host',
      tags: Object.freeze({ school: 's', device: 'd', kind: 'panel', evil: 'x' }),
      fields: { cpu_pct: 1 },
      ts: 1,
    };
    expect(() => toLine(p as unknown as AnyPoint)).toThrow(/tag "evil" is not defined/);
    expect(() => toLine(p as unknown as AnyPoint)).toThrow(/tag "evil" is not defined/);
  });
});
