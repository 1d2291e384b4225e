"""The process a scoring script runs in, started by `scoring_script.py` with `python -I` (no PYTHON* variables, no
user site, no project folder on sys.path), a minimal environment and the script's folder as its working directory.

Standard library only: it imports nothing of the host's. It talks JSON lines on private copies of stdin/stdout;
the script's own stdout goes to stderr (the host's log), and its stdin reads nothing.
  ← {"ready": true, "raw": <run() is @rawhttp>} | {"error": "<why the script does not load>"}  once, after init()
  → {"body": "<the request body, base64>", "content_type": "<its type>"}                    per job
  ← {"output": <run()'s value>} | {"raised": "<Type>: <message>"} | {"not_json": "<why>"}
Whatever kills the process (os._exit, a signal, sys.exit) is seen by the host as the pipe closing.

run() gets the body's text (JSON, decoded as JSON allows: UTF-8, or UTF-16/32 by its first bytes), or, when the
script decorated it with `@rawhttp`, an AMLRequest. Azure ML's packages are not installed here: importing
`rawhttp`/`AMLRequest` from `azureml.contrib.services.aml_request` (or `azureml_inference_server_http.api.
aml_request`) gets the minimal versions below, so a script written for Azure ML runs unchanged.

Usage: python -I script_child.py <folder> <script file name> <module name>
"""

import base64
import importlib.util
import json
import os
import sys
import traceback
from types import ModuleType

REQUEST_MODULES = ("azureml.contrib.services.aml_request", "azureml_inference_server_http.api.aml_request")


class AMLRequest:
    """The request a @rawhttp run() gets: the part of Azure ML's AMLRequest (a Flask request) a queued job can
    carry. `data`/`get_data()` are the body's bytes as sent, `content_type`/`headers["Content-Type"]` their type,
    `mimetype` that type without parameters; `get_json()` parses the body. No query string, files or form."""

    method = "POST"

    def __init__(self, data: bytes, content_type: str) -> None:
        self.data = data
        self.content_type = content_type
        self.mimetype = content_type.split(";", 1)[0].strip().lower()
        self.headers = {"Content-Type": content_type, "Content-Length": str(len(data))}

    def get_data(self, as_text: bool = False) -> "bytes | str":
        return self.data.decode("utf-8", "replace") if as_text else self.data

    def get_json(self) -> object:
        return json.loads(self.data)


_raw_http_requested = False


def rawhttp(func):  # type: ignore[no-untyped-def]  # the script's run(), as it wrote it
    """Azure ML's decorator: run() takes the raw request (AMLRequest)."""
    global _raw_http_requested
    _raw_http_requested = True
    return func


def install_request_modules() -> None:
    """`rawhttp` and `AMLRequest` importable under Azure ML's module names."""
    for dotted in REQUEST_MODULES:
        parts = dotted.split(".")
        for i in range(1, len(parts)):
            sys.modules.setdefault(".".join(parts[:i]), ModuleType(".".join(parts[:i])))
        module = ModuleType(dotted)
        module.rawhttp = rawhttp  # type: ignore[attr-defined]
        module.AMLRequest = AMLRequest  # type: ignore[attr-defined]
        sys.modules[dotted] = module


def argument(message: dict[str, str]) -> "AMLRequest | str":
    body = base64.b64decode(message["body"])
    if _raw_http_requested:
        return AMLRequest(body, message["content_type"])
    return body.decode(json.detect_encoding(body))


def main() -> None:
    folder, script, name = sys.argv[1:4]
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    os.dup2(2, 1)  # print() in the script goes to the log, never into a reply
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)

    def reply(message: dict[str, object]) -> None:
        replies.write(json.dumps(message, allow_nan=False) + "\n")
        replies.flush()

    why = load(folder, script, name)
    if isinstance(why, str):
        reply({"error": why})
        return
    reply({"ready": True, "raw": _raw_http_requested})
    for line in requests:
        try:
            output = why.run(argument(json.loads(line)))
        except Exception as exc:  # the job's error, not the process's
            reply({"raised": f"{type(exc).__name__}: {exc}"})
            continue
        try:
            reply({"output": output})
        except (TypeError, ValueError) as exc:
            reply({"not_json": str(exc)})


def load(folder: str, script: str, name: str) -> ModuleType | str:
    """The script's module, imported and initialised, or why it does not load."""
    sys.path.append(folder)  # its own helper modules import as on Azure ML (appended: the standard library first)
    install_request_modules()
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, script))
    if spec is None or spec.loader is None:
        return "it is not a Python file"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look a module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        traceback.print_exc()
        return f"it can't be imported: {type(exc).__name__}: {exc}"
    missing = [f for f in ("init", "run") if not callable(getattr(module, f, None))]
    if missing:
        return f"it defines no {' and no '.join(f + '()' for f in missing)}"
    try:
        module.init()
    except Exception as exc:
        traceback.print_exc()
        return f"init() failed: {type(exc).__name__}: {exc}"
    return module


if __name__ == "__main__":
    main()
