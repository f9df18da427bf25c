"""import / export / verify: sqlite and FileStore -> bucket (GCS emulator) -> sqlite.

The commands run as a user runs them (``mlflow-bucket ...``'s main), on
stores MLflow's own client filled (fill.py); ``verify`` is the judge, and
is itself checked to see a difference planted in a copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import artifact_root
from fill import fill
from mlflow import MlflowClient
from mlflow_bucket_plugins.tracking.backend import forget_backends
from mlflow_bucket_plugins.tracking.store import BucketTrackingStore

from mlflow_bucket.cli import main
from mlflow_bucket.storage import open_store


def run(*argv: str) -> int:
    code = main(list(argv))
    # As a new process would: whatever the command cached is forgotten.
    forget_backends()
    return code


def listing(uri: str) -> dict[str, int]:
    """Every object of the store (key: size), but the format marker."""
    with open_store(uri) as store:
        return {o.key: o.size for o in store.list_objects("") if o.key != "mlflow-bucket.json"}


def test_sqlite_to_bucket_to_sqlite(
    sqlite_source: tuple[str, dict[str, Any]],
    bucket_uri: str,
    new_sqlite: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, made = sqlite_source
    assert run("import", source, "--to", bucket_uri) == 0
    out = capsys.readouterr().out
    assert "runs: 7 copied" in out and "registered models: 2 copied" in out
    assert "is 2 in the destination" not in out  # experiment ids kept
    assert run("verify", source, bucket_uri, "--ids") == 0

    # Spot checks through MLflow's client on the bucket, beside verify's.
    client = MlflowClient(bucket_uri, registry_uri=bucket_uri)
    first = client.get_run(made["runs"][0])
    assert first.info.run_name == "run-0 ✓"
    odd = client.get_metric_history(made["runs"][0], "odd")
    assert len(odd) == 4 and any(v.value != v.value for v in odd)  # NaN kept
    assert client.get_run(made["runs"][2]).info.lifecycle_stage == "deleted"
    version = client.get_model_version_by_alias("classifieur ✓", "champion")
    assert (version.version, version.current_stage) in ((3, "Production"), ("3", "Production"))
    assert client.get_model_version("classifieur ✓", "1").source == (
        f"{first.info.artifact_uri}/model"
    )
    assert first.info.artifact_uri.startswith(f"{bucket_uri}/artifacts/")
    assert [f.path for f in client.list_artifacts(made["runs"][0], "model/sub")] == [
        "model/sub/deeper",
        "model/sub/weights.bin",
    ]
    forget_backends()

    # Again: nothing is written.
    before = listing(bucket_uri)
    assert run("import", source, "--to", bucket_uri) == 0
    out = capsys.readouterr().out
    assert "runs: 0 copied, 7 already there" in out
    assert "artifact files copied: 0" in out
    assert "registered models: 0 copied, 2 already there" in out
    assert listing(bucket_uri) == before

    # A file lost (or an import cut short among the artifacts): only it is copied again.
    lost = next(k for k in before if k.endswith("/model/sub/weights.bin"))
    with open_store(bucket_uri) as store:
        store.delete(lost)
    assert run("import", source, "--to", bucket_uri) == 0
    assert "artifact files copied: 1\n" in capsys.readouterr().out
    assert listing(bucket_uri) == before

    # And back out to a new SQLite file: the same store as the source, ids and all.
    back = new_sqlite("back")
    assert run("export", back, "--from", bucket_uri, "--artifact-root", artifact_root(back)) == 0
    assert run("verify", source, back, "--ids") == 0
    assert run("verify", bucket_uri, back) == 0


def test_verify_reports_each_difference(
    sqlite_source: tuple[str, dict[str, Any]],
    new_sqlite: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, made = sqlite_source
    copy = new_sqlite("copy")
    assert run("export", copy, "--from", source, "--artifact-root", artifact_root(copy)) == 0
    assert run("verify", source, copy, "--ids") == 0
    capsys.readouterr()

    client = MlflowClient(copy, registry_uri=copy)
    run_id = made["runs"][1]
    client.set_tag(run_id, "note", "changed")
    client.log_metric(run_id, "loss", 7.0, timestamp=1, step=99)
    client.set_registered_model_alias("classifieur ✓", "champion", "1")
    artifacts = client.get_run(made["runs"][0]).info.artifact_uri
    os.remove(os.path.join(artifacts, "model", "sub", "weights.bin"))

    assert run("verify", source, copy) == 1
    out = capsys.readouterr().out
    assert f"run '{run_id}' tags note: A has 'ünïcödé ✓', B has 'changed'" in out
    assert f"run '{run_id}' metrics loss" in out
    assert "registered model 'classifieur ✓' aliases champion: A has '3', B has '1'" in out
    assert f"artifacts 'run {made['runs'][0]}': 'model/sub/weights.bin' only in A" in out


def test_filestore_source(
    tmp_path: Path, bucket_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = (tmp_path / "mlruns").as_uri()
    made = fill(source)
    assert run("import", source, "--to", bucket_uri) == 0
    out = capsys.readouterr().out
    # A FileStore's ids are large random numbers: the bucket numbers them anew.
    assert "in the destination" in out
    assert run("verify", source, bucket_uri) == 0
    client = MlflowClient(bucket_uri)
    assert client.get_run(made["runs"][3]).data.params["名前"] == "値 ✓"


def test_only_some_experiments_into_the_configured_store(
    sqlite_source: tuple[str, dict[str, Any]], bucket_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = sqlite_source
    monkeypatch.setenv("MLFLOW_BUCKET_URI", bucket_uri)
    only = ["--experiments", "expérience ✓ 实验", "--no-registry"]
    assert run("import", source, *only) == 0
    assert run("verify", source, bucket_uri, *only) == 0
    client = MlflowClient(bucket_uri)
    assert client.get_experiment_by_name("to be deleted") is None
    assert {e.name for e in client.search_experiments()} == {"expérience ✓ 实验", "Default"}


def test_bad_input_is_refused_and_changes_nothing(
    sqlite_source: tuple[str, dict[str, Any]],
    bucket_uri: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, _ = sqlite_source
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    assert run("import", missing, "--to", bucket_uri) == 2
    assert "no such store" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()
    assert run("import", source, "--to", f"sqlite:///{tmp_path / 'x.db'}") == 2
    assert "is not a bucket store" in capsys.readouterr().err
    assert run("export", "ftp://x/y", "--from", bucket_uri) == 2
    assert "cannot write to 'ftp://x/y'" in capsys.readouterr().err
    assert run("import", source, "--to", bucket_uri, "--experiments", "no such experiment") == 2
    assert "no experiment named ['no such experiment']" in capsys.readouterr().err
    assert listing(bucket_uri) == {}


def test_killed_import_resumes(
    sqlite_source: tuple[str, dict[str, Any]], bucket_uri: str, gcs_env: Any, tmp_path: Path
) -> None:
    source, _ = sqlite_source
    # More runs, so that the copy takes several chunks of 3.
    client = MlflowClient(source)
    eid = client.get_experiment_by_name("expérience ✓ 实验").experiment_id
    for i in range(12):
        r = client.create_run(eid, run_name=f"extra {i}")
        client.log_metric(r.info.run_id, "x", float(i), step=i)
    paused = tmp_path / "paused"
    env = {**os.environ, "MLFLOW_BUCKET_COPY_PAUSE": f"2:{paused}"}
    command = [sys.executable, "-m", "mlflow_bucket.cli", "import", source, "--to", bucket_uri]
    proc = subprocess.Popen(
        [*command, "--chunk-runs", "3"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not paused.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the import never reached its second chunk"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    # Half there: two chunks, each one object of an experiment's log.
    chunks = [k for k in listing(bucket_uri) if k.startswith("tracking/exp/") and "/log/" in k]
    assert len(chunks) == 2

    assert run("import", source, "--to", bucket_uri, "--chunk-runs", "3") == 0
    assert run("verify", source, bucket_uri, "--ids") == 0


@pytest.mark.parametrize("command", ["import", "export", "verify"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: mlflow-bucket {command}" in capsys.readouterr().out


def test_experiment_ids_kept_across_a_gap_or_renumbered(
    new_sqlite: Callable[[str], str], gcs_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    source = new_sqlite("gap")
    client = MlflowClient(source)
    root = artifact_root(source)
    for name in ("a", "b", "c"):
        client.create_experiment(name, f"{root}/{name}")
    client.delete_experiment("2")
    # Purged for good (mlflow gc): id 2 is a gap.
    client._tracking_client.store._hard_delete_experiment("2")

    fresh = f"gs://{gcs_env.bucket}/fresh"
    assert run("import", source, "--to", fresh) == 0
    assert "in the destination" not in capsys.readouterr().out
    assert run("verify", source, fresh, "--ids") == 0

    taken = f"gs://{gcs_env.bucket}/taken"
    # Not through MlflowClient: MLflow would keep that store (and its view of
    # the bucket) for this URI, and verify would read it a moment stale.
    BucketTrackingStore(taken).create_experiment("already here")
    forget_backends()
    assert run("import", source, "--to", taken) == 0
    out = capsys.readouterr().out
    assert "experiment 1 is 2 in the destination" in out
    assert "experiment 3 is" not in out  # the log's next number is still 3
    assert run("verify", source, taken, "--ids") == 1
    assert "experiment 'a' id: A has '1', B has '2'" in capsys.readouterr().out
