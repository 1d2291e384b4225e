"""The processes a bench run starts: the local host (the command the Makefile's `run` target uses, or
`--host-cmd`), the peer server, and Azurite (one process per service, so each access log counts one service)."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# Azurite's well-known development account (published in Microsoft's Azurite docs; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ACCESS_LINE = re.compile(r'"([A-Z]+) \S+ HTTP/[\d.]+"')
BLOB_WRITES = {"PUT", "POST", "PATCH", "MERGE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def rss_mb(self) -> float:
        """Resident memory of the process and its descendants, from /proc (VmRSS)."""
        return sum(_vm_rss_kb(pid) for pid in _tree(self.process.pid)) / 1024

    def cpu_s(self) -> float:
        """CPU seconds (user + system, every thread) the process and its descendants used so far."""
        return sum(_cpu_ticks(pid) for pid in _tree(self.process.pid)) / os.sysconf("SC_CLK_TCK")

    def settle(self, idle_share: float = 0.05, step_s: float = 0.25, timeout_s: float = 20) -> float:
        """Wait until the server is idle (under `idle_share` of a core for `step_s`): what it still does for the
        previous row (billing its usage, writing outcomes) must not be measured in the next. Seconds waited."""
        last_cpu, began = self.cpu_s(), time.monotonic()
        while time.monotonic() - began < timeout_s:
            time.sleep(step_s)
            cpu = self.cpu_s()
            if cpu - last_cpu < idle_share * step_s:
                break
            last_cpu = cpu
        return time.monotonic() - began

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            try:
                pids.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
        i += 1
    return pids


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime


def own_cpu_s() -> float:
    """CPU seconds this process (the bench: its load generator, its in-process rows) used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _vm_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _spawn(name: str, cmd: list[str], log_path: Path, url: str, cwd: Path, env: dict[str, str]) -> Server:
    with log_path.open("wb") as log:  # the child keeps its own handle
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Server(name, process, url, log_path)


def wait_until(server: Server, ready: Callable[[], bool], timeout: float = 60) -> float:
    """Poll `ready()` (transport errors mean "not yet") until true; seconds waited. Raises with the log tail."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.process.returncode}):\n{server.log_tail()}")
        try:
            if ready():
                return time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    server.stop()
    raise RuntimeError(f"{server.name} not ready within {timeout:.0f}s:\n{server.log_tail()}")


@contextmanager
def py_spy(pid: int, out: Path) -> Iterator[str]:
    """py-spy records `pid` during the block (.svg flame graph, .json speedscope, .txt collapsed stacks); yields
    the note to print. Needs py-spy on PATH (`pip install py-spy`; not a project requirement)."""
    binary = shutil.which("py-spy")
    if binary is None:
        yield "--py-spy: py-spy is not on PATH (pip install py-spy): no profile"
        return
    kind = {".txt": "raw", ".json": "speedscope"}.get(out.suffix, "flamegraph")
    extra = os.environ.get("PY_SPY_ARGS", "").split()  # e.g. --gil: only the thread holding the GIL
    cmd = [binary, "record", "--pid", str(pid), "--output", str(out), "--format", kind, "--rate", "200", *extra]
    spy = subprocess.Popen([*cmd, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached before the load starts
    try:
        yield f"py-spy profile of the host under {{load}}: {out}"
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()


# --- the local host ------------------------------------------------------------------------------------------------


def host_command(root: Path, override: str | None) -> list[str]:
    """`--host-cmd` if given, else the `python -m <module>` of the Makefile's `run` target in this tree."""
    if override:
        cmd = shlex.split(override)
        return [sys.executable, *cmd[1:]] if Path(cmd[0]).name.startswith("python") else cmd
    makefile = (root / "Makefile").read_text()
    target = re.search(r"^run:.*\n((?:\t.*\n?)+)", makefile, re.M)
    module = re.search(r"python\S*\s+-m\s+(\S+)", target.group(1)) if target else None
    if module is None:
        raise RuntimeError("no `python -m <module>` in the Makefile's run target: pass --host-cmd")
    return [sys.executable, "-m", module.group(1)]


@dataclass(frozen=True)
class HostConfig:
    path: Path
    embeddings_model: str
    chat_model: str | None
    chat_dir: Path | None


OTHER_TENANT_KEY = "bench-other-key"  # a second tenant, for the fair-sharing row


def write_host_config(root: Path, out: Path, key: str) -> HostConfig:
    """The tree's example config with model paths made absolute, a tenant for `key` if it has no demo tenant
    (the host gives the demo tenant INFERQ_API_KEY), and a second tenant for `OTHER_TENANT_KEY`."""
    text = (root / "config" / "inferq.toml").read_text()

    def absolute(m: re.Match[str]) -> str:
        value = m.group(2)
        local = root / value
        keep = "://" in value or os.path.isabs(value) or not local.exists()
        return f"{m.group(1)}{value if keep else local.as_posix()}{m.group(3)}"

    text = re.sub(r'^(\s*(?:source|script)\s*=\s*")([^"]*)(")', absolute, text, flags=re.M)
    data = tomllib.loads(text)

    def tenant(name: str, key: str) -> str:
        return f'[[tenants]]\nname = "{name}"\nkey_sha256 = ["{hashlib.sha256(key.encode()).hexdigest()}"]\n\n'

    tenants = tenant("bench-other", OTHER_TENANT_KEY)
    if not any(t.get("demo") for t in data.get("tenants", [])):
        tenants += tenant("bench", key)
    at = text.index("[[deployments]]")
    text = text[:at] + tenants + text[at:]
    out.write_text(text)
    deployments = data.get("deployments", [])
    embeddings = next(d["name"] for d in deployments if d.get("kind") == "embeddings")
    chat = next((d for d in deployments if d.get("kind") == "chat-completion"), None)
    chat_dir = Path(chat["model"]["source"]) if chat and "://" not in chat["model"]["source"] else None
    return HostConfig(out, embeddings, chat["name"] if chat else None, chat_dir)


def start_host(
    cmd: list[str],
    root: Path,
    workdir: Path,
    config: HostConfig,
    key: str,
    env: dict[str, str],
    embed_body: dict[str, Any],
) -> tuple[Server, float]:
    """Start the host and wait for its first embedding: returns the server and seconds from process start to the
    first embedding served (cold: model load included)."""
    port = free_port()
    full_env = {
        **os.environ,
        "PORT": str(port),
        "INFERQ_DATA_DIR": str(workdir / "data"),
        "INFERQ_CONFIG": str(config.path),
        "INFERQ_API_KEY": key,
        **env,
    }
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    server = _spawn("local host", cmd, workdir / "host.log", url, root, full_env)
    with httpx.Client(base_url=url, headers={"api-key": key}, timeout=60) as client:

        def served() -> bool:
            response = client.post("/embeddings", json=embed_body)
            if 400 <= response.status_code < 500:  # listening, but it will never serve this request
                server.stop()
                raise RuntimeError(f"the host answered {response.status_code}: {response.text[:300]}")
            return response.status_code == 200

        wait_until(server, served, 120)
    return server, time.perf_counter() - start


def start_peer(root: Path, workdir: Path, model_dir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, str(root / "scripts" / "peer_server.py"), "--model-dir", str(model_dir)]
    url = f"http://127.0.0.1:{port}"
    server = _spawn("peer server", [*cmd, "--port", str(port)], workdir / "peer.log", url, root, dict(os.environ))
    wait_until(server, lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, 60)
    return server


# --- Azurite -------------------------------------------------------------------------------------------------------


class Azurite:
    """Blob, queue and table emulators in memory on free ports, each logging one access-log line per request."""

    SERVICES = ("blob", "queue", "table")

    def __init__(self, root: Path, workdir: Path) -> None:
        self.ports = {s: free_port() for s in self.SERVICES}
        self.servers: dict[str, Server] = {}
        for service, port in self.ports.items():
            binary = root / "node_modules" / ".bin" / f"azurite-{service}"
            if not binary.exists():
                self.stop()
                raise RuntimeError(f"{binary} is missing: run `make node`")
            cmd = [str(binary), "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--loose"]
            cmd += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
            log = workdir / f"azurite-{service}.log"
            self.servers[service] = _spawn(f"azurite-{service}", cmd, log, "", workdir, dict(os.environ))
        for service, server in self.servers.items():
            wait_until(server, lambda p=self.ports[service]: _listening(p), 60)

    def connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={base}:{self.ports['blob']}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint={base}:{self.ports['queue']}/{AZURITE_ACCOUNT};"
            f"TableEndpoint={base}:{self.ports['table']}/{AZURITE_ACCOUNT};"
        )

    def counts(self) -> Counter[str]:
        """Requests served so far: `queue`, `table`, `blob-delete`, `blob-read` (GET/HEAD) and `blob-write` (the
        rest): Azure prices a blob delete apart (free on general-purpose v2), so it is counted apart."""
        time.sleep(0.3)  # let the access logs reach their files
        counts: Counter[str] = Counter()
        for service, server in self.servers.items():
            for method in ACCESS_LINE.findall(server.log_path.read_text(errors="replace")):
                counts[storage_class(service, method)] += 1
        return counts

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def storage_class(service: str, method: str) -> str:
    """The price class of one request Azurite served: its service, and for a blob whether it read, wrote or
    deleted (a delete is free on general-purpose v2 accounts, so it is counted apart)."""
    if service != "blob":
        return service
    if method == "DELETE":
        return "blob-delete"
    return "blob-write" if method in BLOB_WRITES else "blob-read"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
