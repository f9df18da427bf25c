"""``mlflow-bucket compact [URI]``: fold every log's tail into a checkpoint."""

from __future__ import annotations

import argparse

from ..redact import redact
from .common import (
    EXIT_OK,
    add_uri_argument,
    errors_handled,
    object_cache,
    open_target,
    resolve,
    ticker,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "compact",
        help="fold every log's tail into a checkpoint, so cold reads stay short",
        description=(
            "Fold the log objects written since each log's newest checkpoint into a new "
            "checkpoint (the tracking store's experiments, index and per-experiment logs, "
            "and the registry). Processes do this on their own once a tail reaches "
            "compact_threshold; this does it now. Safe while others log: a checkpoint is "
            "written with create-if-absent and racing compactors write the same one."
        ),
    )
    add_uri_argument(parser)
    parser.add_argument(
        "--min-tail",
        type=int,
        default=1,
        metavar="N",
        help="checkpoint only logs with at least N log objects after their newest checkpoint",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="show which logs would get a checkpoint"
    )
    parser.set_defaults(func=run)


@errors_handled("compact")
def run(args: argparse.Namespace) -> int:
    from mlflow_bucket_plugins.maintenance.compaction import compact_log
    from mlflow_bucket_plugins.maintenance.logs import all_logs

    from ..marker import read_marker

    target = resolve(args.uri)
    with open_target(target) as store:
        if read_marker(store) is None:
            print(f"{redact(target.uri)}: empty, nothing to compact")
            return EXIT_OK
        cache = object_cache(store, target)
        specs = all_logs(store)
        results = []
        with ticker("compacting", "log", total=len(specs)) as tick:
            for spec in specs:
                result = compact_log(
                    store, spec, cache=cache, min_tail=args.min_tail, dry_run=args.dry_run
                )
                results.append(result)
                tick(spec.root)
    due = [r for r in results if r.tail >= max(1, args.min_tail)]
    verb = "would checkpoint" if args.dry_run else "checkpointed"
    for r in due:
        if args.dry_run or r.written:
            print(f"{verb} {r.root} at {r.seq} ({r.tail} log object(s) folded)")
        else:
            print(f"{r.root}: another process checkpointed it at {r.seq} first")
    written = sum(1 for r in results if r.written)
    print(
        f"{len(results)} log(s): {len(due) if args.dry_run else written} {verb}, "
        f"{len(results) - len(due)} up to date"
    )
    return EXIT_OK
