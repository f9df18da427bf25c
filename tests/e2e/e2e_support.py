"""What the UI tests share: the running UI's description and the client script."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILL_SCRIPT = Path(__file__).with_name("fill_store.py")


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
