// Role assignments for the function app's user-assigned identity: only the data-plane roles the code and the
// Functions host need, each on the narrowest scope that works.
//
//   role                            scope                  why
//   Storage Blob Data Owner         storage account        AzureWebJobsStorage: the host creates and leases its own
//                                                          containers (keys, leases, Event Hub checkpoints) and
//                                                          reads the deployment package; the app's payload/model
//                                                          blobs live in the same account.
//   Storage Table Data Contributor  storage account        the jobs/ledger/dead-letter tables, and the host's
//                                                          diagnostic-event tables, which it creates per month.
//   Storage Queue Data Contributor  each of the 2 queues   send jobs (HTTP), receive/update/delete them (worker),
//                                                          move a message to the poison queue (host), drain it.
//   Azure Event Hubs Data Sender    the usage hub          workers publish usage events.
//   Azure Event Hubs Data Receiver  the usage hub          the billing function's Event Hub trigger.
//   Monitoring Metrics Publisher    Application Insights   Entra-authenticated telemetry (local auth is off).
//
// Storage Queue Data Message Processor is not granted: Queue Data Contributor already includes its permissions,
// and the worker also needs to update messages (visibility timeout), which the processor role cannot.

@description('Principal (object) id of the user-assigned identity.')
param principalId string

@description('Name of the storage account.')
param storageAccountName string

@description('Name of the job queue.')
param jobQueueName string

@description('Name of the poison queue.')
param poisonQueueName string

@description('Name of the Event Hubs namespace.')
param eventHubNamespaceName string

@description('Name of the usage hub.')
param usageHubName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

// Azure built-in role definition ids (the same in every tenant). tests/infra/test_bicep.py checks each one against
// its own table of built-in role names and ids.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource jobQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: jobQueueName
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: poisonQueueName
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource usageHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: eventHubNamespace
  name: usageHubName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource storageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
  }
}

resource storageTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
  }
}

resource jobQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(jobQueue.id, principalId, roles.storageQueueDataContributor)
  scope: jobQueue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
  }
}

resource poisonQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, principalId, roles.storageQueueDataContributor)
  scope: poisonQueue
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
  }
}

resource eventHubsDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(usageHub.id, principalId, roles.eventHubsDataSender)
  scope: usageHub
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
  }
}

resource eventHubsDataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(usageHub.id, principalId, roles.eventHubsDataReceiver)
  scope: usageHub
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
  }
}

resource monitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}
