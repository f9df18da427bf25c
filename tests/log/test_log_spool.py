"""The write-behind spool: durable, batched, never raising for the network, exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from log_helpers import CountingStore, DenyingStore, FlakyStore

from mlflow_bucket.log import CorruptObjectWarning, Log, Spool
from mlflow_bucket.log import spool as spool_module
from mlflow_bucket.log.cache import legacy_store_id, store_id
from mlflow_bucket.log.spool import PAUSE_ENV
from mlflow_bucket.storage import ObjectStore, PermissionDenied, open_store
from mlflow_bucket.testing.pytest_plugin import BucketInfo, s3_bucket_info, unique_bucket_name
from mlflow_bucket.testing.s3_emulator import S3Emulator

LOGS = ["exp/1", "exp/2"]


def _seen(store: ObjectStore) -> Counter[tuple[str, int]]:
    """(writer, i) of every entry in both test logs, with multiplicity."""
    return Counter(
        (e["w"], e["i"])
        for key in LOGS
        for _, entries in Log(store, key, cache=None).read(0)
        for e in entries
    )


def _exactly_once(who: str, n: int) -> Counter[tuple[str, int]]:
    return Counter({(who, i): 1 for i in range(n)})


def _enqueue(spool: Spool, who: str, n: int) -> None:
    for i in range(n):
        spool.enqueue(LOGS[i % 2], [{"w": who, "i": i}])


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _returns_within(seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()``, run aside: a call that never returns fails the test instead of hanging it."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn} still waiting after {seconds} s"
    if errors:
        raise errors[0]
    return result[0]


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def test_enqueue_returns_at_once_and_the_flusher_batches_per_log(
    store: ObjectStore, spool_dir: Path
) -> None:
    counting = CountingStore(store)
    with Spool(spool_dir, counting, flush_interval=3600, cache=None) as spool:
        counting.reset()
        _enqueue(spool, "me", 10)
        assert counting.counts == Counter()  # no request inside enqueue
        assert spool.pending("exp/1") == [{"w": "me", "i": i} for i in (0, 2, 4, 6, 8)]
        assert spool.flush(timeout=60)
        assert spool.pending("exp/1") == []
    # Ten batches, two logs: one append (one object) per log.
    assert [Log(store, k, cache=None).tail() for k in LOGS] == [1, 1]
    assert _seen(store) == _exactly_once("me", 10)
    (record,) = Log(store, "exp/1", cache=None).records(0)
    assert len(record.batches) == 5  # each enqueue's batch id travels in the object


def test_the_flusher_uploads_on_its_own_every_interval(store: ObjectStore, spool_dir: Path) -> None:
    with Spool(spool_dir, store, flush_interval=0.05, cache=None) as spool:
        _enqueue(spool, "me", 4)
        deadline = time.monotonic() + 30
        while _seen(store) != _exactly_once("me", 4):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_large_batch_is_uploaded_without_waiting_for_the_interval(
    store: ObjectStore, spool_dir: Path
) -> None:
    with Spool(spool_dir, store, flush_interval=3600, max_batch_entries=5, cache=None) as spool:
        spool.enqueue("exp/1", [{"w": "me", "i": i} for i in range(5)])
        deadline = time.monotonic() + 30
        while Log(store, "exp/1", cache=None).tail() != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_entries_that_are_not_json_raise_at_the_call(store: ObjectStore, spool_dir: Path) -> None:
    with Spool(spool_dir, store, cache=None) as spool:
        with pytest.raises(ValueError, match="JSON"):
            spool.enqueue("exp/1", [{"x": {1, 2}}])
        assert spool.pending("exp/1") == []


def test_an_unreachable_store_never_raises_and_everything_arrives_later(
    store: ObjectStore, spool_dir: Path
) -> None:
    flaky = FlakyStore(store)
    flaky.down.set()
    with Spool(spool_dir, flaky, flush_interval=0.05, cache=None) as spool:
        _enqueue(spool, "me", 6)
        assert not spool.flush(timeout=1.0)
        # One failed pass retries each log's append up to 8 times, with
        # jittered waits of up to 0.7 s a log: on a loaded machine it can
        # end after the second above.
        _wait_for(lambda: spool._flusher.failures > 0)
        assert flaky.refused > 0
        flaky.down.clear()
        assert spool.flush(timeout=60)
    assert _seen(store) == _exactly_once("me", 6)


def test_a_flush_wakes_the_flusher_from_its_backoff(
    store: ObjectStore, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed pass the flusher sleeps up to a minute; a flush() does not wait that out."""
    monkeypatch.setattr(spool_module, "random", SimpleNamespace(uniform=lambda a, b: 100.0))
    flaky = FlakyStore(store)
    flaky.down.set()
    with Spool(spool_dir, flaky, flush_interval=3600, cache=None) as spool:
        _enqueue(spool, "me", 2)
        assert not spool.flush(timeout=0.1)  # wakes the flusher, whose pass fails
        _wait_for(lambda: spool._flusher.failures > 0)  # now it sleeps 50 s
        flaky.down.clear()
        assert spool.flush(timeout=20)
    assert _seen(store) == _exactly_once("me", 2)


def test_a_batch_that_cannot_be_uploaded_holds_up_neither_flush_nor_close(
    store: ObjectStore, spool_dir: Path
) -> None:
    """Without a timeout they wait out an unreachable store, not a refusal (a 403).

    They return False instead; the batches stay queued for a later attempt.
    """
    denied = DenyingStore(store)
    spool = Spool(spool_dir, denied, flush_interval=0.05, cache=None)
    _enqueue(spool, "me", 4)
    assert _returns_within(60, spool.flush) is False
    assert isinstance(spool.last_error, PermissionDenied)
    assert _returns_within(60, spool.close) is False
    assert _seen(store) == Counter()
    with Spool(spool_dir, store, cache=None) as second:
        assert second.flush(timeout=60)
    assert _seen(store) == _exactly_once("me", 4)


def test_an_exception_leaving_the_block_is_not_held_up_by_an_unreachable_store(
    store: ObjectStore, spool_dir: Path
) -> None:
    """Closing on an exception waits ``exit_timeout`` at most, like at exit; a failed
    assertion inside the block used to hang the test run here."""
    flaky = FlakyStore(store)
    flaky.down.set()

    def failing_block() -> None:
        with Spool(spool_dir, flaky, flush_interval=0.05, exit_timeout=0.5, cache=None) as spool:
            _enqueue(spool, "me", 3)
            raise KeyError("the training step failed")

    with pytest.raises(KeyError, match="training step"):
        _returns_within(60, failing_block)
    # Still queued on disk, for the next process on this store.
    assert len(list(spool_dir.glob("*/0*.json"))) == 3


def test_sync_mode_appends_inside_the_call(store: ObjectStore, spool_dir: Path) -> None:
    flaky = FlakyStore(store)
    with Spool(spool_dir, flaky, sync=True, cache=None) as spool:
        spool.enqueue("exp/1", [{"w": "me", "i": 0}])
        assert Log(store, "exp/1", cache=None).tail() == 1
        flaky.down.set()
        with pytest.raises(Exception, match="unreachable"):
            spool.enqueue("exp/1", [{"w": "me", "i": 1}])
        flaky.down.clear()


def test_what_a_closed_spool_could_not_upload_goes_with_the_next_one(
    store: ObjectStore, spool_dir: Path
) -> None:
    flaky = FlakyStore(store)
    flaky.down.set()
    first = Spool(spool_dir, flaky, flush_interval=0.05, cache=None)
    _enqueue(first, "me", 5)
    assert first.close(timeout=0.3) is False
    assert _seen(store) == Counter()
    with Spool(spool_dir, store, cache=None) as second:
        assert second.flush(timeout=60)
    assert _seen(store) == _exactly_once("me", 5)
    assert list(spool_dir.iterdir()) == []  # both process folders are gone


def test_a_live_spool_is_never_taken_over(store: ObjectStore, spool_dir: Path) -> None:
    with Spool(spool_dir, store, flush_interval=3600, cache=None) as alive:
        _enqueue(alive, "alive", 3)
        with Spool(spool_dir, store, cache=None) as other:
            assert other.flush(timeout=60)
            assert _seen(store) == Counter()
        assert alive.flush(timeout=60)
    assert _seen(store) == _exactly_once("alive", 3)


# -- crashes, for real: a child process killed with SIGKILL -------------------------------

_CHILD = """
import json, sys, time
from mlflow_bucket.log import Spool
from mlflow_bucket.storage import open_store

uri, options, spool_dir, n, interval, then = json.loads(sys.argv[1])
store = open_store(uri, **options)
spool = Spool(spool_dir, store, flush_interval=interval, cache=None)
for i in range(n):
    spool.enqueue(["exp/1", "exp/2"][i % 2], [{"w": "child", "i": i}])
print("enqueued", flush=True)
if then == "hang":
    time.sleep(600)
"""


def _child(
    store_target: tuple[str, dict[str, Any], Any],
    spool_dir: Path | None,
    n: int,
    *,
    interval: float = 3600,
    then: str = "hang",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    uri, options, _ = store_target
    if uri.startswith("memory://"):
        pytest.skip("a memory store lives in one process")
    # No spool folder: the store's own under $MLFLOW_BUCKET_SPOOL_DIR.
    folder = None if spool_dir is None else str(spool_dir)
    args = json.dumps([uri, options, folder, n, interval, then])
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_a_spool_killed_right_after_enqueue_is_uploaded_once_by_the_next_process(
    store_target: tuple[str, dict[str, Any], Any], store: ObjectStore, spool_dir: Path
) -> None:
    child = _child(store_target, spool_dir, 7)
    assert child.stdout is not None and child.stdout.readline().strip() == "enqueued"
    _kill(child)
    assert _seen(store) == Counter()
    with Spool(spool_dir, store, cache=None) as recovering:
        assert recovering.flush(timeout=60)
    assert _seen(store) == _exactly_once("child", 7)
    assert list(spool_dir.iterdir()) == []


def test_a_spool_killed_between_append_and_cleanup_is_not_uploaded_twice(
    store_target: tuple[str, dict[str, Any], Any],
    store: ObjectStore,
    spool_dir: Path,
    tmp_path: Path,
) -> None:
    paused = tmp_path / "paused"
    # The child's flusher appends, writes the log number to `paused` and hangs
    # before deleting its spool files: the worst moment to die.
    child = _child(store_target, spool_dir, 1, interval=0.05, env={PAUSE_ENV: str(paused)})
    deadline = time.monotonic() + 60
    while not paused.exists():
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    _kill(child)
    assert _seen(store) == _exactly_once("child", 1)
    (proc_dir,) = spool_dir.iterdir()
    assert any(p.name.startswith("inflight-") for p in proc_dir.iterdir())

    counting = CountingStore(store)
    with Spool(spool_dir, counting, cache=None) as recovering:
        assert recovering.flush(timeout=60)
    assert counting.counts["create"] == 0  # found its batch id in the log: no second append
    assert _seen(store) == _exactly_once("child", 1)
    assert Log(store, "exp/1", cache=None).tail() == 1
    assert list(spool_dir.iterdir()) == []


def test_two_processes_recovering_one_dead_spool_upload_it_once(
    store_target: tuple[str, dict[str, Any], Any], store: ObjectStore, spool_dir: Path
) -> None:
    child = _child(store_target, spool_dir, 6)
    assert child.stdout is not None and child.stdout.readline().strip() == "enqueued"
    _kill(child)
    start = threading.Barrier(2)
    spools: list[Spool] = []

    def recover() -> None:
        start.wait()
        spool = Spool(spool_dir, store, cache=None)
        spools.append(spool)
        assert spool.flush(timeout=60)

    threads = [threading.Thread(target=recover) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for spool in spools:
        spool.close()
    assert _seen(store) == _exactly_once("child", 6)


def test_a_clean_exit_flushes_the_spool(
    store_target: tuple[str, dict[str, Any], Any], store: ObjectStore, spool_dir: Path
) -> None:
    child = _child(store_target, spool_dir, 4, then="exit")
    assert child.wait(timeout=120) == 0
    assert _seen(store) == _exactly_once("child", 4)
    assert list(spool_dir.iterdir()) == []


def test_a_dead_spool_whose_log_was_compacted_since_is_uploaded_with_a_warning(
    store: ObjectStore, spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past gc's retention window the log cannot say whether an attempt landed.

    The batch goes again (replay is idempotent by design), and says so.
    """
    log = Log(store, "exp/1", cache=None)
    for i in range(3):
        log.append([{"w": "other", "i": i}])
    store.put(log.checkpoint_key(2), b"(not read)")
    store.delete(log.key(1))
    store.delete(log.key(2))  # as gc does once a checkpoint covers them
    dead = spool_dir / "host-1-deadbeef"
    dead.mkdir(parents=True)
    (dead / "lock").touch()
    batch = "0" * 32
    name = f"{1:012d}-{batch}.json"
    item = {"version": 1, "log": "exp/1", "batch": batch, "after": 0, "entries": [{"w": "d"}]}
    (dead / name).write_text(json.dumps(item))
    marker = {"version": 1, "log": "exp/1", "after": 0, "batches": [batch], "files": [name]}
    (dead / "inflight-1.json").write_text(json.dumps(marker))
    with caplog.at_level("WARNING"), Spool(spool_dir, store, cache=None) as spool:
        assert spool.flush(timeout=60)
    assert "cannot tell whether spooled batch(es)" in caplog.text
    assert list(log.read(3)) == [(4, [{"w": "d"}])]
    assert list(spool_dir.iterdir()) == []


# -- a spool is replayed into its own store only ------------------------------------------

BATCH = "0" * 32


def _dead_folder(
    parent: Path, *, identity: str | None = None, store_file: bytes | None = None
) -> Path:
    """A process folder as a killed writer leaves it: a lock nobody holds, one batch of
    one entry for exp/1, and a store file naming ``identity`` (none: an earlier
    version's folder; ``store_file``: these bytes instead)."""
    dead = parent / "host-1-deadbeef"
    dead.mkdir(parents=True)
    (dead / "lock").touch()
    if identity is not None:
        store_file = json.dumps({"version": 1, "identity": identity}).encode()
    if store_file is not None:
        (dead / "store.json").write_bytes(store_file)
    item = {"version": 1, "log": "exp/1", "batch": BATCH, "after": 0, "entries": [{"w": "d"}]}
    (dead / f"{1:012d}-{BATCH}.json").write_text(json.dumps(item))
    return dead


def _batch_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("0*.json"))


@pytest.fixture(scope="module")
def twin_s3() -> Iterator[S3Emulator]:
    """A second S3 service: another moto server, on another port."""
    with S3Emulator() as emulator:
        yield emulator


@pytest.mark.emulator
@pytest.mark.parametrize("named_by", ["option", "variable"])
def test_a_spool_left_on_one_endpoint_is_replayed_there_and_never_on_another(
    s3_emulator: S3Emulator,
    twin_s3: S3Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    named_by: str,
) -> None:
    """``s3://<bucket>/team`` on two S3 services (two emulators, one bucket name): a
    writer killed on A leaves its spool; the next process that opens the URI on B
    leaves it alone, and the next one on A uploads it, exactly once.

    The endpoint is named by the ``endpoint_url`` storage option, or by
    ``AWS_ENDPOINT_URL`` (which botocore reads) with no option at all.
    """
    bucket = unique_bucket_name("twin")
    s3_emulator.create_bucket(bucket)
    twin_s3.create_bucket(bucket)
    uri = f"s3://{bucket}/team"
    a = s3_bucket_info(bucket, s3_emulator.endpoint)
    b = s3_bucket_info(bucket, twin_s3.endpoint)
    spool_root = tmp_path / "spool"
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(spool_root))

    def target(side: BucketInfo) -> tuple[str, dict[str, Any], BucketInfo]:
        options = dict(side.storage_options)
        if named_by == "variable":
            del options["endpoint_url"]
            monkeypatch.setenv("AWS_ENDPOINT_URL", side.endpoint)
        return uri, options, side

    def open_side(side: BucketInfo) -> ObjectStore:
        _, options, _ = target(side)
        return open_store(uri, **options)

    child = _child(target(a), None, 7)
    assert child.stdout is not None and child.stdout.readline().strip() == "enqueued"
    _kill(child)
    left = _batch_files(spool_root)
    assert len(left) == 7

    # The next process on B: nothing of A's reaches B, and A's spool stays.
    with open_side(b) as on_b:
        with Spool(None, on_b, cache=None) as spool:
            assert spool.flush(timeout=60)
        assert _seen(on_b) == Counter()
        assert on_b.identity == f"{uri} at {b.endpoint}"
    assert _batch_files(spool_root) == left
    # The writer's folder says which store it was made for.
    (store_file,) = spool_root.glob("*/*/store.json")
    assert json.loads(store_file.read_text())["identity"] == f"{uri} at {a.endpoint}"

    # The next process on A uploads it.
    with open_side(a) as on_a:
        with Spool(None, on_a, cache=None) as spool:
            assert spool.flush(timeout=60)
        assert _seen(on_a) == _exactly_once("child", 7)
    assert _batch_files(spool_root) == []
    assert list((spool_root / store_id(on_a)).iterdir()) == []


def test_a_folder_recorded_for_another_store_is_never_replayed(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Defence in depth: a process folder in this store's spool whose store file names
    another store (a hash collision, a folder moved by hand), or cannot be read, is
    left alone with a warning naming it."""
    store = open_store(f"memory://spool-{uuid.uuid4().hex[:8]}/team")
    other = _dead_folder(spool_dir / "a", identity=f"{store.uri} at http://elsewhere:9000")
    damaged = _dead_folder(spool_dir / "b", store_file=b"{not json")
    for folder, reason in [
        (other, f"it belongs to {store.uri} at http://elsewhere:9000"),
        (damaged, "its store.json is damaged"),
    ]:
        caplog.clear()
        with caplog.at_level("WARNING"), Spool(folder.parent, store, cache=None) as spool:
            assert spool.flush(timeout=60)
        assert f"spool folder {folder} is not replayed into {store.uri}: {reason}" in caplog.text
        assert Log(store, "exp/1", cache=None).tail() == 0
        assert _batch_files(folder) == [f"{1:012d}-{BATCH}.json"]

    # The same folder recorded for this store is replayed.
    (damaged / "store.json").write_text(json.dumps({"version": 1, "identity": store.uri}))
    with Spool(damaged.parent, store, cache=None) as spool:
        assert spool.flush(timeout=60)
    assert list(Log(store, "exp/1", cache=None).read(0)) == [(1, [{"w": "d"}])]
    assert list(damaged.parent.iterdir()) == []


@pytest.mark.emulator
def test_an_earlier_versions_folder_is_replayed_on_the_default_endpoint_only(
    s3_bucket: BucketInfo,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the endpoint was recorded, a store's spool was named by its URI alone, the
    name the store on the default endpoint keeps: such a folder is replayed there (the
    memory store here, whose identity is its URI) and not by a store on another endpoint,
    which warns naming it; moved into that store's own folder, it is replayed there."""
    root = tmp_path / "spool"
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(root))
    default = open_store(f"memory://spool-{uuid.uuid4().hex[:8]}/team")
    assert store_id(default) == legacy_store_id(default)
    _dead_folder(root / store_id(default))
    with Spool(root / store_id(default), default, cache=None) as spool:
        assert spool.flush(timeout=60)
    assert list(Log(default, "exp/1", cache=None).read(0)) == [(1, [{"w": "d"}])]

    uri = f"s3://{s3_bucket.bucket}/team"
    with open_store(uri, **s3_bucket.storage_options) as elsewhere:
        old = _dead_folder(root / legacy_store_id(elsewhere))
        own = root / store_id(elsewhere)
        with caplog.at_level("WARNING"), Spool(None, elsewhere, cache=None) as spool:
            assert spool.base == own
            assert spool.flush(timeout=60)
        assert Log(elsewhere, "exp/1", cache=None).tail() == 0
        assert _batch_files(old) == [f"{1:012d}-{BATCH}.json"]
        assert own != old.parent
        assert (
            f"spool folder {old} holds 1 batch(es) spooled for {uri} by an earlier "
            "mlflow-bucket, which did not record the endpoint: not replayed into "
            f"{uri} at {s3_bucket.endpoint}"
        ) in caplog.text
        assert f"move the folder into {own}" in caplog.text

        old.rename(own / old.name)
        with Spool(None, elsewhere, cache=None) as spool:
            assert spool.flush(timeout=60)
        assert list(Log(elsewhere, "exp/1", cache=None).read(0)) == [(1, [{"w": "d"}])]
        assert list(own.iterdir()) == []


def test_damaged_spool_files_are_deleted_by_the_recovery_after_the_one_that_reported_them(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged file is reported and set aside as ``<name>.bad`` by the recovery that finds
    it (even its own rescans leave it), and deleted by the next one, which lets the dead
    process's folder go; a file damaged since is reported by that one, not deleted."""
    store = open_store(f"memory://spool-{uuid.uuid4().hex[:8]}/team")
    dead = _dead_folder(spool_dir, identity=store.uri)  # a memory store's identity
    first_bad = dead / f"{2:012d}-{'1' * 32}.json"
    first_bad.write_bytes(b'{"version": 1, "log": "exp/1", "ent')  # cut short

    with pytest.warns(CorruptObjectWarning, match=f"spool file {first_bad} is unreadable"):
        first = Spool(spool_dir, store, cache=None)
    assert first.flush(timeout=60)
    assert list(Log(store, "exp/1", cache=None).read(0)) == [(1, [{"w": "d"}])]
    first._adopt()  # its periodic rescan claims the folder again
    assert first.flush(timeout=60)
    first.close()
    assert {p.name for p in dead.iterdir()} == {"lock", f"{first_bad.name}.bad", "store.json"}

    second_bad = dead / f"{3:012d}-{'2' * 32}.json"
    second_bad.write_bytes(b"\x00" * 10)  # damaged since
    with (
        caplog.at_level("INFO"),
        pytest.warns(CorruptObjectWarning, match=f"spool file {second_bad} is unreadable"),
    ):
        second = Spool(spool_dir, store, cache=None)
    assert second.flush(timeout=60)
    second.close()
    assert f"deleted damaged spool file {first_bad}.bad" in caplog.text
    assert {p.name for p in dead.iterdir()} == {"lock", f"{second_bad.name}.bad", "store.json"}

    with warnings.catch_warnings():
        warnings.simplefilter("error", CorruptObjectWarning)  # nothing new to report
        with Spool(spool_dir, store, cache=None) as third:
            assert third.flush(timeout=60)
    assert list(spool_dir.iterdir()) == []  # the folder went with its last file
