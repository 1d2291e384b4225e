// The one identity the function app runs as. Every data-plane connection (storage, Event Hubs, Application
// Insights, and DefaultAzureCredential in the SDK adapters) authenticates as this identity: there are no keys.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the identity.')
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
