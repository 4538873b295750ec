import { createSocket } from 'node:dgram';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type ColumnData,
  compareOids,
  SnmpClient,
  SnmpError,
  type SnmpValue,
  snmpTargetSchema,
} from '../../../agents/snmp/client.js';
import { COLUMN, OID } from '../../../agents/snmp/oids.js';
import { waitFor } from '../../../dev/ports.js';
import { type SimIface, type SimOptions, SnmpSim } from '../../../dev/snmp-sim.js';

const HOST = '127.0.0.1';
const BIG = 18_446_744_073_709_551_000n; // > 2^53, < 2^64
const U32 = 2n ** 32n;

let sims: SnmpSim[] = [];
let clients: SnmpClient[] = [];

beforeEach(() => {
  sims = [];
  clients = [];
});

afterEach(async () => {
  for (const c of clients) c.close();
  await Promise.all(sims.map((s) => s.stop()));
});

/** 48 interfaces with distinct values; #1 carries a 64-bit counter above 2^53. */
function ifaces(n = 48): SimIface[] {
  return Array.from({ length: n }, (_, k) => ({
    index: k + 1,
    name: `GigabitEthernet0/0/${k + 1}`,
    alias: `uplink-${k + 1}`,
    highSpeedMbps: k % 2 === 0 ? 1_000 : 10_000,
    operStatus: k % 5 === 4 ? 2 : 1,
    inOctets: k === 0 ? BIG : BigInt(k) * 5_000_000_007n,
    outOctets: BigInt(k) * 3_000_000_011n + 17n,
    inErrors: k,
  }));
}

async function startSim(opts: Partial<SimOptions> = {}): Promise<SnmpSim> {
  const sim = new SnmpSim({ ifaces: ifaces(), ...opts });
  sims.push(sim);
  return sim.start();
}

function clientFor(port: number, extra: Record<string, unknown> = {}): SnmpClient {
  const client = new SnmpClient(
    snmpTargetSchema.parse({
      device: 'rtr-3301060001',
      school: '3301060001',
      address: HOST,
      port,
      community: 'public',
      uplink: 1,
      timeoutMs: 1_000,
      retries: 0,
      ...extra,
    }),
  );
  clients.push(client);
  return client;
}

/**
 * net-snmp's session hands Counter64 back as the raw big-endian content octets (a Buffer, 8 or 9 bytes), not the
 * bigint its type declarations promise; Counter32/Gauge32/Integer/TimeTicks come back as numbers.
 */
function toBigInt(v: SnmpValue | undefined): bigint {
  if (Buffer.isBuffer(v)) return v.length === 0 ? 0n : BigInt(`0x${v.toString('hex')}`);
  if (typeof v === 'number' || typeof v === 'bigint') return BigInt(v);
  throw new Error(`not an integer: ${String(v)}`);
}

/** OCTET STRING values come back as Buffers. */
const text = (v: SnmpValue | undefined): string => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v));

/** A UDP port on 127.0.0.1 that nothing listens on (bound a moment ago, then released). */
async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, HOST, resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(resolve));
  return port;
}

async function rejection(p: Promise<unknown>): Promise<SnmpError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(SnmpError);
    return e as SnmpError;
  }
  throw new Error('expected the request to reject');
}

const HC_COLUMNS = [
  COLUMN.ifName,
  COLUMN.ifHCInOctets,
  COLUMN.ifHCOutOctets,
  COLUMN.ifHighSpeed,
  COLUMN.ifOperStatus,
] as const;

/** Asserts the walk of HC_COLUMNS returned exactly the sim's 48 interfaces. */
function expectHcRows(data: ColumnData, expected: SimIface[]): void {
  for (const column of HC_COLUMNS) expect(data.get(column)!.size).toBe(expected.length);
  for (const i of expected) {
    const row = String(i.index);
    expect(text(data.get(COLUMN.ifName)!.get(row))).toBe(i.name);
    expect(toBigInt(data.get(COLUMN.ifHCInOctets)!.get(row))).toBe(i.inOctets);
    expect(toBigInt(data.get(COLUMN.ifHCOutOctets)!.get(row))).toBe(i.outOctets);
    expect(data.get(COLUMN.ifHighSpeed)!.get(row)).toBe(i.highSpeedMbps);
    expect(data.get(COLUMN.ifOperStatus)!.get(row)).toBe(i.operStatus);
  }
}

describe('compareOids', () => {
  const sign = (x: number) => Math.sign(x) || 0; // no -0
  it.each([
    ['1.3.6.1.2.1.2.2.1.8.9', '1.3.6.1.2.1.2.2.1.8.10', -1], // numeric, not string order
    ['1.3.6.1.2.1.2.2.1.8.10', '1.3.6.1.2.1.2.2.1.8.9', 1],
    ['1.3.6.1.2.1.2.2.1.8.10', '1.3.6.1.2.1.2.2.1.8.10', 0],
    ['1.3.6.1.2.1.2.2.1.8', '1.3.6.1.2.1.2.2.1.8.1', -1], // a prefix comes first
    ['1.3.6.1.2.1.2.2.1.8.1.5', '1.3.6.1.2.1.2.2.1.8.1', 1],
    ['1.3.6.1.2.1.2.2.1.8.4294967295', '1.3.6.1.2.1.2.2.1.8.4294967294', 1], // 2^32 − 1 sub-identifiers
    ['1.3.6.1.2.1.31.1.1.1.1.7', '1.3.6.1.2.1.2.2.1.8.7', 1],
  ])('%s vs %s → %i', (a, b, want) => {
    expect(sign(compareOids(a, b))).toBe(want);
    expect(sign(compareOids(b, a))).toBe(want === 0 ? 0 : -want);
  });
  it('from a shared prefix: compares what follows it', () => {
    const col = `${COLUMN.ifOperStatus}.`;
    expect(sign(compareOids(`${col}12`, `${col}3`, col.length))).toBe(1);
    expect(sign(compareOids(`${col}3`, `${col}3`, col.length))).toBe(0);
    // The walk's cursor starts at the column itself: every row of it comes after.
    expect(sign(compareOids(`${col}1`, COLUMN.ifOperStatus, col.length))).toBe(1);
  });
});

describe('SnmpClient.get against SnmpSim', () => {
  it('reads sysUpTime, sysName and sysDescr; a missing object is undefined', async () => {
    const sim = await startSim({ sysName: 'sch-3301060001-core', sysDescr: 'Huawei AR6120' });
    sim.setUptimeTicks(123_456);
    const [uptime, name, descr, contact] = await clientFor(sim.port).get([
      OID.sysUpTime,
      OID.sysName,
      OID.sysDescr,
      '1.3.6.1.2.1.1.4.0', // SNMPv2-MIB::sysContact.0, not served
    ]);
    expect(typeof uptime).toBe('number');
    expect(uptime).toBeGreaterThanOrEqual(123_456);
    expect(uptime).toBeLessThan(123_456 + 6_000); // the test's own time, generously
    expect(text(name)).toBe('sch-3301060001-core');
    expect(text(descr)).toBe('Huawei AR6120');
    expect(contact).toBeUndefined();
  });

  it('serves sysUpTime as of the request, not as of start()', async () => {
    const sim = await startSim();
    const client = clientFor(sim.port);
    const [first] = await client.get([OID.sysUpTime]);
    await waitFor(async () => ((await client.get([OID.sysUpTime]))[0] as number) > (first as number), {
      timeoutMs: 5_000,
      intervalMs: 20,
      what: 'sysUpTime to advance',
    });
  });

  it('reboot() brings sysUpTime back to near 0 and restarts the counters', async () => {
    const sim = await startSim();
    const client = clientFor(sim.port);
    sim.setUptimeTicks(8_640_000); // one day
    const [before] = await client.get([OID.sysUpTime]);
    expect(before).toBeGreaterThanOrEqual(8_640_000);
    sim.reboot();
    const [after] = await client.get([OID.sysUpTime]);
    expect(after).toBeLessThan(500); // < 5 s
    const data = await client.walkColumns([COLUMN.ifHCInOctets, COLUMN.ifInOctets]);
    expect(toBigInt(data.get(COLUMN.ifHCInOctets)!.get('1'))).toBe(0n);
    expect(data.get(COLUMN.ifInOctets)!.get('2')).toBe(0);
  });

  it('TimeTicks wrap at 2^32', async () => {
    const sim = await startSim();
    const client = clientFor(sim.port);
    sim.setUptimeTicks(2 ** 32 - 1);
    // 4294967295 for the first 10 ms, then 0, 1, …
    await waitFor(async () => ((await client.get([OID.sysUpTime]))[0] as number) < 6_000, {
      timeoutMs: 5_000,
      intervalMs: 20,
      what: 'sysUpTime to wrap',
    });
  });
});

describe('SnmpClient.walkColumns against SnmpSim (48 interfaces)', () => {
  it('returns every row of every column with maxRepetitions 10, over several rounds', async () => {
    const sim = await startSim();
    const data = await clientFor(sim.port).walkColumns(HC_COLUMNS, 10);
    expectHcRows(data, ifaces());
    expect(sim.requests).toBeGreaterThan(5); // 48 rows × 5 columns do not fit in one answer of 10
  });

  it('returns every row with maxRepetitions 200 (the agent answers fewer; the walk continues)', async () => {
    const sim = await startSim();
    const data = await clientFor(sim.port, { maxRepetitions: 200 }).walkColumns(HC_COLUMNS);
    expectHcRows(data, ifaces());
  });

  it('continues columns an answer left out entirely (maxRepetitions below the number of columns)', async () => {
    // net-snmp's agent caps a GetBulk answer at max-repetitions varbinds in all, so with 2 the first answer
    // carries only ifName.1 and ifHCInOctets.1; the other three columns must be asked again, not given up.
    const sim = await startSim();
    const data = await clientFor(sim.port).walkColumns(HC_COLUMNS, 2);
    expectHcRows(data, ifaces());
  });

  it('walk() reads scalars in the first GetBulk (non-repeaters), costing no extra request', async () => {
    const sim = await startSim({ sysName: 'sch-3301060001-core' });
    sim.setUptimeTicks(500_000);
    const plain = await startSim();
    await clientFor(plain.port).walkColumns(HC_COLUMNS, 10);

    const walked = await clientFor(sim.port).walk(
      HC_COLUMNS,
      [OID.sysUpTime, OID.sysName, '1.3.6.1.2.1.1.4.0'], // sysContact.0 is not served: its next is sysName.0
      10,
    );
    expectHcRows(walked.columns, ifaces());
    expect(walked.scalars[0]).toBeGreaterThanOrEqual(500_000);
    expect(walked.scalars[0]).toBeLessThan(500_000 + 6_000);
    expect(text(walked.scalars[1])).toBe('sch-3301060001-core');
    expect(walked.scalars[2]).toBeUndefined();
    expect(walked.firstAnswerAtMs).toBeLessThanOrEqual(performance.now());
    expect(sim.requests).toBe(plain.requests);
  });

  it('brings back a Counter64 above 2^53 exactly, and its wrap at 2^64', async () => {
    const sim = await startSim();
    const client = clientFor(sim.port);
    let data = await client.walkColumns([COLUMN.ifHCInOctets]);
    expect(toBigInt(data.get(COLUMN.ifHCInOctets)!.get('1'))).toBe(BIG);
    sim.setCounters(2, 2n ** 64n - 1n, 2n ** 53n + 1n);
    sim.advance(1, 1_000n, 0n); // 18446744073709551000 + 1000 − 2^64
    data = await client.walkColumns([COLUMN.ifHCInOctets, COLUMN.ifHCOutOctets, COLUMN.ifInOctets]);
    expect(toBigInt(data.get(COLUMN.ifHCInOctets)!.get('1'))).toBe(384n);
    expect(toBigInt(data.get(COLUMN.ifHCInOctets)!.get('2'))).toBe(2n ** 64n - 1n);
    expect(toBigInt(data.get(COLUMN.ifHCOutOctets)!.get('2'))).toBe(2n ** 53n + 1n);
    expect(data.get(COLUMN.ifInOctets)!.get('2')).toBe(Number((2n ** 64n - 1n) % U32));
  });

  it('shows setOperStatus and advance() at the next poll', async () => {
    const sim = await startSim();
    const client = clientFor(sim.port);
    sim.setOperStatus(3, 7);
    sim.advance(3, 1_500n, 64n);
    const data = await client.walkColumns([COLUMN.ifOperStatus, COLUMN.ifHCInOctets, COLUMN.ifHCOutOctets]);
    const i3 = ifaces()[2]!;
    expect(data.get(COLUMN.ifOperStatus)!.get('3')).toBe(7);
    expect(toBigInt(data.get(COLUMN.ifHCInOctets)!.get('3'))).toBe(i3.inOctets + 1_500n);
    expect(toBigInt(data.get(COLUMN.ifHCOutOctets)!.get('3'))).toBe(i3.outOctets + 64n);
  });

  it('serves ifTable next to ifXTable: 32-bit counters mod 2^32, ifSpeed, errors, discontinuity time', async () => {
    const sim = await startSim();
    const data = await clientFor(sim.port).walkColumns(
      [
        COLUMN.ifInOctets,
        COLUMN.ifOutOctets,
        COLUMN.ifSpeed,
        COLUMN.ifInErrors,
        COLUMN.ifCounterDiscontinuityTime,
      ],
      25,
    );
    for (const i of ifaces()) {
      const row = String(i.index);
      expect(data.get(COLUMN.ifInOctets)!.get(row)).toBe(Number(i.inOctets % U32));
      expect(data.get(COLUMN.ifOutOctets)!.get(row)).toBe(Number(i.outOctets % U32));
      expect(data.get(COLUMN.ifSpeed)!.get(row)).toBe(Math.min(i.highSpeedMbps * 1e6, 4_294_967_295));
      expect(data.get(COLUMN.ifInErrors)!.get(row)).toBe(i.inErrors);
      expect(data.get(COLUMN.ifCounterDiscontinuityTime)!.get(row)).toBe(0);
    }
  });
});

describe('an old device without ifXTable', () => {
  it('walks ifXTable columns to empty maps and ifTable columns with 32-bit values', async () => {
    const sim = await startSim({ noIfXTable: true });
    const client = clientFor(sim.port);
    const x = await client.walkColumns([COLUMN.ifName, COLUMN.ifHCInOctets, COLUMN.ifHighSpeed]);
    for (const rows of x.values()) expect(rows.size).toBe(0);

    const t = await client.walkColumns(
      [COLUMN.ifDescr, COLUMN.ifInOctets, COLUMN.ifOutOctets, COLUMN.ifSpeed, COLUMN.ifOperStatus],
      10,
    );
    for (const rows of t.values()) expect(rows.size).toBe(48);
    for (const i of ifaces()) {
      const row = String(i.index);
      expect(text(t.get(COLUMN.ifDescr)!.get(row))).toBe(i.name);
      expect(t.get(COLUMN.ifInOctets)!.get(row)).toBe(Number(i.inOctets % U32));
      expect(t.get(COLUMN.ifOutOctets)!.get(row)).toBe(Number(i.outOctets % U32));
      expect(t.get(COLUMN.ifSpeed)!.get(row)).toBe(Math.min(i.highSpeedMbps * 1e6, 4_294_967_295));
      expect(t.get(COLUMN.ifOperStatus)!.get(row)).toBe(i.operStatus);
    }
  });
});

describe('the UDP socket a session binds', () => {
  it('for a target on loopback: 127.0.0.1, so answers are taken from loopback only, not on every interface', async () => {
    const sim = await startSim();
    const client = clientFor(sim.port);
    expect(client.localAddress()).toBeUndefined(); // nothing bound before the first request
    await client.get([OID.sysUpTime]);
    expect(client.localAddress()).toMatchObject({ address: '127.0.0.1', port: expect.any(Number) });
  });

  it('the configured source address (poller.sourceAddress), whatever the target', async () => {
    const sim = await startSim();
    const client = new SnmpClient(
      snmpTargetSchema.parse({
        device: 'rtr',
        school: '3301060001',
        address: HOST,
        port: sim.port,
        community: 'public',
        uplink: 1,
      }),
      { sourceAddress: '127.0.0.2' }, // also loopback on Linux: an address of this host other than the target's side
    );
    clients.push(client);
    expect((await client.get([OID.sysUpTime]))[0]).toEqual(expect.any(Number));
    expect(client.localAddress()?.address).toBe('127.0.0.2');
    // A target elsewhere, without configuration: the kernel's choice (documented), not a guess.
    expect(
      new SnmpClient(
        snmpTargetSchema.parse({
          device: 'r',
          school: '3301060001',
          address: '192.0.2.1',
          community: 'c',
          uplink: 1,
        }),
      ).sourceAddress,
    ).toBeUndefined();
  });
});

describe('failures name their target', () => {
  it('a wrong community times out within timeoutMs × (retries+1) + 500 ms', async () => {
    const sim = await startSim({ community: 'campus-ro' });
    const client = clientFor(sim.port, { community: 'public', timeoutMs: 300, retries: 0 });
    const started = Date.now();
    const err = await rejection(client.get([OID.sysUpTime]));
    expect(Date.now() - started).toBeLessThan(300 * 1 + 500);
    expect(err.reason).toBe('timeout');
    expect(err.message).toContain(`${HOST}:${sim.port}`);
    expect(err.message).toContain('3301060001/rtr-3301060001');
  });

  it('a port nothing listens on fails quickly with an SnmpError', async () => {
    const port = await freeUdpPort();
    const client = clientFor(port, { timeoutMs: 300, retries: 0 });
    const started = Date.now();
    const err = await rejection(client.walkColumns([COLUMN.ifName]));
    expect(Date.now() - started).toBeLessThan(300 + 500);
    expect(err.message).toContain(`${HOST}:${port}`);
  });

  it('a slow device (400 ms) answers within a 1000 ms timeout, and times out at 200 ms', async () => {
    const sim = await startSim({ delayMs: 400 });
    const started = Date.now();
    const [name] = await clientFor(sim.port, { timeoutMs: 1_000, retries: 0 }).get([OID.sysName]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    expect(text(name)).toBe('snmp-sim');

    const err = await rejection(clientFor(sim.port, { timeoutMs: 200, retries: 0 }).get([OID.sysName]));
    expect(err.reason).toBe('timeout');
    expect(err.message).toContain(`${HOST}:${sim.port}`);
  });
});

/**
 * A hostile SNMPv2c agent: it answers every request (request-id echoed) with the varbinds `answer(round)` names,
 * each an INTEGER 1, whatever was asked. BER by hand (X.690 definite lengths, RFC 3416 Response-PDU 0xa2).
 */
async function hostileAgent(answer: (round: number) => string[]): Promise<{ port: number; close(): void }> {
  const tlv = (tag: number, body: Buffer): Buffer => {
    const n = body.length;
    const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
    return Buffer.concat([Buffer.from([tag, ...len]), body]);
  };
  const int = (v: number) => tlv(0x02, Buffer.from([v & 0xff]));
  const oid = (s: string) => {
    const p = s.split('.').map(Number);
    const out = [p[0]! * 40 + p[1]!];
    for (const v of p.slice(2)) {
      const chunk = [v & 0x7f];
      for (let x = v >> 7; x > 0; x >>= 7) chunk.unshift((x & 0x7f) | 0x80);
      out.push(...chunk);
    }
    return tlv(0x06, Buffer.from(out));
  };
  const socket = createSocket('udp4');
  let round = 0;
  socket.on('message', (msg, from) => {
    // SEQUENCE { version, community, PDU { request-id, … } }: the request-id is the PDU's first INTEGER.
    let pos = 2 + (msg[1]! & 0x80 ? msg[1]! & 0x7f : 0); // past the message header
    pos += 2 + msg[pos + 1]!; // version
    pos += 2 + msg[pos + 1]!; // community
    pos += 2 + (msg[pos + 1]! & 0x80 ? msg[pos + 1]! & 0x7f : 0); // PDU header
    const requestId = msg.subarray(pos, pos + 2 + msg[pos + 1]!); // the INTEGER TLV as sent
    const varbinds = answer(round++).map((o) => tlv(0x30, Buffer.concat([oid(o), int(1)])));
    const pdu = tlv(0xa2, Buffer.concat([requestId, int(0), int(0), tlv(0x30, Buffer.concat(varbinds))]));
    const out = tlv(0x30, Buffer.concat([int(1), tlv(0x04, Buffer.from('public')), pdu]));
    socket.send(out, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, HOST, resolve));
  return { port: socket.address().port, close: () => socket.close() };
}

describe('a device whose walk does not advance', () => {
  const col = COLUMN.ifOperStatus;
  it.each([
    ['goes back within an answer', () => [`${col}.10`, `${col}.9`], `${col}.9`],
    ['repeats a row within an answer', () => [`${col}.5`, `${col}.5`], `${col}.5`],
    ['answers the same row again in the next request (a loop)', () => [`${col}.5`], `${col}.5`],
    // Indexes of several sub-identifiers (not IF-MIB's, but a table's index may be): compared as OIDs.
    ['goes back within a two-part index', () => [`${col}.1.5`, `${col}.1.40`, `${col}.1.6`], `${col}.1.6`],
    ['goes back from a two-part index to a one-part one', () => [`${col}.2.1`, `${col}.2`], `${col}.2`],
  ])('%s: a protocol error naming the column and OID, not an endless walk', async (_, answer, bad) => {
    const agent = await hostileAgent(answer);
    try {
      const err = await rejection(clientFor(agent.port).walkColumns([col], 10));
      expect(err.reason).toBe('protocol');
      expect(err.message).toContain(`OID not increasing in ${col}: ${bad}`);
      expect(err.message).toContain(`${HOST}:${agent.port}`);
    } finally {
      agent.close();
    }
  });

  it('rows in numeric order (9 before 10, as string order would not have it) are walked', async () => {
    const agent = await hostileAgent((round) =>
      round === 0 ? [`${col}.9`, `${col}.10`, `${col}.100`] : [`${COLUMN.ifInErrors}.1`],
    );
    try {
      const data = await clientFor(agent.port).walkColumns([col], 10);
      expect([...data.get(col)!.keys()]).toEqual(['9', '10', '100']);
    } finally {
      agent.close();
    }
  });
});
