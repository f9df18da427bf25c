"""What waits in the local spool of one store: for ``status`` and ``doctor``.

Looks, never uploads: a folder whose lock is free belongs to a process that
died before its batches were uploaded (the next process that opens the
store, or ``mlflow-bucket flush``, uploads them). Testing the lock takes it
for an instant; a process opening the store at that very instant leaves
the folder to the next one, which is harmless.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .config import Settings
from .log.cache import store_id
from .log.spool import _BATCH_FILE, MARKER_PREFIX, _lock_free, default_spool_dir
from .storage import ObjectStore


@dataclass(frozen=True)
class SpoolFolder:
    path: Path
    alive: bool  # its process still holds the lock
    batches: int
    inflight: int  # upload attempts whose outcome the process never learnt
    oldest: datetime | None  # when the oldest waiting batch was spooled


def spool_dir(store: ObjectStore, settings: Settings) -> Path:
    """The store's spool folder, as a process with these settings uses it."""
    if settings.spool_dir is not None:
        return settings.spool_dir / store_id(store)
    return default_spool_dir(store)


def spool_folders(base: Path) -> list[SpoolFolder]:
    """One entry per process folder under ``base`` (a store's spool folder)."""
    out: list[SpoolFolder] = []
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        batches = 0
        inflight = 0
        oldest: float | None = None
        with contextlib.suppress(OSError):
            for item in os.scandir(path):
                if _BATCH_FILE.match(item.name):
                    batches += 1
                    mtime = item.stat().st_mtime
                    oldest = mtime if oldest is None else min(oldest, mtime)
                elif item.name.startswith(MARKER_PREFIX):
                    inflight += 1
        out.append(
            SpoolFolder(
                path,
                alive=not _lock_free(path),
                batches=batches,
                inflight=inflight,
                oldest=datetime.fromtimestamp(oldest, UTC) if oldest is not None else None,
            )
        )
    return out


def orphaned(folders: list[SpoolFolder]) -> list[SpoolFolder]:
    """Folders of dead processes that still hold batches to upload."""
    return [f for f in folders if not f.alive and (f.batches or f.inflight)]
