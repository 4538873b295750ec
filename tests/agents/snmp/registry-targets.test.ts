import { chmodSync, copyFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { Poller, pollerConfigSchema } from '../../../agents/snmp/poller.js';
import { shownConfig } from '../../../common/cli.js';
import { writeFileAtomic } from '../../../common/json-file.js';
import { RegistryStore } from '../../../common/registry/store.js';
import { type SimIface, SnmpSim } from '../../../dev/snmp-sim.js';
import { freeUdpPort, Snmpd } from '../../../dev/snmpd.js';
import { captureLogger, waitFor } from '../../helpers/influx.js';
import { Mosquitto } from '../../helpers/mqtt.js';
import { UPLINK_REGIONS, uplinkSchool } from '../../helpers/uplinks.js';

/**
 * The poller's targets from a registry import (docs/links.md, #17): the registry written by the API's import
 * path (RegistryStore.import, YAML and CSV), credentials from a 0600 file, polled on real snmpd and net-snmp
 * agents that share one port on 127.0.0.x as a fleet of routers shares 161; live add, remove, change.
 */
const COMMUNITY = 'reg-community-7f3a';
const SIM_COMMUNITY = 'sim-community-91bc';
const V3 = { user: 'cfmreg', authPassword: 'authpass-5e2d', privPassword: 'privpass-8c1a' };
const SECRETS = [COMMUNITY, SIM_COMMUNITY, V3.authPassword, V3.privPassword];

const mosquitto = new Mosquitto();
let port = 0;
let snmpd: Snmpd;
const sims: SnmpSim[] = [];
let observer: MqttClient;
const seen: { topic: string; payload: string }[] = [];
let dir: string;

const iface = (index: number, inOctets: bigint): SimIface => ({
  index,
  name: `GigabitEthernet0/0/${index}`,
  highSpeedMbps: 1000,
  operStatus: 1,
  inOctets,
  outOctets: 2n * inOctets,
});

beforeAll(async () => {
  port = await freeUdpPort();
  snmpd = new Snmpd({ community: COMMUNITY, v3: V3, sysName: 'gw-snmpd', host: '127.0.0.2' });
  snmpd.port = port;
  await Promise.all([mosquitto.start(), snmpd.start()]);
  for (const address of ['127.0.0.3', '127.0.0.4'])
    sims.push(
      await new SnmpSim({ ifaces: [iface(1, 1_000_000n)], community: SIM_COMMUNITY, address, port }).start(),
    );
  observer = await mqtt.connectAsync(mosquitto.url, { clientId: 'observer-reg' });
  observer.on('message', (topic, payload) => seen.push({ topic, payload: payload.toString() }));
  await observer.subscribeAsync('cfm/v1/+/+/+', { qos: 1 });
}, 60_000);
afterAll(async () => {
  await observer?.endAsync();
  for (const s of sims) await s.stop();
  await Promise.all([mosquitto.dispose(), snmpd?.dispose()]);
});

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  seen.length = 0;
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cfm-reg-targets-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const CREDENTIALS = {
  snmp: {
    'xihu-v2': { version: '2c', community: COMMUNITY },
    'sim-v2': { version: '2c', community: SIM_COMMUNITY },
    'xihu-v3': {
      version: '3',
      user: V3.user,
      authProtocol: 'sha',
      authKey: V3.authPassword,
      privProtocol: 'aes',
      privKey: V3.privPassword,
    },
  },
};

function writeCredentials(path: string, doc: unknown = CREDENTIALS, mode = 0o600): void {
  writeFileAtomic(path, toYaml(doc), mode);
  chmodSync(path, mode);
}

const REGIONS = UPLINK_REGIONS;
const school = (id: string, uplinkInterface: string) => uplinkSchool(id, { uplinkInterface });
const A = '3301060001'; // snmpd's lo
const B = '3301060002'; // sim 127.0.0.3
const C = '3301060003'; // sim 127.0.0.4

function fleet(
  devices: Record<string, unknown>[],
  schools = [school(A, 'lo'), school(B, 'GigabitEthernet0/0/1')],
) {
  return { regions: REGIONS, schools, devices };
}
const gwA = { id: 'gw', school: A, kind: 'router', mgmtAddress: '127.0.0.2', credentialRef: 'xihu-v2' };
const gwB = { id: 'gw', school: B, kind: 'router', mgmtAddress: '127.0.0.3', credentialRef: 'sim-v2' };

/** Imports through the API's import path (a worker process, all-or-nothing). */
async function importYaml(registryFile: string, doc: unknown, replace?: ('devices' | 'schools')[]) {
  await new RegistryStore(registryFile).import(
    [{ name: 'fleet.yaml', data: Buffer.from(toYaml(doc)) }],
    replace ? { replace } : {},
  );
}

async function setup(opts: { extra?: Record<string, unknown>; start?: boolean } = {}) {
  dir = tempDir();
  const registryFile = join(dir, 'registry.json');
  const credentialsFile = join(dir, 'credentials.yaml');
  writeCredentials(credentialsFile);
  await importYaml(registryFile, fleet([gwA, gwB]));
  const { log, lines } = captureLogger('poller');
  const p = new Poller(
    pollerConfigSchema.parse({
      mqtt: { url: mosquitto.url, clientId: `poller-reg-${Math.random()}` },
      spool: { dir: join(dir, 'spool') },
      registryFile,
      credentialsFile,
      registryCheckMs: 100,
      registryTargets: { port, timeoutMs: 1_000, retries: 0 },
      ...opts.extra,
    }),
    { log, manual: true },
  );
  cleanups.push(() => p.stop());
  if (opts.start !== false) {
    await p.start();
    await p.ready();
  }
  return { p, lines, registryFile, credentialsFile };
}

const keys = (p: Poller) => p.targets.map((t) => `${t.school}/${t.device}@${t.address}/v${t.version}`).sort();
const logText = (lines: Record<string, unknown>[]) => JSON.stringify(lines);

describe('poller targets from the registry', () => {
  it('an import yields targets polled on real snmpd and a net-snmp agent; iface readings published', async () => {
    const { p, lines } = await setup();
    expect(keys(p)).toEqual([`${A}/gw@127.0.0.2/v2c`, `${B}/gw@127.0.0.3/v2c`]);
    expect(p.targets.find((t) => t.school === A)).toMatchObject({
      region: '330000/330100/330106',
      uplink: 'lo',
      port,
    });
    const readings = await p.pollAll();
    const bySchool = new Map(p.targets.map((t, i) => [t.school, readings[i]]));
    expect(bySchool.get(A)!.ifaces.find((i) => i.uplink)?.name).toBe('lo');
    expect(bySchool.get(B)!.ifaces.find((i) => i.uplink)?.name).toBe('GigabitEthernet0/0/1');
    await waitFor(() => seen.some((m) => m.topic === `cfm/v1/${B}/gw/iface`), { what: 'iface of B' });
    expect(seen.some((m) => m.topic === `cfm/v1/${A}/gw/iface`)).toBe(true);
    expect(p.stats()).toMatchObject({ targets: 2, registryTargets: 2, targetsSkipped: 0, failures: 0 });
    for (const s of SECRETS) expect(logText(lines)).not.toContain(s);
  });

  it("probes every school's uplink device the registry gives an address (probeAddress first), re-derived live", async () => {
    const probes = { enabled: true, count: 3, periodMs: 20, timeoutMs: 500, intervalS: 60 };
    const { p, registryFile } = await setup({ extra: { probes } });
    const probed = () =>
      (p.prober?.targets ?? []).map((t) => `${t.school}/${t.device}@${t.address}/${t.method}`).sort();
    expect(probed()).toEqual([`${A}/gw@127.0.0.2/icmp`, `${B}/gw@127.0.0.3/icmp`]);
    const results = await p.probeAll();
    expect(results.map((r) => [r.method, r.sent, r.received])).toEqual([
      ['icmp', 3, 3],
      ['icmp', 3, 3],
    ]);
    await waitFor(() => seen.some((m) => m.topic === `cfm/v1/${B}/gw/probe`), {
      what: 'the probe of B published',
    });
    // An import gives B a probe address of its own, and C an operator-run router: no credential, probed only.
    await importYaml(
      registryFile,
      fleet(
        [
          gwA,
          { ...gwB, probeAddress: '127.0.0.9' },
          { id: 'gw', school: C, kind: 'router', mgmtAddress: '127.0.0.4' },
        ],
        [school(A, 'lo'), school(B, 'GigabitEthernet0/0/1'), school(C, 'GigabitEthernet0/0/1')],
      ),
      ['devices', 'schools'],
    );
    await waitFor(() => probed().length === 3, { what: 'the probe targets re-derived' });
    expect(probed()).toEqual([`${A}/gw@127.0.0.2/icmp`, `${B}/gw@127.0.0.9/icmp`, `${C}/gw@127.0.0.4/icmp`]);
    // C is probed, not polled: it has no credential.
    expect(keys(p)).toEqual([`${A}/gw@127.0.0.2/v2c`, `${B}/gw@127.0.0.3/v2c`]);
  });

  it("a row's snmpPort and probeMethod tcp: polled on its own port, probed by a TCP connect to its probePort", async () => {
    // A router off the fleet's port, with a management TCP port (ICMP filtered, say).
    const own = await new SnmpSim({
      ifaces: [iface(1, 5_000_000n)],
      community: SIM_COMMUNITY,
      address: '127.0.0.5',
      managementTcp: true,
    }).start();
    cleanups.push(() => own.stop());
    expect(own.port).not.toBe(port);
    const probes = { enabled: true, count: 3, periodMs: 20, timeoutMs: 500, intervalS: 60 };
    const { p, registryFile } = await setup({ extra: { probes } });
    await importYaml(
      registryFile,
      fleet(
        [
          gwA,
          gwB,
          {
            id: 'gw',
            school: C,
            kind: 'router',
            mgmtAddress: '127.0.0.5',
            credentialRef: 'sim-v2',
            snmpPort: own.port,
            probeMethod: 'tcp',
            probePort: own.tcpPort,
          },
        ],
        [school(A, 'lo'), school(B, 'GigabitEthernet0/0/1'), school(C, 'GigabitEthernet0/0/1')],
      ),
    );
    await waitFor(() => p.targets.length === 3, { what: 'C derived' });
    expect(p.targets.find((t) => t.school === C)).toMatchObject({ address: '127.0.0.5', port: own.port });
    expect(p.targets.find((t) => t.school === B)).toMatchObject({ port });
    const readings = await p.pollAll();
    const c = readings[p.targets.findIndex((t) => t.school === C)]!;
    expect(c.ifaces.find((i) => i.uplink)?.name).toBe('GigabitEthernet0/0/1');
    expect(p.prober?.targets.find((t) => t.school === C)).toMatchObject({
      method: 'tcp',
      port: own.tcpPort,
      address: '127.0.0.5',
    });
    const answered = await p.probeAll();
    expect(answered.find((r) => r.method === 'tcp')).toMatchObject({
      port: own.tcpPort,
      sent: 3,
      received: 3,
    });
    // The router gone: its management port refuses, every TCP probe lost; the ICMP ones still answer.
    await own.stop();
    const lost = await p.probeAll();
    expect(lost.find((r) => r.method === 'tcp')).toMatchObject({ sent: 3, received: 0, rttMs: null });
    expect(lost.filter((r) => r.method === 'icmp').map((r) => r.received)).toEqual([3, 3]);
    await waitFor(() => seen.some((m) => m.topic === `cfm/v1/${C}/gw/probe`), { what: 'the probe of C' });
  });

  it('live: add, change (restart just that one), remove (in flight: cancelled, no unreachable event)', async () => {
    const { p, lines, registryFile } = await setup();
    await p.pollAll(); // seeds the rate state of both
    const linesBefore = lines.length;
    // Add C (a CSV of devices, as a bureau's sheet) and move A to SNMPv3: B is untouched.
    const gwC = { id: 'gw', school: C, kind: 'router', mgmtAddress: '127.0.0.4', credentialRef: 'sim-v2' };
    await importYaml(
      registryFile,
      fleet(
        [gwA, gwB, gwC],
        [school(A, 'lo'), school(B, 'GigabitEthernet0/0/1'), school(C, 'GigabitEthernet0/0/1')],
      ),
    );
    await new RegistryStore(registryFile).import([
      {
        name: 'devices.csv',
        data: Buffer.from(
          `设备编号,学校标识码,设备类型,管理地址,SNMP版本,凭据名称\ngw,${A},路由器,127.0.0.2,3,xihu-v3\n`,
        ),
      },
    ]);
    await waitFor(() => p.targets.length === 3 && p.targets.some((t) => t.version === '3'), {
      what: 'C added and A restarted on v3',
      timeoutMs: 10_000,
    });
    expect(keys(p)).toEqual([`${A}/gw@127.0.0.2/v3`, `${B}/gw@127.0.0.3/v2c`, `${C}/gw@127.0.0.4/v2c`]);
    const r = await p.pollAll();
    const by = new Map(p.targets.map((t, i) => [t.school, r[i]!]));
    // B kept its rate state: its second poll has rates; C and the restarted A are first polls (no rate yet).
    expect(by.get(B)!.ifaces[0]!.inBps).not.toBeNull();
    expect(by.get(B)!.seq).toBe(1);
    expect(by.get(C)!.seq).toBe(0);
    expect(by.get(A)!.seq).toBe(0);
    expect(by.get(A)!.ifaces.some((i) => i.name === 'lo' && i.uplink)).toBe(true);
    // The two imports may be seen in one look or two.
    const rederived = lines
      .slice(linesBefore)
      .filter((l) => l.msg === 'targets re-derived from the registry');
    const sum = (k: string) => rederived.reduce((n, l) => n + Number(l[k]), 0);
    expect([sum('added'), sum('restarted'), sum('removed')]).toEqual([1, 1, 0]);

    // Remove B while its poll is in flight (the agent answers 1.5 s late): cancelled, nothing published for it.
    await waitFor(
      () => seen.some((m) => m.topic === `cfm/v1/${B}/gw/iface` && m.payload.includes('"seq":1')),
      {
        what: "B's second reading",
      },
    );
    await sims[0]!.stop();
    cleanups.push(async () => {
      // The next tests' B answers at once again.
      await sims[0]!.stop();
      sims[0] = await new SnmpSim({
        ifaces: [iface(1, 1_000_000n)],
        community: SIM_COMMUNITY,
        address: '127.0.0.3',
        port,
      }).start();
    });
    const late = await new SnmpSim({
      ifaces: [iface(1, 5_000_000n)],
      community: SIM_COMMUNITY,
      address: '127.0.0.3',
      port,
      delayMs: 1_500,
    }).start();
    sims[0] = late;
    seen.length = 0;
    // The import staged on a copy, then put in place while the poll is in flight (an import's worker may take
    // longer than the poll's timeout on a loaded machine).
    const staged = join(dir, 'staged.json');
    copyFileSync(registryFile, staged);
    await importYaml(
      staged,
      fleet(
        [
          { ...gwA, snmpVersion: '3', credentialRef: 'xihu-v3' },
          { ...gwB, credentialRef: undefined, mgmtAddress: undefined },
          gwC,
        ],
        [school(A, 'lo'), school(B, 'GigabitEthernet0/0/1'), school(C, 'GigabitEthernet0/0/1')],
      ),
      ['devices'],
    );
    const inFlight = p.pollAll();
    renameSync(staged, registryFile);
    await waitFor(() => !p.targets.some((t) => t.school === B), { what: 'B removed', timeoutMs: 10_000 });
    const results = await inFlight;
    expect(results.filter((x) => x === undefined).length).toBeGreaterThanOrEqual(1);
    await waitFor(() => seen.some((m) => m.topic === `cfm/v1/${A}/gw/iface`), { what: 'A still polled' });
    expect(seen.filter((m) => m.topic.startsWith(`cfm/v1/${B}/`))).toEqual([]);
    expect(p.stats().failures).toBe(0);
  }, 30_000);

  it('hostile: unknown ref, v3 credential for a 2c device, unresolvable address — skipped or failing alone, logged once', async () => {
    const { p, lines, registryFile } = await setup();
    await importYaml(
      registryFile,
      fleet(
        [
          { ...gwA, credentialRef: 'xihu-v3' }, // snmpVersion defaults to 2c
          { ...gwB, credentialRef: 'nobody' },
          { id: 'gw', school: C, kind: 'router', mgmtAddress: 'gw.school.invalid', credentialRef: 'sim-v2' },
        ],
        [school(A, 'lo'), school(B, 'GigabitEthernet0/0/1'), school(C, 'GigabitEthernet0/0/1')],
      ),
      ['devices'],
    );
    await waitFor(() => p.stats().targetsSkipped === 2, { what: 'two skipped', timeoutMs: 10_000 });
    expect(keys(p)).toEqual([`${C}/gw@gw.school.invalid/v2c`]);
    // Re-derivations (a credentials change) do not log the same skips again.
    writeCredentials(join(dir, 'credentials.yaml'), {
      snmp: { ...CREDENTIALS.snmp, spare: { version: '2c', community: 'spare-community' } },
    });
    await waitFor(
      () => lines.filter((l) => String(l.msg).startsWith('registry device not polled')).length >= 2,
      {
        what: 'skips logged',
      },
    );
    await new Promise((r) => setTimeout(r, 400)); // several watch looks (100 ms) after the change
    const skips = lines.filter((l) => String(l.msg).startsWith('registry device not polled'));
    expect(skips.map((l) => [l.school, l.reason, l.registryRow]).sort()).toEqual([
      [A, 'version-mismatch', 1],
      [B, 'unknown-credential', 2],
    ]);
    const [reading] = await p.pollAll();
    expect(reading).toBeUndefined();
    await waitFor(
      () => seen.some((m) => m.topic === `cfm/v1/${C}/gw/event` && m.payload.includes('unreachable')),
      {
        what: 'unreachable event of C',
      },
    );
    for (const s of [...SECRETS, 'spare-community']) expect(logText(lines)).not.toContain(s);
  }, 30_000);

  it('a credential changed in its file restarts just its targets; a device later also configured stays configured', async () => {
    const { p, lines, registryFile, credentialsFile } = await setup({
      extra: {
        targets: [
          { device: 'gw', school: C, address: '127.0.0.4', port, community: SIM_COMMUNITY, uplink: 1 },
        ],
      },
    });
    await p.pollAll();
    await p.pollAll(); // A and B at seq 2 next
    writeCredentials(credentialsFile, {
      snmp: { ...CREDENTIALS.snmp, 'sim-v2': { version: '2c', community: 'not-the-community' } },
    });
    await waitFor(() => p.stats().targets === 3 && lines.some((l) => l.restarted === 1), {
      what: 'B restarted',
    });
    const r = await p.pollAll();
    const by = new Map(p.targets.map((t, i) => [t.school, r[i]]));
    expect(by.get(A)!.seq).toBe(2); // A untouched: its state kept
    expect(by.get(B)).toBeUndefined(); // B with the new (wrong) community: no answer
    expect(by.get(C)!.seq).toBe(2); // the configured target
    await waitFor(
      () => seen.some((m) => m.topic === `cfm/v1/${B}/gw/event` && m.payload.includes('unreachable')),
      {
        what: "B's unreachable event",
      },
    );
    // An import naming the configured (C, gw): skipped, logged, the configured target polled.
    await importYaml(
      registryFile,
      fleet(
        [
          gwA,
          gwB,
          { id: 'gw', school: C, kind: 'router', mgmtAddress: '127.0.0.4', credentialRef: 'sim-v2' },
        ],
        [school(A, 'lo'), school(B, 'GigabitEthernet0/0/1'), school(C, 'GigabitEthernet0/0/1')],
      ),
    );
    await waitFor(() => lines.some((l) => l.reason === 'also-configured' && l.school === C), {
      what: 'the also-configured skip',
      timeoutMs: 10_000,
    });
    expect(p.targets.find((t) => t.school === C)).toMatchObject({
      community: SIM_COMMUNITY,
      address: '127.0.0.4',
    });
    expect(p.stats()).toMatchObject({ targets: 3, registryTargets: 2, targetsSkipped: 1 });
    expect(logText(lines)).not.toContain('not-the-community');
  }, 30_000);

  it('a bad registry or credentials file later keeps the last good one (logged once, counted)', async () => {
    const { p, lines, registryFile, credentialsFile } = await setup();
    writeFileAtomic(registryFile, '{"schools": [');
    await waitFor(() => p.stats().registryErrors === 1, { what: 'registry error counted' });
    writeFileAtomic(credentialsFile, `snmp:\n  xihu-v2: {version: '2c', community: ${COMMUNITY}\n`, 0o600);
    await waitFor(() => p.stats().credentialsErrors === 1, { what: 'credentials error counted' });
    expect(keys(p)).toEqual([`${A}/gw@127.0.0.2/v2c`, `${B}/gw@127.0.0.3/v2c`]);
    const polled = await p.pollAll();
    expect(
      polled.every((r) => r !== undefined),
      JSON.stringify(lines.filter((l) => l.level === 40)),
    ).toBe(true);
    const errors = lines.filter((l) => l.level === 50);
    expect(errors.map((l) => l.msg)).toEqual([
      'registry could not be re-read: keeping the last good one',
      'credentials file could not be re-read: keeping the last good one',
    ]);
    expect(String(errors[1]!.err)).toContain(credentialsFile);
    for (const s of SECRETS) expect(logText(lines)).not.toContain(s);
    // Good again: picked up.
    writeFileAtomic(registryFile, JSON.stringify(fleet([gwA], [school(A, 'lo')])));
    await waitFor(() => p.targets.length === 1, { what: 'the good registry again', timeoutMs: 10_000 }).catch(
      (e) => {
        throw new Error(`${e.message}: ${JSON.stringify(lines.slice(-4))} ${JSON.stringify(p.stats())}`);
      },
    );
  }, 30_000);
});

describe('poller start-up with registry and credentials files', () => {
  async function startError(
    mutate: (f: { registryFile: string; credentialsFile: string }) => void,
    extra = {},
  ) {
    const d = tempDir();
    const files = { registryFile: join(d, 'registry.json'), credentialsFile: join(d, 'credentials.yaml') };
    writeCredentials(files.credentialsFile);
    await importYaml(files.registryFile, fleet([gwA, gwB]));
    mutate(files);
    const { log, lines } = captureLogger('poller');
    const p = new Poller(
      pollerConfigSchema.parse({
        mqtt: { url: mosquitto.url, clientId: `poller-bad-${Math.random()}` },
        spool: { dir: join(d, 'spool') },
        ...files,
        registryTargets: { port },
        ...extra,
      }),
      { log, manual: true },
    );
    cleanups.push(() => p.stop());
    const err = await p.start().then(
      () => undefined,
      (e: Error) => e,
    );
    return { err, lines, files, p };
  }

  it('credentials file missing', async () => {
    const { err, files } = await startError((f) => rmSync(f.credentialsFile));
    expect(err?.message).toMatch(
      /^poller\.credentialsFile: credentials file .*credentials\.yaml: cannot be read \(ENOENT\)/,
    );
    expect(err?.message).toContain(files.credentialsFile);
  });

  it('credentials file malformed: file and line named, the line (a secret) not quoted', async () => {
    const { err } = await startError((f) =>
      writeFileSync(f.credentialsFile, `snmp:\n  xihu-v2: {version: '2c', community: "${COMMUNITY}\n`),
    );
    expect(err?.message).toMatch(/credentials\.yaml: not valid YAML or JSON \(line \d+\)/);
    expect(err?.message).not.toContain(COMMUNITY);
  });

  it('credentials file invalid: the key named, no value', async () => {
    const { err } = await startError((f) =>
      writeCredentials(f.credentialsFile, {
        snmp: { 'xihu-v2': { version: '3', user: 'u', authKey: COMMUNITY } },
      }),
    );
    expect(err?.message).toMatch(/credentials\.yaml: snmp\.xihu-v2/);
    expect(err?.message).not.toContain(COMMUNITY);
    const bad = await startError((f) =>
      writeCredentials(f.credentialsFile, { snmp: { 'bad ref!': { version: '2c', community: 'x' } } }),
    );
    expect(bad.err?.message).toMatch(/credentials\.yaml: snmp/);
  });

  it('world-readable credentials: warned once, still used', async () => {
    const { err, lines, p } = await startError((f) => chmodSync(f.credentialsFile, 0o644));
    expect(err).toBeUndefined();
    expect(p.targets).toHaveLength(2);
    const warned = lines.filter((l) =>
      String(l.msg).startsWith('credentials file is readable by group or others'),
    );
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ mode: '0644' });
  });

  it('registry invalid at start: fails naming the file', async () => {
    const { err, files } = await startError((f) => writeFileSync(f.registryFile, '{"devices": 3}'));
    expect(err?.message).toContain(`poller.registryFile: registry ${files.registryFile}: devices`);
  });

  it('the same (school, device) in poller.targets and the registry: refused, both named', async () => {
    const { err } = await startError(() => undefined, {
      targets: [
        { device: 'core', school: B, address: '127.0.0.9', community: 'x', uplink: 1 },
        { device: 'gw', school: A, address: '127.0.0.2', port, community: COMMUNITY, uplink: 'lo' },
      ],
    });
    expect(err?.message).toMatch(
      new RegExp(`${A}/gw is both poller.targets\\[1\\] and registry device row 1`),
    );
  });

  it('--print-config shows the files, never a credential', () => {
    const c = pollerConfigSchema.parse({
      mqtt: { url: 'mqtt://127.0.0.1:1883' },
      registryFile: 'var/registry.json',
      credentialsFile: 'var/poller-credentials.yaml',
    });
    const shown = JSON.stringify(shownConfig({ poller: pollerConfigSchema }, { poller: c }));
    expect(shown).toContain('var/poller-credentials.yaml');
    for (const s of SECRETS) expect(shown).not.toContain(s);
  });
});
