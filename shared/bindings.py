"""Names shared by the function bindings, the adapters and the Bicep template.

One place, so a queue or hub renamed in the code without the infrastructure (or the reverse) fails a test.
"""

from typing import Final

STORAGE_CONNECTION: Final = "AzureWebJobsStorage"
JOB_QUEUE: Final = "inferq-jobs"
POISON_QUEUE: Final = f"{JOB_QUEUE}-poison"

EVENTHUB_CONNECTION: Final = "EventHubConnection"
USAGE_HUB: Final = "inferq-usage"
BILLING_CONSUMER_GROUP: Final = "billing"

JOBS_TABLE: Final = "inferqjobs"
LEDGER_TABLE: Final = "inferqusage"
DEADLETTER_TABLE: Final = "inferqdeadletters"
STATS_TABLE: Final = "inferqstats"
BUDGETS_TABLE: Final = "inferqbudgets"

PAYLOAD_CONTAINER: Final = "inferq-payloads"
MODELS_CONTAINER: Final = "inferq-models"
DEPLOYMENT_CONTAINER: Final = "app-package"
