"""Search semantics of MLflow's SQL store, in Python over entities.

Filters and order clauses are parsed by MLflow's own parsers (the ones its
SQL store uses); what remains here is what the SQL store's queries mean
that MLflow's Python-side helpers (made for the FileStore) get wrong:
experiment ids compare as integers, SQLite sorts NULL first, a logged
model's metric filter matches any of its points, and so on. Each rule
names the SQL behaviour it copies.
"""

from __future__ import annotations

from typing import Any

from mlflow.entities import Experiment, Run
from mlflow.entities.logged_model import LoggedModel
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.store.tracking import SEARCH_LOGGED_MODEL_MAX_RESULTS_DEFAULT
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from mlflow.utils.search_utils import (
    SearchExperimentsUtils,
    SearchLoggedModelsPaginationToken,
    SearchUtils,
)

from .. import mlflow_compat as compat


def parse_experiment_id(experiment_id: Any) -> str:
    """MLflow's SQL store takes integer ids; the same message for anything else."""
    try:
        return str(int(experiment_id))
    except (TypeError, ValueError):
        raise MlflowException(
            f"Invalid experiment ID '{experiment_id}'. Experiment ID must be a valid integer.",
            INVALID_PARAMETER_VALUE,
        ) from None


class Ordered:
    """A sort key for one clause: SQLite's NULL-first order, reversed when descending."""

    __slots__ = ("ascending", "nulls_last", "value")

    def __init__(self, value: Any, ascending: bool, nulls_last: bool = False) -> None:
        self.value = value
        self.ascending = ascending
        self.nulls_last = nulls_last

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ordered) and self.value == other.value

    def __lt__(self, other: Ordered) -> bool:
        mine, theirs = self.value is None, other.value is None
        if mine or theirs:
            if mine == theirs:
                return False
            if self.nulls_last:
                return theirs
            # NULL is the smallest value: first going up, last going down.
            return mine == self.ascending
        if self.value == other.value:
            return False
        return bool(self.value < other.value) == self.ascending


# -- experiments ------------------------------------------------------------------


def experiment_filter(filter_string: str | None) -> list[dict[str, Any]]:
    """MLflow's parse of an experiment filter, checked as MLflow's SQL store checks it."""
    clauses = SearchExperimentsUtils.parse_search_filter(filter_string)
    for c in clauses:
        kind, key, comparator, value = c["type"], c["key"], c["comparator"], c["value"]
        if kind == "attribute":
            if key == "experiment_id":
                if comparator not in ("=", "!=", "IN", "NOT IN"):
                    raise MlflowException.invalid_parameter_value(
                        f"Invalid comparator for experiment_id: {comparator}"
                    )
                # Ids compare as the integers they are, not as strings.
                c["value"] = (
                    tuple(int(parse_experiment_id(v)) for v in value)
                    if isinstance(value, tuple)
                    else int(parse_experiment_id(value))
                )
            elif SearchExperimentsUtils.is_string_attribute(kind, key, comparator):
                if comparator not in ("=", "!=", "LIKE", "ILIKE"):
                    raise MlflowException.invalid_parameter_value(
                        f"Invalid comparator for string attribute: {comparator}"
                    )
            elif SearchExperimentsUtils.is_numeric_attribute(kind, key, comparator):
                if comparator not in ("=", "!=", "<", "<=", ">", ">="):
                    raise MlflowException.invalid_parameter_value(
                        f"Invalid comparator for numeric attribute: {comparator}"
                    )
                try:
                    if isinstance(value, float):
                        raise ValueError(value)
                    c["value"] = int(value)
                except (TypeError, ValueError):
                    raise MlflowException.invalid_parameter_value(
                        f"Invalid value for numeric attribute '{key}': {value!r}"
                    ) from None
        elif kind == "tag":
            if comparator not in ("=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"):
                raise MlflowException.invalid_parameter_value(
                    f"Invalid comparator for tag: {comparator}"
                )
        else:
            raise MlflowException.invalid_parameter_value(f"Invalid token type: {kind}")
    return clauses


def experiment_matches(experiment: Experiment, clause: dict[str, Any]) -> bool:
    if clause["type"] == "attribute" and clause["key"] == "experiment_id":
        compare = SearchUtils.get_comparison_func(clause["comparator"])
        return bool(compare(int(experiment.experiment_id), clause["value"]))
    return bool(compat.experiment_matches_clause(experiment, clause))


def experiment_sort_key(order_by: list[str] | None) -> Any:
    """The SQL store's order: its default, ids as integers, ties by id descending."""
    keys = []
    for kind, key, ascending in map(
        SearchExperimentsUtils.parse_order_by_for_search_experiments,
        order_by or ["creation_time DESC", "experiment_id ASC"],
    ):
        if kind != "attribute":
            raise MlflowException.invalid_parameter_value(f"Invalid order_by entity: {kind}")
        keys.append((key, ascending))
    if not any(key == "experiment_id" for key, _ in keys):
        keys.append(("experiment_id", False))

    def value(experiment: Experiment, key: str) -> Any:
        v = getattr(experiment, key)
        return int(v) if key == "experiment_id" else v

    return lambda e: tuple(Ordered(value(e, key), asc) for key, asc in keys)


def search_experiments(
    experiments: list[Experiment],
    filter_string: str | None,
    order_by: list[str] | None,
    max_results: int,
    page_token: str | None,
) -> tuple[list[Experiment], str | None]:
    clauses = experiment_filter(filter_string)
    sort_key = experiment_sort_key(order_by)
    offset = SearchUtils.parse_start_offset_from_page_token(page_token)
    matching = [e for e in experiments if all(experiment_matches(e, c) for c in clauses)]
    ordered = sorted(matching, key=sort_key)
    end = offset + max_results
    token = SearchExperimentsUtils.create_page_token(end) if end < len(ordered) else None
    return ordered[offset:end], token


# -- runs -------------------------------------------------------------------------


def check_run_order_by(order_by: list[str] | None) -> None:
    """The SQL store refuses a field named twice (with its code: INTERNAL_ERROR)."""
    seen = set()
    for clause in order_by or []:
        kind, key, _ = SearchUtils.parse_order_by_for_search_runs(clause)
        key = SearchUtils.translate_key_alias(key)
        if (kind, key) in seen:
            raise MlflowException(f"`order_by` contains duplicate fields: {order_by}")
        seen.add((kind, key))


def _check_run_clause(clause: dict[str, Any]) -> None:
    """Refuse a bad clause up front, as the SQL store does while building its query.

    (MLflow's Python-side filter would only notice when it meets a run.)
    """
    kind, comparator = clause["type"], clause["comparator"].upper()
    key = SearchUtils.translate_key_alias(clause["key"])
    # Each of these raises INVALID_PARAMETER_VALUE for a comparator its type refuses.
    if (
        SearchUtils.is_string_attribute(kind, key, comparator)
        or SearchUtils.is_numeric_attribute(kind, key, comparator)
        or SearchUtils.is_metric(kind, comparator)
        or SearchUtils.is_param(kind, comparator)
        or SearchUtils.is_tag(kind, comparator)
        or SearchUtils.is_dataset(kind, comparator)
    ):
        return
    raise MlflowException(
        f"Invalid search expression type '{kind}'", error_code=INVALID_PARAMETER_VALUE
    )


def _run_matches(run: Run, clause: dict[str, Any]) -> bool:
    kind, key = clause["type"], SearchUtils.translate_key_alias(clause["key"])
    if kind == "attribute" and key == "run_name":
        # The SQL store filters a run's name through its mlflow.runName tag
        # (the name column is empty for runs of MLflow 1.29 and older).
        name = run.data.tags.get(MLFLOW_RUN_NAME)
        compare = SearchUtils.get_comparison_func(clause["comparator"].upper())
        return name is not None and bool(compare(name, clause["value"]))
    return bool(compat.run_matches_clause(run, clause))


def search_runs(
    runs: list[Run],
    filter_string: str | None,
    order_by: list[str] | None,
    max_results: int | None,
    page_token: str | None,
) -> tuple[list[Run], str | None]:
    # In the SQL store's order: parse the filter, the order, then each clause.
    clauses = SearchUtils.parse_search_filter(filter_string)
    check_run_order_by(order_by)
    for clause in clauses:
        _check_run_clause(clause)
    filtered = [r for r in runs if all(_run_matches(r, c) for c in clauses)]
    ordered = SearchUtils.sort(filtered, order_by)
    if max_results is None:
        return ordered[SearchUtils.parse_start_offset_from_page_token(page_token) :], None
    page, token = SearchUtils.paginate(ordered, page_token, max_results)
    return page, token


# -- logged models ----------------------------------------------------------------

# The SQL store's logged-model columns a filter or order may name, as entity attributes.
_MODEL_COLUMNS = {
    "model_id": "model_id",
    "experiment_id": "experiment_id",
    "name": "name",
    "artifact_location": "artifact_location",
    "creation_timestamp_ms": "creation_timestamp",
    "last_updated_timestamp_ms": "last_updated_timestamp",
    "status": "status",
    "status_message": "status_message",
    "model_type": "model_type",
    "source_run_id": "source_run_id",
}
_MODEL_ALIASES = {
    "creation_time": "creation_timestamp_ms",
    "creation_timestamp": "creation_timestamp_ms",
    "last_updated_timestamp": "last_updated_timestamp_ms",
}


def _model_attribute(model: LoggedModel, key: str, where: str) -> Any:
    column = _MODEL_ALIASES.get(key, key)
    if column not in _MODEL_COLUMNS:
        # MLflow's SQL store fails here with an AttributeError (an internal error).
        raise MlflowException.invalid_parameter_value(f"Invalid {where} field name: {key}")
    value = getattr(model, _MODEL_COLUMNS[column])
    if column == "status" and value is not None:
        return value.name if hasattr(value, "name") else str(value)
    return value


def _on_datasets(metric: Any, datasets: list[dict[str, Any]] | None) -> bool:
    if not datasets:
        return True
    return any(
        metric.dataset_name == d["dataset_name"]
        and ("dataset_digest" not in d or metric.dataset_digest == d["dataset_digest"])
        for d in datasets
    )


def _model_matches(model: LoggedModel, comparison: Any, datasets: Any) -> bool:
    from mlflow.utils.search_logged_model_utils import EntityType

    compare = SearchUtils.get_comparison_func(comparison.op)
    kind, key, value = comparison.entity.type, comparison.entity.key, comparison.value
    if kind == EntityType.ATTRIBUTE:
        lhs = _model_attribute(model, key, "filter")
        # SQL: a comparison with NULL is never true.
        return lhs is not None and bool(compare(lhs, value))
    if kind == EntityType.METRIC:
        # SQL joins the model's metric rows: any point of the metric may match.
        return any(
            m.key == key and _on_datasets(m, datasets) and compare(m.value, value)
            for m in model.metrics or []
        )
    items = model.params if kind == EntityType.PARAM else model.tags
    return key in (items or {}) and bool(compare(items[key], value))


def _latest_metric(model: LoggedModel, key: str, order: dict[str, Any]) -> float | None:
    points = [
        m
        for m in model.metrics or []
        if m.key == key
        and (not order.get("dataset_name") or m.dataset_name == order["dataset_name"])
        and (not order.get("dataset_digest") or m.dataset_digest == order["dataset_digest"])
    ]
    if not points:
        return None
    # SQL: the latest by timestamp, then step, then (ascending) run id.
    latest = min(points, key=lambda m: (-m.timestamp, -m.step, m.run_id or ""))
    return float(latest.value)


def _model_sort_key(order_by: list[dict[str, Any]] | None) -> Any:
    clauses: list[tuple[str, dict[str, Any]]] = []
    has_created = has_id = False
    for order in order_by or []:
        field = order.get("field_name")
        if not isinstance(field, str):
            raise MlflowException.invalid_parameter_value(
                "`field_name` in the `order_by` clause must be specified."
            )
        if "." in field:
            entity, name = field.split(".", 1)
            if entity != "metrics":
                raise MlflowException.invalid_parameter_value(
                    f"Invalid order by field name: {field}. Only metrics are supported."
                )
            clauses.append((f"metric:{name}", order))
            continue
        column = _MODEL_ALIASES.get(field, field)
        if column not in _MODEL_COLUMNS:
            raise MlflowException.invalid_parameter_value(f"Invalid order by field name: {field}")
        has_created = has_created or column == "creation_timestamp_ms"
        has_id = has_id or column == "model_id"
        clauses.append((column, order))
    if not has_created:
        clauses.append(("creation_timestamp_ms", {"ascending": False}))
    if not has_id:
        clauses.append(("model_id", {"ascending": True}))

    def value(model: LoggedModel, column: str, order: dict[str, Any]) -> Any:
        if column.startswith("metric:"):
            return _latest_metric(model, column[len("metric:") :], order)
        v = _model_attribute(model, column, "order by")
        # The SQL store sorts the status column by its number.
        return model.status.to_int() if column == "status" and v is not None else v

    return lambda m: tuple(
        Ordered(value(m, column, order), order.get("ascending", True), nulls_last=True)
        for column, order in clauses
    )


def search_logged_models(
    models: list[LoggedModel],
    experiment_ids: list[str],
    filter_string: str | None,
    datasets: list[dict[str, Any]] | None,
    max_results: int | None,
    order_by: list[dict[str, Any]] | None,
    page_token: str | None,
) -> tuple[list[LoggedModel], str | None]:
    from mlflow.utils.search_logged_model_utils import EntityType, parse_filter_string

    offset = 0
    if page_token:
        token = SearchLoggedModelsPaginationToken.decode(page_token)
        token.validate(experiment_ids, filter_string, order_by)
        offset = token.offset
    limit = max_results or SEARCH_LOGGED_MODEL_MAX_RESULTS_DEFAULT
    comparisons = parse_filter_string(filter_string)
    for c in comparisons:
        if c.entity.type == EntityType.ATTRIBUTE:
            # Up front, as the SQL store fails while building its query.
            column = _MODEL_ALIASES.get(c.entity.key, c.entity.key)
            if column not in _MODEL_COLUMNS:
                raise MlflowException.invalid_parameter_value(
                    f"Invalid filter field name: {c.entity.key}"
                )
    sort_key = _model_sort_key(order_by)
    matching = [m for m in models if all(_model_matches(m, c, datasets) for c in comparisons)]
    if datasets and not any(c.entity.type == EntityType.METRIC for c in comparisons):
        # SQL: with datasets and no metric filter, models with any metric on them.
        matching = [m for m in matching if any(_on_datasets(x, datasets) for x in m.metrics or [])]
    ordered = sorted(matching, key=sort_key)
    page = ordered[offset : offset + limit]
    next_token = None
    if offset + limit < len(ordered):
        next_token = SearchLoggedModelsPaginationToken(
            offset=offset + limit,
            experiment_ids=experiment_ids,
            filter_string=filter_string,
            order_by=order_by,
        ).encode()
    return page, next_token
