import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readCredentialsFile, type SnmpCredential } from '../../../agents/snmp/credentials.js';
import { deriveTargets, probeTargets, type RegistryTargetDefaults } from '../../../agents/snmp/targets.js';
import { RegistryIndex } from '../../../common/registry/store.js';
import { shardOf, shardSchema } from '../../../common/shard.js';
import { type Device, type Registry, registrySchema, type School } from '../../../contracts/registry.js';
import { UPLINK_REGIONS, uplinkSchool } from '../../helpers/uplinks.js';

const DEFAULTS: RegistryTargetDefaults = {
  port: 161,
  intervalS: 60,
  timeoutMs: 2000,
  retries: 1,
  maxRepetitions: 25,
};
const V2: SnmpCredential = { version: '2c', community: 'c0mmunity-xihu' };
const V3: SnmpCredential = {
  version: '3',
  user: 'cfm',
  level: 'authPriv',
  authProtocol: 'sha256',
  authKey: 'authkey-123',
  privProtocol: 'aes',
  privKey: 'privkey-123',
};
const CREDS = new Map<string, SnmpCredential>([
  ['xihu-v2', V2],
  ['xihu-v3', V3],
]);
const ALL = shardSchema.parse({});

const REGIONS = UPLINK_REGIONS;
const school = uplinkSchool;
function router(schoolId: string, extra: Partial<Device> = {}): Device {
  return {
    id: 'gw',
    school: schoolId,
    kind: 'router',
    mgmtAddress: '10.1.0.1',
    credentialRef: 'xihu-v2',
    ...extra,
  };
}
function index(schools: School[], devices: Device[]): RegistryIndex {
  const r: Registry = registrySchema.parse({ regions: REGIONS, schools, devices });
  return new RegistryIndex(r);
}

describe('deriveTargets', () => {
  // One school and its devices per row: what is polled, or why not.
  const cases: {
    name: string;
    school?: Partial<School>;
    device?: Partial<Device>;
    creds?: ReadonlyMap<string, SnmpCredential> | undefined;
    expect: { target?: Record<string, unknown>; skip?: string; none?: true };
  }[] = [
    {
      name: 'v2c router, snmpVersion defaulted',
      expect: {
        target: {
          device: 'gw',
          school: '3301060001',
          region: '330000/330100/330106',
          kind: 'router',
          address: '10.1.0.1',
          port: 161,
          version: '2c',
          community: 'c0mmunity-xihu',
          uplink: 'GigabitEthernet0/0/1',
          intervalS: 60,
        },
      },
    },
    {
      name: 'v3 switch with an ifIndex uplink',
      school: { uplinkInterface: 3 },
      device: {
        kind: 'switch',
        snmpVersion: '3',
        credentialRef: 'xihu-v3',
        mgmtAddress: 'gw.school.example',
      },
      expect: {
        target: {
          kind: 'switch',
          version: '3',
          address: 'gw.school.example',
          uplink: 3,
          v3: { user: 'cfm', authKey: 'authkey-123', privKey: 'privkey-123', authProtocol: 'sha256' },
        },
      },
    },
    {
      name: 'IPv6 management address',
      device: { mgmtAddress: 'fd00::1' },
      expect: { target: { address: 'fd00::1' } },
    },
    {
      name: "snmpPort replaces the poller's default port",
      device: { snmpPort: 16_161 },
      expect: { target: { address: '10.1.0.1', port: 16_161, intervalS: 60 } },
    },
    {
      name: 'no credentialRef: probed only, not a skip',
      device: { credentialRef: undefined },
      expect: { none: true },
    },
    { name: 'no mgmtAddress: not polled', device: { mgmtAddress: undefined }, expect: { none: true } },
    {
      name: 'not a network device',
      device: { kind: 'panel' },
      school: { uplinkDevice: undefined },
      expect: { none: true },
    },
    { name: 'unknown credential', device: { credentialRef: 'nope' }, expect: { skip: 'unknown-credential' } },
    { name: 'no credentials file', creds: undefined, expect: { skip: 'unknown-credential' } },
    {
      name: 'v3 credential for a 2c device',
      device: { credentialRef: 'xihu-v3' },
      expect: { skip: 'version-mismatch' },
    },
    {
      name: '2c credential for a v3 device',
      device: { snmpVersion: '3', credentialRef: 'xihu-v2' },
      expect: { skip: 'version-mismatch' },
    },
    {
      name: 'not the uplink device',
      school: { uplinkDevice: undefined, uplinkInterface: undefined },
      expect: { skip: 'not-uplink' },
    },
    {
      name: 'uplink without interface',
      school: { uplinkInterface: undefined },
      expect: { skip: 'no-uplink-interface' },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const idx = index([school('3301060001', c.school)], [router('3301060001', c.device)]);
      const d = deriveTargets(idx, 'creds' in c ? c.creds : CREDS, ALL, DEFAULTS);
      if (c.expect.target) {
        expect(d.skipped).toEqual([]);
        expect(d.targets).toHaveLength(1);
        expect(d.targets[0]!.row).toBe(1);
        expect(d.targets[0]!.target).toMatchObject(c.expect.target);
      } else if (c.expect.skip) {
        expect(d.targets).toEqual([]);
        expect(d.skipped).toEqual([
          expect.objectContaining({ school: '3301060001', device: 'gw', row: 1, reason: c.expect.skip }),
        ]);
        // The reason names the field, never a secret.
        expect(JSON.stringify(d.skipped)).not.toMatch(/c0mmunity|authkey|privkey/);
      } else expect(d).toEqual({ targets: [], skipped: [] });
    });
  }

  it('shards by region and school hash, as configured targets are', () => {
    const schools = [
      ...Array.from({ length: 20 }, (_, i) => school(`33010600${String(i).padStart(2, '0')}`)),
      school('3301080001', { region: '330108' }),
    ];
    const idx = index(
      schools,
      schools.map((s) => router(s.id)),
    );
    const xihu = deriveTargets(
      idx,
      CREDS,
      shardSchema.parse({ regions: ['330000/330100/330106'] }),
      DEFAULTS,
    );
    expect(xihu.targets.map((t) => t.target.school)).toEqual(schools.slice(0, 20).map((s) => s.id));
    const half = deriveTargets(idx, CREDS, shardSchema.parse({ index: 1, count: 2 }), DEFAULTS);
    expect(half.targets.map((t) => t.target.school)).toEqual(
      schools.filter((s) => shardOf(s.id, 2) === 1).map((s) => s.id),
    );
    // A skipped device outside the shard is not this poller's to report.
    const bad = index(
      [school('3301080001', { region: '330108' })],
      [router('3301080001', { credentialRef: 'x' })],
    );
    expect(
      deriveTargets(bad, CREDS, shardSchema.parse({ regions: ['330000/330100/330106'] }), DEFAULTS).skipped,
    ).toEqual([]);
  });

  it('10,000 schools derive in well under a second', () => {
    const schools = Array.from({ length: 10_000 }, (_, i) => school(`3${String(i).padStart(9, '0')}`));
    const idx = index(
      schools,
      schools.map((s, i) => router(s.id, i % 10 === 0 ? { credentialRef: 'missing' } : {})),
    );
    const started = performance.now();
    const d = deriveTargets(idx, CREDS, ALL, DEFAULTS);
    const ms = performance.now() - started;
    expect(d.targets).toHaveLength(9_000);
    expect(d.skipped).toHaveLength(1_000);
    expect(d.skipped[0]).toMatchObject({ row: 1, reason: 'unknown-credential' });
    expect(ms).toBeLessThan(1_000);
  });
});

describe('probeTargets', () => {
  it('one per school whose uplinkDevice has probeAddress ?? mgmtAddress, in the shard', () => {
    const idx = index(
      [
        school('3301060001'),
        school('3301060002'),
        school('3301060003'),
        school('3301060004', { uplinkDevice: undefined, uplinkInterface: undefined }),
        school('3301080001', { region: '330108' }),
      ],
      [
        router('3301060001', { probeAddress: '203.0.113.1' }),
        // An operator-run router: no credential, probed at its management address.
        router('3301060002', { credentialRef: undefined }),
        router('3301060003', { mgmtAddress: undefined }),
        router('3301060004'),
        router('3301080001'),
      ],
    );
    expect(probeTargets(idx, shardSchema.parse({ regions: ['330000/330100/330106'] }))).toEqual([
      {
        school: '3301060001',
        device: 'gw',
        region: '330000/330100/330106',
        address: '203.0.113.1',
        method: 'icmp',
        kind: 'router',
      },
      {
        school: '3301060002',
        device: 'gw',
        region: '330000/330100/330106',
        address: '10.1.0.1',
        method: 'icmp',
        kind: 'router',
      },
    ]);
    expect(probeTargets(idx, ALL)).toHaveLength(3);
  });

  // The uplink device's probe settings per row: what is probed.
  const methods: { name: string; device: Partial<Device>; expect: Record<string, unknown> }[] = [
    { name: 'no method: icmp, no port', device: {}, expect: { method: 'icmp', address: '10.1.0.1' } },
    { name: 'icmp said', device: { probeMethod: 'icmp' }, expect: { method: 'icmp' } },
    {
      name: 'tcp to probePort at the probe address',
      device: { probeMethod: 'tcp', probePort: 22, probeAddress: '203.0.113.1' },
      expect: { method: 'tcp', port: 22, address: '203.0.113.1' },
    },
    {
      name: 'tcp at the management address; snmpPort is not the probe port',
      device: { probeMethod: 'tcp', probePort: 443, snmpPort: 1161 },
      expect: { method: 'tcp', port: 443, address: '10.1.0.1' },
    },
  ];
  for (const c of methods) {
    it(`probe method: ${c.name}`, () => {
      const t = probeTargets(index([school('3301060001')], [router('3301060001', c.device)]), ALL);
      expect(t).toEqual([
        {
          school: '3301060001',
          device: 'gw',
          region: '330000/330100/330106',
          address: '10.1.0.1',
          kind: 'router',
          ...c.expect,
        },
      ]);
    });
  }
});

describe('deploy/examples/credentials/poller-credentials.yaml', () => {
  it('is a valid credentials file with placeholder secrets only', () => {
    const path = fileURLToPath(
      new URL('../../../deploy/examples/credentials/poller-credentials.yaml', import.meta.url),
    );
    const creds = readCredentialsFile(path);
    expect([...creds.keys()]).toEqual(['xihu-routers-v2', 'xihu-routers-v3']);
    for (const c of creds.values()) {
      const secrets = c.version === '2c' ? [c.community] : [c.authKey, c.privKey];
      for (const s of secrets) expect(s).toMatch(/^REPLACE-with-/);
    }
  });
});
