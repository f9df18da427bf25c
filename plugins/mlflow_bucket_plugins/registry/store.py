"""``BucketRegistryStore``: MLflow's model registry API on the registry log.

Validation, errors, search semantics and page tokens follow MLflow's SQL
registry store (``SqlAlchemyStore``) call for call, with MLflow's own
validators and filter parser, so that the client and the UI see what the
SQL store would give them. Deliberate differences are listed in
docs/registry.md.

Every write is one entry appended synchronously to the registry log; the
log's order decides races (fold.py). Reads come from the registry's
LogView, refreshed at most once per refresh interval, or at once where a
name or version is not found (it may have been created elsewhere a moment
ago).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from mlflow.entities.model_registry import (
    ModelVersion,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelAlias,
    RegisteredModelTag,
)
from mlflow.entities.model_registry.model_version_stages import (
    ALL_STAGES,
    DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS,
    get_canonical_stage,
)
from mlflow.exceptions import MlflowException
from mlflow.prompt.registry_utils import handle_resource_already_exist_error, has_prompt_tag
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    INVALID_STATE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
)
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry import (
    SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT,
    SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD,
    SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT,
    SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD,
)
from mlflow.store.model_registry.abstract_store import AbstractStore
from mlflow.utils.search_utils import SearchModelUtils, SearchModelVersionUtils, SearchUtils

from mlflow_bucket.marker import UnknownFormat

from .. import mlflow_compat as compat
from ..storage_errors import storage_errors_as_mlflow
from .backend import RegistryBackend, registry_for
from .fold import EXISTS, IS_PROMPT_TAG_KEY, MISSING, STALE, State
from .unsupported_calls import fill_registry_unsupported

Doc = dict[str, Any]


class StaleAlias(MlflowException):
    """A conditional alias move lost: the alias no longer points where the caller expected."""

    def __init__(self, message: str) -> None:
        super().__init__(message, INVALID_STATE)


def _version_number(version: Any) -> int:
    """MLflow's check of a version number, and the number (older MLflows return nothing)."""
    compat.validate_model_version(version)
    return int(version)


def _model_not_found(name: str) -> MlflowException:
    return MlflowException(f"Registered Model with name={name} not found", RESOURCE_DOES_NOT_EXIST)


def _version_not_found(name: str, version: Any) -> MlflowException:
    return MlflowException(
        f"Model Version (name={name}, version={version}) not found", RESOURCE_DOES_NOT_EXIST
    )


# -- entities ----------------------------------------------------------------------


def _aliases_of(model: Doc, number: int) -> list[str]:
    return [alias for alias, version in model["aliases"].items() if version == number]


def version_entity(model: Doc, number: int, doc: Doc, with_aliases: bool = True) -> ModelVersion:
    """A ModelVersion as MLflow's SQL store builds it (aliases only where it adds them)."""
    return ModelVersion(
        name=model["name"],
        version=number,  # type: ignore[arg-type]  # an int, as the SQL store gives it
        creation_timestamp=doc["ctime"],
        last_updated_timestamp=doc["mtime"],
        description=doc["desc"],
        user_id=doc["user"],
        current_stage=doc["stage"],
        source=doc["source"],
        run_id=doc["run"],
        status=doc["status"],
        status_message=doc["msg"],
        tags=[ModelVersionTag(k, v) for k, v in doc["tags"].items()],
        run_link=doc["link"],
        aliases=_aliases_of(model, number) if with_aliases else [],
        model_id=doc.get("model"),
    )


def _latest_per_stage(model: Doc) -> dict[str, int]:
    """The highest version in each stage, stages in order of their lowest version."""
    latest: dict[str, int] = {}
    for number in sorted(int(n) for n in model["versions"]):
        latest[model["versions"][str(number)]["stage"]] = number
    return latest


def model_entity(model: Doc) -> RegisteredModel:
    latest = [
        version_entity(model, number, model["versions"][str(number)], with_aliases=False)
        for number in _latest_per_stage(model).values()
    ]
    return RegisteredModel(
        name=model["name"],
        creation_timestamp=model["ctime"],
        last_updated_timestamp=model["mtime"],
        description=model["desc"],
        latest_versions=latest,
        tags=[RegisteredModelTag(k, v) for k, v in model["tags"].items()],
        aliases=[RegisteredModelAlias(a, v) for a, v in model["aliases"].items()],
    )


# -- search: MLflow's parser, the SQL store's rules ------------------------------------


def _is_querying_prompt(parsed: list[dict[str, Any]]) -> bool:
    """As the SQL store: only an explicit `is_prompt = 'true'` clause searches prompts."""
    for clause in parsed:
        if clause["type"] != "tag" or clause["key"] != IS_PROMPT_TAG_KEY:
            continue
        return (clause["comparator"] == "=" and clause["value"].lower() == "true") or (
            clause["comparator"] == "!=" and clause["value"].lower() == "false"
        )
    return False


def _compare(comparator: str, lhs: Any, value: Any) -> bool:
    if lhs is None:
        return False  # SQL: a comparison with NULL (or a missing tag row) never holds
    return bool(SearchUtils.get_comparison_func(comparator)(lhs, value))


Clause = tuple[str, str, str, Any]  # (type, key, comparator, value)


def _model_clauses(parsed: list[dict[str, Any]]) -> list[Clause]:
    out: list[Clause] = []
    for f in parsed:
        kind, key, comparator, value = f["type"], f["key"], f["comparator"], f["value"]
        if kind == "attribute":
            if key != "name":
                raise MlflowException(
                    f"Invalid attribute name: {key}", error_code=INVALID_PARAMETER_VALUE
                )
            if comparator not in ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"):
                raise MlflowException(
                    f"Invalid comparator for attribute: {comparator}",
                    error_code=INVALID_PARAMETER_VALUE,
                )
        elif kind == "tag":
            if comparator not in ("=", "!=", "LIKE", "ILIKE"):
                raise MlflowException.invalid_parameter_value(
                    f"Invalid comparator for tag: {comparator}"
                )
        else:
            raise MlflowException(f"Invalid token type: {kind}", error_code=INVALID_PARAMETER_VALUE)
        out.append((kind, key, comparator, value))
    return out


def _version_clauses(parsed: list[dict[str, Any]]) -> list[Clause]:
    utils = SearchModelVersionUtils
    out: list[Clause] = []
    for f in parsed:
        kind, key, comparator, value = f["type"], f["key"], f["comparator"], f["value"]
        if kind == "attribute":
            if key not in utils.VALID_SEARCH_ATTRIBUTE_KEYS:
                raise MlflowException(
                    f"Invalid attribute name: {key}", error_code=INVALID_PARAMETER_VALUE
                )
            if key in utils.NUMERIC_ATTRIBUTES:
                if comparator not in utils.VALID_NUMERIC_ATTRIBUTE_COMPARATORS:
                    raise MlflowException(
                        f"Invalid comparator for attribute {key}: {comparator}",
                        error_code=INVALID_PARAMETER_VALUE,
                    )
                if isinstance(value, float):
                    raise MlflowException.invalid_parameter_value(
                        f"Invalid value for numeric attribute '{key}': {value!r}"
                    )
                try:
                    value = int(value)
                except (TypeError, ValueError):
                    raise MlflowException.invalid_parameter_value(
                        f"Invalid value for numeric attribute '{key}': {value!r}"
                    ) from None
            elif comparator not in utils.VALID_STRING_ATTRIBUTE_COMPARATORS or (
                comparator in ("IN", "NOT IN") and key not in ("run_id", "name")
            ):
                raise MlflowException(
                    f"Invalid comparator for attribute: {comparator}",
                    error_code=INVALID_PARAMETER_VALUE,
                )
        elif kind == "tag":
            if comparator not in ("=", "!=", "LIKE", "ILIKE"):
                raise MlflowException.invalid_parameter_value(
                    f"Invalid comparator for tag: {comparator}"
                )
        else:
            raise MlflowException(f"Invalid token type: {kind}", error_code=INVALID_PARAMETER_VALUE)
        out.append((kind, key, comparator, value))
    return out


def _without_prompt_clauses(clauses: list[Clause], parsed: list[dict[str, Any]]) -> list[Clause]:
    """Searching models (not prompts), the SQL store drops clauses on the prompt tag."""
    if _is_querying_prompt(parsed):
        return clauses
    return [c for c in clauses if not (c[0] == "tag" and c[1] == IS_PROMPT_TAG_KEY)]


_VERSION_FIELDS = {
    "run_id": "run",
    "source_path": "source",
    "creation_timestamp": "ctime",
    "last_updated_timestamp": "mtime",
}


def _version_value(model: Doc, number: int, doc: Doc, key: str) -> Any:
    if key == "name":
        return model["name"]
    if key == "version_number":
        return number
    return doc.get(_VERSION_FIELDS[key])


def _version_matches(model: Doc, number: int, doc: Doc, clauses: list[Clause]) -> bool:
    for kind, key, comparator, value in clauses:
        lhs = doc["tags"].get(key) if kind == "tag" else _version_value(model, number, doc, key)
        if not _compare(comparator, lhs, value):
            return False
    return True


def _model_matches(model: Doc, clauses: list[Clause]) -> bool:
    for kind, key, comparator, value in clauses:
        lhs = model["tags"].get(key) if kind == "tag" else model["name"]
        if not _compare(comparator, lhs, value):
            return False
    return True


def _model_order(order_by: list[str] | None) -> list[tuple[str, bool]]:
    """(field, ascending) as the SQL store orders registered models; name ASC breaks ties."""
    keys: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for clause in order_by or []:
        token, ascending = SearchUtils.parse_order_by_for_search_registered_models(clause)
        if token == "name":
            field = "name"
        elif token in SearchUtils.VALID_TIMESTAMP_ORDER_BY_KEYS:
            field = "mtime"
        else:  # pragma: no cover - the parser refuses other keys
            raise MlflowException(
                f"Invalid order by key '{token}' specified.Valid keys are "
                f"'{SearchUtils.RECOMMENDED_ORDER_BY_KEYS_REGISTERED_MODELS}'",
                error_code=INVALID_PARAMETER_VALUE,
            )
        if field in seen:
            raise MlflowException(f"`order_by` contains duplicate fields: {order_by}")
        seen.add(field)
        keys.append((field, ascending))
    if "name" not in seen:
        keys.append(("name", True))
    return keys


def _version_order(order_by: list[str]) -> list[tuple[str, bool]]:
    utils = SearchModelVersionUtils
    keys: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for clause in order_by:
        _, key, ascending = utils.parse_order_by_for_search_model_versions(clause)
        if key not in utils.VALID_ORDER_BY_ATTRIBUTE_KEYS:
            raise MlflowException(
                f"Invalid order by key '{key}' specified. Valid keys are "
                f"{utils.VALID_ORDER_BY_ATTRIBUTE_KEYS}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        if key in seen:
            raise MlflowException(f"`order_by` contains duplicate fields: {order_by}")
        seen.add(key)
        keys.append((key, ascending))
    if "name" not in seen:
        keys.append(("name", True))
    if "version_number" not in seen:
        keys.append(("version_number", False))
    return keys


def _sorted(
    items: list[Any], keys: list[tuple[str, bool]], value: Callable[[Any, str], Any]
) -> Any:
    """Stable multi-key sort, each key in its own direction (least significant first)."""
    out = list(items)
    for key, ascending in reversed(keys):
        out.sort(key=lambda item, k=key: value(item, k), reverse=not ascending)  # type: ignore[misc]
    return out


def _page(
    ordered: list[Any], page_token: str | None, max_results: int
) -> tuple[list[Any], str | None]:
    """The SQL store's paging: a token whenever one more item than the page exists."""
    offset = SearchUtils.parse_start_offset_from_page_token(page_token)
    window = ordered[offset : offset + max_results + 1]
    token = None
    if len(window) == max_results + 1:
        token = SearchUtils.create_page_token(offset + max_results)
    return window[:max_results], token


# -- the store -----------------------------------------------------------------------


@storage_errors_as_mlflow
@fill_registry_unsupported
class BucketRegistryStore(AbstractStore):
    """MLflow model registry store whose whole state lives in a bucket."""

    def __init__(self, store_uri: str, tracking_uri: str | None = None) -> None:
        super().__init__(store_uri, tracking_uri)
        self.store_uri = store_uri
        self.tracking_uri = tracking_uri
        _ = self.registry  # a store in a format we cannot read is refused at once

    @property
    def registry(self) -> RegistryBackend:
        # Looked up per call (a dict lookup): MLflow caches store instances
        # for the process, while tests drop Backends between cases.
        try:
            return registry_for(self.store_uri)
        except UnknownFormat as exc:
            raise MlflowException(str(exc), INVALID_STATE) from None

    # -- plumbing ------------------------------------------------------------------

    def _now_ms(self) -> int:
        return self.registry.now_ms()

    def _find(self, pick: Callable[[State], Any]) -> Any:
        """``pick(state)`` on the current state, once more on a fresh one if it gave None.

        ``pick`` runs under the view's lock: it must build what it returns.
        """
        registry = self.registry
        for fresh in (False, True):
            with registry.state(fresh) as state:
                found = pick(state)
            if found is not None:
                return found
        return None

    def _present(self, test: Callable[[State], bool]) -> bool:
        """``test`` on the current state; if False, once more on a fresh one.

        Before skipping the write of a deletion because there is nothing to
        delete: another process may have set it a moment ago.
        """
        return bool(self._find(lambda state: test(state) or None))

    @staticmethod
    def _model_doc(state: State, name: str) -> Doc | None:
        mid = state["names"].get(name)
        return state["models"][mid] if mid is not None else None

    def _require_model(self, name: str) -> None:
        if self._find(lambda s: self._model_doc(s, name)) is None:
            raise _model_not_found(name)

    @staticmethod
    def _version_doc(state: State, name: str, number: int) -> tuple[Doc, Doc] | None:
        model = BucketRegistryStore._model_doc(state, name)
        if model is None:
            return None
        doc = model["versions"].get(str(number))
        return (model, doc) if doc is not None else None

    def _require_version(self, name: str, number: int) -> None:
        if self._find(lambda s: self._version_doc(s, name, number)) is None:
            raise _version_not_found(name, number)

    def _commit(self, entry: dict[str, Any]) -> tuple[int, str | None]:
        """Append ``entry``; (its log number, why it was void or None)."""
        registry = self.registry
        seq = registry.append(entry)
        with registry.view.lock:
            return seq, registry.view.state["void"].get(str(seq))

    def _read_model(self, name: str) -> RegisteredModel:
        found = self._find(lambda s: (m := self._model_doc(s, name)) and model_entity(m))
        if found is None:
            raise _model_not_found(name)
        return found

    def _read_version(self, name: str, number: int) -> ModelVersion:
        def pick(state: State) -> ModelVersion | None:
            found = self._version_doc(state, name, number)
            return version_entity(found[0], number, found[1]) if found else None

        version = self._find(pick)
        if version is None:
            raise _version_not_found(name, number)
        return version

    # -- registered models -----------------------------------------------------------

    def create_registered_model(
        self,
        name: str,
        tags: list[RegisteredModelTag] | None = None,
        description: str | None = None,
        deployment_job_id: str | None = None,
    ) -> RegisteredModel:
        compat.validate_model_name(name)
        for tag in tags or []:
            compat.validate_registered_model_tag(tag.key, tag.value)
        existing = self._find(lambda s: (m := self._model_doc(s, name)) and model_entity(m))
        if existing is None:
            _, void = self._commit(
                {
                    "op": "rm.create",
                    "name": name,
                    "desc": description,
                    "tags": {t.key: t.value for t in tags or []},
                    "time": self._now_ms(),
                }
            )
            if void is None:
                return self._read_model(name)
            # Another writer claimed the name first, in log order.
            existing = self._find(lambda s: (m := self._model_doc(s, name)) and model_entity(m))
        handle_resource_already_exist_error(
            name,
            bool(existing is not None and has_prompt_tag(existing._tags)),
            bool(has_prompt_tag(tags)),
        )
        raise AssertionError("unreachable")  # pragma: no cover

    def update_registered_model(
        self, name: str, description: str | None, deployment_job_id: str | None = None
    ) -> RegisteredModel:
        compat.validate_model_name(name)
        self._require_model(name)
        _, void = self._commit(
            {"op": "rm.update", "name": name, "desc": description, "time": self._now_ms()}
        )
        if void is not None:
            raise _model_not_found(name)
        return self._read_model(name)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        compat.validate_model_renaming(new_name)
        compat.validate_model_name(name)
        self._require_model(name)
        with self.registry.state() as state:
            holder = state["names"].get(new_name)
            taken = holder is not None and holder != state["names"].get(name)
        if not taken:
            _, void = self._commit(
                {"op": "rm.rename", "name": name, "new": new_name, "time": self._now_ms()}
            )
            if void == MISSING:
                raise _model_not_found(name)
            taken = void == EXISTS
        if taken:
            raise MlflowException(
                f"Registered Model (name={new_name}) already exists.", RESOURCE_ALREADY_EXISTS
            )
        return self._read_model(new_name)

    def delete_registered_model(self, name: str) -> None:
        compat.validate_model_name(name)
        self._require_model(name)
        _, void = self._commit({"op": "rm.delete", "name": name, "time": self._now_ms()})
        if void is not None:
            raise _model_not_found(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        compat.validate_model_name(name)
        return self._read_model(name)

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = SEARCH_REGISTERED_MODEL_MAX_RESULTS_DEFAULT,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[RegisteredModel]:
        if max_results > SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD:
            raise MlflowException(
                "Invalid value for request parameter max_results. It must be at most "
                f"{SEARCH_REGISTERED_MODEL_MAX_RESULTS_THRESHOLD}, but got value {max_results}",
                INVALID_PARAMETER_VALUE,
            )
        parsed = SearchModelUtils.parse_search_filter(filter_string)
        keys = _model_order(order_by)
        SearchUtils.parse_start_offset_from_page_token(page_token)
        clauses = _model_clauses(parsed)
        prompts = _is_querying_prompt(parsed)
        clauses = _without_prompt_clauses(clauses, parsed)
        with self.registry.state() as state:
            matching = [
                m
                for m in state["models"].values()
                if (prompts or m["tags"].get(IS_PROMPT_TAG_KEY) != "true")
                and _model_matches(m, clauses)
            ]
            ordered = _sorted(matching, keys, lambda m, k: m[k])
            page, token = _page(ordered, page_token, max_results)
            return PagedList([model_entity(m) for m in page], token)

    def get_latest_versions(self, name: str, stages: list[str] | None = None) -> list[ModelVersion]:
        compat.validate_model_name(name)
        self._require_model(name)
        if not stages:
            expected = {get_canonical_stage(stage) for stage in ALL_STAGES}
        else:
            expected = {get_canonical_stage(stage) for stage in stages}
        with self.registry.state() as state:
            model = self._model_doc(state, name)
            if model is None:
                raise _model_not_found(name)
            return [
                version_entity(model, number, model["versions"][str(number)])
                for stage, number in _latest_per_stage(model).items()
                if stage in expected
            ]

    def set_registered_model_tag(self, name: str, tag: RegisteredModelTag) -> None:
        compat.validate_model_name(name)
        compat.validate_registered_model_tag(tag.key, tag.value)
        self._require_model(name)
        _, void = self._commit(
            {
                "op": "rm.tag",
                "name": name,
                "key": tag.key,
                "value": tag.value,
                "time": self._now_ms(),
            }
        )
        if void is not None:
            raise _model_not_found(name)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        compat.validate_model_name(name)
        compat.validate_tag_name(key)
        self._require_model(name)
        if not self._present(lambda s: (m := self._model_doc(s, name)) is None or key in m["tags"]):
            return  # like the SQL store: deleting a missing tag is not an error
        _, void = self._commit(
            {"op": "rm.deltag", "name": name, "key": key, "time": self._now_ms()}
        )
        if void is not None:
            raise _model_not_found(name)

    # -- model versions ------------------------------------------------------------------

    def _tracking_client(self) -> Any:
        from mlflow.tracking.client import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri) if self.tracking_uri else MlflowClient()

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: list[ModelVersionTag] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        local_model_path: str | None = None,
        model_id: str | None = None,
    ) -> ModelVersion:
        compat.validate_model_name(name)
        for tag in tags or []:
            compat.validate_model_version_tag(tag.key, tag.value)
        storage_location = source
        if urllib.parse.urlparse(source).scheme == "models":
            parsed_uri = compat.parse_model_uri(source)
            try:
                if parsed_uri.model_id is not None:
                    logged = self._tracking_client().get_logged_model(parsed_uri.model_id)
                    storage_location = logged.artifact_location
                    run_id = run_id or logged.source_run_id
                else:
                    storage_location = self.get_model_version_download_uri(
                        str(parsed_uri.name), parsed_uri.version
                    )
            except Exception as e:
                raise MlflowException(
                    f"Unable to fetch model from model URI source artifact location '{source}'."
                    f"Error: {e}"
                ) from e
        if not run_id and model_id:
            run_id = self._tracking_client().get_logged_model(model_id).source_run_id
        self._require_model(name)
        seq, void = self._commit(
            {
                "op": "mv.create",
                "name": name,
                "source": source,
                "storage": storage_location,
                "run": run_id,
                "tags": {t.key: t.value for t in tags or []},
                "link": run_link,
                "desc": description,
                "model": model_id,
                "time": self._now_ms(),
            }
        )
        if void is not None:
            raise _model_not_found(name)
        registry = self.registry
        with registry.view.lock:
            state = registry.view.state
            created = state["vseq"].get(str(seq))
            if created is not None:
                mid, number = created
                model = state["models"][mid]
                return version_entity(model, number, model["versions"][str(number)])
        # Created, then deleted (with its model, say) by another writer before
        # this one could read it back.
        raise MlflowException(
            f"Model Version of {name} created at log number {seq} was deleted concurrently",
            RESOURCE_DOES_NOT_EXIST,
        )

    def _version_write(self, name: str, version: Any, entry: dict[str, Any]) -> tuple[int, int]:
        """Validate, check the version exists, append; (log number, version number)."""
        compat.validate_model_name(name)
        number = _version_number(version)
        self._require_version(name, number)
        seq, void = self._commit({**entry, "name": name, "version": number})
        if void is not None:
            raise _version_not_found(name, number)
        return seq, number

    def update_model_version(
        self, name: str, version: Any, description: str | None = None
    ) -> ModelVersion:
        _, number = self._version_write(
            name, version, {"op": "mv.update", "desc": description, "time": self._now_ms()}
        )
        return self._read_version(name, number)

    def transition_model_version_stage(
        self, name: str, version: Any, stage: str, archive_existing_versions: bool
    ) -> ModelVersion:
        canonical = get_canonical_stage(stage)
        if archive_existing_versions and canonical not in DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS:
            raise MlflowException(
                "Model version transition cannot archive existing model versions "
                f"because '{stage}' is not an Active stage. Valid stages are "
                f"{DEFAULT_STAGES_FOR_GET_LATEST_VERSIONS}"
            )
        _, number = self._version_write(
            name,
            version,
            {
                "op": "mv.stage",
                "stage": canonical,
                "archive": bool(archive_existing_versions),
                "time": self._now_ms(),
            },
        )
        return self._read_version(name, number)

    def delete_model_version(self, name: str, version: Any) -> None:
        number = _version_number(version)
        self._version_write(name, number, {"op": "mv.delete", "time": self._now_ms()})

    def get_model_version(self, name: str, version: Any) -> ModelVersion:
        compat.validate_model_name(name)
        return self._read_version(name, _version_number(version))

    def get_model_version_download_uri(self, name: str, version: Any) -> str:
        compat.validate_model_name(name)
        number = _version_number(version)

        def pick(state: State) -> str | None:
            found = self._version_doc(state, name, number)
            return (found[1]["storage"] or found[1]["source"]) if found else None

        uri = self._find(pick)
        if uri is None:
            raise _version_not_found(name, number)
        return uri

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = SEARCH_MODEL_VERSION_MAX_RESULTS_DEFAULT,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList[ModelVersion]:
        if not isinstance(max_results, int) or max_results < 1:
            raise MlflowException(
                "Invalid value for max_results. It must be a positive integer,"
                f" but got {max_results}",
                INVALID_PARAMETER_VALUE,
            )
        if max_results > SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD:
            raise MlflowException(
                "Invalid value for request parameter max_results. It must be at most "
                f"{SEARCH_MODEL_VERSION_MAX_RESULTS_THRESHOLD}, but got value {max_results}",
                INVALID_PARAMETER_VALUE,
            )
        parsed = SearchModelVersionUtils.parse_search_filter(filter_string)
        clauses = _version_clauses(parsed)
        prompts = _is_querying_prompt(parsed)
        clauses = _without_prompt_clauses(clauses, parsed)
        keys = _version_order(
            order_by or ["last_updated_timestamp DESC", "name ASC", "version_number DESC"]
        )
        SearchUtils.parse_start_offset_from_page_token(page_token)
        with self.registry.state() as state:
            rows = [
                row
                for row in self._version_candidates(state, clauses)
                if (prompts or not row[0].get("pv"))
                and _version_matches(row[0], row[1], row[2], clauses)
            ]
            ordered = _sorted(rows, keys, lambda row, k: _version_value(row[0], row[1], row[2], k))
            page, token = _page(ordered, page_token, max_results)
            return PagedList(
                [version_entity(m, n, d, with_aliases=False) for m, n, d in page], token
            )

    @staticmethod
    def _version_candidates(state: State, clauses: list[Clause]) -> Iterable[tuple[Doc, int, Doc]]:
        """The versions a search must look at: narrowed by an equality on run_id or name.

        The UI searches by run id on every run page: the state's run index
        answers that without looking at every version.
        """
        models = state["models"]
        for kind, key, comparator, value in clauses:
            if kind != "attribute" or comparator not in ("=", "IN"):
                continue
            wanted = [value] if comparator == "=" else list(value)
            if key == "run_id":
                out = []
                for run_id in dict.fromkeys(wanted):
                    for mid, number in state["runs"].get(run_id, []):
                        model = models[mid]
                        out.append((model, number, model["versions"][str(number)]))
                return out
            if key == "name":
                out = []
                for name in dict.fromkeys(wanted):
                    mid = state["names"].get(name)
                    if mid is not None:
                        model = models[mid]
                        out.extend((model, int(n), d) for n, d in model["versions"].items())
                return out
        return [
            (model, int(n), d) for model in models.values() for n, d in model["versions"].items()
        ]

    def set_model_version_tag(self, name: str, version: Any, tag: ModelVersionTag) -> None:
        compat.validate_model_name(name)
        number = _version_number(version)
        compat.validate_model_version_tag(tag.key, tag.value)
        self._version_write(
            name,
            number,
            {"op": "mv.tag", "key": tag.key, "value": tag.value, "time": self._now_ms()},
        )

    def set_model_version_tags(self, name: str, version: Any, tags: dict[str, str]) -> None:
        """Set several tags of a version in one atomic step (one log entry)."""
        compat.validate_model_name(name)
        number = _version_number(version)
        for key, value in tags.items():
            compat.validate_model_version_tag(key, value)
        self._version_write(
            name, number, {"op": "mv.tag", "tags": dict(tags), "time": self._now_ms()}
        )

    def delete_model_version_tag(self, name: str, version: Any, key: str) -> None:
        compat.validate_model_name(name)
        number = _version_number(version)
        compat.validate_tag_name(key)
        self._require_version(name, number)
        if not self._present(
            lambda s: (f := self._version_doc(s, name, number)) is None or key in f[1]["tags"]
        ):
            return  # like the SQL store: deleting a missing tag is not an error
        self._version_write(name, number, {"op": "mv.deltag", "key": key, "time": self._now_ms()})

    # -- aliases ---------------------------------------------------------------------------

    def set_registered_model_alias(self, name: str, alias: str, version: Any) -> None:
        compat.validate_model_name(name)
        compat.validate_alias_name(alias)
        compat.validate_alias_name_reserved(alias)
        self._version_write(
            name, version, {"op": "alias.set", "alias": alias, "time": self._now_ms()}
        )

    def set_registered_model_alias_if(
        self,
        name: str,
        alias: str,
        version: Any,
        expected: int | None,
        tags: dict[int, dict[str, str]] | None = None,
    ) -> None:
        """Point ``alias`` at ``version`` only if it still points at ``expected`` (None: nowhere).

        With ``tags`` (version -> {key: value}) set in the same atomic step,
        only if the alias moves. Raises StaleAlias if another writer moved the
        alias first (in log order); nothing was changed then.
        """
        compat.validate_model_name(name)
        compat.validate_alias_name(alias)
        compat.validate_alias_name_reserved(alias)
        number = _version_number(version)
        for items in (tags or {}).values():
            for key, value in items.items():
                compat.validate_model_version_tag(key, value)
        self._require_version(name, number)
        _, void = self._commit(
            {
                "op": "alias.set",
                "name": name,
                "alias": alias,
                "version": number,
                "expect": expected,
                "tags": {str(v): dict(t) for v, t in (tags or {}).items()},
                "time": self._now_ms(),
            }
        )
        if void == STALE:
            raise StaleAlias(
                f"Alias {alias!r} of {name!r} no longer points at version {expected}: "
                "another writer moved it first"
            )
        if void is not None:
            raise _version_not_found(name, number)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        compat.validate_model_name(name)
        compat.validate_alias_name(alias)
        self._require_model(name)
        if not self._present(
            lambda s: (m := self._model_doc(s, name)) is None or alias in m["aliases"]
        ):
            return  # like the SQL store: deleting a missing alias is not an error
        _, void = self._commit(
            {"op": "alias.delete", "name": name, "alias": alias, "time": self._now_ms()}
        )
        if void is not None:
            raise _model_not_found(name)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        compat.validate_model_name(name)
        compat.validate_alias_name(alias)
        if alias.lower() == compat.ALIAS_LATEST:
            if versions := self.get_latest_versions(name):
                return max(versions, key=lambda mv: int(mv.version))
            raise MlflowException(
                f"Latest version not found for model {name}.", RESOURCE_DOES_NOT_EXIST
            )
        self._require_model(name)

        def pick(state: State) -> ModelVersion | None:
            model = self._model_doc(state, name)
            if model is None or alias not in model["aliases"]:
                return None
            number = model["aliases"][alias]
            return version_entity(model, number, model["versions"][str(number)])

        version = self._find(pick)
        if version is None:
            raise MlflowException(
                f"Registered model alias {alias} not found.", INVALID_PARAMETER_VALUE
            )
        return version

    def alias_holder(self, name: str, alias: str, fresh: bool = True) -> int | None:
        """The version ``alias`` points at now (None: nowhere).

        RESOURCE_DOES_NOT_EXIST if there is no such model.
        """
        with self.registry.state(fresh) as state:
            model = self._model_doc(state, name)
            if model is None:
                raise _model_not_found(name)
            holder: int | None = model["aliases"].get(alias)
            return holder

    # -- MLflow plumbing ----------------------------------------------------------------

    def _await_model_version_creation(self, mv: ModelVersion, await_creation_for: int) -> None:
        """Versions are READY when created: nothing to wait for (as the SQL store)."""
