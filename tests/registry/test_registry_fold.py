"""The registry's fold: deterministic, replay-safe, and the same after a checkpoint."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow_bucket_plugins.registry.backend import registry_for
from mlflow_bucket_plugins.registry.fold import (
    dump_registry,
    fold_registry,
    load_registry,
    new_registry_state,
)
from mlflow_bucket_plugins.tracking.backend import forget_backends

ENTRIES: list[dict[str, Any]] = [
    {"op": "rm.create", "name": "m", "tags": {"k": "v"}, "time": 1},
    {"op": "rm.create", "name": "m", "time": 2},  # loses: the name is taken
    {"op": "mv.create", "name": "m", "source": "s", "run": "r1", "time": 3},
    {"op": "mv.create", "name": "m", "source": "s", "run": "r2", "time": 4},
    {"op": "alias.set", "name": "m", "alias": "champion", "version": 1, "expect": None},
    {"op": "alias.set", "name": "m", "alias": "champion", "version": 2, "expect": None},  # stale
    {"op": "mv.delete", "name": "m", "version": 1, "time": 5},
    {"op": "mv.create", "name": "m", "source": "s", "run": "r1", "time": 6},
    {"op": "mv.tag", "name": "nope", "version": 1, "key": "k", "value": "v"},  # missing
    {"op": "rm.rename", "name": "m", "new": "n", "time": 7},
    {"op": "some.future.op", "name": "n"},
]


def _fold(entries: list[dict[str, Any]]) -> dict[str, Any]:
    state = new_registry_state()
    for seq, entry in enumerate(entries, 1):
        fold_registry(state, seq, [entry])
    return state


def test_log_order_decides_and_void_entries_are_recorded() -> None:
    state = _fold(ENTRIES)
    assert state["void"] == {"2": "exists", "6": "stale", "9": "missing"}
    model = state["models"]["1"]
    assert state["names"] == {"n": "1"}
    # Version 1 was deleted; its number is not given again.
    assert sorted(model["versions"]) == ["2", "3"]
    assert model["next"] == 3
    assert model["aliases"] == {}  # champion pointed at the deleted version 1
    assert state["runs"] == {"r2": [["1", 2]], "r1": [["1", 3]]}
    assert state["vseq"] == {"4": ["1", 2], "8": ["1", 3]}
    assert {v["mtime"] for v in model["versions"].values()} == {7}  # the rename's time


def test_replaying_a_log_object_changes_nothing() -> None:
    state = _fold(ENTRIES)
    before = copy.deepcopy(state)
    for seq, entry in enumerate(ENTRIES, 1):
        fold_registry(state, seq, [entry])
    assert state == before


def test_a_checkpoint_round_trip_rebuilds_the_indexes() -> None:
    state = _fold(ENTRIES)
    stored = dump_registry(state)
    assert "runs" not in stored and "vseq" not in stored
    assert load_registry(copy.deepcopy(stored)) == state
    # Folding on from the checkpoint is folding on from the state.
    more = {"op": "mv.create", "name": "n", "source": "s", "run": "r1", "time": 8}
    a = fold_registry(load_registry(copy.deepcopy(stored)), 12, [more])
    b = fold_registry(copy.deepcopy(state), 12, [more])
    assert a == b and a["vseq"]["12"] == ["1", 4]


@pytest.mark.parametrize("backend", ["memory", "local"])
def test_new_processes_read_checkpoints_and_writers_still_learn_their_numbers(
    backend: str, memory_uri: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_BUCKET_COMPACT_THRESHOLD", "4")
    uri = memory_uri if backend == "memory" else f"bucket+file://{tmp_path / 'store'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("m")
    for i in range(1, 12):
        assert client.create_model_version("m", f"s3://x/{i}", f"run{i % 3}").version == i
    store = registry_for(uri).backend.store
    assert store.list_objects("registry/ckpt/")
    forget_backends()  # another process, as far as the store knows
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.search_model_versions("run_id = 'run1'")
    assert sorted(int(v.version) for v in found) == [1, 4, 7, 10]
    assert client.create_model_version("m", "s3://x/12").version == 12


def test_what_another_machine_wrote_a_moment_ago_is_found(memory_uri: str) -> None:
    """The view refreshes at most once a second; a name, version or tag not found is
    looked up again at once, so another machine's fresh writes are never missed."""
    from mlflow_bucket.log import Log

    client = MlflowClient(tracking_uri=memory_uri, registry_uri=memory_uri)
    client.create_registered_model("m")
    client.create_model_version("m", "s3://x/1")
    other = Log(registry_for(memory_uri).backend.store, "registry", cache=None)
    other.append([{"op": "mv.create", "name": "m", "source": "s3://x/2", "time": 1}])
    other.append([{"op": "mv.tag", "name": "m", "version": 2, "key": "k", "value": "v"}])
    other.append([{"op": "rm.create", "name": "n", "time": 2}])
    # The view was refreshed just now (by the create above): these must look again.
    assert client.get_model_version("m", "2").tags == {"k": "v"}
    assert client.get_registered_model("n").name == "n"
    other.append([{"op": "rm.tag", "name": "n", "key": "t", "value": "1"}])
    client.delete_registered_model_tag("n", "t")  # not skipped as "nothing to delete"
    forget_backends()
    client = MlflowClient(tracking_uri=memory_uri, registry_uri=memory_uri)
    assert client.get_registered_model("n").tags == {}
