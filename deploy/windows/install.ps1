<#
.SYNOPSIS
  Installs, updates or removes the CFM classroom agent as a Windows service (docs/deploy-windows-agent.md).

.DESCRIPTION
  Run from the unpacked package (cfm-agent.exe, cfm-agent-service.exe = WinSW, cfm-agent-service.xml), in an
  elevated Windows PowerShell 5.1 or later, or as SYSTEM from central control software, without prompts:

    powershell.exe -NoProfile -ExecutionPolicy Bypass -File install.ps1 -Config D:\cfm\%COMPUTERNAME%.yaml

  Install: checks the configuration with the new cfm-agent.exe (nothing changes if it is refused), copies the
  program to -InstallDir and the configuration to -DataDir\agent.yaml, restricts -DataDir to SYSTEM,
  Administrators and LocalService, registers the service "cfm-agent" and starts it.
  Update: the same command from a newer package, -Config optional (the installed configuration is kept and is
  checked with the new version before the running one is stopped).
  Remove: -Uninstall (with -KeepData the configuration and the spool stay).

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
# Node's flags for the agent (agents/classroom/node-flags.ts), passed in NODE_OPTIONS.
$NodeFlags = '--max-old-space-size=64 --max-semi-space-size=1'
# Well-known SIDs, so the ACLs are the same on a Chinese-language Windows: SYSTEM, Administrators, LocalService.
$SidSystem = '*S-1-5-18'
$SidAdmins = '*S-1-5-32-544'
$SidLocalService = '*S-1-5-19'
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
# shown: --print-config redacts them, and only the agent's error line is kept (stdout is discarded).
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

  foreach ($file in 'cfm-agent.exe', 'cfm-agent-service.exe', 'cfm-agent-service.xml') {
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
  Test-AgentConfig (Join-Path $Package 'cfm-agent.exe') $source "$DataDirYaml/spool"

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
  $xml = Get-Content -LiteralPath (Join-Path $Package 'cfm-agent-service.xml') -Raw -Encoding UTF8
  $xml = $xml.Replace('@DATA_DIR@', [Security.SecurityElement]::Escape($DataDirYaml))
  $xml = $xml.Replace('@NODE_FLAGS@', $NodeFlags)
  [IO.File]::WriteAllText((Join-Path $InstallDir 'cfm-agent-service.xml'), $xml, (New-Object Text.UTF8Encoding($false)))
  if ($source -ne $installedConfig) { Copy-Item -LiteralPath $source -Destination $installedConfig -Force }

  if (-not $existing) {
    Invoke-Wrapper 'install'
    Write-Log "service $ServiceName registered"
  }
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
