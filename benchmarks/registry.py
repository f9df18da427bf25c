"""Registry: cold and warm reads of mlflow-bucket's model registry against MLflow's SQLite one.

    .venv/bin/python benchmarks/registry.py [--models 50] [--versions 20] [--latency-ms 30]

The registry holds ``--models`` registered models of ``--versions`` versions
each; every version comes from its own run id and carries two tags, every
model two tags and an alias. The same registry is written to the project's
GCS emulator (through mlflow-bucket) and to an SQLite file (MLflow's
SqlAlchemyStore).

Then each measured operation runs in a fresh subprocess, as a new `mlflow
ui` or a CI job would: the two calls the UI makes most,
``search_model_versions("run_id = '...'")`` (every run page) and
``get_registered_model`` (every model page), plus a version's registration.
On the bucket they go through the fault proxy, which adds
``--latency-ms`` to every request and counts the requests. "cold" is a new
process with an empty local cache; "warm cache" a new process whose disk
cache holds the objects from an earlier one; "in process" the median of
repeated calls in a process that has read the registry once (no requests
until the refresh interval passes). Printed at the end: a Markdown table
(docs/performance.md records a run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

MODEL = "model-{:03d}"
REPEATS = 20

# -- in the child: one operation, measured -----------------------------------------------


def _proxy_stats(proxy: str) -> int:
    if not proxy:
        return 0
    request = urllib.request.Request(f"{proxy}/__proxy__/stats", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return int(json.loads(answer.read())["total"])


def _run_id(model: int, version: int) -> str:
    return f"{model:016x}{version:016x}"


def _registry(uri: str) -> Any:
    """The registry store MLflow itself opens for ``uri``."""
    if uri.startswith("sqlite:"):
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

        return SqlAlchemyStore(uri)
    from mlflow_bucket_plugins.mlflow_compat import registry_store_for

    return registry_store_for(uri)


def child_fill(uri: str, models: int, versions: int) -> dict[str, Any]:
    from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag

    store = _registry(uri)
    start = time.perf_counter()
    for m in range(models):
        name = MODEL.format(m)
        store.create_registered_model(
            name, [RegisteredModelTag("team", "ml"), RegisteredModelTag("task", f"t{m % 5}")]
        )
        for v in range(1, versions + 1):
            store.create_model_version(
                name,
                f"s3://models/{name}/{v}",
                _run_id(m, v),
                [ModelVersionTag("data", f"d{v % 3}"), ModelVersionTag("owner", "ann")],
            )
        store.set_registered_model_alias(name, "champion", versions)
    return {"seconds": time.perf_counter() - start}


def _timed(proxy: str, call: Any) -> dict[str, Any]:
    before = _proxy_stats(proxy)
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "requests": _proxy_stats(proxy) - before}


def child_read(uri: str, proxy: str, op: str, models: int, versions: int) -> dict[str, Any]:
    m, v = models // 2, versions // 2
    name = MODEL.format(m)

    def search() -> None:
        found = store.search_model_versions(f"run_id = '{_run_id(m, v)}'", 10000, None, None)
        assert [int(x.version) for x in found] == [v], found

    def get() -> None:
        model = store.get_registered_model(name)
        assert model.aliases == {"champion": versions}, model.aliases

    def register() -> None:
        store.create_model_version(name, "s3://models/new", uuid.uuid4().hex)

    call = {"search": search, "get": get, "register": register}[op]
    # Imports are not what is measured (gcsfs and aiohttp alone take about a second).
    import mlflow_bucket_plugins.mlflow_compat  # noqa: F401

    import mlflow_bucket.storage.gcs  # noqa: F401

    before = _proxy_stats(proxy)
    start = time.perf_counter()
    store = _registry(uri)
    opened = time.perf_counter() - start
    first = _timed(proxy, call)
    first["seconds"] += opened
    first["requests"] = _proxy_stats(proxy) - before
    times = []
    before = _proxy_stats(proxy)
    for _ in range(REPEATS if op != "register" else 5):
        times.append(_timed("", call)["seconds"])
    repeated = _proxy_stats(proxy) - before
    return {
        "first": first,
        "repeat_seconds": statistics.median(times),
        "repeat_requests": repeated / len(times),
    }


def child_main(argv: list[str]) -> None:
    if argv[0] == "fill":
        result = child_fill(argv[1], int(argv[2]), int(argv[3]))
    else:
        result = child_read(argv[1], argv[2], argv[3], int(argv[4]), int(argv[5]))
    print("RESULT " + json.dumps(result), flush=True)


# -- in the parent: emulator, proxy, the table -------------------------------------------


def _child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise RuntimeError(f"child {args[:1]} failed ({out.returncode})")
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=30)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        child_main(rest)
        return

    from mlflow_bucket.testing.fault_proxy import FaultProxy
    from mlflow_bucket.testing.gcs_emulator import GcsEmulator
    from mlflow_bucket.testing.pytest_plugin import gcs_bucket_info, unique_bucket_name

    sizes = [str(args.models), str(args.versions)]
    total = args.models * args.versions
    rows: list[tuple[str, str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp, GcsEmulator() as emulator:
        work = Path(tmp)
        bucket = unique_bucket_name("bench")
        emulator.create_bucket(bucket)
        proxy = FaultProxy(emulator.endpoint, latency_ms=args.latency_ms).start()
        try:
            uri = f"gs://{bucket}/mlflow"

            def env(phase: str, via_proxy: bool) -> dict[str, str]:
                info = gcs_bucket_info(bucket, proxy.endpoint if via_proxy else emulator.endpoint)
                return {
                    **info.env,
                    "MLFLOW_BUCKET_SPOOL_DIR": str(work / "spool" / phase),
                    "MLFLOW_BUCKET_CACHE_DIR": str(work / "cache" / phase),
                }

            sqlite = f"sqlite:///{work / 'registry.db'}"
            print(f"filling {args.models} models x {args.versions} versions...", flush=True)
            filled = _child(["fill", uri, *sizes], env("fill", False))
            print(f"  bucket (no added latency): {filled['seconds']:.1f} s", flush=True)
            filled = _child(["fill", sqlite, *sizes], {})
            print(f"  sqlite: {filled['seconds']:.1f} s", flush=True)

            for op in ("search", "get", "register"):
                cold = _child(["read", uri, proxy.endpoint, op, *sizes], env(f"{op}-a", True))
                rows.append(("mlflow-bucket (gs, cold)", op, cold))
                if op != "register":
                    # A second new process on the same machine: its disk cache is warm.
                    again = _child(["read", uri, proxy.endpoint, op, *sizes], env(f"{op}-a", True))
                    rows.append(("mlflow-bucket (gs, warm cache)", op, again))
                rows.append(("SQLite", op, _child(["read", sqlite, "", op, *sizes], {})))
        finally:
            proxy.stop()

    names = {
        "search": "search_model_versions(run_id=...)",
        "get": "get_registered_model",
        "register": "create_model_version",
    }
    print()
    print(
        f"{args.models} models x {args.versions} versions ({total} versions), "
        f"{args.latency_ms:g} ms per bucket request"
    )
    print()
    print("| operation | store | new process: ms | requests | in process: ms | requests per call |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for store, op, result in rows:
        first = result["first"]
        requests = first["requests"] if not store.startswith("SQLite") else ""
        repeat_requests = result["repeat_requests"] if not store.startswith("SQLite") else ""
        print(
            f"| {names[op]} | {store} | {first['seconds'] * 1000:.0f} | {requests} | "
            f"{result['repeat_seconds'] * 1000:.2f} | {repeat_requests} |"
        )


if __name__ == "__main__":
    main()
