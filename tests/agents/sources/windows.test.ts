import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_TEACHING_SITES, teachingSiteMatcher } from '../../../agents/sources/activity/sites.js';
import {
  defaultPowershell,
  type HelperResponse,
  helperNics,
  helperProcess,
  helperResponseSchema,
  WindowsHelper,
  windowsActivity,
} from '../../../agents/sources/activity/windows.js';
import { helperArgs, WINDOWS_HELPER_SCRIPT } from '../../../agents/sources/activity/windows-script.js';
import { activitySchema } from '../../../contracts/messages.js';
import { waitFor } from '../../../dev/ports.js';
import { captureLogger } from '../../helpers/influx.js';
import { which } from '../../helpers/xvfb.js';

/**
 * The Windows helper on Linux: its recorded lines (tests/fixtures/windows/, README there) parsed into activity
 * and NIC counters, and its process and protocol — spawn once, a request line per reading, restart with
 * back-off, hostile lines, kill on stop — against tests/helpers/fake-powershell.mjs standing in for
 * powershell.exe. The code under test is the code that runs on Windows; only the executable differs.
 */
const tmp = mkdtempSync(join(tmpdir(), 'cfm-winhelper-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const FIXTURES = fileURLToPath(new URL('../../fixtures/windows/', import.meta.url));
const FAKE = fileURLToPath(new URL('../../helpers/fake-powershell.mjs', import.meta.url));
const match = teachingSiteMatcher(DEFAULT_TEACHING_SITES);

function recorded(file: string): HelperResponse[] {
  return readFileSync(join(FIXTURES, file), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .slice(1)
    .map((l) => helperResponseSchema.parse(JSON.parse(l)));
}

describe('what the recorded helper lines mean', () => {
  it('reads an OPS module in use: idle time, executable name without its path, teaching sites, the screen', () => {
    const got = recorded('ops-classroom.jsonl').map((r) => windowsActivity(r, match).activity);
    for (const a of got) expect(activitySchema.parse(a)).toEqual(a);
    expect(got).toEqual([
      { source: 'windows', idleS: 3, foreground: 'EasiNote.exe', screenOn: true },
      // A slide show without input for 1000 s: the application says it is taught; the title never leaves.
      { source: 'windows', idleS: 1000, foreground: 'POWERPNT.EXE', screenOn: true },
      {
        source: 'windows',
        idleS: 45,
        foreground: 'chrome.exe',
        teachingSite: '国家中小学智慧教育平台',
        screenOn: true,
      },
      {
        source: 'windows',
        idleS: 1,
        foreground: 'msedge.exe',
        teachingSite: '国家中小学智慧教育平台',
        screenOn: true,
      },
      // Locked: the lock screen's window is not the user's foreground; the display is off.
      { source: 'windows', idleS: 600, screenOn: false },
      // The screen saver runs: the screen is not showing anything taught.
      { source: 'windows', idleS: 900, foreground: 'Mystify.scr', screenOn: false },
      // The desktop, dimmed: dimmed is on.
      { source: 'windows', idleS: 0, foreground: 'explorer.exe', screenOn: true },
      // The foreground process exited before its path was read: no foreground rather than a wrong one.
      { source: 'windows', idleS: 0, screenOn: true },
    ]);
    const titles = JSON.stringify(got);
    expect(titles).not.toContain('王老师');
    expect(titles).not.toContain('Google Chrome');
  });

  it('reads nothing of the user from a helper in session 0 (the agent as a service), nor without a console session', () => {
    const [inService, switching] = recorded('service-session0.jsonl');
    expect(windowsActivity(inService!, match)).toEqual({
      activity: { source: 'windows' },
      sessionMismatch: { session: 0, console: 1 },
    });
    expect(windowsActivity(switching!, match)).toEqual({
      activity: { source: 'windows' },
      sessionMismatch: { session: 0, console: null },
    });
    // The NIC counters are the machine's, whichever session reads them.
    expect(helperNics(inService!)).toEqual(new Map([['以太网', { rx: 1843920112n, tx: 312004551n }]]));
  });

  it('survives GetTickCount wrapping after 49.7 days, and keeps 64-bit NIC counters exact', () => {
    const [r] = recorded('tick-wrap.jsonl');
    expect(windowsActivity(r!, match).activity).toEqual({
      source: 'windows',
      idleS: 3,
      foreground: 'wpp.exe',
      screenOn: true,
    });
    expect(helperNics(r!).get('Ethernet')).toEqual({ rx: 18446744073709551000n, tx: 77n });
  });

  it('takes NIC counters from the performance counters when Get-NetAdapterStatistics is missing; no display state: unknown', () => {
    const [r] = recorded('perf-counters.jsonl');
    expect(windowsActivity(r!, match).activity).toEqual({
      source: 'windows',
      idleS: 3,
      foreground: 'HiteBoard.exe',
    });
    expect([...helperNics(r!).keys()]).toEqual(['Intel[R] Ethernet Connection [7] I219-LM']);
  });

  it('matches teaching sites case-insensitively, by the name configured, and nothing else', () => {
    const m = teachingSiteMatcher([{ name: '省平台', match: ['ZJER.cn'] }, ...DEFAULT_TEACHING_SITES]);
    expect(m('之江汇教育广场 zjer.CN - Google Chrome')).toBe('省平台');
    expect(m('智慧中小学 - 360安全浏览器')).toBe('国家中小学智慧教育平台');
    expect(m('百度一下，你就知道 - Google Chrome')).toBeUndefined();
    expect(m(undefined)).toBeUndefined();
    expect(m('')).toBeUndefined();
  });
});

describe('the script passed to powershell.exe', () => {
  it('is the script, UTF-16LE in base64 as -EncodedCommand wants, within the Windows command-line limit', () => {
    const args = helperArgs();
    expect(args.slice(0, 4)).toEqual(['-NoLogo', '-NoProfile', '-NonInteractive', '-EncodedCommand']);
    expect(Buffer.from(args[4]!, 'base64').toString('utf16le')).toBe(WINDOWS_HELPER_SCRIPT);
    // CreateProcess: 32 767 characters for the whole command line, the executable's path included.
    expect(`"${defaultPowershell({})}" ${args.join(' ')}`.length).toBeLessThan(32_000);
    expect(defaultPowershell({ SystemRoot: 'D:\\WINDOWS' })).toBe(
      'D:\\WINDOWS\\System32\\WindowsPowerShell\\v1.0\\powershell.exe',
    );
  });

  it('uses only what Windows ships and keeps to the protocol the agent parses', () => {
    const s = WINDOWS_HELPER_SCRIPT;
    for (const api of [
      'GetLastInputInfo',
      'GetForegroundWindow',
      'GetWindowThreadProcessId',
      'GetWindowTextW',
      'QueryFullProcessImageNameW',
      'SystemParametersInfoW(0x0072', // SPI_GETSCREENSAVERRUNNING
      'OpenInputDesktop',
      'WTSGetActiveConsoleSessionId',
      '6fe69556-704a-47a0-8f24-c28d936fda47', // GUID_CONSOLE_DISPLAY_STATE
      'Get-NetAdapterStatistics',
      'Win32_PerfRawData_Tcpip_NetworkInterface',
    ]) {
      expect(s).toContain(api);
    }
    expect(s).toContain("hello = 'cfm-windows-helper'; v = 1");
    expect(s).toContain("'^read (\\d{1,15})$'");
    // No module, download or file beyond what ships with Windows PowerShell 5.1.
    expect(s).not.toMatch(/Install-Module|Invoke-WebRequest|DownloadString|Import-Module/);
  });

  it('has C# that compiles as C# 5, as Add-Type compiles it (mono-mcs standing in for the .NET Framework csc)', () => {
    if (!which('mcs')) {
      throw new Error(
        'this test needs mcs: run bash deploy/install-deps.sh --tests (Debian packages: mono-mcs libmono-system-windows-forms4.0-cil)',
      );
    }
    const blocks = [...WINDOWS_HELPER_SCRIPT.matchAll(/@'\n([\s\S]*?)\n'@/g)].map((m) => m[1]!);
    expect(blocks).toHaveLength(2); // the P/Invoke class, and the display-state watcher (Windows Forms)
    for (const [i, code] of blocks.entries()) {
      const file = join(tmp, `block-${i}.cs`);
      writeFileSync(file, code);
      const refs = code.includes('System.Windows.Forms') ? ['-r:System.Windows.Forms.dll'] : [];
      // Throws with the compiler's errors when it does not compile.
      execFileSync('mcs', ['-langversion:5', '-target:library', `-out:${file}.dll`, ...refs, file], {
        stdio: 'pipe',
      });
    }
  });
});

const helpers: WindowsHelper[] = [];
afterEach(async () => {
  for (const h of helpers.splice(0)) await h.stop(500);
});
let n = 0;

type Step = { replay?: true; raw?: string; bytes?: number; exit?: number; silent?: true; delayMs?: number };
type Plan = {
  hello?: string | null;
  exitAtStart?: number;
  stderr?: string;
  ignoreEnd?: boolean;
  steps?: Step[];
};

/** A WindowsHelper running the fake powershell.exe over `fixture`, following `starts` (one plan per start). */
function helper(
  fixture: string,
  starts: Plan[] = [{}],
  over: { timeoutMs?: number; startTimeoutMs?: number; maxLineBytes?: number } = {},
) {
  n++;
  const plan = join(tmp, `plan-${n}.json`);
  const starts_ = join(tmp, `starts-${n}.log`);
  const script = join(tmp, `script-${n}.ps1`);
  writeFileSync(plan, JSON.stringify({ starts }));
  writeFileSync(starts_, '');
  const cap = captureLogger('windows-helper');
  const h = new WindowsHelper({
    transport: helperProcess({
      command: FAKE,
      env: {
        ...process.env,
        FAKE_PS_FIXTURE: join(FIXTURES, fixture),
        FAKE_PS_PLAN: plan,
        FAKE_PS_LOG: starts_,
        FAKE_PS_SCRIPT: script,
      },
    }),
    timeoutMs: over.timeoutMs ?? 2_000,
    startTimeoutMs: over.startTimeoutMs ?? 10_000,
    restartMinMs: 50,
    restartMaxMs: 200,
    ...(over.maxLineBytes ? { maxLineBytes: over.maxLineBytes } : {}),
    log: cap.log,
  });
  helpers.push(h);
  const pids = () =>
    readFileSync(starts_, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => Number(l.split(' ')[1]));
  return { h, pids, script, logs: cap.lines };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('the helper process and its protocol', () => {
  it('starts one process that answers every reading, gets the script as -EncodedCommand, and is gone after stop', async () => {
    const { h, pids, script } = helper('ops-classroom.jsonl');
    h.start();
    await waitFor(() => h.ready !== undefined, { what: 'hello' });
    expect(h.ready).toMatchObject({ hello: 'cfm-windows-helper', v: 1, displayWatch: 'ok' });
    const answers = [];
    for (let i = 0; i < 10; i++) answers.push(await h.read());
    expect(answers.map((a) => windowsActivity(a, match).activity.foreground)).toEqual([
      'EasiNote.exe',
      'POWERPNT.EXE',
      'chrome.exe',
      'msedge.exe',
      undefined,
      'Mystify.scr',
      'explorer.exe',
      undefined,
      'EasiNote.exe',
      'POWERPNT.EXE',
    ]);
    expect(pids()).toHaveLength(1); // one process for all readings, not one per reading
    expect(readFileSync(script, 'utf8')).toBe(WINDOWS_HELPER_SCRIPT);
    const pid = pids()[0]!;
    await h.stop();
    expect(alive(pid)).toBe(false);
    expect(h.stats()).toMatchObject({ starts: 1, exits: 1, readings: 10, timeouts: 0, badLines: {} });
    await expect(h.read()).rejects.toThrow('windows helper is not running');
  });

  it('restarts a helper that dies, with back-off, and reads again', async () => {
    const { h, pids, logs } = helper('ops-classroom.jsonl', [
      { stderr: 'Add-Type : Cannot add type. Compilation errors occurred.', exitAtStart: 1 },
      { steps: [{ replay: true }, { exit: 3 }] },
      {},
    ]);
    h.start();
    await waitFor(() => h.ready !== undefined && pids().length >= 2, { what: 'second start ready' });
    await h.read();
    await expect(h.read()).rejects.toThrow(/windows helper exited with code 3/);
    await waitFor(() => h.ready !== undefined && pids().length === 3, { what: 'third start ready' });
    expect((await h.read()).id).toBeGreaterThan(0);
    expect(h.stats()).toMatchObject({ starts: 3, exits: 2, readings: 2 });
    expect(
      pids()
        .slice(0, 2)
        .every((p) => !alive(p)),
    ).toBe(true);
    // Why it died, with what it wrote on stderr, is in the log.
    expect(logs.some((l) => JSON.stringify(l).includes('Compilation errors occurred'))).toBe(true);
  });

  it('drops the late answer of a timed-out request; restarts a helper that stops answering', async () => {
    const { h, pids } = helper(
      'ops-classroom.jsonl',
      [
        { steps: [{ replay: true }, { delayMs: 600 }, { replay: true }, { silent: true }, { silent: true }] },
        {},
      ],
      { timeoutMs: 300 },
    );
    h.start();
    await waitFor(() => h.ready !== undefined, { what: 'hello' });
    expect((await h.read()).id).toBe(1);
    await expect(h.read()).rejects.toThrow('no answer within 300 ms');
    await waitFor(() => h.stats().late === 1, { what: 'the late answer, dropped' });
    // The next reading gets its own answer, not the late one.
    expect((await h.read()).id).toBe(3);
    await expect(h.read()).rejects.toThrow('no answer within 300 ms');
    await expect(h.read()).rejects.toThrow('no answer within 300 ms');
    await waitFor(() => h.ready !== undefined && pids().length === 2, {
      what: 'restarted after two timeouts',
    });
    expect(alive(pids()[0]!)).toBe(false);
    await h.read();
    expect(h.stats()).toMatchObject({ timeouts: 3, starts: 2, late: 1, badLines: {} });
  });

  it.each([
    ['garbled', { raw: '\u001b[31mAdd-Type : garbled\u0000' }, 'not_json', /not JSON/],
    ['a wrong shape', { raw: '{"id":1,"tick":-5}' }, 'invalid', /tick/],
    [
      'an executable path in a counter',
      { raw: '{"id":1,"nics":[{"name":"e","rx":"C:\\\\x","tx":"1"}]}' },
      'invalid',
      /nics/,
    ],
    ['an answer to another request', { raw: '{"id":999999}' }, 'unexpected', /no request/],
    ['an oversized line', { bytes: 300_000 }, 'too_long', /longer than/],
  ] as const)(
    'refuses %s: a clear error and a counter, and goes on',
    async (_what, step, reason, message) => {
      const { h, pids } = helper('ops-classroom.jsonl', [{ steps: [step, { replay: true }] }], {
        maxLineBytes: 64 * 1024,
      });
      h.start();
      await waitFor(() => h.ready !== undefined, { what: 'hello' });
      await expect(h.read()).rejects.toThrow(message);
      expect(h.stats().badLines).toEqual({ [reason]: 1 });
      // The same process answers the next reading.
      expect(windowsActivity(await h.read(), match).activity.foreground).toBe('EasiNote.exe');
      expect(pids()).toHaveLength(1);
    },
  );

  it('kills what does not speak the protocol from its first line, and what never says hello', async () => {
    const notHelper = helper('ops-classroom.jsonl', [
      { hello: 'Windows PowerShell 版权所有 (C) Microsoft Corporation。' },
      {},
    ]);
    notHelper.h.start();
    await waitFor(() => notHelper.h.ready !== undefined, { what: 'the second start says hello' });
    expect(notHelper.h.stats().badLines).toEqual({ not_json: 1 });
    expect(alive(notHelper.pids()[0]!)).toBe(false);

    const silent = helper('ops-classroom.jsonl', [{ hello: null }, {}], { startTimeoutMs: 300 });
    silent.h.start();
    await expect(silent.h.read()).rejects.toThrow('windows helper is starting');
    await waitFor(() => silent.h.ready !== undefined, { what: 'restarted after no hello' });
    expect(silent.pids()).toHaveLength(2);
  });

  it('backs off restarting an executable that is not there, and says so', async () => {
    const cap = captureLogger('windows-helper');
    const h = new WindowsHelper({
      transport: helperProcess({ command: join(tmp, 'no-such-powershell.exe') }),
      timeoutMs: 1_000,
      startTimeoutMs: 1_000,
      restartMinMs: 20,
      restartMaxMs: 80,
      log: cap.log,
    });
    helpers.push(h);
    h.start();
    await waitFor(() => h.stats().starts >= 4, { what: 'four attempts' });
    expect(h.ready).toBeUndefined();
    expect(cap.lines.some((l) => JSON.stringify(l).includes('no-such-powershell.exe not found'))).toBe(true);
    await h.stop();
    const after = h.stats().starts;
    // Stopped: no more attempts (wait for a condition that would be false had it kept going: two back-offs).
    const t0 = Date.now();
    await waitFor(() => Date.now() - t0 >= 200, { what: 'two back-offs' });
    expect(h.stats().starts).toBe(after);
  });

  it('kills a helper that ignores the end of its input when stopped', async () => {
    const { h, pids } = helper('ops-classroom.jsonl', [{ ignoreEnd: true }]);
    h.start();
    await waitFor(() => h.ready !== undefined, { what: 'hello' });
    const pid = pids()[0]!;
    await h.stop(300);
    expect(alive(pid)).toBe(false);
  });
});
