"""The declarative config: deployments, the endpoints in front of them, tenants and prices, validated at start.

A TOML file (path from `Settings.config`); API keys are kept only as sha256 hashes.

Endpoints and deployments (Azure ML online endpoints): clients name an *endpoint* (`model`); its `traffic`
weights pick one of its deployments per request, and `mirror` copies a share of requests to a shadow
deployment. A deployment behind no `[[endpoints]]` entry is an implicit endpoint of its own name (100% traffic).
Names are case-insensitive. An endpoint may share its name with a deployment behind it, never with another one.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from decimal import Decimal
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from shared.domain.auth_config import ApiKey, AuthConfig
from shared.domain.content_safety import Blocklist, Category, ContentSafetyPolicy, Severity
from shared.domain.errors import ConfigError, NotFound
from shared.schemas.usage import Meter

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# Names travel in URLs, headers, job ids and blob keys: letters, digits, '.', '_' and '-'.
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
Percent = Annotated[int, Field(ge=0, le=100)]
Share = Annotated[int, Field(ge=1, le=100)]


class RunnerKind(StrEnum):
    EMBEDDINGS = "embeddings"
    CHAT = "chat-completion"
    SCORE = "score"  # a user's scoring script with init() and run(raw_data), as on Azure ML
    TEXT_CLASSIFIER = "text-classifier"  # an ONNX classifier that content safety rates text with
    IMAGE_EMBEDDINGS = "image-embeddings"  # a CLIP-style pair of towers: images and texts in one vector space

    @property
    def model_type(self) -> str:
        """What `/info` and `/models` answer: the azure-ai-inference SDK's `ModelType` values. A scoring script's
        input and output are its own, which none of them describes: it answers its kind, "score"."""
        return _MODEL_TYPES[self]

    def serves(self, route: RunnerKind) -> bool:
        """A deployment of this kind answers the routes of kind `route`: its own, and an image-embeddings model
        also the text embeddings routes (its text tower, into the same space as its images)."""
        return route is self or route in _ALSO_SERVES.get(self, ())


_MODEL_TYPES = {
    RunnerKind.EMBEDDINGS: "embeddings",
    RunnerKind.CHAT: "chat_completion",
    RunnerKind.SCORE: "score",
    RunnerKind.TEXT_CLASSIFIER: "text_classification",
    RunnerKind.IMAGE_EMBEDDINGS: "image_embeddings",
}
_ALSO_SERVES = {RunnerKind.IMAGE_EMBEDDINGS: (RunnerKind.EMBEDDINGS,)}
# A text classifier's output label: "<category>:<severity>" (what the label means), or "none" (ignored).
Label = Annotated[str, Field(pattern=r"^((hate|sexual|violence|self_harm):(low|medium|high)|none)$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """Where a deployment's files come from: a local folder, a Blob URL or `s3://`, each file checked by sha256.
    A file's name is a path inside `source` (no `..`, not absolute): the folder declares where files may come from.

    A folder built on this machine (`make chat-model`) is pinned by its build's manifest instead: `manifest` names a
    JSON file in the local `source` folder whose `files` maps each file to its sha256. Until it is there the model is
    not built, and the deployment is unavailable (the host still starts)."""

    source: str
    files: dict[str, Sha256] = Field(default_factory=dict)
    manifest: str | None = None

    @field_validator("files")
    @classmethod
    def _inside_source(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            check_file_name(name)
        return files

    @model_validator(mode="after")
    def _files_or_manifest(self) -> ModelSpec:
        if self.manifest is not None:
            if self.files:
                raise ValueError("`files` and `manifest` exclude each other: the manifest lists the files")
            if self.source.startswith(("s3://", "https://", "http://")):
                raise ValueError("`manifest` pins a folder built on this machine: its `source` must be a local path")
            check_file_name(self.manifest)
        return self


def check_file_name(name: str) -> None:
    """ValueError unless `name` is a relative path that stays inside its folder (symlinks are checked on disk)."""
    path = PurePosixPath(name)
    if not name or "\\" in name or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"file name {name!r} must be a relative path inside its folder (no '..', not absolute)")


class Deployment(_Strict):
    name: Name
    kind: RunnerKind
    model_name: str
    model_provider: str = "inferq"
    description: str = ""
    model: ModelSpec
    script: str | None = None  # kind "score": the Python file with init() and run(raw_data), one of code.files
    code: ModelSpec | None = None  # kind "score": the script's folder (Azure ML's `code`), its files pinned
    max_tokens: int = Field(default=256, gt=0)
    dimensions: int | None = None
    # ONNX Runtime intra-op threads for this model (default: the `intra_op_threads` setting, the cores): a tiny
    # model's ops can cost less than waking a pool of threads for them.
    intra_op_threads: int | None = Field(default=None, ge=1)
    prices: dict[Meter, Decimal] = Field(default_factory=dict)
    content_safety: ContentSafetyPolicy | None = None  # kind "chat-completion": prompts and completions screened
    labels: tuple[Label, ...] = ()  # kind "text-classifier": what each of the model's outputs means, in order
    label_threshold: float = Field(default=0.5, gt=0, lt=1)  # kind "text-classifier": an output this high is on

    @field_validator("prices")
    @classmethod
    def _non_negative(cls, prices: dict[Meter, Decimal]) -> dict[Meter, Decimal]:
        for meter, price in prices.items():
            if price < 0:
                raise ValueError(f"price of {meter} must not be negative")
        return prices

    @model_validator(mode="after")
    def _script_for_score(self) -> Deployment:
        if self.kind is RunnerKind.SCORE and not self.script:
            raise ValueError(f"deployment {self.name!r} of kind 'score' needs `script` (a .py file)")
        if self.kind is not RunnerKind.SCORE and (self.script or self.code):
            raise ValueError(f"deployment {self.name!r}: `script` and `code` are only for kind 'score'")
        if self.script and (self.code is None or self.script not in self.code.files):
            # Operator-supplied code runs in the worker: only a file of a declared folder, pinned like model files.
            raise ValueError(
                f"deployment {self.name!r}: script {self.script!r} must be one of `code.files` (a file name in the "
                'folder `code.source`, with its sha256), e.g. script = "score.py" and [deployments.code] '
                'source = "config/demo/scoring", files = { "score.py" = "<sha256>" }'
            )
        if self.content_safety is not None and self.kind is not RunnerKind.CHAT:
            raise ValueError(f"deployment {self.name!r}: `content_safety` is only for kind 'chat-completion'")
        if (self.kind is RunnerKind.TEXT_CLASSIFIER) != bool(self.labels):
            raise ValueError(
                f'deployment {self.name!r}: `labels` (one per model output, e.g. "hate:high") is for kind '
                "'text-classifier', which needs them"
            )
        return self

    @property
    def safety(self) -> ContentSafetyPolicy | None:
        """The content safety policy in force: None when off."""
        return self.content_safety if self.content_safety is not None and self.content_safety.enabled else None

    def rate(self, scores: list[float]) -> dict[Category, Severity]:
        """A text classifier's outputs as severities: per category the highest severity of the labels on."""
        rated: dict[Category, Severity] = {}
        for label, score in zip(self.labels, scores, strict=False):
            if label == "none" or score < self.label_threshold:
                continue
            category, severity = Category(label.split(":")[0]), Severity(label.split(":")[1])
            if severity.rank > rated.get(category, Severity.SAFE).rank:
                rated[category] = severity
        return rated


class Endpoint(_Strict):
    """A stable name in front of deployments: live traffic by weight (summing to 100) and mirrored shares."""

    name: Name
    description: str = ""
    traffic: dict[str, Percent] = Field(min_length=1)  # deployment → % of live requests; 0: header-only
    mirror: dict[str, Share] = Field(default_factory=dict)  # deployment → % of live requests also sent there

    @field_validator("traffic")
    @classmethod
    def _sums_to_100(cls, traffic: dict[str, int]) -> dict[str, int]:
        if sum(traffic.values()) != 100:
            raise ValueError(f"traffic weights must sum to 100; they sum to {sum(traffic.values())}")
        return traffic

    @field_validator("traffic", "mirror")
    @classmethod
    def _unique_keys(cls, weights: dict[str, int]) -> dict[str, int]:
        duplicate = _duplicate(weights)
        if duplicate is not None:
            raise ValueError(f"deployment {duplicate!r} is named twice (names are case-insensitive)")
        return weights

    @property
    def deployment_names(self) -> tuple[str, ...]:
        """Live deployments first (config order), then mirror-only ones."""
        live = {n.lower() for n in self.traffic}
        return (*self.traffic, *(n for n in self.mirror if n.lower() not in live))

    def primary(self) -> str:
        """The deployment with the most traffic (the first of equals): what /info describes."""
        return max(self.traffic, key=lambda n: self.traffic[n])


class Tenant(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
    key_sha256: tuple[Sha256, ...] = ()
    keys: tuple[ApiKey, ...] = ()  # `[[tenants.keys]]`: keys with an id and an optional expiry
    demo: bool = False  # the local host adds INFERQ_API_KEY (or a generated key) to this tenant
    monthly_budget: Decimal | None = None
    requests_per_minute: int | None = Field(default=None, gt=0)  # rate limits, per HTTP instance
    tokens_per_minute: int | None = Field(default=None, gt=0)
    blocklists: tuple[Blocklist, ...] = ()  # screened on every deployment with content safety on

    @property
    def api_keys(self) -> tuple[ApiKey, ...]:
        """Every key: those of `key_sha256` (no expiry, named by their sha256's start), then `keys`."""
        return (*(ApiKey(sha256=h) for h in self.key_sha256), *self.keys)

    @model_validator(mode="after")
    def _unique_key_ids(self) -> Tenant:
        duplicate = _duplicate(k.key_id for k in self.api_keys)
        if duplicate is not None:
            raise ValueError(f"tenant {self.name!r}: key id {duplicate!r} is used twice")
        return self


class AppConfig(_Strict):
    currency: str = "USD"
    admin_key_sha256: tuple[Sha256, ...] = ()
    auth: AuthConfig = AuthConfig()
    tenants: tuple[Tenant, ...]
    deployments: tuple[Deployment, ...] = Field(min_length=1)
    endpoints: tuple[Endpoint, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> AppConfig:
        for label, names in (
            ("deployments", [d.name for d in self.deployments]),
            ("tenants", [t.name for t in self.tenants]),
            ("endpoints", [e.name for e in self.endpoints]),
        ):
            duplicate = _duplicate(names)
            if duplicate is not None:
                raise ValueError(f"{label}: duplicate name {duplicate!r} (names are case-insensitive)")
        return self

    @model_validator(mode="after")
    def _classifiers_resolve(self) -> AppConfig:
        kinds = {d.name.lower(): d.kind for d in self.deployments}
        for i, d in enumerate(self.deployments):
            name = d.content_safety.classifier if d.content_safety is not None else None
            if name is not None and kinds.get(name.lower()) is not RunnerKind.TEXT_CLASSIFIER:
                classifiers = [c.name for c in self.deployments if c.kind is RunnerKind.TEXT_CLASSIFIER]
                raise ValueError(
                    f"deployments.{i}.content_safety.classifier: {name!r} is not a deployment of kind "
                    f"'text-classifier' (those: {', '.join(classifiers) or 'none'})"
                )
        return self

    @model_validator(mode="after")
    def _credentials_resolve(self) -> AppConfig:
        owner: dict[str, str] = {}
        for t in self.tenants:
            for key in t.api_keys:
                if owner.setdefault(key.sha256, t.name) != t.name:
                    raise ValueError(f"tenants {owner[key.sha256]!r} and {t.name!r} share a key (sha256 {key.sha256})")
        names = {t.name for t in self.tenants}
        for i, issuer in enumerate(self.auth.issuers):
            for value, tenant in issuer.tenants.items():
                if tenant not in names:
                    raise ValueError(f"auth.issuers.{i}.tenants: {value!r} maps to unknown tenant {tenant!r}")
        return self

    @model_validator(mode="after")
    def _endpoints_resolve(self) -> AppConfig:
        deployments = {d.name.lower(): d for d in self.deployments}
        owner: dict[str, str] = {}
        for i, endpoint in enumerate(self.endpoints):
            where = f"endpoints.{i}"
            for field, weights in (("traffic", endpoint.traffic), ("mirror", endpoint.mirror)):
                for name in weights:
                    if name.lower() not in deployments:
                        known = ", ".join(d.name for d in self.deployments)
                        raise ValueError(f"{where}.{field}: unknown deployment {name!r} (known: {known})")
            live = {n.lower() for n, weight in endpoint.traffic.items() if weight > 0}
            for name in endpoint.mirror:
                if name.lower() in live:
                    raise ValueError(
                        f"{where}.mirror: {name!r} takes live traffic; a mirror deployment must have 0 in traffic"
                    )
            for name in endpoint.deployment_names:
                if name.lower() in owner:
                    raise ValueError(
                        f"{where}.traffic: deployment {name!r} is already behind endpoint {owner[name.lower()]!r}"
                    )
                owner[name.lower()] = endpoint.name
            kinds = {deployments[n.lower()].kind.value for n in endpoint.deployment_names}
            if len(kinds) > 1:
                raise ValueError(f"{where}: its deployments must be of one kind; found {', '.join(sorted(kinds))}")
        for i, endpoint in enumerate(self.endpoints):
            same = deployments.get(endpoint.name.lower())
            if same is not None and owner.get(same.name.lower()) != endpoint.name:
                raise ValueError(
                    f"endpoints.{i}.name: {endpoint.name!r} is the name of deployment {same.name!r}, which is not "
                    "behind this endpoint (an endpoint may share its name only with one of its own deployments)"
                )
        return self

    @property
    def default_deployment(self) -> Deployment:
        return self.deployments[0]

    def deployment(self, name: str | None) -> Deployment:
        if name is None:
            return self.default_deployment
        for d in self.deployments:
            if d.name.lower() == name.lower():
                return d
        raise NotFound(f"Unknown deployment {name!r}. Known: {', '.join(d.name for d in self.deployments)}.")

    def all_endpoints(self) -> tuple[Endpoint, ...]:
        """Explicit endpoints (deployment names as the deployments spell them) and an implicit one per deployment
        behind none, in the order of their first deployment in `deployments`: the first is the default."""
        canonical = {d.name.lower(): d.name for d in self.deployments}
        behind: dict[str, Endpoint] = {}
        for e in self.endpoints:
            fixed = e.model_copy(
                update={
                    "traffic": {canonical[n.lower()]: w for n, w in e.traffic.items()},
                    "mirror": {canonical[n.lower()]: w for n, w in e.mirror.items()},
                }
            )
            for name in fixed.deployment_names:
                behind[name.lower()] = fixed
        ordered: dict[str, Endpoint] = {}
        for d in self.deployments:
            endpoint = behind.get(d.name.lower()) or Endpoint(name=d.name, traffic={d.name: 100})
            ordered.setdefault(endpoint.name.lower(), endpoint)
        return tuple(ordered.values())

    def tenant(self, name: str) -> Tenant:
        for t in self.tenants:
            if t.name == name:
                return t
        raise NotFound(f"Unknown tenant {name!r}.")

    def with_admin_key(self, key_sha256: str) -> AppConfig:
        return self.model_copy(update={"admin_key_sha256": (*self.admin_key_sha256, key_sha256)})

    def with_tenant_key(self, tenant_name: str, key_sha256: str) -> AppConfig:
        tenants = tuple(
            t.model_copy(update={"key_sha256": (*t.key_sha256, key_sha256)}) if t.name == tenant_name else t
            for t in self.tenants
        )
        return self.model_copy(update={"tenants": tenants})


def _duplicate(names: Iterable[str]) -> str | None:
    """The first name that repeats an earlier one, ignoring case."""
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            return name
        seen.add(name.lower())
    return None


def load_config(path: Path) -> AppConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path} (set INFERQ_CONFIG)") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return AppConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {'; '.join(_problem(e) for e in exc.errors())}") from exc


def _problem(error: ErrorDetails) -> str:
    """`<loc>: <msg>`; a check across fields names its own location at the start of its message."""
    msg = str(error["msg"]).removeprefix("Value error, ")
    loc = ".".join(map(str, error["loc"]))
    return f"{loc}: {msg}" if loc else msg
