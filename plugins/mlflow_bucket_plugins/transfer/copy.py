"""Copy one store into another: experiments, runs, logged models, artifacts, registry.

The order makes a copy resumable: experiments first (found by name, or
created), then each experiment's runs and logged models in chunks, each
chunk one atomic write, skipping those the destination has; then the
artifacts, file by file where the destination lacks them; then the
registered models the destination does not have, each in one write. Kill
it anywhere and run it again: it finishes the job, and duplicates nothing.

Reading the next chunk from the source overlaps writing the last one.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlflow.entities import Experiment, Run
from mlflow.entities.logged_model import LoggedModel
from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from tqdm import tqdm

from . import files
from .source import RunRecord, Source

# A chunk (one write) holds at most this many runs, or metric points.
CHUNK_RUNS = 200
CHUNK_POINTS = 200_000
# Tests: "N:path": after the N-th chunk is written, create ``path`` and
# hang, for a test to kill the process at a known point.
PAUSE_ENV = "MLFLOW_BUCKET_COPY_PAUSE"


class Destination(Protocol):
    uri: str

    def experiment(self, exp: Experiment) -> str: ...
    def align(self, eid: str, exp: Experiment) -> None: ...
    def present(self, eid: str) -> tuple[set[str], set[str]]: ...
    def write(self, eid: str, records: list[RunRecord], models: list[LoggedModel]) -> None: ...
    def run_artifact_uri(self, eid: str, run_id: str) -> str: ...
    def model_artifact_uri(self, eid: str, model_id: str) -> str: ...
    def registered_names(self) -> set[str]: ...
    def write_registered(
        self,
        model: RegisteredModel,
        versions: list[ModelVersion],
        relocate: Callable[[ModelVersion], tuple[str, str]],
    ) -> None: ...
    def close(self) -> None: ...


@dataclass
class Report:
    experiments: int = 0
    runs: int = 0
    runs_skipped: int = 0
    models: int = 0
    models_skipped: int = 0
    files: int = 0
    registered: int = 0
    registered_skipped: int = 0
    renumbered: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"experiments: {self.experiments}",
            f"runs: {self.runs} copied, {self.runs_skipped} already there",
            f"logged models: {self.models} copied, {self.models_skipped} already there",
            f"artifact files copied: {self.files}",
            f"registered models: {self.registered} copied, {self.registered_skipped} already there",
        ]
        for src, dst in sorted(self.renumbered.items()):
            out.append(f"experiment {src} is {dst} in the destination")
        return out


@dataclass
class _Plan:
    exp: Experiment
    eid: str
    runs: list[Run]
    models: list[LoggedModel]
    todo_runs: list[Run]
    todo_models: list[LoggedModel]


def _chunks(runs: list[Run], size: int = CHUNK_RUNS) -> Iterator[list[Run]]:
    chunk: list[Run] = []
    points = 0
    for run in runs:
        # Latest metrics tell the keys, not the points: a guess of 100 per key.
        weight = 100 * len(run.data.metrics) + 1
        if chunk and (len(chunk) >= size or points + weight > CHUNK_POINTS):
            yield chunk
            chunk, points = [], 0
        chunk.append(run)
        points += weight
    if chunk:
        yield chunk


def _bar(total: int, desc: str, progress: bool | None) -> Any:
    return tqdm(
        total=total,
        desc=desc,
        unit="run" if desc == "runs" else " item",
        disable=not progress if progress is not None else None,
        file=sys.stderr,
        dynamic_ncols=True,
    )


class _Writer:
    """Writes chunks in a thread of its own, one at a time, while the next is read."""

    def __init__(self, dest: Destination, bar: Any) -> None:
        self.dest = dest
        self.bar = bar
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.written = 0
        pause = os.environ.get(PAUSE_ENV, "")
        self.pause_after, _, self.pause_file = pause.partition(":")
        self.thread = threading.Thread(target=self._run, name="mlflow-bucket-copy", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            eid, records, models = item
            try:
                self.dest.write(eid, records, models)
                self.bar.update(len(records))
                self.written += 1
                if self.pause_file and self.written == int(self.pause_after):
                    with open(self.pause_file, "w") as f:
                        f.write(str(self.written))
                    while True:
                        time.sleep(3600)
            except BaseException as exc:
                self.error = exc

    def put(self, eid: str, records: list[RunRecord], models: list[LoggedModel]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((eid, records, models))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def copy_store(
    source: Source,
    dest: Destination,
    *,
    experiments: list[str] | None = None,
    chunk_runs: int = CHUNK_RUNS,
    registry: bool = True,
    artifacts: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> Report:
    report = Report()
    plans: list[_Plan] = []
    exps = source.experiments(experiments)
    # Every experiment is created first, in the source's order of ids: the
    # bucket gives ids in order of creation.
    eids = [dest.experiment(exp) for exp in exps]
    for exp, eid in zip(exps, eids, strict=True):
        dest.align(eid, exp)
    for exp, eid in zip(exps, eids, strict=True):
        runs = source.runs(str(exp.experiment_id))
        models = source.logged_models(str(exp.experiment_id))
        have_runs, have_models = dest.present(eid)
        plans.append(
            _Plan(
                exp,
                eid,
                runs,
                models,
                [r for r in runs if r.info.run_id not in have_runs],
                [m for m in models if m.model_id not in have_models],
            )
        )
        report.experiments += 1
    report.renumbered = dict(getattr(dest, "renumbered", {}))
    total = sum(len(p.runs) for p in plans)
    todo = sum(len(p.todo_runs) for p in plans)
    report.runs, report.runs_skipped = todo, total - todo
    report.models = sum(len(p.todo_models) for p in plans)
    report.models_skipped = sum(len(p.models) for p in plans) - report.models
    log(f"copying {todo} runs ({total - todo} already there) from {source.uri} to {dest.uri}")
    with _bar(total, "runs", progress) as bar:
        bar.update(total - todo)
        writer = _Writer(dest, bar)
        try:
            for plan in plans:
                for chunk in _chunks(plan.todo_runs, chunk_runs):
                    writer.put(plan.eid, list(source.histories(chunk)), [])
            # Logged models after every run: their metrics name runs (of any
            # experiment), which an SQL destination must have first.
            for plan in plans:
                if plan.todo_models:
                    writer.put(plan.eid, [], plan.todo_models)
        finally:
            writer.close()
    if artifacts:
        report.files = _copy_artifacts(source, dest, plans, progress)
    if registry:
        _copy_registry(source, dest, plans, report, progress)
    dest.close()
    return report


def _copy_artifacts(
    source: Source, dest: Destination, plans: list[_Plan], progress: bool | None
) -> int:
    tasks: list[tuple[str, str]] = []
    for plan in plans:
        for run in plan.runs:
            tasks.append((run.info.artifact_uri, dest.run_artifact_uri(plan.eid, run.info.run_id)))
        for model in plan.models:
            tasks.append(
                (model.artifact_location, dest.model_artifact_uri(plan.eid, model.model_id))
            )
    copied = 0
    with (
        _bar(len(tasks), "artifacts", progress) as bar,
        ThreadPoolExecutor(files.COPY_THREADS, "mlflow-bucket-artifacts") as pool,
    ):

        def one(task: tuple[str, str]) -> int:
            return files.copy_tree(task[0], task[1], source.uri, dest.uri)

        for n in pool.map(one, tasks):
            copied += n
            bar.update(1)
    return copied


def _relocator(
    source: Source, dest: Destination, plans: list[_Plan]
) -> Callable[[ModelVersion], tuple[str, str]]:
    """Where a version's source and storage are in the destination."""
    prefixes: list[tuple[str, str]] = []
    runs: dict[str, str] = {}
    models: dict[str, str] = {}
    for plan in plans:
        for run in plan.runs:
            new = dest.run_artifact_uri(plan.eid, run.info.run_id)
            prefixes.append((run.info.artifact_uri.rstrip("/"), new))
            runs[run.info.run_id] = new
        for model in plan.models:
            new = dest.model_artifact_uri(plan.eid, model.model_id)
            prefixes.append((model.artifact_location.rstrip("/"), new))
            models[model.model_id] = new
    # Longest first: a logged model's folder may sit inside its experiment's.
    prefixes.sort(key=lambda p: len(p[0]), reverse=True)

    def moved(uri: str) -> str:
        for old, new in prefixes:
            if uri == old or uri.startswith(old + "/"):
                return new + uri[len(old) :]
        return uri

    def relocate(version: ModelVersion) -> tuple[str, str]:
        src = version.source or ""
        parsed = urllib.parse.urlparse(src)
        storage = moved(src)
        if parsed.scheme == "models" and getattr(version, "model_id", None) in models:
            storage = models[str(version.model_id)]
        elif parsed.scheme == "runs" and parsed.netloc in runs:
            storage = runs[parsed.netloc] + parsed.path
        return moved(src), storage

    return relocate


def _copy_registry(
    source: Source, dest: Destination, plans: list[_Plan], report: Report, progress: bool | None
) -> None:
    models = source.registered_models()
    have = dest.registered_names()
    relocate = _relocator(source, dest, plans)
    with _bar(len(models), "registered models", progress) as bar:
        for model in models:
            if model.name in have:
                report.registered_skipped += 1
            else:
                dest.write_registered(model, source.versions(model.name), relocate)
                report.registered += 1
            bar.update(1)
