"""Request budgets of the tracking store, counted through the fault proxy.

A reduced workload W (benchmarks/tracking.py measures the full one) goes to
a gs:// store on the GCS emulator behind the fault proxy, which counts
every request. Only counts are checked, never times:

- logging costs at most 5 object writes per run (the flusher batches all
  of a run's params, tags and metric points), checkpoints included;
- a cold search from a new process (empty cache) costs at most 10 requests;
- the metric histories of 10 runs cost at most one request per run.

A run's creation is uploaded at once (another process may be handed its
id), so how a run's objects fall depends on when the flusher wakes; the
bounds hold either way.

"A new process" here is what one starts with: no Backend in memory and an
empty object cache; "exit" is what the interpreter's exit hook runs. The
store is called directly (MLflow's client caches store instances per URI,
which would outlive a "process").
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow_bucket_plugins.tracking import backend as backend_module
from mlflow_bucket_plugins.tracking.store import BucketTrackingStore

from mlflow_bucket.testing.fault_proxy import FaultProxy
from mlflow_bucket.testing.pytest_plugin import BucketInfo

RUNS = 24
PARAMS, TAGS, METRICS, STEPS = 20, 10, 5, 100
WRITES = ("POST", "PUT", "PATCH")


@pytest.fixture
def proxied(
    gcs_bucket: BucketInfo, fault_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, FaultProxy]:
    proxy = fault_proxy(gcs_bucket.endpoint)
    for name, value in gcs_bucket.via(proxy).env.items():
        monkeypatch.setenv(name, value)
    # Uploads only when asked (and at exit): how many objects a run makes
    # must not depend on how long a loaded machine takes to log it.
    monkeypatch.setenv("MLFLOW_BUCKET_FLUSH_INTERVAL", "3600")
    return f"gs://{gcs_bucket.bucket}/mlflow", proxy


class Counter:
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        proxy.reset_stats()

    def take(self) -> tuple[int, int]:
        """(requests, object writes) since the last take."""
        stats = self.proxy.stats()
        self.proxy.reset_stats()
        by_method = stats["by_method"]
        return stats["total"], sum(n for m, n in by_method.items() if m in WRITES)


def _exit_and_restart(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    """This process "exits" (flush, compaction) and "a new one" starts with an empty cache."""
    backend_module.close_backends()
    monkeypatch.setenv("MLFLOW_BUCKET_CACHE_DIR", str(tmp_path / f"cache-{name}"))


def _log_run_batched(store: BucketTrackingStore, eid: str, i: int) -> None:
    run_id = store.create_run(eid, "me", 1000 + i, [], None).info.run_id
    store.log_batch(
        run_id,
        metrics=[
            Metric(f"m{k}", float((i * 31 + k * 7) % 101) / (s + 1), 1000 + s, s)
            for k in range(METRICS)
            for s in range(STEPS)
        ],
        params=[Param(f"p{j}", f"v{j}-{i}") for j in range(PARAMS)],
        tags=[RunTag(f"t{j}", f"v{j}-{i}") for j in range(TAGS)],
    )
    store.update_run_info(run_id, RunStatus.FINISHED, 2000 + i, None)


def _log_run_by_calls(store: BucketTrackingStore, eid: str) -> None:
    """One call per param, tag and metric point, as a training loop does."""
    run_id = store.create_run(eid, "me", 5000, [], None).info.run_id
    for j in range(PARAMS):
        store.log_param(run_id, Param(f"p{j}", str(j)))
    for j in range(TAGS):
        store.set_tag(run_id, RunTag(f"t{j}", str(j)))
    for s in range(STEPS):
        for k in range(METRICS):
            store.log_metric(run_id, Metric(f"m{k}", s * k, 5000 + s, s))
    store.update_run_info(run_id, RunStatus.FINISHED, 6000, None)


def test_request_budget(
    proxied: tuple[str, FaultProxy], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uri, proxy = proxied
    count = Counter(proxy)

    # One process fills W.
    store = BucketTrackingStore(uri)
    eid = store.create_experiment("budget")
    for i in range(RUNS):
        _log_run_batched(store, eid, i)
    _exit_and_restart(monkeypatch, tmp_path, "fill")
    total = count.take()[1]

    # Runs logged one per process, a call per value. A process writes one
    # object per log it touched (the index, the experiment's), plus, now
    # and then at exit, a checkpoint and the histories of the runs since
    # the last one: counted here, shared by every run.
    processes = 4
    per_process = []
    for i in range(processes):
        _log_run_by_calls(BucketTrackingStore(uri), eid)
        _exit_and_restart(monkeypatch, tmp_path, f"run{i}")
        per_process.append(count.take()[1])
    total += sum(per_process)
    # The creation goes up at once (another process may be handed the run
    # id), the rest at exit; how the flusher's uploads fall in between
    # depends on timing, so only the bound is checked.
    assert statistics.median(per_process) <= 5, per_process
    runs = RUNS + processes
    assert total <= 5 * runs, f"{total} object writes for {runs} runs"

    # A new process searches: checkpoint and a short tail, nothing per run.
    store = BucketTrackingStore(uri)
    runs = store.search_runs(
        [eid], "", ViewType.ACTIVE_ONLY, max_results=10, order_by=["metrics.m0 DESC"]
    )
    assert len(runs) == 10
    requests, _ = count.take()
    assert requests <= 10, f"cold search: {requests} requests"

    # The charts of 10 runs: each run's history is one object (or in the tail).
    run_ids = [r.info.run_id for r in runs]
    metrics = store.get_metric_history_bulk_interval(run_ids, "m0", 320, None, None)
    assert len(metrics) == 10 * STEPS
    requests, _ = count.take()
    assert requests <= len(run_ids), f"bulk interval: {requests} requests for 10 runs"

    # Warm: the same search again within the refresh interval costs nothing.
    store.search_runs([eid], "", ViewType.ACTIVE_ONLY, max_results=10, order_by=["metrics.m0 DESC"])
    assert count.take()[0] <= 2
