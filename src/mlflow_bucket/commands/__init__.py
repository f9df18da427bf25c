"""The ``mlflow-bucket`` subcommands that work on the configured store.

Each module holds one command: ``add_parser(subparsers)`` registers it and
sets ``func`` to its ``run(args) -> exit code``. Anything that reads the
store's MLflow contents lives under ``mlflow_bucket_plugins.maintenance``
and is imported when the command runs.
"""

from __future__ import annotations

import argparse

from . import compact, config_cmd, doctor_cmd, flush, gc, init, status

MODULES = (init, config_cmd, doctor_cmd, status, compact, gc, flush)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for module in MODULES:
        module.add_parser(sub)
