"""A fuzzer over the parser of our own on-bucket objects.

A store holding every kind of object (log objects of the experiments log,
the run index, two experiments and the registry; checkpoints of each;
metric-history side objects; the format marker) is damaged in one object
per example: truncated, bytes flipped, replaced by garbage, by foreign
JSON, by an object of another of our formats, or by a valid log object
whose entries have hostile shapes; or a foreign object is added. Then a
new reader (fresh Backend, cold reads) searches experiments, runs, metric
histories, registered models and versions, and the stock MLflow server's
search endpoints answer: nothing raises, every warning names a damaged
object, and an object a cold reader must read gives a CorruptObjectWarning
naming its key. The marker is the exception by design: a damaged marker
refuses the store with an error naming it (docs/format.md).
"""

from __future__ import annotations

import copy
import gzip
import json
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from mlflow_bucket_plugins.mlflow_compat import reset_server_stores
from mlflow_bucket_plugins.registry.backend import registry_for
from mlflow_bucket_plugins.tracking.backend import backend_for, forget_backends
from reliability_helpers import fresh

from mlflow_bucket.log import CorruptObjectWarning, codec
from mlflow_bucket.marker import MARKER_KEY, UnknownFormat
from mlflow_bucket.storage import memory, open_store

pytestmark = pytest.mark.reliability

BUCKET = "fuzz"


def _populate(uri: str) -> dict[str, Any]:
    """Every kind of object, with checkpoints and a tail after each of them."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    store = client._tracking_client.store
    backend = backend_for(uri)
    runs: dict[str, str] = {}
    eids = []
    for e in range(2):
        eid = client.create_experiment(f"exp{e}")
        eids.append(eid)
        for r in range(3):
            run_id = client.create_run(eid, run_name=f"e{e}r{r}").info.run_id
            client.log_param(run_id, "p", str(r))
            for step in range(4):
                client.log_metric(run_id, "m", float(step), step=step)
            client.set_terminated(run_id)
            assert store.flush(30)  # one log object per run
            runs[run_id] = eid
            if r == 1:
                backend.experiment_view(eid).compact(1)
    client.create_registered_model("model")
    for _ in range(2):
        client.create_model_version("model", "s3://x/model", run_id=next(iter(runs)))
    client.set_registered_model_alias("model", "champion", "1")
    for view in (backend.experiments, backend.index, registry_for(uri).view):
        view.compact(1)
    client.create_model_version("model", "s3://x/model")  # a registry tail
    client.create_experiment("after-checkpoint")  # an experiments-log tail
    eid = eids[0]
    extra = client.create_run(eid, run_name="tail").info.run_id  # an index tail
    runs[extra] = eid
    assert store.flush(30)
    forget_backends()
    return {"runs": runs, "eids": eids}


def _snapshot() -> dict[str, Any]:
    bucket = memory._bucket(BUCKET)
    return {"objects": copy.deepcopy(bucket.objects), "names": list(bucket.names)}


def _restore(snapshot: dict[str, Any]) -> None:
    bucket = memory._bucket(BUCKET)
    with bucket.lock:
        bucket.objects = copy.deepcopy(snapshot["objects"])
        bucket.names = list(snapshot["names"])


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
        ckpts = [k for k in keys if k.startswith(f"{log_root}/ckpt/")]
        return key == max(ckpts)
    return kind == "side"


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
        # (A side object holding something else than a history is the open
        # bug of test_a_side_object_of_another_shape_is_skipped_with_a_warning.)
        return codec.encode(mutation[1], {"entries": [], "seq": 1, "state": {}, "data": {}})
    # A valid log object, hostile inside (the marker gets it as plain JSON).
    return codec.encode_batch(mutation[1], [uuid.uuid4().hex])


def _unchanged(before: bytes, after: bytes) -> bool:
    """A flip in gzip's header (mtime, flags) may leave the document as it was."""
    try:
        return gzip.decompress(before) == gzip.decompress(after)
    except Exception:
        return before == after


def _read_everything(uri: str, made: dict[str, Any]) -> dict[str, int]:
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    # First by id, with nothing loaded: through the run index.
    for run_id in made["runs"]:
        try:
            client.get_run(run_id)
        except MlflowException as exc:
            # Its creation was in the damaged object.
            assert exc.error_code == "RESOURCE_DOES_NOT_EXIST"
    exps = client.search_experiments(view_type=ViewType.ALL)
    runs = histories = 0
    for exp in exps:
        for run in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL):
            runs += 1
            histories += len(client.get_metric_history(run.info.run_id, "m"))
    models = client.search_registered_models()
    versions = client.search_model_versions("name='model'")
    return {"runs": runs, "points": histories, "models": len(models), "versions": len(versions)}


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

    yield make
    fresh()


@pytest.mark.timeout(3600)  # the soak profile's 1,000 examples
def test_damaged_and_foreign_objects_never_crash_a_reader(
    monkeypatch: pytest.MonkeyPatch, fresh_state: Any, profile: Any, record_figures: Any
) -> None:
    memory.reset_memory_buckets()
    uri = f"memory://{BUCKET}/mlflow"
    fresh_state()
    made = _populate(uri)
    snapshot = _snapshot()
    keys = sorted(k for k in snapshot["objects"] if k.startswith("mlflow/"))
    rel = [k[len("mlflow/") :] for k in keys]
    assert any("/ckpt/" in k for k in rel) and any("/side/" in k for k in rel)
    assert MARKER_KEY in rel and any(k.startswith("registry/log/") for k in rel)
    figures = {"examples": 0, "warned": 0, "refused (marker)": 0, "not read": 0, "valid": 0}
    kinds: dict[str, int] = {}

    @settings(
        max_examples=profile.examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        target=st.one_of(st.sampled_from(rel), st.sampled_from(["new log object", "foreign name"])),
        mutation=MUTATIONS,
        where=st.sampled_from(sorted({k.rsplit("/", 2)[0] for k in rel if "/log/" in k})),
    )
    def check(target: str, mutation: tuple[Any, ...], where: str) -> None:
        _restore(snapshot)
        fresh_state()
        figures["examples"] += 1
        kinds[mutation[0]] = kinds.get(mutation[0], 0) + 1
        bucket = memory._bucket(BUCKET)
        store = open_store(uri)
        if target == "new log object":
            numbers = [int(k.rsplit("/", 1)[1]) for k in rel if k.startswith(f"{where}/log/")]
            key = f"{where}/log/{max(numbers) + 1:012d}"
            original = codec.encode_batch([], [uuid.uuid4().hex])
            damaged = _mutate(original, mutation, key)
            must = True
        elif target == "foreign name":
            key = f"{where}/log/notes.txt"
            original, damaged, must = b"", _mutate(b"hello", mutation, key), True
        else:
            key = target
            original = bucket.objects[f"mlflow/{key}"].data
            damaged = _mutate(original, mutation, key)
            must = _must_be_read(key, rel) if key != MARKER_KEY else True
        store.put(key, damaged)
        url = store.url(key)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                _read_everything(uri, made)
            except (UnknownFormat, MlflowException) as exc:
                # The stores refuse a damaged marker (INVALID_STATE), naming it.
                assert key == MARKER_KEY and url in str(exc), exc
                figures["refused (marker)"] += 1
                return
        named = [str(w.message) for w in caught if issubclass(w.category, CorruptObjectWarning)]
        assert all(url in text for text in named), (key, named)
        if key == MARKER_KEY:
            pass  # a marker still readable as a marker: nothing to warn about
        elif named:
            figures["warned"] += 1
        elif (
            _unchanged(original, damaged)
            # Entries that pass the fold's checks are a write like any other.
            or mutation[0] == "hostile entries"
            # An empty log object or history in its own format is valid.
            or (mutation == ("other format", codec.LOG) and "/log/" in key)
            or (mutation == ("other format", codec.SIDE) and "/side/" in key)
        ):
            figures["valid"] += 1
        else:
            assert not must, (key, mutation[0], "read without a warning")
            figures["not read"] += 1
        if key != MARKER_KEY:
            _server_answers(uri, made["eids"], monkeypatch)

    check()
    record_figures(kind="object fuzzer", mutation_kinds=kinds, **figures, crashes=0)


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
    bad = [{"op": "rm.create", "name": []}, {"op": "mv.create", "name": {"x": 1}}]
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
