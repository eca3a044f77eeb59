// Flex Consumption plan (FC1). One app per plan (a Flex Consumption rule).

param name string
param location string = resourceGroup().location
param tags object = {}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // Flex Consumption runs on Linux.
    reserved: true
  }
}

output id string = plan.id
output name string = plan.name
