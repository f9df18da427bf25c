"""Targeted sequences, each run on MLflow's SQL registry and on ours side by side.

The random differential test (test_registry_differential.py) explores
widely; these pin the cases that matter most to users and that random
sequences reach only now and then: version numbers after deletions,
aliases that follow renames and vanish with their version, stage archiving,
prompts kept out of model searches, and paging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
from registry_helpers import PROMPT, Clock, Pair, norm_model, norm_version, shared_clock


@pytest.fixture
def pair(make_sql_registry: Callable[[], Any]) -> Iterator[Pair]:
    with shared_clock(Clock()) as clock:
        p = Pair(make_sql_registry(), clock)
        yield p
        p.check_everything()
        p.close()


def _model(pair: Pair, name: str, tags: list[RegisteredModelTag] | None = None) -> None:
    pair.ok(f"create {name}", lambda s: s.create_registered_model(name, tags), norm_model)


def _version(pair: Pair, name: str, run_id: str | None = None, **kw: Any) -> int:
    mv = pair.ok(
        f"version of {name}",
        lambda s: s.create_model_version(name, f"s3://b/{name}", run_id, **kw),
        norm_version,
    )
    return int(mv.version)


def test_version_numbers_after_deletes_and_recreation(pair: Pair) -> None:
    _model(pair, "m")
    assert [_version(pair, "m") for _ in range(3)] == [1, 2, 3]
    pair.ok("delete v3", lambda s: s.delete_model_version("m", 3))
    pair.ok("delete v1", lambda s: s.delete_model_version("m", 1))
    # Deleted numbers are never given again while the model lives.
    assert _version(pair, "m") == 4
    assert pair.fails("get v3", lambda s: s.get_model_version("m", 3)) == "RESOURCE_DOES_NOT_EXIST"
    pair.ok("delete m", lambda s: s.delete_registered_model("m"))
    _model(pair, "m")
    assert _version(pair, "m") == 1


def test_aliases_follow_renames_and_vanish_with_their_version(pair: Pair) -> None:
    _model(pair, "m")
    _model(pair, "other")
    for _ in range(3):
        _version(pair, "m")
    pair.ok("alias", lambda s: s.set_registered_model_alias("m", "champion", 2))
    pair.ok("alias", lambda s: s.set_registered_model_alias("m", "challenger", 3))
    pair.ok("move alias", lambda s: s.set_registered_model_alias("m", "champion", 3))
    pair.ok("by alias", lambda s: s.get_model_version_by_alias("m", "champion"), norm_version)
    code = pair.fails("rename onto other", lambda s: s.rename_registered_model("m", "other"))
    assert code == "RESOURCE_ALREADY_EXISTS"
    pair.ok("rename to itself", lambda s: s.rename_registered_model("m", "m"), norm_model)
    pair.ok("rename", lambda s: s.rename_registered_model("m", "n"), norm_model)
    assert pair.fails("old name", lambda s: s.get_registered_model("m")) == (
        "RESOURCE_DOES_NOT_EXIST"
    )
    pair.ok("by alias", lambda s: s.get_model_version_by_alias("n", "challenger"), norm_version)
    pair.ok("delete v3", lambda s: s.delete_model_version("n", 3))
    pair.ok("model", lambda s: s.get_registered_model("n"), norm_model)
    code = pair.fails("gone alias", lambda s: s.get_model_version_by_alias("n", "champion"))
    assert code == "INVALID_PARAMETER_VALUE"
    pair.ok("latest", lambda s: s.get_model_version_by_alias("n", "latest"), norm_version)
    pair.ok("delete missing alias", lambda s: s.delete_registered_model_alias("n", "nope"))
    assert pair.fails("reserved", lambda s: s.set_registered_model_alias("n", "latest", 1)) == (
        "INVALID_PARAMETER_VALUE"
    )


def test_stages_archive_existing_versions(pair: Pair) -> None:
    _model(pair, "m")
    for _ in range(4):
        _version(pair, "m")
    for version, stage, archive in [
        (1, "Production", False),
        (2, "production", False),
        (3, "Staging", False),
        (4, "Production", True),
        (3, "Archived", False),
    ]:
        pair.ok(
            f"transition {version} {stage} {archive}",
            lambda s, v=version, st=stage, a=archive: s.transition_model_version_stage(
                "m", v, st, a
            ),
            norm_version,
        )
        pair.ok("model", lambda s: s.get_registered_model("m"), norm_model)
    for stages in (None, ["Production"], ["archived", "None"]):
        pair.ok(
            f"latest {stages}",
            lambda s, st=stages: s.get_latest_versions("m", st),
            lambda res: sorted(norm_version(v) for v in res),
        )
    pair.fails(
        "archive into None", lambda s: s.transition_model_version_stage("m", 1, "None", True)
    )


def test_prompts_stay_out_of_model_searches(pair: Pair) -> None:
    _model(pair, "model")
    _model(pair, "prompt", [RegisteredModelTag(PROMPT, "true")])
    _version(pair, "model", "run1")
    _version(pair, "prompt", None, tags=[ModelVersionTag(PROMPT, "true")])
    _version(pair, "prompt", None, tags=[ModelVersionTag(PROMPT, "true")])
    for f in (None, f"tags.`{PROMPT}` = 'true'", f"tags.`{PROMPT}` = 'false'", "name LIKE '%'"):
        pair.search_all(
            f"models {f}",
            lambda s, token, f=f: s.search_registered_models(f, 10, None, token),
            norm_model,
        )
        pair.search_all(
            f"versions {f}",
            lambda s, token, f=f: s.search_model_versions(f, 10, None, token),
            norm_version,
        )
    # A deleted prompt version still marks its model as a prompt's (the SQL store
    # keeps a deleted version's tags).
    pair.ok("delete prompt v1", lambda s: s.delete_model_version("prompt", 1))
    pair.ok("untag prompt v2", lambda s: s.delete_model_version_tag("prompt", 2, PROMPT))
    pair.search_all(
        "versions after untagging",
        lambda s, token: s.search_model_versions(None, 10, None, token),
        norm_version,
    )
    code = pair.fails(
        "a model named like the prompt",
        lambda s: s.create_registered_model("prompt", [RegisteredModelTag("k", "v")]),
    )
    assert code == "RESOURCE_ALREADY_EXISTS"


def test_searches_by_run_id_page_like_the_sql_store(pair: Pair) -> None:
    for name in ("a", "b", "c"):
        _model(pair, name)
    for i in range(7):
        _version(pair, "abc"[i % 3], f"run{i % 2}")
    for f in ("run_id = 'run0'", "run_id IN ('run0', 'run1')", "run_id = 'none'"):
        for size in (1, 2, 3, 50):
            found = pair.search_all(
                f"{f} by {size}",
                lambda s, token, f=f, size=size: s.search_model_versions(f, size, None, token),
                norm_version,
            )
        assert len(found) == {"run_id = 'run0'": 4, "run_id = 'none'": 0}.get(f, 7)
    for size in (1, 2, 1000):
        pair.search_all(
            f"models by {size}",
            lambda s, token, size=size: s.search_registered_models(
                None, size, ["timestamp DESC"], token
            ),
            norm_model,
        )


def test_sources_from_other_versions(pair: Pair) -> None:
    _model(pair, "m")
    _version(pair, "m")
    pair.ok(
        "copy",
        lambda s: s.create_model_version("m", "models:/m/1", None),
        norm_version,
    )
    pair.ok("uri", lambda s: s.get_model_version_download_uri("m", 2))
    pair.fails("missing source", lambda s: s.create_model_version("m", "models:/m/9", None))
    pair.ok("descr", lambda s: s.update_model_version("m", 2, "two"), norm_version)
    pair.ok("descr", lambda s: s.update_registered_model("m", ""), norm_model)
    pair.ok("tag", lambda s: s.set_model_version_tag("m", 2, ModelVersionTag("t", "1")))
    pair.ok("tag", lambda s: s.set_registered_model_tag("m", RegisteredModelTag("t", "2")))
    pair.ok("untag", lambda s: s.delete_registered_model_tag("m", "nope"))
