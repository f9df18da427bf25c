"""Shape checks of log entries, before they are folded.

A log object that decodes can still hold entries another tool (or a bug)
wrote in the wrong shape: a metric point that is a string, tags that are
a list. Folded, such an entry raises inside the fold on every read, and
the whole experiment becomes unreadable. So each entry is checked first
and a bad one is skipped, with a warning naming its log object, like an
object that does not decode.

The checks are only what the fold and the entity builders dereference
(docs/format.md lists the fields); fields they do not use are not looked
at, and ops they do not know pass (the fold ignores them), so that a
newer writer's additions are never refused here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Entry = dict[str, Any]
Check = Callable[[Entry], str | None]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_map(value: Any, nullable_values: bool = False) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    return all(isinstance(v, str) or (nullable_values and v is None) for v in value.values())


def _point(value: Any) -> bool:
    """[key, value, is_nan, timestamp, step]."""
    return (
        isinstance(value, list)
        and len(value) == 5
        and isinstance(value[0], str)
        and _is_number(value[1])
        and isinstance(value[2], bool)
        and _is_number(value[3])
        and _is_number(value[4])
    )


def _list_of(value: Any, item: Callable[[Any], bool]) -> bool:
    return value is None or (isinstance(value, list) and all(item(v) for v in value))


def _dataset_input(item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("dataset"), dict):
        return False
    ds = item["dataset"]
    if not all(isinstance(ds.get(k), str) for k in ("name", "digest", "source_type", "source")):
        return False
    return _list_of(
        item.get("tags"),
        lambda t: isinstance(t, dict) and isinstance(t.get("key"), str) and "value" in t,
    )


def _model_output(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("model_id"), str) and "step" in item


def _model_metric(item: Any) -> bool:
    return isinstance(item, dict) and _point(item.get("point"))


def _op(entry: Entry) -> str | None:
    op = entry.get("op")
    return op if isinstance(op, str) else None


# Per op: the fields that must be there, and a check of each field present.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "run.stage": ("stage",),
    "run.deltag": ("key",),
    "model.finalize": ("status",),
    "model.deltag": ("key",),
    "model.stage": ("stage",),
}
_FIELDS: dict[str, Callable[[Any], bool]] = {
    "id": lambda v: isinstance(v, str),
    "ts": _is_number,
    "w": lambda v: isinstance(v, str),
    "params": _str_map,
    "tags": lambda v: _str_map(v, nullable_values=True),
    "metrics": lambda v: v is None or isinstance(v, list),
    "key": lambda v: isinstance(v, str),
    "status": lambda v: v is None or isinstance(v, str),
    "stage": lambda v: isinstance(v, str),
    "datasets": lambda v: _list_of(v, _dataset_input),
}


def check_run_entry(entry: Entry) -> str | None:
    """What is wrong with an entry of an experiment's log (None: nothing)."""
    op = _op(entry)
    if op is None:
        return "'op' is not a string"
    if not op.startswith(("run.", "model.")):
        return None
    if not isinstance(entry.get("id"), str):
        return f"{op}: 'id' is not a string"
    for field in _REQUIRED.get(op, ()):
        if field not in entry:
            return f"{op}: no {field!r}"
    for field, ok in _FIELDS.items():
        if field in entry and not ok(entry[field]):
            return f"{op}: bad {field!r}"
    metrics = entry.get("metrics") or []
    if op == "run.log" and not all(_point(p) for p in metrics):
        return f"{op}: a metric point is not [key, value, is_nan, timestamp, step]"
    if op == "model.metrics" and not all(_model_metric(m) for m in metrics):
        return f"{op}: a metric is not {{point: [...], ...}}"
    if op == "run.inputs" and not _list_of(entry.get("models"), lambda m: isinstance(m, str)):
        return f"{op}: bad 'models'"
    if op == "run.outputs" and not _list_of(entry.get("models"), _model_output):
        return f"{op}: bad 'models'"
    return None


def check_experiments_entry(entry: Entry) -> str | None:
    """What is wrong with an entry of the experiments log (None: nothing)."""
    op = _op(entry)
    if op is None:
        return "'op' is not a string"
    if op == "exp.create":
        if not isinstance(entry.get("name"), str):
            return f"{op}: 'name' is not a string"
        if not _str_map(entry.get("tags")):
            return f"{op}: bad 'tags'"
        for field in ("loc", "root"):
            if not isinstance(entry.get(field), str | None):
                return f"{op}: {field!r} is not a string"
        return None
    if not op.startswith("exp."):
        return None
    needs = {
        "exp.rename": ("name",),
        "exp.stage": ("stage",),
        "exp.tag": ("key", "value"),
        "exp.deltag": ("key",),
    }.get(op, ())
    for field in needs:
        if not isinstance(entry.get(field), str):
            return f"{op}: {field!r} is not a string"
    return None


def check_index_entry(entry: Entry) -> str | None:
    """What is wrong with an entry of the index log (None: nothing)."""
    op = _op(entry)
    if op in ("idx.run", "idx.model") and not (
        isinstance(entry.get("id"), str) and isinstance(entry.get("exp"), str)
    ):
        return f"{op}: 'id' or 'exp' is not a string"
    return None
