import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { executableName } from '../../../agents/sources/activity/activity.js';
import { CommandActivity } from '../../../agents/sources/activity/command.js';
import { activityConfigSchema } from '../../../agents/sources/activity/config.js';
import { SimulatedActivity } from '../../../agents/sources/activity/simulated.js';
import { DEFAULT_TEACHING_SITES, teachingSiteMatcher } from '../../../agents/sources/activity/sites.js';
import { SIM_SLOT_MS, SimulatedDisplay, simulatedMoment } from '../../../agents/sources/simulated.js';
import { activitySchema, MAX_IDLE_S } from '../../../contracts/messages.js';

const match = teachingSiteMatcher(DEFAULT_TEACHING_SITES);
const tmp = mkdtempSync(join(tmpdir(), 'cfm-activity-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** An executable script printing `out` (and exiting with `code`). */
function tool(name: string, out: string, code = 0): string {
  const file = join(tmp, name);
  writeFileSync(file, `#!/bin/sh\ncat <<'EOF'\n${out}\nEOF\nexit ${code}\n`);
  chmodSync(file, 0o755);
  return file;
}

describe('executable names', () => {
  it('takes the name from a Windows or Linux path, and refuses what cannot be one', () => {
    expect(executableName('C:\\Program Files (x86)\\Seewo\\EasiNote5\\Main\\EasiNote.exe')).toBe(
      'EasiNote.exe',
    );
    expect(executableName('/usr/lib/chromium/chromium')).toBe('chromium');
    expect(executableName('wpp.exe')).toBe('wpp.exe');
    expect(executableName('/usr/lib/libreoffice/program/soffice.bin')).toBe('soffice.bin');
    expect(executableName('C:\\Windows\\System32\\Video.UI.exe')).toBe('Video.UI.exe');
    // What a tool could pass off as a program: a document, a window title, a drive-relative path, a name
    // reversed by a bidi control — none leaves the computer.
    const documents = [
      'C:\\Users\\张三\\Desktop\\期末试卷 三年级二班.pptx',
      '张三 期末成绩.xlsx - Excel',
      '试卷.pptx',
    ];
    for (const bad of [...documents, 'D:foo.exe', 'exe.\u202Etxt', 'a\u007Fb.exe', 'report.docx']) {
      expect(executableName(bad), JSON.stringify(bad)).toBeUndefined();
    }
    for (const bad of [undefined, null, '', 'C:\\dir\\', 'evil\u0007.exe', 'x'.repeat(200), '   ']) {
      expect(executableName(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });
});

describe('the command activity source', () => {
  it('runs the tool, matches the title here and sends only the site, cuts a path to its name', async () => {
    const cmd = tool(
      'ok',
      JSON.stringify({
        idleS: 42,
        foreground: 'C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe',
        title: '智慧中小学 - 王小明的作业 - Google Chrome',
        screenOn: true,
        vendorExtra: { ignored: true },
      }),
    );
    const a = await new CommandActivity({ command: cmd, match }).read();
    expect(a).toEqual({
      source: 'command',
      idleS: 42,
      foreground: 'chrome.exe',
      teachingSite: '国家中小学智慧教育平台',
      screenOn: true,
    });
    expect(activitySchema.parse(a)).toEqual(a);
    expect(JSON.stringify(a)).not.toContain('王小明');
  });

  it.each([
    ['prints no JSON', 'Error: license expired', /activity command .*: output is not JSON/],
    ['prints an array', '[1,2]', /must be a JSON object/],
    ['gives idle as text', '{"idleS":"5"}', /idleS: /],
    ['gives a negative idle', '{"idleS":-1}', /idleS: /],
    ['gives idle over a year', `{"idleS":${MAX_IDLE_S + 1}}`, /idleS: /],
    [
      'gives a foreground that is no name',
      '{"foreground":"C:\\\\Windows\\\\"}',
      /foreground: must be an executable name/,
    ],
    ['gives a huge title', `{"title":"${'t'.repeat(5_000)}"}`, /title: /],
  ])('fails with the field and the reason when the tool %s', async (_what, out, message) => {
    await expect(
      new CommandActivity({ command: tool(`bad-${_what.length}`, out), match }).read(),
    ).rejects.toThrow(message);
  });

  it('fails clearly when the tool is missing, fails, hangs or floods', async () => {
    await expect(new CommandActivity({ command: join(tmp, 'missing'), match }).read()).rejects.toThrow(
      /activity command .*missing: not found/,
    );
    await expect(new CommandActivity({ command: tool('exit3', '{}', 3), match }).read()).rejects.toThrow(
      /failed/,
    );
    const slow = join(tmp, 'slow');
    writeFileSync(slow, '#!/bin/sh\nexec sleep 30\n');
    chmodSync(slow, 0o755);
    await expect(new CommandActivity({ command: slow, timeoutMs: 200, match }).read()).rejects.toThrow(
      'timed out after 200 ms',
    );
    const flood = join(tmp, 'flood');
    writeFileSync(flood, '#!/bin/sh\nexec yes\n');
    chmodSync(flood, 0o755);
    await expect(new CommandActivity({ command: flood, match }).read()).rejects.toThrow(/printed more than/);
  });
});

describe('the simulated classroom', () => {
  // A Monday of term, CST: 2026-11-02 is a Monday.
  const day = Date.parse('2026-11-02T00:00:00+08:00');
  const opts = {
    seed: '3301060001/wb-0701',
    useShare: 0.5,
    leftOn: true,
    teachingSite: '国家中小学智慧教育平台',
  };

  it('a panel left on all day is used only in some slots, and the activity says so', () => {
    const sim = new SimulatedActivity(opts);
    const display = new SimulatedDisplay(opts);
    let used = 0;
    let onUnused = 0;
    for (let t = day + 8 * 3_600_000; t < day + 17 * 3_600_000; t += 60_000) {
      const m = simulatedMoment(opts, t);
      const a = sim.readSync(t);
      expect(activitySchema.parse(a)).toEqual(a);
      expect(display.read(new Date(t)).power).toBe('on'); // left on
      expect(a.screenOn).toBe(true);
      if (m.used) {
        used++;
        expect(a.idleS).toBeLessThan(240); // touched every one to four minutes
        expect(['EasiNote.exe', 'POWERPNT.EXE', 'wpp.exe', 'chrome.exe']).toContain(a.foreground);
        expect(a.teachingSite !== undefined).toBe(a.foreground === 'chrome.exe');
      } else {
        onUnused++;
        expect(a.foreground).toBe('explorer.exe');
        expect(a.teachingSite).toBeUndefined();
      }
    }
    expect(used).toBeGreaterThan(0);
    expect(onUnused).toBeGreaterThan(0);
  });

  it('the idle time grows from the end of the last use, and the same time gives the same reading', () => {
    const sim = new SimulatedActivity(opts);
    const start = day + 8 * 3_600_000;
    let s = Math.ceil(start / SIM_SLOT_MS);
    while (!simulatedMoment(opts, s * SIM_SLOT_MS).used || simulatedMoment(opts, (s + 1) * SIM_SLOT_MS).used)
      s++;
    const end = (s + 1) * SIM_SLOT_MS; // a used slot followed by an unused one
    expect(sim.readSync(end + 60_000).idleS).toBe(60);
    expect(sim.readSync(end + 600_000).idleS).toBe(600);
    expect(new SimulatedActivity(opts).readSync(end + 600_000)).toEqual(sim.readSync(end + 600_000));
  });

  it('outside teaching hours and for an idle panel: screen off, no foreground', () => {
    const night = new SimulatedActivity(opts).readSync(day + 22 * 3_600_000);
    expect(night).toMatchObject({ source: 'simulated', screenOn: false });
    expect(night.foreground).toBeUndefined();
    const idle = new SimulatedActivity({ ...opts, idle: true }).readSync(day + 10 * 3_600_000);
    expect(idle).toMatchObject({ source: 'simulated', screenOn: false });
    expect(idle.foreground).toBeUndefined();
    expect(idle.idleS).toBeGreaterThanOrEqual(7 * 86_400); // never used: at least as long as it looks back
  });

  it('a panel switched on with nobody at the board (unattendedShare): on, the desktop in front, idle growing', () => {
    const o = { seed: 'x/z', useShare: 1, unattendedShare: 0.3 };
    const sim = new SimulatedActivity(o);
    const display = new SimulatedDisplay(o);
    const slots = { used: 0, unattended: 0 };
    const first = Math.ceil((day + 8 * 3_600_000) / SIM_SLOT_MS) * SIM_SLOT_MS; // slots start on the epoch's
    for (let t = first; t + SIM_SLOT_MS <= day + 17 * 3_600_000; t += SIM_SLOT_MS) {
      expect(display.read(new Date(t)).power).toBe('on');
      const a = sim.readSync(t + 30 * 60_000);
      if (simulatedMoment(o, t).used) {
        slots.used++;
        expect(a.foreground).not.toBe('explorer.exe');
      } else {
        slots.unattended++;
        expect(a).toMatchObject({ foreground: 'explorer.exe', screenOn: true });
        expect(a.idleS).toBeGreaterThanOrEqual(30 * 60);
      }
    }
    expect(slots.used).toBeGreaterThan(slots.unattended);
    expect(slots.unattended).toBeGreaterThan(0);
  });

  it('the display of a panel not left on is on exactly when used, as before', () => {
    const o = { seed: 'x/y', useShare: 0.5 };
    const display = new SimulatedDisplay(o);
    for (let t = day; t < day + 86_400_000; t += 15 * 60_000) {
      expect(display.read(new Date(t)).power === 'on').toBe(simulatedMoment(o, t).used);
    }
  });
});

describe('agent.activity configuration', () => {
  it('defaults to none, and to the national platform as the teaching site', () => {
    expect(activityConfigSchema.parse(undefined)).toEqual({ source: 'none' });
    expect(activityConfigSchema.parse({ source: 'windows' })).toEqual({
      source: 'windows',
      teachingSites: DEFAULT_TEACHING_SITES,
    });
    expect(activityConfigSchema.parse({ source: 'x11' })).toMatchObject({ timeoutMs: 2_000 });
  });

  it.each([
    [{ source: 'windows', teachingSites: [{ name: '', match: ['x'] }] }, 'teachingSites'],
    [{ source: 'windows', teachingSites: [{ name: 'x', match: [] }] }, 'match'],
    [{ source: 'x11', title: 'x' }, 'title'],
    [{ source: 'command' }, 'command'],
    [{ source: 'gnome' }, 'source'],
  ])('refuses %j', (value, field) => {
    const r = activityConfigSchema.safeParse(value);
    expect(r.success).toBe(false);
    expect(JSON.stringify(r.error?.issues)).toContain(field);
  });
});
