"""``mlflow-bucket init [URI]``: name the project's store, check it, mark it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..project import (
    PROJECT_FILE,
    PYPROJECT,
    TOOL_TABLE,
    ConfigError,
    _check_uri,
    _table_in,
    load_config,
    project_table_text,
)
from ..redact import redact
from .common import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Target,
    errors_handled,
    mlflow_checks,
    open_target,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "init",
        help="write the project's store URI to its configuration, check access, mark the store",
        description=(
            f"Name the project's store in [tool.{TOOL_TABLE}] of pyproject.toml (or in "
            f"{PROJECT_FILE} when the folder has no pyproject.toml), after checking that "
            "this machine can read, write and delete there and that MLflow resolves the URI "
            "to mlflow-bucket's stores, and create the store's format "
            "marker. MLflow code run in the project then logs there with no change. Asks "
            "for the URI when none is given and stdin is a terminal."
        ),
    )
    parser.add_argument(
        "uri", nargs="?", help="gs://bucket/prefix, s3://bucket/prefix or a local folder"
    )
    parser.add_argument(
        "--dir", default=".", help="the project folder (default: the working directory)"
    )
    parser.add_argument(
        "--file",
        choices=("auto", "pyproject", "toml"),
        default="auto",
        help=f"where to write: pyproject.toml, {PROJECT_FILE}, or auto (pyproject.toml if "
        "the folder has one)",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="write the configuration without touching the store (no access check, no marker)",
    )
    parser.set_defaults(func=run)


def _ask() -> str:
    if not sys.stdin.isatty():
        raise CommandError(
            "no URI given (pass one: mlflow-bucket init gs://bucket/prefix)", EXIT_USAGE
        )
    try:
        answer = input("Store URI (gs://bucket/prefix, s3://bucket/prefix or a folder): ").strip()
    except EOFError:
        answer = ""
    if not answer:
        raise CommandError("no URI given", EXIT_USAGE)
    return answer


def _check_access(target: Target) -> None:
    from ..doctor import run_checks
    from ..marker import ensure_marker

    with open_target(target) as store:
        checks = run_checks(
            store, storage_options=target.storage_options, settings=target.config.settings
        )
        checks += mlflow_checks(target, store, checks)
        for check in checks:
            print(check.render())
        failed = [c for c in checks if c.status == "fail"]
        if failed:
            raise CommandError(
                f"{len(failed)} check(s) failed; nothing written (fix them, or --no-check)",
                EXIT_FAILED,
            )
        doc = ensure_marker(store)
        marker = redact(store.url("mlflow-bucket.json"))
        print(f"format marker: version {doc['version']} at {marker}")


def _written_uri(uri: str, folder: Path) -> str:
    """The URI as the file holds it: a folder inside the project stays relative."""
    if not uri.startswith("bucket+file://"):
        return uri
    path = Path(uri[len("bucket+file://") :])
    try:
        return f"bucket+file://{path.relative_to(folder.resolve()).as_posix()}"
    except ValueError:
        return uri


@errors_handled("init")
def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if not folder.is_dir():
        raise CommandError(f"{folder} is not a folder", EXIT_USAGE)
    raw = args.uri or _ask()
    try:
        uri = _check_uri(raw, "URI", "the command line", None)
        existing = _table_in(folder.resolve())
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_CONFIG) from None
    if existing is not None:
        path, table = existing
        configured = table.get("uri")
        if configured is not None:
            try:
                same = _check_uri(configured, "uri", str(path), path.parent) == uri
            except ConfigError:
                same = False
            if not same:
                raise CommandError(
                    f"{path} already names a store ({redact(str(configured))!r}); edit it there",
                    EXIT_CONFIG,
                )
    pyproject = folder / PYPROJECT
    use_pyproject = args.file == "pyproject" or (args.file == "auto" and pyproject.is_file())
    text = project_table_text(_written_uri(uri, folder), pyproject=use_pyproject)
    if existing is not None and existing[1].get("uri") is None:
        # A table without a uri: the project adds it by hand (tomllib cannot edit).
        raise CommandError(
            f"{existing[0]} configures mlflow-bucket but names no store: add\n{text}", EXIT_CONFIG
        )
    try:
        config = load_config(folder)
    except ConfigError as exc:
        raise CommandError(f"configuration error: {exc}", EXIT_CONFIG) from None
    if not args.no_check:
        _check_access(Target(uri, config, "argument"))
    if existing is not None:
        print(f"{existing[0]} already names this store")
        return EXIT_OK
    dest = pyproject if use_pyproject else folder / PROJECT_FILE
    if use_pyproject:
        current = pyproject.read_text() if pyproject.is_file() else ""
        sep = (
            ""
            if not current or current.endswith("\n\n")
            else ("\n" if current.endswith("\n") else "\n\n")
        )
        dest.write_text(current + sep + text)
    else:
        dest.write_text(text)
    print(f"wrote the store to {dest}: MLflow code run under {folder.resolve()} now logs there")
    return EXIT_OK
