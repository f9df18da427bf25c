"""The ``mlflow-bucket`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlflow-bucket",
        description="One cloud bucket as a team's whole MLflow backend.",
    )
    parser.add_argument("--version", action="version", version=f"mlflow-bucket {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="run the example training script into a store (default: a local GCS emulator), "
        "then show it in MLflow's UI on localhost",
    )
    demo.add_argument("uri", nargs="?", help="gs://bucket/prefix, s3://bucket/prefix or a folder")
    demo.add_argument(
        "--no-wait", action="store_true", help="stop once the UI answers instead of on Ctrl-C"
    )
    demo.add_argument("--port", type=int, default=5000, help="the UI's port (0: any free one)")
    # init, config, doctor, status/ls, compact, gc, flush: one module each.
    from .commands import register

    register(sub)
    ui = sub.add_parser(
        "ui",
        help="run MLflow's UI on localhost over a store (until Ctrl-C), print its URL",
        description=(
            "Run MLflow's own server and UI over the store, with your credentials, until "
            "Ctrl-C. It has no login: on an address other than 127.0.0.1 (--host 0.0.0.0) "
            "anyone who can reach the port reads and writes the store as you, and the "
            "command says so. Only the Host names given (--host, --allowed-hosts) and the "
            "loopback names are served (docs/ui.md)."
        ),
    )
    from .commands.common import add_uri_argument

    add_uri_argument(ui)
    ui.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only); any other "
        "serves the store with your credentials to whoever reaches the port",
    )
    ui.add_argument(
        "--allowed-hosts",
        default="",
        metavar="NAMES",
        help="comma-separated Host names the server answers besides --host and the "
        "loopback names (the names others type in their browser: a DNS name, an address)",
    )
    ui.add_argument("--port", type=int, default=5000, help="port (0: any free one)")
    # The registry's promotion lives with the MLflow plugins; its parser imports no MLflow.
    from mlflow_bucket_plugins.registry.promote import build_promote_parser

    build_promote_parser(sub)
    # import / export / verify: likewise, MLflow is imported when they run.
    from mlflow_bucket_plugins.transfer.commands import build_transfer_parsers

    build_transfer_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "demo":
        from .demo import run

        return run(args.uri, wait=not args.no_wait, port=args.port)
    if getattr(args, "func", None) is not None:
        return int(args.func(args))
    if args.command == "ui":
        from .ui import run as run_ui

        extra = [name.strip() for name in args.allowed_hosts.split(",") if name.strip()]
        return run_ui(args.uri, args.host, args.port, extra)
    if args.command == "promote":
        from mlflow_bucket_plugins.registry.promote import run_promote

        return run_promote(args)
    if args.command in ("import", "export", "verify"):
        from mlflow_bucket_plugins.transfer import commands

        runners: dict[str, Any] = {
            "import": commands.run_import,
            "export": commands.run_export,
            "verify": commands.run_verify,
        }
        return int(runners[args.command](args))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
