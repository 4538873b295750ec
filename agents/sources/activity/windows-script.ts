/**
 * The Windows helper: one long-lived `powershell.exe` (Windows PowerShell 5.1, which every Windows the agent's
 * Node 20 runs on ships — Windows 10/11, Server 2016+), started once by windows.ts, that answers a line
 * protocol on stdin/stdout (agents/sources/activity/README.md):
 *
 *   helper → `{"hello":"cfm-windows-helper","v":1,…}`      once, when its types are compiled
 *   agent  → `read <id>`                                   one line per reading
 *   helper → `{"id":<id>,"tick":…,"lastInput":…,…}`        one JSON line per request
 *
 * It reports raw facts only; the agent's Node code (windows.ts) turns them into `activity` and NIC counters,
 * so that logic is the same on Windows and in the tests on Linux. What it reads, all shipped with Windows:
 * - user32 GetLastInputInfo (the tick of the session's last keyboard, mouse, pen or touch input) and kernel32
 *   GetTickCount — read in that order, so the tick is never before the input;
 * - user32 GetForegroundWindow → GetWindowThreadProcessId → kernel32 QueryFullProcessImageNameW (with
 *   PROCESS_QUERY_LIMITED_INFORMATION, which opens elevated processes too; Get-Process's name as the fallback),
 *   and GetWindowTextW, whose title the agent matches against the teaching sites and never sends;
 * - user32 SystemParametersInfoW(SPI_GETSCREENSAVERRUNNING) and OpenInputDesktop's name (`Default` unless the
 *   session is locked or on the secure desktop);
 * - the console display state (GUID_CONSOLE_DISPLAY_STATE: 0 off, 1 on, 2 dimmed), which Windows sends only as
 *   a notification: a hidden window on a background thread registers for it (RegisterPowerSettingNotification)
 *   and keeps the last value — Windows sends the current one at registration;
 * - kernel32 ProcessIdToSessionId and WTSGetActiveConsoleSessionId: input and windows are per session, so the
 *   agent trusts them only when the helper runs in the console's session (not as a session-0 service); and
 *   wtsapi32 WTSQuerySessionInformationW(WTS_CURRENT_SERVER_HANDLE, console session, WTSUserName): whether a
 *   user is logged on at the console (`consoleUser`; the name itself is not sent);
 * - NIC byte counters: Get-NetAdapterStatistics (64-bit ReceivedBytes/SentBytes), else the raw performance
 *   counters of CIM Win32_PerfRawData_Tcpip_NetworkInterface.
 *
 * C# 5 only: Add-Type compiles with the .NET Framework's csc.
 *
 * Two modes, one core (the types and `Read-Helper`, `Invoke-Helper`):
 * - `WINDOWS_HELPER_SCRIPT`: the protocol on stdin/stdout, for the agent that starts it. Passed as
 *   -EncodedCommand (UTF-16LE, base64), which execution policy does not apply to (it governs script files), so a
 *   fleet whose group policy sets `AllSigned` still runs it; the command line must stay under Windows' 32 767
 *   characters (a test checks).
 * - `SESSION_HELPER_SCRIPT`: the session helper, started in the user's session by a scheduled task at log-on
 *   (README.md, "Sessions"): a named-pipe server, `\\.\pipe\<PipeBase>-<its session id>`, that answers the
 *   same protocol to one client at a time, without NIC counters.
 */
const CORE = String.raw`$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Add-Type -TypeDefinition @'
using System;
using System.Text;
using System.Runtime.InteropServices;
public static class CfmWin {
  [StructLayout(LayoutKind.Sequential)] struct LASTINPUTINFO { public uint cbSize; public uint dwTime; }
  [DllImport("user32.dll")] static extern bool GetLastInputInfo(ref LASTINPUTINFO plii);
  [DllImport("kernel32.dll")] public static extern uint GetTickCount();
  [DllImport("user32.dll")] public static extern IntPtr GetForegroundWindow();
  [DllImport("user32.dll")] static extern uint GetWindowThreadProcessId(IntPtr hWnd, out uint pid);
  [DllImport("user32.dll", CharSet = CharSet.Unicode)] static extern int GetWindowTextW(IntPtr hWnd, StringBuilder s, int n);
  [DllImport("user32.dll")] static extern bool SystemParametersInfoW(uint action, uint param, ref int result, uint winIni);
  [DllImport("kernel32.dll")] static extern uint WTSGetActiveConsoleSessionId();
  [DllImport("kernel32.dll")] static extern bool ProcessIdToSessionId(uint pid, out uint session);
  [DllImport("kernel32.dll")] static extern uint GetCurrentProcessId();
  [DllImport("kernel32.dll")] static extern IntPtr OpenProcess(uint access, bool inherit, uint pid);
  [DllImport("kernel32.dll", CharSet = CharSet.Unicode)] static extern bool QueryFullProcessImageNameW(IntPtr h, uint flags, StringBuilder name, ref uint size);
  [DllImport("kernel32.dll")] static extern bool CloseHandle(IntPtr h);
  [DllImport("user32.dll")] static extern IntPtr OpenInputDesktop(uint flags, bool inherit, uint access);
  [DllImport("user32.dll", CharSet = CharSet.Unicode)] static extern bool GetUserObjectInformationW(IntPtr h, int index, StringBuilder info, uint length, out uint needed);
  [DllImport("user32.dll")] static extern bool CloseDesktop(IntPtr h);
  [DllImport("wtsapi32.dll", CharSet = CharSet.Unicode)] static extern bool WTSQuerySessionInformationW(IntPtr server, uint session, int infoClass, out IntPtr buffer, out uint bytes);
  [DllImport("wtsapi32.dll")] static extern void WTSFreeMemory(IntPtr memory);
  public static long LastInput() {
    LASTINPUTINFO i = new LASTINPUTINFO();
    i.cbSize = (uint)Marshal.SizeOf(typeof(LASTINPUTINFO));
    return GetLastInputInfo(ref i) ? (long)i.dwTime : -1;
  }
  public static long Session() { uint s; return ProcessIdToSessionId(GetCurrentProcessId(), out s) ? (long)s : -1; }
  public static long ConsoleSession() { uint s = WTSGetActiveConsoleSessionId(); return s == 0xFFFFFFFF ? -1 : (long)s; }
  // 1: a user is logged on at the console session (WTSUserName = 5 is not empty), 0: nobody, -1: cannot tell.
  public static int ConsoleUser() {
    uint s = WTSGetActiveConsoleSessionId();
    if (s == 0xFFFFFFFF) return -1;
    IntPtr b; uint n;
    if (!WTSQuerySessionInformationW(IntPtr.Zero, s, 5, out b, out n)) return -1;
    try { return string.IsNullOrEmpty(Marshal.PtrToStringUni(b)) ? 0 : 1; }
    finally { WTSFreeMemory(b); }
  }
  public static uint WindowPid(IntPtr w) { uint p; GetWindowThreadProcessId(w, out p); return p; }
  public static string Title(IntPtr w) { StringBuilder b = new StringBuilder(512); GetWindowTextW(w, b, b.Capacity); return b.ToString(); }
  public static string ImagePath(uint p) {
    IntPtr h = OpenProcess(0x1000, false, p);
    if (h == IntPtr.Zero) return null;
    try { StringBuilder b = new StringBuilder(1024); uint n = (uint)b.Capacity; return QueryFullProcessImageNameW(h, 0, b, ref n) ? b.ToString() : null; }
    finally { CloseHandle(h); }
  }
  public static int SaverRunning() { int r = 0; return SystemParametersInfoW(0x0072, 0, ref r, 0) ? (r != 0 ? 1 : 0) : -1; }
  public static string InputDesktop() {
    IntPtr d = OpenInputDesktop(0, false, 0x0001);
    if (d == IntPtr.Zero) return null;
    try { StringBuilder b = new StringBuilder(256); uint needed; return GetUserObjectInformationW(d, 2, b, (uint)(b.Capacity * 2), out needed) ? b.ToString() : null; }
    finally { CloseDesktop(d); }
  }
}
'@
$watch = 'ok'
try {
  Add-Type -ReferencedAssemblies System.Windows.Forms -TypeDefinition @'
using System;
using System.Threading;
using System.Windows.Forms;
using System.Runtime.InteropServices;
public class CfmDisplayWatch : NativeWindow {
  public static volatile int State = -1;
  static Guid ConsoleDisplayState = new Guid("6fe69556-704a-47a0-8f24-c28d936fda47");
  [StructLayout(LayoutKind.Sequential)] struct POWERBROADCAST_SETTING { public Guid PowerSetting; public uint DataLength; public int Data; }
  [DllImport("user32.dll")] static extern IntPtr RegisterPowerSettingNotification(IntPtr h, ref Guid g, int flags);
  protected override void WndProc(ref Message m) {
    if (m.Msg == 0x0218 && m.WParam.ToInt64() == 0x8013) {
      POWERBROADCAST_SETTING s = (POWERBROADCAST_SETTING)Marshal.PtrToStructure(m.LParam, typeof(POWERBROADCAST_SETTING));
      if (s.PowerSetting == ConsoleDisplayState) State = s.Data;
    }
    base.WndProc(ref m);
  }
  public static void Start() {
    Thread t = new Thread(delegate() {
      CfmDisplayWatch w = new CfmDisplayWatch();
      w.CreateHandle(new CreateParams());
      RegisterPowerSettingNotification(w.Handle, ref ConsoleDisplayState, 0);
      Application.Run();
    });
    t.IsBackground = true;
    t.SetApartmentState(ApartmentState.STA);
    t.Start();
  }
}
'@
  [CfmDisplayWatch]::Start()
} catch { $watch = $_.Exception.Message }
$utf8 = New-Object System.Text.UTF8Encoding($false)
function Send($writer, $o) { $writer.WriteLine((ConvertTo-Json -InputObject $o -Compress -Depth 4)); $writer.Flush() }
# One reading: what Windows says, raw; the agent derives the activity (windows.ts).
function Read-Helper([long]$id, [bool]$withNics) {
  $errs = New-Object System.Collections.Generic.List[string]
  $r = [ordered]@{ id = $id; tick = $null; lastInput = $null; session = $null; console = $null; consoleUser = $null; fg = $null; saver = $null; desktop = $null; display = $null; nics = $null; errors = $errs }
  try {
    $li = [CfmWin]::LastInput(); $r.tick = [CfmWin]::GetTickCount()
    if ($li -ge 0) { $r.lastInput = $li }
    $s = [CfmWin]::Session(); if ($s -ge 0) { $r.session = $s }
    $c = [CfmWin]::ConsoleSession(); if ($c -ge 0) { $r.console = $c }
    $u = [CfmWin]::ConsoleUser(); if ($u -ge 0) { $r.consoleUser = ($u -eq 1) }
  } catch { $errs.Add('input: ' + $_.Exception.Message) }
  try {
    $w = [CfmWin]::GetForegroundWindow()
    if ($w -ne [IntPtr]::Zero) {
      $fp = [CfmWin]::WindowPid($w)
      $exe = [CfmWin]::ImagePath($fp)
      if (-not $exe) { try { $exe = (Get-Process -Id $fp).ProcessName + '.exe' } catch { $exe = $null } }
      $r.fg = [ordered]@{ pid = $fp; exe = $exe; title = [CfmWin]::Title($w) }
    }
  } catch { $errs.Add('foreground: ' + $_.Exception.Message) }
  try {
    $sv = [CfmWin]::SaverRunning(); if ($sv -ge 0) { $r.saver = ($sv -eq 1) }
    $r.desktop = [CfmWin]::InputDesktop()
    if ($watch -eq 'ok' -and [CfmDisplayWatch]::State -ge 0) { $r.display = [CfmDisplayWatch]::State }
  } catch { $errs.Add('screen: ' + $_.Exception.Message) }
  if ($withNics) {
    try {
      $r.nics = @(Get-NetAdapterStatistics | ForEach-Object { [ordered]@{ name = [string]$_.Name; rx = [string]$_.ReceivedBytes; tx = [string]$_.SentBytes } })
    } catch {
      $errs.Add('nics: ' + $_.Exception.Message)
      try {
        $r.nics = @(Get-CimInstance Win32_PerfRawData_Tcpip_NetworkInterface | ForEach-Object { [ordered]@{ name = [string]$_.Name; rx = [string]$_.BytesReceivedPersec; tx = [string]$_.BytesSentPersec } })
      } catch { $errs.Add('nics (perf counters): ' + $_.Exception.Message) }
    }
  }
  return $r
}
# One client: the hello, then one JSON line per request line until its input ends.
function Invoke-Helper($reader, $writer, [bool]$withNics) {
  $writer.NewLine = "${'`'}n"
  Send $writer ([ordered]@{ hello = 'cfm-windows-helper'; v = 1; ps = $PSVersionTable.PSVersion.ToString(); displayWatch = $watch })
  while ($null -ne ($line = $reader.ReadLine())) {
    if (-not ($line -match '^read (\d{1,15})$')) { Send $writer ([ordered]@{ id = $null; error = 'unknown request' }); continue }
    Send $writer (Read-Helper ([long]$Matches[1]) $withNics)
  }
}
`;

/** The helper the agent starts: the protocol on stdin and stdout, with the NIC counters. */
export const WINDOWS_HELPER_SCRIPT = `${CORE}Invoke-Helper (New-Object System.IO.StreamReader([Console]::OpenStandardInput(), $utf8)) (New-Object System.IO.StreamWriter([Console]::OpenStandardOutput(), $utf8)) $true
`;

/** The session helper's default pipe name: `\\.\pipe\cfm-activity-<session id>`. */
export const SESSION_PIPE_BASE = 'cfm-activity';

/**
 * The session helper (README.md, "Sessions"), as the file `cfm-session-helper.ps1` in the Windows package: a
 * named-pipe server in the user's session. The pipe's security (System.IO.Pipes.PipeSecurity): the user full
 * control; LocalService (S-1-5-19, the service) and SYSTEM (S-1-5-18) read and write — with
 * FILE_CREATE_PIPE_INSTANCE, because a client opening with GENERIC_WRITE (libuv, hence Node, opens with
 * GENERIC_READ | GENERIC_WRITE, and falls back to read-only when denied) asks for FILE_APPEND_DATA, which for a
 * pipe is the same bit ("Named Pipe Security and Access Rights", Win32 docs) — harmless with one instance;
 * network logons (S-1-5-2) denied. One instance, so one client at a time; after it disconnects, the next.
 * ASCII only: Windows PowerShell 5.1 reads a script file without a byte-order mark in the ANSI code page.
 */
export const SESSION_HELPER_SCRIPT = `param([string]$PipeBase = '${SESSION_PIPE_BASE}')
${CORE}if ($PipeBase -notmatch '^[A-Za-z0-9._-]{1,64}$') { throw "not a pipe name: $PipeBase" }
$pipeName = $PipeBase + '-' + [System.Diagnostics.Process]::GetCurrentProcess().SessionId
$security = New-Object System.IO.Pipes.PipeSecurity
$allow = [System.Security.AccessControl.AccessControlType]::Allow
$user = [System.Security.Principal.WindowsIdentity]::GetCurrent().User
$security.AddAccessRule((New-Object System.IO.Pipes.PipeAccessRule($user, [System.IO.Pipes.PipeAccessRights]::FullControl, $allow)))
foreach ($sid in 'S-1-5-19', 'S-1-5-18') {
  $account = New-Object System.Security.Principal.SecurityIdentifier($sid)
  $security.AddAccessRule((New-Object System.IO.Pipes.PipeAccessRule($account, [System.IO.Pipes.PipeAccessRights]'ReadWrite, CreateNewInstance, Synchronize', $allow)))
}
$network = New-Object System.Security.Principal.SecurityIdentifier('S-1-5-2')
$security.AddAccessRule((New-Object System.IO.Pipes.PipeAccessRule($network, [System.IO.Pipes.PipeAccessRights]::FullControl, [System.Security.AccessControl.AccessControlType]::Deny)))
while ($true) {
  $pipe = $null
  try {
    $pipe = New-Object System.IO.Pipes.NamedPipeServerStream($pipeName, [System.IO.Pipes.PipeDirection]::InOut, 1, [System.IO.Pipes.PipeTransmissionMode]::Byte, [System.IO.Pipes.PipeOptions]::None, 4096, 4096, $security)
    $pipe.WaitForConnection()
    Invoke-Helper (New-Object System.IO.StreamReader($pipe, $utf8)) (New-Object System.IO.StreamWriter($pipe, $utf8)) $false
  } catch {
    # The client went away mid-answer, or the name is taken: wait, then serve again.
    Start-Sleep -Seconds 2
  } finally {
    if ($null -ne $pipe) { $pipe.Dispose() }
  }
}
`;

/** Windows PowerShell's command line for the helper: no profile, no prompt, the script as -EncodedCommand. */
export function helperArgs(script = WINDOWS_HELPER_SCRIPT): string[] {
  return [
    '-NoLogo',
    '-NoProfile',
    '-NonInteractive',
    '-EncodedCommand',
    Buffer.from(script, 'utf16le').toString('base64'),
  ];
}
