"""Import: workload W from SQLite into an emulated GCS bucket, against MLflow's client.

    .venv/bin/python benchmarks/import.py [--runs 2000] [--latency-ms 30]

W is benchmarks/tracking.py's: one experiment of ``--runs`` runs, each with
20 params, 10 tags and 5 metrics x 100 steps, logged into an SQLite store
with MLflow's client. It is then copied into the project's GCS emulator
behind the fault proxy (``--latency-ms`` added to every request) two ways,
each in a fresh process with its own spool and cache folders and each into
a store of its own in the same bucket:

- ``mlflow-bucket import``: bulk writes, one object per chunk of runs, then
  a checkpoint;
- MLflow's client: for each run, create_run, one log_batch (every point of
  its history), set_terminated, as a script using MLflow's API would copy
  it; until everything is uploaded.

Both read the source with MLflow's client. Requests are the proxy's counts.
Printed: a Markdown table; docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tracking import (
    EXPERIMENT,
    METRICS,
    PARAMS,
    STEPS,
    TAGS,
    _flush,
    _proxy_stats,
    _requests_since,
    _store,
    child_fill,
)

# -- in the child: one copy, measured ----------------------------------------------------


def child_import(source: str, dest: str, proxy: str) -> dict[str, Any]:
    from mlflow_bucket.cli import main

    before = _proxy_stats(proxy)
    start = time.perf_counter()
    code = main(["import", source, "--to", dest, "--no-progress"])
    if code != 0:
        raise SystemExit(f"import failed: {code}")
    return {"seconds": time.perf_counter() - start, **_requests_since(proxy, before)}


def child_client_copy(source: str, dest: str, proxy: str) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Param, RunTag, ViewType

    before = _proxy_stats(proxy)
    start = time.perf_counter()
    src, dst = MlflowClient(source), MlflowClient(dest)
    for exp in src.search_experiments(view_type=ViewType.ALL):
        if exp.experiment_id == "0":
            eid = "0"
        else:
            found = dst.get_experiment_by_name(exp.name)
            eid = found.experiment_id if found else dst.create_experiment(exp.name)
        token = None
        while True:
            page = src.search_runs(
                [exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token
            )
            for run in page:
                info, data = run.info, run.data
                new = dst.create_run(
                    eid, start_time=info.start_time, tags=data.tags, run_name=info.run_name
                )
                metrics = [
                    m for key in data.metrics for m in src.get_metric_history(info.run_id, key)
                ]
                dst.log_batch(
                    new.info.run_id,
                    metrics=metrics,
                    params=[Param(k, v) for k, v in data.params.items()],
                    tags=[RunTag(k, v) for k, v in data.tags.items()],
                )
                dst.set_terminated(new.info.run_id, status=info.status, end_time=info.end_time)
            token = page.token
            if not token:
                break
    _flush(_store(dest))
    return {"seconds": time.perf_counter() - start, **_requests_since(proxy, before)}


def child_fill_bulk(source: str, runs: int) -> dict[str, Any]:
    """W written straight into MLflow's SQL tables (the export's writer): MLflow's
    client takes minutes for what is the same rows."""
    from mlflow.entities import (
        Experiment,
        LifecycleStage,
        Metric,
        Param,
        Run,
        RunData,
        RunInfo,
        RunTag,
    )
    from mlflow_bucket_plugins.transfer.source import RunRecord
    from mlflow_bucket_plugins.transfer.to_sql import SqlDestination

    start = time.perf_counter()
    dest = SqlDestination(source, str(Path(source[len("sqlite:///") :]).parent / "artifacts"))
    now = int(time.time() * 1000)
    eid = dest.experiment(Experiment("1", EXPERIMENT, "", LifecycleStage.ACTIVE, [], now, now))
    chunk: list[RunRecord] = []
    for i in range(runs):
        history = {
            f"m{k}": [
                Metric(f"m{k}", ((i * 7919 + k * 104729) % 10007) / (s + 1), now + s, s)
                for s in range(STEPS)
            ]
            for k in range(METRICS)
        }
        run_id = uuid.uuid4().hex
        info = RunInfo(
            run_id,
            eid,
            "bench",
            "FINISHED",
            now + i,
            now + i + 1000,
            LifecycleStage.ACTIVE,
            "",
            f"run-{i}",
        )
        data = RunData(
            metrics=[h[-1] for h in history.values()],
            params=[Param(f"p{j}", f"value-{j}-{i % 17}") for j in range(PARAMS)],
            tags=[RunTag(f"t{j}", f"tag-{j}-{i % 13}") for j in range(TAGS)]
            + [RunTag("mlflow.runName", f"run-{i}")],
        )
        chunk.append(RunRecord(Run(info, data), history))
        if len(chunk) == 200 or i == runs - 1:
            dest.write(eid, chunk, [])
            chunk = []
    dest.close()
    return {"seconds": time.perf_counter() - start}


def _preimport() -> None:
    import mlflow
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow_bucket_plugins.tracking.store
    import mlflow_bucket_plugins.transfer.copy
    import mlflow_bucket_plugins.transfer.to_bucket  # noqa: F401

    import mlflow_bucket.storage.gcs  # noqa: F401


def child_main(argv: list[str]) -> None:
    op = argv[0]
    _preimport()
    if op == "fill":
        result = child_fill(argv[1], int(argv[2]), "")
    elif op == "fill-bulk":
        result = child_fill_bulk(argv[1], int(argv[2]))
    elif op == "import":
        result = child_import(argv[1], argv[2], argv[3])
    elif op == "client":
        result = child_client_copy(argv[1], argv[2], argv[3])
    else:
        raise SystemExit(f"unknown operation {op}")
    print("RESULT " + json.dumps(result), flush=True)


# -- in the parent -------------------------------------------------------------------------


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=30)
    parser.add_argument(
        "--client-fill",
        action="store_true",
        help="fill the SQLite source with MLflow's client (slow) instead of in bulk",
    )
    parser.add_argument("--keep", metavar="PATH", help="keep the SQLite source there")
    parser.add_argument(
        "--source", metavar="PATH", help="an SQLite file of W kept by --keep: no fill"
    )
    args = parser.parse_args(argv)

    from mlflow_bucket.testing.fault_proxy import FaultProxy
    from mlflow_bucket.testing.gcs_emulator import GcsEmulator
    from mlflow_bucket.testing.pytest_plugin import gcs_bucket_info

    work = Path(tempfile.mkdtemp(prefix="mlflow-bucket-bench-import-"))
    base_env = {
        "MLFLOW_BUCKET_PROGRESS": "0",
        "PYTHONWARNINGS": "ignore",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }
    source = f"sqlite:///{work / 'source.db'}"
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        started = time.perf_counter()
        if args.source:
            shutil.copy(args.source, work / "source.db")
        else:
            print(f"filling {source} with W ({args.runs} runs)...", file=sys.stderr, flush=True)
            _child(["fill" if args.client_fill else "fill-bulk", source, str(args.runs)], base_env)
            print(f"  filled in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        with GcsEmulator() as emulator:
            proxy = FaultProxy(emulator.endpoint, latency_ms=args.latency_ms).start()
            try:
                bucket = f"bench-{uuid.uuid4().hex[:12]}"
                emulator.create_bucket(bucket)
                info = gcs_bucket_info(bucket, proxy.endpoint)

                def env(phase: str) -> dict[str, str]:
                    return {
                        **base_env,
                        **info.env,
                        "MLFLOW_BUCKET_SPOOL_DIR": str(work / "spool" / phase),
                        "MLFLOW_BUCKET_CACHE_DIR": str(work / "cache" / phase),
                    }

                for label, op, root in (
                    ("mlflow-bucket import", "import", "imported"),
                    ("MLflow client, log_batch per run", "client", "client"),
                    ("mlflow-bucket import, again (nothing to do)", "import", "imported"),
                ):
                    dest = f"gs://{bucket}/{root}"
                    result = _child([op, source, dest, proxy.endpoint], env(f"{op}-{len(rows)}"))
                    rows.append((label, result))
                    print(
                        f"{label:45} {result['seconds']:8.2f} s  {result['requests']} requests",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                proxy.stop()
    finally:
        if args.keep:
            shutil.copy(work / "source.db", args.keep)
        shutil.rmtree(work, ignore_errors=True)
    _table(rows, args)


def _table(rows: list[tuple[str, dict[str, Any]]], args: argparse.Namespace) -> None:
    client = next(r for label, r in rows if label.startswith("MLflow client"))
    print()
    print(f"W: {args.runs} runs x (20 params, 10 tags, 5 metrics x 100 steps), from SQLite")
    print(f"Latency added per bucket request: {args.latency_ms:.0f} ms")
    print()
    print("| copy into the bucket | time | requests (writes) | runs/s | vs MLflow client |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, r in rows:
        ratio = r["seconds"] / client["seconds"] if client["seconds"] else 0
        print(
            f"| {label} | {r['seconds']:.1f} s | {r['requests']} ({r['writes']}) "
            f"| {args.runs / r['seconds']:.0f} | {ratio:.2f}x |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
