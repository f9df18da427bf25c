"""The engine's knobs, with their defaults and environment variables.

``Settings.from_env`` reads the variables only. The configuration in force
for a process (variables, then the project file, then the user config
file, then these defaults) is ``mlflow_bucket.project.load_config().settings``;
see docs/configuration.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _number(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


@dataclass(frozen=True)
class Settings:
    # Upload inside each logging call instead of through the spool.
    sync: bool = False
    # How often the background flusher uploads what was logged.
    flush_interval: float = 2.0
    # Where the write-behind spool lives (default: the platform's data dir).
    spool_dir: Path | None = None
    # Where immutable objects are cached (default: the platform's cache dir).
    cache_dir: Path | None = None
    # A reader lists the bucket for news at most this often (seconds).
    refresh_interval: float = 1.0
    # Log objects after which a reader or writer writes a checkpoint.
    compact_threshold: int = 32

    @classmethod
    def from_env(cls) -> Settings:
        spool = os.environ.get("MLFLOW_BUCKET_SPOOL_DIR")
        cache = os.environ.get("MLFLOW_BUCKET_CACHE_DIR")
        return cls(
            sync=_flag("MLFLOW_BUCKET_SYNC", cls.sync),
            flush_interval=_number("MLFLOW_BUCKET_FLUSH_INTERVAL", cls.flush_interval),
            spool_dir=Path(spool) if spool else None,
            cache_dir=Path(cache) if cache else None,
            refresh_interval=_number("MLFLOW_BUCKET_REFRESH_INTERVAL", cls.refresh_interval),
            compact_threshold=int(
                _number("MLFLOW_BUCKET_COMPACT_THRESHOLD", cls.compact_threshold)
            ),
        )
