"""The store commands: init, config, doctor, status/ls, compact, gc, flush.

Run in this process (``mlflow_bucket.cli.main``) against a local folder and
the GCS emulator, on stores filled by MLflow's own client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cli_helpers import Cli, end_process, log_runs

from mlflow_bucket.project import load_config
from mlflow_bucket.storage import open_store

COMMANDS = ["init", "config", "doctor", "status", "ls", "compact", "gc", "flush"]
STORE_COMMANDS = ["doctor", "status", "compact", "gc", "flush"]


def folder_uri(path: Path) -> str:
    return f"bucket+file://{path.resolve().as_posix()}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli: Cli, command: str) -> None:
    result = cli(command, "--help")
    assert result.code == 0
    shown = "status" if command == "ls" else command  # an alias
    assert f"usage: mlflow-bucket {shown}" in result.out


def test_the_top_level_help_lists_the_commands(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == 0
    for command in COMMANDS:
        assert command in result.out


@pytest.mark.parametrize("command", STORE_COMMANDS)
def test_no_store_anywhere_is_exit_3_with_the_way_out(
    cli: Cli, project: Path, command: str
) -> None:
    result = cli(command)
    assert result.code == 3
    assert "mlflow-bucket init" in result.err


def test_an_mlflow_uri_that_is_not_ours_is_refused(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://me:PASSWORD@tracking.example:5000")
    result = cli("status")
    assert result.code == 3
    assert "not a bucket store" in result.err
    assert "PASSWORD" not in result.err
    shown = cli("config")
    assert "tracking.example" in shown.out and "PASSWORD" not in shown.out


def test_init_asks_for_the_uri_on_a_terminal(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: "bucket+file://asked")
    result = cli("init")
    assert result.code == 0, result.err
    assert (project / "asked" / "mlflow-bucket.json").is_file()
    assert 'uri = "bucket+file://asked"' in (project / "mlflow-bucket.toml").read_text()


def test_a_secret_in_the_project_file_stops_every_command(cli: Cli, project: Path) -> None:
    (project / "mlflow-bucket.toml").write_text('uri = "gs://b/x"\n[storage]\nkey = "AKIASECRET"\n')
    result = cli("status")
    assert result.code == 3
    assert "looks like a credential" in result.err
    assert "AKIASECRET" not in result.err + result.out


# -- init ---------------------------------------------------------------------------------


def test_init_writes_the_project_file_checks_and_marks_the_store(cli: Cli, project: Path) -> None:
    result = cli("init", "bucket+file://store")
    assert result.code == 0, result.err
    assert "[PASS] create-if-absent" in result.out
    text = (project / "mlflow-bucket.toml").read_text()
    assert 'uri = "bucket+file://store"' in text  # kept relative: the team shares it
    assert (project / "store" / "mlflow-bucket.json").is_file()
    assert load_config().uri == folder_uri(project / "store")
    # Again with the same store: nothing to do.
    again = cli("init", "bucket+file://store")
    assert again.code == 0 and "already names this store" in again.out
    # Another store: refused, the file is left as it was.
    other = cli("init", "bucket+file://other")
    assert other.code == 3 and "already names a store" in other.err
    assert (project / "mlflow-bucket.toml").read_text() == text


def test_init_appends_to_an_existing_pyproject(cli: Cli, project: Path) -> None:
    (project / "pyproject.toml").write_text('[project]\nname = "demo"\nversion = "1"\n')
    result = cli("init", "--no-check", "gs://team-bucket/mlflow")
    assert result.code == 0, result.err
    text = (project / "pyproject.toml").read_text()
    assert text.startswith('[project]\nname = "demo"')
    assert "[tool.mlflow-bucket]\n" in text and 'uri = "gs://team-bucket/mlflow"' in text
    assert not (project / "mlflow-bucket.toml").exists()
    assert load_config().uri == "gs://team-bucket/mlflow"


def test_init_without_a_uri_and_no_terminal_is_a_usage_error(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115
    result = cli("init")
    assert result.code == 2
    assert "no URI given" in result.err


def test_init_on_a_bucket_it_cannot_reach_writes_nothing(
    cli: Cli, project: Path, gcs_env: object
) -> None:
    result = cli("init", "gs://no-such-bucket-here/mlflow")
    assert result.code == 1
    assert "[FAIL] bucket reachable" in result.out
    assert "nothing written" in result.err
    assert not (project / "mlflow-bucket.toml").exists()


def test_init_on_the_gcs_emulator(cli: Cli, project: Path, gcs_uri: str) -> None:
    result = cli("init", gcs_uri)
    assert result.code == 0, result.out + result.err
    assert "[PASS] credentials: none needed: an emulator" in result.out
    with open_store(gcs_uri) as store:
        assert store.exists("mlflow-bucket.json")
    assert cli("config", "--uri").out.strip() == gcs_uri


# -- config --------------------------------------------------------------------------------


def test_config_shows_each_value_and_its_source(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "mlflow-bucket.toml").write_text('uri = "gs://team/ml"\nflush_interval = 0.5\n')
    monkeypatch.setenv("MLFLOW_BUCKET_REFRESH_INTERVAL", "3")
    result = cli("config", "--json")
    assert result.code == 0
    values = json.loads(result.out)["values"]
    assert values["uri"] == {"value": "gs://team/ml", "source": str(project / "mlflow-bucket.toml")}
    assert values["flush_interval"]["value"] == "0.5"
    assert values["refresh_interval"] == {"value": "3.0", "source": "environment"}
    assert values["compact_threshold"] == {"value": "32", "source": "default"}
    plain = cli("config")
    assert "gs://team/ml" in plain.out and "environment" in plain.out


# -- status, compact, gc -----------------------------------------------------------------------


def test_status_lists_experiments_runs_and_activity_on_gcs(
    cli: Cli, project: Path, gcs_uri: str
) -> None:
    log_runs(gcs_uri, "alpha", 3)
    log_runs(gcs_uri, "beta", 1)
    (project / "mlflow-bucket.toml").write_text(f'uri = "{gcs_uri}"\n')
    result = cli("ls")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    alpha = next(line for line in lines if " alpha " in f" {line} ")
    assert alpha.split()[2:4] == ["3", "0"]
    assert "UTC" in alpha
    assert "3 experiment(s), 4 run(s), 0 registered model(s)" in result.out
    doc = json.loads(cli("status", "--json").out)
    names = {e["name"]: e for e in doc["experiments"]}
    assert names["beta"]["runs"] == 1 and doc["format_version"] == 1


def test_status_of_an_empty_store(cli: Cli, project: Path, tmp_path: Path) -> None:
    result = cli("status", str(tmp_path / "empty"))
    assert result.code == 0
    assert "nothing has been logged yet" in result.out


def _age(folder: Path, seconds: float) -> None:
    """Make every object of a folder store look ``seconds`` old (its mtime is its time)."""
    past = time.time() - seconds
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def _keys(folder: Path, part: str) -> set[str]:
    """The objects (files) of a folder store with ``part`` as a path segment."""
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and part in p.relative_to(folder).parts[:-1]
    }


def test_compact_then_gc_on_a_folder(cli: Cli, project: Path) -> None:
    store = project / "store"
    uri = folder_uri(store)
    # Two "processes", each creating one run: two objects in the index log.
    # (The experiment's log gets two or more each, depending on the
    # flusher's timing, and a process checkpoints it at exit from three on.)
    for _ in range(2):
        log_runs(uri, "alpha", 1)

    dry = cli("compact", uri, "--dry-run")
    assert dry.code == 0 and "would checkpoint tracking/index at 2" in dry.out
    assert not _keys(store / "tracking" / "index", "ckpt")
    result = cli("compact", uri)
    assert result.code == 0
    assert "checkpointed tracking/index at 2 (2 log object(s) folded)" in result.out
    assert cli("compact", uri).out.rstrip().endswith("0 checkpointed, 4 up to date")
    # gc deletes only log objects two readable checkpoints cover: a second one.
    log_runs(uri, "alpha", 1)
    assert "checkpointed tracking/index at 3" in cli("compact", uri).out
    before = cli("status", uri, "--json").out

    # Young objects are never deleted.
    fresh = json.loads(cli("gc", uri, "--dry-run", "--json").out)
    assert all(not log["log_objects"] for log in fresh["logs"])

    _age(store, 7200)
    planned = json.loads(cli("gc", uri, "--dry-run", "--json").out)
    doomed = {k for log in planned["logs"] for k in log["log_objects"]}
    assert {"tracking/index/log/000000000001", "tracking/index/log/000000000002"} <= doomed
    # What only the newest checkpoint covers stays (so does a log's newest object).
    assert "tracking/index/log/000000000003" not in doomed
    text = cli("gc", uri, "--dry-run")
    assert (
        f"would delete {uri.replace('bucket+file', 'file')}" in text.out
        or "would delete" in text.out
    )
    assert all((store / key).is_file() for key in doomed)  # a dry run deletes nothing

    result = cli("gc", uri)
    assert result.code == 0, result.err
    assert f"deleted {len(doomed)} log object(s)" in result.out
    assert not any((store / key).exists() for key in doomed)
    # What the dry run listed is what went, and nothing else is due.
    again = json.loads(cli("gc", uri, "--dry-run", "--json").out)
    assert not any(log["log_objects"] or log["checkpoints"] for log in again["logs"])
    # The data is intact.
    assert cli("status", uri, "--json").out == before


def test_gc_refuses_a_retention_shorter_than_a_writer_may_pause(cli: Cli, project: Path) -> None:
    uri = folder_uri(project / "store")
    log_runs(uri, "alpha", 1)
    result = cli("gc", uri, "--retention", "30")
    assert result.code == 2
    assert "at least 120" in result.err


def test_gc_removes_the_history_of_a_permanently_deleted_run(cli: Cli, project: Path) -> None:
    from mlflow_bucket_plugins.mlflow_compat import tracking_store_for

    store_dir = project / "store"
    uri = folder_uri(store_dir)
    doomed_run, kept_run = log_runs(uri, "alpha", 2, metric_steps=5)
    assert cli("compact", uri).code == 0
    histories = _keys(store_dir, "side")
    assert len(histories) == 2  # one metric history per run

    tracking = tracking_store_for(uri)
    tracking.delete_run(doomed_run)
    tracking._hard_delete_run(doomed_run)  # what `mlflow gc` does
    end_process()
    # Two more checkpoints: gc keeps the newest two, so the one from before the
    # purge (which still refers to the history) must age out first.
    _age(store_dir, 7200)
    assert cli("gc", uri).code == 0
    log_runs(uri, "alpha", 1, metric_steps=0)
    _age(store_dir, 7200)
    assert cli("gc", uri).code == 0

    left = _keys(store_dir, "side")
    assert len(left & histories) == 1, (histories, left)
    import mlflow

    client = mlflow.MlflowClient(uri)
    assert [m.value for m in client.get_metric_history(kept_run, "loss")][:1] == [0.5]
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_run(doomed_run)
    end_process()


# -- doctor and flush: a crashed process's spool --------------------------------------------


CRASH = """
    import os, mlflow
    mlflow.set_experiment("crashed")
    with mlflow.start_run():
        mlflow.log_param("p", 1)
        mlflow.log_metric("m", 2.0)
    os._exit(0)  # no exit hooks: the spool is never uploaded
"""


def test_doctor_reports_a_crashed_spool_and_flush_uploads_it(
    cli: Cli, project: Path, gcs_uri: str
) -> None:
    (project / "mlflow-bucket.toml").write_text(f'uri = "{gcs_uri}"\n')
    env = dict(os.environ, MLFLOW_BUCKET_FLUSH_INTERVAL="3600")
    crashed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CRASH)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert crashed.returncode == 0, crashed.stderr

    doctor = cli("doctor")
    assert doctor.code == 0, doctor.out  # a warning, not a failure
    assert "[WARN] spool:" in doctor.out and "fix: mlflow-bucket flush" in doctor.out
    status = cli("status")
    assert "ended process, waiting for upload" in status.out
    # Its experiment was created (synchronously), its run never uploaded.
    runs = {e["name"]: e["runs"] for e in json.loads(cli("status", "--json").out)["experiments"]}
    assert runs["crashed"] == 0

    result = cli("flush")
    assert result.code == 0, result.out + result.err
    assert "uploaded" in result.out
    runs = {e["name"]: e["runs"] for e in json.loads(cli("status", "--json").out)["experiments"]}
    assert runs["crashed"] == 1
    assert "[PASS] spool" in cli("doctor").out
    assert cli("flush").out.startswith("nothing waiting")


def test_doctor_names_the_fix_when_no_aws_credentials_are_found(
    cli: Cli, project: Path, s3_bucket: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    # No shared credentials file, no instance metadata service to wait for.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(project / "absent-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(project / "absent-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    endpoint = s3_bucket.endpoint  # type: ignore[attr-defined]
    bucket = s3_bucket.bucket  # type: ignore[attr-defined]
    (project / "mlflow-bucket.toml").write_text(
        f'uri = "s3://{bucket}/ml"\n[storage]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
    )
    result = cli("doctor")
    assert "[FAIL] credentials: the AWS credential chain found none" in result.out
    assert "fix: aws configure" in result.out
    assert result.code == 1


def test_compact_and_gc_dry_run_on_gcs(cli: Cli, project: Path, gcs_uri: str) -> None:
    for _ in range(2):
        log_runs(gcs_uri, "alpha", 1)
    result = cli("compact", gcs_uri)
    assert result.code == 0, result.err
    # How many log objects the runs made (and whether a process's exit
    # checkpointed them already) depends on the flusher's timing: only
    # that everything is folded now is certain.
    assert "checkpointed tracking/index at" in result.out
    dry = json.loads(cli("gc", gcs_uri, "--dry-run", "--json").out)
    exp = next(log for log in dry["logs"] if log["root"] == "tracking/exp/1")
    assert exp["checkpoint"] >= 2 and exp["unfolded"] == 0
    assert exp["log_objects"] == []  # younger than the retention window
    assert cli("gc", gcs_uri).out.startswith("deleted 0 log object(s)")
