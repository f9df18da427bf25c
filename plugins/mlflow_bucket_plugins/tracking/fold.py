"""The tracking store's state, and how log entries change it.

Two kinds of log (docs/format.md):

- the experiments log: creates, renames, deletes, restores and tags of
  experiments. These calls are synchronous, so log order is call order and
  decides: the first entry that claims a name wins, later ones are void.
- one log per experiment: everything about its runs and logged models.
  These entries may reach the log late (write-behind spool, crash
  recovery), so registers (status, end time, lifecycle, tags) are
  last-writer-wins by (timestamp, writer id), not by log order; params are
  set-once (the first value in log order stays); metric points are a set.

Every fold here is deterministic and idempotent: applying an entry twice
changes nothing a reader sees. States are plain JSON-able dicts so that
checkpoints can store them.
"""

from __future__ import annotations

from typing import Any

Entry = dict[str, Any]
State = dict[str, Any]
# A last-writer-wins register: [value, timestamp ms, writer id].
Register = list[Any]

DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"
RUN_NAME_TAG = "mlflow.runName"


# -- experiments -------------------------------------------------------------------


def new_experiments_state() -> State:
    return {
        "exps": {
            DEFAULT_EXPERIMENT_ID: {
                "name": DEFAULT_EXPERIMENT_NAME,
                "stage": "active",
                "ctime": None,
                "mtime": None,
                "tags": {},
            }
        },
        "names": {DEFAULT_EXPERIMENT_NAME: DEFAULT_EXPERIMENT_ID},
        # Entries that lost a race, by seq: their writers report the conflict.
        "void": [],
    }


def experiment_id_for(seq: int) -> str:
    """An experiment's id is the log number of the entry that created it."""
    return str(seq)


def fold_experiments(state: State, seq: int, entries: list[Entry]) -> State:
    exps = state["exps"]
    names = state["names"]
    created = False
    for entry in entries:
        op = entry.get("op")
        if op == "exp.create":
            eid = experiment_id_for(seq)
            if created or eid in exps:
                continue  # one create per log object; a replay changes nothing
            created = True
            name = entry["name"]
            if name in names:
                if seq not in state["void"]:
                    state["void"].append(seq)
                continue
            exps[eid] = {
                "name": name,
                "stage": "active",
                "ctime": entry["time"],
                "mtime": entry["time"],
                "tags": dict(entry.get("tags") or {}),
            }
            for field in ("loc", "root"):
                if entry.get(field):
                    exps[eid][field] = entry[field]
            names[name] = eid
            continue
        exp = exps.get(str(entry.get("id")))
        if exp is None:
            continue
        if op == "exp.purge":
            # Permanent deletion (`mlflow gc`): the name is free again; ids never are.
            if names.get(exp["name"]) == entry["id"]:
                del names[exp["name"]]
            del exps[entry["id"]]
            continue
        if op == "exp.rename":
            name = entry["name"]
            # Renaming to its own name changes only last_update_time (as in SQL).
            if names.get(name) != entry["id"]:
                if name in names:
                    if seq not in state["void"]:
                        state["void"].append(seq)
                    continue
                names.pop(exp["name"], None)
                exp["name"] = name
                names[name] = entry["id"]
        elif op == "exp.stage":
            exp["stage"] = entry["stage"]
        elif op == "exp.tag":
            exp["tags"][entry["key"]] = entry["value"]
            continue  # as in MLflow's SQL store, tags leave last_update_time alone
        elif op == "exp.deltag":
            exp["tags"].pop(entry["key"], None)
            continue
        else:
            continue
        if entry.get("time") is not None:
            exp["mtime"] = entry["time"]
    return state


# -- runs and logged models of one experiment -----------------------------------


def new_experiment_state() -> State:
    return {"runs": {}, "models": {}, "conflicts": []}


def _newer(new: Entry, reg: Register | None) -> bool:
    """Whether ``new`` (with ts, w) wins over register ``reg``; ties go to the later entry."""
    if reg is None:
        return True
    return (new.get("ts", 0), new.get("w", "")) >= (reg[1], reg[2])


def _set(doc: dict[str, Any], field: str, entry: Entry, value: Any) -> bool:
    if _newer(entry, doc.get(field)):
        doc[field] = [value, entry.get("ts", 0), entry.get("w", "")]
        return True
    return False


def copy_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a run's or model's doc that folding more entries leaves the
    original untouched by.

    The fold replaces registers and appends to containers, never changes a
    point or a register in place: copying the doc, its dicts and the lists
    they hold is enough, and far cheaper than a deep copy of every point.
    """
    out = dict(doc)
    for field, value in doc.items():
        if isinstance(value, dict):
            out[field] = {k: list(v) if isinstance(v, list) else v for k, v in value.items()}
        elif isinstance(value, list):
            out[field] = list(value)
    return out


def _run(state: State, run_id: str) -> dict[str, Any]:
    runs = state["runs"]
    run = runs.get(run_id)
    if run is None:
        # Entries of a run can arrive before its create (another writer's
        # spool flushed first): the create fills the info in later.
        run = runs[run_id] = {
            "params": {},
            "tags": {},
            "latest": {},
            "hist": {},
            "href": None,
            "inputs": [],
            "outputs": [],
        }
    return run


def metric_point(key: str, value: float, timestamp: int, step: int) -> list[Any]:
    """A metric point as stored: [key, value, is_nan, timestamp, step].

    Values are sanitised as MLflow's SQL store does: NaN is stored as 0
    with is_nan set, +/-inf as +/-max float, so JSON can hold them.
    """
    import math

    if math.isnan(value):
        return [key, 0.0, True, int(timestamp), int(step)]
    if math.isinf(value):
        return [
            key,
            1.7976931348623157e308 if value > 0 else -1.7976931348623157e308,
            False,
            int(timestamp),
            int(step),
        ]
    return [key, float(value), False, int(timestamp), int(step)]


def _latest_key(point: list[Any]) -> tuple[Any, ...]:
    # MLflow's SQL store: the latest value is the greatest (step, timestamp, value).
    return (point[4], point[3], point[1])


def _log_metrics(run: dict[str, Any], points: list[list[Any]]) -> None:
    for point in points:
        key = point[0]
        run["hist"].setdefault(key, []).append(point[1:])
        current = run["latest"].get(key)
        if current is None or _latest_key(point) > _latest_key([key, *current]):
            run["latest"][key] = point[1:]


def fold_experiment(state: State, seq: int, entries: list[Entry]) -> State:
    for entry in entries:
        op = entry.get("op", "")
        if op.startswith("run."):
            _fold_run(state, seq, entry)
        elif op.startswith("model."):
            _fold_model(state, seq, entry)
    return state


def _set_tags(run: dict[str, Any], entry: Entry) -> None:
    for key, value in (entry.get("tags") or {}).items():
        _set(run["tags"], key, entry, value)
        if key == RUN_NAME_TAG:
            # The run's name is a register of its own, as in MLflow's SQL store
            # (a column there): deleting the tag leaves the name.
            _set(run, "name", entry, value)


def _fold_run(state: State, seq: int, entry: Entry) -> None:
    op = entry["op"]
    run_id = entry["id"]
    if op == "run.purge":
        state["runs"].pop(run_id, None)
        return
    run = _run(state, run_id)
    # The last log object that changed the run: readers holding an overlay
    # of their own writes rebuild it when this moves.
    run["seq"] = seq
    if op == "run.create":
        if "user" not in run:  # the first create of a run id stands
            run["user"] = entry.get("user") or ""
            run["start"] = entry.get("start")
            _set(run, "status", entry, entry.get("status") or "RUNNING")
        _set_tags(run, entry)
    elif op == "run.update":
        if "status" in entry:
            _set(run, "status", entry, entry["status"])
        if "end" in entry:
            _set(run, "end", entry, entry["end"])
        if entry.get("name") is not None:
            _set(run["tags"], RUN_NAME_TAG, entry, entry["name"])
            _set(run, "name", entry, entry["name"])
    elif op == "run.stage":
        if _set(run, "stage", entry, entry["stage"]):
            run["dtime"] = entry.get("time") if entry["stage"] == "deleted" else None
    elif op == "run.log":
        params = run["params"]
        for key, value in (entry.get("params") or {}).items():
            if key not in params:
                params[key] = value
            elif params[key] != value:
                # Two writers set a param differently; the first in log
                # order stands and the other is recorded, once.
                conflict = [run_id, key, value, seq]
                if conflict not in state["conflicts"]:
                    state["conflicts"].append(conflict)
        _log_metrics(run, entry.get("metrics") or [])
        _set_tags(run, entry)
    elif op == "run.deltag":
        _set(run["tags"], entry["key"], entry, None)
    elif op == "run.inputs":
        for item in entry.get("datasets") or []:
            # One input per dataset (name, digest), the first: its tags stay (as in SQL).
            ident = (item["dataset"]["name"], item["dataset"]["digest"])
            if not any(
                "dataset" in x and (x["dataset"]["name"], x["dataset"]["digest"]) == ident
                for x in run["inputs"]
            ):
                run["inputs"].append(item)
        for item in entry.get("models") or []:
            ref = {"model_input": item}
            if ref not in run["inputs"]:
                run["inputs"].append(ref)
    elif op == "run.outputs":
        for item in entry.get("models") or []:
            # One output per model, the first (MLflow's SQL store has it unique).
            if all(o["model_id"] != item["model_id"] for o in run["outputs"]):
                run["outputs"].append(item)


def _fold_model(state: State, seq: int, entry: Entry) -> None:
    op = entry["op"]
    models = state["models"]
    model_id = entry["id"]
    if op == "model.purge":
        models.pop(model_id, None)
        return
    model = models.get(model_id)
    if model is None:
        model = models[model_id] = {"tags": {}, "params": {}, "metrics": []}
    model["seq"] = seq
    if op != "model.create" and entry.get("time") is not None:
        # The latest change's time, whatever order the entries arrive in.
        model["mtime"] = max(model.get("mtime") or 0, entry["time"])
    if op == "model.create":
        if "name" not in model:
            for field in ("name", "run", "type", "time", "user"):
                model[field] = entry.get(field)
            _set(model, "status", entry, "PENDING")
            for key, value in (entry.get("params") or {}).items():
                model["params"].setdefault(key, value)
        for key, value in (entry.get("tags") or {}).items():
            _set(model["tags"], key, entry, value)
    elif op == "model.params":
        # Set once: the first value of a key in log order stands (the writer refuses
        # a second one; a race between two writers is decided by the log).
        for key, value in (entry.get("params") or {}).items():
            model["params"].setdefault(key, value)
    elif op == "model.finalize":
        _set(model, "status", entry, entry["status"])
    elif op == "model.tag":
        for key, value in (entry.get("tags") or {}).items():
            _set(model["tags"], key, entry, value)
    elif op == "model.deltag":
        _set(model["tags"], entry["key"], entry, None)
    elif op == "model.stage":
        _set(model, "stage", entry, entry["stage"])
    elif op == "model.metrics":
        dropped = model.get("dropped") or []
        for item in entry.get("metrics") or []:
            if item not in model["metrics"] and item.get("run_id") not in dropped:
                model["metrics"].append(item)
    elif op == "model.droprun":
        # A run purged for good takes its metrics on the model along, including
        # any of its points that reach the log later.
        dropped = model.setdefault("dropped", [])
        if entry["run"] not in dropped:
            dropped.append(entry["run"])
        model["metrics"] = [m for m in model["metrics"] if m.get("run_id") != entry["run"]]


def register_value(reg: Register | None, default: Any = None) -> Any:
    return default if reg is None else reg[0]


def live_tags(tags: dict[str, Register]) -> dict[str, str]:
    """Tag registers without the deleted ones."""
    return {k: reg[0] for k, reg in tags.items() if reg[0] is not None}
