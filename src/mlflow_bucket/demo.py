"""``mlflow-bucket demo``: the product's main job on its built-in default.

With no URI it starts the local GCS emulator, writes into
gs://mlflow-demo/team on it, and prints where to look. Given a URI
(gs://..., s3://..., a folder) it does the same against that store.
"""

from __future__ import annotations

import json
import os
import platform
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from .storage import AlreadyExists, ObjectStore, open_store

DEMO_BUCKET = "mlflow-demo"
DEMO_PREFIX = "team"


@contextmanager
def _default_store() -> Iterator[tuple[ObjectStore, str]]:
    from .testing.gcs_emulator import GcsEmulator

    with GcsEmulator() as emulator:
        emulator.create_bucket(DEMO_BUCKET)
        options: dict[str, Any] = {"endpoint_url": emulator.endpoint, "token": "anon"}
        store = open_store(f"gs://{DEMO_BUCKET}/{DEMO_PREFIX}", **options)
        try:
            yield store, emulator.endpoint
        finally:
            store.close()


def _log_sample_run(store: ObjectStore) -> str:
    run_id = uuid.uuid4().hex
    record = {
        "run_id": run_id,
        "user": os.environ.get("USER", "demo"),
        "host": platform.node(),
        "start_time": datetime.now(UTC).isoformat(),
        "params": {"learning_rate": 0.1, "max_depth": 3},
        "metrics": {"accuracy": [[0, 0.71], [1, 0.83], [2, 0.88]]},
    }
    # One immutable object per batch of changes, created if absent.
    store.create(f"demo/runs/{run_id}.json", json.dumps(record, indent=2).encode())
    return run_id


def run(uri: str | None, wait: bool) -> int:
    with _store(uri) as (store, endpoint):
        with suppress(AlreadyExists):
            store.create("demo/README", b"Objects written by `mlflow-bucket demo`.\n")
        run_id = _log_sample_run(store)
        print(f"Logged sample run {run_id} into {store.uri}")
        print("Objects in the store:")
        for info in store.list_objects("demo/"):
            print(f"  {store.url(info.key)}  ({info.size} bytes)")
        if endpoint:
            listing = f"{endpoint}/storage/v1/b/{DEMO_BUCKET}/o?prefix={DEMO_PREFIX}/"
            print(f"Look at it over HTTP: curl '{listing}'")
            if wait:
                print("The emulator keeps running until you press Ctrl-C.")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
    return 0


@contextmanager
def _store(uri: str | None) -> Iterator[tuple[ObjectStore, str]]:
    if uri is None:
        with _default_store() as pair:
            yield pair
        return
    store = open_store(uri)
    try:
        yield store, ""
    finally:
        store.close()
