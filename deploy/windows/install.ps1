<#
.SYNOPSIS
  Installs, updates or removes the CFM classroom agent as a Windows service (docs/deploy-windows-agent.md).

.DESCRIPTION
  Run from the unpacked package (cfm-agent.exe, cfm-agent-service.exe = WinSW, cfm-agent-service.xml), in an
  elevated Windows PowerShell 5.1 or later, or as SYSTEM from central control software, without prompts:

    powershell.exe -NoProfile -ExecutionPolicy Bypass -File install.ps1 -Config D:\cfm\%COMPUTERNAME%.yaml

  Install: checks the configuration with the new cfm-agent.exe (nothing changes if it is refused), copies the
  program to -InstallDir and the configuration to -DataDir\agent.yaml, restricts -DataDir to SYSTEM,
  Administrators and LocalService, registers the service "cfm-agent" and starts it. When the configuration sets
  agent.windowsHelper.sessionPipe, also registers the scheduled task "cfm-session-helper", which starts the
  session helper (cfm-session-helper.ps1) in the session of every user who logs on: the service reads the
  user's activity from it (agents/sources/activity/README.md, "Sessions"); without it, the task is removed.
  Update: the same command from a newer package, -Config optional (the installed configuration is kept and is
  checked with the new version before the running one is stopped).
  Remove: -Uninstall (with -KeepData the configuration and the spool stay); the task goes too.

  Exit codes: 0 done; 1 a step failed; 2 a wrong parameter or a configuration the agent refuses (its message
  follows); 3 not run as an administrator. Every run appends to -DataDir\install.log (never a secret).
#>
[CmdletBinding()]
param(
  # The agent's configuration (agent.yaml) to install; required for a first install.
  [string]$Config = '',
  # Where the program goes.
  [string]$InstallDir = (Join-Path $env:ProgramFiles 'cfm-agent'),
  # Configuration, spool and logs: a folder a restore card does not reset (D:\cfm-agent, a ThawSpace).
  [string]$DataDir = (Join-Path $env:ProgramData 'cfm-agent'),
  # Remove the service and the program.
  [switch]$Uninstall,
  # With -Uninstall: keep -DataDir (configuration and queued readings).
  [switch]$KeepData,
  # Install or update without starting the service.
  [switch]$NoStart
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$ServiceName = 'cfm-agent'
$TaskName = 'cfm-session-helper'
# Node's flags for the agent (agents/classroom/node-flags.ts), passed in NODE_OPTIONS.
$NodeFlags = '--max-old-space-size=64 --max-semi-space-size=1'
# Well-known SIDs, so the ACLs are the same on a Chinese-language Windows: SYSTEM, Administrators, LocalService.
$SidSystem = '*S-1-5-18'
$SidAdmins = '*S-1-5-32-544'
$SidLocalService = '*S-1-5-19'
# The Users group, whom the session helper's task runs for: every interactive user.
$SidUsers = 'S-1-5-32-545'
$Package = $PSScriptRoot
$script:LogFile = $null

function Write-Log([string]$Message) {
  $line = '{0} {1}' -f (Get-Date -Format 'yyyy-MM-ddTHH:mm:ssK'), $Message
  Write-Host $line
  if ($script:LogFile) {
    try { Add-Content -LiteralPath $script:LogFile -Value $line -Encoding UTF8 } catch { Write-Host "(install.log: $($_.Exception.Message))" }
  }
}

function Stop-Install([int]$Code, [string]$Message) {
  Write-Log "error: $Message"
  exit $Code
}

function Test-Administrator {
  $principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
  return $principal.IsInRole([Security.Principal.SecurityIdentifier]'S-1-5-32-544')
}

# A program's output and exit code. Windows PowerShell 5.1 turns a native program's stderr into errors, which
# 'Stop' would make fatal: its output is collected as text instead, and the exit code decides.
function Invoke-Native([string]$Exe, [string[]]$Arguments) {
  $previous = $ErrorActionPreference
  $ErrorActionPreference = 'Continue'
  try {
    $output = & $Exe @Arguments 2>&1 | ForEach-Object { $_.ToString() }
    return @{ Code = $LASTEXITCODE; Output = ($output -join ' ') }
  } finally {
    $ErrorActionPreference = $previous
  }
}

function Invoke-Icacls([string[]]$Arguments) {
  $r = Invoke-Native 'icacls.exe' $Arguments
  if ($r.Code -ne 0) { throw "icacls $($Arguments -join ' '): $($r.Output)" }
}

function Invoke-Wrapper([string]$Command) {
  $r = Invoke-Native (Join-Path $InstallDir 'cfm-agent-service.exe') @($Command)
  if ($r.Code -ne 0) { throw "cfm-agent-service.exe ${Command}: exit code $($r.Code): $($r.Output)" }
}

# The agent's own check of a configuration: its exit code 2 and message when it refuses one. No secret is
# shown: --print-config redacts them, and only the agent's error line is kept. What it prints on success (JSON,
# secrets redacted) is returned, never logged.
function Test-AgentConfig([string]$Exe, [string]$File, [string]$SpoolDir) {
  $env:CFM_AGENT__SPOOL__DIR = $SpoolDir
  try {
    $r = Invoke-Native $Exe @('--config', $File, '--print-config')
  } finally {
    Remove-Item Env:\CFM_AGENT__SPOOL__DIR -ErrorAction SilentlyContinue
  }
  if ($r.Code -ne 0) {
    $message = ($r.Output -split '(?=agent: )' | Where-Object { $_ -like 'agent: *' }) -join ' '
    Stop-Install 2 ('the agent refuses {0} (exit code {1}): {2}' -f $File, $r.Code, $message)
  }
  return $r.Output
}

# The session helper's pipe name from the configuration the agent printed: '\\.\pipe\cfm-activity' gives
# 'cfm-activity' (the helper serves cfm-activity-<its session id>); none when it sets no sessionPipe.
function Get-SessionPipeBase([string]$Printed) {
  try {
    # The JSON object the agent printed (a warning Node may print on stderr is not part of it).
    $json = $Printed.Substring($Printed.IndexOf('{'), $Printed.LastIndexOf('}') - $Printed.IndexOf('{') + 1)
    $helper = ($json | ConvertFrom-Json).agent.windowsHelper
  } catch {
    Stop-Install 1 "cannot read the configuration the agent printed: $($_.Exception.Message)"
  }
  $property = $helper.PSObject.Properties['sessionPipe']
  if (-not $property) { return '' }
  if ($property.Value -match '^\\\\\.\\pipe\\([A-Za-z0-9._-]{1,64})$') { return $Matches[1] }
  Stop-Install 2 ("agent.windowsHelper.sessionPipe is {0}: on Windows it is '\\.\pipe\NAME' (NAME: letters, digits, . _ -)" -f $property.Value)
}

# The session helper: started at the log-on of every user, in that user's session, with that user's limited
# rights, without a window (one may flash: powershell.exe is a console program). The task's command line is
# short: it reads cfm-session-helper.ps1 from the install folder (administrators only may change it) and runs
# it as a script block - not as a script file, which execution policy governs, as -EncodedCommand is not.
function Register-SessionHelper([string]$PipeBase) {
  $file = (Join-Path $InstallDir 'cfm-session-helper.ps1').Replace("'", "''")
  $bootstrap = "& ([ScriptBlock]::Create([IO.File]::ReadAllText('$file'))) -PipeBase '$PipeBase'"
  $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($bootstrap))
  $powershell = Join-Path $env:SystemRoot 'System32\WindowsPowerShell\v1.0\powershell.exe'
  $action = New-ScheduledTaskAction -Execute $powershell -Argument "-NoLogo -NoProfile -NonInteractive -WindowStyle Hidden -EncodedCommand $encoded"
  $trigger = New-ScheduledTaskTrigger -AtLogOn
  # By SID, translated to the group's name in this Windows' language.
  $users = (New-Object Security.Principal.SecurityIdentifier($SidUsers)).Translate([Security.Principal.NTAccount]).Value
  $principal = New-ScheduledTaskPrincipal -GroupId $users -RunLevel Limited
  # No time limit; one instance per user who logs on (Parallel); tried again every minute if it cannot start.
  $settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) -MultipleInstances Parallel -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries
  Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger -Principal $principal -Settings $settings -Description 'CFM classroom agent: the session helper, which reads the activity in the user''s session for the cfm-agent service' -Force | Out-Null
  Write-Log "scheduled task $TaskName registered (pipe $PipeBase-<session>); it starts at the next log-on"
}

function Unregister-SessionHelper {
  if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
    Write-Log "removing the scheduled task $TaskName"
    Stop-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
  }
}

function Wait-ServiceStatus([string]$Status, [int]$TimeoutS) {
  $service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
  if (-not $service) { return }
  try {
    $service.WaitForStatus($Status, [TimeSpan]::FromSeconds($TimeoutS))
  } catch {
    throw "service $ServiceName is not $Status after $TimeoutS s (status: $((Get-Service -Name $ServiceName).Status))"
  }
}

function Stop-AgentService {
  $service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
  if ($service -and $service.Status -ne 'Stopped') {
    Write-Log "stopping $ServiceName"
    Stop-Service -Name $ServiceName
    Wait-ServiceStatus 'Stopped' 30
  }
}

try {
  if (-not (Test-Administrator)) {
    Write-Host 'error: run as an administrator (or as SYSTEM)'
    exit 3
  }
  $DataDir = [IO.Path]::GetFullPath($DataDir)
  $InstallDir = [IO.Path]::GetFullPath($InstallDir)
  $DataDirYaml = $DataDir -replace '\\', '/'
  if (Test-Path -LiteralPath $DataDir -PathType Container) { $script:LogFile = Join-Path $DataDir 'install.log' }

  if ($Uninstall) {
    if ($Config) { Stop-Install 2 '-Uninstall takes no -Config' }
    Write-Log "removing $ServiceName from $InstallDir"
    Unregister-SessionHelper
    Stop-AgentService
    if (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue) {
      if (Test-Path -LiteralPath (Join-Path $InstallDir 'cfm-agent-service.exe') -PathType Leaf) {
        Invoke-Wrapper 'uninstall'
      } else {
        # The wrapper is gone (a half-removed install): the service control manager removes it without it.
        $r = Invoke-Native 'sc.exe' @('delete', $ServiceName)
        if ($r.Code -ne 0) { throw "sc.exe delete ${ServiceName}: $($r.Output)" }
      }
    }
    if (Test-Path -LiteralPath $InstallDir) { Remove-Item -LiteralPath $InstallDir -Recurse -Force }
    if (-not $KeepData -and (Test-Path -LiteralPath $DataDir)) {
      $script:LogFile = $null
      Remove-Item -LiteralPath $DataDir -Recurse -Force
    }
    Write-Log 'removed; revoke the device''s broker user so its password stops working (npm run broker -- users revoke)'
    exit 0
  }

  foreach ($file in 'cfm-agent.exe', 'cfm-agent-service.exe', 'cfm-agent-service.xml', 'cfm-session-helper.ps1') {
    if (-not (Test-Path -LiteralPath (Join-Path $Package $file) -PathType Leaf)) {
      Stop-Install 2 "$file is missing beside install.ps1 (in $Package): an incomplete package"
    }
  }
  $installedConfig = Join-Path $DataDir 'agent.yaml'
  if ($Config) {
    if (-not (Test-Path -LiteralPath $Config -PathType Leaf)) { Stop-Install 2 "-Config ${Config}: no such file" }
    $source = (Resolve-Path -LiteralPath $Config).ProviderPath
  } elseif (Test-Path -LiteralPath $installedConfig -PathType Leaf) {
    $source = $installedConfig
  } else {
    Stop-Install 2 "-Config is needed: nothing is installed in $DataDir yet"
  }
  # Checked by the version about to be installed, before anything changes.
  $printed = Test-AgentConfig (Join-Path $Package 'cfm-agent.exe') $source "$DataDirYaml/spool"
  $pipeBase = Get-SessionPipeBase $printed

  foreach ($dir in $DataDir, (Join-Path $DataDir 'spool'), (Join-Path $DataDir 'logs')) {
    New-Item -ItemType Directory -Force -Path $dir | Out-Null
  }
  $script:LogFile = Join-Path $DataDir 'install.log'
  Write-Log "installing $ServiceName from $Package into $InstallDir, data in $DataDir"
  # The configuration holds the device's MQTT password: SYSTEM and Administrators full, LocalService read; it
  # writes only the spool and the logs.
  Invoke-Icacls @($DataDir, '/inheritance:r', '/grant:r', "${SidSystem}:(OI)(CI)F", "${SidAdmins}:(OI)(CI)F", "${SidLocalService}:(OI)(CI)RX")
  Invoke-Icacls @((Join-Path $DataDir 'spool'), '/grant', "${SidLocalService}:(OI)(CI)M")
  Invoke-Icacls @((Join-Path $DataDir 'logs'), '/grant', "${SidLocalService}:(OI)(CI)M")

  $existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
  Stop-AgentService
  New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
  Copy-Item -LiteralPath (Join-Path $Package 'cfm-agent.exe') -Destination $InstallDir -Force
  Copy-Item -LiteralPath (Join-Path $Package 'cfm-agent-service.exe') -Destination $InstallDir -Force
  Copy-Item -LiteralPath (Join-Path $Package 'cfm-session-helper.ps1') -Destination $InstallDir -Force
  $xml = Get-Content -LiteralPath (Join-Path $Package 'cfm-agent-service.xml') -Raw -Encoding UTF8
  $xml = $xml.Replace('@DATA_DIR@', [Security.SecurityElement]::Escape($DataDirYaml))
  $xml = $xml.Replace('@NODE_FLAGS@', $NodeFlags)
  [IO.File]::WriteAllText((Join-Path $InstallDir 'cfm-agent-service.xml'), $xml, (New-Object Text.UTF8Encoding($false)))
  if ($source -ne $installedConfig) { Copy-Item -LiteralPath $source -Destination $installedConfig -Force }

  if (-not $existing) {
    Invoke-Wrapper 'install'
    Write-Log "service $ServiceName registered"
  }
  # A helper already running in a user's session keeps its (compatible) script until that user's next log-on.
  if ($pipeBase) { Register-SessionHelper $pipeBase } else { Unregister-SessionHelper }
  if ($NoStart) {
    Write-Log 'installed, not started (-NoStart)'
    exit 0
  }
  Start-Service -Name $ServiceName
  Wait-ServiceStatus 'Running' 30
  Write-Log "$ServiceName running; its log is in $DataDir\logs"
  exit 0
} catch {
  Stop-Install 1 $_.Exception.Message
}
