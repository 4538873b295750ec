import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentConfigSchema, ClassroomAgent } from '../../agents/classroom/agent.js';
import { SimulatedActivity } from '../../agents/sources/activity/simulated.js';
import { decodePayload, type Telemetry } from '../../contracts/messages.js';
import { PjlinkSimulator } from '../../dev/pjlink-sim.js';
import { captureLogger, waitFor } from '../helpers/influx.js';
import { Mosquitto } from '../helpers/mqtt.js';
import { FAKE_POWERSHELL, fakeSessionHelper, SESSION_HELPER_ACTIVITY } from '../helpers/session-pipe.js';

/**
 * The classroom agent's telemetry v2 (#16): the evidence of use — display power and input, the activity at
 * the teaching computer — and no judgement (`inUse` is v1's). A real Mosquitto and an observer subscribed to
 * everything; activity from the simulated classroom, the Windows helper (its Node side, against the fake
 * powershell.exe replaying tests/fixtures/windows/) and a failing command.
 */
const SCHOOL = '3301060001';
const FIXTURES = fileURLToPath(new URL('../fixtures/windows/', import.meta.url));
const FAKE = FAKE_POWERSHELL;
const mosquitto = new Mosquitto();
let observer: MqttClient;
let tmp: string;
const seen: { topic: string; payload: string }[] = [];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'cfm-classroom-'));
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
});

function config(device: string, extra: Record<string, unknown> = {}) {
  return agentConfigSchema.parse({
    school: SCHOOL,
    device,
    kind: 'whiteboard',
    intervalS: 1,
    mqtt: { url: mosquitto.url, clientId: device, reconnectMinMs: 50, reconnectMaxMs: 200 },
    spool: { dir: join(tmp, `spool-${device}`) },
    host: { nics: ['lo', '以太网', 'WLAN'] },
    ...extra,
  });
}

/** Telemetry of `device` as the observer got it, each decoded as a collector decodes it. */
function telemetry(device: string): Telemetry[] {
  const out: Telemetry[] = [];
  for (const m of seen) {
    if (m.topic !== `cfm/v1/${SCHOOL}/${device}/telemetry`) continue;
    const d = decodePayload('telemetry', m.payload);
    expect(d.ok, m.payload).toBe(true);
    if (d.ok) out.push(d.message);
  }
  return out;
}

async function run(agent: ClassroomAgent): Promise<ClassroomAgent> {
  await agent.start();
  cleanups.push(() => agent.stop());
  return agent;
}

/** An agent as the Windows guide installs it: a session-0 service whose activity comes from `<dir>/cfm-activity-*`. */
function sessionPipeAgent(device: string, dir: string, timeoutMs: number, log: Logger): ClassroomAgent {
  const windowsHelper = {
    command: FAKE,
    timeoutMs,
    restartMaxMs: 500,
    sessionPipe: join(dir, 'cfm-activity'),
  };
  return new ClassroomAgent(config(device, { activity: { source: 'windows' }, windowsHelper }), { log });
}

describe('telemetry v2', () => {
  it('a simulated panel left on: power and activity as evidence, in step, and no inUse', async () => {
    // 10:07 CST on a Monday of term, then a minute later: the simulated clock of the agent.
    let now = Date.parse('2026-11-02T10:07:00+08:00');
    const device = 'wb-sim';
    const agent = await run(
      new ClassroomAgent(
        config(device, {
          display: { source: 'simulated', leftOn: true, useShare: 0.5 },
          activity: { source: 'simulated' },
        }),
        { log: captureLogger('agent').log, now: () => now },
      ),
    );
    await waitFor(() => telemetry(device).length >= 1, { what: 'a reading' });
    now += 60_000;
    await agent.tick();
    await waitFor(() => telemetry(device).length >= 2, { what: 'the second reading' });
    const sim = new SimulatedActivity({
      seed: `${SCHOOL}/${device}`,
      leftOn: true,
      useShare: 0.5,
      teachingSite: '国家中小学智慧教育平台',
    });
    for (const t of telemetry(device).slice(0, 2)) {
      expect(t.v).toBe(2);
      expect(t).not.toHaveProperty('inUse');
      expect(t.display).toMatchObject({ source: 'simulated', power: 'on', input: '31' });
      expect(t.activity).toEqual(sim.readSync(t.ts));
    }
    expect(agent.stats()).toMatchObject({ activityErrors: 0, displayErrors: 0 });
  });

  it('a PJLink projector without an activity source: the display only — the collector judges it by power', async () => {
    const projector = new PjlinkSimulator({ power: 1, input: '31', lampHours: 900, errors: '000000' });
    const port = await projector.start();
    cleanups.push(() => projector.stop());
    const device = 'pj-only';
    await run(
      new ClassroomAgent(
        config(device, { display: { source: 'pjlink', host: '127.0.0.1', port, timeoutMs: 2_000 } }),
        {
          log: captureLogger('agent').log,
        },
      ),
    );
    await waitFor(() => telemetry(device).length >= 1, { what: 'a reading' });
    const [t] = telemetry(device);
    expect(t).toMatchObject({ v: 2, display: { source: 'pjlink', power: 'on', input: '31' } });
    expect(t).not.toHaveProperty('inUse');
    expect(t).not.toHaveProperty('activity');
  });

  it('the Windows helper: one process for activity and NIC counters, titles never sent, gone on stop', async () => {
    const device = 'ops-win';
    const { log, lines } = captureLogger('agent');
    // The fake powershell.exe reads its recording from the environment it inherits from the agent.
    process.env.FAKE_PS_FIXTURE = join(FIXTURES, 'ops-classroom.jsonl');
    cleanups.push(async () => {
      delete process.env.FAKE_PS_FIXTURE;
    });
    const agent = await run(
      new ClassroomAgent(
        config(device, {
          activity: { source: 'windows' },
          windowsHelper: { command: FAKE, timeoutMs: 2_000 },
        }),
        { log },
      ),
    );
    expect(agent.windowsHelper).toBeDefined();
    await waitFor(() => telemetry(device).filter((t) => t.activity).length >= 4, {
      what: 'four readings with activity',
      timeoutMs: 20_000,
    });
    const withActivity = telemetry(device).filter((t) => t.activity);
    expect(withActivity.map((t) => t.activity?.foreground).slice(0, 4)).toEqual([
      'EasiNote.exe',
      'POWERPNT.EXE',
      'chrome.exe',
      'msedge.exe',
    ]);
    expect(withActivity[2]!.activity).toMatchObject({ teachingSite: '国家中小学智慧教育平台', idleS: 45 });
    // NIC counters of the same reading, with rates from the second one on.
    expect(withActivity[0]!.host?.nics.map((n) => n.name)).toEqual(['以太网', 'WLAN']);
    expect(withActivity[1]!.host?.nics[0]).toMatchObject({ name: '以太网', rxBytes: '1851282112' });
    expect(withActivity[1]!.host!.nics[0]!.rxBps).toBeGreaterThan(0);
    const all = seen.map((m) => m.payload).join('\n');
    expect(all).not.toMatch(/王老师|Google Chrome|Program Files/);
    const pid = agent.windowsHelper!.pid!;
    await agent.stop();
    expect(() => process.kill(pid, 0)).toThrow();
    expect(agent.stats().windowsHelper).toMatchObject({ starts: 1, exits: 1, badLines: {} });
    expect(lines.some((l) => l.msg === 'windows helper ready')).toBe(true);
  });

  it('on Windows the helper reads the NIC counters even without activity; in session 0 no activity is invented', async () => {
    const device = 'pc-svc';
    const { log, lines } = captureLogger('agent');
    process.env.FAKE_PS_FIXTURE = join(FIXTURES, 'service-session0.jsonl');
    cleanups.push(async () => {
      delete process.env.FAKE_PS_FIXTURE;
    });
    const agent = await run(
      new ClassroomAgent(config(device, { windowsHelper: { command: FAKE } }), { log, platform: 'win32' }),
    );
    await waitFor(() => telemetry(device).some((t) => t.host?.nics.length), {
      what: 'NIC counters from the helper',
    });
    const t = telemetry(device).find((x) => x.host?.nics.length)!;
    expect(t.host!.nics.map((n) => n.name)).toEqual(['以太网']); // not /proc/net/dev's `lo`
    expect(t).not.toHaveProperty('activity');
    await agent.stop();

    // The same helper as the activity source, run as a service while a user is logged on at the console: it
    // cannot see their input, so no activity at all (counted, logged once) — never an invented absence of use.
    const device2 = 'pc-svc2';
    const agent2 = await run(
      new ClassroomAgent(
        config(device2, { activity: { source: 'windows' }, windowsHelper: { command: FAKE } }),
        { log },
      ),
    );
    const loggedOnWarning = (l: Record<string, unknown>) =>
      String(l.msg).includes('outside the console session') &&
      String(l.msg).includes('a user is logged on there');
    await waitFor(() => lines.some(loggedOnWarning), { what: 'the session warning' });
    await agent2.tick();
    await agent2.tick();
    expect(telemetry(device2).length).toBeGreaterThanOrEqual(2);
    // (The first reading may come before its helper's hello: without NIC counters then.)
    expect(telemetry(device2).every((x) => x.activity === undefined)).toBe(true);
    expect(telemetry(device2).some((x) => x.host?.nics.length === 1)).toBe(true);
    expect(agent2.stats().activityErrors).toBeGreaterThanOrEqual(2);
    expect(lines.filter(loggedOnWarning)).toHaveLength(1);
    await agent2.stop();

    // Nobody logged on at the console (the log-on screen): that is evidence — nobody at the computer.
    process.env.FAKE_PS_FIXTURE = join(FIXTURES, 'service-nobody.jsonl');
    const device3 = 'pc-svc3';
    const agent3 = await run(
      new ClassroomAgent(
        config(device3, { activity: { source: 'windows' }, windowsHelper: { command: FAKE } }),
        { log },
      ),
    );
    await waitFor(() => telemetry(device3).some((x) => x.activity), { what: 'a reading with activity' });
    expect(telemetry(device3).find((x) => x.activity)!.activity).toEqual({
      source: 'windows',
      loggedOn: false,
    });
    // Not a failure: only the readings before its helper's hello went without activity.
    expect(agent3.stats().activityErrors).toBe(telemetry(device3).findIndex((x) => x.activity));
    await agent3.stop();

    // On Windows with another activity source: the helper gives the NIC counters, the source the activity.
    const device4 = 'pc-sim-win';
    const agent4 = await run(
      new ClassroomAgent(
        config(device4, {
          display: { source: 'simulated' },
          activity: { source: 'simulated' },
          windowsHelper: { command: FAKE },
        }),
        { log, platform: 'win32' },
      ),
    );
    await waitFor(() => telemetry(device4).some((x) => x.host?.nics.length && x.activity), {
      what: 'NIC counters and activity in one reading',
    });
    const t4 = telemetry(device4).find((x) => x.host?.nics.length && x.activity)!;
    expect(t4.activity?.source).toBe('simulated');
    expect(t4.host!.nics.map((n) => n.name)).toEqual(['以太网']);
    expect(agent4.stats().activityErrors).toBe(0);
  });

  it('a display that does not answer is sent as power unknown, not left out (so never judged on)', async () => {
    const device = 'pn-dark';
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const { log } = captureLogger('agent');
    const agent = await run(
      new ClassroomAgent(
        config(device, {
          display: { source: 'pjlink', host: '127.0.0.1', port, timeoutMs: 500 },
          activity: { source: 'simulated' },
        }),
        { log },
      ),
    );
    await waitFor(() => telemetry(device).length >= 1, { what: 'a reading' });
    const t = telemetry(device)[0]!;
    expect(t.display).toEqual({ source: 'pjlink', power: 'unknown' });
    expect(t.activity?.source).toBe('simulated');
    expect(agent.stats().displayErrors).toBeGreaterThanOrEqual(1);
  });

  it("with sessionPipe: the activity of the console user's session helper, the NIC counters of the service's own helper", async () => {
    const device = 'ops-svc';
    const { log, lines } = captureLogger('agent');
    const dir = mkdtempSync(join(tmp, 'pipe-'));
    // The agent's own helper, in session 0: the user logged on at the console, session 1.
    process.env.FAKE_PS_FIXTURE = join(FIXTURES, 'service-session0.jsonl');
    cleanups.push(async () => {
      delete process.env.FAKE_PS_FIXTURE;
    });
    // The user's session helper, serving the pipe of session 1.
    const helper = await fakeSessionHelper(dir, 1, 'session-helper.jsonl');
    cleanups.push(() => helper.stop());
    const agent = await run(sessionPipeAgent(device, dir, 2_000, log));
    await waitFor(() => telemetry(device).filter((t) => t.activity).length >= 3, {
      what: 'three readings with activity',
      timeoutMs: 20_000,
    });
    const withActivity = telemetry(device).filter((t) => t.activity);
    expect(withActivity.slice(0, 3).map((t) => t.activity)).toEqual(SESSION_HELPER_ACTIVITY);
    // The NIC counters are the service's own helper's (session 0 is fine for those); the session helper sends none.
    expect(withActivity.every((t) => t.host?.nics.map((x) => x.name).join() === '以太网')).toBe(true);
    expect(seen.map((m) => m.payload).join('\n')).not.toMatch(/王老师|Google Chrome|Program Files/);
    // The readings before the first with activity came before the agent's own helper said hello (it names the
    // console's session): those alone went without activity.
    const first = telemetry(device).findIndex((t) => t.activity);
    expect(agent.stats()).toMatchObject({
      activityErrors: first,
      sessionHelper: { starts: 1, exits: 0, badLines: {} },
    });
    expect(agent.sessionHelper?.ready).toMatchObject({ hello: 'cfm-windows-helper' });

    // The user logs off (the session helper goes away): readings go on, without activity, counted.
    await helper.stop();
    const before = agent.stats().activityErrors;
    await waitFor(() => agent.stats().activityErrors >= before + 2, {
      what: 'readings without the session helper',
    });
    expect(telemetry(device).at(-1)).not.toHaveProperty('activity');
    expect(
      lines.filter((l) => String(l.msg).startsWith('no windows activity: session helper')).length,
    ).toBeGreaterThan(0);

    // Back (logged on again): activity again, over a new connection; stop closes it.
    const again = await fakeSessionHelper(dir, 1, 'session-helper.jsonl');
    cleanups.push(() => again.stop());
    const count = telemetry(device).filter((t) => t.activity).length;
    await waitFor(() => telemetry(device).filter((t) => t.activity).length > count, {
      what: 'activity again',
      timeoutMs: 20_000,
    });
    await agent.stop();
    await waitFor(() => again.events().includes('close 0'), { what: 'the pipe closed on stop' });
  });

  it('with sessionPipe and a squatter on the pipe: readings go on without activity, counted; the agent lives', async () => {
    const device = 'ops-squat';
    const { log } = captureLogger('agent');
    const dir = mkdtempSync(join(tmp, 'squat-'));
    process.env.FAKE_PS_FIXTURE = join(FIXTURES, 'service-session0.jsonl');
    cleanups.push(async () => {
      delete process.env.FAKE_PS_FIXTURE;
    });
    // Something else serves the console session's pipe: it floods, then answers from another session.
    const squatter = await fakeSessionHelper(dir, 1, 'rdp-session.jsonl', [
      { steps: [{ flood: 100 }] },
      { steps: [{ replay: true }] },
    ]);
    cleanups.push(() => squatter.stop());
    const agent = await run(sessionPipeAgent(device, dir, 1_000, log));
    await waitFor(() => squatter.connects() >= 2 && agent.stats().activityErrors >= 3, {
      what: 'the flood dropped, and the next connection refused',
      timeoutMs: 20_000,
    });
    expect(agent.stats().sessionHelper!.badLines.unexpected).toBe(16);
    // Three readings were made; the third may still be on its way through the broker to this subscriber.
    await waitFor(() => telemetry(device).length >= 3, { what: 'three readings received' });
    expect(telemetry(device).every((t) => t.activity === undefined)).toBe(true);
    expect(telemetry(device).some((t) => t.host?.nics.length === 1)).toBe(true);
  });

  it('a failing activity source: readings go on without activity, counted, logged once', async () => {
    const device = 'pc-cmd';
    const { log, lines } = captureLogger('agent');
    const agent = await run(
      new ClassroomAgent(
        config(device, {
          display: { source: 'simulated' },
          activity: { source: 'command', command: join(tmp, 'no-such-tool') },
        }),
        { log },
      ),
    );
    await waitFor(() => telemetry(device).length >= 2, { what: 'two readings' });
    await agent.tick();
    expect(telemetry(device).every((t) => t.activity === undefined && t.display !== undefined)).toBe(true);
    expect(agent.stats().activityErrors).toBeGreaterThanOrEqual(3);
    expect(lines.filter((l) => l.msg === 'activity read failed')).toHaveLength(1);
    expect(JSON.stringify(lines)).toContain('no-such-tool: not found');
  });
});
