"""SIGKILL at random points: mid-flush, mid-compaction, mid-artifact upload, mid-registration.

Each victim is a real process doing the one thing in a loop; the parent
kills it after a random delay (seeded, so a failure can be replayed), then
a new process on the same machine (same spool folder) carries on, and a
fresh reader checks: everything the victim was told had succeeded is
there exactly once, whatever it was doing when it died, and no reader meets
a partial or damaged object (CorruptObjectWarning is an error here).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from reliability_helpers import in_process, spooled, start
from tracking_workers import child_env, count_log, read_all, wait_line

from mlflow_bucket.log import CorruptObjectWarning
from mlflow_bucket.storage import open_store
from mlflow_bucket.testing.pytest_plugin import BucketInfo

pytestmark = [pytest.mark.emulator, pytest.mark.reliability]

MB = 1000 * 1000


@pytest.fixture(params=["gcs", "s3"])
def bucket(request: pytest.FixtureRequest) -> BucketInfo:
    info: BucketInfo = request.getfixturevalue(f"{request.param}_bucket")
    return info


def _kill_after(proc: Any, seconds: float) -> list[Any]:
    """SIGKILL ``proc`` after ``seconds``; the LOGGED values it printed before dying."""
    time.sleep(seconds)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    return [
        json.loads(line[len("LOGGED ") :])
        for line in out.splitlines()
        if line.startswith("LOGGED ")
    ]


@contextmanager
def strict() -> Iterator[None]:
    """Within it, a damaged or partial object a reader meets fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptObjectWarning)
        yield


def test_sigkill_mid_flush_then_restart(
    bucket: BucketInfo, tmp_path: Path, profile: Any, record_figures: Any
) -> None:
    uri = f"{bucket.url}/team"
    machine = tmp_path / "machine"
    env = child_env(bucket.env, machine, {"MLFLOW_BUCKET_FLUSH_INTERVAL": "0.05"})
    rng = random.Random(f"flush-{bucket.scheme}")
    confirmed_total = 0
    for round_ in range(profile.crash_rounds):
        victim = start("crash_logger", {"uri": uri, "experiment": "e", "steps": 100_000}, env)
        ready = wait_line(victim, "READY", timeout=300)
        confirmed = _kill_after(victim, rng.uniform(0.3, 2.0))
        assert confirmed, "killed before it logged anything"
        run_id, eid = ready["run_id"], ready["experiment_id"]

        def restart(run_id: str = run_id, last: int = confirmed[-1]) -> tuple[Any, Any]:
            # The next process on this machine: uploads the dead one's spool
            # and logs on, to the same run.
            client = MlflowClient(uri)
            for step in range(last + 2, last + 12):
                client.log_metric(run_id, "m", float(step), step=step)
            client.set_terminated(run_id)
            assert client._tracking_client.store.flush(120)
            return None, None

        in_process(bucket, restart, spool=machine / "spool")
        assert spooled(machine) == []
        with strict():
            seen = in_process(bucket, lambda: read_all(uri, "e"))
            counts = in_process(bucket, lambda eid=eid: count_log(uri, eid))
        steps = [p[0] for p in seen["runs"][run_id]["hist"]["m"]]
        last = confirmed[-1]
        # Every confirmed point, the one in flight at the kill maybe, then the restart's.
        assert steps[: last + 1] == list(range(last + 1)), (round_, last, steps[:20])
        assert steps[-10:] == list(range(last + 2, last + 12))
        assert len(steps) in (last + 11, last + 12)
        assert seen["runs"][run_id]["status"] == "FINISHED"
        assert counts["point_dups"] == 0 and counts["batch_dups"] == 0
        assert counts["index_batch_dups"] == 0 and counts["create_dups"] == 0
        confirmed_total += len(confirmed)
    record_figures(
        backend=bucket.scheme,
        kind="mid-flush",
        kills=profile.crash_rounds,
        confirmed_points=confirmed_total,
        lost=0,
        duplicated=0,
    )


def _populate(uri: str, runs: int) -> dict[str, Any]:
    client = MlflowClient(uri)
    eid = client.create_experiment("c")
    ids = []
    for i in range(runs):
        run_id = client.create_run(eid, run_name=f"r{i}").info.run_id
        client.log_param(run_id, "i", str(i))
        for step in range(5):
            client.log_metric(run_id, "m", float(step), step=step)
        client.set_terminated(run_id)
        assert client._tracking_client.store.flush(60)  # one log object each
        ids.append(run_id)
    return {"eid": eid, "runs": ids}


def test_sigkill_mid_compaction_and_gc(
    bucket: BucketInfo, tmp_path: Path, profile: Any, record_figures: Any
) -> None:
    uri = f"{bucket.url}/team"
    rng = random.Random(f"compact-{bucket.scheme}")
    made = in_process(bucket, lambda: _populate(uri, 6))
    for round_ in range(profile.crash_rounds):
        # More to fold since the last checkpoint.
        def more(round_: int = round_) -> None:
            client = MlflowClient(uri)
            for run_id in made["runs"]:
                client.log_metric(run_id, "m", float(5 + round_), step=5 + round_)
                assert client._tracking_client.store.flush(60)

        in_process(bucket, more)
        victim = start(
            "crash_compactor",
            {"uri": uri, "experiment_id": made["eid"]},
            child_env(bucket.env, tmp_path / f"compactor{round_}"),
        )
        wait_line(victim, "READY", timeout=300)
        _kill_after(victim, rng.uniform(0.0, 1.5))

        def check(round_: int = round_) -> None:
            client = MlflowClient(uri)
            found = client.search_runs([made["eid"]])
            assert sorted(r.info.run_id for r in found) == sorted(made["runs"])
            for i, run_id in enumerate(made["runs"]):
                got = client.get_run(run_id)
                assert got.data.params == {"i": str(i)}
                assert got.data.metrics == {"m": float(5 + round_)}
                steps = [m.step for m in client.get_metric_history(run_id, "m")]
                assert steps == list(range(6 + round_))

        with strict():
            in_process(bucket, check)
    record_figures(backend=bucket.scheme, kind="mid-compaction", kills=profile.crash_rounds, lost=0)


def _big_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_sigkill_mid_artifact_upload(
    bucket: BucketInfo, tmp_path: Path, profile: Any, record_figures: Any
) -> None:
    """No artifact a reader lists is partial: each is the whole file or absent."""
    uri = f"{bucket.url}/team"
    rng = random.Random(f"upload-{bucket.scheme}")
    size = 24 * MB  # several parts of a multipart upload
    src = tmp_path / "model.bin"
    digest = _big_file(src, size)

    def make_run() -> str:
        client = MlflowClient(uri)
        run_id = client.create_run(client.create_experiment("a")).info.run_id
        assert client._tracking_client.store.flush(60)
        return run_id

    run_id = in_process(bucket, make_run)
    completed = 0
    for round_ in range(profile.crash_rounds):
        victim = start(
            "crash_uploader",
            {"uri": uri, "run_id": run_id, "path": str(src)},
            child_env(bucket.env, tmp_path / f"uploader{round_}"),
        )
        wait_line(victim, "READY", timeout=300)
        confirmed = _kill_after(victim, rng.uniform(0.2, 3.0))
        completed += len(confirmed)

        def check(confirmed: list[int] = confirmed) -> tuple[list[str], list[int]]:
            client = MlflowClient(uri)
            folders = [f.path for f in client.list_artifacts(run_id)]
            for folder in folders:
                files = client.list_artifacts(run_id, folder)
                assert [(f.path, f.file_size) for f in files] == [(f"{folder}/model.bin", size)]
            return folders, sorted(confirmed)

        folders, done = in_process(bucket, check)
        for n in done:  # every upload that returned is there
            assert f"up{n}" in folders
        # And the raw bucket holds no partial object under the run's artifacts.
        store = open_store(uri, **bucket.storage_options)
        try:
            for info in store.list_objects("artifacts/"):
                assert info.size == size, info
        finally:
            store.close()
    # A listed file downloads whole (if any upload finished before its kill).
    if folders:
        got = in_process(
            bucket,
            lambda: MlflowClient(uri).download_artifacts(
                run_id, f"{folders[0]}/model.bin", str(tmp_path)
            ),
        )
        assert hashlib.sha256(Path(got).read_bytes()).hexdigest() == digest
    record_figures(
        backend=bucket.scheme,
        kind="mid-upload",
        kills=profile.crash_rounds,
        uploads_completed=completed,
        partial_objects_visible=0,
    )


def test_sigkill_mid_registration(
    bucket: BucketInfo, tmp_path: Path, profile: Any, record_figures: Any
) -> None:
    """Version numbers stay 1..n without gaps or repeats; the next process goes on at n+1."""
    uri = f"{bucket.url}/team"
    rng = random.Random(f"register-{bucket.scheme}")

    def setup() -> str:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        run_id = client.create_run(client.create_experiment("m")).info.run_id
        client.create_registered_model("victim-model")
        assert client._tracking_client.store.flush(60)
        return run_id

    run_id = in_process(bucket, setup)
    registered = 0
    for round_ in range(profile.crash_rounds):
        victim = start(
            "crash_registrar",
            {"uri": uri, "name": "victim-model", "run_id": run_id},
            child_env(bucket.env, tmp_path / f"registrar{round_}"),
        )
        wait_line(victim, "READY", timeout=300)
        confirmed = _kill_after(victim, rng.uniform(0.2, 2.0))
        registered += len(confirmed)

        def check(confirmed: list[int] = confirmed) -> None:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            versions = sorted(
                int(v.version)
                for v in client.search_model_versions("name='victim-model'", max_results=10_000)
            )
            assert versions == list(range(1, len(versions) + 1))
            assert set(confirmed) <= set(versions)
            after = client.create_model_version("victim-model", "runs:/x/model", run_id=run_id)
            assert int(after.version) == len(versions) + 1
            assert client.get_registered_model("victim-model").latest_versions

        with strict():
            in_process(bucket, check)
    record_figures(
        backend=bucket.scheme,
        kind="mid-registration",
        kills=profile.crash_rounds,
        versions_confirmed=registered,
        gaps=0,
        duplicates=0,
    )
