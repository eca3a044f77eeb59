<#
.SYNOPSIS
    Limits BookingBridge's application access to chosen room mailboxes with Exchange Online
    RBAC for Applications. Run by the customer's Exchange administrator, in the customer's tenant.

.DESCRIPTION
    BookingBridge's "application" connection (admin consent + client credentials) reads and writes
    room calendars. An Entra application permission such as Calendars.ReadWrite reaches EVERY
    mailbox in the tenant. RBAC for Applications grants the same Graph permissions in Exchange,
    limited to a management scope: here, the members of one mail-enabled security group of rooms.
    This is the model Mapiq and PlaceOS document (GRAPH.md §2.3; Microsoft's page "Role Based
    Access Control for Applications in Exchange Online", learn.microsoft.com/exchange/permissions-exo/application-rbac).

    What it does (idempotent: existing objects are reused, nothing is duplicated):
      1. New-ServicePrincipal: the Exchange pointer to BookingBridge's enterprise application
         (service principal) in this tenant, created when the admin consented.
      2. A mail-enabled security group of rooms (created if missing; -Rooms adds members).
      3. New-ManagementScope with RecipientRestrictionFilter "MemberOfGroup -eq '<group DN>'".
      4. New-ManagementRoleAssignment -App <appId> -Role "Application Calendars.Read" and
         "Application Calendars.ReadWrite" -CustomResourceScope <scope>.
    With -Test it changes nothing: it lists the rooms in scope and runs
    Test-ServicePrincipalAuthorization for each.

    CAVEAT: GRANTS ARE ADDITIVE. Exchange RBAC adds access; it cannot take away what Entra
    granted. While the tenant-wide Entra application permissions Calendars.Read /
    Calendars.ReadWrite (granted by admin consent) remain on BookingBridge's enterprise app, the
    app still reaches every mailbox and this scope restricts nothing. To restrict, remove those
    two application permissions from the enterprise application (Entra admin center > Enterprise
    applications > BookingBridge > Permissions > revoke; or delete the appRoleAssignments) and
    rely on the role assignments below. Place.Read.All is not a mailbox permission and stays.

    Other things to know:
      - Group membership is not nested: only DIRECT members of the group are in scope.
      - Changes take effect after Exchange's permission cache refreshes: from minutes to about
        two hours. Test-ServicePrincipalAuthorization may say InScope before Graph agrees.
      - A room added to the group later is in scope automatically (after the cache delay).

.PARAMETER AppId
    BookingBridge's application (client) id (BB_CLIENT_ID).

.PARAMETER ServicePrincipalObjectId
    Object id of BookingBridge's ENTERPRISE APPLICATION (service principal) in this tenant, not the
    app registration's object id. Entra admin center > Enterprise applications > BookingBridge >
    Object ID, or: az ad sp show --id <AppId> --query id -o tsv

.PARAMETER GroupName
    Mail-enabled security group whose direct members are the rooms BookingBridge may use. Created
    if it does not exist (then -GroupSmtpAddress may name its address).

.PARAMETER Rooms
    Room mailboxes (addresses) to add to the group. Optional; existing members stay.

.PARAMETER ScopeName
    Name of the management scope (default "BookingBridge rooms").

.PARAMETER Test
    Change nothing; list the rooms in scope and test the app's authorization for each.

.EXAMPLE
    Connect-ExchangeOnline
    ./scope-rooms.ps1 -AppId 11111111-2222-3333-4444-555555555555 `
        -ServicePrincipalObjectId 66666666-7777-8888-9999-000000000000 `
        -GroupName "BookingBridge Rooms" -Rooms room.amsterdam.1@contoso.com, room.amsterdam.2@contoso.com

.EXAMPLE
    ./scope-rooms.ps1 -AppId 11111111-2222-3333-4444-555555555555 -GroupName "BookingBridge Rooms" -Test
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [Parameter(Mandatory = $true)]
    [ValidatePattern('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$')]
    [string] $AppId,

    [ValidatePattern('^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$')]
    [string] $ServicePrincipalObjectId,

    [string] $DisplayName = 'BookingBridge',

    [Parameter(Mandatory = $true)]
    [string] $GroupName,

    [string] $GroupSmtpAddress,

    [string[]] $Rooms = @(),

    [string] $ScopeName = 'BookingBridge rooms',

    # Read for change-notification subscriptions (Graph wants a read permission for them, GRAPH.md
    # §2.2), ReadWrite for writing bookings: the same pair the app requests in Entra
    # (infra/graph-permissions.json, application permissions).
    [string[]] $Roles = @('Application Calendars.Read', 'Application Calendars.ReadWrite'),

    [switch] $Test
)

# Version 1 only: Exchange objects differ between module versions, so reading an absent property
# must yield $null rather than throw.
Set-StrictMode -Version 1.0
$ErrorActionPreference = 'Stop'

function Assert-ExchangeSession {
    if (-not (Get-Command Get-ServicePrincipal -ErrorAction SilentlyContinue)) {
        throw 'Exchange Online PowerShell is not connected. Run: Install-Module ExchangeOnlineManagement; Connect-ExchangeOnline'
    }
}

function Get-RoomsInScope {
    # Direct members only: the MemberOfGroup filter does not follow nested groups.
    Get-DistributionGroupMember -Identity $GroupName -ResultSize Unlimited |
        Sort-Object PrimarySmtpAddress
}

function Invoke-ScopeTest {
    $members = @(Get-RoomsInScope)
    if ($members.Count -eq 0) {
        Write-Warning "Group '$GroupName' has no members: no mailbox is in scope."
        return
    }
    Write-Host "Rooms in scope '$ScopeName' (direct members of '$GroupName'):"
    $results = foreach ($member in $members) {
        if ($member.RecipientTypeDetails -ne 'RoomMailbox') {
            Write-Warning "$($member.PrimarySmtpAddress) is a $($member.RecipientTypeDetails), not a room mailbox."
        }
        foreach ($result in @(Test-ServicePrincipalAuthorization -Identity $AppId -Resource $member.PrimarySmtpAddress)) {
            [pscustomobject]@{
                Room    = [string]$member.PrimarySmtpAddress
                Role    = $result.RoleName
                Scope   = $result.AllowedResourceScope
                InScope = $result.InScope
            }
        }
    }
    $results | Format-Table -AutoSize | Out-String | Write-Host
    $outside = @($results | Where-Object { -not $_.InScope })
    if ($outside.Count -gt 0) {
        Write-Warning "$($outside.Count) room/role pair(s) not in scope yet (new assignments can take up to about two hours)."
    }
    Write-Warning 'Grants are additive: if the Entra application permissions Calendars.Read/ReadWrite are still granted to the enterprise app, BookingBridge reaches every mailbox regardless of this scope.'
}

Assert-ExchangeSession

if ($Test) {
    Invoke-ScopeTest
    return
}

if (-not $ServicePrincipalObjectId) {
    throw '-ServicePrincipalObjectId is required to configure (the enterprise app object id: az ad sp show --id <AppId> --query id -o tsv).'
}

# 1. Exchange's pointer to the enterprise application.
$servicePrincipal = Get-ServicePrincipal -Identity $AppId -ErrorAction SilentlyContinue
if (-not $servicePrincipal) {
    if ($PSCmdlet.ShouldProcess($AppId, 'New-ServicePrincipal')) {
        $servicePrincipal = New-ServicePrincipal -AppId $AppId -ObjectId $ServicePrincipalObjectId -DisplayName $DisplayName
    }
}
else {
    Write-Host "Service principal for $AppId exists."
}

# 2. The group of rooms: a mail-enabled SECURITY group (a distribution list cannot scope).
$group = Get-DistributionGroup -Identity $GroupName -ErrorAction SilentlyContinue
if (-not $group) {
    $groupArgs = @{ Name = $GroupName; Type = 'Security' }
    if ($GroupSmtpAddress) { $groupArgs.PrimarySmtpAddress = $GroupSmtpAddress }
    if ($PSCmdlet.ShouldProcess($GroupName, 'New-DistributionGroup -Type Security')) {
        $group = New-DistributionGroup @groupArgs
    }
}
elseif ($group.RecipientTypeDetails -ne 'MailUniversalSecurityGroup') {
    throw "'$GroupName' is a $($group.RecipientTypeDetails); a mail-enabled security group is needed."
}

$existingMembers = @()
if ($group) {
    $existingMembers = @(Get-DistributionGroupMember -Identity $GroupName -ResultSize Unlimited |
            ForEach-Object { [string]$_.PrimarySmtpAddress })
}
foreach ($room in $Rooms) {
    $mailbox = Get-Mailbox -Identity $room
    if ($mailbox.RecipientTypeDetails -ne 'RoomMailbox') {
        Write-Warning "$room is a $($mailbox.RecipientTypeDetails), not a room mailbox; adding it anyway."
    }
    if ($existingMembers -contains [string]$mailbox.PrimarySmtpAddress) { continue }
    if ($PSCmdlet.ShouldProcess($room, "Add to $GroupName")) {
        Add-DistributionGroupMember -Identity $GroupName -Member $mailbox.PrimarySmtpAddress -BypassSecurityGroupManagerCheck
    }
}

# 3. The management scope: members of the group. Single quotes inside the filter are doubled.
$groupDn = if ($group) { $group.DistinguishedName } else { "<DN of $GroupName>" }
$filter = "MemberOfGroup -eq '$($groupDn -replace "'", "''")'"
$scope = Get-ManagementScope -Identity $ScopeName -ErrorAction SilentlyContinue
if (-not $scope) {
    if ($PSCmdlet.ShouldProcess($ScopeName, "New-ManagementScope -RecipientRestrictionFilter $filter")) {
        New-ManagementScope -Name $ScopeName -RecipientRestrictionFilter $filter | Out-Null
    }
}
elseif ($scope.RecipientFilter -ne $filter) {
    if ($PSCmdlet.ShouldProcess($ScopeName, "Set-ManagementScope -RecipientRestrictionFilter $filter")) {
        Set-ManagementScope -Identity $ScopeName -RecipientRestrictionFilter $filter
    }
}

# 4. The application roles, limited to the scope.
# Exchange shows a role assignee by its identity or display name; match any of ours.
$assigneeNames = @(
    @($AppId, $ServicePrincipalObjectId, $DisplayName) +
    @($servicePrincipal | ForEach-Object { [string]$_.Identity; [string]$_.DisplayName }) |
        Where-Object { $_ }
)
foreach ($role in $Roles) {
    $assigned = Get-ManagementRoleAssignment -Role $role -ErrorAction SilentlyContinue |
        Where-Object { ([string]$_.RoleAssignee -in $assigneeNames) -or ([string]$_.RoleAssigneeName -in $assigneeNames) } |
        Where-Object { [string]$_.CustomResourceScope -eq $ScopeName }
    if ($assigned) {
        Write-Host "$role is already assigned to $AppId in scope '$ScopeName'."
        continue
    }
    if ($PSCmdlet.ShouldProcess($AppId, "New-ManagementRoleAssignment -Role '$role' -CustomResourceScope '$ScopeName'")) {
        try {
            New-ManagementRoleAssignment -App $AppId -Role $role -CustomResourceScope $ScopeName | Out-Null
        }
        catch {
            if ("$_" -notmatch 'already exists') { throw }
            Write-Host "$role is already assigned to $AppId."
        }
    }
}

Write-Host ''
Write-Host "Done. Verify (allow up to about two hours for the cache): ./scope-rooms.ps1 -AppId $AppId -GroupName '$GroupName' -Test"
Write-Warning 'Grants are additive: remove the tenant-wide Entra application permissions Calendars.Read and Calendars.ReadWrite from the BookingBridge enterprise app, or this scope restricts nothing.'
