import type { Socket } from 'node:net';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { parser as packetParser } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { MqttSession, mqttConfigSchema } from '../../common/mqtt.js';
import { ManualAcks } from '../../common/mqtt-acks.js';
import { captureLogger, waitFor } from '../helpers/influx.js';
import { Mosquitto, startBroker } from '../helpers/mqtt.js';
import { TcpGate } from '../helpers/tcp-gate.js';

/**
 * PUBACK after the work (common/mqtt-acks.ts) on real brokers. These pin what it relies on in mqtt.js 5: that
 * `handleMessage`'s callback called with an error goes on to the next packet without a PUBACK, and that
 * PUBACKs written on the client's stream are taken by the broker — so an mqtt.js upgrade that changes either
 * fails here, not in production.
 */
const mosquitto = new Mosquitto();
let aedes: Awaited<ReturnType<typeof startBroker>>;
beforeAll(async () => {
  [, aedes] = await Promise.all([
    mosquitto.start(),
    // The subscriber takes only iface messages, which does not cover a poller's school (status and event too):
    // holding devices until a collector receives their school is not what this test is about.
    startBroker(
      [
        { username: 'coll', role: 'collector' },
        { username: 'poll', role: 'poller', schools: ['S1'] },
      ],
      { holdDevicesUntilCollector: false },
    ),
  ]);
});
afterAll(async () => {
  await Promise.all([mosquitto.dispose(), aedes.dispose()]);
});

let n = 0;
interface Target {
  name: string;
  url: () => string;
  protocol: '5' | '3.1.1';
  filter: (id: string) => string;
  sub: { username?: string; password?: string };
  pub: { username?: string; password?: string };
}
const TARGETS: Target[] = [
  {
    name: 'Mosquitto, MQTT 5, shared subscription',
    url: () => mosquitto.url,
    protocol: '5',
    filter: (id) => `$share/${id.replace(/\W/g, '_')}/cfm/v1/S1/+/iface`,
    sub: {},
    pub: {},
  },
  {
    name: 'Mosquitto, MQTT 3.1.1',
    url: () => mosquitto.url,
    protocol: '3.1.1',
    filter: () => 'cfm/v1/S1/+/iface',
    sub: {},
    pub: {},
  },
  {
    name: 'embedded broker (aedes, MQTT 3.1.1)',
    url: () => aedes.url,
    protocol: '3.1.1',
    filter: () => 'cfm/v1/S1/+/iface',
    sub: {
      username: 'coll',
      get password() {
        return aedes.secrets.coll;
      },
    },
    pub: {
      username: 'poll',
      get password() {
        return aedes.secrets.poll;
      },
    },
  },
];

/**
 * How messages reach ManualAcks: mqtt.js's handleMessage (any MqttSession with acks), or the tap below mqtt.js
 * (common/mqtt-tap.ts, the collector's path).
 */
type Path = 'mqtt.js' | 'tap';
const CASES = TARGETS.flatMap((t) => (['mqtt.js', 'tap'] as const).map((path) => ({ ...t, path })));

/** A filter nobody publishes to: subscribing to it is a round trip that passes through the broker. */
const QUIET = 'cfm/v1/S1/quiet/event';

/**
 * A subscriber session with manual acks: message k (0-based, in receive order) waits for position k + 1. It
 * connects through a relay that reads the PUBACKs it sends off the wire, as the broker receives them.
 */
async function subscriber(
  t: Target,
  clientId: string,
  maxUnacked: number,
  onFull?: () => void,
  path: Path = 'mqtt.js',
) {
  let position = 0;
  let settled = 0;
  const received: IPublishPacket[] = [];
  const pubacks: number[] = [];
  const parsers = new WeakMap<Socket, ReturnType<typeof packetParser>>();
  const relay = await new TcpGate(Number(new URL(t.url()).port), (chunk, connection) => {
    let p = parsers.get(connection);
    if (!p) {
      p = packetParser({ protocolVersion: t.protocol === '5' ? 5 : 4 });
      p.on('packet', (pk) => {
        if (pk.cmd === 'puback') pubacks.push(pk.messageId!);
      });
      parsers.set(connection, p);
    }
    p.parse(chunk);
  }).open();
  onTestFinished(() => relay.close());
  const acks = new ManualAcks({ maxUnacked, position: () => position, settled: () => settled, onFull });
  const session = new MqttSession(
    mqttConfigSchema.parse({
      url: relay.url,
      protocol: t.protocol,
      ...t.sub,
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
    }),
    {
      log: captureLogger().log,
      clientId,
      persistentSession: true,
      sessionExpiryS: 600,
      acks,
      ...(path === 'tap' && {
        tap: {
          maxPayloadBytes: 1_024,
          sink: (p, tap) => {
            received.push({
              cmd: 'publish',
              topic: p.topic,
              payload: Buffer.from(p.payload!),
              qos: p.qos,
              messageId: p.messageId,
              retain: p.retain,
              dup: false,
            });
            position++;
            return acks.accept(p.client, p.qos, p.messageId, tap.proceed);
          },
        },
      }),
    },
  );
  session.on('message', (_topic, _payload, packet) => {
    if (path === 'tap') throw new Error('a QoS 1 message reached mqtt.js past the tap');
    received.push(packet);
    position++;
  });
  return {
    session,
    acks,
    received,
    pubacks,
    settle(through: number) {
      settled = through;
      acks.release();
    },
    /**
     * A SUBSCRIBE and its SUBACK: every PUBACK written before has passed the relay, and every message the
     * broker sent before answering has been received. (Not while the connection is held: nothing is read then.)
     */
    async roundTrip() {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const why = acks.heldForMs() > 0 ? ': the connection is held at the bound' : '';
          reject(new Error(`no SUBACK within 5 s${why}`));
        }, 5_000);
      });
      try {
        await Promise.race([session.subscribe(QUIET, 1), deadline]);
      } finally {
        clearTimeout(timer);
      }
    },
    async start() {
      const subscribed = new Promise<void>((resolve, reject) =>
        session.once('connect', () => session.subscribe(t.filter(clientId), 1).then(() => resolve(), reject)),
      );
      session.start();
      await subscribed;
    },
  };
}

async function publisher(t: Target): Promise<MqttClient> {
  const c = await mqtt.connectAsync(t.url(), {
    clientId: `${t.pub.username ?? 'pub'}/${++n}`,
    protocolVersion: t.protocol === '5' ? 5 : 4,
    ...t.pub,
  });
  onTestFinished(() => c.endAsync(true));
  return c;
}

const payload = (i: number) => JSON.stringify({ i });
const indexOf = (p: IPublishPacket) => (JSON.parse(p.payload.toString()) as { i: number }).i;

describe.each(CASES)('manual PUBACK on $name, through $path', (t) => {
  it('takes messages without acknowledging them, acknowledges in receive order, and the broker sends the rest again', async () => {
    const id = `coll/acks-${++n}`;
    const a = await subscriber(t, id, 1_000, undefined, t.path);
    await a.start();
    const pub = await publisher(t);
    for (let i = 0; i < 50; i++) await pub.publishAsync(`cfm/v1/S1/d${i % 5}/iface`, payload(i), { qos: 1 });
    // All 50 arrive although none is acknowledged: the stream is not handled one message per acknowledgement.
    await waitFor(() => a.received.length === 50, { what: '50 received' });
    await a.roundTrip();
    expect(a.pubacks).toEqual([]);
    expect(a.acks.unacked).toBe(50);

    a.settle(20);
    await a.roundTrip();
    expect(a.pubacks).toEqual(a.received.slice(0, 20).map((p) => p.messageId)); // MQTT-4.6.0-2: in order
    expect(a.acks.unacked).toBe(30);
    await a.session.stop();

    // The same session again: exactly the 30 unacknowledged come back (QoS 1 redelivery, MQTT-4.4.0-1).
    const b = await subscriber(t, id, 1_000, undefined, t.path);
    await b.start();
    await waitFor(() => b.received.length >= 30, { what: '30 redelivered' });
    expect(b.received.map(indexOf).sort((x, y) => x - y)).toEqual(
      a.received
        .slice(20)
        .map(indexOf)
        .sort((x, y) => x - y),
    );
    b.settle(b.received.length);
    await b.roundTrip();
    expect(b.pubacks).toHaveLength(30);
    await b.session.stop();

    // And nothing after that: everything was acknowledged.
    const c = await subscriber(t, id, 1_000, undefined, t.path);
    await c.start();
    await pub.publishAsync('cfm/v1/S1/d0/iface', payload(99), { qos: 1 });
    await waitFor(() => c.received.length >= 1, { what: 'a fresh message' });
    expect(c.received.map(indexOf)).toEqual([99]);
    c.settle(1);
    await c.session.stop();
  });
});

describe('the bound on unacknowledged messages', () => {
  it.each(CASES.filter((c) => c !== CASES[2] && c !== CASES[3]))(
    'holds at maxUnacked on $name through $path, and goes on as acknowledgements make room',
    async (t) => {
      const id = `coll/bound-${++n}`;
      const full: number[] = [];
      const a = await subscriber(t, id, 10, () => full.push(a.acks.unacked), t.path);
      await a.start();
      const pub = await publisher(t);
      await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          pub.publishAsync(`cfm/v1/S1/d${i % 5}/iface`, payload(i), { qos: 1 }),
        ),
      );
      // The broker has all 30. MQTT 5: it sends Receive Maximum (10) and waits — everything it sent before
      // answering a round trip has arrived. MQTT 3.1.1 without an in-flight limit (aedes): the collector takes
      // one more and holds it, and mqtt.js reads nothing after a held message.
      const most = t.protocol === '5' ? 10 : 11;
      if (t.protocol === '5') {
        await waitFor(() => a.received.length >= most, { what: `${most} received` });
        await a.roundTrip();
      } else await waitFor(() => a.acks.heldForMs() > 0, { what: 'the connection held at the bound' });
      expect(a.received.length).toBe(most);
      expect(full.length).toBeGreaterThan(0);

      a.settle(5);
      await waitFor(() => a.received.length >= most + 5, { what: 'five more after five acknowledgements' });
      a.settle(30);
      await waitFor(() => a.received.length === 30, { what: 'all 30' });
      a.settle(30);
      expect(a.acks.unacked).toBe(0);
      expect(new Set(a.received.map(indexOf)).size).toBe(30);
      await a.session.stop();
    },
  );
});
