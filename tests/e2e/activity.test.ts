import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentConfigSchema, ClassroomAgent } from '../../agents/classroom/agent.js';
import { Collector, collectorConfigSchema } from '../../collector/collector.js';
import { writeFileAtomic } from '../../common/json-file.js';
import { type Activity, decodePayload } from '../../contracts/messages.js';
import { PjlinkSimulator } from '../../dev/pjlink-sim.js';
import { CHROMIUM } from '../helpers/browser.js';
import { captureLogger, Influxd, testStorage, waitFor } from '../helpers/influx.js';
import { startBroker } from '../helpers/mqtt.js';
import { startXvfb, type Xvfb } from '../helpers/xvfb.js';

/**
 * Classroom use end to end with real parts (#16): a panel answering PJLink (the simulator), the teaching
 * computer's X11 desktop (Xvfb) with Debian's Chromium on the national platform, the real classroom agent
 * reading both, the embedded broker, the collector (judging use: docs/usage.md) and InfluxDB 1.x. The person at
 * the board is played with XTEST input (xdotool): teaching on the platform, then the page changed and nobody at
 * the board.
 */
const SCHOOL = '3133001234';
const DEVICE = 'c0801-ops';
const influxd = new Influxd();
const tmp = mkdtempSync(join(tmpdir(), 'cfm-e2e-activity-'));
let xvfb: Xvfb;
let browser: ChildProcess;
let browserExited: Promise<void>;

beforeAll(async () => {
  xvfb = await startXvfb();
  const page = join(tmp, 'page.html');
  writeFileSync(
    page,
    '<!doctype html><meta charset="utf-8"><title>国家中小学智慧教育平台</title><p>课堂</p>' +
      "<script>addEventListener('keydown', () => { document.title = '班级相册' })</script>",
  );
  browser = spawn(
    CHROMIUM,
    [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
      `--user-data-dir=${join(tmp, 'profile')}`,
      pathToFileURL(page).href,
    ],
    { env: { ...process.env, DISPLAY: xvfb.display }, stdio: 'ignore' },
  );
  browserExited = new Promise((resolve) => browser.on('close', () => resolve()));
  await influxd.start();
});
afterAll(async () => {
  browser?.kill();
  await browserExited;
  await xvfb?.stop();
  await influxd.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('agent (PJLink + X11 activity) → broker → collector → InfluxDB', () => {
  it('carries the evidence from the desktop to the collector, which stores teaching as used and nobody at the board as on but unused', async () => {
    const registryFile = join(tmp, 'registry.json');
    writeFileAtomic(
      registryFile,
      JSON.stringify({
        regions: [
          { id: '330000', name: '浙江省', level: 'province' },
          { id: '330100', name: '杭州市', level: 'city', parent: '330000' },
          { id: '330106', name: '西湖区', level: 'county', parent: '330100' },
        ],
        schools: [
          {
            id: SCHOOL,
            name: '西湖小学',
            region: '330106',
            area: 'urban',
            level: 'primary',
            classes: 24,
            students: 1000,
            teachers: 60,
          },
        ],
        classrooms: [{ id: 'c0801', school: SCHOOL, name: '八年级一班' }],
        devices: [{ id: DEVICE, school: SCHOOL, classroom: 'c0801', kind: 'panel' }],
      }),
    );
    const b = await startBroker(
      [
        { username: 'collector', role: 'collector' },
        { username: `dev-${DEVICE}`, role: 'device', school: SCHOOL, device: DEVICE },
      ],
      { holdDevicesUntilCollector: true },
    );
    cleanups.push(() => b.dispose());
    const { storage } = testStorage(influxd.url, { database: 'e2eactivity' });
    await storage.start();
    cleanups.push(() => storage.stop());
    const collector = new Collector(
      collectorConfigSchema.parse({
        mqtt: { url: b.url, username: 'collector', password: b.secrets.collector, reconnectMinMs: 50 },
        metrics: { port: 0 },
        registryFile,
        usage: { activeWithinS: 10 },
      }),
      { log: captureLogger('collector').log, storage },
    );
    // What the collector was handed, decoded as it decodes it.
    const got: { seq: number; v: number; activity?: Activity; inUse?: boolean }[] = [];
    const handle = collector.handle.bind(collector);
    collector.handle = (topic, payload, retained) => {
      if (topic.endsWith('/telemetry')) {
        const d = decodePayload('telemetry', payload);
        if (d.ok) got.push(d.message);
      }
      handle(topic, payload, retained);
    };
    await collector.start();
    cleanups.push(() => collector.stop());
    await collector.ready();

    const projector = new PjlinkSimulator({ power: 1, input: '31', lampHours: 800, errors: '000000' });
    const pjPort = await projector.start();
    cleanups.push(() => projector.stop());
    const agent = new ClassroomAgent(
      agentConfigSchema.parse({
        school: SCHOOL,
        device: DEVICE,
        classroom: 'c0801',
        kind: 'panel',
        intervalS: 1,
        mqtt: {
          url: b.url,
          username: `dev-${DEVICE}`,
          password: b.secrets[`dev-${DEVICE}`],
          reconnectMinMs: 50,
        },
        spool: { dir: join(tmp, 'spool') },
        display: { source: 'pjlink', host: '127.0.0.1', port: pjPort, timeoutMs: 2_000 },
        activity: { source: 'x11', display: xvfb.display },
      }),
      { log: captureLogger('agent').log },
    );
    await agent.start();
    cleanups.push(() => agent.stop());

    // Teaching: the platform in the browser, a touch on the board.
    await xvfb.x('xdotool', 'mousemove', '200', '200');
    const teachingReading = (t: (typeof got)[number]) =>
      t.activity?.teachingSite !== undefined && (t.activity.idleS ?? 99) <= 2;
    await waitFor(() => got.some(teachingReading), {
      what: 'a reading of teaching on the platform',
      timeoutMs: 30_000,
    });
    const teaching = got.find(teachingReading)!;
    expect(teaching).toMatchObject({
      v: 2,
      activity: {
        source: 'x11',
        foreground: 'chromium',
        teachingSite: '国家中小学智慧教育平台',
        screenOn: true,
      },
    });
    expect(teaching).not.toHaveProperty('inUse');

    // The page changed (a key press), then nobody at the board: idle time grows, no teaching site.
    await xvfb.x('xdotool', 'key', 'x');
    const pressed = got.length;
    const unattendedReading = () =>
      got.slice(pressed).find((t) => t.activity && !t.activity.teachingSite && (t.activity.idleS ?? 0) >= 11);
    await waitFor(() => unattendedReading() !== undefined, {
      what: 'a reading of the panel on with nobody at it',
      timeoutMs: 30_000,
    });
    const unattended = unattendedReading()!;
    expect(unattended.activity).toMatchObject({ source: 'x11', foreground: 'chromium', screenOn: true });

    await agent.stop();
    await storage.drain();
    const displays = await storage.rows('SELECT * FROM display ORDER BY time');
    expect(displays.length).toBe(got.length);
    for (const d of displays) {
      expect(d).toMatchObject({
        school: SCHOOL,
        device: DEVICE,
        classroom: 'c0801',
        source: 'pjlink',
        power: 'on',
        on: 1,
      });
    }
    // The collector's judgement (collector.usage, activeWithinS 10): teaching on the platform is use; the panel
    // on with the page changed and no input for 11 s is on but unused.
    const bySeq = (seq: number) => displays[got.findIndex((t) => t.seq === seq)]!;
    expect(bySeq(teaching.seq)).toMatchObject({
      in_use: 1,
      use_basis: 'activity',
      active: 1,
      teaching_app: 1,
      screen_on: 1,
    });
    // A browser is not a teaching application: its name is not kept.
    expect(bySeq(teaching.seq).foreground ?? null).toBeNull();
    expect(bySeq(unattended.seq)).toMatchObject({
      on: 1,
      in_use: 0,
      use_basis: 'activity',
      active: 0,
      teaching_app: 0,
    });
    expect(bySeq(unattended.seq).foreground ?? null).toBeNull();
    // No window title reached the database.
    expect(JSON.stringify(displays)).not.toMatch(/班级相册|Chromium/);
    expect(collector.stats().rejected).toEqual({});
    expect(agent.stats()).toMatchObject({ activityErrors: 0, displayErrors: 0 });
  });
});
