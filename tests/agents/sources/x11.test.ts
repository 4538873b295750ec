import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TEACHING_SITES, teachingSiteMatcher } from '../../../agents/sources/activity/sites.js';
import {
  parseWindowPidName,
  parseXsetQ,
  X11Activity,
  type X11ActivityOptions,
} from '../../../agents/sources/activity/x11.js';
import { activitySchema } from '../../../contracts/messages.js';
import { waitFor } from '../../../dev/ports.js';
import { CHROMIUM } from '../../helpers/browser.js';
import { captureLogger } from '../../helpers/influx.js';
import { startXvfb, which, type Xvfb } from '../../helpers/xvfb.js';

/**
 * The x11 activity source for real: a real X server (Xvfb), real input through XTEST (xdotool), the real
 * tools the source runs, and a real browser window (Debian's Chromium, as the browser tests use) whose title
 * names the national platform. Nothing is skipped: without Xvfb and the tools the suite fails, naming them.
 */
const match = teachingSiteMatcher(DEFAULT_TEACHING_SITES);
let xvfb: Xvfb;
const tmp = mkdtempSync(join(tmpdir(), 'cfm-x11-'));

beforeAll(async () => {
  xvfb = await startXvfb();
});
afterAll(async () => {
  await xvfb?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function source(over: Partial<X11ActivityOptions> = {}) {
  const cap = captureLogger('x11');
  const src = new X11Activity({ display: xvfb.display, timeoutMs: 5_000, match, log: cap.log, ...over });
  return { src, logs: cap.lines };
}

const read = async (src: X11Activity) => {
  const a = await src.read();
  expect(activitySchema.parse(a)).toEqual(a);
  return a;
};

describe('x11 activity under Xvfb', () => {
  it('sees the pointer move as input, the idle time grow when it stops, and input again', async () => {
    const { src, logs } = source();
    await xvfb.x('xdotool', 'mousemove', '100', '100');
    const moved = await read(src);
    expect(moved.idleS).toBeLessThanOrEqual(1);
    expect(moved.screenOn).toBe(true); // Xvfb has no DPMS; its screen saver waits 600 s
    // A bare X server: no window has the focus, so there is no foreground — and the rest is still read.
    expect(moved.foreground).toBeUndefined();
    expect(logs.filter((l) => JSON.stringify(l).includes('active window'))).toHaveLength(1);
    await waitFor(async () => ((await read(src)).idleS ?? 0) >= 2, {
      what: 'idle for 2 s',
      timeoutMs: 10_000,
    });
    await xvfb.x('xdotool', 'mousemove', '400', '300');
    expect((await read(src)).idleS).toBeLessThanOrEqual(1);
    // One warning for the missing window, however many readings.
    expect(logs.filter((l) => JSON.stringify(l).includes('active window'))).toHaveLength(1);
  });

  it("reads the screen as off once the X screen saver's timeout has passed without input", async () => {
    const { src } = source();
    await xvfb.x('xset', 's', '2');
    try {
      await xvfb.x('xdotool', 'mousemove', '10', '10');
      expect((await read(src)).screenOn).toBe(true);
      await waitFor(async () => (await read(src)).screenOn === false, {
        what: 'screen saved',
        timeoutMs: 10_000,
      });
      await xvfb.x('xdotool', 'mousemove', '20', '20');
      expect((await read(src)).screenOn).toBe(true);
    } finally {
      await xvfb.x('xset', 's', 'off');
    }
    await waitFor(async () => ((await read(src)).idleS ?? 0) >= 3, { what: 'idle 3 s', timeoutMs: 10_000 });
    expect((await read(src)).screenOn).toBe(true); // no saver: nothing blanks it
  });

  describe('with a browser on the national platform', () => {
    let browser: ChildProcess;
    let exited: Promise<void>;
    beforeAll(async () => {
      const page = join(tmp, 'page.html');
      // The page retitles itself at a key press, with what a title may carry: a class and a teacher's name.
      writeFileSync(
        page,
        '<!doctype html><meta charset="utf-8"><title>国家中小学智慧教育平台</title><p>课堂</p>' +
          "<script>addEventListener('keydown', () => { document.title = '三年级二班 家长会名单 张老师' })</script>",
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
      exited = new Promise((resolve) => browser.on('close', () => resolve()));
    });
    afterAll(async () => {
      browser.kill();
      await exited;
    });

    it('reports the browser as the foreground and the platform as the teaching site, never the title', async () => {
      const { src } = source();
      await waitFor(async () => (await read(src)).teachingSite === '国家中小学智慧教育平台', {
        what: 'the platform in the focused window',
        timeoutMs: 30_000,
      });
      const a = await read(src);
      expect(a).toMatchObject({
        source: 'x11',
        foreground: 'chromium',
        teachingSite: '国家中小学智慧教育平台',
      });
      expect(JSON.stringify(a)).not.toContain('Chromium'); // the title is "国家中小学智慧教育平台 - Chromium"

      // A key press: input, and the page's new title is no teaching site — nor does it leave.
      await xvfb.x('xdotool', 'key', 'x');
      await waitFor(async () => (await read(src)).teachingSite === undefined, { what: 'retitled' });
      const b = await read(src);
      expect(b).toMatchObject({ foreground: 'chromium' });
      expect(b.idleS).toBeLessThanOrEqual(2);
      expect(JSON.stringify(b)).not.toMatch(/张老师|家长会/);
    });

    it("prefers the window manager's active window (EWMH) to the input focus", async () => {
      const { src } = source();
      const focused = (await xvfb.x('xdotool', 'getwindowfocus')).trim();
      // What a window manager announces on the root window: first the browser as the active window, then
      // another window (one without an owner to name, window 1) while the browser keeps the input focus.
      await xvfb.x(
        'xprop',
        '-root',
        '-f',
        '_NET_SUPPORTED',
        '32a',
        '-set',
        '_NET_SUPPORTED',
        '_NET_ACTIVE_WINDOW',
      );
      try {
        await xvfb.x(
          'xprop',
          '-root',
          '-f',
          '_NET_ACTIVE_WINDOW',
          '32x',
          '-set',
          '_NET_ACTIVE_WINDOW',
          `0x${Number(focused).toString(16)}`,
        );
        expect((await read(src)).foreground).toBe('chromium');
        await xvfb.x(
          'xprop',
          '-root',
          '-f',
          '_NET_ACTIVE_WINDOW',
          '32x',
          '-set',
          '_NET_ACTIVE_WINDOW',
          '0x1',
        );
        const a = await read(src);
        expect(a.foreground).toBeUndefined();
        expect(a.idleS).toBeDefined();
      } finally {
        await xvfb.x('xprop', '-root', '-remove', '_NET_ACTIVE_WINDOW', '-remove', '_NET_SUPPORTED');
      }
      expect((await read(src)).foreground).toBe('chromium');
    });

    it('sends no foreground when the process name is not an executable name', async () => {
      const pid = (await xvfb.x('xdotool', 'getwindowfocus', 'getwindowpid')).trim();
      for (const comm of ['../../bin/sh', 'evil\u001b[31m', '', 'x'.repeat(200)]) {
        const proc = join(tmp, `proc-${comm.length}`);
        mkdirSync(join(proc, pid), { recursive: true });
        writeFileSync(join(proc, pid, 'comm'), `${comm}\n`);
        const a = await read(source({ procDir: proc }).src);
        expect(a.foreground, comm).toBeUndefined();
        expect(a.idleS).toBeDefined();
      }
    });
  });

  it('reads without a tool that is missing or prints garbage, says which once, and fails only when nothing can be read', async () => {
    const bin = join(tmp, 'bin');
    mkdirSync(bin, { recursive: true });
    for (const tool of ['xdotool', 'xset']) symlinkSync(which(tool)!, join(bin, tool));
    const only = { ...process.env, PATH: bin };
    const missing = source({ env: only });
    const a = await read(missing.src);
    expect(a.idleS).toBeUndefined();
    expect(a.screenOn).toBe(true);
    expect(JSON.stringify(missing.logs)).toContain(
      'xprintidle not found (Debian/Ubuntu: apt-get install xprintidle)',
    );
    expect(missing.src.failures.idle).toBe(1);

    writeFileSync(join(bin, 'xprintidle'), '#!/bin/sh\necho "-5 ms, or so"\n');
    chmodSync(join(bin, 'xprintidle'), 0o755);
    const garbage = source({ env: only });
    expect((await read(garbage.src)).idleS).toBeUndefined();
    expect(JSON.stringify(garbage.logs)).toContain('xprintidle printed \\"-5 ms, or so\\"');

    // No X server on that display: every part fails, and the read says so, naming the display.
    const gone = source({ display: ':4095' });
    await expect(gone.src.read()).rejects.toThrow(
      /x11 activity on :4095: xprintidle failed.*xdotool failed.*xset failed/,
    );
  });
});

describe('what the X tools print', () => {
  it('xset q: DPMS states and the screen saver timeout', () => {
    // The format of xset(1)'s `q` (x11-xserver-utils, xset.c): a display with DPMS, the monitor in standby.
    const dpms = `Keyboard Control:
  auto repeat:  on    key click percent:  0    LED mask:  00000000
Screen Saver:
  prefer blanking:  yes    allow exposures:  yes
  timeout:  600    cycle:  600
DPMS (Energy Star):
  Standby: 600    Suspend: 600    Off: 600
  DPMS is Enabled
  Monitor is in Standby
`;
    expect(parseXsetQ(dpms)).toEqual({ monitor: 'off', saverTimeoutS: 600 });
    expect(parseXsetQ(dpms.replace('in Standby', 'On'))).toEqual({ monitor: 'on', saverTimeoutS: 600 });
    expect(parseXsetQ(dpms.replace('in Standby', 'Off'))).toEqual({ monitor: 'off', saverTimeoutS: 600 });
    expect(parseXsetQ(dpms.replace('in Standby', 'in Suspend')).monitor).toBe('off');
    expect(
      parseXsetQ(
        'Screen Saver:\n  timeout:  0    cycle:  600\nDPMS (Energy Star):\n  Server does not have the DPMS Extension\n',
      ),
    ).toEqual({
      saverTimeoutS: 0,
    });
    expect(parseXsetQ('')).toEqual({});
  });

  it('xdotool: the pid, then the title — which may hold anything but a newline at its end', () => {
    expect(parseWindowPidName('4242\n国家中小学智慧教育平台 - Chromium\n')).toEqual({
      pid: 4242,
      title: '国家中小学智慧教育平台 - Chromium',
    });
    expect(parseWindowPidName('4242\nline one\nline two\n')).toEqual({
      pid: 4242,
      title: 'line one\nline two',
    });
    expect(parseWindowPidName('0\nx\n')).toEqual({ title: 'x' });
    expect(parseWindowPidName('-1\n')).toEqual({});
    expect(parseWindowPidName('')).toEqual({});
  });
});
