"""A damaged or foreign object costs only itself: a fuzzer over our own on-bucket objects.

A store holding every kind of object (log objects of the experiments log,
the run index, two experiments and the registry; two checkpoints of each,
gc run after them so that only what both cover is deleted; metric-history
side objects; the format marker; a run's artifacts) is damaged in one
object per example: truncated, bytes flipped, replaced by garbage, by
foreign JSON, by an object of another of our formats, or by a valid log
object whose entries have hostile shapes; or a foreign object is added at
a log's next number, further out past its end, under a foreign name, or
under a run's artifacts with a key holding '..'.

Then a new reader (fresh Backend, cold reads) gets every run by id,
searches experiments, runs, metric histories, registered models and
versions, and downloads the run's artifacts, and the stock MLflow server's
search endpoints answer. Every item read back is compared with what was
written minus what the damaged object itself held (decoded from its
original bytes): nothing else may be missing. Nothing raises, every
warning names the damaged object, and an object a cold reader must read
gives a CorruptObjectWarning naming its key. After a foreign object past a
log's end, the next write to that log is seen by a fresh reader. The
marker is the exception by design: a damaged marker refuses the store with
an error naming it (docs/format.md).
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import tempfile
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow_bucket_plugins import artifacts
from mlflow_bucket_plugins.artifacts import BucketArtifactRepository
from mlflow_bucket_plugins.maintenance.logs import all_logs
from mlflow_bucket_plugins.mlflow_compat import reset_server_stores
from mlflow_bucket_plugins.registry.backend import registry_for
from mlflow_bucket_plugins.tracking.backend import backend_for, forget_backends
from reliability_helpers import fresh

from mlflow_bucket.log import Compaction, CorruptObjectWarning, Log, codec
from mlflow_bucket.marker import MARKER_KEY, UnknownFormat
from mlflow_bucket.storage import ObjectStore, memory, open_store

pytestmark = pytest.mark.reliability

BUCKET = "fuzz"
# gc deletes whatever is old enough at once (times are truncated to the second).
NOW = -5.0
ARTIFACTS = {"model/MLmodel": b"flavors: {}\n", "model/data/a.bin": b"a" * 64, "b.txt": b"b"}
FOREIGN_ARTIFACTS = [
    "model/../x.txt",
    "model/data/../../../escape.txt",
    "model/./dot.txt",
    "model//double.txt",
    "../up.txt",
]


# -- what was written, and what a reader finds -------------------------------------------


@dataclass
class Items:
    """What a reader finds (or a writer wrote): every item by its identity."""

    exps: set[str] = field(default_factory=set)
    runs: dict[str, int] = field(default_factory=dict)  # run id -> metric points of "m"
    by_id: set[str] = field(default_factory=set)  # runs found by get_run
    models: set[str] = field(default_factory=set)
    versions: int = 0
    artifacts: dict[str, bytes] = field(default_factory=dict)


def _flush(client: MlflowClient) -> None:
    assert client._tracking_client.store.flush(30)


def _gc_every_log(uri: str) -> int:
    """gc with nothing young, on every log: what two readable checkpoints cover goes."""
    store = open_store(uri)
    deleted = 0
    for spec in all_logs(store):
        deleted += spec.checkpoints(store, None, Compaction(retention=NOW)).gc().log_objects
    return deleted


def _populate(uri: str) -> dict[str, Any]:
    """Every kind of object: two checkpoints of every log with gc run after them,
    and a tail after the newest; artifacts for one run."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    backend = backend_for(uri)
    runs: dict[str, str] = {}
    eids = []

    def run_in(eid: str, name: str) -> str:
        run_id = client.create_run(eid, run_name=name).info.run_id
        client.log_param(run_id, "p", name)
        for step in range(4):
            client.log_metric(run_id, "m", float(step), step=step)
        client.set_terminated(run_id)
        _flush(client)
        runs[run_id] = eid
        return run_id

    for e in range(2):
        eid = client.create_experiment(f"exp{e}")
        eids.append(eid)
        for r in range(4):
            run_in(eid, f"e{e}r{r}")
            if r in (1, 2):  # two checkpoints, then a tail
                backend.experiment_view(eid).compact(1)
    artifact_run = next(iter(runs))
    with tempfile.TemporaryDirectory() as src:
        for rel, data in ARTIFACTS.items():
            Path(src, rel).parent.mkdir(parents=True, exist_ok=True)
            Path(src, rel).write_bytes(data)
        client.log_artifacts(artifact_run, src)
    client.create_registered_model("model")
    for _ in range(2):
        client.create_model_version("model", "s3://x/model", run_id=artifact_run)
    client.set_registered_model_alias("model", "champion", "1")
    registry = registry_for(uri).view
    for view in (backend.experiments, backend.index, registry):
        view.compact(1)
    # Between the checkpoints of the experiments log, the index and the registry.
    mid = client.create_experiment("mid")
    run_in(mid, "mid")
    client.create_model_version("model", "s3://x/model")
    for view in (backend.experiments, backend.index, registry):
        view.compact(1)
    forget_backends()
    deleted = _gc_every_log(uri)
    assert deleted > 0
    # Tails after the newest checkpoints.
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_model_version("model", "s3://x/model")
    after = client.create_experiment("after-checkpoint")
    run_in(eids[0], "tail")
    forget_backends()
    return {
        "runs": runs,
        "eids": [*eids, mid],
        "exps": ["0", *eids, mid, after],
        "artifact_run": artifact_run,
    }


def _read_everything(uri: str, made: dict[str, Any]) -> Items:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = Items()
    # First by id, with nothing loaded: through the run index.
    for run_id in made["runs"]:
        try:
            client.get_run(run_id)
            found.by_id.add(run_id)
        except MlflowException as exc:
            # Its creation, or its index entry, was in the damaged object.
            assert exc.error_code == "RESOURCE_DOES_NOT_EXIST"
    for exp in client.search_experiments(view_type=ViewType.ALL):
        found.exps.add(exp.experiment_id)
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL):
            points = client.get_metric_history(run.info.run_id, "m")
            found.runs[run.info.run_id] = len(points)
    found.models = {m.name for m in client.search_registered_models()}
    found.versions = len(client.search_model_versions("name='model'"))
    listing = [f.path for f in client.list_artifacts(made["artifact_run"], "model")]
    assert not any(p.rsplit("/", 1)[-1] in ("", ".", "..") for p in listing), listing
    with tempfile.TemporaryDirectory() as dst:
        inner = os.path.join(dst, "inner")
        os.mkdir(inner)
        client.download_artifacts(made["artifact_run"], "", inner)
        for path in Path(dst).rglob("*"):
            if path.is_file():
                found.artifacts[path.relative_to(inner).as_posix()] = path.read_bytes()
    return found


# -- what one object holds -----------------------------------------------------------------


def _checkpoint_states(objects: dict[str, bytes]) -> dict[str, Any]:
    """Each log root's newest checkpoint state, decoded."""
    newest: dict[str, tuple[int, Any]] = {}
    for key, data in objects.items():
        root, _, name = key.rpartition("/")
        log_root, _, kind = root.rpartition("/")
        if kind == "ckpt" and int(name) > newest.get(log_root, (0, None))[0]:
            newest[log_root] = (int(name), codec.decode_checkpoint(data, key)[1])
    return {root: state for root, (_, state) in newest.items()}


def _must_be_read(key: str, keys: list[str]) -> bool:
    """Whether a cold reader of everything reads this object: all but log
    objects a checkpoint of their log covers, and checkpoints older than
    the newest."""
    root, _, name = key.rpartition("/")
    log_root, _, kind = root.rpartition("/")
    if kind == "log":
        ckpts = [int(k.rsplit("/", 1)[1]) for k in keys if k.startswith(f"{log_root}/ckpt/")]
        return int(name) > max(ckpts, default=0)
    if kind == "ckpt":
        return key == max(k for k in keys if k.startswith(f"{log_root}/ckpt/"))
    return kind == "side"


def _expected(baseline: Items, key: str, original: bytes, snapshot: dict[str, Any]) -> Items:
    """What a reader must still find when ``key`` is unreadable: everything written
    but what that object itself held (a damaged newest checkpoint holds nothing
    that is not elsewhere: gc kept the log objects after the one before it)."""
    out = copy.deepcopy(baseline)
    keys: list[str] = snapshot["keys"]
    made = snapshot["made"]
    if key not in keys or not _must_be_read(key, keys):
        return out
    root, _, name = key.rpartition("/")
    log_root, _, kind = root.rpartition("/")

    def lose_run(run_id: str) -> None:
        out.runs.pop(run_id, None)
        out.by_id.discard(run_id)

    if kind == "log":
        seq = int(name)
        for entry in codec.decode_batch(original, key)[0]:
            op = entry.get("op")
            if log_root == "tracking/experiments" and op == "exp.create":
                out.exps.discard(str(seq))
                for run_id, eid in made["runs"].items():
                    if eid == str(seq):
                        lose_run(run_id)
            elif log_root == "tracking/index" and op == "idx.run":
                out.by_id.discard(entry["id"])
            elif op == "run.create":
                lose_run(entry["id"])
            elif op == "run.log" and entry["id"] in out.runs:
                out.runs[entry["id"]] -= sum(1 for m in entry.get("metrics", []) if m[0] == "m")
            elif op == "mv.create":
                out.versions -= 1
    elif kind == "side":
        ref = name
        history = codec.decode_side(original, key)
        state = snapshot["states"].get(log_root, {})
        for run_id, doc in state.get("runs", {}).items():
            if doc.get("href") == ref and run_id in out.runs:
                out.runs[run_id] -= len(history.get("m", []))
    return out


def _compare(found: Items, expected: Items, *, lenient: bool) -> list[str]:
    """What the reader lacks (or, unless ``lenient``, has beyond what was written)."""
    problems = []
    for name in ("exps", "by_id", "models"):
        missing = getattr(expected, name) - getattr(found, name)
        if missing:
            problems.append(f"{name} missing: {sorted(missing)}")
    for run_id, points in expected.runs.items():
        got = found.runs.get(run_id)
        if got is None or got < points or (got != points and not lenient):
            problems.append(f"run {run_id}: {got} points, expected {points}")
    if not lenient:
        extra = set(found.runs) - set(expected.runs)
        if extra:
            problems.append(f"runs never written: {sorted(extra)}")
        if found.exps - expected.exps:
            problems.append(f"experiments never written: {sorted(found.exps - expected.exps)}")
    if found.versions < expected.versions or (found.versions != expected.versions and not lenient):
        problems.append(f"{found.versions} versions, expected {expected.versions}")
    if found.artifacts != expected.artifacts:
        problems.append(
            f"artifacts {sorted(found.artifacts)}, expected {sorted(expected.artifacts)}"
        )
    return problems


# -- mutations -------------------------------------------------------------------------------


JSONS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
OPS = [
    "run.create",
    "run.log",
    "run.update",
    "run.delete",
    "exp.create",
    "exp.rename",
    "index",
    "model.create",
    "version.create",
    "alias.set",
]


@st.composite
def hostile_entry(draw: st.DrawFn) -> Any:
    entry = draw(
        st.dictionaries(
            st.sampled_from(
                ["id", "ts", "w", "metrics", "params", "tags", "name", "eid", "version"]
            ),
            JSONS,
            max_size=5,
        )
    )
    if draw(st.booleans()):
        entry["op"] = draw(st.sampled_from(OPS))
    return entry if draw(st.integers(0, 9)) else draw(JSONS)


MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
    st.tuples(st.just("garbage"), st.binary(max_size=64)),
    st.tuples(st.just("foreign json"), JSONS),
    st.tuples(st.just("other format"), st.sampled_from(codec.FORMATS)),
    st.tuples(st.just("hostile entries"), st.lists(hostile_entry(), min_size=1, max_size=4)),
)


def _mutate(data: bytes, mutation: tuple[Any, ...], key: str) -> bytes:
    kind = mutation[0]
    if kind == "truncate":
        return data[: int(len(data) * mutation[1])]
    if kind == "flip":
        i = int(len(data) * mutation[1])
        return data[:i] + bytes([data[i] ^ mutation[2]]) + data[i + 1 :]
    if kind == "garbage":
        return mutation[1]
    if kind == "foreign json":
        return gzip.compress(json.dumps(mutation[1]).encode())
    if kind == "other format":
        return codec.encode(mutation[1], {"entries": [], "seq": 1, "state": {}, "data": {}})
    # A valid log object, hostile inside (the marker gets it as plain JSON).
    return codec.encode_batch(mutation[1], [uuid.uuid4().hex])


def _unchanged(before: bytes, after: bytes) -> bool:
    """A flip in gzip's header (mtime, flags) may leave the document as it was."""
    try:
        return gzip.decompress(before) == gzip.decompress(after)
    except Exception:
        return before == after


def _still_valid(key: str, mutation: tuple[Any, ...], original: bytes, damaged: bytes) -> bool:
    """Whether the damaged object is still a valid document of its kind (so no
    warning is due): the same document, entries that pass the fold's checks,
    an empty log object or history in its own format."""
    return (
        _unchanged(original, damaged)
        or (mutation[0] == "hostile entries" and "/log/" in key)
        or (mutation == ("other format", codec.LOG) and "/log/" in key)
        or (mutation == ("other format", codec.SIDE) and "/side/" in key)
        or (mutation == ("other format", codec.CHECKPOINT) and key.endswith("/ckpt/000000000001"))
    )


# -- the store between examples --------------------------------------------------------------


def _snapshot() -> dict[str, Any]:
    bucket = memory._bucket(BUCKET)
    return {"objects": copy.deepcopy(bucket.objects), "names": list(bucket.names)}


def _restore(snapshot: dict[str, Any]) -> None:
    bucket = memory._bucket(BUCKET)
    with bucket.lock:
        bucket.objects = copy.deepcopy(snapshot["objects"])
        bucket.names = list(snapshot["names"])


def _artifact_repo(uri: str, made: dict[str, Any]) -> BucketArtifactRepository:
    """The artifact run's repository: planted keys go through its own store (a
    memory store lists keys relative to the root of the store that wrote them)."""
    client = MlflowClient(uri)
    return BucketArtifactRepository(client.get_run(made["artifact_run"]).info.artifact_uri)


def _plant(store: ObjectStore, key: str, data: bytes) -> None:
    """Write ``key`` as another tool would: the backend's primitive, which the
    engine's key validation does not guard (our own writes refuse '..')."""
    store._put(key, data, {})


def _write_through(uri: str, where: str, made: dict[str, Any]) -> Any:
    """One more write to the log ``where``, as a user makes it; returns a check
    that a fresh reader sees it."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if where == "registry":
        before = len(client.search_model_versions("name='model'"))
        client.create_model_version("model", "s3://x/after")
        return lambda c: len(c.search_model_versions("name='model'")) == before + 1
    if where == "tracking/experiments":
        eid = client.create_experiment(f"written-after-{uuid.uuid4().hex[:6]}")
        return lambda c: eid in {e.experiment_id for e in c.search_experiments()}
    eid = where.split("/")[2] if where.startswith("tracking/exp/") else made["eids"][0]
    run_id = client.create_run(eid).info.run_id
    client.log_metric(run_id, "m", 1.0, step=0)
    _flush(client)

    def seen(c: MlflowClient) -> bool:
        return (
            c.get_run(run_id).info.experiment_id == eid
            and len(c.get_metric_history(run_id, "m")) == 1
        )

    return seen


def _server_answers(uri: str, eids: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.server import ARTIFACT_ROOT_ENV_VAR, BACKEND_STORE_URI_ENV_VAR, app

    monkeypatch.setenv(BACKEND_STORE_URI_ENV_VAR, uri)
    monkeypatch.setenv(ARTIFACT_ROOT_ENV_VAR, f"{uri}/artifacts")
    reset_server_stores()
    web = app.test_client()
    found = web.post("/ajax-api/2.0/mlflow/runs/search", json={"experiment_ids": eids})
    assert found.status_code == 200, found.data[:500]
    exps = web.post("/ajax-api/2.0/mlflow/experiments/search", json={"max_results": 100})
    assert exps.status_code == 200, exps.data[:500]
    models = web.get("/ajax-api/2.0/mlflow/registered-models/search")
    assert models.status_code == 200, models.data[:500]


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Per example: new spool and cache folders, so a reader is a new process."""

    def make() -> Any:
        state = tempfile.mkdtemp(prefix="fuzz-reader-")
        monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", f"{state}/spool")
        monkeypatch.setenv("MLFLOW_BUCKET_CACHE_DIR", f"{state}/cache")
        fresh()
        getattr(artifacts, "_WARNED", set()).clear()  # foreign artifact keys: once per process

    yield make
    fresh()


def _written(made: dict[str, Any]) -> Items:
    """What _populate wrote, from its own record (not from a read): every run with
    its 4 points, found by id too, one registered model with 4 versions, the files."""
    runs = dict.fromkeys(made["runs"], 4)
    return Items(set(made["exps"]), runs, set(made["runs"]), {"model"}, 4, dict(ARTIFACTS))


@pytest.mark.timeout(3600)  # the soak profile's 1,000 examples
def test_damaged_and_foreign_objects_cost_only_themselves(
    monkeypatch: pytest.MonkeyPatch, fresh_state: Any, profile: Any, record_figures: Any
) -> None:
    memory.reset_memory_buckets()
    uri = f"memory://{BUCKET}/mlflow"
    fresh_state()
    made = _populate(uri)
    repo = _artifact_repo(uri, made)
    fresh_state()
    baseline = _read_everything(uri, made)
    # What was written is what a fresh reader of the sound store finds.
    problems = _compare(baseline, _written(made), lenient=False)
    assert not problems, problems
    snapshot = _snapshot()
    keys = sorted(k for k in snapshot["objects"] if k.startswith("mlflow/"))
    rel = [k[len("mlflow/") :] for k in keys if not k.startswith("mlflow/artifacts/")]
    assert any("/ckpt/" in k for k in rel) and any("/side/" in k for k in rel)
    assert MARKER_KEY in rel and any(k.startswith("registry/log/") for k in rel)
    objects = {k: snapshot["objects"][f"mlflow/{k}"].data for k in rel}
    context = {"keys": rel, "made": made, "states": _checkpoint_states(objects)}
    roots = sorted({k.rsplit("/", 2)[0] for k in rel if "/log/" in k})
    figures: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    targets: Counter[str] = Counter()

    @settings(
        max_examples=profile.examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        target=st.one_of(
            st.sampled_from(rel),
            st.sampled_from(["new log object", "far log object", "foreign name", "artifact key"]),
        ),
        mutation=MUTATIONS,
        where=st.sampled_from(roots),
        far=st.one_of(st.integers(2, 40), st.just(10**9)),
        foreign_artifact=st.sampled_from(FOREIGN_ARTIFACTS),
    )
    def check(
        target: str, mutation: tuple[Any, ...], where: str, far: int, foreign_artifact: str
    ) -> None:
        _restore(snapshot)
        fresh_state()
        figures["examples"] += 1
        kinds[mutation[0]] += 1
        targets[target if " " in target or "/" not in target else target.split("/")[-2]] += 1
        store = open_store(uri)
        gap = target in ("new log object", "far log object")
        if gap:
            numbers = [int(k.rsplit("/", 1)[1]) for k in rel if k.startswith(f"{where}/log/")]
            past = 1 if target == "new log object" else far
            key = f"{where}/log/{max(numbers) + past:012d}"
            original = codec.encode_batch([], [uuid.uuid4().hex])
            damaged, must = _mutate(original, mutation, key), True
        elif target == "foreign name":
            key = f"{where}/log/notes.txt"
            original, damaged, must = b"", _mutate(b"hello", mutation, key), True
        elif target == "artifact key":
            store = repo.store
            key = f"{repo.root}/{foreign_artifact}"
            original, damaged, must = b"", b"planted by another tool", True
        else:
            key = target
            original = objects[key]
            damaged = _mutate(original, mutation, key)
            must = _must_be_read(key, rel) if key != MARKER_KEY else True
        _plant(store, key, damaged)
        url = store.url(key)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                found = _read_everything(uri, made)
            except (UnknownFormat, MlflowException) as exc:
                # The stores refuse a damaged marker (INVALID_STATE), naming it.
                assert key == MARKER_KEY and url in str(exc), exc
                figures["refused (marker)"] += 1
                return
        named = [str(w.message) for w in caught if issubclass(w.category, CorruptObjectWarning)]
        # Every warning names the object (an artifact folder's warning, its folder).
        assert all(
            url in text or (target == "artifact key" and url.rsplit("/", 1)[0] in text)
            for text in named
        ), (key, named)
        valid = key != MARKER_KEY and _still_valid(key, mutation, original, damaged)
        # A foreign object costs nothing; a damaged one what it held, even when
        # what replaced it is valid (an empty batch, an empty history).
        foreign = gap or target in ("foreign name", "artifact key")
        if foreign or key == MARKER_KEY or _unchanged(original, damaged):
            expected = baseline
        else:
            expected = _expected(baseline, key, original, context)
        # Valid entries in the object are writes like any other: they may add items
        # (a checkpoint numbered 1 of another shape is a valid, different state).
        lenient = (mutation[0] == "hostile entries" and ("/log/" in key or gap)) or (
            valid and "/ckpt/" in key
        )
        problems = _compare(found, expected, lenient=lenient)
        assert not problems, (key, mutation[0], problems)
        figures["items lost beyond the damaged object"] += len(problems)
        if key == MARKER_KEY:
            pass  # a marker still readable as a marker: nothing to warn about
        elif named:
            figures["warned"] += 1
        elif valid:
            figures["valid"] += 1
        else:
            assert not must, (key, mutation[0], "read without a warning")
            figures["not read"] += 1
        if target in ("far log object", "new log object"):
            # Writers go on after the log's true end, and a fresh reader sees it.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CorruptObjectWarning)
                seen = _write_through(uri, where, made)
                fresh_state()
                assert seen(MlflowClient(tracking_uri=uri, registry_uri=uri)), (key, "write")
            figures["written after a foreign object"] += 1
        if key != MARKER_KEY:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CorruptObjectWarning)
                _server_answers(uri, made["eids"], monkeypatch)

    check()
    record_figures(
        kind="object fuzzer",
        mutation_kinds=dict(kinds),
        targets=dict(targets),
        **figures,
        crashes=0,
    )


# -- each damage case, from a fresh reader, on memory and the GCS emulator --------------------


@pytest.fixture(params=["memory", "gcs"])
def populated(
    request: pytest.FixtureRequest, fresh_state: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, dict[str, Any], Items]:
    """A populated store (two checkpoints per log, gc run) and what a fresh reader finds."""
    if request.param == "memory":
        memory.reset_memory_buckets()
        uri = f"memory://{BUCKET}/mlflow"
    else:
        gcs = request.getfixturevalue("gcs_bucket")
        for name, value in gcs.env.items():
            monkeypatch.setenv(name, value)
        uri = f"{gcs.url}/mlflow"
    fresh_state()
    made = _populate(uri)
    fresh_state()
    baseline = _read_everything(uri, made)
    problems = _compare(baseline, _written(made), lenient=False)
    assert not problems, problems
    fresh_state()
    return uri, made, baseline


CASES = [
    "foreign object at tail+1",
    "foreign object far out",
    "damaged object far out",
    "damaged newest checkpoint after gc",
    "'..' artifact key",
]


@pytest.mark.parametrize("case", CASES)
def test_each_damage_case_costs_only_itself(
    populated: tuple[str, dict[str, Any], Items],
    case: str,
    fresh_state: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri, made, baseline = populated
    store = open_store(uri)
    eid = made["eids"][0]
    exp_log = Log(store, f"tracking/exp/{eid}", cache=None)
    tail = max(seq for seq, _ in exp_log._listed(exp_log.log_prefix, 0))
    if case == "foreign object at tail+1":
        # No gap: the next batch (valid and empty), read like any, so no warning.
        key = exp_log.key(tail + 1)
        _plant(store, key, codec.encode_batch([], ["foreign"]))
    elif case == "foreign object far out":
        key = exp_log.key(tail + 6)
        _plant(store, key, codec.encode_batch([{"op": "run.purge", "id": "x"}], ["foreign"]))
    elif case == "damaged object far out":
        key = exp_log.key(tail + 10**6)
        _plant(store, key, b"not gzip")
    elif case == "damaged newest checkpoint after gc":
        # gc ran after the second checkpoint of every log: damage the newest of each.
        damaged = 0
        for spec in all_logs(store):
            listed = Log(store, spec.root, cache=None).checkpoints()
            if len(listed) >= 2:
                _plant(store, listed[-1][1].key, b"damaged")
                damaged += 1
        assert damaged >= 5  # the experiments log, the index, 2 experiments, the registry
        key = exp_log.checkpoints()[-1][1].key
    else:
        repo = _artifact_repo(uri, made)
        store, key = repo.store, f"{repo.root}/model/../x.txt"
        _plant(store, key, b"planted")
    fresh_state()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = _read_everything(uri, made)
    named = [str(w.message) for w in caught if issubclass(w.category, CorruptObjectWarning)]
    if case != "foreign object at tail+1":
        assert any(store.url(key) in text for text in named), named
    # Every item written is still there, read back by a fresh reader.
    assert not _compare(found, baseline, lenient=False), _compare(found, baseline, lenient=False)
    # The stock server's pages answer.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptObjectWarning)
        _server_answers(uri, made["eids"], monkeypatch)
    # And the store takes writes to the damaged log, seen by the next reader.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptObjectWarning)
        seen = _write_through(uri, f"tracking/exp/{eid}", made)
        fresh_state()
        assert seen(MlflowClient(tracking_uri=uri, registry_uri=uri))
        fresh_state()
        after = _read_everything(uri, made)
    assert len(after.runs) == len(baseline.runs) + 1
    assert all(after.runs[r] == n for r, n in baseline.runs.items())


def test_an_object_of_a_newer_format_is_an_mlflow_error_naming_it(fresh_state: Any) -> None:
    """Not skipped (a newer release wrote it: nothing is read, upgrade), but an
    MlflowException with MLflow's INVALID_STATE, as for a newer format marker."""
    memory.reset_memory_buckets()
    uri = f"memory://{BUCKET}/mlflow"
    fresh_state()
    client = MlflowClient(uri)
    eid = client.create_experiment("e")
    client.create_run(eid)
    _flush(client)
    fresh_state()
    store = open_store(uri)
    log = Log(store, f"tracking/exp/{eid}", cache=None)
    key = log.key(log.tail() + 1)
    newer = {"format": "mlflow-bucket/log", "version": 99, "entries": [], "batches": []}
    store.put(key, gzip.compress(json.dumps(newer).encode()))
    with pytest.raises(MlflowException, match="version 99") as err:
        MlflowClient(uri).search_runs([eid])
    assert err.value.error_code == "INVALID_STATE" and store.url(key) in str(err.value)


# -- regressions the fuzzer found ---------------------------------------------------------------


def test_a_registry_entry_of_a_hostile_shape_is_skipped_with_a_warning(
    fresh_state: Any,
) -> None:
    """Found by the fuzzer: an entry such as {"op": "rm.create", "name": []}
    made every reader of the registry fail (TypeError in the fold)."""
    memory.reset_memory_buckets()
    uri = f"memory://{BUCKET}/mlflow"
    fresh_state()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("kept")
    store = open_store(uri)
    bad: list[dict[str, Any]] = [
        {"op": "rm.create", "name": []},
        {"op": "mv.create", "name": {"x": 1}},
    ]
    key = "registry/log/000000000002"
    store.create(key, codec.encode_batch(bad, [uuid.uuid4().hex]))
    fresh_state()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with pytest.warns(CorruptObjectWarning, match=store.url(key)):
        assert [m.name for m in client.search_registered_models()] == ["kept"]
    client.create_registered_model("after")  # and the registry takes writes after it
    assert {m.name for m in client.search_registered_models()} == {"kept", "after"}


def test_a_side_object_of_another_shape_is_skipped_with_a_warning(fresh_state: Any) -> None:
    """Found by the fuzzer (also with a list, or a dict of numbers, for a history)."""
    memory.reset_memory_buckets()
    uri = f"memory://{BUCKET}/mlflow"
    fresh_state()
    made = _populate(uri)
    store = open_store(uri)
    sides = sorted(info.key for info in store.list_objects("tracking/exp/") if "/side/" in info.key)
    for key in sides:
        store.put(key, codec.encode_side(None))
    fresh_state()
    client = MlflowClient(uri)
    with pytest.warns(CorruptObjectWarning, match=store.url(sides[0])):
        for run_id in made["runs"]:
            client.get_metric_history(run_id, "m")
