// BookingBridge on Azure: Functions on Flex Consumption, Storage, Key Vault, Application Insights,
// one user-assigned identity and its role assignments. Deployed by `azd up` (azure.yaml at the repo
// root); see infra/README.md. Shape follows Azure-Samples/functions-quickstart-python-http-azd
// (infra/main.bicep): subscription scope, a resource group, small modules, identity-based connections.
//
// No secret is a parameter, a setting or an output here: the app registration's client secret goes
// straight from `az` into Key Vault (infra/scripts/register-app.sh).

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; also seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region for all resources. It must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Optional: resource group name (default rg-<environmentName>).')
param resourceGroupName string = ''

@description('Optional: principal id of whoever runs azd (azd sets AZURE_PRINCIPAL_ID); gets Key Vault Secrets Officer so register-app.sh can store the client secret.')
param principalId string = ''

// BookingBridge settings (shared/core/settings.py documents each one).
@description('BB_CLIENT_ID: application (client) id of the multi-tenant app registration (infra/scripts/register-app.sh prints it). Empty until registered: the app then reports itself misconfigured on /api/health.')
param clientId string = ''

@description('BB_API_AUDIENCE: audience of portal/admin bearer tokens. Empty = api://<clientId>.')
param apiAudience string = ''

@description('BB_API_TENANT_ID: tenant whose issuer signs portal/admin bearer tokens. Empty = this deployment\'s tenant.')
param apiTenantId string = ''

@description('BB_AUTHORITY_HOST: Microsoft identity platform host (public cloud default).')
param authorityHost string = 'https://login.microsoftonline.com'

@description('BB_GRAPH_BASE_URL: Microsoft Graph base URL including the version (public cloud default).')
param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

@description('BB_RETURN_URL_ORIGINS: comma-separated portal origins a connect flow may return to. Empty = the app\'s own origin.')
param returnUrlOrigins string = ''

@description('BB_CORS_ORIGINS: comma-separated exact origins of browser frontends allowed to call the API cross-origin, or * for any (never with credentials). Empty = no CORS.')
param corsOrigins string = ''

@description('BB_CORS_ALLOW_CREDENTIALS: answer the listed origins with Access-Control-Allow-Credentials (not with *).')
param corsWithCookies bool = false

@description('BB_CLIENT_SECRET_NAME: Key Vault secret holding the app registration\'s client secret (register-app.sh writes it).')
param clientSecretName string = 'bookingbridge-client-secret'

@description('BB_CLIENT_CERTIFICATE_NAME: Key Vault secret holding a PEM certificate to use instead of the client secret. Empty = use the secret.')
param clientCertificateName string = ''

@description('BB_KEEPALIVE_SCHEDULE: NCRONTAB of the timer that refreshes idle delegated grants. The host resolves %BB_KEEPALIVE_SCHEDULE% from app settings, so it must be set.')
param keepaliveSchedule string = '0 0 3 * * *'

// Change notifications through Azure Event Hubs (issue 17; infra/README.md "Event Hubs delivery").
@description('BB_NOTIFICATION_DELIVERY: how Graph delivers change and lifecycle notifications. webhook = to the app\'s /api/graph/notifications and /api/graph/lifecycle; eventhub = to an Event Hub created here (namespace, hub, consumer group, the Key Vault secret Graph reads its send connection string from), read by the graph_eventhub_notifications trigger.')
@allowed([
  'webhook'
  'eventhub'
])
param notificationDelivery string = 'webhook'

@description('With eventhub delivery: object id of the "Microsoft Graph Change Tracking" service principal in this tenant (appId 0bf30f3b-4a52-48df-9a82-234910c4a086; az ad sp show --id 0bf30f3b-4a52-48df-9a82-234910c4a086 --query id -o tsv). It gets Key Vault Secrets User on the secret and Azure Event Hubs Data Sender on the hub. Empty = assign them yourself.')
param graphChangeTrackingPrincipalId string = ''

@description('With eventhub delivery: name of the Key Vault secret holding the hub\'s send connection string (BB_EVENTHUB_SECRET_URL names it).')
param eventHubSecretName string = 'graph-eventhub-send'

// Flex Consumption scale.
@description('Memory per instance in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Upper bound on instances (cost and Graph throttling guard).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances for the HTTP trigger group; Graph gives the webhook 3 s, a cold start can take longer. 0 = scale from zero.')
@minValue(0)
@maxValue(10)
param alwaysReadyHttpInstances int = 1

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-api-${resourceToken}'
// Container names: lowercase letters, digits and dashes, at most 63 characters.
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity './core/identity/user-assigned-identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-api-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage './core/storage/storage-account.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

module keyVault './core/security/key-vault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring './core/monitor/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

var eventHubsEnabled = notificationDelivery == 'eventhub'

module eventHubs './core/messaging/event-hubs.bicep' = if (eventHubsEnabled) {
  name: 'eventhubs'
  scope: rg
  params: {
    name: 'evhns-${resourceToken}'
    location: location
    tags: tags
    keyVaultName: keyVault.outputs.name
    secretName: eventHubSecretName
  }
}

module rbac './app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    deployerPrincipalId: principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    eventHubNamespaceName: eventHubsEnabled ? eventHubs.outputs.namespaceName : ''
    eventHubSecretName: eventHubsEnabled ? eventHubs.outputs.secretName : ''
    graphChangeTrackingPrincipalId: graphChangeTrackingPrincipalId
  }
}

module api './app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultUri: keyVault.outputs.uri
    clientId: clientId
    apiAudience: apiAudience
    apiTenantId: apiTenantId
    authorityHost: authorityHost
    graphBaseUrl: graphBaseUrl
    returnUrlOrigins: returnUrlOrigins
    corsOrigins: corsOrigins
    corsWithCookies: corsWithCookies
    clientSecretName: clientSecretName
    clientCertificateName: clientCertificateName
    keepaliveSchedule: keepaliveSchedule
    notificationDelivery: notificationDelivery
    eventHubSecretName: eventHubSecretName
    eventHubNamespace: eventHubsEnabled ? eventHubs.outputs.fullyQualifiedNamespace : ''
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
  }
  // The app must not start (and fail to reach storage) before its identity holds its roles.
  dependsOn: [
    rbac
  ]
}

// azd stores these in .azure/<env>/.env; register-app.sh and the README steps read them.
// Names and URLs only: nothing here is a secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_HOST string = api.outputs.defaultHostName
output BB_PUBLIC_BASE_URL string = api.outputs.publicBaseUrl
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
