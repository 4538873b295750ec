import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Poller, pollerConfigSchema } from '../../../agents/snmp/poller.js';
import { decodePayload } from '../../../contracts/messages.js';
import { type SimIface, SnmpSim } from '../../../dev/snmp-sim.js';
import { captureLogger, waitFor } from '../../helpers/influx.js';
import { Mosquitto } from '../../helpers/mqtt.js';
import { UdpDelayProxy } from '../../helpers/udp-delay.js';

/**
 * The poller's scheduled mode — real timers, as in production — with a slow and a dead target (issue #13):
 * one poll per target at a time, skipped ticks counted and logged once per episode, a bounded queue for the
 * concurrency slots, no false reboot from polls finishing out of order, and a stop() that leaves nothing
 * running. Every tick is 500 ms instead of the targets' intervalS (whose minimum, 5 s, would make this minutes).
 */
const SCHOOL = '3301060001';
const INTERVAL_MS = 500;
const mosquitto = new Mosquitto();
let observer: MqttClient;
let tmp: string;
const seen: { topic: string; payload: string }[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'cfm-schedule-'));
  await mosquitto.start();
  observer = await mqtt.connectAsync(mosquitto.url, { clientId: 'observer' });
  observer.on('message', (topic, payload) => seen.push({ topic, payload: payload.toString() }));
  await observer.subscribeAsync('cfm/v1/+/+/+', { qos: 1 });
});
afterAll(async () => {
  await observer.endAsync();
  await mosquitto.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  seen.length = 0;
});

const iface: SimIface = {
  index: 1,
  name: 'GigabitEthernet0/0/1',
  highSpeedMbps: 1000,
  operStatus: 1,
  inOctets: 1_000_000n,
  outOctets: 2_000_000n,
};

async function sim(): Promise<SnmpSim> {
  const s = await new SnmpSim({ ifaces: [iface] }).start();
  cleanups.push(() => s.stop());
  return s;
}

async function proxy(opts: ConstructorParameters<typeof UdpDelayProxy>[0] = {}): Promise<UdpDelayProxy> {
  const p = await new UdpDelayProxy(opts).start();
  cleanups.push(() => p.stop());
  return p;
}

const target = (device: string, port: number, extra: Record<string, unknown> = {}) => ({
  device,
  school: SCHOOL,
  address: '127.0.0.1',
  port,
  community: 'public',
  uplink: 1,
  retries: 0,
  ...extra,
});

async function startPoller(targets: ReturnType<typeof target>[], concurrency?: number) {
  const { log, lines } = captureLogger('poller');
  const p = new Poller(
    pollerConfigSchema.parse({
      mqtt: { url: mosquitto.url, clientId: `poller-${Math.random()}` },
      spool: { dir: mkdtempSync(join(tmp, 'spool-')) },
      targets,
      ...(concurrency ? { concurrency } : {}),
    }),
    { log, intervalMs: INTERVAL_MS }, // scheduled: no `manual`
  );
  await p.start();
  cleanups.push(() => p.stop());
  await p.ready();
  return { p, lines };
}

const messages = (device: string, channel: string) =>
  seen.filter((m) => m.topic === `cfm/v1/${SCHOOL}/${device}/${channel}`).map((m) => JSON.parse(m.payload));
const skipLines = (lines: Record<string, unknown>[], device: string) =>
  lines.filter(
    (l) => String(l.msg).startsWith('previous poll still running') && String(l.target).includes(device),
  );
/** Smallest gap between two consecutive arrivals. */
const minGap = (times: number[]) => Math.min(...times.slice(1).map((t, i) => t - times[i]!));
/**
 * Returns once a sentinel poller on the same schedule has published three readings of an agent of its own: a
 * stopped poller that still ticked would have sent requests to its targets meanwhile.
 */
async function sentinelPolledThrice(): Promise<void> {
  const agent = await sim();
  await startPoller([target('sentinel', agent.port, { timeoutMs: 1_000 })]);
  await waitFor(() => messages('sentinel', 'iface').length >= 3, { what: 'three readings of the sentinel' });
}

describe('the poller on its schedule', () => {
  it('skips and counts the ticks of a slow and a dead target, never polls one twice at once, sees no false reboot', async () => {
    const fast = await sim();
    const slowSim = await sim();
    // Request 1 is answered in 100 ms, every other in 1.1 s: two overlapping polls would finish out of order,
    // the later sysUpTime first.
    const slow = await proxy({ upstreamPort: slowSim.port, delayMs: (n) => (n === 1 ? 100 : 1_100) });
    const dead = await proxy(); // nothing answers: each poll takes 1.5 s
    const { p, lines } = await startPoller([
      target('fast', fast.port, { timeoutMs: 1_000 }),
      target('slow', slow.port, { timeoutMs: 3_000 }),
      target('dead', dead.port, { timeoutMs: 1_500 }),
    ]);
    const started = performance.now();

    await waitFor(() => messages('slow', 'iface').length >= 4 && dead.arrivals.length >= 3, {
      what: 'four polls of the slow target, three of the dead one',
      timeoutMs: 30_000,
    });
    const elapsedMs = performance.now() - started;
    const st = p.stats();

    // One poll per target at a time: the slow one never had two requests waiting for an answer; the dead one
    // got a request only once the one before had timed out.
    expect(slow.maxOutstanding).toBe(1);
    expect(minGap(dead.arrivals)).toBeGreaterThanOrEqual(0.9 * 1_500);
    // Its sysUpTime never went back, so no reboot: no event at all for the slow and the fast target.
    const slowIface = messages('slow', 'iface').sort((a, b) => a.seq - b.seq);
    for (const m of slowIface) expect(decodePayload('iface', JSON.stringify(m)).ok).toBe(true);
    const uptimes = slowIface.map((m) => m.sysUpTimeTicks as number);
    expect(uptimes).toEqual([...uptimes].sort((a, b) => a - b));
    expect(messages('slow', 'event')).toEqual([]);
    expect(messages('fast', 'event')).toEqual([]);
    expect(messages('dead', 'event').map((e) => e.type)).toEqual(['unreachable']);

    // The skipped ticks are counted and logged once per episode: the dead target is one long episode.
    expect(st.skippedTicks).toBeGreaterThanOrEqual(4);
    expect(skipLines(lines, 'dead')).toHaveLength(1);
    expect(skipLines(lines, 'slow').length).toBeGreaterThanOrEqual(1);
    expect(skipLines(lines, 'fast')).toHaveLength(0);
    expect(skipLines(lines, '').length).toBeLessThan(st.skippedTicks);
    // The fast target kept its schedule.
    expect(messages('fast', 'iface').length).toBeGreaterThanOrEqual(Math.floor(elapsedMs / INTERVAL_MS) - 3);
    expect(st.pollsWaiting).toBe(0);

    // stop() cancels the dead target's poll in flight rather than waiting out its 1.5 s timeout.
    const polls = dead.arrivals.length;
    await waitFor(() => dead.arrivals.length > polls, {
      what: 'a new poll of the dead target',
      intervalMs: 5,
    });
    const t = performance.now();
    await p.stop();
    expect(performance.now() - t).toBeLessThan(1_000);
    expect(p.stats()).toMatchObject({ pollsInFlight: 0, pollsWaiting: 0 });
    const after = [fast.requests, slow.arrivals.length, dead.arrivals.length];
    const events = seen.filter((m) => m.topic.endsWith('/event')).length;
    await sentinelPolledThrice();
    expect([fast.requests, slow.arrivals.length, dead.arrivals.length]).toEqual(after);
    expect(seen.filter((m) => m.topic.endsWith('/event')).length).toBe(events); // a cancel is not an outage
  });

  it('keeps the queue for a slot within one poll per target, and stop() leaves nothing running', async () => {
    const fast = await Promise.all([sim(), sim(), sim()]);
    const slowSim = await sim();
    const slow = await proxy({ upstreamPort: slowSim.port, delayMs: () => 1_100 });
    const dead = await proxy();
    const targets = [
      target('slow', slow.port, { timeoutMs: 3_000 }),
      target('dead', dead.port, { timeoutMs: 800, retries: 1 }),
      ...fast.map((s, i) => target(`fast${i}`, s.port, { timeoutMs: 1_000 })),
    ];
    // One slot for five targets, two of which hold it for a second or more: every tick finds a backlog.
    const { p, lines } = await startPoller(targets, 1);
    let maxWaiting = 0;
    let maxInFlight = 0;
    await waitFor(
      () => {
        const st = p.stats();
        maxWaiting = Math.max(maxWaiting, st.pollsWaiting);
        maxInFlight = Math.max(maxInFlight, st.pollsInFlight);
        return st.skippedTicks >= 20;
      },
      { what: 'twenty skipped ticks', timeoutMs: 30_000, intervalMs: 10 },
    );
    expect(maxInFlight).toBe(1);
    expect(maxWaiting).toBeGreaterThanOrEqual(1);
    expect(maxWaiting).toBeLessThanOrEqual(targets.length - 1);
    expect(slow.maxOutstanding).toBe(1);
    expect(minGap(dead.arrivals)).toBeGreaterThanOrEqual(0.9 * 800);
    // A target waiting for the slot is skipped like one being polled, and logged once per episode.
    expect(skipLines(lines, 'dead')).toHaveLength(1);
    expect(skipLines(lines, 'slow')).toHaveLength(1);
    expect(skipLines(lines, '').length).toBeLessThan(p.stats().skippedTicks / 2);

    await p.stop();
    expect(p.stats()).toMatchObject({ pollsInFlight: 0, pollsWaiting: 0 });
    // No request goes out any more, to any target.
    const after = [...fast.map((s) => s.requests), slow.arrivals.length, dead.arrivals.length];
    await sentinelPolledThrice();
    expect([...fast.map((s) => s.requests), slow.arrivals.length, dead.arrivals.length]).toEqual(after);
  });
});
