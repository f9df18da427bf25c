"""What the UI tests share: the running UI's description and the client script."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILL_SCRIPT = Path(__file__).with_name("fill_store.py")

# MLflow 3.18's own race (test_ui_no_errors.py's docstring; docs/ui.md): a log record of uvicorn's
# "Exception in ASGI application" whose only exception is this one, raised in
# mlflow/server/assistant/identity.py.
MLFLOW_AUTH_RACE = (
    "AttributeError: partially initialized module 'mlflow.server.auth' has no attribute "
    "'is_auth_enabled' (most likely due to a circular import)"
)
_RACE_FRAME = re.compile(r'mlflow/server/assistant/identity\.py", line \d+, in auth_plugin_active')
_EXCEPTION_LINE = re.compile(r"^[ |]*(?:[A-Za-z_][\w.]*\.)?\w*(?:Error|Exception|Group)\b[^\n]*$")
_RACE_GROUP = "ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)"
# MLflow's log records (and uvicorn's, with MLflow's log config) start with a timestamp.
_RECORD_START = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ", re.MULTILINE)
TRACEBACK = "Traceback (most recent call last)"
ASSISTANT_API = "/ajax-api/3.0/mlflow/assistant/"


def _records(log: str) -> list[str]:
    """The log cut into records: each starts at a timestamp and runs to the next."""
    starts = [m.start() for m in _RECORD_START.finditer(log)]
    bounds = [0, *starts, len(log)]
    return [log[a:b] for a, b in itertools.pairwise(bounds) if log[a:b].strip()]


def _is_mlflow_auth_race(record: str) -> bool:
    lines = record.splitlines()
    if "Exception in ASGI application" not in lines[0] or not _RACE_FRAME.search(record):
        return False
    exceptions = [line.strip(" |") for line in lines[1:] if _EXCEPTION_LINE.match(line)]
    return bool(exceptions) and all(e in (MLFLOW_AUTH_RACE, _RACE_GROUP) for e in exceptions)


def split_tracebacks(log: str) -> tuple[list[str], list[str]]:
    """The log's records holding a traceback: (MLflow's auth race, every other)."""
    race: list[str] = []
    other: list[str] = []
    for record in _records(log):
        if TRACEBACK in record:
            (race if _is_mlflow_auth_race(record) else other).append(record)
    return race, other


@dataclass
class Ui:
    """A running ``mlflow-bucket ui`` and what was logged before it started."""

    url: str
    uri: str
    env: dict[str, str]
    log_path: Path
    filled: dict[str, Any]
    server_errors: list[str] = field(default_factory=list)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def run_client(env: dict[str, str], *args: str) -> dict[str, Any]:
    """fill_store.py in its own process, as a training script would run."""
    out = subprocess.run(
        [sys.executable, str(FILL_SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result
