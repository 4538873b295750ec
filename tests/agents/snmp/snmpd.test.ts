import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Snmpd } from '../../../dev/snmpd.js';

// The agent is checked with net-snmp's own command-line tools, independently of the poller's SNMP library.
const COMMUNITY = 'cfm-test';
const V3 = { user: 'cfmuser', authPassword: 'authpass123', privPassword: 'privpass123' };
const OID = {
  sysUpTime: '1.3.6.1.2.1.1.3.0', // SNMPv2-MIB::sysUpTime.0
  sysName: '1.3.6.1.2.1.1.5.0', // SNMPv2-MIB::sysName.0
  ifName: '1.3.6.1.2.1.31.1.1.1.1', // IF-MIB::ifName
  ifHCInOctets: '1.3.6.1.2.1.31.1.1.1.6', // IF-MIB::ifHCInOctets
};

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a net-snmp tool without a shell; a non-zero exit is a result, not an exception. */
function run(tool: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(tool, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const snmpd = new Snmpd({ community: COMMUNITY, v3: V3, sysName: 'gw-test' });
let startMs = 0;
beforeAll(async () => {
  const t0 = performance.now();
  await snmpd.start();
  startMs = performance.now() - t0;
});
afterAll(async () => {
  await snmpd.dispose();
});

const v2c = (community = COMMUNITY) => ['-v2c', '-c', community, '-t', '0.5', '-r', '0'];
const v3 = (authPassword = V3.authPassword) => [
  ...['-v3', '-l', 'authPriv', '-u', V3.user, '-a', 'SHA', '-A', authPassword],
  ...['-x', 'AES', '-X', V3.privPassword, '-t', '0.5', '-r', '0'],
];

describe('Snmpd (real net-snmp agent on loopback)', () => {
  it('starts quickly on a loopback UDP port', () => {
    expect(snmpd.port).toBeGreaterThan(0);
    expect(snmpd.address).toBe(`127.0.0.1:${snmpd.port}`);
    expect(startMs).toBeLessThan(15_000);
  });

  it('answers a v2c GET of sysName.0 with the configured name', async () => {
    const r = await run('snmpget', [...v2c(), '-Oqv', snmpd.address, OID.sysName]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().replace(/^"|"$/g, '')).toBe('gw-test');
  });

  it('serves IF-MIB ifXTable: ifName includes lo, with an ifHCInOctets counter', async () => {
    const names = await run('snmpbulkwalk', [...v2c(), '-On', snmpd.address, OID.ifName]);
    expect(names.code, names.stderr).toBe(0);
    // .1.3.6.1.2.1.31.1.1.1.1.<ifIndex> = STRING: "lo"
    const byName = new Map(
      [...names.stdout.matchAll(/^\.1\.3\.6\.1\.2\.1\.31\.1\.1\.1\.1\.(\d+) = STRING: "?([^"\n]*)"?$/gm)].map(
        (m) => [m[2], m[1]],
      ),
    );
    const loIndex = byName.get('lo');
    expect(loIndex, names.stdout).toBeDefined();

    const octets = await run('snmpget', [...v2c(), '-On', snmpd.address, `${OID.ifHCInOctets}.${loIndex}`]);
    expect(octets.code, octets.stderr).toBe(0);
    expect(octets.stdout).toMatch(/ = Counter64: \d+$/m);
  });

  it('answers SNMPv3 authPriv (SHA + AES) for the configured user', async () => {
    const r = await run('snmpget', [...v3(), '-On', snmpd.address, OID.sysUpTime]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\.1\.3\.6\.1\.2\.1\.1\.3\.0 = Timeticks: \(\d+\)/);
  });

  it('does not answer a wrong community (the request times out)', async () => {
    const r = await run('snmpget', [...v2c('not-the-community'), '-On', snmpd.address, OID.sysUpTime]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/Timeout/);
  });

  it('refuses a wrong v3 authentication password', async () => {
    const r = await run('snmpget', [...v3('wrong-authpass'), '-On', snmpd.address, OID.sysUpTime]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    // net-snmp 5.9: "snmpget: Authentication failure (incorrect password, community or key)".
    expect(r.stderr).toMatch(/authentication|timeout/i);
  });

  it('restarts on the same port with the same v3 user, sysUpTime from zero', async () => {
    const port = snmpd.port;
    await snmpd.stop();
    const down = await run('snmpget', [...v2c(), '-On', snmpd.address, OID.sysUpTime]);
    expect(down.code).not.toBe(0);
    await snmpd.start();
    expect(snmpd.port).toBe(port);
    const r = await run('snmpget', [...v3(), '-Oqvt', snmpd.address, OID.sysUpTime]);
    expect(r.code, r.stderr).toBe(0);
    // -Oqvt: sysUpTime as raw timeticks (1/100 s); a fresh agent is seconds old, not minutes.
    expect(Number(r.stdout.trim())).toBeLessThan(60 * 100);
  });
});

describe('Snmpd start-up failures', () => {
  it('rejects a v3 passphrase net-snmp would silently refuse', async () => {
    const bad = new Snmpd({ v3: { user: 'u', authPassword: 'short', privPassword: 'privpass123' } });
    await expect(bad.start()).rejects.toThrow(/v3.authPassword must be at least 8 characters/);
    await bad.dispose();
  });

  it('fails fast, not after the timeout, when the agent exits', async () => {
    const bad = new Snmpd({ binary: '/bin/false' });
    const t0 = performance.now();
    await expect(bad.start()).rejects.toThrow(/snmpd did not start \(exited\)/);
    expect(performance.now() - t0).toBeLessThan(5_000);
    await bad.dispose();
  });
});
