"""A separate process for the registry's race tests: another machine, as far as the store knows.

    python registry_worker.py register URI NAME COUNT GO_FILE
    python registry_worker.py promote URI NAME CANDIDATE METRIC GO_FILE

Each writes GO_FILE.ready.<pid> when it is set up, waits until GO_FILE
exists (so that all workers start together), does its part and prints one
JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _wait(go: str) -> None:
    with open(f"{go}.ready.{os.getpid()}", "w"):
        pass
    deadline = time.monotonic() + 120
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("never told to go")
        time.sleep(0.005)


def register(uri: str, name: str, count: int, go: str) -> dict[str, object]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    # Open the store and load the registry first: the race is in the writes.
    client.search_registered_models(max_results=1)
    _wait(go)
    try:
        client.create_registered_model(name)
        created = True
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        created = False
    versions = [
        int(client.create_model_version(name, f"s3://somewhere/{os.getpid()}/{i}").version)
        for i in range(count)
    ]
    return {"created": created, "versions": versions}


def promote_one(uri: str, name: str, candidate: int, metric: str, go: str) -> dict[str, object]:
    from mlflow import MlflowClient
    from mlflow_bucket_plugins.registry.promote import promote

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.get_registered_model(name)  # warm: the race is in the decision, not the imports
    _wait(go)
    return promote(name, metric, candidate=candidate, client=client).to_dict()


def main(argv: list[str]) -> None:
    if argv[0] == "register":
        out = register(argv[1], argv[2], int(argv[3]), argv[4])
    elif argv[0] == "promote":
        out = promote_one(argv[1], argv[2], int(argv[3]), argv[4], argv[5])
    else:
        raise SystemExit(f"unknown command {argv[0]}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
