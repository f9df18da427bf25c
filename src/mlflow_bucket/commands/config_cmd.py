"""``mlflow-bucket config``: the configuration in force here, and where each value comes from."""

from __future__ import annotations

import argparse
import json

from ..project import load_config, user_config_path
from ..redact import redact
from .common import EXIT_OK, errors_handled


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "config",
        help="show the configuration in force here and where each value comes from",
        description=(
            "Show the store URI, storage options and engine settings that MLflow processes "
            "started in this folder use, each with its source: an MLflow variable, an "
            "MLFLOW_BUCKET_* variable, the project file, the user config file or the default."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--uri", action="store_true", help="print only the store URI (empty if none)"
    )
    parser.set_defaults(func=run)


@errors_handled("config")
def run(args: argparse.Namespace) -> int:
    config = load_config()
    if args.uri:
        print(redact(config.uri or ""))
        return EXIT_OK
    rows = config.describe()
    if args.json:
        doc = {
            "project_file": str(config.project_file) if config.project_file else None,
            "user_file": str(user_config_path() or "") or None,
            "values": {key: {"value": value, "source": src} for key, value, src in rows},
        }
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    print(f"project file: {config.project_file or '(none found)'}")
    user = user_config_path()
    print(f"user file:    {user or '(none)'}{'' if config.user_file else ' (absent)'}")
    width = max(len(key) for key, _, _ in rows)
    for key, value, source in rows:
        print(f"  {key:<{width}}  {value or '-':<40}  {source}")
    return EXIT_OK
