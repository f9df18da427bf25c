"""``promote`` and ``mlflow-bucket promote``: decisions, recorded reasons, races, exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow_bucket_plugins.registry import promote as promote_module
from mlflow_bucket_plugins.registry.promote import (
    EXIT_CANNOT_DECIDE,
    EXIT_NOT_BETTER,
    EXIT_PROMOTED,
    EXIT_USAGE,
    TAG_PREFIX,
    promote,
)
from mlflow_bucket_plugins.tracking.backend import forget_backends
from registry_worker import promote_one  # noqa: F401  (the race test's worker must import)
from test_registry_races import run_workers

from mlflow_bucket.cli import main

KEY = f"{TAG_PREFIX}.champion"


def _client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _register(client: MlflowClient, name: str, metrics: dict[str, float]) -> int:
    """A run with ``metrics`` and a version of ``name`` from it; the version number."""
    exp = client.get_experiment_by_name("promote") or None
    eid = exp.experiment_id if exp else client.create_experiment("promote")
    run = client.create_run(eid)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    mv = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    return int(mv.version)


def test_first_promotion_then_better_worse_and_margins(memory_uri: str) -> None:
    client = _client(memory_uri)
    v1 = _register(client, "m", {"acc": 0.80})
    d = promote("m", "acc", client=client)
    assert (d.outcome, d.exit_code, d.previous) == ("promoted", EXIT_PROMOTED, None)
    assert client.get_model_version_by_alias("m", "champion").version == v1
    tags = client.get_model_version("m", str(v1)).tags
    assert tags[f"{KEY}.decision"] == "promoted"
    assert tags[f"{KEY}.previous_version"] == ""
    assert tags[f"{KEY}.value"] == "0.8"
    assert "@" in tags[f"{KEY}.by"] and tags[f"{KEY}.at"]

    v2 = _register(client, "m", {"acc": 0.79})
    d = promote("m", "acc", client=client)
    assert (d.outcome, d.exit_code, d.candidate, d.previous) == (
        "not-better",
        EXIT_NOT_BETTER,
        v2,
        v1,
    )
    assert client.get_model_version_by_alias("m", "champion").version == v1
    tags = client.get_model_version("m", str(v2)).tags
    assert tags[f"{KEY}.decision"] == "not-better"
    assert tags[f"{KEY}.previous_version"] == str(v1)
    assert tags[f"{KEY}.previous_value"] == "0.8"

    v3 = _register(client, "m", {"acc": 0.805})
    d = promote("m", "acc", client=client, min_improvement=0.01)
    assert d.outcome == "not-better", d.reason
    d = promote("m", "acc", client=client, candidate=v3, min_improvement=0.004)
    assert d.outcome == "promoted", d.reason
    assert client.get_model_version_by_alias("m", "champion").version == v3
    old = client.get_model_version("m", str(v1)).tags
    assert old[f"{KEY}.replaced_by"] == str(v3)
    # Asking again changes nothing.
    d = promote("m", "acc", client=client, candidate=v3)
    assert (d.outcome, d.exit_code) == ("already-holds", EXIT_PROMOTED)


def test_lower_is_better_dry_run_and_challenger_alias(memory_uri: str) -> None:
    client = _client(memory_uri)
    v1 = _register(client, "m", {"rmse": 2.0})
    v2 = _register(client, "m", {"rmse": 1.5})
    client.set_registered_model_alias("m", "champion", str(v1))
    client.set_registered_model_alias("m", "challenger", str(v2))
    assert promote("m", "rmse", client=client, candidate=v2).outcome == "not-better"
    d = promote(
        "m",
        "rmse",
        client=client,
        higher_is_better=False,
        challenger_alias="challenger",
        dry_run=True,
    )
    assert (d.outcome, d.exit_code, d.candidate) == ("promoted", EXIT_PROMOTED, v2)
    # A dry run changes nothing, not even tags (v2 keeps the decision recorded above).
    assert client.get_model_version_by_alias("m", "champion").version == v1
    assert client.get_model_version("m", str(v2)).tags[f"{KEY}.decision"] == "not-better"
    d = promote("m", "rmse", client=client, higher_is_better=False, challenger_alias="challenger")
    assert d.outcome == "promoted"
    assert client.get_model_version_by_alias("m", "champion").version == v2


def test_the_logged_models_metric_comes_first(memory_uri: str) -> None:
    client = _client(memory_uri)
    eid = client.create_experiment("lm")
    run = client.create_run(eid)
    run_id = run.info.run_id
    client.log_metric(run_id, "acc", 0.1)
    logged = client.create_logged_model(eid, name="model", source_run_id=run_id)
    from mlflow.entities import Metric

    client.log_batch(run_id, metrics=[Metric("acc", 0.9, 0, 0, model_id=logged.model_id)])
    client.create_registered_model("m")
    mv = client.create_model_version(
        "m", f"models:/{logged.model_id}", run_id, model_id=logged.model_id
    )
    value, source = promote_module.version_metric(client, mv, "acc")
    assert (value, source) == (0.9, f"logged model {logged.model_id}")


def test_what_cannot_be_decided(memory_uri: str) -> None:
    client = _client(memory_uri)
    assert promote("nope", "acc", client=client).exit_code == EXIT_CANNOT_DECIDE
    v1 = _register(client, "m", {"loss": 1.0})
    d = promote("m", "acc", client=client)
    assert (d.exit_code, d.candidate) == (EXIT_CANNOT_DECIDE, v1)
    assert "has no 'acc'" in d.reason
    _register(client, "m", {"acc": math.nan})
    assert promote("m", "acc", client=client).exit_code == EXIT_CANNOT_DECIDE
    client.set_registered_model_alias("m", "champion", str(v1))
    _register(client, "m", {"acc": 0.5})
    d = promote("m", "acc", client=client)
    assert d.exit_code == EXIT_CANNOT_DECIDE and f"(version {v1}) has no 'acc'" in d.reason
    assert promote("m", "acc", client=client, challenger_alias="nope").exit_code == 4
    assert promote("m", "acc", client=client, candidate=99).exit_code == 4
    with pytest.raises(ValueError):
        promote("m", "acc", client=client, candidate=1, challenger_alias="x")


def test_a_promoter_that_loses_the_race_compares_again(
    memory_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reads the holder (v1); before A moves the alias, B promotes v3. A's move must
    fail, and A must compare its candidate with v3 instead: one consistent alias, two
    decisions recorded."""
    client = _client(memory_uri)
    v1 = _register(client, "m", {"acc": 0.5})
    v2 = _register(client, "m", {"acc": 0.7})
    v3 = _register(client, "m", {"acc": 0.9})
    client.set_registered_model_alias("m", "champion", str(v1))
    real_move = promote_module._move_alias
    interleaved: list[Any] = []

    def move_after_b(*args: Any, **kwargs: Any) -> bool:
        if not interleaved:
            interleaved.append(None)  # B's own move goes straight through
            interleaved[0] = promote("m", "acc", client=client, candidate=v3)
        return real_move(*args, **kwargs)

    monkeypatch.setattr(promote_module, "_move_alias", move_after_b)
    a = promote("m", "acc", client=client, candidate=v2)
    b = interleaved[0]
    assert (b.outcome, b.previous) == ("promoted", v1)
    assert (a.outcome, a.previous, a.attempts) == ("not-better", v3, 2)
    assert client.get_model_version_by_alias("m", "champion").version == v3
    assert client.get_model_version("m", str(v3)).tags[f"{KEY}.decision"] == "promoted"
    tags = client.get_model_version("m", str(v2)).tags
    assert tags[f"{KEY}.decision"] == "not-better"
    assert tags[f"{KEY}.previous_version"] == str(v3)


@pytest.mark.emulator
def test_promoters_racing_in_processes_end_with_the_best(gcs_env: Any, tmp_path: Path) -> None:
    uri = f"{gcs_env.url}/mlflow"
    client = _client(uri)
    values = {1: 0.50, 2: 0.61, 3: 0.93, 4: 0.72}
    for number, value in values.items():
        assert _register(client, "m", {"acc": value}) == number
    client.set_registered_model_alias("m", "champion", "1")
    forget_backends()  # flushes the runs to the bucket for the workers to read
    outputs = run_workers(
        [["promote", uri, "m", str(n), "acc"] for n in (2, 3, 4)], dict(gcs_env.env), tmp_path
    )
    by_candidate = {o["candidate"]: o for o in outputs}
    # However the three interleaved, the best ends up holding the alias...
    assert by_candidate[3]["outcome"] == "promoted"
    client = _client(uri)
    assert client.get_model_version_by_alias("m", "champion").version == 3
    # ...and every candidate carries its decision, against the holder it last saw.
    for number in (2, 3, 4):
        tags = client.get_model_version("m", str(number)).tags
        assert tags[f"{KEY}.decision"] == by_candidate[number]["outcome"]
        assert tags[f"{KEY}.previous_version"] == str(by_candidate[number]["previous"])


def test_the_command_line_and_its_exit_codes(
    memory_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = _client(memory_uri)
    _register(client, "m", {"acc": 0.5})
    _register(client, "m", {"acc": 0.4})
    args = ["promote", "m", "--metric", "acc", "--registry-uri", memory_uri]
    args += ["--tracking-uri", memory_uri]
    assert main([*args, "--candidate", "1", "--json"]) == EXIT_PROMOTED
    out = json.loads(capsys.readouterr().out)
    assert (out["outcome"], out["exit_code"], out["candidate"]) == ("promoted", 0, 1)
    assert main([*args, "--dry-run"]) == EXIT_NOT_BETTER
    assert "dry run: not promoted: m@champion version 2" in capsys.readouterr().out
    assert main([*args, "--lower-is-better", "--dry-run"]) == EXIT_PROMOTED
    assert "would promote" in capsys.readouterr().out
    assert main([*args, "--challenger-alias", "nope"]) == EXIT_CANNOT_DECIDE
    assert main([*args, "--min-improvement", "-1"]) == EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        main([*args, "--candidate", "1", "--challenger-alias", "x"])
    assert exc.value.code == EXIT_USAGE
    assert client.get_model_version_by_alias("m", "champion").version == 1
