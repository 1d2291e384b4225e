"""The local host: the HTTP app under uvicorn, a queue pump and a usage consumer, all calling the function
objects Azure indexes, on embedded SQLite. `make run` starts it."""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn

from functions.azure.indexing import trigger
from functions.http import app as http_api
from functions.local.runtime import Loop, QueuePump, UsageConsumer
from shared.bootstrap import Inferq, bootstrap, set_app
from shared.domain.auth import hash_key
from shared.domain.config import AppConfig, Deployment, load_config
from shared.domain.errors import ConfigError, ModelNotBuilt, NotFound
from shared.settings import Settings, get_settings
from shared.telemetry import setup as telemetry


@dataclass
class LocalHost:
    app: Inferq
    loops: list[Loop]
    pumps: list[QueuePump]

    @classmethod
    def build(cls, app: Inferq) -> LocalHost:
        s = app.settings
        jobs = QueuePump(
            app.queue,
            trigger("run_job"),
            poison=app.poison,
            max_dequeue_count=s.max_dequeue_count,
            visibility_timeout_s=s.visibility_timeout_s,
            concurrency=s.worker_concurrency,
            wake=app.queue_sent,  # a freed slot wakes the pump as a new message does: a backlog runs back to back
        )
        poisoned = QueuePump(
            app.poison,
            trigger("fail_poisoned_job"),
            poison=None,
            max_dequeue_count=s.max_dequeue_count,
            visibility_timeout_s=s.visibility_timeout_s,
            concurrency=1,
        )
        publish = trigger("publish_pending_usage")
        replay = trigger("replay_kept_usage")
        resend = trigger("resend_unsent_jobs")
        loops = [
            Loop(
                "job-pump", jobs.pump_once, s.poll_interval_s, wake=app.queue_sent, max_interval_s=s.max_poll_interval_s
            ),
            Loop("poison-pump", poisoned.pump_once, s.poll_interval_s * 10, max_interval_s=s.max_poll_interval_s),
            Loop("usage-publisher", lambda: publish(None) or 0, s.usage_publish_interval_s),
            Loop("usage-replay", lambda: replay(None) or 0, s.usage_publish_interval_s),
            Loop("outcomes", app.worker.flush_outcomes, max(s.stats_flush_s, 0.1)),
            Loop("unsent-jobs", lambda: resend(None) or 0, s.resend_unsent_after_s / 2),
        ]
        if app.usage_log is not None:
            consumer = UsageConsumer(app.usage_log, trigger("bill_usage"))
            loops.append(
                Loop(
                    "usage-consumer", consumer.consume_once, s.poll_interval_s * 4, max_interval_s=s.max_poll_interval_s
                )
            )
        return cls(app, loops, [jobs, poisoned])

    def start(self) -> None:
        for loop in self.loops:
            loop.start()

    def stop(self) -> None:
        for loop in self.loops:
            loop.stop()
        for pump in self.pumps:
            pump.shutdown()
        self.app.worker.flush_outcomes()
        self.app.registry.close()
        telemetry.shutdown()


class _Server(uvicorn.Server):
    """uvicorn's server, running `on_exit` once it has stopped serving. uvicorn re-raises the SIGTERM or SIGINT that
    stopped it (so the process dies of it, as it should), which ends the process before any code after `run()`:
    the host's own shutdown (buffered outcomes and spans flushed, models closed) must run before that."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._on_exit()


def server_config(settings: Settings) -> uvicorn.Config:
    """uvicorn for the HTTP app: its C event loop and HTTP parser (uvloop, httptools) where installed, as the
    requirements install them; the pure-Python ones otherwise."""
    return uvicorn.Config(
        http_api.app, host=settings.host, port=settings.port, log_level="warning", loop="auto", http="auto"
    )


def build_app(settings: Settings) -> tuple[Inferq, dict[str, str]]:
    """Everything; with a demo tenant in the config, its key and an admin key added (from INFERQ_API_KEY and
    INFERQ_ADMIN_KEY, or generated: those are returned by the variable that would have set them)."""
    generated: dict[str, str] = {}

    def load() -> AppConfig:  # again whenever the file changes: the demo keys stay
        config = load_config(settings.config)
        demo = next((t for t in config.tenants if t.demo), None)
        if demo is None:
            return config
        key = settings.api_key or generated.setdefault("INFERQ_API_KEY", "iq-" + secrets.token_urlsafe(24))
        admin = settings.admin_key or generated.setdefault("INFERQ_ADMIN_KEY", "iq-admin-" + secrets.token_urlsafe(24))
        return config.with_tenant_key(demo.name, hash_key(key)).with_admin_key(hash_key(admin))

    return bootstrap(settings, config_loader=load), generated


def preloaded(config: AppConfig, preload: str) -> list[Deployment]:
    """The deployments INFERQ_PRELOAD names (`*`: all of them), in the config's order; a name the config doesn't
    have is a ConfigError (a typo would otherwise leave the model to load on the first request, unnoticed)."""
    if preload.strip() == "*":
        return list(config.deployments)
    named, unknown = set(), []
    for name in filter(None, (n.strip() for n in preload.split(","))):
        try:
            named.add(config.deployment(name).name)
        except NotFound:
            unknown.append(name)
    if unknown:
        raise ConfigError(f"INFERQ_PRELOAD names no deployment of the config: {', '.join(sorted(unknown))}")
    return [d for d in config.deployments if d.name in named]


def main() -> int:
    telemetry.configure_logging(logging.INFO)
    settings = get_settings()
    telemetry.configure(settings, http_api.app)  # OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; else nothing
    try:
        app, generated = build_app(settings)
        for deployment in preloaded(app.config, settings.preload):  # load models now, not on the first request
            try:
                app.registry.preload(deployment)
            except ModelNotBuilt as exc:  # the others are served; its requests get a 503 saying how to build it
                print(f"inferq: {exc}", file=sys.stderr, flush=True)
    except ConfigError as exc:
        print(f"inferq: {exc}", file=sys.stderr)
        return 2
    set_app(app)
    host = LocalHost.build(app)
    host.start()
    base = f"http://{settings.host}:{settings.port}"
    print(f"inferq local host on {base} (data in {settings.data_dir}/)", flush=True)
    for variable, key in generated.items():
        who = "demo tenant's" if variable == "INFERQ_API_KEY" else "admin"
        print(f"{who} API key (set {variable} to choose one): export {variable}={key}", flush=True)
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            host.stop()

    try:
        _Server(server_config(settings), on_exit=stop).run()
    finally:
        stop()  # when uvicorn failed before serving (a port in use)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
