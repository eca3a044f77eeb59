// The app's one identity. User-assigned (not system-assigned) so that role assignments can be made
// before the Function App exists, and so the same client id can be named in app settings
// (AzureWebJobsStorage__clientId, AZURE_CLIENT_ID, APPLICATIONINSIGHTS_AUTHENTICATION_STRING).

param name string
param location string = resourceGroup().location
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
