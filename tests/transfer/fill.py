"""Fill a tracking store with varied data through MLflow's client (tests and benchmarks).

Deleted runs and experiments, NaN and infinite metric values, several
points per step, unicode names and values, nested artifacts, datasets,
logged models with metrics, registered models with deleted versions,
stages, aliases and tags.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.entities.logged_model_output import LoggedModelOutput


def _artifacts(client: MlflowClient, run_id: str, tag: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "model", "sub", "deeper"))
        files = {
            "notes ✓.txt": f"notes of {tag}\n",
            "model/MLmodel": "flavors: {}\n",
            "model/sub/weights.bin": "x" * 2048,
            "model/sub/deeper/empty.txt": "",
        }
        for rel, text in files.items():
            with open(os.path.join(tmp, rel), "w", encoding="utf-8") as f:
                f.write(text)
        client.log_artifacts(run_id, tmp)


def fill(
    uri: str, artifact_root: str | None = None, *, runs: int = 6, artifacts: bool = True
) -> dict[str, Any]:
    """Fill the store at ``uri``; what was made (ids), for the tests' checks.

    ``artifact_root``: where new experiments keep artifacts (MLflow's client
    would put an SQL store's under ./mlruns).
    """
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    made: dict[str, Any] = {"runs": []}
    client.set_experiment_tag("0", "team", "core")

    def location(name: str) -> str | None:
        return f"{artifact_root}/{name}" if artifact_root else None

    exp_u = client.create_experiment(
        "expérience ✓ 实验", location("u"), tags={"purpose": "tests ✓"}
    )
    exp_d = client.create_experiment("to be deleted", location("d"))
    base = 1_700_000_000_000
    for i in range(runs):
        eid = exp_u if i % 2 == 0 else "0"
        run = client.create_run(eid, start_time=base + i, run_name=f"run-{i} ✓", tags={"i": str(i)})
        rid = run.info.run_id
        made["runs"].append(rid)
        metrics = [Metric("loss", 1.0 / (s + 1), base + s, s) for s in range(5)]
        metrics += [
            Metric("odd", math.nan, base, 0),
            Metric("odd", math.inf, base + 1, 1),
            Metric("odd", -math.inf, base + 2, 2),
            Metric("odd", 0.5, base + 3, 2),  # two points at one step
            Metric("naïve métrique", float(i), base, 0),
        ]
        client.log_batch(
            rid,
            metrics=metrics,
            params=[Param("lr", str(0.1 * (i + 1))), Param("名前", "値 ✓")],
            tags=[RunTag("note", "ünïcödé ✓"), RunTag("empty", "")],
        )
        if i == 0:
            ds = Dataset(
                "train ✓", "d1g3st", "local", '{"uri": "/data/train"}', '{"a": 1}', '{"n": 3}'
            )
            client.log_inputs(
                rid, [DatasetInput(ds, [InputTag("mlflow.data.context", "training")])]
            )
            model = client.create_logged_model(
                exp_u, name="logged ✓", source_run_id=rid, params={"k": "v"}, tags={"t": "✓"}
            )
            made["model"] = model.model_id
            client.log_batch(rid, metrics=[Metric("acc", 0.9, base, 1, model_id=model.model_id)])
            client.log_outputs(rid, [LoggedModelOutput(model.model_id, 1)])
            client.finalize_logged_model(model.model_id, "READY")
            if artifacts:
                with tempfile.TemporaryDirectory() as tmp:
                    with open(os.path.join(tmp, "MLmodel"), "w") as f:
                        f.write("flavors: {}\n")
                    client.log_model_artifacts(model.model_id, tmp)
        if artifacts and i < 3:
            _artifacts(client, rid, f"run {i}")
        status = "FAILED" if i == 1 else "FINISHED"
        client.set_terminated(rid, status=status, end_time=base + 1000 + i)
        if i == 2:
            client.delete_run(rid)
    gone = client.create_run(exp_d, start_time=base, run_name="in a deleted experiment")
    client.log_param(gone.info.run_id, "p", "1")
    client.set_terminated(gone.info.run_id)
    client.delete_experiment(exp_d)
    # The registry: versions 1..3, 2 deleted; stages, aliases, tags, sources of each kind.
    name = "classifieur ✓"
    client.create_registered_model(name, tags={"owner": "ml ✓"}, description="a model ✓")
    first = made["runs"][0]
    run_uri = client.get_run(first).info.artifact_uri
    # Version 1's source is in the run's artifacts: a copy points it at its own copy of them.
    client.create_model_version(name, f"{run_uri}/model", run_id=first, tags={"v": "1"})
    client.create_model_version(name, f"runs:/{first}/model", run_id=first)
    # MLflow's registry stores resolve a models:/ source with the current tracking URI.
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        client.create_model_version(
            name, f"models:/{made['model']}", run_id=first, description="third ✓"
        )
    finally:
        mlflow.set_tracking_uri(previous)
    client.delete_model_version(name, "2")
    client.transition_model_version_stage(name, "3", "Production")
    client.transition_model_version_stage(name, "1", "Archived")
    client.set_registered_model_alias(name, "champion", "3")
    client.set_registered_model_alias(name, "old", "1")
    client.set_model_version_tag(name, "3", "validated", "yes ✓")
    client.create_registered_model("empty model")
    return made
