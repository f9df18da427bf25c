"""The model registry's state, and how log entries change it.

The whole registry is one log (``registry/``, docs/registry.md). Every
registry call appends one entry synchronously, so log order is the order in
which the calls took effect, and it decides everything that MLflow's SQL
store decides with a unique index or a transaction:

- the first ``rm.create`` in log order that claims a name wins; a later one
  is void, and its writer reports RESOURCE_ALREADY_EXISTS;
- a model version's number is one more than the number of versions the
  model's current incarnation was given before it in log order (deleted
  versions count, as in MLflow's stores); the writer learns its number by
  reading the state at its own log number (``vseq``);
- an entry about a model or version that an earlier entry deleted is void
  (RESOURCE_DOES_NOT_EXIST for its writer);
- ``alias.set`` may carry a precondition (``expect``: the version the alias
  must point at, null for none): a compare-and-set, void ("stale") if
  another writer moved the alias first. Its ``tags`` are set only if the
  alias moved, in the same step.

Timestamps are data (what the entities show); no rule depends on them.

States are plain JSON-able dicts. Two parts are indexes derived from the
rest (``runs``: the live versions of each run id; ``vseq``: which version
each log number created): checkpoints leave them out (``dump``) and
``load`` rebuilds them. The fold is deterministic, and applying a log
number at or below the state's ``seq`` again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Entry = dict[str, Any]
State = dict[str, Any]

REGISTRY_LOG = "registry"

STAGE_NONE = "None"
STAGE_ARCHIVED = "Archived"
IS_PROMPT_TAG_KEY = "mlflow.prompt.is_prompt"

# Why an entry was void, as recorded in the state's ``void``.
EXISTS = "exists"
MISSING = "missing"
STALE = "stale"
MALFORMED = "malformed"


def new_registry_state() -> State:
    return {
        "seq": 0,
        # model id (the log number of its rm.create) -> model doc
        "models": {},
        # name -> model id
        "names": {},
        # log number -> why its entry was void
        "void": {},
        # derived: run id -> [[model id, version], ...] of live versions
        "runs": {},
        # derived: log number -> [model id, version] it created (live versions only)
        "vseq": {},
    }


def model_id_for(seq: int, index: int = 0) -> str:
    return str(seq) if index == 0 else f"{seq}.{index}"


def _void(state: State, seq: int, reason: str) -> None:
    state["void"].setdefault(str(seq), reason)


def _index_version(state: State, mid: str, number: int, doc: dict[str, Any]) -> None:
    run = doc.get("run")
    if run:
        refs = state["runs"].setdefault(run, [])
        if [mid, number] not in refs:
            refs.append([mid, number])
    if doc.get("cseq") is not None:
        state["vseq"][str(doc["cseq"])] = [mid, number]


def _unindex_version(state: State, mid: str, number: int, doc: dict[str, Any]) -> None:
    run = doc.get("run")
    refs = state["runs"].get(run) if run else None
    if refs is not None:
        if [mid, number] in refs:
            refs.remove([mid, number])
        if not refs:
            del state["runs"][run]
    if doc.get("cseq") is not None:
        state["vseq"].pop(str(doc["cseq"]), None)


def _note_prompt_tag(model: dict[str, Any], number: int, tags: dict[str, Any]) -> None:
    """Keep ``pv``: versions (deleted ones too) whose tags mark them as a prompt's.

    MLflow's SQL store keeps a deleted version's tags, and excludes from a
    search every version of a model any of whose versions is so marked.
    """
    marked = tags.get(IS_PROMPT_TAG_KEY) == "true"
    pv = model.setdefault("pv", [])
    if marked and number not in pv:
        pv.append(number)
    elif not marked and number in pv:
        pv.remove(number)


def fold_registry(
    state: State,
    seq: int,
    entries: list[Entry],
    on_malformed: Callable[[int, int, str], None] | None = None,
) -> State:
    """Apply one log object's entries.

    An entry of a shape no writer of this format makes (a damaged or
    foreign writer's) is skipped where it fails, void as MALFORMED, and
    reported through ``on_malformed(seq, index, reason)``: every reader
    skips it alike, and the rest of the log is still read.
    """
    if seq <= state.get("seq", 0):
        return state  # already folded: a replay changes nothing
    for index, entry in enumerate(entries):
        try:
            _apply(state, seq, index, entry)
        except (TypeError, KeyError, IndexError, AttributeError, ValueError) as exc:
            _void(state, seq, MALFORMED)
            if on_malformed is not None:
                on_malformed(seq, index, f"{type(exc).__name__}: {exc}")
    state["seq"] = seq
    return state


def _apply(state: State, seq: int, index: int, entry: Entry) -> None:
    op = entry.get("op")
    models = state["models"]
    names = state["names"]
    time = entry.get("time")
    if op == "rm.create":
        name = entry["name"]
        if name in names:
            _void(state, seq, EXISTS)
            return
        mid = model_id_for(seq, index)
        models[mid] = {
            "name": name,
            "ctime": time,
            "mtime": time,
            "desc": entry.get("desc"),
            "tags": dict(entry.get("tags") or {}),
            "aliases": {},
            "versions": {},
            "next": 0,
        }
        names[name] = mid
        return
    mid = names.get(entry.get("name", ""))
    if mid is None:
        _void(state, seq, MISSING)
        return
    model = models[mid]
    if op == "rm.update":
        model["desc"] = entry.get("desc")
        model["mtime"] = time
    elif op == "rm.rename":
        new = entry["new"]
        holder = names.get(new)
        if holder is not None and holder != mid:
            _void(state, seq, EXISTS)
            return
        del names[model["name"]]
        names[new] = mid
        model["name"] = new
        model["mtime"] = time
        for doc in model["versions"].values():
            doc["mtime"] = time
    elif op == "rm.delete":
        for number, doc in model["versions"].items():
            _unindex_version(state, mid, int(number), doc)
        del names[model["name"]]
        del models[mid]
    elif op == "rm.tag":
        model["tags"][entry["key"]] = entry.get("value")
    elif op == "rm.deltag":
        model["tags"].pop(entry["key"], None)
    elif op == "mv.create":
        number = model["next"] + 1
        model["next"] = number
        model["mtime"] = time
        tags = dict(entry.get("tags") or {})
        doc = {
            "ctime": time,
            "mtime": time,
            "desc": entry.get("desc"),
            "user": entry.get("user"),
            "stage": STAGE_NONE,
            "source": entry.get("source"),
            "storage": entry.get("storage"),
            "run": entry.get("run"),
            "link": entry.get("link"),
            "model": entry.get("model"),
            "status": "READY",
            "msg": None,
            "tags": tags,
            "cseq": seq,
        }
        model["versions"][str(number)] = doc
        _note_prompt_tag(model, number, tags)
        _index_version(state, mid, number, doc)
    elif op == "alias.set":
        number = int(entry["version"])
        target = model["versions"].get(str(number))
        if target is None:
            _void(state, seq, MISSING)
            return
        if "expect" in entry and model["aliases"].get(entry["alias"]) != entry["expect"]:
            _void(state, seq, STALE)
            return
        model["aliases"][entry["alias"]] = number
        for version, tags in (entry.get("tags") or {}).items():
            doc = model["versions"].get(str(version))
            if doc is not None:
                doc["tags"].update(tags)
                _note_prompt_tag(model, int(version), doc["tags"])
    elif op == "alias.delete":
        model["aliases"].pop(entry["alias"], None)
    elif op in ("mv.update", "mv.stage", "mv.delete", "mv.tag", "mv.deltag"):
        number = int(entry["version"])
        doc = model["versions"].get(str(number))
        if doc is None:
            _void(state, seq, MISSING)
            return
        if op == "mv.update":
            doc["desc"] = entry.get("desc")
            doc["mtime"] = time
        elif op == "mv.stage":
            stage = entry["stage"]
            if entry.get("archive"):
                for other, odoc in model["versions"].items():
                    if int(other) != number and odoc["stage"] == stage:
                        odoc["stage"] = STAGE_ARCHIVED
                        odoc["mtime"] = time
            doc["stage"] = stage
            doc["mtime"] = time
            model["mtime"] = time
        elif op == "mv.delete":
            model["mtime"] = time
            model["aliases"] = {a: v for a, v in model["aliases"].items() if v != number}
            _unindex_version(state, mid, number, doc)
            del model["versions"][str(number)]
        elif op == "mv.tag":
            if "tags" in entry:  # several at once
                doc["tags"].update(entry["tags"])
            else:
                doc["tags"][entry["key"]] = entry.get("value")
            _note_prompt_tag(model, number, doc["tags"])
        else:
            doc["tags"].pop(entry["key"], None)
            _note_prompt_tag(model, number, doc["tags"])
    # Unknown ops (a later version's) are skipped: readers ignore what they do not know.


# -- checkpoints: the derived indexes stay out ----------------------------------------


def dump_registry(state: State, side: Any = None) -> State:
    """The checkpoint form: the state without its derived indexes."""
    return {key: value for key, value in state.items() if key not in ("runs", "vseq")}


def load_registry(doc: Any) -> State:
    """A state from a checkpoint: its indexes rebuilt."""
    state = new_registry_state()
    state.update(doc)
    state["runs"] = {}
    state["vseq"] = {}
    for mid, model in state["models"].items():
        for number, vdoc in model["versions"].items():
            _index_version(state, mid, int(number), vdoc)
    return state
