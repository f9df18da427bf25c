"""Calls the bucket stores do not hold answer empty or NOT_IMPLEMENTED, on every mixin
MLflow's stores inherit; logged-model params and tags are kept as MLflow's SQL store
keeps them. Stores are resolved the way users reach them: MLflow's entry points."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.entities.logged_model_parameter import LoggedModelParameter
from mlflow.entities.logged_model_tag import LoggedModelTag
from mlflow.exceptions import MlflowException
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry.abstract_store import AbstractStore as RegistryBase
from mlflow.store.tracking.abstract_store import AbstractStore as TrackingBase
from mlflow_bucket_plugins.mlflow_compat import registry_store_for, tracking_store_for
from mlflow_bucket_plugins.registry.store import BucketRegistryStore
from mlflow_bucket_plugins.tracking.store import BucketTrackingStore
from mlflow_bucket_plugins.unsupported import missing_calls


def test_stores_resolve_through_mlflows_entry_points(memory_uri: str) -> None:
    assert isinstance(tracking_store_for(memory_uri), BucketTrackingStore)
    assert isinstance(registry_store_for(memory_uri), BucketRegistryStore)


@pytest.mark.parametrize(
    ("base", "cls"), [(TrackingBase, BucketTrackingStore), (RegistryBase, BucketRegistryStore)]
)
def test_no_call_of_any_mixin_is_left_to_mlflows_not_implemented_error(
    base: type, cls: type
) -> None:
    """Every base method with a NotImplementedError body, whichever mixin it comes from,
    is answered by the store (implemented, empty, or MLflow's NOT_IMPLEMENTED)."""
    mixins = [c.__name__ for c in base.__mro__ if c not in (base, object)]
    left = [name for name in missing_calls(base, cls)]
    assert left == [], (mixins, left)
    for name in cls.unsupported_calls:  # type: ignore[attr-defined]
        assert getattr(cls, name).__doc__.startswith(("Nothing to list", "Not supported"))


def _answer(call: Callable[..., Any], *args: Any) -> Any:
    try:
        return call(*args)
    except MlflowException as exc:
        return exc.error_code


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("search_skills", (), []),
        ("get_skill", ("s",), "NOT_IMPLEMENTED"),
        ("create_skill", ("s",), "NOT_IMPLEMENTED"),
        ("search_mcp_servers", (), []),
        ("get_mcp_server", ("m",), "NOT_IMPLEMENTED"),
        ("search_traces", (), ([], None)),
        ("get_trace_info", ("tr-1",), "NOT_IMPLEMENTED"),
        ("list_gateway_endpoints", (), []),
    ],
)
def test_tracking_calls_it_does_not_hold(
    memory_uri: str, name: str, args: tuple[Any, ...], expected: Any
) -> None:
    store = tracking_store_for(memory_uri)
    if not hasattr(TrackingBase, name):
        pytest.skip(f"this MLflow has no {name}")
    got = _answer(getattr(store, name), *args)
    if isinstance(got, PagedList):
        got = list(got)
    assert got == expected


def test_registry_webhooks_list_empty_and_refuse_the_rest(memory_uri: str) -> None:
    """docs/limits.md and docs/registry.md: listing finds none, the rest is NOT_IMPLEMENTED."""
    store = registry_store_for(memory_uri)
    assert list(store.list_webhooks()) == []
    for name in ("create_webhook", "get_webhook", "update_webhook", "delete_webhook"):
        call = getattr(store, name)
        args = ["x"] * sum(
            1
            for p in inspect.signature(call).parameters.values()
            if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD
        )
        with pytest.raises(MlflowException) as exc:
            call(*args)
        assert exc.value.error_code == "NOT_IMPLEMENTED"
        assert "not supported by mlflow-bucket's model registry" in str(exc.value)


def _logged_model_behaviour(client: MlflowClient) -> dict[str, Any]:
    model = client.create_logged_model("0", params={"a": 1}, tags={"t": 2})  # type: ignore[dict-item]
    outcome: dict[str, Any] = {
        "created": (model.params, model.tags, model.metrics),
    }
    client.log_model_params(model.model_id, {"b": 3})  # type: ignore[dict-item]
    outcome["added"] = client.get_logged_model(model.model_id).params
    for params in ({"a": "1"}, {"c": None}):
        try:
            client.log_model_params(model.model_id, params)  # type: ignore[arg-type]
            outcome[f"again {params}"] = "ok"
        except MlflowException as exc:
            outcome[f"again {params}"] = exc.error_code
    try:
        client.log_model_params("m-0123456789abcdef", {"x": "1"})
    except MlflowException as exc:
        outcome["missing"] = exc.error_code
    return outcome


def test_logged_model_params_and_tags_as_the_sql_store(
    memory_uri: str, make_sqlite_store: Callable[[], Any]
) -> None:
    sql = make_sqlite_store()
    expected = _logged_model_behaviour(MlflowClient(sql.db_uri))
    got = _logged_model_behaviour(MlflowClient(memory_uri))
    assert got == expected
    assert expected["created"] == ({"a": "1"}, {"t": "2"}, None)


def test_logged_model_values_read_the_same_in_another_process(memory_uri: str) -> None:
    """Stored as str: a fresh reader (new Backend) gets the model, not 'not found'."""
    from mlflow_bucket_plugins.mlflow_compat import forget_store_instances
    from mlflow_bucket_plugins.tracking.backend import forget_backends

    store = tracking_store_for(memory_uri)
    model = store.create_logged_model(
        "0", params=[LoggedModelParameter("n", 5)], tags=[LoggedModelTag("k", 1.5)]
    )
    store.set_logged_model_tags(model.model_id, [LoggedModelTag("z", 0)])
    assert store.flush(30)
    forget_backends()
    forget_store_instances()
    again = tracking_store_for(memory_uri).get_logged_model(model.model_id)
    assert again.params == {"n": "5"}
    assert again.tags == {"k": "1.5", "z": "0"}
    with pytest.raises(MlflowException) as exc:
        store.set_logged_model_tags(model.model_id, [LoggedModelTag("none", None)])  # type: ignore[arg-type]
    assert exc.value.error_code == "BAD_REQUEST"


@pytest.mark.parametrize("max_results", [0, -1, 50001])
def test_search_runs_refuses_a_page_size_the_sql_store_refuses(
    memory_uri: str, make_sqlite_store: Callable[[], Any], max_results: int
) -> None:
    """max_results=0 answered a page of none with a token at offset 0: a client paging
    through looped forever. The SQL store refuses it."""
    codes = []
    for store in (make_sqlite_store(), tracking_store_for(memory_uri)):
        with pytest.raises(MlflowException) as exc:
            store.search_runs(["0"], "", 1, max_results=max_results)
        codes.append((exc.value.error_code, str(exc.value.message)))
    assert codes[0] == codes[1]
