// inferq on Azure: Functions (Flex Consumption) + Storage (queues, blobs, tables) + Event Hubs + App Insights,
// wired with one user-assigned managed identity and no keys anywhere. Deploy with `azd up` (see infra/README.md).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; it seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Azure region for all resources (one that offers Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create; defaults to rg-<environmentName>.')
param resourceGroupName string = ''

@description('Python version of the Functions runtime.')
@allowed([
  '3.10'
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Memory of each function instance in MB (2048 MB is one vCPU; ONNX models want at least that).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on function instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances, e.g. [{ name: \'http\', instanceCount: 1 }] or [{ name: \'function:worker\', instanceCount: 1 }]. None by default: nothing is billed while idle.')
param alwaysReady array = []

@description('Partitions of the usage hub (the cap on parallel billing consumers; cannot be lowered later).')
@minValue(1)
@maxValue(32)
param usagePartitionCount int = 4

@description('Throughput units of the Event Hubs namespace.')
@minValue(1)
@maxValue(40)
param eventHubsCapacity int = 1

@description('Replication of the storage account (geo-redundant by default: the usage ledger is billing data).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_GRS'

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

// Must match the service name in azure.yaml: azd deploys the code to the resource carrying this tag.
var serviceName = 'api'
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
  }
}

module eventHubs 'modules/eventhubs.bicep' = {
  name: 'eventhubs'
  scope: rg
  params: {
    name: 'evhns-${resourceToken}'
    location: location
    tags: tags
    capacity: eventHubsCapacity
    usagePartitionCount: usagePartitionCount
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    jobQueueName: storage.outputs.jobQueueName
    poisonQueueName: storage.outputs.poisonQueueName
    eventHubNamespaceName: eventHubs.outputs.name
    usageHubName: eventHubs.outputs.usageHubName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  // The host starts as soon as the app exists: let it find its roles already granted.
  dependsOn: [
    rbac
  ]
  params: {
    name: 'func-${resourceToken}'
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    appTags: union(tags, {
      'azd-service-name': serviceName
    })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    eventHubFullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReady: alwaysReady
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_EVENTHUB_NAMESPACE string = eventHubs.outputs.name
output AZURE_EVENTHUB_FULLY_QUALIFIED_NAMESPACE string = eventHubs.outputs.fullyQualifiedNamespace
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
