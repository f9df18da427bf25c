"""The engine's log: an append-only, totally ordered, shared log on an object store.

- ``Log``: append batches (create-if-absent on the next number), read them
  back in order, and decide "who was first" by log order;
- ``Checkpoints``: fold the log into a state, store checkpoints, compact
  and garbage-collect; ``LogView`` keeps such a state in memory;
- ``ObjectCache``: local disk cache of the (immutable) objects;
- ``Spool``: durable local write-behind queue with a background flusher
  and crash recovery;
- ``ClockOffset``: the store's clock, for timestamps (never for order).

The on-bucket format is described in docs/format.md.
"""

from __future__ import annotations

from .cache import ObjectCache, default_cache_dir
from .checkpoint import (
    Base,
    Checkpoints,
    Compaction,
    FoldFn,
    GcReport,
    LogGap,
    SideObjects,
)
from .clock import ClockOffset
from .codec import FORMAT_VERSION, CorruptObject, CorruptObjectWarning, FormatTooNew
from .sequence import AppendContention, Entry, Log, LogTruncated, Record
from .spool import Flusher, Spool, default_spool_dir
from .view import LogView

__all__ = [
    "FORMAT_VERSION",
    "AppendContention",
    "Base",
    "Checkpoints",
    "ClockOffset",
    "Compaction",
    "CorruptObject",
    "CorruptObjectWarning",
    "Entry",
    "Flusher",
    "FoldFn",
    "FormatTooNew",
    "GcReport",
    "Log",
    "LogGap",
    "LogTruncated",
    "LogView",
    "ObjectCache",
    "Record",
    "SideObjects",
    "Spool",
    "default_cache_dir",
    "default_spool_dir",
]
