// A Function App on a Flex Consumption plan, running as a user-assigned identity, deployed from a
// blob container that the same identity reads. Shape follows Azure-Samples/functions-quickstart-
// python-http-azd (infra/core/host/functions-flexconsumption.bicep). App settings are not set here:
// the caller owns the complete list (app/api.bicep), so one file shows every setting the app gets.
//
// On Flex Consumption the runtime and its version live in functionAppConfig.runtime; the legacy
// settings FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE,
// SCM_DO_BUILD_DURING_DEPLOYMENT, ... are deprecated there (learn.microsoft.com, "Flex Consumption
// plan deprecations" in the Functions app settings reference).

param name string
param location string = resourceGroup().location
param tags object = {}

param planId string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Blob endpoint of the storage account holding the deployment container (ends with /).')
param deploymentBlobEndpoint string
param deploymentContainerName string

@allowed(['python'])
param runtimeName string = 'python'
@allowed(['3.11'])
param runtimeVersion string = '3.11'

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances for the HTTP trigger group (0 = scale from zero).')
@minValue(0)
param alwaysReadyHttpInstances int = 1

// Graph gives the webhook 3 s to answer (GRAPH.md §6.6) and counts >2.9 s as slow; a cold start
// alone can exceed that, so the HTTP group ('http' is the platform's name for all HTTP triggers) is
// kept warm. Non-HTTP functions still scale from zero.
var alwaysReady = alwaysReadyHttpInstances > 0 ? [{ name: 'http', instanceCount: alwaysReadyHttpInstances }] : []

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: planId
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${deploymentBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: alwaysReady
      }
      runtime: {
        name: runtimeName
        version: runtimeVersion
      }
    }
  }
}

output id string = site.id
output name string = site.name
// Flex Consumption apps can get a unique default host name (not always <name>.azurewebsites.net),
// so callers take it from here rather than building it from the name.
output defaultHostName string = site.properties.defaultHostName
