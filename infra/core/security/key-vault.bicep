// Key Vault for refresh tokens, the app registration's client secret and clientState keys
// (ARCHITECTURE.md §4: secrets live only here). Azure RBAC, not access policies, so access is granted
// by the same role map as everything else (app/rbac.bicep).

param name string
param location string = resourceGroup().location
param tags object = {}

@description('Days a deleted secret or vault stays recoverable (7-90).')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    // A deleted refresh token or client secret can be recovered; with purge protection nobody (not
    // even an owner) can destroy them before the retention period ends. Consequence: `azd down`
    // leaves the vault soft-deleted and its name reserved (see infra/README.md).
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    // Flex Consumption without a virtual network calls the vault over its public endpoint.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
