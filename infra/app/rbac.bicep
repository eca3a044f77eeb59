// Every role assignment, from one named map of built-in role definition ids (the pattern of
// Azure-Samples/azure-functions-flex-consumption-samples IaC/bicep/rbac.bicep). Each role is assigned
// to the app's user-assigned identity at the narrowest scope that works: the storage account, the
// vault, the Application Insights component.

@description('Principal (object) id of the app\'s user-assigned identity.')
param principalId string

@description('Optional: principal id of the person or pipeline running azd, so infra/scripts/register-app.sh can store the client secret in the vault. Empty = none.')
param deployerPrincipalId string = ''

param storageAccountName string
param keyVaultName string
param applicationInsightsName string

// Event Hubs delivery (issue 17): empty names = webhook delivery, no Event Hubs roles.
param eventHubNamespaceName string = ''
param eventHubSecretName string = ''

@description('Object id of the "Microsoft Graph Change Tracking" service principal (appId 0bf30f3b-4a52-48df-9a82-234910c4a086): Graph reads the Event Hubs secret and sends with it. Empty = not assigned here.')
param graphChangeTrackingPrincipalId string = ''

// Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roleDefinitionIds = {
  // Tables: connections, mappings, bookings, busy blocks, sync state, audit (shared/storage/clients.py table()).
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  // Queues: notification work, booking outbox, poison queues (shared/storage/clients.py queue(), queue triggers).
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  // Blobs: the Flex Consumption deployment package and the Functions host's own blobs (leases,
  // timer schedule monitor). Owner, as the Flex samples use, because the host manages containers.
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  // Secrets: the app writes refresh tokens and clientState keys, not only reads them, so "Secrets
  // User" is not enough. Purge is part of this role but purge protection makes it impossible.
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  // Telemetry ingestion with an Entra token (Application Insights has local auth disabled).
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  // Event Hubs delivery: the app's trigger reads the hub (checkpoints go to its storage).
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  // Event Hubs delivery, for Graph's change-tracking principal: sending to the hub (what Graph's
  // Entra-authenticated delivery needs; the SAS connection string in the secret needs no role) ...
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  // ... and reading the one secret that holds the connection string (Graph's docs: "Get" on secrets).
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var eventHubsEnabled = !empty(eventHubNamespaceName)
var graphRoles = eventHubsEnabled && !empty(graphChangeTrackingPrincipalId)

// Placeholder names when Event Hubs is off: the assignments below are skipped, and their names
// stay well-formed expressions.
resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubsEnabled ? eventHubNamespaceName : 'none'
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: eventHubNamespace
  name: 'graph-notifications'
}

resource eventHubSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: eventHubsEnabled ? eventHubSecretName : 'none'
}

resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleDefinitionIds.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleDefinitionIds.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleDefinitionIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, roleDefinitionIds.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.keyVaultSecretsOfficer)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, roleDefinitionIds.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The deployer writes the app registration's client secret into the vault (and nothing else). The
// principal type is left out: it may be a user (azd up) or a service principal (a pipeline).
resource deployerSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(vault.id, deployerPrincipalId, roleDefinitionIds.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
  }
}

// Event Hubs delivery (issue 17). The trigger reads the hub with the app's identity.
resource eventHubsReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (eventHubsEnabled) {
  name: guid(eventHub.id, principalId, roleDefinitionIds.eventHubsDataReceiver)
  scope: eventHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.eventHubsDataReceiver)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Graph's change-tracking principal: the secret only (not the vault's other secrets) ...
resource graphSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (graphRoles) {
  name: guid(eventHubSecret.id, graphChangeTrackingPrincipalId, roleDefinitionIds.keyVaultSecretsUser)
  scope: eventHubSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.keyVaultSecretsUser)
    principalId: graphChangeTrackingPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ... and this hub only.
resource graphEventHubsSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (graphRoles) {
  name: guid(eventHub.id, graphChangeTrackingPrincipalId, roleDefinitionIds.eventHubsDataSender)
  scope: eventHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.eventHubsDataSender)
    principalId: graphChangeTrackingPrincipalId
    principalType: 'ServicePrincipal'
  }
}
