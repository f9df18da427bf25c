"""Each example runs unchanged against an emulated bucket, configured by environment alone.

Every test runs the example as a user would (a subprocess, the store named
by MLFLOW_TRACKING_URI), then reads what it stored from this process: a
fresh reader with its own view of the bucket.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

EXAMPLES = Path(__file__).parents[1] / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.emulator


def _run(
    command: list[str],
    env: dict[str, str],
    tmp_path: Path,
    *,
    cwd: Path | None = None,
    timeout: float = 240,
) -> str:
    full_env = {
        **os.environ,
        **env,
        "MLFLOW_BUCKET_SPOOL_DIR": str(tmp_path / "spool"),
        "MLFLOW_BUCKET_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        command,
        env=full_env,
        cwd=cwd or tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def _run_example(name: str, uri: str, env: dict[str, str], tmp_path: Path, *args: str) -> str:
    command = [sys.executable, str(EXAMPLES / name), *args]
    return _run(command, {**env, "MLFLOW_TRACKING_URI": uri}, tmp_path)


def _logged_run_id(out: str) -> str:
    return out.split("logged run ")[1].split()[0]


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name!r}"
    return str(experiment.experiment_id)


def test_first_run_lands_in_the_bucket(gcs_env: Any, tmp_path: Path) -> None:
    uri = f"{gcs_env.url}/mlflow"
    run_id = _logged_run_id(_run_example("first_run.py", uri, gcs_env.env, tmp_path))
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.params == {"learning_rate": "0.05", "epochs": "20"}
    assert run.data.tags["team"] == "ml"
    assert len(client.get_metric_history(run_id, "loss")) == 20
    assert [f.path for f in client.list_artifacts(run_id, "notes")] == ["notes/summary.json"]


def test_an_example_with_nothing_configured_logs_to_a_local_emulator(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "STORAGE_EMU"))}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "first_run.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "No store configured: logging into gs://mlflow-examples/team" in result.stdout
    assert "logged run " in result.stdout
    # Nothing landed in MLflow's own default stores in the working directory.
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()


def test_an_example_logs_where_the_project_file_says(gcs_env: Any, tmp_path: Path) -> None:
    # No MLFLOW_TRACKING_URI: the store comes from [tool.mlflow-bucket] in the
    # project's pyproject.toml, found from the working directory.
    uri = f"{gcs_env.url}/from-project-file"
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[tool.mlflow-bucket]\nuri = "{uri}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= gcs_env.env | {
        "MLFLOW_BUCKET_SPOOL_DIR": str(tmp_path / "spool"),
        "MLFLOW_BUCKET_CACHE_DIR": str(tmp_path / "cache"),
    }
    command = [sys.executable, str(EXAMPLES / "first_run.py")]
    result = subprocess.run(command, env=env, cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "No store configured" not in result.stdout
    run = MlflowClient(tracking_uri=uri).get_run(_logged_run_id(result.stdout))
    assert run.data.params["epochs"] == "20"


def test_quickstart_logs_tags_params_metrics_figure_and_model(gcs_env: Any, tmp_path: Path) -> None:
    uri = f"{gcs_env.url}/mlflow"
    run_id = _logged_run_id(_run_example("quickstart.py", uri, gcs_env.env, tmp_path))
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert {"team": "ml", "dataset": "breast-cancer"}.items() <= run.data.tags.items()
    assert run.data.params == {
        "n_estimators": "100",
        "learning_rate": "0.1",
        "max_depth": "3",
        "random_state": "0",
    }
    metrics = run.data.metrics
    assert set(metrics) == {"accuracy", "precision", "recall"}
    assert all(0.9 < value <= 1.0 for value in metrics.values()), metrics

    figure = Path(client.download_artifacts(run_id, "performance.png", str(tmp_path)))
    assert figure.read_bytes().startswith(PNG_MAGIC)

    # MLflow 3: the model is a logged model whose source is this run.
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    assert [m.name for m in models] == ["model"]
    files = {f.path for f in client.list_logged_model_artifacts(models[0].model_id)}
    assert {"MLmodel", "input_example.json"} <= files


def test_sweep_workers_log_into_one_experiment_and_the_best_is_found(
    gcs_env: Any, tmp_path: Path
) -> None:
    uri = f"{gcs_env.url}/mlflow"
    env = {**gcs_env.env, "SWEEP_WORKERS": "2"}
    out = _run_example("sweep.py", uri, env, tmp_path)
    sweep_id = out.split("sweep run ")[1].split(":")[0]
    assert "6 trials by 2 workers" in out

    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, "sweep")
    trials = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{sweep_id}'"
    )
    assert len(trials) == 6
    grid = {(r.data.params["learning_rate"], r.data.params["max_depth"]) for r in trials}
    assert len(grid) == 6
    for trial in trials:
        assert trial.info.status == "FINISHED"
        assert len(client.get_metric_history(trial.info.run_id, "accuracy")) == 30
    # The sweep run records the trial search_runs ranked first.
    sweep = client.get_run(sweep_id)
    best = max(trials, key=lambda r: r.data.metrics["accuracy"])
    assert sweep.data.metrics["best_accuracy"] == best.data.metrics["accuracy"]
    winner = client.get_run(sweep.data.tags["best_run_id"])
    assert winner.data.metrics["accuracy"] == best.data.metrics["accuracy"]


def test_autolog_logs_the_grid_search_its_candidates_and_models(
    gcs_env: Any, tmp_path: Path
) -> None:
    uri = f"{gcs_env.url}/mlflow"
    run_id = _logged_run_id(_run_example("autolog.py", uri, gcs_env.env, tmp_path))
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.params["best_logisticregression__C"] == "10.0"
    assert {"training_accuracy_score", "best_cv_score", "GridSearchCV_score_X_test"} <= set(
        run.data.metrics
    )
    experiment_id = run.info.experiment_id
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'"
    )
    assert sorted(c.data.params["logisticregression__C"] for c in children) == [
        "0.1",
        "1.0",
        "10.0",
    ]
    models = client.search_logged_models(experiment_ids=[experiment_id])
    assert {(m.name, m.source_run_id) for m in models} == {
        ("model", run_id),
        ("best_estimator", run_id),
    }


def test_compare_and_promote_on_s3(s3_env: Any, tmp_path: Path) -> None:
    # tests/registry/test_registry_example.py runs it on GCS; the same script on S3
    # shows that only the configuration changes between clouds.
    uri = f"{s3_env.url}/mlflow"
    out = _run_example("compare_and_promote.py", uri, s3_env.env, tmp_path)
    assert "runs by accuracy:\n  logistic-regression  1.000\n  baseline" in out
    assert "predictions for 5 test rows: [1, 0, 2, 1, 1]" in out

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("iris-classifier", "champion")
    assert champion.version == 2
    assert champion.tags["mlflow_bucket.promotion.champion.decision"] == "promoted"
    assert champion.run_id
    assert client.get_run(champion.run_id).data.params == {"estimator": "logistic-regression"}
    versions = client.search_model_versions("name = 'iris-classifier'")
    assert sorted(int(v.version) for v in versions) == [1, 2]


def test_two_team_members_log_into_one_bucket(gcs_env: Any, tmp_path: Path) -> None:
    uri = f"{gcs_env.url}/mlflow"
    out = _run_example("team/run_team.py", uri, gcs_env.env, tmp_path)
    assert "4 runs in 'team-project'" in out
    assert f"mlflow ui --backend-store-uri {uri}" in out

    # What any UI on this bucket lists: both members' runs in one experiment.
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([_experiment_id(client, "team-project")])
    by_user: dict[str, set[str]] = {}
    for run in runs:
        by_user.setdefault(run.data.tags["mlflow.user"], set()).add(
            run.data.params["learning_rate"]
        )
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 10
    assert by_user == {"alice": {"0.01", "0.1"}, "bob": {"0.03", "0.3"}}


def test_mlflow_run_executes_the_project_into_the_bucket(gcs_env: Any, tmp_path: Path) -> None:
    uri = f"{gcs_env.url}/mlflow"
    env = {
        **gcs_env.env,
        "MLFLOW_TRACKING_URI": uri,
        # The project's command runs `python`: this environment's, as with an activated venv.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    command = [sys.executable, "-m", "mlflow", "run", str(EXAMPLES / "project")]
    command += ["--env-manager", "local", "--experiment-name", "project"]
    out = _run([*command, "-P", "learning_rate=0.2", "-P", "n_estimators=30"], env, tmp_path)
    run_id = _logged_run_id(out).rstrip(":")

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.experiment_id == _experiment_id(client, "project")
    assert run.info.status == "FINISHED"
    assert run.data.params == {"learning_rate": "0.2", "n_estimators": "30"}
    assert run.data.tags["mlflow.source.type"] == "PROJECT"
    assert run.data.tags["mlflow.project.entryPoint"] == "main"
    assert 0.8 < run.data.metrics["accuracy"] <= 1.0
    assert [f.path for f in client.list_artifacts(run_id)] == ["report.txt"]
