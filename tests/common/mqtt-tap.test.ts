import { type AddressInfo, createServer, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { MqttClient } from 'mqtt';
import { generate, type Packet, parser as packetParser } from 'mqtt-packet';
import { describe, expect, it, onTestFinished } from 'vitest';
import { rng } from '../../bench/fixtures.js';
import { silentLogger } from '../../common/log.js';
import { MqttSession, mqttConfigSchema } from '../../common/mqtt.js';
import { ManualAcks } from '../../common/mqtt-acks.js';
import { type InboundPublish, MqttTap } from '../../common/mqtt-tap.js';
import { waitFor } from '../helpers/influx.js';

/**
 * The tap below mqtt.js (common/mqtt-tap.ts) against mqtt-packet, the encoder and parser mqtt.js itself uses:
 * whatever way the bytes are cut into chunks, every QoS 0/1 PUBLISH is handed on exactly as mqtt-packet
 * encoded it, in order, and every other packet reaches mqtt.js byte for byte. And as an attacker: a malformed
 * packet ends the connection with an error, a huge payload is skipped without being buffered.
 */

interface Wire {
  tap: MqttTap;
  /** Bytes as the broker sends them. */
  send: (b: Buffer) => void;
  /** Bytes the tap passed on to mqtt.js. */
  passed: Buffer[];
  handed: (Omit<InboundPublish, 'client' | 'payload'> & { payload: Buffer | undefined })[];
  inner: Duplex;
  error: () => (Error & { code?: string }) | undefined;
}

function wire(protocolVersion: 4 | 5, maxPayloadBytes = 10_000, hold?: (n: number) => boolean): Wire {
  const inner = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
  const handed: Wire['handed'] = [];
  const tap = new MqttTap({} as MqttClient, inner, {
    protocolVersion,
    maxPayloadBytes,
    sink: (p) => {
      // The payload is a view valid during the call only: copy it, as an owner that keeps it must.
      handed.push({ ...p, payload: p.payload && Buffer.from(p.payload) });
      return !hold?.(handed.length);
    },
  });
  const passed: Buffer[] = [];
  tap.on('data', (b: Buffer) => passed.push(b));
  let err: Error | undefined;
  tap.on('error', (e) => {
    err = e;
  });
  return { tap, send: (b) => inner.push(b), passed, handed, inner, error: () => err };
}

/** Sends `bytes` cut at random places (1 byte to all of it), one chunk per event-loop turn. */
async function sendChunked(w: Wire, bytes: Buffer, random: () => number): Promise<void> {
  let i = 0;
  while (i < bytes.length) {
    const max = random() < 0.3 ? 8 : random() < 0.5 ? 200 : bytes.length;
    const n = 1 + Math.floor(random() * Math.min(max, bytes.length - i));
    w.send(bytes.subarray(i, i + n));
    i += n;
    await new Promise((r) => setImmediate(r));
  }
}

const chinese = '杭州市西湖区第一小学';

function randomPackets(random: () => number, v: 4 | 5, count: number): Packet[] {
  const out: Packet[] = [];
  let id = 1;
  for (let k = 0; k < count; k++) {
    const r = random();
    if (r < 0.7) {
      const qos = random() < 0.8 ? 1 : 0;
      const size = random() < 0.1 ? Math.floor(random() * 5_000) : Math.floor(random() * 300);
      const payload = Buffer.alloc(size, 0x61 + (k % 26));
      const properties =
        v === 5 && random() < 0.5
          ? {
              payloadFormatIndicator: true,
              messageExpiryInterval: 60,
              contentType: 'application/json',
              userProperties: { school: chinese, k: String(k) },
              subscriptionIdentifier: 1 + Math.floor(random() * 200_000),
            }
          : undefined;
      out.push({
        cmd: 'publish',
        topic: `cfm/v1/${random() < 0.3 ? chinese : 'S1'}/d${k}/telemetry`,
        payload,
        qos,
        retain: random() < 0.1,
        dup: false,
        ...(qos === 1 && { messageId: id++ }),
        ...(properties && { properties }),
      } as Packet);
    } else if (r < 0.8) {
      // QoS 2 is mqtt.js's (we never subscribe with it; a broker that sent it anyway is still served).
      out.push({
        cmd: 'publish',
        topic: 'cfm/v1/S1/q2/event',
        payload: Buffer.from('{}'),
        qos: 2,
        messageId: id++,
        retain: false,
        dup: false,
      });
    } else if (r < 0.9) {
      out.push({ cmd: 'pingresp' });
    } else {
      out.push({
        cmd: 'suback',
        messageId: id++,
        granted: [1, 1],
        ...(v === 5 && { properties: {} }),
      } as Packet);
    }
  }
  return out;
}

const tapped = (p: Packet) => p.cmd === 'publish' && p.qos < 2;

describe('MqttTap', () => {
  it.each([4, 5] as const)(
    'MQTT %s: hands on every QoS 0/1 PUBLISH as encoded and passes every other packet to mqtt.js unchanged, however the bytes are cut',
    async (v) => {
      for (let seed = 1; seed <= 12; seed++) {
        const random = rng(seed * 7 + v);
        const packets = randomPackets(random, v, 120);
        const encoded = packets.map((p) => generate(p, { protocolVersion: v }));
        const w = wire(v);
        await sendChunked(w, Buffer.concat(encoded), random);

        expect(w.error()).toBeUndefined();
        const want = packets.filter(tapped) as (Packet & { cmd: 'publish' })[];
        expect(w.handed.map((h) => [h.topic, h.qos, h.messageId, h.retain, h.size])).toEqual(
          want.map((p) => [p.topic, p.qos, p.messageId ?? 0, p.retain, (p.payload as Buffer).length]),
        );
        for (const [k, h] of w.handed.entries())
          expect(h.payload?.equals(want[k]!.payload as Buffer)).toBe(true);
        // mqtt.js gets exactly the other packets' bytes, in order, and parses them to what was sent.
        expect(
          Buffer.concat(w.passed).equals(Buffer.concat(encoded.filter((_, k) => !tapped(packets[k]!)))),
        ).toBe(true);
        const parsed: Packet[] = [];
        const p = packetParser({ protocolVersion: v });
        p.on('packet', (pk) => parsed.push(pk));
        p.parse(Buffer.concat(w.passed));
        expect(parsed.map((pk) => pk.cmd)).toEqual(packets.filter((pk) => !tapped(pk)).map((pk) => pk.cmd));
      }
    },
  );

  it('holds after the sink says so, reads nothing more, and goes on in order at proceed()', async () => {
    const packets = Array.from(
      { length: 10 },
      (_, k): Packet => ({
        cmd: 'publish',
        topic: `t/${k}`,
        payload: Buffer.from(String(k)),
        qos: 1,
        messageId: k + 1,
        retain: false,
        dup: false,
      }),
    );
    const w = wire(5, 10_000, (n) => n === 3);
    w.send(Buffer.concat(packets.map((p) => generate(p, { protocolVersion: 5 }))));
    await new Promise((r) => setImmediate(r));
    expect(w.handed.map((h) => h.messageId)).toEqual([1, 2, 3]);
    expect(w.inner.isPaused()).toBe(true);
    w.tap.proceed();
    expect(w.handed.map((h) => h.messageId)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(w.inner.isPaused()).toBe(false);
  });

  it('skips a payload over maxPayloadBytes as it arrives, tells its size, and goes on with the next packet', async () => {
    const w = wire(4, 1_000);
    const big = generate(
      {
        cmd: 'publish',
        topic: 'cfm/v1/S1/d1/telemetry',
        payload: Buffer.alloc(3_000_000, 0x7b),
        qos: 0,
        retain: false,
        dup: false,
      },
      { protocolVersion: 4 },
    );
    const next = generate(
      {
        cmd: 'publish',
        topic: 'cfm/v1/S1/d2/telemetry',
        payload: Buffer.from('{"v":1}'),
        qos: 1,
        messageId: 8,
        retain: false,
        dup: false,
      },
      { protocolVersion: 4 },
    );
    const bytes = Buffer.concat([big, next]);
    // A first chunk that ends inside the topic, then 64 KiB chunks as a socket reads them: the tap never keeps
    // more than one chunk's worth.
    const cuts = [0, 12];
    for (let i = 12 + 65_536; i < bytes.length; i += 65_536) cuts.push(i);
    cuts.push(bytes.length);
    for (let k = 1; k < cuts.length; k++) {
      w.send(bytes.subarray(cuts[k - 1], cuts[k]));
      await new Promise((r) => setImmediate(r));
      expect((w.tap as unknown as { pendingBytes: number }).pendingBytes).toBeLessThanOrEqual(65_536);
    }
    expect(w.error()).toBeUndefined();
    expect(w.handed.map((h) => [h.topic, h.messageId, h.size, h.payload?.toString()])).toEqual([
      ['cfm/v1/S1/d1/telemetry', 0, 3_000_000, undefined],
      ['cfm/v1/S1/d2/telemetry', 8, 7, '{"v":1}'],
    ]);
  });

  const publishBytes = (topic: string, id: number, props?: Buffer) => {
    const t = Buffer.from(topic);
    const body = Buffer.concat([
      Buffer.from([t.length >> 8, t.length & 255]),
      t,
      Buffer.from([id >> 8, id & 255]),
      ...(props ? [Buffer.from([props.length]), props] : []),
      Buffer.from('{}'),
    ]);
    return Buffer.concat([Buffer.from([0x32, body.length]), body]);
  };

  it.each([
    ['a remaining length of five bytes', 4 as const, Buffer.from([0x32, 0xff, 0xff, 0xff, 0xff, 0x01])],
    ['QoS 3', 4 as const, Buffer.from([0x36, 0x05, 0x00, 0x01, 0x74, 0x00, 0x01])],
    ['packet id 0', 4 as const, publishBytes('t/1', 0)],
    ['a topic that runs past its packet', 4 as const, Buffer.from([0x32, 0x04, 0x00, 0x09, 0x74, 0x74])],
    ['an empty topic', 4 as const, publishBytes('', 1)],
    ['a Topic Alias we never allowed', 5 as const, publishBytes('t/1', 1, Buffer.from([0x23, 0x00, 0x01]))],
    [
      'a property that is not a PUBLISH property',
      5 as const,
      publishBytes('t/1', 1, Buffer.from([0x11, 0, 0, 0, 1])),
    ],
    [
      'a SUBACK of 70,000 bytes (a packet other than PUBLISH over 64 KiB)',
      4 as const,
      generate({ cmd: 'suback', messageId: 3, granted: Array(70_000).fill(1) }, { protocolVersion: 4 }),
    ],
    [
      'a Subscription Identifier of five bytes',
      5 as const,
      publishBytes('t/1', 1, Buffer.from([0x0b, 0x80, 0x80, 0x80, 0x80, 0x01])),
    ],
    [
      'a properties length of five bytes',
      5 as const,
      Buffer.from([0x32, 0x0c, 0x00, 0x03, 0x74, 0x2f, 0x31, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0x01]),
    ],
    [
      'a property that runs past the properties',
      5 as const,
      publishBytes('t/1', 1, Buffer.from([0x03, 0x00, 0x09, 0x61])),
    ],
  ])(
    'ends the connection on %s, with an error mqtt.js reports, and hands nothing of it on',
    async (_, v, bad) => {
      const w = wire(v);
      const good = generate(
        {
          cmd: 'publish',
          topic: 't/0',
          payload: Buffer.from('{}'),
          qos: 1,
          messageId: 9,
          retain: false,
          dup: false,
        },
        { protocolVersion: v },
      );
      w.send(Buffer.concat([good, bad, good]));
      await new Promise((r) => setImmediate(r));
      expect(w.error()?.code).toBe('ERR_MQTT_MALFORMED');
      expect(w.tap.destroyed).toBe(true);
      expect(w.inner.destroyed).toBe(true);
      expect(w.handed.map((h) => h.messageId)).toEqual([9]);
    },
  );

  it('hands on a PUBLISH whose user properties are over 128 KiB without its payload, and goes on', async () => {
    const w = wire(5, 1_000);
    const props = { userProperties: { a: 'x'.repeat(60_000), b: 'y'.repeat(60_000), c: 'z'.repeat(30_000) } };
    const bytes = Buffer.concat([
      generate(
        {
          cmd: 'publish',
          topic: 't/poison',
          payload: Buffer.from('{}'),
          qos: 1,
          messageId: 1,
          retain: false,
          dup: false,
          properties: props,
        },
        { protocolVersion: 5 },
      ),
      generate(
        {
          cmd: 'publish',
          topic: 't/next',
          payload: Buffer.from('{"ok":1}'),
          qos: 1,
          messageId: 2,
          retain: false,
          dup: false,
        },
        { protocolVersion: 5 },
      ),
    ]);
    await sendChunked(w, bytes, rng(5));
    expect(w.error()).toBeUndefined();
    expect(w.handed.map((h) => [h.topic, h.messageId, h.payload?.toString()])).toEqual([
      ['t/poison', 1, undefined],
      ['t/next', 2, '{"ok":1}'],
    ]);
    expect(w.handed[0]!.size).toBeGreaterThan(150_000);
  });
});

/**
 * A broker of our own, byte by byte: CONNACK and three messages at once, then more while the owner stops. The
 * tap must not keep a stopping session's socket from closing (mqtt.js waits for 'close' before endAsync resolves).
 */
describe('a session through the tap, stopping while messages still arrive', () => {
  it.each([false, true])(
    'closes its connection on stop (another message queued behind the held one: %s)',
    async (late) => {
      const v = 4 as const;
      const pub = (id: number) =>
        generate(
          {
            cmd: 'publish',
            topic: `t/${id}`,
            payload: Buffer.from('{}'),
            qos: 1,
            messageId: id,
            retain: false,
            dup: false,
          },
          { protocolVersion: v },
        );
      const sockets: Socket[] = [];
      const server = createServer((s) => {
        sockets.push(s);
        s.on('error', () => {});
        s.once('data', () =>
          s.write(
            Buffer.concat([
              generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }, { protocolVersion: v }),
              pub(1),
              pub(2),
              pub(3),
            ]),
          ),
        );
        s.on('data', (b) => {
          if (b.at(-2) === 0xe0) s.end(); // DISCONNECT: the broker closes, as Mosquitto does
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      onTestFinished(() => {
        for (const s of sockets) s.destroy();
        server.close();
      });
      let position = 0;
      let settled = 0;
      const acks = new ManualAcks({ maxUnacked: 100, position: () => position, settled: () => settled });
      const handed: number[] = [];
      const offered: number[] = [];
      let stopping = false;
      const session = new MqttSession(
        mqttConfigSchema.parse({
          url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
          protocol: '3.1.1',
        }),
        {
          log: silentLogger(),
          clientId: 'tap-stop',
          persistentSession: true,
          acks,
          tap: {
            maxPayloadBytes: 1_000,
            sink: (p, tap) => {
              offered.push(p.messageId);
              if (stopping) return false; // as the collector's sink: neither handled nor acknowledged
              handed.push(p.messageId);
              position++;
              return acks.accept(p.client, p.qos, p.messageId, tap.proceed);
            },
          },
        },
      );
      session.start();
      await session.waitConnected(10_000);
      await waitFor(() => handed.length === 3, { what: 'three messages' });
      settled = position;
      acks.release();
      // As Collector.stop(): the next message is held, neither handled nor acknowledged.
      stopping = true;
      acks.stopIntake();
      sockets[0]!.write(pub(4));
      await waitFor(() => offered.length === 4, { what: 'message 4 offered and held' });
      if (late) {
        // Queued behind the held message: sent (on loopback, at the client once written), never read.
        await new Promise((r) => sockets[0]!.write(pub(5), r));
      }
      let stopped = false;
      const stop = session.stop().then(() => {
        stopped = true;
      });
      await waitFor(() => stopped, { what: 'the session stopped', timeoutMs: 10_000 });
      await stop;
      expect(handed).toEqual([1, 2, 3]);
      expect(offered).toEqual([1, 2, 3, 4]);
    },
  );
});

describe('MqttTap and mqtt.js reading slowly', () => {
  it('pauses the socket while mqtt.js reads no more, and resumes it when mqtt.js reads again', async () => {
    const inner = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
    const tap = new MqttTap({} as MqttClient, inner, {
      protocolVersion: 4,
      maxPayloadBytes: 1_000,
      sink: () => true,
    });
    // Nobody reads the tap (mqtt.js busy): 40 KiB of PINGRESP fill its 16 KiB buffer.
    inner.push(Buffer.concat(Array.from({ length: 20_000 }, () => generate({ cmd: 'pingresp' }))));
    await new Promise((r) => setImmediate(r));
    expect(inner.isPaused()).toBe(true);
    let read = 0;
    tap.on('data', (b: Buffer) => {
      read += b.length;
    });
    await waitFor(() => read === 40_000, { what: 'everything read' });
    expect(inner.isPaused()).toBe(false);
  });
});
