"""``verify``: two stores compared entity by entity, as MLflow's client shows them.

Experiments are matched by name, runs and logged models by id, registered
models by name and versions by number. What a store may legitimately
change in a copy is normalized first: artifact URIs (each store keeps
artifacts under its own root, so a version's source is compared relative to
its run's or logged model's artifacts), +/-infinity (MLflow's SQL store
keeps it as +/-max float), NaN (never equal to itself), the default
experiment's timestamps (each store's own creation time), and optional
text that is empty rather than missing (a tracking server's answers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import files
from .source import Point, Source

MAX_FLOAT = 1.7976931348623157e308
# Longest rendering of one value in a difference.
SHOWN = 300

Snapshot = dict[str, dict[str, Any]]


def _value(v: float) -> Any:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v) or abs(v) >= MAX_FLOAT:
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _points(history: list[Point]) -> list[tuple[Any, ...]]:
    return sorted({(m.step, m.timestamp, str(_value(m.value))) for m in history})


def _text(value: str | None) -> str | None:
    # A tracking server's REST answers give "" for an optional string that is None.
    return value or None


def _relative(uri: str | None, roots: list[tuple[str, str]]) -> str | None:
    if not uri:
        return uri
    for root, name in roots:
        if uri == root or uri.startswith(root + "/"):
            return name + uri[len(root) :]
    return uri


def snapshot(
    source: Source,
    *,
    experiments: list[str] | None = None,
    artifacts: bool = True,
    registry: bool = True,
    ids: bool = False,
) -> Snapshot:
    """Everything verify compares, keyed so that two stores' snapshots line up."""
    snap: Snapshot = {"experiment": {}, "run": {}, "logged model": {}, "registered model": {}}
    roots: list[tuple[str, str]] = []
    trees: list[tuple[str, str]] = []
    for exp in source.experiments(experiments):
        eid = str(exp.experiment_id)
        default = eid == "0"
        snap["experiment"][exp.name] = {
            "id": eid if ids else None,
            "stage": exp.lifecycle_stage,
            "tags": dict(exp.tags),
            "created": None if default else exp.creation_time,
            "updated": None if default else exp.last_update_time,
        }
        runs = source.runs(eid)
        for record in source.histories(runs):
            info, data = record.run.info, record.run.data
            inputs = record.run.inputs
            outputs = getattr(record.run, "outputs", None)
            snap["run"][record.run_id] = {
                "experiment": exp.name,
                "name": info.run_name,
                "user": _text(info.user_id),
                "status": info.status,
                "start": info.start_time,
                "end": info.end_time,
                "stage": info.lifecycle_stage,
                "params": dict(data.params),
                "tags": dict(data.tags),
                "metrics": {k: _points(h) for k, h in sorted(record.history.items())},
                "datasets": sorted(
                    (
                        d.dataset.name,
                        d.dataset.digest,
                        d.dataset.source_type,
                        d.dataset.source,
                        d.dataset.schema,
                        d.dataset.profile,
                        sorted((t.key, t.value) for t in d.tags),
                    )
                    for d in (inputs.dataset_inputs if inputs else None) or []
                ),
                "model inputs": sorted(
                    m.model_id for m in (getattr(inputs, "model_inputs", None) or [])
                ),
                "outputs": sorted(
                    (o.model_id, o.step) for o in (getattr(outputs, "model_outputs", None) or [])
                ),
            }
            roots.append((info.artifact_uri.rstrip("/"), f"<run {record.run_id}>"))
            trees.append((f"run {record.run_id}", info.artifact_uri))
        for model in source.logged_models(eid):
            snap["logged model"][model.model_id] = {
                "experiment": exp.name,
                "name": model.name,
                "status": str(model.status),
                "type": _text(model.model_type),
                "source run": _text(model.source_run_id),
                "created": model.creation_timestamp,
                "updated": model.last_updated_timestamp,
                "params": dict(model.params),
                "tags": dict(model.tags),
                "metrics": sorted(
                    (
                        m.key,
                        m.step,
                        m.timestamp,
                        str(_value(m.value)),
                        m.run_id or "",
                        m.dataset_name or "",
                        m.dataset_digest or "",
                    )
                    for m in model.metrics or []
                ),
            }
            roots.append((model.artifact_location.rstrip("/"), f"<model {model.model_id}>"))
            trees.append((f"logged model {model.model_id}", model.artifact_location))
    roots.sort(key=lambda r: len(r[0]), reverse=True)
    if artifacts:
        snap["artifacts"] = dict(_listings(source, trees))
    if registry:
        for registered in source.registered_models():
            versions = {}
            for v in source.versions(registered.name):
                versions[str(v.version)] = {
                    "stage": v.current_stage,
                    "description": _text(v.description),
                    "tags": dict(v.tags),
                    "run": v.run_id or None,
                    "source": _relative(v.source, roots),
                    "user": _text(v.user_id),
                    "link": v.run_link or None,
                    "created": v.creation_timestamp,
                    "updated": v.last_updated_timestamp,
                    "status": v.status,
                }
            snap["registered model"][registered.name] = {
                "description": _text(registered.description),
                "tags": dict(registered.tags),
                # A FileStore gives alias targets as strings, the others as numbers.
                "aliases": {k: str(v) for k, v in sorted((registered.aliases or {}).items())},
                "created": registered.creation_timestamp,
                "updated": registered.last_updated_timestamp,
                "versions": versions,
            }
    return snap


def _listings(source: Source, trees: list[tuple[str, str]]) -> Iterator[tuple[str, Any]]:
    def one(tree: tuple[str, str]) -> tuple[str, Any]:
        return tree[0], files.list_files(files.repository(tree[1], source.uri))

    with ThreadPoolExecutor(files.COPY_THREADS, "mlflow-bucket-list") as pool:
        yield from pool.map(one, trees)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def differences(a: Snapshot, b: Snapshot) -> list[str]:
    """Every difference between two snapshots, one line each."""
    out: list[str] = []
    for kind in sorted(set(a) | set(b)):
        left, right = a.get(kind, {}), b.get(kind, {})
        for key in sorted(set(left) | set(right), key=str):
            if key not in right:
                out.append(f"{kind} {key!r}: only in A")
            elif key not in left:
                out.append(f"{kind} {key!r}: only in B")
            else:
                _diff(f"{kind} {key!r}", left[key], right[key], out.append)
    return out


def _diff(where: str, x: Any, y: Any, report: Callable[[str], None]) -> None:
    if x == y:
        return
    if isinstance(x, dict) and isinstance(y, dict):
        for key in sorted(set(x) | set(y), key=str):
            if key not in y:
                report(f"{where}: {key!r} only in A ({_show(x[key])})")
            elif key not in x:
                report(f"{where}: {key!r} only in B ({_show(y[key])})")
            else:
                _diff(f"{where} {key}", x[key], y[key], report)
        return
    report(f"{where}: A has {_show(x)}, B has {_show(y)}")
