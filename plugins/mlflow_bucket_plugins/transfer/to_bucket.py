"""Writing copied experiments, runs, logged models and the registry into a bucket store.

Bulk, not call by call: a chunk of runs (each with its params, tags, every
metric point, inputs and outputs) is one log object of its experiment,
appended directly to the log (docs/format.md), with the chunk's index
entries in one object of the index log before it. One object is atomic, so
a run is in the bucket whole or not at all: what is there is skipped by
the next copy, which makes a copy resumable and a second copy a no-op.

Kept as in the source: run and logged-model ids, experiment names (and
ids, when the bucket's experiments log can give them: see
``BucketDestination.experiment``), timestamps, statuses, lifecycle stages,
metric steps and timestamps, registered model versions' numbers, stages,
aliases and tags. Registers are stamped with the copy's time and writer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow.entities import Experiment, LifecycleStage, Run
from mlflow.entities.logged_model import LoggedModel
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from ..registry.backend import registry_for
from ..tracking import entities
from ..tracking.backend import Backend, backend_for
from ..tracking.fold import DEFAULT_EXPERIMENT_ID, metric_point
from .source import RunRecord

# The most empty log objects written to give a copied experiment its
# source's id (a FileStore's ids are 18-digit random numbers: those are
# renumbered instead).
PAD_LIMIT = 1000
# An entry no fold knows: it fills a number of the experiments log.
PAD_ENTRY = {"op": "import.pad"}

Entry = dict[str, Any]


class BucketDestination:
    """A bucket store as the target of a copy."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.backend: Backend = backend_for(uri)
        self.ts = self.backend.now_ms()
        self.writer = self.backend.writer
        self._indexed: dict[str, str] | None = None
        self._written: set[str] = set()
        self.renumbered: dict[str, str] = {}

    # -- experiments -------------------------------------------------------------

    def experiment(self, exp: Experiment) -> str:
        """The bucket's id of ``exp``: found by name, or created (with its tags)."""
        state = self.backend.experiments_state(fresh=True)
        src_id = str(exp.experiment_id)
        if src_id == DEFAULT_EXPERIMENT_ID:
            eid = DEFAULT_EXPERIMENT_ID
        elif exp.name in state["names"]:
            eid = state["names"][exp.name]
        else:
            eid = self._create(exp)
        if eid != src_id:
            self.renumbered[src_id] = eid
        return eid

    def _create(self, exp: Experiment) -> str:
        src_id = str(exp.experiment_id)
        if src_id.isdigit():
            # An experiment's id is the number of the log object that created
            # it: empty objects before it give it the source's id, if near.
            gap = int(src_id) - 1 - self.backend.experiments.log.tail()
            if 0 < gap <= PAD_LIMIT:
                for _ in range(gap):
                    self.backend.append_experiments([dict(PAD_ENTRY)])
        seq = self.backend.append_experiments(
            [
                {
                    "op": "exp.create",
                    "name": exp.name,
                    "loc": None,
                    "root": self.backend.artifact_root,
                    "tags": dict(exp.tags),
                    "time": exp.creation_time or self.ts,
                }
            ]
        )
        state = self.backend.experiments_state()
        if seq in state["void"]:  # created by someone else a moment ago
            return str(state["names"][exp.name])
        return str(seq)

    def align(self, eid: str, exp: Experiment) -> None:
        """Make the experiment's tags, stage and last update time the source's.

        After every experiment was created: these entries take log numbers,
        which the creates need for their ids.
        """
        doc = self.backend.experiments_state()["exps"][eid]
        entries: list[Entry] = []
        time = exp.last_update_time or self.ts
        if eid == DEFAULT_EXPERIMENT_ID and doc["name"] != exp.name:
            entries.append({"op": "exp.rename", "id": eid, "name": exp.name, "time": time})
        for key, value in exp.tags.items():
            if doc["tags"].get(key) != value:
                entries.append(
                    {"op": "exp.tag", "id": eid, "key": key, "value": value, "time": time}
                )
        if doc["stage"] != exp.lifecycle_stage:
            entries.append(
                {"op": "exp.stage", "id": eid, "stage": exp.lifecycle_stage, "time": time}
            )
        if exp.last_update_time and doc.get("mtime") != exp.last_update_time:
            # Renaming to its own name sets only the last update time.
            entries.append({"op": "exp.rename", "id": eid, "name": exp.name, "time": time})
        if entries:
            self.backend.append_experiments(entries)

    def experiment_location(self, eid: str) -> str:
        doc = self.backend.experiments_state()["exps"][eid]
        return entities.experiment_artifact_location(doc, eid, self.backend.default_artifact_root)

    def run_artifact_uri(self, eid: str, run_id: str) -> str:
        return f"{self.experiment_location(eid)}/{run_id}/artifacts"

    def model_artifact_uri(self, eid: str, model_id: str) -> str:
        return entities.model_artifact_location(self.experiment_location(eid), model_id)

    # -- runs and logged models ----------------------------------------------------

    def present(self, eid: str) -> tuple[set[str], set[str]]:
        """(run ids, logged model ids) the bucket has in experiment ``eid``."""
        with self.backend.experiment_state(eid, fresh=True) as state:
            runs = {r for r, doc in state["runs"].items() if entities.run_exists(doc)}
            models = {m for m, doc in state["models"].items() if "name" in doc}
        return runs, models

    def _index(self) -> dict[str, str]:
        if self._indexed is None:
            view = self.backend.index
            view.refresh(0)
            with view.lock:
                self._indexed = {**view.state["runs"], **view.state["models"]}
        return self._indexed

    def write(self, eid: str, records: list[RunRecord], models: list[LoggedModel]) -> None:
        """One chunk: its index entries, then one log object of the experiment."""
        indexed = self._index()
        index = [
            {"op": "idx.model", "id": m.model_id, "exp": eid}
            for m in models
            if m.model_id not in indexed
        ] + [
            {"op": "idx.run", "id": r.run_id, "exp": eid}
            for r in records
            if r.run_id not in indexed
        ]
        entries: list[Entry] = []
        for model in models:
            entries.extend(self._model_entries(model))
        for record in records:
            entries.extend(self._run_entries(record))
        if not entries:
            return
        if index:
            # First: a run the experiment's log holds is always found.
            self.backend.index.log.append(index)
            for item in index:
                indexed[item["id"]] = eid
        self.backend.experiment_view(eid).log.append(entries)
        self._written.add(eid)

    def _stamp(self, op: str, ident: str) -> Entry:
        return {"op": op, "id": ident, "ts": self.ts, "w": self.writer}

    def _run_entries(self, record: RunRecord) -> list[Entry]:
        run: Run = record.run
        info, data = run.info, run.data
        run_id = record.run_id
        tags = dict(data.tags)
        out = [
            {
                **self._stamp("run.create", run_id),
                "user": info.user_id or "",
                "start": info.start_time,
                "status": info.status,
                "tags": tags,
            }
        ]
        update: Entry = self._stamp("run.update", run_id)
        if info.end_time is not None:
            update["end"] = info.end_time
        if info.run_name and tags.get(MLFLOW_RUN_NAME) != info.run_name:
            update["name"] = info.run_name
        if len(update) > 4:
            out.append(update)
        points: dict[tuple[Any, ...], list[Any]] = {}
        for key, history in record.history.items():
            for m in history:
                point = metric_point(key, m.value, m.timestamp, m.step)
                points.setdefault(tuple(point), point)
        log_entry = self._stamp("run.log", run_id)
        if data.params:
            log_entry["params"] = dict(data.params)
        if points:
            log_entry["metrics"] = list(points.values())
        if len(log_entry) > 4:
            out.append(log_entry)
        inputs = run.inputs
        datasets = [
            {
                "dataset": {
                    "name": d.dataset.name,
                    "digest": d.dataset.digest,
                    "source_type": d.dataset.source_type,
                    "source": d.dataset.source,
                    "schema": d.dataset.schema,
                    "profile": d.dataset.profile,
                },
                "tags": [{"key": t.key, "value": t.value} for t in d.tags],
            }
            for d in (inputs.dataset_inputs if inputs else None) or []
        ]
        model_inputs = [m.model_id for m in (getattr(inputs, "model_inputs", None) or [])]
        if datasets or model_inputs:
            out.append(
                {**self._stamp("run.inputs", run_id), "datasets": datasets, "models": model_inputs}
            )
        outputs = getattr(run, "outputs", None)
        model_outputs = [
            {"model_id": o.model_id, "step": o.step}
            for o in (getattr(outputs, "model_outputs", None) or [])
        ]
        if model_outputs:
            out.append({**self._stamp("run.outputs", run_id), "models": model_outputs})
        if info.lifecycle_stage == LifecycleStage.DELETED:
            # The source's deletion time is not in MLflow's entities: the copy's time.
            out.append({**self._stamp("run.stage", run_id), "stage": "deleted", "time": self.ts})
        return out

    def _model_entries(self, model: LoggedModel) -> list[Entry]:
        ident = model.model_id
        out: list[Entry] = [
            {
                **self._stamp("model.create", ident),
                "name": model.name,
                "run": model.source_run_id,
                "type": model.model_type,
                "time": model.creation_timestamp,
                "params": dict(model.params),
                "tags": dict(model.tags),
            },
            {
                **self._stamp("model.finalize", ident),
                "status": LoggedModelStatus(model.status).name,
                "time": model.last_updated_timestamp,
            },
        ]
        metrics = [
            {
                "point": metric_point(m.key, m.value, m.timestamp, m.step),
                "run_id": m.run_id,
                "dataset_name": m.dataset_name,
                "dataset_digest": m.dataset_digest,
            }
            for m in model.metrics or []
        ]
        if metrics:
            out.append({**self._stamp("model.metrics", ident), "metrics": metrics})
        return out

    # -- the registry ------------------------------------------------------------------

    def registered_names(self) -> set[str]:
        with registry_for(self.uri).state(fresh=True) as state:
            return set(state["names"])

    def write_registered(
        self,
        model: RegisteredModel,
        versions: list[ModelVersion],
        relocate: Callable[[ModelVersion], tuple[str, str]],
    ) -> None:
        """The model, its versions (numbers kept), stages, aliases and tags, in one object.

        ``relocate(version)``: its (source, storage location) in this store.
        """
        name = model.name
        entries: list[Entry] = [
            {
                "op": "rm.create",
                "name": name,
                "desc": model.description,
                "tags": dict(model.tags),
                "time": model.creation_timestamp,
            }
        ]
        by_number = {int(v.version): v for v in versions}
        for number in range(1, max(by_number, default=0) + 1):
            v = by_number.get(number)
            if v is None:
                # A number the source's deleted version took: taken, then freed here too.
                entries.append({"op": "mv.create", "name": name, "source": "", "time": self.ts})
                entries.append(
                    {"op": "mv.delete", "name": name, "version": number, "time": self.ts}
                )
                continue
            source, storage = relocate(v)
            entries.append(
                {
                    "op": "mv.create",
                    "name": name,
                    "source": source,
                    "storage": storage,
                    "run": v.run_id or None,
                    "tags": dict(v.tags),
                    "link": v.run_link or None,
                    "desc": v.description,
                    "model": getattr(v, "model_id", None),
                    "user": v.user_id,
                    "time": v.creation_timestamp,
                }
            )
        for number, v in sorted(by_number.items()):
            if v.current_stage and v.current_stage != "None":
                entries.append(
                    {
                        "op": "mv.stage",
                        "name": name,
                        "version": number,
                        "stage": v.current_stage,
                        "time": v.last_updated_timestamp,
                    }
                )
            entries.append(
                {
                    "op": "mv.update",
                    "name": name,
                    "version": number,
                    "desc": v.description,
                    "time": v.last_updated_timestamp,
                }
            )
        for alias, version in sorted((model.aliases or {}).items()):
            entries.append(
                {"op": "alias.set", "name": name, "alias": alias, "version": int(version)}
            )
        entries.append(
            {
                "op": "rm.update",
                "name": name,
                "desc": model.description,
                "time": model.last_updated_timestamp,
            }
        )
        registry_for(self.uri).view.log.append(entries)

    # -- the end -----------------------------------------------------------------------

    def close(self) -> None:
        """Checkpoint what was written, so that the first reader folds a short tail."""
        for eid in sorted(self._written):
            self.backend.experiment_view(eid).compact(1)
        self.backend.index.compact(1)
        registry_for(self.uri).view.compact(1)
