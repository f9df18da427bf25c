"""A busy team on a flaky network: writers, UIs, a compactor, faults and skewed clocks at once.

Per emulator, all at the same time:

- writer processes log runs (params, a tag, a metric point per step) with
  plain MLflow code through a fault proxy answering about 5% of requests
  503/429 (some after the bucket applied the write), resetting connections,
  stalling requests 2 s, and one outage of the whole bucket mid-load;
  two of the writers run with clocks ten minutes ahead and behind
  (libfaketime);
- two UI processes poll search_runs and metric histories through a second
  flaky proxy and record every error and every step backwards;
- a compactor checkpoints and garbage-collects the experiment's log in a
  loop, deleting log objects the UIs may be reading, once the load is
  under way.

Then a fresh reader (a new Backend, an empty cache) reads everything
back: every run, param, tag and point is there, each point once; and the
log objects that gc left hold no batch twice.

Sizes: short profile (CI) 3 writers x 3 runs x 40 steps, a 4 s outage; the
soak profile (--soak, MLFLOW_BUCKET_SOAK=1) 16 x 50 x 500, a 60 s outage.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from reliability_helpers import in_process, spooled, start
from tracking_workers import child_env, expected_value, finish, read_all, wait_line

from mlflow_bucket.log import Log
from mlflow_bucket.storage import open_store
from mlflow_bucket.testing.pytest_plugin import BucketInfo

pytestmark = [pytest.mark.emulator, pytest.mark.reliability]

FAKETIME = shutil.which("faketime")
SKEW_S = 600


def flaky(proxy: Any, seed: int, stalls: bool) -> None:
    """About 5% of requests fail in one of the ways a cloud bucket fails."""
    proxy.seed(seed)
    proxy.fail(503, fraction=0.015)
    proxy.fail(429, fraction=0.015)
    # The bucket applied the write, the client hears it failed.
    proxy.fail(503, fraction=0.005, after_upstream=True)
    proxy.reset(fraction=0.005)
    proxy.reset(fraction=0.005, when="after")
    proxy.reset(fraction=0.005, when="mid_body", methods=["GET"])
    if stalls:
        proxy.stall(2, fraction=0.003)


def count_retained(uri: str, eid: str) -> dict[str, Any]:
    """Entries of the experiment's log objects that gc left, counted raw (no fold)."""
    store = open_store(uri)
    log = Log(store, f"tracking/exp/{eid}", cache=None)
    numbers = sorted(
        int(info.key.rsplit("/", 1)[-1])
        for info in store.list_objects(log.log_prefix)
        if info.key.rsplit("/", 1)[-1].isdigit()
    )
    points: Counter[str] = Counter()
    batches: Counter[str] = Counter()
    for record in log.records(numbers[0] - 1 if numbers else 0):
        batches.update(record.batches)
        for entry in record.entries:
            if entry.get("op") != "run.log":
                continue
            for point in entry.get("metrics") or []:
                points[f"{entry['id']}/{point[0]}/{point[4]}"] += 1
    return {
        "objects": len(numbers),
        "first": numbers[0] if numbers else None,
        "checkpoints": len(log.checkpoints()),
        "point_dups": sum(n - 1 for n in points.values()),
        "batch_dups": sum(n - 1 for n in batches.values()),
    }


def _recover(uri: str) -> None:
    """Open the store where a writer left batches: its spool is claimed and uploaded."""
    from mlflow_bucket_plugins.tracking.backend import backend_for

    assert backend_for(uri).flush(600)


def _faults(stats: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in stats["faults"].items() if v}


@pytest.mark.timeout(7200)
@pytest.mark.parametrize("backend", ["gcs", "s3"])
def test_writers_and_uis_under_faults_with_a_compactor_lose_nothing(
    request: pytest.FixtureRequest,
    backend: str,
    tmp_path: Path,
    fault_proxy: Any,
    profile: Any,
    record_figures: Any,
) -> None:
    bucket: BucketInfo = request.getfixturevalue(f"{backend}_bucket")
    uri = f"{bucket.url}/team"
    eid = in_process(bucket, lambda: MlflowClient(uri).create_experiment("load"))
    wproxy, rproxy = fault_proxy(bucket.endpoint), fault_proxy(bucket.endpoint)
    flaky(wproxy, seed=1, stalls=True)
    flaky(rproxy, seed=2, stalls=profile.name == "soak")
    stop = tmp_path / "stop"
    children: list[Any] = []

    def cleanup() -> None:
        # A failed check must not leave the UIs and the compactor polling.
        stop.touch()
        for proc in children:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    request.addfinalizer(cleanup)

    uis = [
        start(
            "ui_reader",
            {"uri": uri, "experiment": "load", "stop": str(stop)},
            child_env(bucket.via(rproxy).env, tmp_path / f"ui{i}"),
        )
        for i in range(2)
    ]

    children.extend(uis)
    # Short runs upload often, so that the log grows to many objects.
    fast = {"MLFLOW_BUCKET_FLUSH_INTERVAL": "0.3"} if profile.name == "short" else {}
    go = tmp_path / "go"
    clocks = {0: f"+{SKEW_S}s", 1: f"-{SKEW_S}s"} if FAKETIME else {}
    writers = []
    for w in range(profile.writers):
        offset = clocks.get(w)
        writers.append(
            start(
                "load_writer",
                {
                    "uri": uri,
                    "experiment": "load",
                    "worker": w,
                    "runs": profile.runs,
                    "steps": profile.steps,
                    "pause": profile.pause_s,
                    "go": str(go),
                },
                # Each writer its own machine: no process uploads another's spool.
                child_env(bucket.via(wproxy).env, tmp_path / f"writer{w}", fast),
                prefix=[str(FAKETIME), "-f", offset] if offset else [],
            )
        )

    children.extend(writers)

    # Each writer's clock against ours, read the moment it is printed (one
    # reading thread per writer): the skewed clocks really are off.
    def clock_of(proc: Any) -> float:
        return float(wait_line(proc, "CLOCK", timeout=300)) - time.time() * 1000

    with ThreadPoolExecutor(len(writers)) as pool:
        clock_ms = dict(enumerate(pool.map(clock_of, writers)))
    for proc in [*uis, *writers]:  # started together: their imports overlap
        wait_line(proc, "READY", timeout=300)
    go.touch()
    started = time.monotonic()

    # Mid-load: the compactor starts, and the bucket goes away for a while.
    wait_line(writers[-1], "PROGRESS", timeout=3600)
    compactor = start(
        "compactor",
        {"uri": uri, "experiment_id": eid, "retention": profile.retention_s, "stop": str(stop)},
        child_env(bucket.env, tmp_path / "compactor"),
    )
    children.append(compactor)
    wait_line(compactor, "READY", timeout=300)
    wproxy.outage(profile.outage_s)

    results = [finish(proc, timeout=7200) for proc in writers]
    logged_s = time.monotonic() - started
    assert {r["experiment_id"] for r in results} == {eid}
    for w in range(profile.writers):
        skew = int(clocks[w][:-1]) * 1000 if w in clocks else 0
        assert abs(clock_ms[w] - skew) < 60_000, (w, clock_ms[w])
    # A clean exit uploads for up to 30 s and leaves the rest to the next
    # process on that machine (docs/tracking.md): count it, then be that process.
    left = {w: len(spooled(tmp_path / f"writer{w}")) for w in range(profile.writers)}
    for w, n in left.items():
        if n:
            in_process(bucket, lambda: _recover(uri), spool=tmp_path / f"writer{w}" / "spool")
            assert spooled(tmp_path / f"writer{w}") == []
    wait_line(compactor, "PROGRESS", timeout=300)  # one more round after the last write
    stop.touch()
    compacted = finish(compactor, timeout=600)
    seen_by_uis = [finish(ui, timeout=600) for ui in uis]
    wstats, rstats = wproxy.stats(), rproxy.stats()

    # The UIs never saw an error, nor anything going backwards.
    for ui in seen_by_uis:
        assert ui["errors"] == [], ui["errors"][:5]
        assert ui["regressions"] == [], ui["regressions"][:5]
        assert ui["polls"] > 0
    assert compacted["errors"] == [], compacted["errors"][:5]

    # A fresh reader, empty cache: every run, param, tag and point, each once.
    seen = in_process(bucket, lambda: read_all(uri, "load"))
    by_name = {doc["name"]: doc for doc in seen["runs"].values()}
    assert len(seen["runs"]) == len(by_name) == profile.writers * profile.runs
    lost = 0
    for w in range(profile.writers):
        for r in range(profile.runs):
            doc = by_name[f"w{w}-r{r}"]
            assert doc["status"] == "FINISHED"
            assert doc["params"] == {"worker": str(w), "run": str(r)}
            assert doc["tags"] == {"who": f"w{w}"}
            history = doc["hist"]["loss"]
            assert [p[0] for p in history] == list(range(profile.steps))
            assert [p[1] for p in history] == [
                expected_value(w, r, s) for s in range(profile.steps)
            ]
            lost += profile.steps - len(history)
    counts = in_process(bucket, lambda: count_retained(uri, eid))
    assert counts["point_dups"] == 0 and counts["batch_dups"] == 0
    assert compacted["checkpoints"] > 0 and counts["checkpoints"] > 0

    record_figures(
        backend=backend,
        writers=profile.writers,
        runs=profile.writers * profile.runs,
        points=profile.writers * profile.runs * profile.steps,
        skewed_writers=len(clocks),
        logging_s=round(logged_s),
        outage_s=profile.outage_s,
        writer_requests=wstats["total"],
        writer_faults=_faults(wstats),
        ui_requests=rstats["total"],
        ui_faults=_faults(rstats),
        ui_polls=sum(ui["polls"] for ui in seen_by_uis),
        ui_histories=sum(ui["histories"] for ui in seen_by_uis),
        compactor_rounds=compacted["rounds"],
        checkpoints_written=compacted["checkpoints"],
        objects_deleted_by_gc=compacted["deleted"],
        log_objects_left=counts["objects"],
        batches_left_at_exit=left,
        lost=lost,
        duplicated=counts["point_dups"] + counts["batch_dups"],
    )
