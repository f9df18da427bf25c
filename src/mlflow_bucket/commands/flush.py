"""``mlflow-bucket flush [URI]``: upload what crashed processes left in this machine's spool."""

from __future__ import annotations

import argparse

from ..redact import redact
from .common import EXIT_FAILED, EXIT_OK, add_uri_argument, errors_handled, open_target, resolve


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "flush",
        help="upload the batches that ended processes left in this machine's spool",
        description=(
            "Upload the logged batches that processes which ended before uploading them "
            "(killed, crashed, out of network) left in this machine's spool for the store. "
            "Any MLflow process that opens the store does the same on its own; this does it "
            "without MLflow. Each batch lands exactly once. Exit 1 if some could not be "
            "uploaded within --timeout (they stay in the spool)."
        ),
    )
    add_uri_argument(parser)
    parser.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="give up after this long"
    )
    parser.set_defaults(func=run)


@errors_handled("flush")
def run(args: argparse.Namespace) -> int:
    from ..log import Spool
    from ..spool_state import orphaned, spool_dir, spool_folders

    target = resolve(args.uri)
    settings = target.config.settings
    with open_target(target) as store:
        base = spool_dir(store, settings)
        waiting = orphaned(spool_folders(base))
        if not waiting:
            print(f"nothing waiting in {base}")
            return EXIT_OK
        batches = sum(f.batches + f.inflight for f in waiting)
        print(f"uploading {batches} batch(es) from {len(waiting)} ended process(es)")
        spool = Spool(base, store, flush_interval=settings.flush_interval)
        try:
            done = spool.flush(args.timeout)
        finally:
            spool.close(0 if not done else args.timeout, give_up_on_error=True)
    left = orphaned(spool_folders(base))
    if not done or left:
        error = spool.last_error
        why = f": {redact(str(error))}" if error else ""
        print(f"not everything was uploaded{why}; it stays in {base}")
        return EXIT_FAILED
    print("uploaded")
    return EXIT_OK
