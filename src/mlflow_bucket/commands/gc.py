"""``mlflow-bucket gc [URI]``: delete folded log objects, old checkpoints and unused data."""

from __future__ import annotations

import argparse
import json

from ..redact import redact
from .common import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    add_uri_argument,
    errors_handled,
    format_size,
    object_cache,
    open_target,
    resolve,
    ticker,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "gc",
        help="delete folded log objects past the retention window and unused data",
        description=(
            "Checkpoint every log (unless --no-compact), then delete what the newest "
            "readable checkpoints make unnecessary: log objects they cover that are older "
            "than the retention window (never a log's newest one), all but the newest two "
            "checkpoints, and side objects (metric histories) no checkpoint refers to any "
            "more, such as those of runs `mlflow gc` deleted permanently. Times are the "
            "store's. Safe while others log. --dry-run lists what would go."
        ),
    )
    add_uri_argument(parser)
    parser.add_argument(
        "--retention",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep objects younger than this (default: gc_retention, 3600; at least 120)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted; delete nothing"
    )
    parser.add_argument(
        "--no-compact", action="store_true", help="do not checkpoint the logs first"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


@errors_handled("gc")
def run(args: argparse.Namespace) -> int:
    from mlflow_bucket_plugins.maintenance import gc as maintenance
    from mlflow_bucket_plugins.maintenance.compaction import compact_log
    from mlflow_bucket_plugins.maintenance.logs import all_logs

    from ..marker import read_marker

    target = resolve(args.uri)
    retention = target.config.gc_retention if args.retention is None else args.retention
    try:
        maintenance.check_retention(retention)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    with open_target(target) as store:
        if read_marker(store) is None:
            print(f"{redact(target.uri)}: empty, nothing to collect")
            return EXIT_OK
        cache = object_cache(store, target)
        specs = all_logs(store)
        if not args.no_compact and not args.dry_run:
            with ticker("compacting", "log", total=len(specs)) as tick:
                for spec in specs:
                    compact_log(store, spec, cache=cache)
                    tick(spec.root)
        plans = []
        reports = []
        if args.dry_run:
            with ticker("planning", "log", total=len(specs)) as tick:
                for spec in specs:
                    plans.append(maintenance.plan(store, spec, retention, cache=cache))
                    tick(spec.root)
        else:
            with ticker("collecting", "log", total=len(specs)) as tick:
                for spec in specs:
                    reports.append(
                        (spec.root, maintenance.collect(store, spec, retention, cache=cache))
                    )
                    tick(spec.root)
        urls = {o.key: store.url(o.key) for p in plans for o in p.objects}
    if args.json:
        doc: dict[str, object] = {
            "uri": redact(target.uri),
            "dry_run": args.dry_run,
            "retention": retention,
        }
        if args.dry_run:
            doc["logs"] = [
                {
                    "root": p.root,
                    "checkpoint": p.checkpoint,
                    "log_objects": [o.key for o in p.log_objects],
                    "checkpoints": [o.key for o in p.checkpoints],
                    "side_objects": [o.key for o in p.side_objects],
                    "unfolded": p.unfolded,
                }
                for p in plans
            ]
        else:
            doc["logs"] = [
                {
                    "root": root,
                    "checkpoint": r.checkpoint,
                    "log_objects": r.log_objects,
                    "checkpoints": r.checkpoints,
                    "side_objects": r.side_objects,
                }
                for root, r in reports
            ]
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    if args.dry_run:
        doomed = [o for p in plans for o in p.objects]
        for o in doomed:
            print(f"would delete {urls[o.key]} ({format_size(o.size)})")
        unfolded = sum(p.unfolded for p in plans)
        print(
            f"{len(doomed)} object(s), {format_size(sum(p.size for p in plans))} would be "
            f"deleted (retention {retention:g} s)"
        )
        if unfolded:
            print(
                f"{unfolded} log object(s) are not folded into a checkpoint yet: gc without "
                "--dry-run checkpoints them first, which may free more"
            )
        return EXIT_OK
    logs = sum(r.log_objects for _, r in reports)
    ckpts = sum(r.checkpoints for _, r in reports)
    sides = sum(r.side_objects for _, r in reports)
    print(
        f"deleted {logs} log object(s), {ckpts} checkpoint(s), {sides} side object(s) "
        f"(retention {retention:g} s)"
    )
    return EXIT_OK
