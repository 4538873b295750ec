import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { stringify } from 'yaml';
import { EXAMPLES } from '../../contracts/examples.js';
import { buildTopic } from '../../contracts/topics.js';
import { trackChild } from '../../dev/children.js';
import { Influxd, waitFor } from '../helpers/influx.js';
import { Mosquitto, startBroker } from '../helpers/mqtt.js';

/**
 * Issue #13: SIGKILL of a collector must lose nothing it acknowledged. Real collector processes (the CLI,
 * `collector/main.ts`) are killed and restarted at random moments while messages stream in — with InfluxDB up,
 * and with InfluxDB stopped and restarted in the middle — and every message must be stored exactly once.
 * Each message i is telemetry with `uptime_s = i` and `ts = t0 + i`, so the stored set of uptimes shows a lost
 * message as a gap and a message stored twice (under another series) as a repeat.
 *
 * Before acknowledging after the write, each kill lost what the killed collector had acknowledged and not yet
 * written (the issue measured 42–45 of 3,000 per run).
 */
const influxd = new Influxd();
const mosquitto = new Mosquitto();
const tmp = mkdtempSync(join(tmpdir(), 'cfm-crash-'));
beforeAll(async () => {
  await Promise.all([influxd.start(), mosquitto.start()]);
});
afterAll(async () => {
  await Promise.all([influxd.dispose(), mosquitto.dispose()]);
  rmSync(tmp, { recursive: true, force: true });
});

/** A collector process kept running like systemd's Restart=always (RestartSec 0.2 s); kill() is a SIGKILL. */
class Supervised {
  private child: ChildProcess | undefined;
  private stopped = false;
  starts = 0;
  kills = 0;
  output = '';

  constructor(
    private readonly name: string,
    private readonly configFile: string,
  ) {}

  start(): void {
    if (this.stopped) return;
    this.starts++;
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'collector/main.ts', '--config', this.configFile],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    trackChild(child, `collector ${this.name}`);
    const keep = (b: Buffer) => {
      this.output = (this.output + b.toString()).slice(-6_000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.once('exit', () => {
      if (this.child === child && !this.stopped) setTimeout(() => this.start(), 200);
    });
    this.child = child;
  }

  kill(): void {
    this.kills++;
    this.child?.kill('SIGKILL');
  }

  /** SIGTERM and wait for the exit (SIGKILL after 20 s). */
  async stop(): Promise<void> {
    this.stopped = true;
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 20_000);
    await gone;
    clearTimeout(t);
  }
}

let run = 0;
function collector(
  name: string,
  database: string,
  mqttUrl: string,
  extra: { group?: string; mqtt?: Record<string, unknown> } = {},
): Supervised {
  const file = join(tmp, `${name}-${++run}.yaml`);
  writeFileSync(
    file,
    stringify({
      log: { level: 'info' },
      influx: {
        url: influxd.url,
        database,
        flushIntervalMs: 100,
        minRetryDelayMs: 100,
        maxRetryDelayMs: 500,
        retryJitterMs: 50,
        timeoutMs: 2_000,
        shutdownTimeoutMs: 5_000,
      },
      collector: {
        mqtt: { url: mqttUrl, clientId: name, reconnectMinMs: 50, reconnectMaxMs: 300, ...extra.mqtt },
        metrics: { port: 0 },
        registryFile: join(tmp, 'no-registry.json'), // every device unassigned: the same tags on every write
        ...(extra.group ? { group: extra.group } : {}),
      },
    }),
  );
  const s = new Supervised(name, file);
  onTestFinished(() => s.stop());
  return s;
}

const N = 1_500;
const RATE_PER_S = 300;

/**
 * Publishes message 0…N-1 at RATE_PER_S (QoS 1; resolves when the broker has acknowledged all), calling
 * `at[i]` when message i is about to go out.
 */
async function stream(pub: MqttClient, topicOf: (i: number) => string, at: Record<number, () => unknown>) {
  const t0 = Date.now() - 60_000;
  const started = Date.now();
  const sent: Promise<unknown>[] = [];
  for (let i = 0; i < N; i++) {
    await at[i]?.();
    // The publish schedule (a steady rate), not a wait for something to happen.
    const due = started + (i * 1000) / RATE_PER_S;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    const m = {
      ...EXAMPLES.telemetry,
      seq: i,
      ts: t0 + i,
      display: undefined,
      activity: undefined, // host health only: no display point
      host: { ...EXAMPLES.telemetry.host!, uptimeS: i },
    };
    // Not one at a time: a publisher waiting for each PUBACK would set the rate, not the schedule.
    sent.push(pub.publishAsync(topicOf(i), JSON.stringify(m), { qos: 1 }));
  }
  await Promise.all(sent);
}

/** A random publish index in [from, to): where a kill happens. */
const around = (from: number, to: number) => from + Math.floor(Math.random() * (to - from));

async function storedUptimes(database: string): Promise<number[]> {
  const r = (await influxd.query('SELECT uptime_s FROM host', database)) as {
    results: { series?: { values: [number, number][] }[] }[];
  };
  return (r.results[0]?.series ?? []).flatMap((s) => s.values.map((v) => v[1])).sort((a, b) => a - b);
}

async function expectExactlyOnce(database: string, parts: Supervised[]) {
  try {
    await waitFor(async () => (await storedUptimes(database)).length >= N, {
      what: `${N} messages stored`,
      timeoutMs: 30_000,
    });
  } catch (err) {
    const got = await storedUptimes(database);
    const have = new Set(got);
    const missing = Array.from({ length: N }, (_, i) => i).filter((i) => !have.has(i));
    throw new Error(
      `${(err as Error).message}: ${got.length} stored, missing ${missing.length} (${missing.slice(0, 20).join(', ')}…)\n` +
        parts.map((p) => `--- last output of a collector:\n${p.output}`).join('\n'),
    );
  }
  expect(await storedUptimes(database)).toEqual(Array.from({ length: N }, (_, i) => i));
}

describe('SIGKILL of a collector at random moments loses nothing (real processes)', () => {
  it('two collectors on one shared subscription on Mosquitto (MQTT 5), InfluxDB up', async () => {
    const db = 'crash_up';
    const a = collector('crash-a', db, mosquitto.url, { group: 'crash_up' });
    const b = collector('crash-b', db, mosquitto.url, { group: 'crash_up' });
    a.start();
    b.start();
    const pub = await mqtt.connectAsync(mosquitto.url, { clientId: 'crash-pub-up', protocolVersion: 5 });
    onTestFinished(() => pub.endAsync());
    // Wait until both hold their share of the shared subscription, so no message waits for a first start.
    await waitFor(() => /"subscribed"/.test(a.output) && /"subscribed"/.test(b.output), {
      what: 'both subscribed',
      timeoutMs: 30_000,
    });
    await stream(
      pub,
      (i) => buildTopic({ school: `S${i % 7}`, device: `D${i % 13}`, channel: 'telemetry' }),
      {
        [around(150, 450)]: () => a.kill(),
        [around(450, 900)]: () => b.kill(),
        [around(800, 1_100)]: () => a.kill(),
        [around(1_100, 1_450)]: () => b.kill(),
      },
    );
    expect(a.kills + b.kills).toBe(4);
    await expectExactlyOnce(db, [a, b]);
  });

  it('the same with InfluxDB stopped in the middle and started again', async () => {
    const db = 'crash_down';
    const a = collector('crash-c', db, mosquitto.url, { group: 'crash_down' });
    const b = collector('crash-d', db, mosquitto.url, { group: 'crash_down' });
    a.start();
    b.start();
    const pub = await mqtt.connectAsync(mosquitto.url, { clientId: 'crash-pub-down', protocolVersion: 5 });
    onTestFinished(() => pub.endAsync());
    await waitFor(() => /"subscribed"/.test(a.output) && /"subscribed"/.test(b.output), {
      what: 'both subscribed',
      timeoutMs: 30_000,
    });
    await stream(
      pub,
      (i) => buildTopic({ school: `S${i % 7}`, device: `D${i % 13}`, channel: 'telemetry' }),
      {
        [around(100, 300)]: () => a.kill(),
        400: () => influxd.stop(),
        [around(500, 700)]: () => b.kill(), // holding unacknowledged messages it could not write
        [around(800, 1_000)]: () => a.kill(), // a restart cannot even start while InfluxDB is down
        1100: () => influxd.start(),
        [around(1_150, 1_300)]: () => b.kill(), // while catching up
        [around(1_300, 1_450)]: () => a.kill(),
      },
    );
    await expectExactlyOnce(db, [a, b]);
  });

  it('one collector on the embedded broker (MQTT 3.1.1, plain subscription), InfluxDB up', async () => {
    const broker = await startBroker(
      [
        { username: 'coll', role: 'collector' },
        { username: 'dev', role: 'device', school: 'S1', device: 'D1' },
      ],
      { publishRatePerSec: 10_000, publishBurst: 10_000 },
    );
    onTestFinished(() => broker.dispose());
    const db = 'crash_aedes';
    const a = collector('coll', db, broker.url, {
      mqtt: { username: 'coll', password: broker.secrets.coll },
    });
    a.start();
    await waitFor(() => /"subscribed"/.test(a.output), { what: 'subscribed', timeoutMs: 30_000 });
    const pub = await mqtt.connectAsync(broker.url, {
      clientId: 'dev',
      username: 'dev',
      password: broker.secrets.dev,
    });
    onTestFinished(() => pub.endAsync());
    await stream(pub, () => buildTopic({ school: 'S1', device: 'D1', channel: 'telemetry' }), {
      [around(200, 800)]: () => a.kill(),
      [around(800, 1_450)]: () => a.kill(),
    });
    await expectExactlyOnce(db, [a]);
  });
});
