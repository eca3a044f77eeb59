// Optional Event Hubs delivery of Graph's change notifications (issue 17; main.bicep's
// notificationDelivery = 'eventhub'): a namespace, the hub functions/graph_eventhub.py reads, its
// consumer group, a Send-only rule for Graph and the Key Vault secret holding that rule's connection
// string. Graph's docs (change-notifications-delivery-event-hubs): the subscription's notification
// URL is EventHub:<this secret's URL>?tenantId=<tenant>, and Graph reads the secret with its
// "Microsoft Graph Change Tracking" service principal (roles: app/rbac.bicep).

param name string
param location string = resourceGroup().location
param tags object = {}

@description('The vault that holds the secret (the app\'s own vault).')
param keyVaultName string

@description('Name of the Key Vault secret Graph reads the send connection string from (BB_EVENTHUB_SECRET_URL ends with it).')
param secretName string

@description('Partitions of the hub: parallel readers of one consumer group (fixed once created on Standard).')
@minValue(1)
@maxValue(32)
param partitionCount int = 4

// functions/graph_eventhub.py's EVENT_HUB and CONSUMER_GROUP (tests/unit/test_infra.py).
var hubName = 'graph-notifications'
var consumerGroupName = 'bookingbridge'

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  // Standard, not Basic: Basic has only the $Default consumer group and 1 day of retention.
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    minimumTlsVersion: '1.2'
    // Graph sends with the SAS connection string it reads from Key Vault, so shared access keys
    // must stay on; the app itself reads with its managed identity (Azure Event Hubs Data Receiver).
    disableLocalAuth: false
    publicNetworkAccess: 'Enabled'
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    // Events wait this long if the app is down (checkpoints are in the app's storage): a week
    // of notifications is never lost to an outage shorter than that.
    messageRetentionInDays: 7
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
}

// Send only, on this hub only: all Graph can do with the secret is add events to it.
resource graphSend 'Microsoft.EventHub/namespaces/eventhubs/authorizationRules@2024-01-01' = {
  parent: hub
  name: 'graph-send'
  properties: {
    rights: [
      'Send'
    ]
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The one place a key leaves the namespace: straight into the vault, never an output or a setting.
// Regenerating the rule's keys needs this deployment (or a secret update) again; Graph reads the
// secret's current version.
resource sendSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    contentType: 'Event Hubs connection string (Send) for Microsoft Graph change notifications'
    value: graphSend.listKeys().primaryConnectionString
  }
}

output namespaceName string = namespace.name
output hubName string = hub.name
output consumerGroupName string = consumerGroup.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output secretName string = sendSecret.name
