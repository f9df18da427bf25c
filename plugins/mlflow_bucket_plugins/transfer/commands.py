"""``mlflow-bucket import``, ``export`` and ``verify`` (docs/migrating.md).

The parsers import no MLflow (``mlflow-bucket --help`` stays fast); the
commands do.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from mlflow_bucket.redact import redact

BUCKET_SCHEMES = ("gs", "gcs", "s3", "memory", "bucket+file")
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def is_bucket(uri: str) -> bool:
    return urllib.parse.urlparse(uri).scheme in BUCKET_SCHEMES


def is_sql(uri: str) -> bool:
    # MLflow's SQL URIs may name a driver: postgresql+psycopg2://...
    return urllib.parse.urlparse(uri).scheme.split("+")[0] in SQL_SCHEMES


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--experiments",
        nargs="+",
        metavar="NAME_OR_ID",
        help="only these experiments (default: all, deleted ones too)",
    )
    parser.add_argument("--no-registry", action="store_true", help="leave the model registry out")
    parser.add_argument("--no-artifacts", action="store_true", help="leave the artifacts out")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (default: on a terminal)"
    )
    parser.add_argument(
        "--chunk-runs",
        type=int,
        default=200,
        metavar="N",
        help="runs per write (one object, or one transaction) (default: 200)",
    )


def build_transfer_parsers(sub: Any) -> None:
    imp = sub.add_parser(
        "import",
        help="copy an MLflow tracking store (folder, database, server) into the bucket store",
        description="Copy experiments, runs, logged models, artifacts and the model registry "
        "from SOURCE_URI (any tracking URI MLflow can open) into the bucket store. Resumable: "
        "run it again to finish an interrupted copy; what is there already is skipped.",
    )
    imp.add_argument("source", metavar="SOURCE_URI")
    imp.add_argument(
        "--to",
        metavar="BUCKET_URI",
        help="the bucket store (default: the configured one, see `mlflow-bucket config`)",
    )
    _common(imp)
    exp = sub.add_parser(
        "export",
        help="copy the bucket store into an SQL database (sqlite:///...) or another bucket",
        description="Copy the bucket store into DEST_URI: an SQL database MLflow can use "
        "(sqlite, postgresql, mysql), or another bucket store. Resumable like import.",
    )
    exp.add_argument("dest", metavar="DEST_URI")
    exp.add_argument(
        "--from",
        dest="source",
        metavar="BUCKET_URI",
        help="the store to copy (default: the configured bucket store, see "
        "`mlflow-bucket config`; any tracking URI MLflow can open)",
    )
    exp.add_argument(
        "--artifact-root",
        help="where an SQL destination keeps artifacts (default: an 'artifacts' folder "
        "beside a sqlite file)",
    )
    _common(exp)
    ver = sub.add_parser(
        "verify",
        help="compare two tracking stores entity by entity; exit 1 on any difference",
    )
    ver.add_argument("a", metavar="A")
    ver.add_argument("b", metavar="B")
    ver.add_argument(
        "--experiments", nargs="+", metavar="NAME_OR_ID", help="only these experiments"
    )
    ver.add_argument("--no-registry", action="store_true", help="leave the model registry out")
    ver.add_argument("--no-artifacts", action="store_true", help="leave the artifacts out")
    ver.add_argument(
        "--ids", action="store_true", help="experiment ids must match too (default: names)"
    )


def _bucket_store(given: str | None) -> str:
    """The bucket store named on the command line, else the configured one (docs/cli.md)."""
    from mlflow_bucket.commands.common import resolve

    return resolve(given).uri


def _refuse(message: str, code: int = 2) -> Any:
    from mlflow_bucket.commands.common import CommandError

    raise CommandError(message, code)


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


def _destination(uri: str, artifact_root: str | None = None) -> Any:
    if is_bucket(uri):
        from .to_bucket import BucketDestination

        return BucketDestination(uri)
    if is_sql(uri):
        from .to_sql import SqlDestination

        return SqlDestination(uri, artifact_root)
    return _refuse(
        f"cannot write to {uri!r}: give a bucket store "
        f"({', '.join(s + '://' for s in BUCKET_SCHEMES)}) or an SQL database "
        f"({', '.join(s + '://' for s in SQL_SCHEMES)})"
    )


def _quiet_per_file_bars() -> None:
    # One bar per run's artifacts (MLflow's and the engine's) would drown the copy's own bars.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_BUCKET_PROGRESS", "0")


def check_source(uri: str) -> None:
    """A source that does not exist is an error, not an empty store.

    (MLflow would create one: a new SQLite file, or a FileStore folder.)
    """
    parsed = urllib.parse.urlparse(uri)
    path = None
    if parsed.scheme == "sqlite" and uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
    elif parsed.scheme == "file":
        path = parsed.path
    elif parsed.scheme == "":
        path = uri
    if path is not None and path != ":memory:" and not os.path.exists(path):
        _refuse(f"{uri}: no such store ({path} does not exist)")


def _copy(source_uri: str, dest_uri: str, args: argparse.Namespace) -> int:
    from .copy import copy_store
    from .source import Source

    check_source(source_uri)
    _quiet_per_file_bars()
    dest = _destination(dest_uri, getattr(args, "artifact_root", None))
    try:
        source = Source(source_uri)
        report = copy_store(
            source,
            dest,
            experiments=args.experiments,
            chunk_runs=max(1, args.chunk_runs),
            registry=not args.no_registry,
            artifacts=not args.no_artifacts,
            progress=_progress(args),
        )
    except ValueError as exc:
        _refuse(str(exc))
    for line in report.lines():
        print(redact(line))
    return 0


def _handled(name: str, run: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    from mlflow_bucket.commands.common import errors_handled

    return errors_handled(name)(run)


def run_import(args: argparse.Namespace) -> int:
    return _handled("import", lambda a: _copy(a.source, _bucket_store(a.to), a))(args)


def run_export(args: argparse.Namespace) -> int:
    def export(a: argparse.Namespace) -> int:
        # --from may name any store MLflow opens (a copy between two databases, say).
        given = a.source if a.source and not is_bucket(a.source) else None
        return _copy(given or _bucket_store(a.source), a.dest, a)

    return _handled("export", export)(args)


def run_verify(args: argparse.Namespace) -> int:
    return _handled("verify", _verify)(args)


def _verify(args: argparse.Namespace) -> int:
    from .compare import differences, snapshot
    from .source import Source

    check_source(args.a)
    check_source(args.b)
    _quiet_per_file_bars()

    def take(uri: str) -> Any:
        return snapshot(
            Source(uri),
            experiments=args.experiments,
            artifacts=not args.no_artifacts,
            registry=not args.no_registry,
            ids=args.ids,
        )

    try:
        found = differences(take(args.a), take(args.b))
    except ValueError as exc:
        _refuse(str(exc))
    for line in found:
        print(line)
    if found:
        a, b = redact(args.a), redact(args.b)
        print(f"{len(found)} difference(s) between A={a} and B={b}", file=sys.stderr)
        return 1
    print(f"no difference between {redact(args.a)} and {redact(args.b)}", file=sys.stderr)
    return 0
