"""What the store commands share: finding the store, errors and exit codes, progress."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..project import ConfigError, ProjectConfig, _check_uri, load_config
from ..redact import redact

if TYPE_CHECKING:
    from ..doctor import Check

# Exit codes, the same for every command (docs/cli.md).
EXIT_OK = 0
# A check failed, or the operation failed against the store.
EXIT_FAILED = 1
# Bad arguments (argparse's own code).
EXIT_USAGE = 2
# No store to work on: none given, none configured, or a configuration error.
EXIT_CONFIG = 3

OUR_SCHEMES = ("gs", "gcs", "s3", "memory", "bucket+file")


class CommandError(Exception):
    """An error the user can act on; printed without a traceback."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


URI_HELP = (
    "the store: gs://bucket/prefix, s3://bucket/prefix, bucket+file:///folder or a folder "
    "(default: the configured one, see `mlflow-bucket config`)"
)


def add_uri_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", nargs="?", help=URI_HELP)


@dataclass(frozen=True)
class Target:
    """The store a command works on, and the configuration around it."""

    uri: str
    config: ProjectConfig
    source: str  # "argument" or where the configuration found it

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.config.storage_options_for(self.uri)


def resolve(uri: str | None) -> Target:
    """The store named on the command line, else the configured one."""
    try:
        config = load_config()
    except ConfigError as exc:
        raise CommandError(f"configuration error: {exc}", EXIT_CONFIG) from None
    if uri:
        try:
            return Target(_check_uri(uri, "URI", "the command line", None), config, "argument")
        except ConfigError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    if not config.uri:
        raise CommandError(
            "no store given and none configured: pass a URI, run `mlflow-bucket init URI` "
            "in the project, or set MLFLOW_BUCKET_URI",
            EXIT_CONFIG,
        )
    source = config.sources.get("uri", "")
    scheme = urlsplit(config.uri).scheme.lower()
    if scheme not in OUR_SCHEMES:
        raise CommandError(
            f"the configured store {redact(config.uri)!r} (from {source}) is not a bucket store: "
            "pass a URI, or unset MLFLOW_TRACKING_URI to use the project's",
            EXIT_CONFIG,
        )
    return Target(config.uri, config, source)


@contextmanager
def open_target(target: Target) -> Iterator[Any]:
    from ..storage import open_store

    try:
        store = open_store(target.uri, **target.storage_options)
    except (ValueError, ImportError) as exc:
        raise CommandError(f"cannot open {redact(target.uri)}: {exc}", EXIT_CONFIG) from None
    with store:
        yield store


def mlflow_checks(target: Target, store: Any, earlier: Sequence[Check]) -> list[Check]:
    """doctor's checks that MLflow itself resolves ``target``'s URI to mlflow-bucket's
    tracking store, registry store and artifact repository (``earlier``: the
    storage checks' results; an unreachable store is not opened)."""
    from mlflow_bucket_plugins.resolution import resolution_checks

    from ..doctor import store_unreachable
    from ..project import _same_store

    config = target.config
    artifact_root = config.artifact_root if _same_store(target.uri, config.uri) else None
    return list(
        resolution_checks(
            target.uri,
            store,
            artifact_uri=artifact_root,
            open_stores=not store_unreachable(earlier),
        )
    )


def object_cache(store: Any, target: Target) -> Any:
    """The local object cache a process would use for this store (cloud stores only)."""
    if store.scheme not in ("gs", "s3"):
        return None
    from ..log import ObjectCache

    return ObjectCache.for_store(store, target.config.settings.cache_dir)


def on_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


@contextmanager
def ticker(desc: str, unit: str, total: int | None = None) -> Iterator[Callable[[str], None]]:
    """A callback to call once per item done: a progress bar on stderr on a terminal."""
    if not on_terminal():
        yield lambda label: None
        return
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, total=total, leave=False, file=sys.stderr)

    def tick(label: str) -> None:
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    try:
        yield tick
    finally:
        bar.close()


def errors_handled(
    name: str,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[..., int]]:
    """Turn expected failures into one line on stderr and an exit code.

    Every message is redacted (``mlflow_bucket.redact``): an error may quote
    a URL a client built, with an endpoint's user:password@ or a signed query.
    """

    def wrap(run: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
        @functools.wraps(run)
        def runner(args: argparse.Namespace) -> int:
            from ..marker import UnknownFormat
            from ..storage import StorageError

            def say(what: str, exc: BaseException) -> None:
                print(f"mlflow-bucket {name}: {what}: {redact(str(exc))}", file=sys.stderr)

            try:
                return run(args)
            except CommandError as exc:
                say("error", exc)
                return exc.code
            except ConfigError as exc:
                say("configuration error", exc)
                return EXIT_CONFIG
            except UnknownFormat as exc:
                say("error", exc)
                return EXIT_FAILED
            except StorageError as exc:
                say("error", exc)
                return EXIT_FAILED
            except KeyboardInterrupt:
                print(f"mlflow-bucket {name}: interrupted", file=sys.stderr)
                return 130

        return runner

    return wrap


def format_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
