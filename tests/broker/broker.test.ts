import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IClientOptions, MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { Broker, type BrokerConfig, brokerConfigSchema } from '../../broker/broker.js';
import { CredentialStore, CredentialsError } from '../../broker/credentials.js';
import { writeFileAtomic } from '../../common/json-file.js';
import { RegistryIndex } from '../../common/registry/store.js';
import { inShard, shardSchema } from '../../common/shard.js';
import { registrySchema } from '../../contracts/registry.js';
import { captureLogger, waitFor } from '../helpers/influx.js';
import { closed, connectClient, startBroker, type UserSpec } from '../helpers/mqtt.js';
import { UPLINK_REGIONS, uplinkSchool } from '../helpers/uplinks.js';

const SCHOOL = '3133001234';
const OTHER_SCHOOL = '3133009999';
const USERS: UserSpec[] = [
  { username: 'dev-a', role: 'device', school: SCHOOL, device: 'c0701-ops' },
  { username: 'dev-b', role: 'device', school: SCHOOL, device: 'c0702-ops' },
  { username: 'poll-1', role: 'poller', schools: [SCHOOL] },
  { username: 'coll', role: 'collector' },
];
const topicOf = (device: string, channel: string, school = SCHOOL) => `cfm/v1/${school}/${device}/${channel}`;
const A_TELEMETRY = topicOf('c0701-ops', 'telemetry');
const B_TELEMETRY = topicOf('c0702-ops', 'telemetry');

type TestBroker = Awaited<ReturnType<typeof startBroker>>;
interface Message {
  topic: string;
  payload: string;
}

const brokers: TestBroker[] = [];
const clients: MqttClient[] = [];
const cleanups: (() => unknown)[] = [];
let seq = 0;

afterEach(async () => {
  for (const c of clients.splice(0)) await c.endAsync(true);
  for (const b of brokers.splice(0)) await b.dispose();
  for (const f of cleanups.splice(0).reverse()) await f();
});

/**
 * An mqtt.js client of `username` with its own secret and a fresh client id `{username}-{n}`, closed after the
 * test. Stream errors (the broker cutting the connection) are expected here, so they are swallowed.
 */
async function connect(url: string, username: string, secret: string | undefined, opts: IClientOptions = {}) {
  const c = await connectClient(url, {
    username,
    password: secret,
    clientId: `${username}/${++seq}`,
    ...opts,
  });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

async function connectAs(b: TestBroker, username: string, opts: IClientOptions = {}) {
  return connect(b.url, username, b.secrets[username], opts);
}

/**
 * The broker with USERS, and a collector subscribed to every v1 topic whose messages land in `received`. The
 * collector comes first: a broker may hold devices back until a collector has subscribed.
 */
async function setup(overrides: Partial<BrokerConfig> = {}) {
  const b = await startBroker(USERS, overrides);
  brokers.push(b);
  const received: Message[] = [];
  const coll = await connectAs(b, 'coll');
  coll.on('message', (topic, payload) => received.push({ topic, payload: payload.toString() }));
  const granted = await coll.subscribeAsync('cfm/v1/+/+/+', { qos: 1 });
  expect(granted).toMatchObject([{ topic: 'cfm/v1/+/+/+', qos: 1 }]);
  return { b, coll, received };
}

/** Publishes a valid sentinel from a second device and waits for it: whatever was refused before it is gone. */
async function sentinelFromB(b: TestBroker, received: Message[]): Promise<Message> {
  const dev = await connectAs(b, 'dev-b');
  const sentinel = { topic: B_TELEMETRY, payload: `{"sentinel":${++seq}}` };
  await dev.publishAsync(sentinel.topic, sentinel.payload, { qos: 1 });
  await waitFor(() => received.some((m) => m.payload === sentinel.payload), { what: 'the sentinel' });
  return sentinel;
}

describe('authentication', () => {
  it('accepts a device, a poller and a collector with their own secrets', async () => {
    const { b } = await setup();
    for (const u of ['dev-a', 'poll-1', 'coll']) expect((await connectAs(b, u)).connected, u).toBe(true);
    expect(b.broker.stats()).toMatchObject({ connected: 4, authFailures: 0 });
  });

  it('refuses a wrong secret, an unknown user and missing credentials with CONNACK 4', async () => {
    const { b } = await setup();
    await expect(connect(b.url, 'dev-a', 'not-the-secret')).rejects.toMatchObject({ code: 4 });
    await expect(connect(b.url, 'ghost', b.secrets['dev-a'])).rejects.toMatchObject({ code: 4 });
    await expect(connectClient(b.url, { clientId: 'dev-a-anonymous' })).rejects.toMatchObject({ code: 4 });
    await expect(connectClient(b.url, { clientId: 'dev-a-nopw', username: 'dev-a' })).rejects.toMatchObject({
      code: 4,
    });
    expect(b.broker.stats()).toMatchObject({ connected: 1, authFailures: 4 });
  });

  it('refuses a client id that does not start with the username with CONNACK 5', async () => {
    const { b } = await setup();
    for (const clientId of ['dev-b-1', 'dev-ab', 'dev-a-1', 'dev-a.1', 'mqttjs_0123abcd']) {
      await expect(connectAs(b, 'dev-a', { clientId }), clientId).rejects.toMatchObject({ code: 5 });
    }
    expect(b.broker.stats()).toMatchObject({ connected: 1, authFailures: 5 });
  });
});

describe('publish ACL', () => {
  it('delivers a device’s QoS 1 telemetry on its own topic to the collector', async () => {
    const { b, received } = await setup();
    const dev = await connectAs(b, 'dev-a');
    await dev.publishAsync(A_TELEMETRY, '{"cpuPct":12}', { qos: 1 });
    await waitFor(() => received.length === 1, { what: 'the telemetry at the collector' });
    expect(received).toEqual([{ topic: A_TELEMETRY, payload: '{"cpuPct":12}' }]);
    expect(b.broker.stats()).toMatchObject({ published: 1, deniedPublish: 0 });
  });

  it.each([
    ['another device’s topic', B_TELEMETRY, false],
    ['a retained telemetry', A_TELEMETRY, true],
    ['$SYS', '$SYS/x', false],
  ])('closes a device publishing to %s; nothing reaches the collector', async (_what, topic, retain) => {
    const { b, received } = await setup();
    const dev = await connectAs(b, 'dev-a');
    const gone = closed(dev);
    dev.publish(topic, '{"forbidden":true}', { qos: 1, retain });
    await gone;
    expect(b.broker.stats().deniedPublish).toBe(1);
    const sentinel = await sentinelFromB(b, received);
    expect(received).toEqual([sentinel]);
    expect(b.broker.stats()).toMatchObject({ deniedPublish: 1, published: 1 });
  });

  it('lets a poller publish iface for its assigned school and not for another school', async () => {
    const { b, received } = await setup();
    const allowed = { topic: topicOf('core-sw1', 'iface'), payload: '{"ifIndex":1}' };
    const poller = await connectAs(b, 'poll-1');
    await poller.publishAsync(allowed.topic, allowed.payload, { qos: 1 });
    await waitFor(() => received.length === 1, { what: 'the iface reading' });

    const gone = closed(poller);
    poller.publish(topicOf('core-sw1', 'iface', OTHER_SCHOOL), '{"ifIndex":2}', { qos: 1 });
    await gone;
    expect(b.broker.stats().deniedPublish).toBe(1);

    // A second poller connection's reading arrives right after the first: the refused one never did.
    const again = await connectAs(b, 'poll-1');
    const sentinel = { topic: topicOf('core-sw2', 'iface'), payload: '{"ifIndex":3}' };
    await again.publishAsync(sentinel.topic, sentinel.payload, { qos: 1 });
    await waitFor(() => received.length === 2, { what: 'the sentinel' });
    expect(received).toEqual([allowed, sentinel]);
  });
});

describe('subscribe ACL', () => {
  // mqtt.js 5 rejects subscribeAsync when the SUBACK carries a failure code, with the SUBACK attached.
  const REFUSED = { packet: { cmd: 'suback', granted: [0x80] } };

  it('refuses a device subscription with SUBACK 0x80 and keeps the session', async () => {
    const { b } = await setup();
    const dev = await connectAs(b, 'dev-a');
    await expect(dev.subscribeAsync('cfm/v1/+/+/+', { qos: 1 })).rejects.toMatchObject(REFUSED);
    expect(dev.connected).toBe(true);
    await dev.publishAsync(A_TELEMETRY, '{"still":"here"}', { qos: 1 });
    expect(b.broker.stats().deniedSubscribe).toBe(1);
  });

  it('refuses a collector `#` and grants it `cfm/v1/#`', async () => {
    const { b, coll } = await setup();
    await expect(coll.subscribeAsync('#', { qos: 1 })).rejects.toMatchObject(REFUSED);
    expect(await coll.subscribeAsync('cfm/v1/#', { qos: 1 })).toMatchObject([{ topic: 'cfm/v1/#', qos: 1 }]);
    expect(coll.connected).toBe(true);
    expect(b.broker.stats().deniedSubscribe).toBe(1);
  });
});

describe('limits', () => {
  it('closes a connection that sends a packet over maxPacketBytes, and passes a smaller one', async () => {
    const { b, received } = await setup({ maxPacketBytes: 4_096 });
    const dev = await connectAs(b, 'dev-a');
    const small = 'x'.repeat(2_048);
    await dev.publishAsync(A_TELEMETRY, small, { qos: 1 });
    await waitFor(() => received.length === 1, { what: 'the 2 kB message' });
    expect(b.broker.stats().oversized).toBe(0);

    const gone = closed(dev);
    dev.publish(A_TELEMETRY, 'y'.repeat(10_240), { qos: 0 });
    await gone;
    expect(b.broker.stats().oversized).toBe(1);

    const sentinel = await sentinelFromB(b, received);
    expect(received).toEqual([{ topic: A_TELEMETRY, payload: small }, sentinel]);
    expect(b.broker.stats()).toMatchObject({ oversized: 1, deniedPublish: 0 });
  });

  it('disconnects a device that publishes faster than its rate and burst allow', async () => {
    const { b } = await setup({ publishRatePerSec: 1, publishBurst: 5 });
    const dev = await connectAs(b, 'dev-a');
    const gone = closed(dev);
    for (let i = 0; i < 20; i++) dev.publish(A_TELEMETRY, `{"seq":${i}}`, { qos: 0 });
    await gone;
    const s = b.broker.stats();
    expect(s.rateLimited).toBeGreaterThanOrEqual(1);
    expect(s.published).toBeGreaterThanOrEqual(5);
    expect(s.published).toBeLessThan(20);
  });
});

describe('holding devices until a collector subscribes', () => {
  it('refuses devices and pollers with CONNACK 3 until a collector has subscribed, then admits them', async () => {
    const b = await startBroker(USERS, { holdDevicesUntilCollector: true });
    brokers.push(b);
    for (const u of ['dev-a', 'poll-1']) {
      await expect(connectAs(b, u)).rejects.toMatchObject({ code: 3 });
    }
    expect(b.broker.stats()).toMatchObject({ heldBack: 2, authFailures: 0 });
    // A collector that connects but has not subscribed yet is not enough. It keeps a persistent session, as
    // the collector service does.
    const coll = await connectAs(b, 'coll', { clean: false });
    await expect(connectAs(b, 'dev-a')).rejects.toMatchObject({ code: 3 });
    await coll.subscribeAsync('$share/g/cfm/v1/+/+/+', { qos: 1 });
    await connectAs(b, 'dev-a');
    await connectAs(b, 'poll-1');
    // The collector may now go away: its session is what keeps messages, devices stay admitted (a clean
    // session's absence is tested in hostile.test.ts).
    await coll.endAsync();
    await connectAs(b, 'dev-b');
    expect(b.broker.stats()).toMatchObject({ heldBack: 3, authFailures: 0 });
  });
});

describe('credential changes', () => {
  it('closes a revoked client on reload; it cannot reconnect; others stay', async () => {
    const { b } = await setup();
    const devA = await connectAs(b, 'dev-a');
    const devB = await connectAs(b, 'dev-b');
    const gone = closed(devA);
    await b.store.revoke('dev-a');
    await b.broker.reloadCredentials();
    await gone;
    await expect(connectAs(b, 'dev-a')).rejects.toMatchObject({ code: 4 });
    expect(devB.connected).toBe(true);
    await waitFor(() => b.broker.stats().connected === 2, { what: 'collector and dev-b only' });
  });

  it('after a rotation closes the client, refuses the old secret and accepts the new one', async () => {
    const { b, received } = await setup();
    const dev = await connectAs(b, 'dev-a');
    const gone = closed(dev);
    const newSecret = await b.store.rotate('dev-a');
    await b.broker.reloadCredentials();
    await gone;
    await expect(connectAs(b, 'dev-a')).rejects.toMatchObject({ code: 4 });
    const fresh = await connect(b.url, 'dev-a', newSecret);
    await fresh.publishAsync(A_TELEMETRY, '{"after":"rotation"}', { qos: 1 });
    await waitFor(() => received.length === 1, { what: 'a publish with the new secret' });
  });

  it('notices a revocation in the credentials file by itself', async () => {
    const { b } = await setup();
    const dev = await connectAs(b, 'dev-a');
    await b.store.revoke('dev-a'); // as `users revoke` would, from another process: no reloadCredentials()
    // The broker looks at the file once a second.
    await waitFor(() => !dev.connected, { timeoutMs: 5_000, what: 'the revoked client to be closed' });
    expect(b.logs.some((l) => l.msg === 'credentials revoked or rotated: disconnecting')).toBe(true);
    await expect(connectAs(b, 'dev-a')).rejects.toMatchObject({ code: 4 });
  });

  it('keeps the previous credentials when the file is replaced by a malformed one, and logs why', async () => {
    const { b } = await setup();
    const dev = await connectAs(b, 'dev-a');
    const good = readFileSync(b.store.file, 'utf8');
    writeFileSync(b.store.file, 'users: [{username: dev-a}]\n'); // a hand edit gone wrong
    const unreadable = 'credentials file unreadable: keeping the previous credentials';
    await waitFor(() => b.logs.some((l) => l.msg === unreadable), {
      timeoutMs: 5_000,
      what: 'the error logged',
    });
    expect(dev.connected).toBe(true);
    expect((await connectAs(b, 'dev-b')).connected).toBe(true);
    // Repaired, then changed (a revocation): each read again; the malformed file was not retried meanwhile.
    writeFileSync(b.store.file, good);
    await b.store.revoke('dev-a');
    await waitFor(() => !dev.connected, { timeoutMs: 5_000, what: 'the revoked client to be closed' });
    expect(b.logs.filter((l) => l.msg === unreadable)).toHaveLength(1);
  });
});

describe('credentials file at start', () => {
  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'cfm-broker-test-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  function brokerFor(credentialsFile: string) {
    const { log, lines } = captureLogger('broker');
    const config = brokerConfigSchema.parse({ credentialsFile, listeners: [{ kind: 'tcp', port: 0 }] });
    const broker = new Broker(config, { log });
    cleanups.push(() => broker.stop());
    return { broker, lines };
  }

  it('refuses to start on a malformed file, naming it', async () => {
    const file = join(tempDir(), 'credentials.yaml');
    writeFileSync(file, "users: [{username: 'x'}]\n");
    const { broker } = brokerFor(file);
    const failure = broker.start();
    await expect(failure).rejects.toBeInstanceOf(CredentialsError);
    await expect(failure).rejects.toThrow(file);
    expect(broker.ports).toEqual([]);
  });

  it('starts without a file and refuses everyone', async () => {
    const file = join(tempDir(), 'missing.yaml');
    const { broker, lines } = brokerFor(file);
    await broker.start();
    expect(lines.some((l) => l.level === 40 && String(l.msg).startsWith('no credentials'))).toBe(true);
    const url = `mqtt://127.0.0.1:${broker.ports[0]}`;
    await expect(connect(url, 'coll', 'anything-at-all')).rejects.toMatchObject({ code: 4 });
    await expect(connect(url, 'dev-a', 'anything-at-all')).rejects.toMatchObject({ code: 4 });
    expect(broker.stats()).toMatchObject({ connected: 0, authFailures: 2 });
  });
});

describe('users CLI (broker/main.ts users …, as `npm run broker -- users …` runs it)', () => {
  const repo = new URL('../../', import.meta.url).pathname;
  function users(file: string, ...args: string[]) {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'broker/main.ts', 'users', ...args, '--file', file],
      {
        cwd: repo,
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }
  /** A credentials file in a temporary folder removed after the test. */
  function credentialsFileIn(): string {
    const dir = mkdtempSync(join(tmpdir(), 'cfm-broker-cli-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return join(dir, 'credentials.yaml');
  }

  it('adds a reader and a poller bound to targets; the broker authenticates them with those roles', async () => {
    const file = credentialsFileIn();
    const reader = users(file, 'add', 'api', '--role', 'reader');
    expect(reader).toMatchObject({ status: 0, stderr: `added api (reader) to ${file}\n` });
    const poller = users(
      file,
      'add',
      'poller-7',
      '--role',
      'poller',
      '--devices',
      `${SCHOOL}/gw-01,${SCHOOL}/gw-02`,
    );
    expect(poller.status, poller.stderr).toBe(0);
    const listed = users(file, 'list')
      .stdout.split('\n')
      .map((l) => l.split('\t').slice(0, 3));
    expect(listed).toContainEqual(['api', 'reader', '']);
    expect(listed).toContainEqual(['poller-7', 'poller', `${SCHOOL}/gw-01,${SCHOOL}/gw-02`]);

    const store = new CredentialStore(file);
    await store.load();
    expect((await store.authenticate('api', reader.stdout.trim()))?.principal).toEqual({
      role: 'reader',
      username: 'api',
    });
    expect((await store.authenticate('poller-7', poller.stdout.trim()))?.principal).toEqual({
      role: 'poller',
      username: 'poller-7',
      schools: [SCHOOL], // from the targets, as --schools was not given
      devices: new Set([`${SCHOOL}/gw-01`, `${SCHOOL}/gw-02`]),
    });
  });

  it('adds a poller assigned a shard (#17), lists it, and refuses one with a school list too', async () => {
    const file = credentialsFileIn();
    const add = users(
      file,
      'add',
      'poller-s',
      '--role',
      'poller',
      '--shard-count',
      '2',
      '--shard-index',
      '1',
      '--shard-regions',
      '330000/330100',
    );
    expect(add.status, add.stderr).toBe(0);
    expect(users(file, 'list').stdout).toContain('poller-s\tpoller\tshard 1/2 of 330000/330100\t');
    const store = new CredentialStore(file);
    await store.load();
    expect(store.get('poller-s')).toMatchObject({
      shard: { index: 1, count: 2, regions: ['330000/330100'] },
    });
    const both = users(file, 'add', 'p2', '--role', 'poller', '--shard-count', '2', '--schools', SCHOOL);
    expect(both).toMatchObject({
      status: 2,
      stderr: 'broker: a poller has either --shard-* or --schools/--devices\n',
    });
  });

  it('refuses a target outside the poller’s schools and an unknown role, naming the problem (exit 2)', () => {
    const file = credentialsFileIn();
    const outside = users(
      file,
      'add',
      'p',
      '--role',
      'poller',
      '--schools',
      SCHOOL,
      '--devices',
      `${OTHER_SCHOOL}/gw-01`,
    );
    expect(outside).toMatchObject({ status: 2, stdout: '' });
    expect(outside.stderr).toBe(
      `broker: user p: devices.0: ${OTHER_SCHOOL}/gw-01 is not in one of the poller's schools\n`,
    );
    const malformed = users(file, 'add', 'p', '--role', 'poller', '--devices', 'gw-01');
    expect(malformed.status).toBe(2);
    expect(malformed.stderr).toContain('must be {school}/{device}');
    const role = users(file, 'add', 'x', '--role', 'admin');
    expect(role).toMatchObject({
      status: 2,
      stderr: 'broker: --role must be device, poller, collector or reader\n',
    });
  });
});

describe('TLS listener', () => {
  /** A self-signed certificate for 127.0.0.1 in a temporary folder. */
  function certificate() {
    const dir = mkdtempSync(join(tmpdir(), 'cfm-broker-tls-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const certFile = join(dir, 'cert.pem');
    const keyFile = join(dir, 'key.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout',
        keyFile,
        '-out',
        certFile,
      ],
      { stdio: 'pipe' },
    );
    return { dir, certFile, keyFile };
  }

  it('serves mqtts to a client that trusts the certificate and is refused by one that does not', async () => {
    const { certFile, keyFile } = certificate();
    const b = await startBroker(USERS, {
      listeners: [{ kind: 'tls', host: '127.0.0.1', port: 0, certFile, keyFile }],
    });
    brokers.push(b);
    const url = `mqtts://127.0.0.1:${b.broker.ports[0]}`;
    const ca = readFileSync(certFile);

    const coll = await connect(url, 'coll', b.secrets.coll, { ca });
    const received: string[] = [];
    coll.on('message', (_topic, payload) => received.push(payload.toString()));
    await coll.subscribeAsync('cfm/v1/+/+/+', { qos: 1 });
    const dev = await connect(url, 'dev-a', b.secrets['dev-a'], { ca });
    await dev.publishAsync(A_TELEMETRY, '{"over":"tls"}', { qos: 1 });
    await waitFor(() => received.length === 1, { what: 'a message over TLS' });
    expect(received).toEqual(['{"over":"tls"}']);

    const untrusting = connect(url, 'dev-b', b.secrets['dev-b'], { rejectUnauthorized: true });
    await expect(untrusting).rejects.toMatchObject({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    expect(b.broker.stats()).toMatchObject({ connected: 2, authFailures: 0 });
  });

  it('identifies clients by username and password only: no client certificate needed, none accepted instead', async () => {
    const { dir, certFile, keyFile } = certificate();
    // A listener `caFile` once made the broker request client certificates that it never checked; a
    // configuration that still has it is refused at start, naming the key, rather than promising what is not done.
    const config = join(dir, 'broker.yaml');
    writeFileSync(
      config,
      `broker:\n  credentialsFile: ${join(dir, 'users.yaml')}\n  listeners:\n    - {kind: tls, host: 127.0.0.1, port: 0, certFile: ${certFile}, keyFile: ${keyFile}, caFile: ${certFile}}\n`,
    );
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'broker/main.ts', 'run', '--config', config],
      {
        cwd: new URL('../..', import.meta.url).pathname,
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    expect(run.status).toBe(2);
    expect(run.stderr).toBe(
      `broker: configuration error: ${config}: broker.listeners.0: unknown key(s) caFile\n`,
    );

    const b = await startBroker(USERS, {
      listeners: [{ kind: 'tls', host: '127.0.0.1', port: 0, certFile, keyFile }],
    });
    brokers.push(b);
    const url = `mqtts://127.0.0.1:${b.broker.ports[0]}`;
    const ca = readFileSync(certFile);
    // No client certificate, the right password: connected.
    await connect(url, 'coll', b.secrets.coll, { ca });
    // A client certificate (the broker's own, signed by the CA the client trusts) with the wrong password:
    // refused — a certificate proves nothing here.
    const withCert = connect(url, 'dev-a', 'not-the-secret', {
      ca,
      cert: readFileSync(certFile),
      key: readFileSync(keyFile),
      reconnectPeriod: 0,
    });
    await expect(withCert).rejects.toMatchObject({ code: 4 });
    expect(b.broker.stats()).toMatchObject({ connected: 1, authFailures: 1 });
  });
});

describe('a poller assigned a shard instead of schools (#17)', () => {
  const XIHU = '330000/330100/330106';
  /** SCHOOL in 西湖区; OTHER_SCHOOL in `otherRegion`. */
  const registry = (otherRegion: string) =>
    JSON.stringify({
      regions: UPLINK_REGIONS,
      schools: [uplinkSchool(SCHOOL), uplinkSchool(OTHER_SCHOOL, { region: otherRegion })],
      devices: [
        { id: 'gw', school: SCHOOL, kind: 'router' },
        { id: 'gw', school: OTHER_SCHOOL, kind: 'router' },
      ],
    });
  const SHARDED: UserSpec = {
    username: 'poll-s',
    role: 'poller',
    shard: { index: 0, count: 1, regions: [XIHU] },
  };

  it("publishes for the registry's schools its shard takes (the poller's function), kept current as the registry changes", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfm-broker-shard-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const registryFile = join(dir, 'registry.json');
    writeFileAtomic(registryFile, registry('330108'));
    const b = await startBroker([...USERS, SHARDED], { registryFile });
    brokers.push(b);
    const received: Message[] = [];
    const coll = await connectAs(b, 'coll');
    coll.on('message', (topic, payload) => received.push({ topic, payload: payload.toString() }));
    await coll.subscribeAsync('cfm/v1/+/+/+', { qos: 1 });
    // The poller with the same shard would poll exactly these schools.
    const idx = new RegistryIndex(registrySchema.parse(JSON.parse(registry('330108'))));
    expect(
      idx.data.schools
        .filter((s) =>
          inShard({ school: s.id, region: idx.regionPath(s.region) }, shardSchema.parse(SHARDED.shard)),
        )
        .map((s) => s.id),
    ).toEqual([SCHOOL]);

    const poller = await connectAs(b, 'poll-s');
    await poller.publishAsync(topicOf('gw', 'iface'), '{"n":1}', { qos: 1 });
    await waitFor(() => received.length === 1, { what: 'the iface of its school' });
    const gone = closed(poller);
    poller.publish(topicOf('gw', 'iface', OTHER_SCHOOL), '{"n":2}', { qos: 1 });
    await gone;
    expect(b.broker.stats().deniedPublish).toBe(1);

    // An import moves OTHER_SCHOOL into 西湖区: the same credential may now publish for it, no restart.
    writeFileAtomic(registryFile, registry('330106'));
    let n = 2;
    await waitFor(
      async () => {
        const p = await connectAs(b, 'poll-s');
        const payload = `{"n":${++n}}`;
        const down = closed(p);
        p.publish(topicOf('gw', 'iface', OTHER_SCHOOL), payload, { qos: 1 });
        const arrived = () => received.some((m) => m.payload === payload);
        await Promise.race([
          down,
          waitFor(arrived, { what: 'the moved school', timeoutMs: 1_000 }).catch(() => undefined),
        ]);
        return arrived();
      },
      { what: "the moved school's reading accepted", timeoutMs: 15_000, intervalMs: 200 },
    );
  });

  it('without broker.registryFile, a shard credential fails start-up naming the user', async () => {
    await expect(startBroker([...USERS, SHARDED])).rejects.toThrow(
      /user poll-s is assigned a shard: broker.registryFile must be set/,
    );
  });

  it('refuses a shard with a school list, and devices with a shard', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cfm-broker-shard-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const store = new CredentialStore(join(dir, 'c.yaml'));
    await expect(
      store.add({
        username: 'p',
        role: 'poller',
        schools: [SCHOOL],
        shard: { index: 0, count: 1 },
      } as UserSpec),
    ).rejects.toThrow(/user p: schools: a poller has either `schools` or `shard`/);
    await expect(store.add({ username: 'p', role: 'poller', shard: { index: 2, count: 2 } })).rejects.toThrow(
      /user p: shard.index: index must be < count/,
    );
  });
});
