"""Scoring scripts, Azure ML's contract: a Python file with `init()`, called once after the deployment's model
files are in place (their folder in `AZUREML_MODEL_DIR`, set for init() and run() alike), and `run(raw_data)`,
called per job with the request body's text exactly as sent. A script whose run() is decorated with `@rawhttp`
(imported from `azureml.contrib.services.aml_request`, as on Azure ML) gets a request object instead, with the
content type and the bytes, whatever they are (script_child.py defines it). What `run` returns is the response body;
what it raises fails the job with its message.

The script is operator-supplied code, pinned by sha256. It runs in a child process of its own (`script_child.py`,
one per deployment and worker process, kept for the life of the runtime) started with a minimal environment: no
host settings, keys or connection strings are in its `os.environ`. A `run()` that does not return within its
timeout, or a process that dies, fails that job; the next job starts a new process (init() again).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from shared.domain.errors import ConfigError, InvalidInput, ScriptError

MODEL_DIR_VARIABLE = "AZUREML_MODEL_DIR"
CHILD = Path(__file__).with_name("script_child.py")
# All the script's process gets of the host's environment: nothing that could carry a secret.
PASSED_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")


class _Died(Exception):
    """The script's process closed its pipe: it exited or was killed."""


class ScoringScript:
    def __init__(
        self,
        deployment: str,
        folder: Path,
        script: str,
        model_dir: Path,
        *,
        run_timeout_s: float = 60.0,
        init_timeout_s: float = 600.0,
    ) -> None:
        self.deployment = deployment
        self.folder = folder
        self.script = script
        self.model_dir = model_dir
        self.run_timeout_s = run_timeout_s
        self.init_timeout_s = init_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.raw = False  # run() declares raw input (@rawhttp): known once the script is loaded
        # Scripts are written for Azure ML's server, which calls run() one request at a time per worker.
        self._lock = threading.Lock()

    def load(self) -> None:
        """Start the script's process: it imports the script and calls init(); ConfigError (naming the script)
        when either fails."""
        with self._lock:
            self._start()

    def run(self, body: str | bytes, content_type: str = "application/json", *, is_json: bool = True) -> Any:
        """run()'s value for a request body (JSON text, or bytes as sent with their content type); InvalidInput
        when the body is not JSON and the script does not take raw input."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._start()  # again after a crash or a timeout
            if not is_json and not self.raw:
                raise InvalidInput(
                    f"The request body ({content_type or 'no content type'}) is not JSON, and the scoring script's "
                    "run() takes JSON (a script takes other data when its run() is decorated with @rawhttp)."
                )
            message = {"body": base64.b64encode(data).decode("ascii"), "content_type": content_type}
            try:
                reply = self._ask(message, self.run_timeout_s)
            except TimeoutError:
                self._stop(kill=True)
                raise ScriptError(
                    f"run() did not return within {self.run_timeout_s:g} s: its process was stopped (the next job "
                    "starts a new one)"
                ) from None
            except _Died:
                code = self._stop()
                raise ScriptError(
                    f"the script's process exited (code {code}) during run() (the next job starts a new one)"
                ) from None
        if "raised" in reply:  # whatever the script raises is the job's error, not the worker's
            raise ScriptError(reply["raised"])
        if "not_json" in reply:
            raise ScriptError(f"run() returned a value that is not JSON: {reply['not_json']}")
        return reply["output"]

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _start(self) -> None:
        if self._process is not None:
            return
        path = self.folder.resolve() / self.script
        if not path.is_file():
            raise self._error("the file does not exist")
        name = "inferq_scoring_" + re.sub(r"\W", "_", self.deployment)
        env = {k: os.environ[k] for k in PASSED_VARIABLES if k in os.environ}
        env[MODEL_DIR_VARIABLE] = str(self.model_dir.resolve())
        self._buffer = b""
        self._process = subprocess.Popen(
            [sys.executable, "-I", str(CHILD), str(path.parent), path.name, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=path.parent,
            start_new_session=True,  # its own process group: stopping it stops whatever it started
        )
        # A runtime dropped without close() (or left at exit) still ends its process.
        self._ending = weakref.finalize(self, _end, self._process, True)
        try:
            reply = self._read(self.init_timeout_s)
        except (TimeoutError, _Died) as exc:
            code = self._stop(kill=True)
            why = "it exited" if isinstance(exc, _Died) else f"init() took over {self.init_timeout_s:g} s"
            raise self._error(f"{why} (code {code}) before it was ready") from None
        if "error" in reply:
            self._stop()
            raise self._error(reply["error"])
        self.raw = bool(reply.get("raw"))

    def _ask(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(json.dumps(message).encode() + b"\n")
            self._process.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise _Died from None
        return self._read(timeout_s)

    def _read(self, timeout_s: float) -> dict[str, Any]:
        """The next reply line, waiting at most `timeout_s` for it."""
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise _Died
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _stop(self, kill: bool = False) -> int | None:
        """End the process; its exit code."""
        process, self._process = self._process, None
        if process is None:
            return None
        self._ending.detach()
        return _end(process, kill)

    def _error(self, why: str) -> ConfigError:
        return ConfigError(f"deployment {self.deployment}: scoring script {self.folder / self.script}: {why}")


def _end(process: subprocess.Popen[bytes], kill: bool) -> int:
    """Stop the process and whatever it started (its process group); its exit code. Closing its input ends it once it
    is back from run(); unless `kill`, it has a second for that before it is killed."""
    try:
        if process.stdin is not None:
            process.stdin.close()
    except OSError:
        pass
    deadline = time.monotonic() + (0 if kill else 1)
    # Wait without reaping it: while it is not reaped, its process group id can't be anyone else's.
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if process.stdout is not None:
        process.stdout.close()
    return process.wait()
