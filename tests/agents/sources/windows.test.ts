import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
import {
  helperArgs,
  SESSION_HELPER_SCRIPT,
  WINDOWS_HELPER_SCRIPT,
} from '../../../agents/sources/activity/windows-script.js';
import { localActivity, WindowsSessionActivity } from '../../../agents/sources/activity/windows-session.js';
import { activitySchema } from '../../../contracts/messages.js';
import { waitFor } from '../../../dev/ports.js';
import { captureLogger } from '../../helpers/influx.js';
import { powershell7Operators, powershellSyntaxErrors } from '../../helpers/powershell.js';
import { alive } from '../../helpers/process.js';
import {
  type FakeSessionHelper,
  fakeSessionHelper,
  SESSION_HELPER_ACTIVITY,
} from '../../helpers/session-pipe.js';
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

  it('as the only source, a helper outside the console session says nobody is there only when nobody is logged on', () => {
    const [loggedOn, switching] = recorded('service-session0.jsonl');
    const [nobody] = recorded('service-nobody.jsonl');
    const [inSession] = recorded('ops-classroom.jsonl');
    // Nobody logged on at the console: evidence that nobody uses the computer (not in use, when on).
    expect(localActivity(nobody, undefined, match)).toEqual({ source: 'windows', loggedOn: false });
    // A user logged on whose input this helper cannot see: no activity at all, rather than an invented absence.
    expect(() => localActivity(loggedOn, undefined, match)).toThrow(
      /outside the console session \(session 0, console 1\) and a user is logged on there/,
    );
    expect(() => localActivity(switching, undefined, match)).toThrow(
      /cannot tell whether anyone is logged on/,
    );
    expect(localActivity(inSession, undefined, match)).toMatchObject({
      foreground: 'EasiNote.exe',
      idleS: 3,
    });
    const failed = new Error('windows helper: no answer within 5000 ms');
    expect(() => localActivity(undefined, failed, match)).toThrow(failed);
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
      'WTSQuerySessionInformationW',
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

  it('parses as Windows PowerShell 5.1 in both modes, the session helper as ASCII with its pipe secured', async () => {
    for (const script of [WINDOWS_HELPER_SCRIPT, SESSION_HELPER_SCRIPT]) {
      expect(await powershellSyntaxErrors(script)).toEqual([]);
      expect(await powershell7Operators(script)).toEqual([]);
    }
    // The check finds a broken script.
    expect(
      await powershellSyntaxErrors(SESSION_HELPER_SCRIPT.replace('while ($true) {', 'while ($true ')),
    ).not.toEqual([]);
    // One core: the stdio helper is the core and its last line, the session helper the core in pipe mode.
    const core = WINDOWS_HELPER_SCRIPT.slice(0, WINDOWS_HELPER_SCRIPT.lastIndexOf('Invoke-Helper ('));
    expect(SESSION_HELPER_SCRIPT).toContain(core);
    expect(WINDOWS_HELPER_SCRIPT).not.toContain('NamedPipeServerStream');
    // A file Windows PowerShell reads the same in any code page.
    expect([...SESSION_HELPER_SCRIPT].filter((c) => !/[\t\n\r -~]/.test(c))).toEqual([]);
    expect(SESSION_HELPER_SCRIPT.split('\n')[0]).toBe("param([string]$PipeBase = 'cfm-activity')");
    const s = SESSION_HELPER_SCRIPT;
    // The pipe: its session's name, one instance, its security: the user; LocalService and SYSTEM read, write
    // (and create-instance, which GENERIC_WRITE asks for on a pipe); network logons denied.
    expect(s).toContain(
      "$pipeName = $PipeBase + '-' + [System.Diagnostics.Process]::GetCurrentProcess().SessionId",
    );
    expect(s).toMatch(
      /NamedPipeServerStream\(\$pipeName, \[System\.IO\.Pipes\.PipeDirection\]::InOut, 1,[^\n]*\$security\)/,
    );
    expect(s).toContain("foreach ($sid in 'S-1-5-19', 'S-1-5-18')");
    expect(s).toContain("[System.IO.Pipes.PipeAccessRights]'ReadWrite, CreateNewInstance, Synchronize'");
    expect(s).toMatch(
      /S-1-5-2'\)\n[^\n]*FullControl, \[System\.Security\.AccessControl\.AccessControlType\]::Deny/,
    );
    // No NIC counters from the user's session: the service's own helper reads them.
    expect(s).toContain('(New-Object System.IO.StreamWriter($pipe, $utf8)) $false');
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

type Step = {
  replay?: true;
  raw?: string;
  bytes?: number;
  exit?: number;
  silent?: true;
  delayMs?: number;
  flood?: number;
  drop?: true;
};
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

    // The start deadline also bounds the second start's hello: long enough for a node process to start on a
    // loaded machine (300 ms was not, in CI), so only the silent first start is killed.
    const silent = helper('ops-classroom.jsonl', [{ hello: null }, {}], { startTimeoutMs: 3_000 });
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

// ---------------------------------------------------------------------------------------------------------
// The session helper (README.md, "Sessions"): the same protocol over a named pipe, served in the user's session
// by the scheduled task. Here the pipe is a Unix socket served by fake-powershell.mjs in its server mode; the
// agent's side — WindowsSessionActivity over WindowsHelper over a socket — is the code that runs on Windows.

/** The agent's own helper's answers: a user logged on at the console (session 1), nobody, and cannot tell. */
const [loggedOn, switching] = recorded('service-session0.jsonl');
const [nobody] = recorded('service-nobody.jsonl');

const servers: FakeSessionHelper[] = [];
const sessions: WindowsSessionActivity[] = [];
afterEach(async () => {
  for (const s of sessions.splice(0)) await s.stop();
  for (const p of servers.splice(0)) await p.stop();
});

/** A directory for one test's pipes and files (the socket path must stay short: 108 bytes). */
function pipeDir(): string {
  n++;
  return mkdtempSync(join(tmp, `p${n}-`));
}

/** A fake session helper serving `<dir>/cfm-activity-<session>`, replaying `fixture`, a plan per connection. */
async function pipeServer(dir: string, session: number, fixture: string, connections: Plan[] = [{}]) {
  const server = await fakeSessionHelper(dir, session, fixture, connections);
  servers.push(server);
  return server;
}

function session(dir: string, over: { timeoutMs?: number; maxLineBytes?: number } = {}) {
  const cap = captureLogger('session');
  const s = new WindowsSessionActivity({
    pipe: join(dir, 'cfm-activity'),
    timeoutMs: over.timeoutMs ?? 1_000,
    restartMinMs: 50,
    restartMaxMs: 200,
    ...(over.maxLineBytes ? { maxLineBytes: over.maxLineBytes } : {}),
    match,
    log: cap.log,
  });
  sessions.push(s);
  return { s, logs: cap.lines };
}

describe('the session helper over its pipe', () => {
  it("reads the console user's activity over one connection, kept between readings; stop closes it", async () => {
    const dir = pipeDir();
    const server = await pipeServer(dir, 1, 'session-helper.jsonl');
    const { s } = session(dir);
    const got = [];
    for (let i = 0; i < 4; i++) got.push(await s.read(loggedOn));
    expect(got).toEqual([...SESSION_HELPER_ACTIVITY, SESSION_HELPER_ACTIVITY[0]]);
    expect(JSON.stringify(got)).not.toContain('王老师');
    // While its own helper cannot tell the console (a session switch), the last console's pipe is read.
    expect((await s.read(switching)).foreground).toBe('chrome.exe');
    expect(server.connects()).toBe(1);
    expect(s.stats()).toMatchObject({ starts: 1, exits: 0, readings: 5, timeouts: 0, badLines: {}, late: 0 });
    // The user logs off (here the helper stays, as a squatter might): nobody there, and the pipe is let go.
    expect(await s.read(nobody)).toEqual({ source: 'windows', loggedOn: false });
    await waitFor(() => server.events().includes('close 0'), { what: 'the connection let go' });
    expect(s.stats().exits).toBe(1);
    // Someone logs on: connected again, at once.
    expect((await s.read(loggedOn)).foreground).toBe('EasiNote.exe');
    expect(server.connects()).toBe(2);
    await s.stop();
    await waitFor(() => server.events().includes('close 1'), { what: 'the connection closed on stop' });
    expect(s.stats()).toMatchObject({ starts: 2, exits: 2 });
  });

  it('without a session helper: nobody logged on is nobody there; a user logged on is a failure, never an invented absence', async () => {
    const dir = pipeDir();
    const { s } = session(dir);
    // Nobody at the console: no connection is even tried.
    expect(await s.read(nobody)).toEqual({ source: 'windows', loggedOn: false });
    expect(s.stats().starts).toBe(0);
    // Nothing known about the console yet (its own helper failed): nothing to ask.
    await expect(s.read(undefined)).rejects.toThrow('the console session is not known yet');
    // Someone is logged on, but no pipe: a failure (the agent counts it; the reading goes without activity).
    await expect(s.read(loggedOn)).rejects.toThrow(/session helper is not running|no such pipe/);
    expect(s.stats().starts).toBe(1);
    // Its own helper fails later: the last console known is asked, and fails the same way.
    await expect(s.read(undefined)).rejects.toThrow(/session helper/);
  });

  it('reconnects with back-off when the session helper goes away mid-reading, and reads again when it is back', async () => {
    const dir = pipeDir();
    await pipeServer(dir, 1, 'session-helper.jsonl', [{ steps: [{ replay: true }, { exit: 1 }] }]);
    const { s, logs } = session(dir);
    expect((await s.read(loggedOn)).foreground).toBe('EasiNote.exe');
    await expect(s.read(loggedOn)).rejects.toThrow('session helper closed by the session helper');
    // Gone: it tries again at 50, 100, 200, 200… ms (restartMinMs doubling to restartMaxMs), each failing.
    await waitFor(() => s.stats().starts >= 5, { what: 'four attempts to reconnect' });
    const stopped = logs.filter((l) => l.msg === 'session helper stopped; connecting again');
    expect(stopped.slice(0, 4).map((l) => l.restartInMs)).toEqual([50, 100, 200, 200]);
    // Warned once per reason; the attempts after it only as debug.
    expect(stopped.slice(0, 3).map((l) => l.level)).toEqual([40, 40, 20]);
    await expect(s.read(loggedOn)).rejects.toThrow(/session helper/);
    // Back (the user logged on again): the next attempt connects, and the reading is the user's.
    const again = await pipeServer(dir, 1, 'session-helper.jsonl');
    await waitFor(() => s.connection.ready !== undefined, { what: 'connected again' });
    expect((await s.read(loggedOn)).foreground).toBe('EasiNote.exe');
    expect(again.connects()).toBe(1);
  });

  it('follows the console to another session: fast user switching', async () => {
    const dir = pipeDir();
    const first = await pipeServer(dir, 1, 'session-helper.jsonl');
    // The second user's session 2 (tick-wrap.jsonl: session 2, console 2, WPS 演示).
    const second = await pipeServer(dir, 2, 'tick-wrap.jsonl');
    const { s } = session(dir);
    expect((await s.read(loggedOn)).foreground).toBe('EasiNote.exe');
    const console2 = { ...loggedOn!, console: 2 };
    expect((await s.read(console2)).foreground).toBe('wpp.exe');
    await waitFor(() => first.events().includes('close 0'), { what: 'the first session left' });
    expect(second.connects()).toBe(1);
    expect(s.connection.stats().exits).toBe(1);
  });

  it('refuses a helper that answers from another session than the console (an RDP user, or a squatter)', async () => {
    const dir = pipeDir();
    // It serves the console's name, but says it is session 2 (the RDP user), console 1.
    await pipeServer(dir, 1, 'rdp-session.jsonl');
    const { s } = session(dir);
    await expect(s.read(loggedOn)).rejects.toThrow(/answers from session 2, not the console's \(1\)/);
  });

  it.each([
    ['garbage', { raw: '\u001b[31mgarbage\u0000' }, 'not_json'],
    ['an oversized line', { bytes: 300_000 }, 'too_long'],
    ['an answer to no request', { raw: '{"id":0}' }, 'unexpected'],
  ] as const)(
    'a hostile server sending %s: a counter, a reading without activity, and the next reading',
    async (_what, step, reason) => {
      const dir = pipeDir();
      await pipeServer(dir, 1, 'session-helper.jsonl', [{ steps: [step, { replay: true }] }]);
      const { s } = session(dir, { maxLineBytes: 64 * 1024 });
      await expect(s.read(loggedOn)).rejects.toThrow(reason);
      expect(s.stats().badLines).toEqual({ [reason]: 1 });
      expect((await s.read(loggedOn)).foreground).toBe('EasiNote.exe');
    },
  );

  it('a squatter: not the hello, a flood of lines, or nothing at all — each counted and dropped, never read', async () => {
    const dir = pipeDir();
    const squatter = await pipeServer(dir, 1, 'session-helper.jsonl', [
      { hello: 'HTTP/1.1 200 OK' },
      { steps: [{ flood: 40 }] },
      { hello: null },
      {},
    ]);
    const { s, logs } = session(dir, { timeoutMs: 300 });
    // Not the hello: dropped before any request is sent.
    await expect(s.read(loggedOn)).rejects.toThrow(/session helper/);
    expect(s.stats().badLines.not_json).toBe(1);
    // Then the hello and a flood of answers to no request: dropped after 16 of them.
    await waitFor(() => s.connection.ready !== undefined, { what: 'the second connection' });
    await expect(s.read(loggedOn)).rejects.toThrow('an answer to no request (id 0)');
    await waitFor(() => squatter.events().includes('close 1'), {
      what: `the flooding connection dropped (${squatter.events()})`,
    });
    expect(s.stats().badLines.unexpected).toBe(16);
    expect(logs.some((l) => String(l.msg).includes('16 refused lines in a row'))).toBe(true);
    // Then one that says nothing: dropped when no hello comes within timeoutMs.
    await waitFor(() => squatter.connects() >= 3, { what: 'the third connection' });
    await waitFor(() => squatter.events().includes('close 2'), { what: 'the silent connection dropped' });
    // And a real one: read.
    await waitFor(() => s.connection.ready !== undefined, { what: 'the fourth connection' });
    expect((await s.read(loggedOn)).foreground).toBe('EasiNote.exe');
    expect(s.stats()).toMatchObject({ readings: 1 });
  });

  it('drops the late answer of a timed-out request; drops a helper that stops answering', async () => {
    const dir = pipeDir();
    const server = await pipeServer(dir, 1, 'session-helper.jsonl', [
      { steps: [{ delayMs: 500 }, { replay: true }, { silent: true }] },
      {},
    ]);
    const { s } = session(dir, { timeoutMs: 300 });
    await expect(s.read(loggedOn)).rejects.toThrow('no answer within 300 ms');
    await waitFor(() => s.stats().late === 1, { what: 'the late answer, dropped' });
    expect((await s.read(loggedOn)).foreground).toBe('chrome.exe');
    await expect(s.read(loggedOn)).rejects.toThrow('no answer within 300 ms');
    await expect(s.read(loggedOn)).rejects.toThrow('no answer within 300 ms');
    await waitFor(() => server.events().includes('close 0'), { what: 'the hung connection dropped' });
    await waitFor(() => s.connection.ready !== undefined, { what: 'connected again' });
    expect((await s.read(loggedOn)).idleS).toBeGreaterThanOrEqual(0);
    expect(existsSync(join(dir, 'cfm-activity-1'))).toBe(true);
  });
});
