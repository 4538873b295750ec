import { type ChildProcess, spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/influx.js';
import { startBroker, type UserSpec } from '../helpers/mqtt.js';

/**
 * Debian's mosquitto_pub / mosquitto_sub (libmosquitto 2.0) against the embedded broker: a client written by
 * someone else, speaking plain MQTT 3.1.1, sees the same authentication and ACL as our own agents.
 */
const SCHOOL = '3133001234';
const USERS: UserSpec[] = [
  { username: 'dev-a', role: 'device', school: SCHOOL, device: 'c0701-ops' },
  { username: 'dev-b', role: 'device', school: SCHOOL, device: 'c0702-ops' },
  { username: 'coll', role: 'collector' },
];
const A_TELEMETRY = `cfm/v1/${SCHOOL}/c0701-ops/telemetry`;
const B_TELEMETRY = `cfm/v1/${SCHOOL}/c0702-ops/telemetry`;

type TestBroker = Awaited<ReturnType<typeof startBroker>>;

interface Run {
  child: ChildProcess;
  /** stdout so far. */
  readonly stdout: string;
  /** Settles when the process has exited (killed after `timeoutMs`). */
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

const brokers: TestBroker[] = [];
const children: ChildProcess[] = [];
let seq = 0;

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    }
  }
  for (const b of brokers.splice(0)) await b.dispose();
});

/**
 * Runs a mosquitto client; never longer than `timeoutMs`, so a hung client fails its test instead of hanging.
 * Through coreutils' `stdbuf -oL`, which then execs the client: its stdout is a pipe here, and stdio would
 * otherwise hold the `-d` lines (the SUBACK we wait for) in a block buffer until the client exits.
 */
function run(cmd: 'mosquitto_pub' | 'mosquitto_sub', args: string[], timeoutMs = 15_000): Run {
  const child = spawn('stdbuf', ['-oL', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => {
    stdout += b.toString();
  });
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
  exited.catch(() => {}); // a spawn error fails the test at its `await`, not as an unhandled rejection
  return {
    child,
    exited,
    get stdout() {
      return stdout;
    },
  };
}

function login(b: TestBroker, username: string, password = b.secrets[username]!): string[] {
  const port = String(b.broker.ports[0]);
  return ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv311', '-u', username, '-P', password];
}

async function setup(): Promise<TestBroker> {
  const b = await startBroker(USERS);
  brokers.push(b);
  return b;
}

/**
 * mosquitto_sub as the collector for one message (`-C 1`, at most 10 s), resolved once its SUBACK has arrived
 * (`-d` prints it), so nothing published afterwards can be missed.
 */
async function subscribeOne(b: TestBroker): Promise<Run> {
  const sub = run('mosquitto_sub', [
    ...login(b, 'coll'),
    '-i',
    `coll/sub${++seq}`,
    '-t',
    'cfm/v1/+/+/+',
    '-q',
    '1',
    '-C',
    '1',
    '-W',
    '10',
    '-v',
    '-d',
  ]);
  await waitFor(() => sub.stdout.includes('received SUBACK'), { timeoutMs: 10_000, what: 'the SUBACK' });
  return sub;
}

function publish(b: TestBroker, username: string, topic: string, message: string, password?: string) {
  const id = `${username}/pub${++seq}`;
  return run('mosquitto_pub', [
    ...login(b, username, password),
    '-i',
    id,
    '-t',
    topic,
    '-m',
    message,
    '-q',
    '1',
  ]).exited;
}

/** The `topic payload` lines of `mosquitto_sub -v -d` output, without the debug lines. */
function messages(stdout: string): string[] {
  return stdout.split('\n').filter((l) => l.startsWith('cfm/'));
}

describe('mosquitto clients against the embedded broker', () => {
  it('delivers what a device publishes with mosquitto_pub -q 1 to mosquitto_sub as the collector', async () => {
    const b = await setup();
    const sub = await subscribeOne(b);
    const pub = await publish(b, 'dev-a', A_TELEMETRY, '{"cpuPct":7}');
    expect(pub).toMatchObject({ code: 0, stderr: '' });
    const got = await sub.exited;
    expect(got.code).toBe(0);
    expect(messages(got.stdout)).toEqual([`${A_TELEMETRY} {"cpuPct":7}`]);
    expect(b.broker.stats()).toMatchObject({ published: 1, authFailures: 0, deniedPublish: 0 });
  });

  it('refuses mosquitto_pub with a wrong password', async () => {
    const b = await setup();
    const pub = await publish(b, 'dev-a', A_TELEMETRY, '{"cpuPct":7}', 'not-the-secret');
    expect(pub.code).not.toBe(0);
    expect(pub.stderr).toContain('Connection Refused: bad user name or password');
    expect(b.broker.stats()).toMatchObject({ authFailures: 1, published: 0 });
  });

  it('drops a device publishing to another device’s topic: the next message is the first the collector sees', async () => {
    const b = await setup();
    const sub = await subscribeOne(b);
    const denied = await publish(b, 'dev-a', B_TELEMETRY, '{"forged":true}');
    // The broker closes the connection instead of sending PUBACK (MQTT 3.1.1 has no per-publish refusal).
    expect(denied.code).not.toBe(0);
    expect(b.broker.stats().deniedPublish).toBe(1);

    const sentinel = await publish(b, 'dev-b', B_TELEMETRY, '{"sentinel":true}');
    expect(sentinel.code).toBe(0);
    const got = await sub.exited;
    expect(got.code).toBe(0);
    expect(messages(got.stdout)).toEqual([`${B_TELEMETRY} {"sentinel":true}`]);
    expect(got.stdout.match(/received PUBLISH/g)).toHaveLength(1);
    expect(b.broker.stats()).toMatchObject({ deniedPublish: 1, published: 1 });
  });
});
