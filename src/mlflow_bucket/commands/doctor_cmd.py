"""``mlflow-bucket doctor [URI]``: check that the store works from this machine."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import Target, add_uri_argument, errors_handled, mlflow_checks, open_target, resolve

if TYPE_CHECKING:
    from ..doctor import Check


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "doctor",
        help="check credentials, access, create-if-absent, clock, latency, format, spool, "
        "and that MLflow resolves the store to mlflow-bucket",
        description=(
            "Check that the store works from this machine: credentials found, bucket "
            "reachable, read, write and delete under the prefix, create-if-absent honoured, "
            "clock skew, latency, format version, batches of a crashed process waiting "
            "in the local spool, and that MLflow itself resolves the URI to mlflow-bucket's "
            "tracking store, registry store and artifact repository (a plugin MLflow could "
            "not load is named with its error), and that no foreign object lies under the "
            "logs (one numbered past a log's end, say). Each check passes, warns or fails "
            "with a fix. "
            "Exit 0 if none failed, 1 if one did, 3 if no store is configured."
        ),
    )
    add_uri_argument(parser)
    parser.set_defaults(func=run)


def _log_checks(store: Any, earlier: list[Check]) -> list[Check]:
    """The logs check (no foreign object under a log), if the MLflow side loads:
    when it does not, the MLflow checks say why, and doctor must still report."""
    try:
        from mlflow_bucket_plugins.maintenance.health import log_checks
    except Exception:
        return []
    return log_checks(store, earlier)


@errors_handled("doctor")
def run(args: argparse.Namespace) -> int:
    from ..doctor import report

    target: Target = resolve(args.uri)
    if target.source != "argument":
        print(f"store from {target.source}")
    with open_target(target) as store:
        return report(
            store,
            storage_options=target.storage_options,
            settings=target.config.settings,
            more=lambda earlier: [
                *mlflow_checks(target, store, earlier),
                # Objects under a log that are not part of it (docs/format.md, "Gaps").
                *_log_checks(store, earlier),
            ],
        )
