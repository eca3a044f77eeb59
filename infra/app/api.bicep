// BookingBridge's Function App: Flex Consumption plan + site, and every app setting it gets.
//
// The app settings below are the complete list (one place to review). tests/unit/test_infra.py checks
// them against shared/core/settings.py: every setting the code reads is set here, nothing is set that
// nobody reads (except the commented platform settings), and no value carries a key or a secret.

param name string
param planName string
param location string = resourceGroup().location
param tags object = {}

@description('azd deploys the code of service "api" (azure.yaml) to the resource carrying this tag.')
param serviceName string = 'api'

// Identity, storage, vault, monitoring (created by main.bicep)
param identityId string
param identityClientId string
param storageAccountName string
param deploymentBlobEndpoint string
param deploymentContainerName string
param applicationInsightsName string
param keyVaultUri string

// BookingBridge settings (shared/core/settings.py)
param clientId string
param apiAudience string
param apiTenantId string
param authorityHost string
param graphBaseUrl string
param returnUrlOrigins string
param corsOrigins string
param corsWithCookies bool
param clientSecretName string
param clientCertificateName string
param keepaliveSchedule string
param notificationDelivery string
param eventHubSecretName string
@description('<namespace>.servicebus.windows.net with eventhub delivery, else empty.')
param eventHubNamespace string

// Scale
param instanceMemoryMB int
param maximumInstanceCount int
param alwaysReadyHttpInstances int

module plan '../core/host/flex-consumption-plan.bicep' = {
  name: 'plan'
  params: {
    name: planName
    location: location
    tags: tags
  }
}

module functionApp '../core/host/functions-flexconsumption.bicep' = {
  name: 'functionapp'
  params: {
    name: name
    location: location
    tags: union(tags, { 'azd-service-name': serviceName })
    planId: plan.outputs.id
    identityId: identityId
    deploymentBlobEndpoint: deploymentBlobEndpoint
    deploymentContainerName: deploymentContainerName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: name
}

var appSettings = {
  // Functions host storage, identity-based (no connection string: shared keys are off). The host
  // reads all three; shared/core/settings.py reads __accountName and __clientId for its own table and
  // queue clients.
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId

  // The app's own identity for Key Vault (azure-identity ManagedIdentityCredential, shared/storage/clients.py).
  AZURE_CLIENT_ID: identityClientId

  // Telemetry: the connection string only locates the resource (local auth is disabled); the
  // authentication string makes the host and the OpenTelemetry exporter send with this identity's
  // Entra token. PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY makes the Python worker itself call
  // azure.monitor.opentelemetry.configure_azure_monitor() (needs azure-monitor-opentelemetry in
  // requirements.txt); see infra/README.md "Observability" for the sources.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'

  // BookingBridge (shared/core/settings.py)
  BB_KEY_VAULT_URL: keyVaultUri
  BB_AUTHORITY_HOST: authorityHost
  BB_GRAPH_BASE_URL: graphBaseUrl
  BB_CLIENT_ID: clientId
  // Where Microsoft reaches the app: webhook notification URL and OAuth redirect URIs derive from it.
  BB_PUBLIC_BASE_URL: 'https://${functionApp.outputs.defaultHostName}/api'
  // Tokens for this API carry the app registration's identifier URI (infra/scripts/register-app.sh
  // sets api://<client id>) unless another audience is given.
  BB_API_AUDIENCE: !empty(apiAudience) ? apiAudience : (empty(clientId) ? '' : 'api://${clientId}')
  // Portal/admin tokens are issued by the deployment's tenant unless another is given.
  BB_API_TENANT_ID: !empty(apiTenantId) ? apiTenantId : tenant().tenantId
  // Empty = the app's own origin (shared/core/settings.py).
  BB_RETURN_URL_ORIGINS: returnUrlOrigins
  // CORS for browser frontends (shared/api/cors.py); the same list is the platform's CORS below.
  BB_CORS_ORIGINS: corsOrigins
  BB_CORS_ALLOW_CREDENTIALS: corsWithCookies ? 'true' : 'false'
  // Names of Key Vault secrets, not secrets: the app reads the values itself with its identity.
  BB_CLIENT_SECRET_NAME: clientSecretName
  BB_CLIENT_CERTIFICATE_NAME: clientCertificateName
  // Timer triggers resolve %BB_KEEPALIVE_SCHEDULE% from app settings: without it the function
  // would not index. Every timer schedule here equals TIMER_SCHEDULES in shared/core/settings.py
  // (tests/unit/test_infra.py).
  BB_KEEPALIVE_SCHEDULE: keepaliveSchedule
  // Calendar sync (shared/sync/worker.py): the mirrored window, the poll timer for calendars Graph cannot
  // notify about (adaptive interval between the two bounds) and the reconciliation tick. The
  // schedules are %SETTING% expressions of timer triggers: without them the functions would not index.
  BB_SYNC_WINDOW_DAYS: '60'
  BB_POLL_SCHEDULE: '*/30 * * * * *'
  BB_POLL_MIN_SECONDS: '30'
  BB_POLL_MAX_SECONDS: '300'
  BB_RECONCILE_SCHEDULE: '0 */30 * * * *'
  // A healthy calendar is reconciled 4 h after its last round; loss signals make it due at once.
  BB_RECONCILE_TRUST_MINUTES: '240'
  // Graph subscriptions (shared/subscriptions/): the renewal timer's schedule (a %SETTING% of a
  // timer trigger), the lifetime asked for (capped at Graph's 4230 minutes) and the renewal margin.
  BB_RENEW_SCHEDULE: '0 */30 * * * *'
  BB_SUBSCRIPTION_MINUTES: '4230'
  BB_RENEW_MARGIN_MINUTES: '1440'
  // Bookings write-through (shared/bookings/service.py): live Graph check of a slot before writing, the
  // event's subject template, whether the booker is invited, and the outbox retry bound/backoff.
  BB_LIVE_CHECK: 'true'
  BB_BOOKING_SUBJECT: '{resourceName} – {bookerName}'
  BB_INVITE_BOOKER: 'false'
  BB_OUTBOX_MAX_ATTEMPTS: '8'
  BB_OUTBOX_BACKOFF_SECONDS: '30'
  BB_OUTBOX_BACKOFF_MAX_SECONDS: '900'
  // Go-live check (shared/checks/): the sweeper's schedule (a %SETTING% of a timer trigger: without
  // it the function would not index), the Outlook wait and the resources checked at once.
  BB_CHECKS_SWEEP_SCHEDULE: '0 */5 * * * *'
  BB_CHECKS_OUTLOOK_SECONDS: '60'
  BB_CHECKS_CONCURRENCY: '4'
  // Analytics (shared/analytics/, issue 15): the rollup timer's schedule (a %SETTING% of a timer
  // trigger: without it the function would not index).
  BB_ROLLUP_SCHEDULE: '0 15 * * * *'
  // No-show release (shared/attendance/, issue 15): the timer that releases bookings nobody
  // checked in to (a %SETTING% of a timer trigger: without it the function would not index).
  BB_RELEASE_SCHEDULE: '0 * * * * *'
  // Outgoing webhooks (shared/webhooks/, issue 16): retries (30 s doubling to 2 h, for 26 h), an
  // endpoint failing for 3 days is disabled, a rotated secret stays valid 24 h.
  BB_WEBHOOK_RETRY_BASE_SECONDS: '30'
  BB_WEBHOOK_RETRY_MAX_SECONDS: '7200'
  BB_WEBHOOK_RETRY_WINDOW_SECONDS: '93600'
  BB_WEBHOOK_DISABLE_AFTER_SECONDS: '259200'
  BB_WEBHOOK_SECRET_GRACE_SECONDS: '86400'
  // Change notifications (issue 17): webhook, or Event Hubs. With eventhub, subscriptions name
  // EventHub:<secret URL>?tenantId=<this tenant>; Graph reads the hub's send connection string
  // from that secret (core/messaging/event-hubs.bicep writes it). A URL and a tenant id, no secret.
  BB_NOTIFICATION_DELIVERY: notificationDelivery
  BB_EVENTHUB_SECRET_URL: notificationDelivery == 'eventhub' ? '${keyVaultUri}secrets/${eventHubSecretName}' : ''
  BB_EVENTHUB_TENANT: notificationDelivery == 'eventhub' ? tenant().tenantId : ''
  // The Event Hubs trigger's connection "BB_EVENTHUB" (functions/graph_eventhub.py), identity-based
  // like storage: the host's Event Hubs extension reads these, the app does not. Off, the
  // function is disabled, so no listener starts without a hub.
  BB_EVENTHUB__fullyQualifiedNamespace: eventHubNamespace
  BB_EVENTHUB__credential: 'managedidentity'
  BB_EVENTHUB__clientId: identityClientId
  'AzureWebJobs.graph_eventhub_notifications.Disabled': notificationDelivery == 'eventhub' ? 'false' : 'true'
}

resource appSettingsConfig 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: appSettings
}

// On Flex Consumption the Functions host answers every CORS preflight itself (its CORS middleware,
// fed from this list) before the app sees it; the app answers actual requests (and preflights on
// hosts that pass OPTIONS on). One list for both, so they agree (docs/DESIGN.md, "CORS").
var corsOriginList = filter(map(split(corsOrigins, ','), o => trim(o)), o => !empty(o))

resource webConfig 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'web'
  properties: {
    cors: {
      allowedOrigins: corsOriginList
      supportCredentials: corsWithCookies && !contains(corsOriginList, '*')
    }
  }
}

output name string = functionApp.outputs.name
output defaultHostName string = functionApp.outputs.defaultHostName
output publicBaseUrl string = 'https://${functionApp.outputs.defaultHostName}/api'
