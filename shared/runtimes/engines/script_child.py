"""The process a scoring script runs in, started by `scoring_script.py` with `python -I` (no PYTHON* variables, no
user site, no project folder on sys.path), a minimal environment and the script's folder as its working directory.

Standard library only: it imports nothing of the host's. It talks JSON lines on private copies of stdin/stdout;
the script's own stdout goes to stderr (the host's log), and its stdin reads nothing.
  ← {"ready": true} | {"error": "<why the script does not load>"}        once, after import and init()
  → {"raw": "<the request body as JSON text>"}                           per job
  ← {"output": <run()'s value>} | {"raised": "<Type>: <message>"} | {"not_json": "<why>"}
Whatever kills the process (os._exit, a signal, sys.exit) is seen by the host as the pipe closing.

Usage: python -I script_child.py <folder> <script file name> <module name>
"""

import importlib.util
import json
import os
import sys
import traceback
from types import ModuleType


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
    reply({"ready": True})
    for line in requests:
        raw = json.loads(line)["raw"]
        try:
            output = why.run(raw)
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
