"""The `inferq` command line: parses arguments and calls the handlers in shared/; prints with rich.

Config edits (`keys`) go to the TOML file the host reads: a running host follows its keys within
INFERQ_CONFIG_RELOAD_S (tenants and everything else after a restart).
`usage` and `jobs` ask a running deployment (`--url`, with `--key`) over its HTTP API, or without `--url` read the
local host's data (INFERQ_DATA_DIR, SQLite) through the same handlers the API calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table

from shared.application import config_file
from shared.bootstrap import Inferq, bootstrap
from shared.domain import metering, usage_report
from shared.domain.auth import Caller
from shared.domain.config import AppConfig, load_config
from shared.domain.errors import InferqError, NotFound
from shared.settings import Settings

app = typer.Typer(help="inferq operators' command line.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="A tenant's API keys (kept as sha256 in the config).", no_args_is_help=True)
config_app = typer.Typer(help="The config file.", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs.", no_args_is_help=True)
metering_app = typer.Typer(help="Metering records (closed hours), as JSON Lines.", no_args_is_help=True)
app.add_typer(metering_app, name="metering")
deadletters_app = typer.Typer(help="Usage events the billing could not take.", no_args_is_help=True)
app.add_typer(deadletters_app, name="deadletters")
tenants_app = typer.Typer(help="Tenants in the config: budget and rate limits.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")
app.add_typer(jobs_app, name="jobs")

err = Console(stderr=True, soft_wrap=True)


def _out() -> Console:
    return Console(soft_wrap=True)  # made per command: it takes the terminal's width (COLUMNS) as it is then


ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="The config TOML (default: INFERQ_CONFIG or config/inferq.toml)")
]
Url = Annotated[str | None, typer.Option(help="A running deployment's base URL; without it: the local data")]
Key = Annotated[
    str | None, typer.Option(envvar="INFERQ_ADMIN_KEY", help="API key for --url (default: INFERQ_ADMIN_KEY)")
]


def _config_path(path: Path | None) -> Path:
    return path if path is not None else Settings().config


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"inferq: {message}", markup=False, highlight=False)
    return typer.Exit(code)


# --- keys ----------------------------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant's name")],
    expires: Annotated[str | None, typer.Option(help="RFC 3339 time after which it is refused")] = None,
    key_id: Annotated[
        str | None, typer.Option("--id", help="Its id in usage records (default: its sha256's start)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a key for a tenant: printed once (only its sha256 is stored). A running host uses it within
    INFERQ_CONFIG_RELOAD_S."""
    path = _config_path(config)
    try:
        when = config_file.parse_expiry(expires) if expires is not None else None
        key = config_file.create_key(path, tenant, key_id=key_id, expires=when)
    except InferqError as exc:
        raise _fail(exc.message) from None
    print(key)  # stdout: the key alone, for scripts
    err.print(f"added to tenant {tenant!r} in {path} (shown once)", highlight=False)


@keys_app.command("revoke")
def keys_revoke(
    tenant: Annotated[str, typer.Option(help="The tenant's name")],
    key: Annotated[str | None, typer.Option(help="The key to revoke")] = None,
    sha256: Annotated[str | None, typer.Option(help="Or its sha256")] = None,
    key_id: Annotated[str | None, typer.Option("--id", help="Or its id (`inferq keys list`)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke a tenant's key (by the key, its sha256 or its id). A running host refuses it within
    INFERQ_CONFIG_RELOAD_S."""
    path = _config_path(config)
    try:
        removed = config_file.revoke_key(path, tenant, key=key, sha256=sha256, key_id=key_id)
    except InferqError as exc:
        raise _fail(exc.message) from None
    err.print(f"revoked key {removed!r} of tenant {tenant!r} in {path}", highlight=False)


@keys_app.command("expire")
def keys_expire(
    tenant: Annotated[str, typer.Option(help="The tenant's name")],
    key_id: Annotated[str, typer.Option("--id", help="The key's id (`inferq keys list`)")],
    at: Annotated[str, typer.Option(help="RFC 3339 time from which it is refused")],
    config: ConfigOpt = None,
) -> None:
    """Give a key an expiry (rotation: the old key keeps working until then). A running host follows it within
    INFERQ_CONFIG_RELOAD_S."""
    path = _config_path(config)
    try:
        config_file.expire_key(path, tenant, key_id, config_file.parse_expiry(at))
    except InferqError as exc:
        raise _fail(exc.message) from None
    err.print(f"key {key_id!r} of tenant {tenant!r} expires {at} ({path})", highlight=False)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="One tenant; default: all")] = None, config: ConfigOpt = None
) -> None:
    """Every tenant's keys by id, with their expiry (never the keys; hashes are not shown either)."""
    try:
        loaded = load_config(_config_path(config))
    except InferqError as exc:
        raise _fail(exc.message, 2) from None
    now = datetime.now(UTC)
    table = Table("tenant", "key id", "expires", "status", title="API keys")
    for t in loaded.tenants:
        if tenant is not None and t.name != tenant:
            continue
        for k in t.api_keys:
            status = "expired" if k.expires is not None and k.expires <= now else "active"
            table.add_row(t.name, k.key_id, k.expires.isoformat() if k.expires else "-", status)
    _out().print(table)


# --- config --------------------------------------------------------------------------------------------------
@config_app.command("check")
def config_check(path: Annotated[Path | None, typer.Argument(help="default: INFERQ_CONFIG")] = None) -> None:
    """Validate a config with the host's own loader and print what it serves; non-zero exit if invalid."""
    path = _config_path(path)
    try:
        config = load_config(path)
    except InferqError as exc:
        raise _fail(exc.message, 2) from None
    endpoints = Table("endpoint", "traffic", "mirror", title="Endpoints")
    for e in config.all_endpoints():
        endpoints.add_row(e.name, _weights(e.traffic), _weights(e.mirror))
    deployments = Table("deployment", "kind", "model", "prices", title="Deployments")
    for d in config.deployments:
        prices = ", ".join(f"{meter}={price}" for meter, price in d.prices.items())
        deployments.add_row(d.name, d.kind.value, d.model_name, prices or "-")
    out = _out()
    out.print(f"{path}: valid ({len(config.admin_key_sha256)} admin key(s), currency {config.currency})")
    for table in (endpoints, deployments, _tenants_table(config)):
        out.print(table)


def _tenants_table(config: AppConfig) -> Table:
    tenants = Table("tenant", "keys", "monthly budget", "requests/min", "tokens/min", title="Tenants")
    for t in config.tenants:
        budget = f"{t.monthly_budget} {config.currency}" if t.monthly_budget is not None else "-"
        tenants.add_row(t.name, str(len(t.key_sha256)), budget, _opt(t.requests_per_minute), _opt(t.tokens_per_minute))
    return tenants


def _weights(weights: dict[str, int]) -> str:
    return ", ".join(f"{name} {weight}%" for name, weight in weights.items()) or "-"


def _opt(value: int | None) -> str:
    return "-" if value is None else str(value)


# --- tenants -------------------------------------------------------------------------------------------------
@tenants_app.command("add")
def tenants_add(
    name: Annotated[str, typer.Argument(help="The tenant's name")],
    budget: Annotated[str | None, typer.Option(help="monthly_budget, in the config's currency")] = None,
    rpm: Annotated[int | None, typer.Option(help="requests_per_minute (per HTTP instance)")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens_per_minute (per HTTP instance)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a tenant (then `inferq keys create --tenant NAME`). A running host serves it after a restart."""
    path = _config_path(config)
    try:
        config_file.add_tenant(path, name, monthly_budget=budget, requests_per_minute=rpm, tokens_per_minute=tpm)
    except InferqError as exc:
        raise _fail(exc.message) from None
    err.print(f"added tenant {name!r} to {path} (no key yet: inferq keys create --tenant {name})", highlight=False)


@tenants_app.command("list")
def tenants_list(config: ConfigOpt = None) -> None:
    """The config's tenants: keys, budget and rate limits."""
    try:
        loaded = load_config(_config_path(config))
    except InferqError as exc:
        raise _fail(exc.message, 2) from None
    _out().print(_tenants_table(loaded))


# --- usage and jobs ------------------------------------------------------------------------------------------
ADMIN = Caller(tenant="", is_admin=True)  # the local data: the operator reads any tenant's


def _local(config: Path | None) -> Inferq:
    settings = Settings(config=config) if config is not None else Settings()
    return bootstrap(settings)


def _get(url: str, key: str | None, path: str, params: dict[str, str], accept: str) -> httpx.Response:
    if not key:
        raise _fail("--key (or INFERQ_ADMIN_KEY) is needed with --url")
    try:
        response = httpx.get(
            url.rstrip("/") + path, params=params, headers={"api-key": key, "accept": accept}, timeout=60
        )
    except httpx.HTTPError as exc:
        raise _fail(f"{url}: {exc}") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise _fail(f"{response.status_code}: {message}")
    return response


@app.command("usage")
def usage(
    tenant: Annotated[str, typer.Option(help="Whose usage")],
    start: Annotated[str | None, typer.Option("--from", help="ISO 8601 (UTC); default: month start")] = None,
    to: Annotated[str | None, typer.Option(help="ISO 8601, exclusive; default: now")] = None,
    granularity: Annotated[str, typer.Option(help="hour, day or month")] = "day",
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    url: Url = None,
    key: Key = None,
    config: ConfigOpt = None,
) -> None:
    """A tenant's usage and cost (as GET /usage reports it)."""
    if fmt not in ("table", "csv", "json"):
        raise _fail(f"--format {fmt!r}: expected table, csv or json", 2)
    params = {"tenant": tenant, "granularity": granularity, **({"from": start} if start else {})}
    params.update({"to": to} if to else {})
    if url is not None:
        response = _get(url, key, "/usage", params, "text/csv" if fmt == "csv" else "application/json")
        if fmt == "csv":
            print(response.text, end="")
            return
        body: dict[str, Any] = response.json()
    else:
        try:
            report = _local(config).billing.usage_report(ADMIN, start, to, granularity, tenant)
        except InferqError as exc:
            raise _fail(exc.message) from None
        if fmt == "csv":
            print(usage_report.to_csv(report), end="")
            return
        body = usage_report.to_json(report)
    if fmt == "json":
        print(json.dumps(body, indent=2))
        return
    table = Table("period", "deployment", "meter", "tokens/requests", "quantity", "unit price", "cost")
    for item in body["items"]:
        count = item.get("tokens", item.get("requests"))
        table.add_row(
            item["period_start"], item["deployment"], item["meter"], str(count), item["quantity"], item["unit_price"],
            item["cost"],
        )  # fmt: skip
    table.title = f"Usage of {body['tenant']}, {body['from']} to {body['to']} (by {body['granularity']})"
    table.caption = (
        f"{body['total_tokens']} tokens, {body['total_requests']} requests: {body['total_cost']} {body['currency']}"
    )
    _out().print(table)


@metering_app.command("export")
def metering_export(
    start: Annotated[str | None, typer.Option("--from", help="ISO 8601 (UTC); default: month start")] = None,
    to: Annotated[str | None, typer.Option(help="ISO 8601, exclusive; default: now (closed hours only)")] = None,
    tenant: Annotated[str | None, typer.Option(help="One tenant; default: all")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout")] = None,
    url: Url = None,
    key: Key = None,
    config: ConfigOpt = None,
) -> None:
    """Hourly metering records (GET /usage/metering); ids are deterministic, so a re-export is idempotent."""
    if url is not None:
        params = {name: value for name, value in (("from", start), ("to", to), ("tenant", tenant)) if value}
        records = _get(url, key, "/usage/metering", params, "application/json").json()["records"]
    else:
        try:
            records = _local(config).billing.metering_records(ADMIN, start, to, tenant)
        except InferqError as exc:
            raise _fail(exc.message) from None
    lines = metering.jsonl(records)
    if out_file is None:
        print(lines, end="")
        return
    out_file.write_text(lines, encoding="utf-8")
    err.print(f"{len(records)} records → {out_file}", highlight=False)


@deadletters_app.command("list")
def deadletters_list(
    limit: Annotated[int, typer.Option(help="At most this many")] = 1000,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    config: ConfigOpt = None,
) -> None:
    """Dead-lettered usage events (with why), and how many batches are kept for replay (local data)."""
    billing = _local(config).billing
    letters, kept = billing.dead_letters(limit), billing.kept_batches(limit)
    if fmt == "json":
        print(json.dumps({"dead_letters": [vars(letter) for letter in letters], "kept_batches": kept}, indent=2))
        return
    table = Table("key", "time", "reason", "body", title=f"{len(letters)} dead-lettered usage event(s)")
    for letter in letters:
        table.add_row(letter.key, letter.time, letter.reason, letter.body)
    table.caption = f"{len(kept)} batch(es) kept for replay while the ledger was unavailable"
    _out().print(table)


@deadletters_app.command("replay")
def deadletters_replay(
    limit: Annotated[int, typer.Option(help="At most this many dead letters")] = 1000,
    config: ConfigOpt = None,
) -> None:
    """Bill the kept batches, then every dead letter that is now a valid event (once: the ledger dedupes by id);
    the others stay, with their reason. Exit 1 if any stay."""
    billing = _local(config).billing
    kept = billing.replay_kept_usage()
    done = f"{kept.batches} billed ({kept.billed} events, {kept.duplicates} duplicates)"
    err.print(f"kept batches: {done}, {kept.left} left")
    billed = duplicates = requeued = 0
    invalid: list[tuple[str, str]] = []
    for letter in track(billing.dead_letters(limit), description="replaying dead letters", console=err):
        result = billing.replay_dead_letter(letter)
        if result.invalid:
            invalid.append((letter.key, result.invalid))
        billed += result.outcome.billed
        duplicates += result.outcome.duplicates
        requeued += result.outcome.kept_for_replay
    counts = f"{billed} billed, {duplicates} duplicates, {requeued} kept for replay"
    err.print(f"dead letters: {counts}, {len(invalid)} stay")
    for key, reason in invalid:
        err.print(f"  {key}: {reason}", markup=False, highlight=False)
    if invalid or kept.left:
        raise typer.Exit(1)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="The job's id")],
    url: Url = None,
    key: Annotated[
        str | None, typer.Option(envvar="INFERQ_API_KEY", help="The tenant's key, for --url (a job is its own)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """A job's status, timings, error and result (as GET /jobs/{id} shows it)."""
    if url is not None:
        body = _get(url, key, f"/jobs/{job_id}", {}, "application/json").json()
    else:
        job = _local(config).store.get(job_id)  # the operator's view: any tenant's job
        if job is None:
            raise _fail(NotFound(f"Job {job_id} not found.").message)
        body = job.model_dump(mode="json", exclude={"request_hash"})
    print(json.dumps(body, indent=2))


def main() -> int:
    app(prog_name="inferq")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
