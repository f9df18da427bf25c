"""Tracking: mlflow-bucket on an emulated GCS bucket against MLflow's SQLite and FileStore.

    .venv/bin/python benchmarks/tracking.py [--runs 2000] [--latency-ms 30]
        [--filestore-runs 2000] [--step-runs 4] [--no-server] [--no-filestore]
        [--no-sqlite]

Workload W: one experiment of ``--runs`` runs, each with 20 params, 10 tags
and 5 metrics x 100 steps, logged with MLflow's client (create_run, one
log_batch, set_terminated per run). The bucket is the project's GCS
emulator behind the fault proxy, which adds ``--latency-ms`` to every
request and counts them; SQLite and FileStore are on local disk.

Every operation runs in a fresh subprocess with its own spool and cache
folders (empty unless the operation is meant to be warm), started after the
imports, so that interpreter and import time are not counted. Requests are
the proxy's counts over the operation. Printed at the end: a table in
Markdown; docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

PARAMS = 20
TAGS = 10
METRICS = 5
STEPS = 100
EXPERIMENT = "bench"
ORDER_BY = ["metrics.m0 DESC"]
# Warm calls are repeated this many times, or for this long at least
# three times (FileStore takes seconds per search), and the median taken.
REPEATS = 20
REPEAT_SECONDS = 15.0

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


# -- in the child: one operation, measured ---------------------------------------------


def _proxy_stats(proxy: str) -> dict[str, Any]:
    if not proxy:
        return {"total": 0, "by_method": {}}
    request = urllib.request.Request(f"{proxy}/__proxy__/stats", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        stats: dict[str, Any] = json.loads(answer.read())
        return stats


def _requests_since(proxy: str, before: dict[str, Any]) -> dict[str, int]:
    after = _proxy_stats(proxy)
    by_after, by_before = after.get("by_method", {}), before.get("by_method", {})
    methods = {m: by_after.get(m, 0) - by_before.get(m, 0) for m in by_after}
    return {
        "requests": after["total"] - before["total"],
        "writes": sum(n for m, n in methods.items() if m in WRITE_METHODS),
        "lists_gets": sum(n for m, n in methods.items() if m == "GET"),
    }


def _store(uri: str) -> Any:
    """The tracking store MLflow itself would open for ``uri``."""
    from mlflow_bucket_plugins.mlflow_compat import tracking_store_for

    return tracking_store_for(uri)


def _flush(store: Any) -> None:
    flush = getattr(store, "flush", None)
    if flush is not None:
        flush()


def _experiment_id(client: Any) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    return str(exp.experiment_id if exp else client.create_experiment(EXPERIMENT))


def child_fill(uri: str, runs: int, proxy: str) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    before = _proxy_stats(proxy)
    start = time.perf_counter()
    client = MlflowClient(uri)
    eid = _experiment_id(client)
    now = int(time.time() * 1000)
    for i in range(runs):
        run = client.create_run(eid, start_time=now + i)
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            metrics=[
                # Values differ between runs, so ordering by a metric means something.
                Metric(f"m{k}", ((i * 7919 + k * 104729) % 10007) / (s + 1), now + s, s)
                for k in range(METRICS)
                for s in range(STEPS)
            ],
            params=[Param(f"p{j}", f"value-{j}-{i % 17}") for j in range(PARAMS)],
            tags=[RunTag(f"t{j}", f"tag-{j}-{i % 13}") for j in range(TAGS)],
        )
        client.set_terminated(run_id)
        if (i + 1) % 500 == 0:
            print(f"  {i + 1} runs in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    logged = time.perf_counter() - start
    _flush(_store(uri))
    return {
        "seconds": time.perf_counter() - start,
        "logged_seconds": logged,
        "flushed_at": time.time(),
        "experiment_id": eid,
        **_requests_since(proxy, before),
    }


def child_steps(uri: str, proxy: str) -> dict[str, Any]:
    """One run the way a training loop logs it: one call per param, tag and point."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    before = _proxy_stats(proxy)
    start = time.perf_counter()
    mlflow.set_experiment(EXPERIMENT)
    latencies = []
    with mlflow.start_run():
        for j in range(PARAMS):
            mlflow.log_param(f"p{j}", j)
        for j in range(TAGS):
            mlflow.set_tag(f"t{j}", j)
        for s in range(STEPS):
            for k in range(METRICS):
                t = time.perf_counter()
                mlflow.log_metric(f"m{k}", s * k / 7, step=s)
                latencies.append(time.perf_counter() - t)
    logged = time.perf_counter() - start
    _flush(_store(uri))
    return {
        "seconds": time.perf_counter() - start,
        "logged_seconds": logged,
        "flushed_at": time.time(),
        "log_metric_median": statistics.median(latencies),
        "log_metric_p90": sorted(latencies)[int(len(latencies) * 0.9)],
        **_requests_since(proxy, before),
    }


def _search(client: Any, eid: str) -> list[Any]:
    runs = client.search_runs([eid], max_results=100, order_by=ORDER_BY)
    assert 0 < len(runs) <= 100, len(runs)
    return list(runs)


def _repeat(call: Any) -> list[float]:
    times: list[float] = []
    begun = time.perf_counter()
    while len(times) < REPEATS and (len(times) < 3 or time.perf_counter() - begun < REPEAT_SECONDS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def child_search(uri: str, proxy: str, eid: str) -> dict[str, Any]:
    """Cold search, then the bulk metric history of 10 runs, then warm searches."""
    from mlflow import MlflowClient

    out: dict[str, Any] = {}
    before = _proxy_stats(proxy)
    start = time.perf_counter()
    client = MlflowClient(uri)
    runs = _search(client, eid)
    out["cold"] = {"seconds": time.perf_counter() - start, **_requests_since(proxy, before)}

    store = _store(uri)
    run_ids = [r.info.run_id for r in runs[:10]]
    before = _proxy_stats(proxy)
    start = time.perf_counter()
    metrics = store.get_metric_history_bulk_interval(run_ids, "m0", 320, None, None)
    out["bulk"] = {"seconds": time.perf_counter() - start, **_requests_since(proxy, before)}
    assert len(metrics) == len(run_ids) * STEPS, len(metrics)

    before = _proxy_stats(proxy)
    times = _repeat(lambda: _search(client, eid))
    requests = _requests_since(proxy, before)
    out["warm"] = {
        "seconds": statistics.median(times),
        "max_seconds": max(times),
        "requests": requests["requests"] / len(times),
    }
    # A search after the view's refresh interval: it lists the bucket for news.
    time.sleep(1.2)
    before = _proxy_stats(proxy)
    start = time.perf_counter()
    _search(client, eid)
    out["refresh"] = {"seconds": time.perf_counter() - start, **_requests_since(proxy, before)}
    return out


def _preimport(uri: str) -> None:
    """Import the store's modules before any clock starts: import time is not measured."""
    import mlflow

    if uri.startswith(("gs://", "s3://")):
        import mlflow_bucket_plugins.tracking.store  # noqa: F401

        import mlflow_bucket.storage.gcs
        import mlflow_bucket.storage.s3  # noqa: F401
    elif uri.startswith("sqlite:"):
        import mlflow.store.tracking.sqlalchemy_store
    else:
        import mlflow.store.tracking.file_store  # noqa: F401


def child_main(argv: list[str]) -> None:
    exit_file = os.environ.get("BENCH_EXIT_FILE")
    if exit_file:
        # Registered first, so it runs last of the exit hooks: the time the
        # process's exit work (the spool's last upload, a checkpoint) ended,
        # before the interpreter's own teardown, which is MLflow's import
        # weight and the same for every store.
        import atexit

        atexit.register(lambda: Path(exit_file).write_text(str(time.time())))
    op, uri, proxy = argv[0], argv[1], argv[2]
    _preimport(uri)
    if op == "fill":
        result = child_fill(uri, int(argv[3]), proxy)
    elif op == "steps":
        result = child_steps(uri, proxy)
    elif op == "search":
        result = child_search(uri, proxy, argv[3])
    else:
        raise SystemExit(f"unknown operation {op}")
    print("RESULT " + json.dumps(result), flush=True)


# -- in the parent: emulator, proxy, stores, servers, the table ------------------------


def _child(args: list[str], env: dict[str, str], proxy: str = "") -> dict[str, Any]:
    """Run one operation in a fresh process; its result, plus what the whole process
    sent to the bucket (``process``: its exit's checkpoint included) and when it ended."""
    before = _proxy_stats(proxy)
    exit_file = Path(tempfile.mkdtemp()) / "exit"
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        env={**os.environ, **env, "BENCH_EXIT_FILE": str(exit_file)},
        capture_output=True,
        text=True,
        check=False,
    )
    ended = float(exit_file.read_text()) if exit_file.exists() else time.time()
    shutil.rmtree(exit_file.parent, ignore_errors=True)
    sys.stderr.write(out.stderr if out.returncode else "")
    if out.returncode != 0:
        raise RuntimeError(f"child {args[:2]} failed ({out.returncode})")
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    result["process"] = _requests_since(proxy, before)
    result["ended_at"] = ended
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as answer:
        doc: dict[str, Any] = json.loads(answer.read())
        return doc


def measure_server(uri: str, eid: str, env: dict[str, str], work: Path) -> dict[str, Any]:
    """POST /ajax-api/2.0/mlflow/runs/search against ``mlflow server`` on ``uri``."""
    port = _free_port()
    log = open(work / f"server-{port}.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            uri,
            "--default-artifact-root",
            str(work / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start; see {log.name}") from None
                time.sleep(0.3)
        body = {"experiment_ids": [eid], "max_results": 100, "order_by": ORDER_BY}
        url = f"{base}/ajax-api/2.0/mlflow/runs/search"
        start = time.perf_counter()
        first = _post(url, body)
        cold = time.perf_counter() - start
        assert 0 < len(first["runs"]) <= 100
        times = _repeat(lambda: _post(url, body))
        return {"cold": cold, "seconds": statistics.median(times), "max_seconds": max(times)}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


Row = dict[str, Any]


def _bench_store(
    name: str,
    uri: str,
    runs: int,
    work: Path,
    env_for: Any,
    proxy: str,
    args: argparse.Namespace,
    rows: list[Row],
) -> None:
    label = f"{name}, {runs} runs" if runs != args.runs else name

    def add(operation: str, seconds: float | None, requests: str = "") -> None:
        rows.append(
            {
                "store": name,
                "runs": runs,
                "label": label,
                "operation": operation,
                "seconds": seconds,
                "requests": requests if proxy else "",
            }
        )
        shown = "" if seconds is None else f"{seconds * 1000:10.1f} ms"
        print(f"{label:28} {operation:44} {shown:>13}  {requests if proxy else ''}", flush=True)

    fill = _child(["fill", uri, proxy, str(runs)], env_for("fill"), proxy)
    eid = fill["experiment_id"]
    writes = fill["process"]["writes"]
    add(f"fill W ({runs} runs), until uploaded", fill["seconds"], f"{writes} writes")
    if proxy:
        add("  writes per run (fill, exit included)", None, f"{writes / runs:.2f}")
        add("  exit of the fill process (checkpoint)", fill["ended_at"] - fill["flushed_at"])

    steps = [
        _child(["steps", uri, proxy], env_for(f"steps{i}"), proxy) for i in range(args.step_runs)
    ]
    add("log_metric, one call (median)", statistics.median(r["log_metric_median"] for r in steps))
    per_process = sorted(r["process"]["writes"] for r in steps)
    add(
        "one run per process, a call per value",
        statistics.median(r["seconds"] for r in steps),
        f"writes {'/'.join(map(str, per_process))}, "
        f"{sum(per_process) / len(per_process):.1f} per run",
    )

    search = _child(["search", uri, proxy, eid], env_for("search"), proxy)
    add(
        "search_runs cold (new process, empty cache)",
        search["cold"]["seconds"],
        str(search["cold"]["requests"]),
    )
    add(
        "bulk interval history of 10 runs",
        search["bulk"]["seconds"],
        str(search["bulk"]["requests"]),
    )
    add("search_runs warm (median)", search["warm"]["seconds"], f"{search['warm']['requests']:.2f}")
    add(
        "search_runs warm, refresh due (1 s later)",
        search["refresh"]["seconds"],
        str(search["refresh"]["requests"]),
    )
    if not args.no_server:
        server = measure_server(uri, eid, env_for("server"), work)
        add("server POST runs/search, warm (median)", server["seconds"])
        add("server POST runs/search, first call", server["cold"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=30)
    parser.add_argument(
        "--filestore-runs", type=int, default=2000, help="at most this many runs for FileStore"
    )
    parser.add_argument("--step-runs", type=int, default=4)
    parser.add_argument("--no-server", action="store_true")
    parser.add_argument("--no-filestore", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args(argv)

    from mlflow_bucket.testing.fault_proxy import FaultProxy
    from mlflow_bucket.testing.gcs_emulator import GcsEmulator
    from mlflow_bucket.testing.pytest_plugin import gcs_bucket_info

    work = Path(tempfile.mkdtemp(prefix="mlflow-bucket-bench-"))
    rows: list[Row] = []
    base_env = {
        "MLFLOW_BUCKET_PROGRESS": "0",
        "PYTHONWARNINGS": "ignore",
        # No usage reports to MLflow's servers from the measured processes.
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    try:
        with GcsEmulator() as emulator:
            proxy = FaultProxy(emulator.endpoint, latency_ms=args.latency_ms).start()
            try:
                bucket = f"bench-{uuid.uuid4().hex[:12]}"
                emulator.create_bucket(bucket)
                info = gcs_bucket_info(bucket, proxy.endpoint)

                def bucket_env(phase: str) -> dict[str, str]:
                    # A fresh spool and cache per process: every process starts cold.
                    return {
                        **base_env,
                        **info.env,
                        "MLFLOW_BUCKET_SPOOL_DIR": str(work / "spool" / phase),
                        "MLFLOW_BUCKET_CACHE_DIR": str(work / "cache" / phase),
                    }

                _bench_store(
                    "mlflow-bucket (gs)",
                    f"gs://{bucket}/mlflow",
                    args.runs,
                    work,
                    bucket_env,
                    proxy.endpoint,
                    args,
                    rows,
                )
            finally:
                proxy.stop()

        def local_env(phase: str) -> dict[str, str]:
            # MLflow 3 refuses FileStore unless asked (it is in maintenance mode).
            return {**base_env, "MLFLOW_ALLOW_FILE_STORE": "true"}

        if not args.no_sqlite:
            _bench_store(
                "SQLite",
                f"sqlite:///{work / 'mlflow.db'}",
                args.runs,
                work,
                local_env,
                "",
                args,
                rows,
            )
        if not args.no_filestore:
            _bench_store(
                "FileStore",
                f"file://{work / 'mlruns'}",
                min(args.filestore_runs, args.runs),
                work,
                local_env,
                "",
                args,
                rows,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _table(rows, args)


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.001 else f"{seconds * 1e6:.0f} µs"


def _table(rows: list[Row], args: argparse.Namespace) -> None:
    print()
    print(
        f"W: {args.runs} runs x ({PARAMS} params, {TAGS} tags, {METRICS} metrics x {STEPS} steps)"
    )
    print(f"Latency added per bucket request: {args.latency_ms:.0f} ms")
    print()
    print("| store | operation | requests | median time | vs SQLite | vs FileStore |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    ref = {(r["store"], r["runs"], r["operation"]): r for r in rows}
    for row in rows:
        ratios = []
        for other in ("SQLite", "FileStore"):
            base = ref.get((other, row["runs"], row["operation"]))
            if row["store"] == other or base is None or not row["seconds"] or not base["seconds"]:
                ratios.append("")
                continue
            ratios.append(f"{row['seconds'] / base['seconds']:.2f}x")
        print(
            f"| {row['label']} | {row['operation']} | {row['requests']} | "
            f"{_fmt_time(row['seconds'])} | {ratios[0]} | {ratios[1]} |"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
