// The usage stream: an Event Hubs namespace with local (SAS key) authentication disabled, the usage hub the
// workers publish to (partition key: tenant), and the consumer group the billing function reads with.
//
// The hub and consumer-group names are the ones in shared/bindings.py; tests/infra/test_bicep.py keeps them in
// sync.

@description('Name of the Event Hubs namespace.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the namespace.')
param tags object = {}

@description('Throughput units of the Standard namespace (1 TU = 1 MB/s or 1,000 events/s in).')
@minValue(1)
@maxValue(40)
param capacity int = 1

@description('Partitions of the usage hub: the upper bound on parallel billing consumers. Cannot be lowered later.')
@minValue(1)
@maxValue(32)
param usagePartitionCount int = 4

@description('Days usage events stay in the hub (Standard allows up to 7).')
@minValue(1)
@maxValue(7)
param messageRetentionInDays int = 7

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: capacity
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: false
  }
}

resource usageHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: 'inferq-usage'
  properties: {
    partitionCount: usagePartitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource billingConsumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: usageHub
  name: 'billing'
  properties: {
    userMetadata: 'The billing function (Event Hub trigger) that totals usage per 1,000 tokens.'
  }
}

output id string = namespace.id
output name string = namespace.name
// '<name>.servicebus.windows.net' in the public cloud; derived from the endpoint so sovereign clouds work too.
output fullyQualifiedNamespace string = split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output usageHubName string = usageHub.name
output billingConsumerGroupName string = billingConsumerGroup.name
