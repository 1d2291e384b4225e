"""The kill -9 soak: async embeddings jobs from several clients, each with an Idempotency-Key, against the real
local host, which is killed (SIGKILL) at random points and once inside the create→send window (it kills itself
as it sends a job message, inside the commit that records the job and its message: tests/e2e/dying_host.py); then
every request is sent again. What must hold: every job
ends exactly once (one job per key, all succeeded), none is left queued or with its message unsent, and /usage
bills each tenant the sum of its jobs' reported tokens, to the token.

`make soak` runs the full one (2,000 jobs, 8 clients, 10 random kills + 1 in the window) and prints its figures;
tests/e2e/test_kill_soak.py runs a small one in `make test`."""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.domain.jobs import new_job_id
from tests.conftest import ADMIN_KEY, KEYS, RunningHost, free_port, start_host, stop_host, write_config

WORDS = "the quick brown fox jumps over a lazy dog while billing counts every token exactly once".split()
ALL_TIME = {"from": "2000-01-01", "granularity": "month"}
# Short bounds on the soak's host, so recovery happens within the run: the unsent-message bound, and the visibility
# timeout after which a message a killed host held (its job `running`) is delivered again.
RESEND_AFTER_S = 1.0
VISIBILITY_TIMEOUT_S = 4.0


@dataclass(frozen=True)
class Request:
    tenant: str
    key: str
    text: str

    @property
    def job_id(self) -> str:
        return new_job_id(self.tenant, self.key)


@dataclass
class Figures:
    jobs: int
    clients: int
    random_kills: int = 0
    window_kills: int = 0  # the host killed itself inside the create→send window
    unanswered: int = 0  # first sends that got no answer (the host died under them)
    unsent_at_kills: list[int] = field(default_factory=list)  # job messages kept unsent, after each kill
    resent: int = 0  # messages sent again (by a repeat or by the timer), as the host logged them
    statuses: Counter[str] = field(default_factory=Counter)
    jobs_stored: int = 0
    left_queued: int = 0
    left_unsent: int = 0
    reported_tokens: dict[str, int] = field(default_factory=dict)
    billed_tokens: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # wall time of each phase
    errors: list[str] = field(default_factory=list)  # answers that were neither the job nor a dead host

    def problems(self) -> list[str]:
        found = list(self.errors)
        if self.statuses != Counter({"succeeded": self.jobs}):
            found.append(f"job statuses {dict(self.statuses)}, expected {self.jobs} succeeded")
        if self.jobs_stored != self.jobs:
            found.append(f"{self.jobs_stored} jobs stored for {self.jobs} keys")
        if self.left_queued or self.left_unsent:
            found.append(f"{self.left_queued} jobs left queued, {self.left_unsent} messages left unsent")
        if self.billed_tokens != self.reported_tokens:
            found.append(f"billed {self.billed_tokens} != reported {self.reported_tokens}")
        if self.window_kills < 1:
            found.append("the host was never killed inside the create→send window")
        return found

    def table(self) -> str:
        rows = [
            ("jobs (async, with Idempotency-Key)", self.jobs),
            ("clients", self.clients),
            ("kill -9 at random", self.random_kills),
            ("kill -9 inside create→send", self.window_kills),
            ("first sends unanswered (host dead)", self.unanswered),
            ("messages unsent after each kill", self.unsent_at_kills),
            ("messages sent again (repeat or timer)", self.resent),
            ("requests sent again (all)", self.jobs),
            ("jobs stored", self.jobs_stored),
            ("job statuses", dict(self.statuses)),
            ("left queued / left unsent", f"{self.left_queued} / {self.left_unsent}"),
            ("tokens reported by the jobs", self.reported_tokens),
            ("tokens billed by /usage", self.billed_tokens),
            ("wall time (s)", round(self.seconds, 1)),
            ("of which (s)", {name: round(t, 1) for name, t in self.phases.items()}),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


class Soak:
    def __init__(self, workdir: Path, jobs: int, clients: int, kills: int, seed: int) -> None:
        self.workdir, self.rng = workdir, random.Random(seed)
        self.figures = Figures(jobs=jobs, clients=clients)
        self.config = write_config(workdir / "soak.toml")
        self.env = {
            "PORT": str(free_port()),
            "INFERQ_DATA_DIR": str(workdir / "data"),
            "INFERQ_RESEND_UNSENT_AFTER_S": str(RESEND_AFTER_S),
            # A message held by a killed host is delivered again after this (renewed while a job runs).
            "INFERQ_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
        }
        tenants = list(KEYS)
        self.requests = [
            Request(
                tenants[i % len(tenants)],
                f"soak-{seed}-{i}",
                f"soak {i}: " + " ".join(self.rng.choices(WORDS, k=self.rng.randint(1, 40))),
            )
            for i in range(jobs)
        ]
        margin = max(jobs // 20, 1)
        self.kill_points = sorted(self.rng.sample(range(margin, jobs - margin), kills)) if kills else []
        # After the first random kill the host comes back as one that dies as it sends its Nth message; no random
        # kill comes before it has.
        self.die_on_send = self.rng.randint(1, min(20, margin))
        self.dying = False
        self.resending = False
        self.errors: list[str] = []
        self.up = threading.Event()
        self.starts = 0
        self.host: RunningHost | None = None
        self.attempted = 0
        self.lock = threading.Lock()

    # --- the host, killed and started again ----------------------------------------------------------------
    def start(self, die_on_send: int | None = None) -> None:
        self.starts += 1
        began = time.monotonic()
        env = dict(self.env)
        module = "functions.local"
        self.dying = die_on_send is not None
        if die_on_send is not None:
            env["SOAK_DIE_ON_SEND"] = str(die_on_send)
            module = "tests.e2e.dying_host"
        run = self.workdir / f"run-{self.starts}"
        run.mkdir()
        self.host = start_host(run, env=env, config=self.config, module=module)
        self.figures.phases["host starts"] = self.figures.phases.get("host starts", 0.0) + time.monotonic() - began
        self.up.set()

    def kill(self) -> None:
        assert self.host is not None
        self.up.clear()
        self.host.process.send_signal(signal.SIGKILL)
        self.host.process.wait()
        self.figures.unsent_at_kills.append(self.count("SELECT count(*) FROM unsent_messages"))

    def count(self, sql: str) -> int:
        with sqlite3.connect(Path(self.env["INFERQ_DATA_DIR"]) / "inferq.sqlite3") as db:
            return int(db.execute(sql).fetchone()[0])

    # --- clients -------------------------------------------------------------------------------------------
    def send(self, client: httpx.Client, request: Request) -> bool:
        """One async request; False when the host did not answer it."""
        try:
            r = client.post(
                "/embeddings",
                json={"input": request.text},
                headers={"api-key": KEYS[request.tenant], "Prefer": "respond-async", "Idempotency-Key": request.key},
            )
        except httpx.TransportError:
            return False
        if r.status_code >= 500:
            return False
        if r.status_code not in (200, 202) or r.headers.get("x-inferq-job-id") != request.job_id:
            self.errors.append(f"{request.key}: {r.status_code} {r.text[:200]}")
        return True

    def client(self, requests: list[Request], unanswered: list[Request]) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for request in requests:
                while True:
                    self.up.wait()
                    with self.lock:
                        self.attempted += 1
                    if self.send(client, request):
                        break
                    if not self.resending:
                        unanswered.append(request)  # sent again with every request at the end
                        break
                    time.sleep(0.05)  # the end: this one must be answered; wait for the host to be back

    def run_clients(self, requests: list[Request]) -> list[Request]:
        unanswered: list[Request] = []
        shares = [requests[i :: self.figures.clients] for i in range(self.figures.clients)]
        threads = [threading.Thread(target=self.client, args=(share, unanswered)) for share in shares]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            self.supervise()
            time.sleep(0.02)
        for t in threads:
            t.join()
        return unanswered

    def supervise(self) -> None:
        """Kill the host at the next kill point; start it again when it was killed, or killed itself."""
        assert self.host is not None
        if self.host.process.poll() is not None:  # it died by itself: inside the create→send window
            self.up.clear()
            if not self.dying or self.host.process.returncode != -signal.SIGKILL:
                self.errors.append(f"the host exited ({self.host.process.returncode}):\n{self.host.log()[-2000:]}")
            self.figures.window_kills += 1
            self.figures.unsent_at_kills.append(self.count("SELECT count(*) FROM unsent_messages"))
            self.start()
        elif self.kill_points and self.attempted >= self.kill_points[0] and not self.dying:
            self.kill_points.pop(0)
            self.kill()
            self.figures.random_kills += 1
            self.start(die_on_send=self.die_on_send if self.figures.random_kills == 1 else None)

    # --- the run -------------------------------------------------------------------------------------------
    def run(self) -> Figures:
        began = time.monotonic()
        self.start()
        phases = self.figures.phases
        try:
            mark = time.monotonic()
            self.figures.unanswered = len(self.run_clients(self.requests))
            phases["first sends, with kills"], mark = time.monotonic() - mark, time.monotonic()
            self.resending = True
            self.run_clients(self.requests)  # every request again: answered, the same job, nothing new
            phases["sending again"], mark = time.monotonic() - mark, time.monotonic()
            self.settle()
            phases["until all ended and billed"] = time.monotonic() - mark
        finally:
            if self.host is not None and self.host.process.poll() is None:
                stop_host(self.host)
        self.figures.left_queued = self.count("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
        self.figures.left_unsent = self.count("SELECT count(*) FROM unsent_messages")
        self.figures.jobs_stored = self.count("SELECT count(*) FROM jobs")
        self.figures.resent = sum(
            log.read_text(errors="replace").count("sending it") for log in self.workdir.glob("run-*/host.log")
        )
        self.figures.seconds = time.monotonic() - began
        self.figures.errors = self.errors
        return self.figures

    def settle(self, timeout_s: float = 120) -> None:
        """Wait for every job to end and for its usage to be billed; record what the jobs and /usage say."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=30) as client:
            pending = list(self.requests)
            reported = dict.fromkeys(KEYS, 0)
            statuses: Counter[str] = Counter()
            while pending and time.monotonic() < deadline:
                waiting = []
                for request in pending:
                    body = client.get(f"/jobs/{request.job_id}", headers={"api-key": KEYS[request.tenant]}).json()
                    if body["status"] in ("queued", "running"):
                        waiting.append(request)
                        continue
                    statuses[body["status"]] += 1
                    if body["status"] == "succeeded":
                        reported[request.tenant] += body["result"]["usage"]["prompt_tokens"]
                pending = waiting
                if pending:
                    time.sleep(0.5)
            statuses["queued or running"] += len(pending)
            self.figures.statuses = +statuses
            self.figures.reported_tokens = reported
            while time.monotonic() < deadline:
                self.figures.billed_tokens = {
                    tenant: int(
                        client.get("/usage", params={**ALL_TIME, "tenant": tenant}, headers={"api-key": ADMIN_KEY})
                        .json()
                        .get("total_tokens", 0)
                    )
                    for tenant in KEYS
                }
                if self.figures.billed_tokens == reported:
                    break
                time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['PORT']}"


def soak(workdir: Path, jobs: int, clients: int = 8, kills: int = 10, seed: int = 13) -> Figures:
    return Soak(workdir, jobs, clients, kills, seed).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferq-soak-") as tmp:
        figures = soak(Path(tmp), args.jobs, args.clients, args.kills, args.seed)
    print(figures.table())
    problems = figures.problems()
    for problem in problems:
        print(f"FAILED: {problem}")
    print("soak: OK" if not problems else "soak: FAILED")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
