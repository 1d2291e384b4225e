"""The Bicep templates: they parse, grant only known built-in roles on narrow scopes, hold no keys, and create
exactly the queues, tables, containers and hubs that shared/bindings.py names and function_app.py binds to."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
import bicep
import pytest
from bicep import (
    APP_INSIGHTS,
    CONTAINER,
    EVENT_HUB,
    EVENTHUB_NAMESPACE,
    INFRA_DIR,
    MANAGEMENT_POLICY,
    QUEUE,
    REPO_ROOT,
    SERVER_FARM,
    SITE,
    STORAGE_ACCOUNT,
    InfraNames,
    Templates,
    accessor_path,
    consistency_problems,
    function_bindings,
)

from shared import bindings as names

BICEP_FILES = sorted(INFRA_DIR.rglob("*.bicep"))

# Azure built-in role definitions (the ids are the same in every tenant), from
# https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
KNOWN_BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": "Storage Queue Data Message Processor",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "19e7f393-937e-4f77-808e-94535e297925": "Storage Queue Data Reader",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "76199698-9eea-4c19-bc75-cec21354c6b6": "Storage Table Data Reader",
    "f526a384-b230-433a-b45c-95f59c4a2dec": "Azure Event Hubs Data Owner",
    "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
    "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

# (role, type of the resource it is granted on): what the host and the code need, and no more.
EXPECTED_GRANTS = {
    ("Storage Blob Data Owner", STORAGE_ACCOUNT),  # host containers (keys, leases, checkpoints), package, payloads
    ("Storage Table Data Contributor", STORAGE_ACCOUNT),  # our tables + the host's monthly diagnostics tables
    ("Storage Queue Data Contributor", QUEUE),  # the job queue and the poison queue, each on its own
    ("Azure Event Hubs Data Sender", EVENT_HUB),  # workers publish usage
    ("Azure Event Hubs Data Receiver", EVENT_HUB),  # the billing trigger
    ("Monitoring Metrics Publisher", APP_INSIGHTS),  # Entra-authenticated telemetry
}

REQUIRED_OUTPUTS = {
    "AZURE_LOCATION",
    "AZURE_FUNCTION_APP_NAME",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_EVENTHUB_NAMESPACE",
    "SERVICE_API_NAME",
    "SERVICE_API_URI",
}


def reference_app(job_queue: str = names.JOB_QUEUE) -> func.FunctionApp:
    """The triggers function_app.py is meant to have, built from shared/bindings.py: the baseline the negative
    tests change one thing in, so they fail for that one reason."""
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="msg", queue_name=job_queue, connection=names.STORAGE_CONNECTION)
    def run_job(msg: func.QueueMessage) -> None: ...

    @app.queue_trigger(arg_name="msg", queue_name=names.POISON_QUEUE, connection=names.STORAGE_CONNECTION)
    def fail_poisoned_job(msg: func.QueueMessage) -> None: ...

    @app.event_hub_message_trigger(
        arg_name="events",
        event_hub_name=names.USAGE_HUB,
        connection=names.EVENTHUB_CONNECTION,
        consumer_group=names.BILLING_CONSUMER_GROUP,
        cardinality=func.Cardinality.MANY,
    )
    def bill_usage(events: list[func.EventHubEvent]) -> None: ...

    return app


def _module(templates: Templates, symbol: str, file: str = "main.bicep") -> dict[str, Any]:
    return dict(templates.modules(file)[symbol]["config"])


def _param_default(templates: Templates, file: str, param: str) -> Any:
    return templates.parsed[file]["parameters"][param].get("default")


# --- (a) every template parses ------------------------------------------------------------------------------------


def test_there_are_templates() -> None:
    assert INFRA_DIR / "main.bicep" in BICEP_FILES
    assert len(BICEP_FILES) > 1, "main.bicep is expected to compose modules under infra/modules/"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA_DIR).as_posix())
def test_template_parses(path: Path) -> None:
    parsed = bicep.parse(path.read_text(encoding="utf-8"))
    assert parsed.get("resources") or parsed.get("modules"), f"{path} declares nothing"


def test_main_composes_existing_modules(templates: Templates) -> None:
    for symbol, module in templates.modules("main.bicep").items():
        assert module["type"] == "local", f"module {symbol}: keep modules local (checkov and offline builds)"
        assert (INFRA_DIR / module["detail"]["path"]).is_file(), f"module {symbol}: {module['detail']['path']}"


def test_parameters_file_feeds_main(templates: Templates) -> None:
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    main_params = templates.parsed["main.bicep"]["parameters"]
    assert parameters["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert parameters["location"]["value"] == "${AZURE_LOCATION}"
    assert set(parameters) <= set(main_params), "main.parameters.json sets a parameter main.bicep does not have"
    required = {name for name, attrs in main_params.items() if "default" not in attrs}
    assert required <= set(parameters), "main.bicep has a parameter without default that azd cannot fill"


def test_azure_yaml_deploys_the_tagged_function_app(templates: Templates) -> None:
    text = (REPO_ROOT / "azure.yaml").read_text(encoding="utf-8")
    service_name = templates.variables("main.bicep")["serviceName"]
    service = re.search(rf"^services:\n  {re.escape(service_name)}:\n((?:    .*\n?)+)", text, re.MULTILINE)
    assert service, f"azure.yaml has no service {service_name!r}"
    settings = dict(re.findall(r"^    (\w+): *(\S+)", service.group(1), re.MULTILINE))
    assert settings == {"project": ".", "language": "python", "host": "function"}
    app_tags = _module(templates, "functionApp")["params"]["appTags"]
    assert app_tags["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "serviceName"}


# --- (b) roles: known built-in ids, the expected set, narrow scopes -----------------------------------------------


def test_role_ids_are_known_built_in_roles_kept_in_one_place(templates: Templates) -> None:
    found = {(path, guid.lower()) for path, text in templates.texts.items() for guid in bicep.GUID.findall(text)}
    unknown = {guid for _, guid in found} - set(KNOWN_BUILT_IN_ROLES)
    assert not unknown, f"not a known built-in role id: {unknown}"
    assert {path for path, _ in found} == {"modules/rbac.bicep"}, "role ids belong in rbac.bicep's `roles`"
    roles = templates.variables("modules/rbac.bicep")["roles"]
    assert {guid for _, guid in found} == {str(v).lower() for v in roles.values()}


def test_identity_gets_exactly_the_expected_roles_on_narrow_scopes(templates: Templates) -> None:
    grants = templates.role_grants()
    assert all(g.scope is not None for g in grants), "a role granted on the whole resource group"
    granted = {(KNOWN_BUILT_IN_ROLES.get(g.role_id, g.role_id), g.scope.type) for g in grants if g.scope}
    assert granted == EXPECTED_GRANTS


def test_role_assignments_target_the_app_identity(templates: Templates) -> None:
    for grant in templates.role_grants():
        assert grant.principal_type == "ServicePrincipal", grant.symbol
        assert grant.principal_id == "principalId", grant.symbol
    rbac = _module(templates, "rbac")["params"]
    assert accessor_path(rbac["principalId"]) == "identity.outputs.principalId"


def test_queue_role_covers_the_job_queue_and_the_poison_queue(templates: Templates) -> None:
    queue_scopes = {g.scope.name for g in templates.role_grants() if g.scope and g.scope.type == QUEUE}
    assert queue_scopes == {"jobQueueName", "poisonQueueName"}
    rbac = _module(templates, "rbac")["params"]
    assert accessor_path(rbac["jobQueueName"]) == "storage.outputs.jobQueueName"
    assert accessor_path(rbac["poisonQueueName"]) == "storage.outputs.poisonQueueName"
    assert accessor_path(rbac["usageHubName"]) == "eventHubs.outputs.usageHubName"
    outputs = templates.parsed["modules/storage.bicep"]["outputs"]
    assert templates.resource("modules/storage.bicep", "jobQueue").name == names.JOB_QUEUE
    assert accessor_path(outputs["jobQueueName"]["value"]) == "jobQueue.name"
    assert templates.resource("modules/storage.bicep", "poisonQueue").name == names.POISON_QUEUE
    assert accessor_path(outputs["poisonQueueName"]["value"]) == "poisonQueue.name"


# --- (c) names: infra/ == shared/bindings.py == function_app.py ---------------------------------------------------


def test_function_app_bindings_and_templates_agree(infra: InfraNames) -> None:
    from functions.azure.indexing import indexed  # a broken import deploys as "0 functions found": fail here instead

    app_bindings = function_bindings(indexed().values())
    assert consistency_problems(infra, names, app_bindings) == []


def test_reference_app_and_templates_agree(infra: InfraNames) -> None:
    assert consistency_problems(infra, names, function_bindings(reference_app().get_functions())) == []


def test_app_settings_are_identity_based(infra: InfraNames) -> None:
    settings = infra.app_settings
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["EventHubConnection__credential"] == "managedidentity"
    for client_id in ("AzureWebJobsStorage__clientId", "EventHubConnection__clientId", "AZURE_CLIENT_ID"):
        assert settings[client_id] == "identityClientId", client_id
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert settings["INFERQ_BACKEND"] == "azure"
    # Flex Consumption takes the runtime from functionAppConfig and rejects these settings.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"} & set(settings)


def test_http_streams_are_switched_on(infra: InfraNames) -> None:
    # The HTTP function hands out the HTTP streams extension's FastAPI responses (functions/azure/http.py); the
    # Python worker (3.12 and older) starts the web server the host forwards requests to only when it indexes the
    # functions at start-up. Without the setting, HTTP invocations wait for a request that never comes.
    assert infra.app_settings["PYTHON_ENABLE_INIT_INDEXING"] == "1"
    requirements = (REPO_ROOT / "requirements.txt").read_text()
    assert re.search(r"^azurefunctions-extensions-http-fastapi==", requirements, re.MULTILINE)


def test_config_path_setting_points_at_the_packaged_config(templates: Templates, infra: InfraNames) -> None:
    assert infra.app_settings["INFERQ_CONFIG"] == "configPath"
    config_path = _param_default(templates, "modules/functionapp.bicep", "configPath")
    assert (REPO_ROOT / config_path).is_file(), f"{config_path} is not in the repository (the app package)"


def test_no_keys_or_connection_strings(templates: Templates, infra: InfraNames) -> None:
    secret_sources = re.compile(
        r"list\w*Keys?\s*\(|listConnectionStrings|listAuthorizationRules|AccountKey=|SharedAccessKey|"
        r"DefaultEndpointsProtocol|@secure\(\)",
        re.IGNORECASE,
    )
    for path, text in templates.texts.items():
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
        assert not secret_sources.search(code), f"{path}: {secret_sources.search(code)}"
    # The one connection string: Application Insights', which holds no secret once local auth is off (below).
    connection_strings = {n for n in infra.app_settings if re.search(r"connection_?string", n, re.IGNORECASE)}
    assert connection_strings == {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
    assert names.STORAGE_CONNECTION not in infra.app_settings  # "AzureWebJobsStorage" = a connection string
    assert names.EVENTHUB_CONNECTION not in infra.app_settings


def test_local_authentication_is_off_everywhere(templates: Templates) -> None:
    (storage,) = templates.resources(STORAGE_ACCOUNT)
    assert {k: storage.config["properties"][k] for k in ("allowSharedKeyAccess", "allowBlobPublicAccess")} == {
        "allowSharedKeyAccess": False,
        "allowBlobPublicAccess": False,
    }
    assert storage.config["properties"]["supportsHttpsTrafficOnly"] is True
    assert storage.config["properties"]["minimumTlsVersion"] == "TLS1_2"
    for container in templates.resources(CONTAINER):
        assert container.config["properties"]["publicAccess"] == "None", container.name

    (namespace,) = templates.resources(EVENTHUB_NAMESPACE)
    assert namespace.config["sku"]["name"] == "Standard"
    assert namespace.config["properties"]["disableLocalAuth"] is True
    (hub,) = templates.resources(EVENT_HUB)
    assert hub.config["properties"]["partitionCount"] == "usagePartitionCount", "partition count is a parameter"

    (insights,) = templates.resources(APP_INSIGHTS)
    assert insights.config["properties"]["DisableLocalAuth"] is True


def test_function_app_runs_on_flex_consumption(templates: Templates) -> None:
    (plan,) = templates.resources(SERVER_FARM)
    assert plan.config["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    (site,) = templates.resources(SITE)
    assert site.config["identity"]["type"] == "UserAssigned"
    assert site.config["properties"]["httpsOnly"] is True
    config = site.config["properties"]["functionAppConfig"]
    assert config["deployment"]["storage"] == {
        "type": "blobContainer",
        "value": "${blobEndpoint}${deploymentContainerName}",
        "authentication": {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"},
    }
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert config["scaleAndConcurrency"] == {
        "instanceMemoryMB": "instanceMemoryMB",
        "maximumInstanceCount": "maximumInstanceCount",
        "alwaysReady": "alwaysReady",
    }
    file = "modules/functionapp.bicep"
    assert _param_default(templates, file, "pythonVersion") == "3.11"
    assert _param_default(templates, file, "alwaysReady") == [], "no always-ready instances unless asked: idle is free"
    assert _module(templates, "functionApp")["params"]["deploymentContainerName"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": "storage",
                "operand_2": {
                    "operator": {
                        "type": "property_accessor",
                        "operands": {"operand_1": "outputs", "operand_2": "deploymentContainerName"},
                    }
                },
            },
        }
    }


def test_main_outputs_what_azd_and_operators_need(templates: Templates) -> None:
    outputs = templates.parsed["main.bicep"]["outputs"]
    assert REQUIRED_OUTPUTS <= set(outputs)
    assert accessor_path(outputs["SERVICE_API_URI"]["value"]) == "functionApp.outputs.uri"
    function_app_outputs = templates.parsed["modules/functionapp.bicep"]["outputs"]
    assert function_app_outputs["uri"]["value"] == "https://${functionApp.properties.defaultHostName}"


# --- (d) the consistency check can fail ---------------------------------------------------------------------------


def _problems(infra: InfraNames, app: func.FunctionApp, shared_names: ModuleType = names) -> list[str]:
    return consistency_problems(infra, shared_names, function_bindings(app.get_functions()))


def test_check_fails_when_the_queue_is_renamed_in_a_copy_of_the_bicep(tmp_path: Path) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA_DIR, copy)
    storage = copy / "modules" / "storage.bicep"
    text = storage.read_text(encoding="utf-8")
    assert text.count(f"'{names.JOB_QUEUE}'") == 1
    storage.write_text(text.replace(f"'{names.JOB_QUEUE}'", "'inferq-jobs-renamed'"), encoding="utf-8")

    problems = _problems(InfraNames.load(Templates.load(copy)), reference_app())

    assert any("queues in infra/" in p and "inferq-jobs-renamed" in p for p in problems), problems
    assert any(f"queue {names.JOB_QUEUE!r} is not created by infra/" in p for p in problems), problems


def test_check_fails_when_the_app_binds_to_another_queue(infra: InfraNames) -> None:
    problems = _problems(infra, reference_app(job_queue="inferq-jobs-renamed"))
    assert any("'inferq-jobs-renamed' is not created by infra/" in p for p in problems), problems


def test_check_fails_when_a_connection_setting_is_missing(infra: InfraNames) -> None:
    settings = {k: v for k, v in infra.app_settings.items() if k != "EventHubConnection__fullyQualifiedNamespace"}
    problems = _problems(dataclasses.replace(infra, app_settings=settings), reference_app())
    assert any("'EventHubConnection' has no eventhub endpoint" in p for p in problems), problems


# --- (e) what the code reads on Azure, and what may be swept ------------------------------------------------------


def test_remote_model_sources_cache_outside_the_read_only_package(templates: Templates, infra: InfraNames) -> None:
    # Flex Consumption runs the package read-only: ModelSources caches Blob/S3 model files under
    # INFERQ_MODELS_DIR, which must therefore be set, to an absolute writable path (the instance's /tmp).
    assert infra.app_settings.get("INFERQ_MODELS_DIR") == "modelsDir"
    models_dir = _param_default(templates, "modules/functionapp.bicep", "modelsDir")
    assert isinstance(models_dir, str) and models_dir.startswith("/tmp/"), models_dir


STORAGE_FILE = "modules/storage.bicep"


def _lifecycle_rules(templates: Templates) -> list[dict[str, Any]]:
    policies = [r for r in templates.resources(MANAGEMENT_POLICY) if r.file == STORAGE_FILE]
    assert len(policies) == 1, "one lifecycle management policy on the storage account"
    assert policies[0].name == "default"
    return list(policies[0].config["properties"]["policy"]["rules"])


def _claim_check_key(tmp_path: Path) -> str:
    """Where the service really puts a claim-checked payload (a request over the inline threshold)."""
    from shared.bootstrap import bootstrap
    from shared.domain.jobs import Job
    from shared.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path, inline_payload_max_bytes=16)
    service = bootstrap(settings)
    gateway = service.gateway
    new = Job.new("job_lifecycle", "demo", "all-MiniLM-L6-v2")
    job = gateway._enqueue(*gateway._outgoing(new, {"input": ["x" * 100]}))
    assert job.payload_ref is not None
    return job.payload_ref


def test_lifecycle_rule_sweeps_only_stream_chunks_and_claim_check_payloads(
    templates: Templates, tmp_path: Path
) -> None:
    from shared.adapters.azure.jobs import RESULTS_PREFIX
    from shared.application import usage_ingest as billing_ingest
    from shared.runtimes import streams
    from shared.settings import Settings

    (rule,) = _lifecycle_rules(templates)
    assert rule["enabled"] is True and rule["type"] == "Lifecycle"
    definition = rule["definition"]
    assert definition["filters"]["blobTypes"] == ["blockBlob"]
    assert definition["actions"]["baseBlob"] == {"delete": {"daysAfterModificationGreaterThan": 1}}
    prefixes = definition["filters"]["prefixMatch"]
    # A prefix match is "<container>/<blob prefix>": the code's keys all land in the payload container.
    kept_keys = {
        "stream chunk": streams.chunk_key("job_1", 0),
        "claim-check payload": _claim_check_key(tmp_path),
    }
    for what, key in kept_keys.items():
        assert any(f"{names.PAYLOAD_CONTAINER}/{key}".startswith(p) for p in prefixes), f"{what} {key} not swept"
    assert sorted(prefixes) == sorted(f"{names.PAYLOAD_CONTAINER}/{k.split('/')[0]}/" for k in kept_keys.values())
    # Billing data and job results share the container and must never be swept.
    for key in (f"{billing_ingest.REPLAY_PREFIX}a.json", f"{billing_ingest.DEAD_LETTER_PREFIX}a.json",
                f"{RESULTS_PREFIX}/job_1/abc.json"):  # fmt: skip
        assert not any(f"{names.PAYLOAD_CONTAINER}/{key}".startswith(p) for p in prefixes), key
    # A payload is needed until its job ends; a job still queued after job_ttl_s expires without reading it.
    assert Settings(_env_file=None).job_ttl_s <= 24 * 3600


def test_the_worker_concurrency_setting_matches_what_host_json_runs_at_once(infra: InfraNames) -> None:
    queues = json.loads((REPO_ROOT / "host.json").read_text())["extensions"]["queues"]
    assert int(infra.app_settings["INFERQ_WORKER_CONCURRENCY"]) == queues["batchSize"] + queues["newBatchThreshold"]


def test_the_app_exports_its_telemetry_to_the_templates_application_insights(
    templates: Templates, infra: InfraNames
) -> None:
    """On Azure `telemetry.setup.configure` picks Azure Monitor from the setting the template fills with the component's
    connection string, and nothing else (no OTLP endpoint beside it); the exporter authenticates as the app's
    identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING, read by the exporter), which may publish to the component."""
    from shared.settings import Settings

    read = Settings.model_fields["applicationinsights_connection_string"].validation_alias
    assert read is not None and "APPLICATIONINSIGHTS_CONNECTION_STRING" in getattr(read, "choices", [read])
    assert infra.app_settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "applicationInsightsConnectionString"
    passed = _module(templates, "functionApp")["params"]["applicationInsightsConnectionString"]
    assert accessor_path(passed) == "monitoring.outputs.applicationInsightsConnectionString"
    outputs = templates.parsed["modules/monitoring.bicep"]["outputs"]
    assert accessor_path(outputs["applicationInsightsConnectionString"]["value"]) == (
        "applicationInsights.properties.ConnectionString"
    )
    assert not {n for n in infra.app_settings if n.startswith("OTEL_EXPORTER_OTLP")}
    assert infra.app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith(";Authorization=AAD")
    publishers = [g for g in templates.role_grants() if g.scope is not None and g.scope.type == APP_INSIGHTS]
    assert [KNOWN_BUILT_IN_ROLES[g.role_id] for g in publishers] == ["Monitoring Metrics Publisher"]
    assert [g.principal_id for g in publishers] == ["principalId"]  # the app's identity (rbac's principalId)
