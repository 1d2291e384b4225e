// The storage account behind the pipeline: the Functions host's own state (AzureWebJobsStorage), the
// deployment package, the job queue and its poison queue, payload/model blobs, and the job, usage-ledger and
// dead-letter tables. Shared keys are off: every client authenticates with Entra ID.
//
// The queue, table and container names below are the ones in shared/bindings.py;
// tests/infra/test_bicep.py fails if the two drift apart.

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the account.')
param tags object = {}

@description('Replication of the account. Geo-redundant by default: the usage ledger is billing data. Standard_LRS is fine for a dev environment.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_GRS'

@description('Days a deleted blob or container can be restored.')
@minValue(1)
@maxValue(365)
param deleteRetentionDays int = 7

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches storage over its public endpoint; network access stays open but every request needs an Entra token (shared keys are disabled).
  // checkov:skip=CKV_AZURE_59:Same as CKV_AZURE_35: the public endpoint is required without a VNet, and authorization is Entra-only.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Blob: deployment package (Flex Consumption), request/response payloads (claim-check), model files.
// ---------------------------------------------------------------------------------------------------------------

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: deleteRetentionDays
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'app-package'
  properties: {
    publicAccess: 'None'
  }
}

resource payloadContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'inferq-payloads'
  properties: {
    publicAccess: 'None'
  }
}

resource modelsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'inferq-models'
  properties: {
    publicAccess: 'None'
  }
}

// Stream chunks (`streams/<job>/<n>`) and claim-check payloads (`payloads/<job>.json`) are deleted by the app once
// used; what a crashed relay or worker left behind is swept after a day (a job still queued after a day has
// expired: INFERQ_JOB_TTL_S). Only those two prefixes: kept usage batches (`replay/usage/`), dead-lettered usage
// events (`deadletter/usage/`) and large job results (`results/`) share the container and must stay.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'sweep-streams-and-payloads'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                'inferq-payloads/streams/'
                'inferq-payloads/payloads/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 1
                }
              }
            }
          }
        }
      ]
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Queue: the job queue and the poison queue the Functions host moves a message to after maxDequeueCount.
// ---------------------------------------------------------------------------------------------------------------

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource jobQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'inferq-jobs'
}

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: 'inferq-jobs-poison'
}

// ---------------------------------------------------------------------------------------------------------------
// Table: jobs, the usage ledger (exactly-once billing totals), dead-lettered usage events and job outcomes per
// deployment (GET /deployments).
// ---------------------------------------------------------------------------------------------------------------

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource jobsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: 'inferqjobs'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: 'inferqusage'
}

resource deadLetterTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: 'inferqdeadletters'
}

resource statsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: 'inferqstats'
}

resource budgetsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: 'inferqbudgets'
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output payloadContainerName string = payloadContainer.name
output modelsContainerName string = modelsContainer.name
output jobQueueName string = jobQueue.name
output poisonQueueName string = poisonQueue.name
output jobsTableName string = jobsTable.name
output ledgerTableName string = ledgerTable.name
output deadLetterTableName string = deadLetterTable.name
output statsTableName string = statsTable.name
output budgetsTableName string = budgetsTable.name
