// The function app on the Flex Consumption plan (FC1). It runs as the user-assigned identity and every
// connection is identity-based: the app settings carry endpoints and the identity's client id, never a key or a
// connection string with a secret in it.
//
// The connection prefixes (AzureWebJobsStorage, EventHubConnection) are STORAGE_CONNECTION and
// EVENTHUB_CONNECTION in shared/bindings.py, the `connection=` of the triggers in function_app.py;
// tests/infra/test_bicep.py checks each binding's connection has its settings here.

@description('Name of the function app.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to the plan.')
param tags object = {}

@description('Tags applied to the function app (azd finds the app by its azd-service-name tag).')
param appTags object = {}

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Primary blob endpoint of the storage account (https://<account>.blob.core.windows.net/).')
param blobEndpoint string

@description('Primary queue endpoint of the storage account.')
param queueEndpoint string

@description('Primary table endpoint of the storage account.')
param tableEndpoint string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Fully qualified Event Hubs namespace (<name>.servicebus.windows.net).')
param eventHubFullyQualifiedNamespace string

@description('Application Insights connection string (not a secret: local auth is disabled on the component).')
param applicationInsightsConnectionString string

@description('Python version of the Functions runtime.')
@allowed([
  '3.10'
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Memory of each instance in MB; CPU scales with it (2048 MB is one vCPU).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Upper bound on instances the app scales out to (per-function groups share it).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances, e.g. [{ name: \'http\', instanceCount: 1 }]; none by default, so an idle app costs nothing.')
param alwaysReady array = []

@description('Path, inside the app package, of the deployments/tenants/prices config file.')
param configPath string = 'config/inferq.toml'

@description('Writable folder where model files from remote sources (Blob URL, s3://) are cached; the app package is read-only.')
param modelsDir string = '/tmp/inferq-models'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:On Flex Consumption a zone-redundant plan keeps at least two always-ready instances per function group, billed around the clock; this template's default is pay-per-execution with nothing running at idle.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:This is a public inference API called over the internet by SDK clients; every request is authenticated with a tenant API key by the app.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales to zero by design (no idle cost); minimum instances are the alwaysReady parameter, for environments that want them.
  // checkov:skip=CKV_AZURE_17:Client certificates are not how the API's SDK clients authenticate (they send API keys); requiring them would break every client.
  name: name
  location: location
  tags: appTags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // Readiness, not liveness: 503 naming the backend (queue, job store, blobs, ledger, usage stream) that does not
      // answer, so an instance that can't reach storage is taken out of rotation instead of failing every request.
      healthCheckPath: '/health/ready'
      appSettings: [
        // Functions host storage (AzureWebJobsStorage) and the queue triggers' connection.
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: blobEndpoint
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: queueEndpoint
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: tableEndpoint
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // The Event Hub trigger's connection (and the namespace the usage producer publishes to).
        {
          name: 'EventHubConnection__fullyQualifiedNamespace'
          value: eventHubFullyQualifiedNamespace
        }
        {
          name: 'EventHubConnection__credential'
          value: 'managedidentity'
        }
        {
          name: 'EventHubConnection__clientId'
          value: identityClientId
        }
        // Application Insights with Entra authentication.
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        // HTTP streams (azurefunctions-extensions-http-fastapi): the worker starts the web server the host
        // forwards HTTP requests to only when it indexes the functions at start-up, so responses stream.
        {
          name: 'PYTHON_ENABLE_INIT_INDEXING'
          value: '1'
        }
        // The application: DefaultAzureCredential picks the user-assigned identity from AZURE_CLIENT_ID.
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'INFERQ_BACKEND'
          value: 'azure'
        }
        {
          name: 'INFERQ_CONFIG'
          value: configPath
        }
        // The package is mounted read-only: model files from a Blob URL or s3:// are cached on the instance's disk.
        {
          name: 'INFERQ_MODELS_DIR'
          value: modelsDir
        }
        // Jobs an instance runs at once: host.json's queues batchSize + newBatchThreshold (16 + 8). The worker's
        // fair sharing keeps INFERQ_TENANT_MAX_RUNNING of these slots for other tenants.
        {
          name: 'INFERQ_WORKER_CONCURRENCY'
          value: '24'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
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
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Publishing with a username/password is off: azd deploys with an Entra token.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = functionApp.id
output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output uri string = 'https://${functionApp.properties.defaultHostName}'
