"""What the bucket store does not hold (yet): traces, GenAI evaluation, the AI gateway.

MLflow's AbstractStore raises a bare ``NotImplementedError`` for these,
which the tracking server turns into an HTTP 500 and the UI into a broken
page. Here every such call gets either an empty answer (the listings and
searches the UI makes on every experiment page: there is nothing to list)
or MLflow's own ``MlflowNotImplementedException`` (NOT_IMPLEMENTED, HTTP
501), which the UI reports as an unsupported feature.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from mlflow.exceptions import MlflowNotImplementedException
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.tracking.abstract_store import AbstractStore


def _paged() -> PagedList[Any]:
    return PagedList([], None)


# Calls answered with "nothing": what there is to list is nothing.
EMPTY: dict[str, Callable[[], Any]] = {
    "search_traces": lambda: ([], None),
    "batch_get_traces": list,
    "batch_get_trace_infos": list,
    "find_completed_sessions": list,
    "query_trace_metrics": _paged,
    "_delete_traces": lambda: 0,
    "search_datasets": _paged,  # evaluation datasets (run inputs are _search_datasets)
    # Two handlers let any exception through as a 500: they get "nothing" too.
    "get_dataset_experiment_ids": list,
    "_load_dataset_records": lambda: ([], None),
    "search_issues": _paged,
    "list_scorers": list,
    "list_scorer_versions": list,
    "get_online_scoring_configs": list,
    "get_active_online_scorers": list,
    "list_label_schemas": _paged,
    "list_review_queues": _paged,
    "list_review_queue_items": _paged,
    # The AI gateway's listings (its store is MLflow's SQL store only).
    "list_secret_infos": list,
    "list_gateway_model_definitions": list,
    "list_gateway_endpoints": list,
    "list_endpoint_bindings": list,
    "list_budget_policies": _paged,
    "list_gateway_guardrails": _paged,
    "list_endpoint_guardrail_configs": list,
}

# Not in AbstractStore's NotImplementedError set, but called by the server
# (its SQL store has them) or refused outright here.
NOT_SUPPORTED_EXTRA = (
    "link_traces_to_run",
    "deprecated_start_trace_v2",
    "deprecated_end_trace_v2",
)


def _raises_not_implemented(func: Any) -> bool:
    """Whether a base method's body raises NotImplementedError (it has no real default)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


def _gateway_methods() -> list[str]:
    try:
        from mlflow.store.tracking.gateway.abstract_mixin import GatewayStoreMixin
    except ImportError:  # an MLflow without the AI gateway
        return []
    return [n for n, f in vars(GatewayStoreMixin).items() if inspect.isfunction(f)]


def _empty(name: str, make: Callable[[], Any]) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return make()

    method.__name__ = name
    method.__doc__ = "Nothing to list: the bucket store does not hold these (docs/tracking.md)."
    return method


def _not_supported(name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise MlflowNotImplementedException(
            f"{name} is not supported by mlflow-bucket's tracking store: it holds "
            "experiments, runs and logged models, not traces or GenAI evaluation data"
        )

    method.__name__ = name
    method.__doc__ = "Not supported by the bucket store (docs/tracking.md)."
    return method


def fill_unsupported(cls: type) -> type:
    """Give ``cls`` an answer for every store method it does not implement."""
    names = [
        n
        for n, f in vars(AbstractStore).items()
        if inspect.isfunction(f) and not n.startswith("__") and _raises_not_implemented(f)
    ]
    names += [*_gateway_methods(), *NOT_SUPPORTED_EXTRA, *EMPTY]
    for name in dict.fromkeys(names):
        if name in cls.__dict__:
            continue  # implemented for real
        method = _empty(name, EMPTY[name]) if name in EMPTY else _not_supported(name)
        setattr(cls, name, method)
    return cls
