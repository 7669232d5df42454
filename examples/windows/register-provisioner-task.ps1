#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Registers provisioner's nightly task from provisioner-task.xml (docs/operations.md).

.DESCRIPTION
    Reads provisioner-task.xml from this script's folder, puts the account that runs the task in
    it, restricts the folders provisioner reads and writes to that account (and SYSTEM and the
    Administrators), and registers the task as \provisioner\nightly. Run it again to change the
    account or the XML: the task is replaced.

.PARAMETER Account
    A group managed service account (SCHOOL\svc-provisioner$, no password: Windows manages it)
    or a dedicated service account (SCHOOL\svc-provisioner, with -Credential).

.PARAMETER Credential
    Only for an ordinary service account: its password, for Task Scheduler to store.

.PARAMETER DataFolder
    The folder with provisioner.yaml, the secrets\ folder and the state\ folder.

.EXAMPLE
    .\register-provisioner-task.ps1 -Account 'SCHOOL\svc-provisioner$'

.EXAMPLE
    .\register-provisioner-task.ps1 -Account 'SCHOOL\svc-provisioner' -Credential (Get-Credential 'SCHOOL\svc-provisioner')
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string] $Account,
    [System.Management.Automation.PSCredential] $Credential,
    [string] $DataFolder = 'C:\ProgramData\provisioner'
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$taskXmlPath = Join-Path $PSScriptRoot 'provisioner-task.xml'
[xml] $task = Get-Content -LiteralPath $taskXmlPath -Raw -Encoding UTF8
$task.Task.Principals.Principal.UserId = $Account

$isManagedServiceAccount = $Account.EndsWith('$')
if (-not $isManagedServiceAccount -and $null -eq $Credential) {
    throw "$Account is not a group managed service account (no trailing `$): give its password with -Credential"
}

# The folders: SYSTEM and the Administrators keep full control; the account reads the
# configuration and its secrets and writes only the state folder (state store, plan key, run
# folders, password sheets, locks). Inherited rights (Users: read) are removed.
$stateFolder = Join-Path $DataFolder 'state'
$secretsFolder = Join-Path $DataFolder 'secrets'
foreach ($folder in @($DataFolder, $stateFolder, $secretsFolder)) {
    New-Item -ItemType Directory -Force -Path $folder | Out-Null
}
& icacls.exe $DataFolder /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' "${Account}:(OI)(CI)RX" | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls could not set the rights on $DataFolder" }
& icacls.exe $stateFolder /grant:r "${Account}:(OI)(CI)M" | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls could not set the rights on $stateFolder" }

$registration = @{
    TaskName = 'nightly'
    TaskPath = '\provisioner\'
    Xml      = $task.OuterXml
    Force    = $true
}
if (-not $isManagedServiceAccount) {
    $registration.User = $Credential.UserName
    $registration.Password = $Credential.GetNetworkCredential().Password
}
Register-ScheduledTask @registration | Out-Null
Write-Host "Registered \provisioner\nightly to run as $Account every night at 02:30."
Write-Host "Try it now with: Start-ScheduledTask -TaskPath '\provisioner\' -TaskName 'nightly'"
