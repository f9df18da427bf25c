"""``mlflow-bucket status`` (or ``ls``): experiments, run counts, last activity, spool."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from ..redact import redact
from .common import (
    EXIT_OK,
    add_uri_argument,
    errors_handled,
    format_time,
    object_cache,
    open_target,
    resolve,
    ticker,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "status",
        aliases=["ls"],
        help="list experiments with run counts and last activity, and the local spool",
        description=(
            "Read the store (nothing is written) and list its experiments with their "
            "run counts and last activity, the number of registered models, and what waits "
            "in this machine's spool for the store."
        ),
    )
    add_uri_argument(parser)
    parser.add_argument("--deleted", action="store_true", help="list deleted experiments too")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


@errors_handled("status")
def run(args: argparse.Namespace) -> int:
    from mlflow_bucket_plugins.maintenance.summary import summarize

    from ..marker import read_marker
    from ..spool_state import spool_dir, spool_folders

    target = resolve(args.uri)
    with open_target(target) as store:
        marker = read_marker(store)
        if marker is None:
            summary = None
        else:
            with ticker("reading experiments", "exp") as tick:
                summary = summarize(
                    store,
                    cache=object_cache(store, target),
                    deleted=args.deleted,
                    progress=tick,
                )
        folders = spool_folders(spool_dir(store, target.config.settings))
    if args.json:
        doc: dict[str, Any] = {
            "uri": redact(target.uri),
            "format_version": marker.get("version") if marker else None,
            "experiments": [asdict(e) for e in summary.experiments] if summary else [],
            "registered_models": summary.registered_models if summary else 0,
            "spool": [
                {
                    "path": str(f.path),
                    "alive": f.alive,
                    "batches": f.batches,
                    "inflight": f.inflight,
                }
                for f in folders
            ],
            # Damaged objects and objects past a log's end, each naming its URL.
            "warnings": summary.warnings if summary else [],
        }
        print(json.dumps(doc, indent=2, default=str))
        return EXIT_OK
    print(f"store: {redact(target.uri)}")
    if summary is None:
        print("empty: nothing has been logged yet (no format marker)")
    else:
        print(f"format version {marker['version'] if marker else '-'}")
        rows = [("ID", "NAME", "RUNS", "DELETED RUNS", "LAST ACTIVITY")]
        for e in summary.experiments:
            name = e.name + (" (deleted)" if e.stage == "deleted" else "")
            rows.append(
                (e.id, name, str(e.runs), str(e.deleted_runs), format_time(e.last_activity_ms))
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        print(
            f"{len(summary.experiments)} experiment(s), {summary.runs} run(s), "
            f"{summary.registered_models} registered model(s)"
        )
        # What the reads skipped: damaged objects, objects past a log's end.
        for text in summary.warnings:
            print(f"warning: {text}")
    if not folders:
        print("spool: empty")
    for f in folders:
        state = "running process" if f.alive else "ended process, waiting for upload"
        if f.alive or f.batches or f.inflight:
            print(f"spool: {f.path.name}: {state}, {f.batches} batch(es)")
    return EXIT_OK
