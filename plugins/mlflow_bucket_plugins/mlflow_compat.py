"""Every MLflow name this project uses that is not MLflow's public API, in one place.

The stores give the same errors as MLflow's own stores by calling MLflow's
own validators, which are private (``mlflow.utils.validation._validate_*``)
and move between releases: 3.18 renamed ``_validate_model_alias_name`` to
``_validate_alias_name``, and an import of the old name made the registry
plugin fail to load, so MLflow skipped it and every registry call failed.

Each use below says what it is for and how it is found: the names it has
had on the supported MLflow versions (newest first), and a local fallback
that raises the same error (code and message) where no name is found, so a
future rename costs a warning instead of the plugin. ``USES`` records, per
process, whether MLflow's own helper or the fallback answers; the test
suite fails on any fallback in use on a supported version, so a rename is
seen in CI, not by a user. Nothing outside this module imports a private
MLflow name (tests/test_private_names.py).
"""

from __future__ import annotations

import importlib
import logging
import os
import posixpath
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.utils import validation as _v

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Use:
    """One private MLflow name the project leans on, and where it was found."""

    name: str  # the compatibility name used in this project
    purpose: str
    candidates: tuple[str, ...]  # "module:attribute", newest MLflow first
    found: str | None  # the candidate this MLflow has; None: the local fallback
    fallback: Any  # what answers where MLflow has none of the candidates


USES: dict[str, Use] = {}


def _find(name: str, purpose: str, candidates: tuple[str, ...], fallback: Any) -> Any:
    for candidate in candidates:
        module, _, path = candidate.partition(":")
        try:
            value = importlib.import_module(module)
            for attr in path.split("."):
                value = getattr(value, attr)
        except (ImportError, AttributeError):
            continue
        USES[name] = Use(name, purpose, candidates, candidate, fallback)
        return value
    USES[name] = Use(name, purpose, candidates, None, fallback)
    _log.warning(
        "mlflow-bucket: this MLflow has none of %s; using the plugin's own copy of the check "
        "(please report it)",
        ", ".join(candidates),
    )
    return fallback


def fallbacks_in_use() -> list[Use]:
    """The uses that this MLflow does not serve (the test suite wants none)."""
    return [use for use in USES.values() if use.found is None]


# -- local fallbacks: MLflow's rules, written from their documented behaviour ---------

_VALIDATION = "mlflow.utils.validation"
_KEY_MAX = getattr(_v, "MAX_ENTITY_KEY_LENGTH", 250)
_TAG_VALUE_MAX = getattr(_v, "MAX_TAG_VAL_LENGTH", 8000)
_REGISTRY_KEY_MAX = getattr(_v, "MAX_MODEL_REGISTRY_TAG_KEY_LENGTH", 250)
_REGISTRY_VALUE_MAX = getattr(_v, "MAX_MODEL_REGISTRY_TAG_VALUE_LENGTH", 100_000)
_ALIAS_MAX = getattr(_v, "MAX_REGISTERED_MODEL_ALIAS_LENGTH", 255)
_NAME_CHARS = re.compile(r"^[/\w.\- :]*$")


def _invalid(message: str) -> MlflowException:
    return MlflowException(message, INVALID_PARAMETER_VALUE)


def _limit(what: str, limit: int, value: str | None) -> str | None:
    if value is not None and len(value) > limit:
        raise _invalid(f"'{what}' exceeds the maximum length of {limit} characters")
    return value


def _not_unique(name: str) -> bool:
    norm = posixpath.normpath(name)
    return norm != str(name) or norm == "." or norm.startswith(("..", "/"))


def _tag_name(name: Any, path: str = "key") -> None:
    if name is None:
        raise _invalid(f"Missing value for required parameter '{path}'.")
    if not _NAME_CHARS.fullmatch(name):
        raise _invalid(f"Invalid value {name!r} for parameter '{path}' supplied: bad characters.")
    if _not_unique(name):
        raise _invalid(
            f"Invalid value {name!r} for parameter '{path}' supplied: not a unique path."
        )


def _model_name(name: Any) -> None:
    if name is None or str(name).strip() == "":
        raise _invalid("Missing value for required parameter 'name'.")
    if "/" in name or ":" in name:
        raise _invalid(f"Invalid model name '{name}'. Names cannot contain '/' or ':'.")
    if _not_unique(name):
        raise _invalid(f"Invalid value {name!r} for parameter 'name' supplied: not a unique path.")


def _model_renaming(new_name: Any) -> None:
    if new_name is None or str(new_name).strip() == "":
        raise _invalid("Missing value for required parameter 'new_name'.")
    _model_name(new_name)


def _model_version(version: Any) -> int:
    try:
        return int(version)
    except (TypeError, ValueError):
        raise _invalid(f"Parameter 'version' must be an integer, got '{version}'.") from None


def _registry_tag(key: Any, value: Any) -> None:
    _tag_name(key)
    _limit("key", _REGISTRY_KEY_MAX, key)
    _limit("value", _REGISTRY_VALUE_MAX, value)


def _alias_name(alias: Any) -> None:
    if not alias:
        raise _invalid("Registered model alias name cannot be empty.")
    if not re.fullmatch(r"[\w\-]*", alias):
        raise _invalid(f"Invalid alias name: '{alias}'.")
    _limit("Registered model alias name", _ALIAS_MAX, alias)


def _alias_name_reserved(alias: str) -> None:
    if alias.lower() == "latest":
        raise _invalid("'latest' alias name (case insensitive) is reserved.")
    if re.fullmatch(r"[vV]\d+", alias):
        raise _invalid(f"Version alias name '{alias}' is reserved.")


def _experiment_name(name: Any) -> None:
    if name is None or (isinstance(name, str) and not name.strip()):
        raise _invalid(f"Invalid experiment name: '{name}'")
    if not isinstance(name, str):
        raise _invalid(f"Invalid experiment name: {name}. Expects a string.")
    _limit("name", getattr(_v, "MAX_EXPERIMENT_NAME_LENGTH", 500), name)


def _experiment_tag(key: Any, value: Any) -> None:
    _tag_name(key)
    _limit("key", getattr(_v, "MAX_EXPERIMENT_TAG_KEY_LENGTH", 250), key)
    _limit("value", getattr(_v, "MAX_EXPERIMENT_TAG_VAL_LENGTH", 20000), value)


def _artifact_location_length(location: str) -> None:
    if len(location) > 2048:
        raise _invalid("Invalid artifact path length: at most 2048 characters.")


def _logged_model_name(name: str | None) -> None:
    bad = ("/", ":", ".", "%", '"', "'")
    if name is not None and (not name or any(c in name for c in bad)):
        raise _invalid(f"Invalid model name ({name!r}) provided.")


def _metric(key: Any, value: Any, timestamp: Any, step: Any, path: str = "") -> None:
    if key is None or not _NAME_CHARS.fullmatch(key) or _not_unique(key):
        raise _invalid(f"Invalid value {key!r} for parameter 'name' supplied.")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"Invalid value {value!r} for metric '{key}' supplied.")
    if not isinstance(timestamp, int | float) or timestamp < 0:
        raise _invalid(f"Invalid value {timestamp!r} for metric '{key}' timestamp.")
    if not isinstance(step, int | float):
        raise _invalid(f"Invalid value {step!r} for metric '{key}' step.")
    _limit("Metric name", _KEY_MAX, key)


def _tag(key: Any, value: Any, path: str = "") -> Any:
    from mlflow.entities import RunTag

    _tag_name(key)
    _limit("key", _KEY_MAX, key)
    _limit("value", _TAG_VALUE_MAX, value)
    return RunTag(key, value)


def _batch_data(metrics: list[Any], params: list[Any], tags: list[Any]) -> tuple[Any, Any, Any]:
    for m in metrics:
        _metric(m.key, m.value, m.timestamp, m.step)
    for p in params:
        _tag_name(p.key)
        _limit("key", _KEY_MAX, p.key)
        _limit("value", getattr(_v, "MAX_PARAM_VAL_LENGTH", 6000), p.value)
    return metrics, params, [_tag(t.key, t.value) for t in tags]


def _batch_limits(metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
    total = len(metrics) + len(params) + len(tags)
    for what, limit, n in (
        ("metrics", getattr(_v, "MAX_METRICS_PER_BATCH", 1000), len(metrics)),
        ("params", getattr(_v, "MAX_PARAMS_TAGS_PER_BATCH", 100), len(params)),
        ("tags", getattr(_v, "MAX_PARAMS_TAGS_PER_BATCH", 100), len(tags)),
        ("metrics, params, and tags", getattr(_v, "MAX_ENTITIES_PER_BATCH", 1000), total),
    ):
        if n > limit:
            raise _invalid(f"A batch logging request can contain at most {limit} {what}.")


def _param_keys_unique(params: list[Any]) -> None:
    keys = [p.key for p in params]
    dupes = [k for i, k in enumerate(keys) if k in keys[:i]]
    if dupes:
        raise _invalid(f"Duplicate parameter keys have been submitted: {dupes}.")


def _run_id(run_id: Any, path: str = "run_id") -> None:
    if not isinstance(run_id, str) or not re.fullmatch(r"[a-zA-Z0-9][\w\-]{0,255}", run_id):
        raise _invalid(f"Invalid value {run_id!r} for parameter '{path}' supplied.")


def _dataset_inputs(inputs: list[Any]) -> None:
    for item in inputs:
        if not item.dataset.name or not item.dataset.digest:
            raise _invalid("A dataset input needs a name and a digest.")


def _random_name() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


class _ParsedModelUri(NamedTuple):
    model_id: str | None = None
    name: str | None = None
    version: str | None = None
    stage: str | None = None
    alias: str | None = None


def _parse_models_uri(uri: str) -> _ParsedModelUri:
    path = uri.partition(":")[2].lstrip("/")
    parts = path.split("/")
    if not uri.startswith("models:/") or not parts[0] or len(parts) > 2:
        raise MlflowException(f"Not a proper models:/ URI: {uri}")
    if len(parts) == 2:
        name, suffix = parts
        if suffix.isdigit():
            return _ParsedModelUri(name=name, version=suffix)
        return _ParsedModelUri(name=name, stage=None if suffix.lower() == "latest" else suffix)
    if "@" in parts[0]:
        name, _, alias = parts[0].rpartition("@")
        return _ParsedModelUri(name=name, alias=alias)
    return _ParsedModelUri(model_id=parts[0])


class _DatasetSummaryFallback:
    def __init__(self, experiment_id: str, name: str, digest: str, context: str | None) -> None:
        self.experiment_id, self.name, self.digest, self.context = (
            experiment_id,
            name,
            digest,
            context,
        )

    def to_proto(self) -> Any:
        from mlflow.protos.service_pb2 import DatasetSummary

        proto = DatasetSummary(experiment_id=self.experiment_id, name=self.name)
        proto.digest = self.digest
        if self.context:
            proto.context = self.context
        return proto


# -- the uses -----------------------------------------------------------------------

_Check = Callable[..., Any]


def _validator(name: str, purpose: str, attrs: tuple[str, ...], fallback: _Check) -> _Check:
    found: _Check = _find(name, purpose, tuple(f"{_VALIDATION}:{a}" for a in attrs), fallback)
    return found


# Tracking store: the checks MLflow's SQL and file stores run on the same calls.
validate_experiment_name = _validator(
    "validate_experiment_name", "experiment names", ("_validate_experiment_name",), _experiment_name
)
validate_experiment_tag = _validator(
    "validate_experiment_tag", "experiment tags", ("_validate_experiment_tag",), _experiment_tag
)
validate_experiment_artifact_location_length = _validator(
    "validate_experiment_artifact_location_length",
    "an experiment's artifact location",
    ("_validate_experiment_artifact_location_length",),
    _artifact_location_length,
)
validate_metric = _validator("validate_metric", "one metric", ("_validate_metric",), _metric)
validate_tag = _validator(
    "validate_tag", "a run tag (returns it, truncated as MLflow does)", ("_validate_tag",), _tag
)
validate_run_id = _validator("validate_run_id", "run ids", ("_validate_run_id",), _run_id)
validate_batch_log_data = _validator(
    "validate_batch_log_data",
    "log_batch's metrics, params, tags (returns them)",
    ("_validate_batch_log_data",),
    _batch_data,
)
validate_batch_log_limits = _validator(
    "validate_batch_log_limits",
    "log_batch's size limits",
    ("_validate_batch_log_limits",),
    _batch_limits,
)
validate_param_keys_unique = _validator(
    "validate_param_keys_unique",
    "one value per param key in a batch",
    ("_validate_param_keys_unique",),
    _param_keys_unique,
)
validate_dataset_inputs = _validator(
    "validate_dataset_inputs",
    "log_inputs' datasets",
    ("_validate_dataset_inputs",),
    _dataset_inputs,
)
validate_logged_model_name = _validator(
    "validate_logged_model_name",
    "logged model names",
    ("_validate_logged_model_name",),
    _logged_model_name,
)

# Model registry.
validate_model_name = _validator(
    "validate_model_name", "registered model names", ("_validate_model_name",), _model_name
)
validate_model_renaming = _validator(
    "validate_model_renaming", "rename targets", ("_validate_model_renaming",), _model_renaming
)
validate_model_version = _validator(
    "validate_model_version", "version numbers", ("_validate_model_version",), _model_version
)
validate_model_version_tag = _validator(
    "validate_model_version_tag",
    "model version tags",
    ("_validate_model_version_tag",),
    _registry_tag,
)
validate_registered_model_tag = _validator(
    "validate_registered_model_tag",
    "registered model tags",
    ("_validate_registered_model_tag",),
    _registry_tag,
)
validate_tag_name = _validator(
    "validate_tag_name", "tag keys given alone (deletes)", ("_validate_tag_name",), _tag_name
)
# 3.18 renamed these (and gave the first a resource_type argument, defaulted).
validate_alias_name = _validator(
    "validate_alias_name",
    "registered model aliases",
    ("_validate_alias_name", "_validate_model_alias_name"),
    _alias_name,
)
validate_alias_name_reserved = _validator(
    "validate_alias_name_reserved",
    "aliases MLflow reserves ('latest', 'v<N>')",
    ("_validate_alias_name_reserved", "_validate_model_alias_name_reserved"),
    _alias_name_reserved,
)
ALIAS_LATEST: str = _find(
    "ALIAS_LATEST",
    "the reserved alias 'latest'",
    (f"{_VALIDATION}:_REGISTERED_MODEL_ALIAS_LATEST",),
    "latest",
)

# Run names as MLflow makes them ("adjective-animal-123"): the UI and users expect that shape.
generate_random_name: Callable[[], str] = _find(
    "generate_random_name",
    "default run and logged-model names",
    ("mlflow.utils.name_utils:_generate_random_name",),
    _random_name,
)
# What the server's search-datasets handler turns into its answer (to_proto).
DatasetSummary: Callable[..., Any] = _find(
    "DatasetSummary",
    "the experiment page's dataset summaries",
    ("mlflow.entities.dataset_summary:_DatasetSummary",),
    _DatasetSummaryFallback,
)
# A model version's source may be a models:/ URI: a logged model's id, or a name and version.
parse_model_uri: Callable[[str], Any] = _find(
    "parse_model_uri",
    "models:/ sources of new model versions",
    ("mlflow.store.artifact.utils.models:_parse_model_uri",),
    _parse_models_uri,
)


# Search filters: the clause matchers behind MLflow's own in-memory filters, so that a
# clause means here what it means to MLflow's stores (the public filter() takes a string).
def _get_value(entity: Any, kind: str, key: str) -> Any:
    data = getattr(entity, "data", None)
    if kind == "metric":
        return data.metrics.get(key) if data is not None else None
    if kind == "parameter":
        return data.params.get(key) if data is not None else None
    if kind == "tag":
        return (data.tags if data is not None else entity.tags).get(key)
    return getattr(getattr(entity, "info", entity), key, None)


def _matches_clause(entity: Any, clause: dict[str, Any]) -> bool:
    from mlflow.utils.search_utils import SearchUtils

    kind, key, value = clause["type"], clause["key"], clause["value"]
    comparator = clause["comparator"].upper()
    lhs = _get_value(entity, kind, key)
    if comparator in ("IS NULL", "IS NOT NULL"):
        return (lhs is None) == (comparator == "IS NULL")
    if lhs is None:
        return False
    if kind == "metric" or (kind == "attribute" and isinstance(lhs, int | float)):
        value = float(value)
    return bool(SearchUtils.get_comparison_func(comparator)(lhs, value))


run_matches_clause: Callable[[Any, dict[str, Any]], bool] = _find(
    "run_matches_clause",
    "search_runs filters, clause by clause",
    ("mlflow.utils.search_utils:SearchUtils._does_run_match_clause",),
    _matches_clause,
)
experiment_matches_clause: Callable[[Any, dict[str, Any]], bool] = _find(
    "experiment_matches_clause",
    "search_experiments filters, clause by clause",
    ("mlflow.utils.search_utils:SearchExperimentsUtils._does_experiment_match_clause",),
    _matches_clause,
)


# -- MLflow's server ------------------------------------------------------------------

# The variable through which `mlflow server` hands its workers the backend store URI
# (``BACKEND_STORE_URI_ENV_VAR``: in mlflow.server on 3.5, mlflow.server.constants on
# 3.18). Named here, not imported: importing mlflow.server loads the whole Flask app
# into every training process. tests/test_private_names.py holds it to MLflow's.
SERVER_BACKEND_STORE_ENV = "_MLFLOW_SERVER_FILE_STORE"


def in_mlflow_server() -> bool:
    """Whether this process is a worker of `mlflow server` / `mlflow ui`."""
    return bool(os.environ.get(SERVER_BACKEND_STORE_ENV))


# -- MLflow's store resolution and its per-URI caches -------------------------------


def _tracking_utils() -> Any:
    return importlib.import_module("mlflow.tracking._tracking_service.utils")


def _registry_utils() -> Any:
    return importlib.import_module("mlflow.tracking._model_registry.utils")


def tracking_store_for(uri: str) -> Any:
    """The tracking store MLflow itself resolves for ``uri`` (its entry points included).

    MLflow's client does the same inside; no public call returns the store.
    """
    return _tracking_utils()._get_store(uri)


def registry_store_for(uri: str) -> Any:
    """The model registry store MLflow resolves for ``uri``."""
    return _registry_utils()._get_store(uri)


def forget_store_instances() -> None:
    """Drop MLflow's cached store per URI, as if the process had restarted (tests, tools).

    MLflow keeps one store instance per URI for the life of the process.
    """
    _tracking_utils()._tracking_store_registry._get_store_with_resolved_uri.cache_clear()
    registry = getattr(_registry_utils(), "_model_registry_store_registry", None)
    if registry is not None:
        registry._get_store_with_resolved_uri.cache_clear()


def reset_fluent_state() -> None:
    """Forget the tracking and registry URIs and the active experiment set in this process.

    ``set_tracking_uri`` and ``set_experiment`` keep them in module globals
    (and in os.environ, which the caller restores).
    """
    fluent = importlib.import_module("mlflow.tracking.fluent")
    for module, name in (
        (_tracking_utils(), "_tracking_uri"),
        (_registry_utils(), "_registry_uri"),
        (fluent, "_active_experiment_id"),
    ):
        if hasattr(module, name):
            setattr(module, name, None)


def forget_artifact_repositories() -> None:
    """Drop the artifact repository MLflow keeps per run for the process's life."""
    cache = getattr(_tracking_utils(), "_artifact_repos_cache", None)
    if cache is not None:
        cache.clear()


def reset_server_stores() -> None:
    """Make MLflow's server handlers resolve their stores again from the environment.

    For in-process server tests only (the real path, ``mlflow server`` as a
    subprocess, is tested beside them): the handlers keep the store they
    first resolved in module globals.
    """
    handlers = importlib.import_module("mlflow.server.handlers")
    for name in ("_tracking_store", "_model_registry_store"):
        if hasattr(handlers, name):
            setattr(handlers, name, None)


def dispose_sql_store(store: Any) -> None:
    """Close a SQL store's engine and drop it from MLflow's per-URI engine cache (tests)."""
    store.engine.dispose()
    getattr(type(store), "_engine_map", {}).pop(getattr(store, "db_uri", None), None)


def tracking_service_client() -> type:
    """The client class ``mlflow.set_experiment`` creates experiments through (tests
    force a creation race by gating it)."""
    module = importlib.import_module("mlflow.tracking._tracking_service.client")
    cls: type = module.TrackingServiceClient
    return cls
