import { createConnection } from 'node:net';
import mqtt, { type IClientOptions, MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { BrokerConfig } from '../../broker/broker.js';
import { waitFor } from '../helpers/influx.js';
import { closed as closedUnbounded, connectClient, startBroker, type UserSpec } from '../helpers/mqtt.js';

/**
 * The embedded broker against hostile and careless clients (issue #12): real aedes through the project's
 * helper, real mqtt.js clients. Each case asserts what the broker let through, what it refused and counted,
 * and that it still serves a well-behaved client afterwards.
 */
const SCHOOL = '3133001234';
const OTHER_SCHOOL = '3133009999';
const USERS: UserSpec[] = [
  { username: 'dev-a', role: 'device', school: SCHOOL, device: 'c0701-ops' },
  { username: 'dev-b', role: 'device', school: SCHOOL, device: 'c0702-ops' },
  { username: 'poll-1', role: 'poller', schools: [SCHOOL] },
  { username: 'poll-t', role: 'poller', schools: [SCHOOL], devices: [`${SCHOOL}/gw-01`] },
  { username: 'coll', role: 'collector' },
  { username: 'live', role: 'reader' },
  // Collectors sharded by school (`collector.schools`), a device of the other school, a poller spanning both.
  { username: 'coll-1', role: 'collector' },
  { username: 'coll-2', role: 'collector' },
  { username: 'dev-o', role: 'device', school: OTHER_SCHOOL, device: 'c0101-ops' },
  { username: 'poll-2', role: 'poller', schools: [SCHOOL, OTHER_SCHOOL] },
];
const topicOf = (device: string, channel: string, school = SCHOOL) => `cfm/v1/${school}/${device}/${channel}`;
const A_STATUS = topicOf('c0701-ops', 'status');
const A_TELEMETRY = topicOf('c0701-ops', 'telemetry');
const B_STATUS = topicOf('c0702-ops', 'status');
const B_TELEMETRY = topicOf('c0702-ops', 'telemetry');

type TestBroker = Awaited<ReturnType<typeof startBroker>>;
interface Message {
  topic: string;
  payload: string;
  retain: boolean;
}

const brokers: TestBroker[] = [];
const clients: MqttClient[] = [];
let seq = 0;

afterEach(async () => {
  for (const c of clients.splice(0)) await c.endAsync(true);
  for (const b of brokers.splice(0)) await b.dispose();
});

async function start(overrides: Partial<BrokerConfig> = {}) {
  const b = await startBroker(USERS, overrides);
  brokers.push(b);
  return b;
}

/** A client of `username` with a fresh id `{username}/{n}`; the broker cutting it off is expected here. */
async function connectAs(b: TestBroker, username: string, opts: IClientOptions = {}) {
  const c = await connectClient(b.url, {
    username,
    password: b.secrets[username],
    clientId: `${username}/${++seq}`,
    ...opts,
  });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

/** A subscriber of `username` on `filter`, whose messages land in the returned list. */
async function subscriber(
  b: TestBroker,
  username: string,
  filter = 'cfm/v1/+/+/+',
  opts: IClientOptions = {},
) {
  const c = await connectAs(b, username, opts);
  const got: Message[] = [];
  c.on('message', (topic, payload, packet) =>
    got.push({ topic, payload: payload.toString(), retain: packet.retain }),
  );
  expect(await c.subscribeAsync(filter, { qos: 1 })).toMatchObject([{ topic: filter, qos: 1 }]);
  return { c, got };
}

/**
 * dev-b publishes a fresh telemetry reading and waits until `got` has it: the broker is responsive, and whatever
 * it sent this subscriber before is in `got`.
 */
async function sentinel(b: TestBroker, got: Message[]) {
  const dev = await connectAs(b, 'dev-b');
  const payload = `{"sentinel":${++seq}}`;
  await dev.publishAsync(B_TELEMETRY, payload, { qos: 1 });
  await waitFor(() => got.some((m) => m.payload === payload), { what: 'the sentinel' });
  await dev.endAsync();
}

/** Resolves when the broker closes `c`; fails after 10 s, so a broker that lets a refused client stay fails fast. */
function closed(c: MqttClient): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    closedUnbounded(c).finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the broker did not close the connection')), 10_000);
    }),
  ]);
}

/**
 * Connects as `username` with `password` from the client address `from` (127.0.0.2 is loopback too on Linux:
 * a second client address on one machine). Resolves with the client or rejects with the CONNACK code.
 */
function connectFrom(b: TestBroker, from: string, username: string, password: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = new MqttClient(
      () => createConnection({ host: '127.0.0.1', port: b.broker.ports[0]!, localAddress: from }),
      { username, password, clientId: `${username}/${++seq}`, reconnectPeriod: 0, protocolVersion: 4 },
    );
    c.once('connect', () => {
      clients.push(c);
      resolve(c);
    });
    c.once('error', (err) => {
      c.end(true);
      reject(err);
    });
  });
}

const logsOf = (b: TestBroker, prefix: string) => b.logs.filter((l) => String(l.msg).startsWith(prefix));

describe('holding devices until a subscriber that stores readings is back', () => {
  it('after a broker restart a reader subscribing first does not admit devices (CONNACK 3); a collector does', async () => {
    const b = await start({ holdDevicesUntilCollector: true });
    const coll = await subscriber(b, 'coll');
    await connectAs(b, 'dev-a');

    // The in-memory broker restarts: every session, and with them the collector's, is gone.
    for (const c of clients.splice(0)) await c.endAsync(true);
    await b.broker.stop();
    await b.broker.start();

    // The API's live view reconnects first, as it did in the incident, and subscribes successfully.
    const live = await subscriber(b, 'live');
    for (const u of ['dev-a', 'poll-1']) {
      await expect(connectAs(b, u), u).rejects.toMatchObject({ code: 3 });
    }
    expect(b.broker.stats()).toMatchObject({ heldBack: 2, authFailures: 0 });

    // The collector subscribes: now devices are admitted, and their readings reach the one that stores them.
    const coll2 = await subscriber(b, 'coll');
    const dev = await connectAs(b, 'dev-a');
    await dev.publishAsync(A_TELEMETRY, '{"after":"restart"}', { qos: 1 });
    await waitFor(() => coll2.got.some((m) => m.payload === '{"after":"restart"}'), {
      what: 'the reading at the collector',
    });
    expect(coll.got).toEqual([]);
    expect(live.got.map((m) => m.payload)).toEqual(['{"after":"restart"}']);
    expect(b.broker.stats()).toMatchObject({ heldBack: 2, authFailures: 0 });
  });

  it('refuses a reader publishing anything, even a retained status', async () => {
    const b = await start();
    const coll = await subscriber(b, 'coll');
    const live = await connectAs(b, 'live');
    const gone = closed(live);
    live.publish(A_STATUS, '{"state":"offline"}', { qos: 1, retain: true });
    await gone;
    expect(b.broker.stats()).toMatchObject({ deniedPublish: 1, published: 0 });
    expect(logsOf(b, 'publish refused')).toMatchObject([{ why: 'a reader only subscribes' }]);
    await sentinel(b, coll.got);
    expect(coll.got.map((m) => m.topic)).toEqual([B_TELEMETRY]);
  });
});

describe('holding devices until the collector of their school is back (collectors sharded by school)', () => {
  const O_TELEMETRY = topicOf('c0101-ops', 'telemetry', OTHER_SCHOOL);
  // What `collector.schools: [school]` subscribes to, on the persistent session the collector keeps.
  const shardFilter = (school: string) => `cfm/v1/${school}/#`;
  const persistent = (username: string): IClientOptions => ({ clientId: `${username}/host`, clean: false });
  const refused = async (b: TestBroker, username: string) =>
    expect(connectAs(b, username), username).rejects.toMatchObject({ code: 3 });

  it("after a restart with only shard 1 subscribed, shard 2's device is refused (CONNACK 3) and shard 1's admitted; then both", async () => {
    const b = await start({ holdDevicesUntilCollector: true });
    await subscriber(b, 'coll-1', shardFilter(SCHOOL), persistent('coll-1'));
    await subscriber(b, 'coll-2', shardFilter(OTHER_SCHOOL), persistent('coll-2'));
    await connectAs(b, 'dev-o');

    // The in-memory broker restarts: every session is gone. Shard 1 and the API's live view come back first.
    for (const c of clients.splice(0)) await c.endAsync(true);
    await b.broker.stop();
    await b.broker.start();
    const shard1 = await subscriber(b, 'coll-1', shardFilter(SCHOOL), persistent('coll-1'));
    const live = await subscriber(b, 'live');

    // Shard 2's school: its readings would be acknowledged and lost (shard 1 and the reader do not store them).
    await refused(b, 'dev-o');
    // A poller of both shards' schools replays the readings of both on one connection: it waits for both.
    await refused(b, 'poll-2');
    expect(b.broker.stats()).toMatchObject({ heldBack: 2, authFailures: 0 });
    // Held refusals are logged at most once per interval (thousands of devices retry after a restart).
    expect(logsOf(b, 'connection refused')).toMatchObject([
      { why: `no collector has subscribed to school ${OTHER_SCHOOL} yet: try again later`, heldBack: 1 },
    ]);
    // Shard 1's school is admitted, device and poller, and its reading is stored by shard 1.
    const devA = await connectAs(b, 'dev-a');
    await connectAs(b, 'poll-1');
    await devA.publishAsync(A_TELEMETRY, '{"shard":1}', { qos: 1 });
    await waitFor(() => shard1.got.some((m) => m.payload === '{"shard":1}'), {
      what: 'the reading at shard 1',
    });

    // Shard 2 subscribes: now both are admitted, and shard 2 gets its school's reading.
    const shard2 = await subscriber(b, 'coll-2', shardFilter(OTHER_SCHOOL), persistent('coll-2'));
    const devO = await connectAs(b, 'dev-o');
    await connectAs(b, 'poll-2');
    await connectAs(b, 'dev-b');
    await devO.publishAsync(O_TELEMETRY, '{"shard":2}', { qos: 1 });
    await waitFor(() => shard2.got.some((m) => m.payload === '{"shard":2}'), {
      what: 'the reading at shard 2',
    });
    await waitFor(() => live.got.length === 2, { what: 'both readings at the reader' });
    expect(live.got.map((m) => m.payload)).toEqual(['{"shard":1}', '{"shard":2}']);
    expect(shard1.got.map((m) => m.payload)).toEqual(['{"shard":1}']);
    expect(b.broker.stats()).toMatchObject({ heldBack: 2, authFailures: 0 });
  });

  it('a shared subscription counts for the filter inside it; a target-bound poller needs only its targets covered', async () => {
    const b = await start({ holdDevicesUntilCollector: true });
    // A collector receiving only one device of the school does not admit the rest of the school.
    await subscriber(b, 'coll-1', `$share/g/cfm/v1/${SCHOOL}/gw-01/+`);
    await refused(b, 'dev-a');
    await refused(b, 'poll-1');
    await connectAs(b, 'poll-t'); // its only target is gw-01
    await subscriber(b, 'coll-2', `$share/g/cfm/v1/${SCHOOL}/+/+`);
    await connectAs(b, 'dev-a');
    await connectAs(b, 'poll-1');
    await refused(b, 'dev-o');
  });

  it("coverage lasts as long as the collector's session: through a persistent session's absence, not a clean one's", async () => {
    const b = await start({ holdDevicesUntilCollector: true });
    await subscriber(b, 'coll-1', shardFilter(SCHOOL), persistent('coll-1'));
    const shard2 = await connectAs(b, 'coll-2', persistent('coll-2'));
    await shard2.subscribeAsync(shardFilter(OTHER_SCHOOL), { qos: 1 });

    // Shard 2 goes away with its persistent session: readings of its school are queued for it, so its devices
    // are still admitted, and it receives the reading sent meanwhile when it is back.
    await shard2.endAsync();
    const devO = await connectAs(b, 'dev-o');
    await devO.publishAsync(O_TELEMETRY, '{"while":"away"}', { qos: 1 });
    await devO.endAsync();
    const back = await connectFresh(b, 'coll-2', persistent('coll-2'));
    await waitFor(() => back.got.some((m) => m.payload === '{"while":"away"}'), {
      what: 'the queued reading',
    });
    await connectAs(b, 'dev-o');

    // It unsubscribes: its school is not covered any more.
    await back.c.unsubscribeAsync(shardFilter(OTHER_SCHOOL));
    await refused(b, 'dev-o');
    // A clean session covers while it is connected, and not after.
    const clean = await connectAs(b, 'coll-2');
    await clean.subscribeAsync(shardFilter(OTHER_SCHOOL), { qos: 1 });
    await connectAs(b, 'dev-o');
    const connected = b.broker.stats().connected;
    await clean.endAsync();
    // The broker ends the session when it has handled the DISCONNECT, not when the client has sent it.
    await waitFor(() => b.broker.stats().connected < connected, { what: 'the clean session ended' });
    await refused(b, 'dev-o');
    // A persistent session is discarded when its client id connects again with a clean session (MQTT-3.1.2-6).
    const again = await connectAs(b, 'coll-2', persistent('coll-2'));
    await again.subscribeAsync(shardFilter(OTHER_SCHOOL), { qos: 1 });
    await again.endAsync();
    await connectAs(b, 'dev-o');
    const cleaned = await connectAs(b, 'coll-2', { clientId: 'coll-2/host', clean: true });
    await refused(b, 'dev-o');
    await cleaned.endAsync();
    // Shard 1's school was covered all along.
    await connectAs(b, 'dev-a');
    expect(b.broker.stats()).toMatchObject({ heldBack: 3, authFailures: 0 });
  });
});

/**
 * A client of `username` whose messages are collected from before its CONNACK: a persistent session's queued
 * messages may arrive in the same read as the CONNACK.
 */
async function connectFresh(b: TestBroker, username: string, opts: IClientOptions) {
  const got: Message[] = [];
  const c = mqtt.connect(b.url, {
    username,
    password: b.secrets[username],
    reconnectPeriod: 0,
    protocolVersion: 4,
    ...opts,
  });
  c.on('message', (topic, payload, packet) =>
    got.push({ topic, payload: payload.toString(), retain: packet.retain }),
  );
  c.on('error', () => {});
  clients.push(c);
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
  return { c, got };
}

describe('pollers publish only for their own targets', () => {
  it('a poller bound to a target list publishes for it and is refused for any other device of its school', async () => {
    const b = await start();
    const coll = await subscriber(b, 'coll');
    const poller = await connectAs(b, 'poll-t');
    await poller.publishAsync(topicOf('gw-01', 'status'), '{"state":"online"}', { qos: 1, retain: true });
    await poller.publishAsync(topicOf('gw-01', 'iface'), '{"ifIndex":1}', { qos: 1 });
    const gone = closed(poller);
    poller.publish(topicOf('gw-02', 'status'), '{"state":"offline"}', { qos: 1, retain: true });
    await gone;
    expect(b.broker.stats().deniedPublish).toBe(1);
    expect(logsOf(b, 'publish refused')).toMatchObject([
      { why: `device ${SCHOOL}/gw-02 is not a target of this poller` },
    ]);
    // Nor under another school's id, whatever the device.
    const again = await connectAs(b, 'poll-t');
    const gone2 = closed(again);
    again.publish(topicOf('gw-01', 'status', OTHER_SCHOOL), '{"state":"offline"}', { qos: 1 });
    await gone2;
    await sentinel(b, coll.got);
    expect(coll.got.map((m) => m.topic)).toEqual([
      topicOf('gw-01', 'status'),
      topicOf('gw-01', 'iface'),
      B_TELEMETRY,
    ]);
    expect(b.broker.stats()).toMatchObject({ deniedPublish: 2, published: 3 });
  });

  it('a poller flooding retained statuses for invented device ids holds at most pollerMaxRetainedDevices', async () => {
    const b = await start({ pollerMaxRetainedDevices: 100 });
    const coll = await subscriber(b, 'coll');
    const poller = await connectAs(b, 'poll-1');
    const gone = closed(poller);
    for (let i = 1; i <= 3_000; i++) {
      poller.publish(topicOf(`fake-${i}`, 'status'), '{"state":"offline"}', { qos: 0, retain: true });
    }
    await gone;
    const s = b.broker.stats();
    expect(s.retainedLimited).toBe(1);
    expect(s.published).toBe(100);
    expect(s.refusedAfterRefusal).toBeLessThanOrEqual(3_000 - 101);
    expect(logsOf(b, 'publish refused')).toHaveLength(1);
    expect(logsOf(b, 'publish refused')[0]).toMatchObject({
      topic: topicOf('fake-101', 'status'),
      why: 'poller already holds a retained status for 100 devices (pollerMaxRetainedDevices)',
    });

    // A new subscriber is handed exactly the 100 retained statuses, the first hundred ids.
    const fresh = await subscriber(b, 'live', 'cfm/v1/+/+/status');
    await waitFor(() => fresh.got.length >= 100, { what: '100 retained statuses' });
    await sentinel(b, coll.got);
    expect(fresh.got.every((m) => m.retain)).toBe(true);
    expect(fresh.got.map((m) => m.topic).sort()).toEqual(
      Array.from({ length: 100 }, (_, i) => topicOf(`fake-${i + 1}`, 'status')).sort(),
    );
  });

  it('a poller at the bound may refresh the statuses it holds and, after clearing one, retain another', async () => {
    const b = await start({ pollerMaxRetainedDevices: 2 });
    await subscriber(b, 'coll');
    const poller = await connectAs(b, 'poll-1');
    for (const d of ['gw-01', 'gw-02', 'gw-01', 'gw-02'])
      await poller.publishAsync(topicOf(d, 'status'), '{"state":"online"}', { qos: 1, retain: true });
    // Non-retained statuses are not bounded by this (the rate limit applies).
    await poller.publishAsync(topicOf('gw-03', 'status'), '{"state":"online"}', { qos: 1 });
    // An empty retained payload deletes gw-01's retained status (MQTT-3.3.1-10) and frees its place.
    await poller.publishAsync(topicOf('gw-01', 'status'), '', { qos: 1, retain: true });
    await poller.publishAsync(topicOf('gw-03', 'status'), '{"state":"online"}', { qos: 1, retain: true });
    const gone = closed(poller);
    poller.publish(topicOf('gw-04', 'status'), '{"state":"online"}', { qos: 1, retain: true });
    await gone;
    expect(b.broker.stats()).toMatchObject({ retainedLimited: 1, published: 7 });
    // The count is per credential, not per connection: a reconnect does not reset it.
    const again = await connectAs(b, 'poll-1');
    const gone2 = closed(again);
    again.publish(topicOf('gw-05', 'status'), '{"state":"online"}', { qos: 1, retain: true });
    await gone2;
    expect(b.broker.stats()).toMatchObject({ retainedLimited: 2, published: 7 });
  });
});

describe('a device keeps at most its own retained status', () => {
  it('refuses a device retaining anything but its own status topic; a new subscriber gets only that one', async () => {
    const b = await start();
    const coll = await subscriber(b, 'coll');
    for (const [topic, what] of [
      [B_STATUS, 'another device’s status'],
      [topicOf('c0701-ops', 'status', OTHER_SCHOOL), 'its own id under another school'],
      [A_TELEMETRY, 'its own telemetry'],
      [topicOf('c0701-ops', 'event'), 'its own event'],
    ] as const) {
      const dev = await connectAs(b, 'dev-a');
      const gone = closed(dev);
      dev.publish(topic, '{"state":"online"}', { qos: 1, retain: true });
      await gone;
      expect(dev.connected, what).toBe(false);
    }
    expect(b.broker.stats()).toMatchObject({ deniedPublish: 4, published: 0 });
    const dev = await connectAs(b, 'dev-a');
    await dev.publishAsync(A_STATUS, '{"state":"online"}', { qos: 1, retain: true });

    const fresh = await subscriber(b, 'live', 'cfm/v1/#');
    await waitFor(() => fresh.got.length >= 1, { what: 'the retained status' });
    await sentinel(b, coll.got);
    expect(fresh.got.filter((m) => m.retain)).toEqual([
      { topic: A_STATUS, payload: '{"state":"online"}', retain: true },
    ]);
  });
});

describe('the status channel is rate limited like the others', () => {
  it('a flood of 3,000 retained statuses is cut at the burst, counted, fanned out boundedly; the will still goes out', async () => {
    const b = await start(); // defaults: 20/s, burst 200
    const { publishBurst, publishRatePerSec } = b.broker.config;
    const coll = await subscriber(b, 'coll');
    const will = {
      topic: A_STATUS,
      payload: Buffer.from('{"state":"offline","will":true}'),
      qos: 1 as const,
      retain: true,
    };
    const t0 = performance.now();
    /** One connection of dev-a sending 3,000 retained statuses; resolves when the broker has cut it off. */
    const flood = async (round: number) => {
      const dev = await connectAs(b, 'dev-a', { will });
      const gone = closed(dev);
      for (let i = 0; i < 3_000; i++)
        dev.publish(A_STATUS, `{"state":"online","round":${round},"n":${i}}`, { qos: 0, retain: true });
      await gone;
      await waitFor(() => coll.got.filter((m) => m.payload.includes('"will":true')).length === round, {
        what: `the last will of round ${round}`,
      });
    };
    await flood(1);
    const s1 = b.broker.stats();
    expect(s1).toMatchObject({ rateLimited: 1, rateLimitedStatus: 1 });
    // Reconnecting does not refill the bucket: the second flood gets through only what refilled meanwhile.
    await flood(2);
    const elapsedS = (performance.now() - t0) / 1_000;
    await sentinel(b, coll.got);

    const s = b.broker.stats();
    const fromA = coll.got.filter((m) => m.topic === A_STATUS);
    const statuses = fromA.filter((m) => !m.payload.includes('"will":true'));
    expect(statuses.length).toBeGreaterThanOrEqual(publishBurst);
    expect(statuses.length).toBeLessThanOrEqual(publishBurst + Math.ceil(publishRatePerSec * elapsedS));
    expect(fromA.length).toBe(statuses.length + 2); // + the two wills
    expect(s).toMatchObject({ rateLimited: 2, rateLimitedStatus: 2, deniedPublish: 0 });
    expect(s.published).toBe(fromA.length + 1); // + the sentinel
    // Whatever else the broker had read of each flood was refused without being looked at twice.
    expect(s.refusedAfterRefusal).toBeLessThanOrEqual(6_000 - statuses.length - 2);
    // One log line per flood, not one per message.
    expect(logsOf(b, 'publish refused')).toMatchObject([
      { why: 'publish rate exceeded', ratePerSec: publishRatePerSec },
      { why: 'publish rate exceeded', ratePerSec: publishRatePerSec },
    ]);
    // The device is not locked out: it connects again.
    expect((await connectAs(b, 'dev-a')).connected).toBe(true);
  });

  it('a well-behaved device (birth, clean offline, reboot, birth, will) never meets the limit, even a tight one', async () => {
    // Three tokens per credential and (practically) no refill.
    const b = await start({ publishBurst: 3, publishRatePerSec: 0.001 });
    const coll = await subscriber(b, 'coll');
    const will = {
      topic: A_STATUS,
      payload: Buffer.from('{"state":"offline","will":true}'),
      qos: 1 as const,
      retain: true,
    };
    const dev = await connectAs(b, 'dev-a', { will });
    await dev.publishAsync(A_STATUS, '{"state":"online"}', { qos: 1, retain: true });
    await dev.publishAsync(A_STATUS, '{"state":"offline"}', { qos: 1, retain: true });
    await dev.endAsync(); // a clean DISCONNECT: no will
    // Next boot: birth, then the PC loses power: the broker publishes the will although the bucket is empty.
    const dev2 = await connectAs(b, 'dev-a', { will });
    await dev2.publishAsync(A_STATUS, '{"state":"online"}', { qos: 1, retain: true });
    dev2.stream.destroy(); // the socket dies without DISCONNECT
    await waitFor(() => coll.got.some((m) => m.payload.includes('"will":true')), { what: 'the last will' });
    expect(coll.got.map((m) => m.payload)).toEqual([
      '{"state":"online"}',
      '{"state":"offline"}',
      '{"state":"online"}',
      '{"state":"offline","will":true}',
    ]);
    expect(b.broker.stats()).toMatchObject({ rateLimited: 0, deniedPublish: 0, published: 4 });
  });
});

describe('last wills are charged to their credential', () => {
  it('30 connections of one device credential, each with a will, dropped at once: the wills beyond the rate and the allowance are not published', async () => {
    const b = await start({ publishBurst: 5, publishRatePerSec: 0.001 });
    const coll = await subscriber(b, 'coll');
    const N = 30;
    const conns = [];
    for (let i = 0; i < N; i++)
      conns.push(
        await connectAs(b, 'dev-a', {
          will: {
            topic: A_STATUS,
            payload: Buffer.from(`{"state":"offline","n":${i}}`),
            qos: 1,
            retain: true,
          },
        }),
      );
    for (const c of conns) c.stream.destroy(); // no DISCONNECT: the broker publishes the wills it may
    await waitFor(() => b.broker.stats().rateLimitedWill + coll.got.length >= N, {
      what: 'every will decided',
    });
    await sentinel(b, coll.got);

    const wills = coll.got.filter((m) => m.topic === A_STATUS);
    // 5 from the bucket, 2 from the allowance (the refill over a test's seconds is negligible).
    expect(wills).toHaveLength(5 + 2);
    expect(b.broker.stats()).toMatchObject({ rateLimitedWill: N - 7, deniedPublish: 0 });
    expect(logsOf(b, 'last will not published')).toHaveLength(1);
    // Another credential is not affected: dev-b's will still goes out.
    const devB = await connectAs(b, 'dev-b', {
      will: { topic: B_STATUS, payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true },
    });
    devB.stream.destroy();
    await waitFor(() => coll.got.some((m) => m.topic === B_STATUS), { what: "dev-b's will" });
  });
});

describe('refused subscriptions are logged boundedly', () => {
  it('5 SUBSCRIBE packets of 5,000 refused filters each: every filter refused and counted, a few log lines', async () => {
    const intervalMs = 1_000;
    const b = await start({ deniedLogIntervalMs: intervalMs });
    const coll = await subscriber(b, 'coll');
    const t0 = performance.now();
    for (const who of ['dev-a', 'coll']) {
      const c = await connectAs(b, who);
      for (let p = 0; p < (who === 'coll' ? 4 : 1); p++) {
        // Filters outside cfm/v1/ (refused for anyone) and all distinct (aedes folds duplicates).
        const filters = Array.from({ length: 5_000 }, (_, i) => `x/${p}/${i}/#`);
        const err = await c.subscribeAsync(filters, { qos: 1 }).then(
          () => undefined,
          (e: { packet?: { granted: number[] } }) => e,
        );
        expect(err?.packet?.granted).toHaveLength(5_000);
        expect(err?.packet?.granted.every((g) => g === 0x80)).toBe(true);
      }
      expect(c.connected).toBe(true); // the session continues (MQTT-3.9.3)
    }
    expect(b.broker.stats().deniedSubscribe).toBe(25_000);
    const lines = () => logsOf(b, 'subscribe denied');
    const total = () => lines().reduce((n, l) => n + (l.refused as number), 0);
    await waitFor(() => total() === 25_000, {
      timeoutMs: 5 * intervalMs,
      what: 'every refusal logged as a count',
    });
    const elapsedMs = performance.now() - t0;
    // One line for dev-a's packet; the collector's four packets in at most one line per packet and per interval.
    const byClient = new Map<string, Record<string, unknown>[]>();
    for (const l of lines())
      byClient.set(String(l.clientId), [...(byClient.get(String(l.clientId)) ?? []), l]);
    expect([...byClient.values()].map((ls) => ls.length)).toHaveLength(2);
    const devLines = [...byClient.entries()].find(([id]) => id.startsWith('dev-a/'))![1];
    expect(devLines).toMatchObject([{ refused: 5_000, why: 'a device does not subscribe' }]);
    const collLines = [...byClient.entries()].find(([id]) => id.startsWith('coll/'))![1];
    expect(collLines.length).toBeLessThanOrEqual(Math.min(4, 1 + Math.ceil(elapsedMs / intervalMs)));
    expect(collLines[0]).toMatchObject({ refused: 5_000, why: 'only filters under cfm/v1/ are allowed' });
    expect(lines().length).toBeLessThan(10);
    // Responsive: a reading still flows to the subscribed collector.
    await sentinel(b, coll.got);
  });

  it('a credential reconnecting for every refused SUBSCRIBE still gets at most one line per interval', async () => {
    const b = await start({ deniedLogIntervalMs: 60_000 });
    await subscriber(b, 'coll'); // devices are admitted
    for (let i = 0; i < 20; i++) {
      const c = await connectAs(b, 'dev-a');
      const err = await c.subscribeAsync(`x/${i}/#`, { qos: 1 }).then(
        () => undefined,
        (e: { packet?: { granted: number[] } }) => e,
      );
      expect(err?.packet?.granted).toEqual([0x80]);
      await c.endAsync();
    }
    expect(b.broker.stats().deniedSubscribe).toBe(20);
    // The first is logged at once; the other 19 are summed into the next line, an interval later.
    await waitFor(() => logsOf(b, 'subscribe denied').length >= 1, { what: 'the first line' });
    expect(logsOf(b, 'subscribe denied')).toMatchObject([{ username: 'dev-a', refused: 1 }]);
  });
});

describe('failed logins are limited per client address', () => {
  it('past the budget an address is refused unchecked (CONNACK 3, counted, one log line); known logins and other addresses still get in', async () => {
    const b = await start({ authFailuresPerAddress: 3, authFailureWindowMs: 2_000 });
    await subscriber(b, 'coll'); // a collector logged in from 127.0.0.1: a known login there from now on
    const ip = '127.0.0.1';
    for (let i = 0; i < 3; i++)
      await expect(connectFrom(b, ip, 'dev-a', `guess-${i}`)).rejects.toMatchObject({ code: 4 });
    expect(b.broker.stats()).toMatchObject({ authFailures: 3, authThrottled: 0 });

    // The budget is spent: a fourth guess is refused without a check, and so is a device that never logged in
    // from here, even with its right secret — until the window ends.
    await expect(connectFrom(b, ip, 'dev-a', 'guess-3')).rejects.toMatchObject({ code: 3 });
    await expect(connectFrom(b, ip, 'dev-b', b.secrets['dev-b']!)).rejects.toMatchObject({ code: 3 });
    expect(b.broker.stats()).toMatchObject({ authFailures: 3, authThrottled: 2 });
    // The collector logged in from here before: it is still checked, and gets in.
    await connectFrom(b, ip, 'coll', b.secrets.coll!);
    // Another address has its own budget.
    await connectFrom(b, '127.0.0.2', 'dev-b', b.secrets['dev-b']!);

    expect(logsOf(b, 'failed logins from one address')).toEqual([
      expect.objectContaining({ address: ip, failures: 3, windowMs: 2_000 }),
    ]);
    expect(logsOf(b, 'connection refused')).toHaveLength(3); // one per checked failure, none per refusal after
    expect(JSON.stringify(b.logs)).not.toContain('guess-');

    await waitFor(() => connectFrom(b, ip, 'dev-b', b.secrets['dev-b']!).then(() => true), {
      timeoutMs: 5_000,
      intervalMs: 250,
      what: 'the window to end',
    });
    expect(b.broker.stats()).toMatchObject({ authFailures: 3 });
  });
});
