"""Read the Bicep templates under infra/ for the infrastructure tests.

pycep parses a .bicep file into JSON-like dicts: `resources`, `variables`, `modules`, ... keyed by symbolic name,
each resource with its `type`, `existing` flag and `config` (the body). Expressions stay as nested dicts
(`{"operator": {"type": "property_accessor", ...}}`, `{"function": {...}}`); interpolated strings stay as text.
One caveat: a string literal and a bare identifier both come out as a plain `str`, so `name: 'inferq-jobs'` and
`name: jobQueueName` look alike. The templates keep every name the code binds to as a literal on the resource
that creates it, which is what `InfraNames.load` reads.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from pycep import BicepParser

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"

STORAGE_ACCOUNT = "Microsoft.Storage/storageAccounts"
QUEUE = "Microsoft.Storage/storageAccounts/queueServices/queues"
TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
EVENTHUB_NAMESPACE = "Microsoft.EventHub/namespaces"
EVENT_HUB = "Microsoft.EventHub/namespaces/eventhubs"
CONSUMER_GROUP = "Microsoft.EventHub/namespaces/eventhubs/consumergroups"
APP_INSIGHTS = "Microsoft.Insights/components"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
SERVER_FARM = "Microsoft.Web/serverfarms"
SITE = "Microsoft.Web/sites"
MANAGEMENT_POLICY = "Microsoft.Storage/storageAccounts/managementPolicies"

GUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)

# Which app settings give an identity-based connection the endpoint of each service it is used for.
# https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
ENDPOINT_SETTINGS = {
    "blob": ("accountName", "blobServiceUri"),
    "queue": ("accountName", "queueServiceUri"),
    "table": ("accountName", "tableServiceUri"),
    "eventhub": ("fullyQualifiedNamespace",),
}


@cache
def _parser() -> BicepParser:
    return BicepParser()


def parse(text: str) -> dict[str, Any]:
    """Parse Bicep source; raises (lark/pycep errors) when it is not valid Bicep."""
    return dict(_parser().parse(text=text))


@dataclass(frozen=True)
class Resource:
    file: str  # relative to the infra directory
    symbol: str
    type: str
    existing: bool
    config: Mapping[str, Any]

    @property
    def name(self) -> Any:
        return self.config.get("name")


class Templates:
    """Every .bicep file of one infra directory, as text and parsed."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.texts = dict(texts)
        self.parsed = {path: parse(text) for path, text in self.texts.items()}

    @classmethod
    def load(cls, infra_dir: Path = INFRA_DIR) -> Templates:
        files = sorted(infra_dir.rglob("*.bicep"))
        return cls({f.relative_to(infra_dir).as_posix(): f.read_text(encoding="utf-8") for f in files})

    def resources(self, type_: str | None = None, *, existing: bool | None = False) -> list[Resource]:
        """Resources of a type (all when None); by default only those the templates create, not `existing` ones."""
        found = []
        for path, parsed in self.parsed.items():
            for symbol, attrs in parsed.get("resources", {}).items():
                resource = Resource(path, symbol, attrs["type"], bool(attrs["existing"]), attrs["config"])
                if (type_ is None or resource.type == type_) and (existing is None or resource.existing == existing):
                    found.append(resource)
        return found

    def resource(self, file: str, symbol: str) -> Resource:
        attrs = self.parsed[file]["resources"][symbol]
        return Resource(file, symbol, attrs["type"], bool(attrs["existing"]), attrs["config"])

    def variables(self, file: str) -> dict[str, Any]:
        return {name: attrs["value"] for name, attrs in self.parsed[file].get("variables", {}).items()}

    def modules(self, file: str) -> dict[str, Mapping[str, Any]]:
        return dict(self.parsed[file].get("modules", {}))

    def app_settings(self) -> dict[str, Any]:
        """The app settings of the function app(s), name -> value as pycep renders it."""
        settings: dict[str, Any] = {}
        for site in self.resources(SITE):
            for item in site.config.get("properties", {}).get("siteConfig", {}).get("appSettings", []):
                settings[item["name"]] = item["value"]
        return settings

    def role_grants(self) -> list[RoleGrant]:
        grants = []
        for assignment in self.resources(ROLE_ASSIGNMENT):
            properties = assignment.config["properties"]
            role_ids = _guids(properties["roleDefinitionId"], self.variables(assignment.file))
            if len(role_ids) != 1:
                raise ValueError(f"{assignment.file}:{assignment.symbol}: cannot resolve its role id: {role_ids}")
            scope = assignment.config.get("scope")
            grants.append(
                RoleGrant(
                    file=assignment.file,
                    symbol=assignment.symbol,
                    role_id=role_ids.pop(),
                    scope=self.resource(assignment.file, scope) if isinstance(scope, str) else None,
                    principal_id=properties.get("principalId"),
                    principal_type=properties.get("principalType"),
                )
            )
        return grants


@dataclass(frozen=True)
class RoleGrant:
    file: str
    symbol: str
    role_id: str  # lower case
    scope: Resource | None  # None: the deployment's own scope (the resource group)
    principal_id: Any
    principal_type: Any


def _guids(expression: Any, variables: Mapping[str, Any]) -> set[str]:
    """GUIDs in an expression, following `var.key` property accessors into the file's variables."""
    if isinstance(expression, str):
        return {g.lower() for g in GUID.findall(expression)}
    if isinstance(expression, Mapping):
        accessor = expression.get("operator", {})
        if accessor.get("type") == "property_accessor":
            operands = accessor["operands"]
            base, key = operands.get("operand_1"), operands.get("operand_2")
            if isinstance(base, str) and isinstance(key, str) and isinstance(variables.get(base), Mapping):
                return _guids(variables[base].get(key), variables)
        return set().union(*(_guids(v, variables) for v in expression.values()))
    if isinstance(expression, list):
        return set().union(*(_guids(v, variables) for v in expression))
    return set()


def accessor_path(expression: Any) -> str | None:
    """`a.b.c` for a property-accessor chain such as `storage.outputs.jobQueueName`; None for anything else."""
    if isinstance(expression, str):
        return expression
    accessor = expression.get("operator", {}) if isinstance(expression, Mapping) else {}
    if accessor.get("type") != "property_accessor":
        return None
    left, right = (accessor_path(accessor["operands"][k]) for k in ("operand_1", "operand_2"))
    return f"{left}.{right}" if left and right else None


@dataclass(frozen=True)
class InfraNames:
    """The names the templates create and the app settings they give the function app."""

    queues: frozenset[str]
    tables: frozenset[str]
    containers: frozenset[str]
    event_hubs: frozenset[str]
    consumer_groups: Mapping[str, frozenset[str]]  # event hub -> its consumer groups
    app_settings: Mapping[str, Any]

    @classmethod
    def load(cls, templates: Templates) -> InfraNames:
        def names(type_: str) -> frozenset[str]:
            return frozenset(str(r.name) for r in templates.resources(type_))

        groups: dict[str, set[str]] = {}
        for group in templates.resources(CONSUMER_GROUP):
            parent = group.config.get("parent")
            if isinstance(parent, str):
                hub, name = str(templates.resource(group.file, parent).name), str(group.name)
            else:  # 'hub/group' style name, no parent
                hub, _, name = str(group.name).rpartition("/")
            groups.setdefault(hub, set()).add(name)
        return cls(
            queues=names(QUEUE),
            tables=names(TABLE),
            containers=names(CONTAINER),
            event_hubs=names(EVENT_HUB),
            consumer_groups={hub: frozenset(g) for hub, g in groups.items()},
            app_settings=templates.app_settings(),
        )


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def function_bindings(functions: Iterable[Any]) -> list[dict[str, Any]]:
    """Every binding of the functions (`app.get_functions()`, which an app answers once per process), as the host
    sees it in the function metadata (`type`, `direction`, `name`, `queueName`, `eventHubName`, `consumerGroup`,
    `connection`, ...), with the function's name under `function`."""
    found = []
    for fn in functions:
        for binding in fn.get_bindings():
            entry = {key: _plain(value) for key, value in binding.get_dict_repr().items()}
            entry["function"] = fn.get_function_name()
            found.append(entry)
    return found


def connection_problems(connection: str, settings: Mapping[str, Any], services: Iterable[str]) -> list[str]:
    """What is missing for `connection` to be an identity-based connection to `services` (see ENDPOINT_SETTINGS)."""
    problems = []
    if connection in settings:
        problems.append(f"app setting {connection!r} is set: a connection string, not an identity-based connection")
    if settings.get(f"{connection}__credential") != "managedidentity":
        problems.append(f"app setting {connection}__credential must be 'managedidentity'")
    if f"{connection}__clientId" not in settings:
        problems.append(f"app setting {connection}__clientId (the user-assigned identity) is missing")
    for service in sorted(set(services)):
        accepted = [f"{connection}__{suffix}" for suffix in ENDPOINT_SETTINGS[service]]
        if not any(name in settings for name in accepted):
            problems.append(f"connection {connection!r} has no {service} endpoint: set one of {accepted}")
    return problems


def consistency_problems(infra: InfraNames, names: ModuleType, bindings: list[dict[str, Any]]) -> list[str]:
    """Where the templates, shared/bindings.py (`names`) and the function app's `bindings` disagree. Empty: in sync."""
    problems: list[str] = []

    def expect(what: str, actual: Iterable[Any], expected: Iterable[Any]) -> None:
        if set(actual) != set(expected):
            problems.append(f"{what}: found {sorted(set(actual))}, expected {sorted(set(expected))}")

    # 1. The templates create exactly what shared/bindings.py names.
    expect("queues in infra/", infra.queues, {names.JOB_QUEUE, names.POISON_QUEUE})
    if names.POISON_QUEUE != f"{names.JOB_QUEUE}-poison":
        problems.append(f"POISON_QUEUE must be JOB_QUEUE + '-poison' (the host's name): {names.POISON_QUEUE!r}")
    expect(
        "tables in infra/",
        infra.tables,
        {names.JOBS_TABLE, names.LEDGER_TABLE, names.DEADLETTER_TABLE, names.STATS_TABLE, names.BUDGETS_TABLE},
    )
    expect(
        "blob containers in infra/",
        infra.containers,
        {names.PAYLOAD_CONTAINER, names.MODELS_CONTAINER, names.DEPLOYMENT_CONTAINER},
    )
    expect("event hubs in infra/", infra.event_hubs, {names.USAGE_HUB})
    expect(
        f"consumer groups of {names.USAGE_HUB!r} in infra/",
        infra.consumer_groups.get(names.USAGE_HUB, frozenset()),
        {names.BILLING_CONSUMER_GROUP},
    )
    # The host's own storage (keys, leases, timers, Event Hub checkpoints, diagnostics) uses blob, queue, table.
    problems += connection_problems(names.STORAGE_CONNECTION, infra.app_settings, ("blob", "queue", "table"))
    problems += connection_problems(names.EVENTHUB_CONNECTION, infra.app_settings, ("eventhub",))

    # 2. The function app binds to those names, and to nothing the templates do not create.
    queue_triggers = [b for b in bindings if b["type"] == "queueTrigger"]
    hub_triggers = [b for b in bindings if b["type"] == "eventHubTrigger"]
    expect(
        "queues with a trigger in the function app",
        {b["queueName"] for b in queue_triggers},
        {names.JOB_QUEUE, names.POISON_QUEUE},
    )
    expect(
        "queue trigger connections in the function app",
        {b.get("connection") for b in queue_triggers},
        {names.STORAGE_CONNECTION},
    )
    expect(
        "event hub triggers (hub, consumer group, connection, cardinality) in the function app",
        {(b["eventHubName"], b.get("consumerGroup"), b.get("connection"), b.get("cardinality")) for b in hub_triggers},
        {(names.USAGE_HUB, names.BILLING_CONSUMER_GROUP, names.EVENTHUB_CONNECTION, "many")},
    )
    services_by_connection: dict[str, set[str]] = {}
    for b in bindings:
        where = f"function {b['function']!r}, binding {b['name']!r} ({b['type']})"
        if "queueName" in b and b["queueName"] not in infra.queues:
            problems.append(f"{where}: queue {b['queueName']!r} is not created by infra/")
        if "eventHubName" in b:
            if b["eventHubName"] not in infra.event_hubs:
                problems.append(f"{where}: event hub {b['eventHubName']!r} is not created by infra/")
            group = b.get("consumerGroup", "$Default")
            if b["type"] == "eventHubTrigger" and group not in infra.consumer_groups.get(b["eventHubName"], ()):
                problems.append(f"{where}: consumer group {group!r} is not created by infra/")
        if b["type"] in ("blob", "blobTrigger") and str(b.get("path", "")).split("/")[0] not in infra.containers:
            problems.append(f"{where}: container of {b.get('path')!r} is not created by infra/")
        if b["type"] == "table" and b.get("tableName") not in infra.tables:
            problems.append(f"{where}: table {b.get('tableName')!r} is not created by infra/")
        if b.get("connection"):
            # queue/queueTrigger -> queue, blob/blobTrigger -> blob, eventHub/eventHubTrigger -> eventhub, ...
            kinds = [s for s in ENDPOINT_SETTINGS if b["type"].lower().startswith(s)]
            services_by_connection.setdefault(b["connection"], set()).update(kinds)
    for connection, services in sorted(services_by_connection.items()):
        problems += [f"binding connection: {p}" for p in connection_problems(connection, infra.app_settings, services)]
    return problems
