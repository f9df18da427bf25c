"""The object-store contract, run against every backend.

memory and local run in-process; gcs and s3 run against the emulators over
HTTP (started by the project's pytest plugin).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlflow_bucket.storage import (
    AlreadyExists,
    InvalidKey,
    NotFound,
    ObjectStore,
    PreconditionFailed,
    StorageError,
    open_store,
)
from mlflow_bucket.storage.checksums import crc32c, md5_digest

# fake_gcs: fake-gcs-server, a second GCS implementation besides our own emulator; the cases
# it departs from Google's documentation in are skipped there, with the reason (docs/storage.md).
BACKENDS = ["memory", "local", "gcs", "fake_gcs", "s3"]

# Where fake-gcs-server (1.54) departs from what Google documents for GCS, and a case depends
# on it: the case is skipped there, naming the departure (the table in docs/storage.md).
FAKE_GCS_DIFFERS = {
    "version pin": "fake-gcs-server ignores ifGenerationMatch on reads (objects.get)",
    "declared checksums": "fake-gcs-server does not check a declared crc32c/md5Hash on upload",
}


def _backend(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["store_target"])


def _unless_fake_gcs_differs(request: pytest.FixtureRequest, what: str) -> None:
    if _backend(request) == "fake_gcs":
        pytest.skip(f"expected difference: {FAKE_GCS_DIFFERS[what]} (docs/storage.md)")


PAYLOADS = [b"", b"x", b"\r", b"ends with CR\r", b"\r\n--boundary--\r\n", bytes(range(256)) * 9]


def test_put_get_round_trip_is_byte_exact(store: ObjectStore) -> None:
    for i, data in enumerate(PAYLOADS):
        info = store.put(f"obj/{i}", data)
        assert info.size == len(data)
        assert store.get(f"obj/{i}") == data


def test_ranged_get(store: ObjectStore) -> None:
    data = bytes(range(200))
    store.put("ranged", data)
    assert store.get("ranged", 10, 20) == data[10:20]
    assert store.get("ranged", 150) == data[150:]
    assert store.get("ranged", 190, 400) == data[190:]
    assert store.get("ranged", 5, 5) == b""


def test_head_reports_size_time_and_a_version_that_changes(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    first = store.put("k", b"one")
    head = store.head("k")
    assert head.key == "k" and head.size == 3
    assert head.version == first.version
    assert head.updated is not None and head.updated > before
    second = store.put("k", b"second")
    assert store.head("k").version == second.version != first.version
    assert store.get("k") == b"second"


def test_metadata_round_trips(store: ObjectStore) -> None:
    if store.scheme == "file":
        pytest.skip("the local backend keeps no custom metadata (docs/storage.md)")
    store.put("meta", b"x", {"color": "blue"})
    assert store.head("meta").metadata["color"] == "blue"


def test_missing_objects_raise_not_found_naming_the_object(store: ObjectStore) -> None:
    with pytest.raises(NotFound) as err:
        store.get("no/such/key")
    assert "no/such/key" in str(err.value)
    with pytest.raises(NotFound):
        store.head("no/such/key")
    assert not store.exists("no/such/key")


def test_create_if_absent_refuses_an_existing_key_and_keeps_it(store: ObjectStore) -> None:
    store.create("unique", b"first")
    with pytest.raises(AlreadyExists) as err:
        store.create("unique", b"second")
    assert "unique" in str(err.value)
    assert store.get("unique") == b"first"
    # put still overwrites: create-if-absent is opt-in per call.
    store.put("unique", b"third")
    assert store.get("unique") == b"third"


def test_create_race_between_threads_has_exactly_one_winner(store: ObjectStore) -> None:
    contenders = 16
    barrier = threading.Barrier(contenders)
    outcomes: list[str] = [""] * contenders

    def contend(i: int) -> None:
        barrier.wait()
        try:
            store.create("race/key", f"writer-{i}".encode())
            outcomes[i] = "won"
        except AlreadyExists:
            outcomes[i] = "lost"

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(outcomes) == {"won": 1, "lost": contenders - 1}
    winner = outcomes.index("won")
    assert store.get("race/key") == f"writer-{winner}".encode()


def _contend_in_process(
    uri: str, options: dict[str, Any], i: int, start: Any, results: Any
) -> None:
    """One contender: open the store, wait for the others, create; report how it went.

    Whatever happens is reported (a traceback, not a silent death), and no
    wait is unbounded: a contender that cannot go on fails the test with its
    story instead of hanging it.
    """
    try:
        store = open_store(uri, **options)
        try:
            start.wait(timeout=_RACE_WAIT)
            try:
                store.create("race/proc", f"process-{i}".encode())
                outcome = "won"
            except AlreadyExists:
                outcome = "lost"
        finally:
            store.close()
    except BaseException:
        outcome = f"error: {traceback.format_exc()}"
    results.put((i, outcome))


# Bounds each wait of the process race: far above what starting four
# interpreters takes on a loaded machine, below pytest's 300 s timeout.
_RACE_WAIT = 120.0


def test_create_race_between_processes_has_exactly_one_winner(
    store_target: tuple[str, dict[str, Any], Any], store: ObjectStore
) -> None:
    uri, options, _ = store_target
    if uri.startswith("memory://"):
        pytest.skip("a memory store lives in one process")
    contenders = 4
    # Plain processes with a barrier and a queue of their own: no Pool (it
    # cannot tell that a worker died, and waits for its task forever) and no
    # Manager (one more server process every barrier call goes through).
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(contenders)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_contend_in_process, args=(uri, options, i, start, results))
        for i in range(contenders)
    ]
    for p in procs:
        p.start()
    reported: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 2 * _RACE_WAIT
        while len(reported) < contenders and time.monotonic() < deadline:
            try:
                i, outcome = results.get(timeout=1.0)
            except queue.Empty:
                if all(p.exitcode is not None for p in procs):
                    break  # every contender is gone, some without a word
                continue
            reported[i] = outcome
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.exitcode is None:
                p.kill()
                p.join()
    outcomes = [reported.get(i, f"no report (exit code {p.exitcode})") for i, p in enumerate(procs)]
    assert Counter(outcomes) == {"won": 1, "lost": contenders - 1}, outcomes
    assert store.get("race/proc") == f"process-{outcomes.index('won')}".encode()


def test_listing_pages_through_every_key_in_order(store: ObjectStore) -> None:
    keys = [f"log/{i:05d}" for i in range(1205)] + ["logs-not-under-prefix", "a-before"]
    store.put_many({k: k.encode() for k in keys})
    listed = [o.key for o in store.list_objects("log/")]
    assert listed == sorted(k for k in keys if k.startswith("log/"))
    # Small pages: stable tokens, no loss, no duplicate.
    seen: list[str] = []
    token = None
    while True:
        page = store.list_page("log/", max_results=97, token=token)
        assert len(page.objects) <= 97
        seen.extend(o.key for o in page.objects)
        token = page.next_token
        if not token:
            break
    assert seen == listed


def test_listing_after_an_offset_is_exclusive(store: ObjectStore) -> None:
    for i in range(10):
        store.put(f"seq/{i:03d}", b"")
    after = [o.key for o in store.list_objects("seq/", start_after="seq/004")]
    assert after == [f"seq/{i:03d}" for i in range(5, 10)]
    # An offset that names no key starts at the next one.
    assert [o.key for o in store.list_objects("seq/", start_after="seq/0045")] == after
    # A page holds at most max_results (GCS may give one fewer here: its
    # startOffset is inclusive and the backend drops the offset key).
    page = store.list_page("seq/", start_after="seq/004", max_results=2)
    assert [o.key for o in page.objects] in (["seq/005", "seq/006"], ["seq/005"])
    assert page.next_token


def test_listing_with_a_delimiter_rolls_up_prefixes(store: ObjectStore) -> None:
    for key in ["exp/1/a", "exp/1/b", "exp/2/a", "exp/top", "exp/3/x/y"]:
        store.put(key, b"")
    page = store.list_page("exp/", delimiter="/")
    assert [o.key for o in page.objects] == ["exp/top"]
    assert page.prefixes == ["exp/1/", "exp/2/", "exp/3/"]
    assert store.list_prefixes("exp/") == ["exp/1/", "exp/2/", "exp/3/"]
    # Pages of one entry still roll up each prefix once.
    entries: list[str] = []
    token = None
    while True:
        page = store.list_page("exp/", delimiter="/", max_results=1, token=token)
        entries += page.prefixes + [o.key for o in page.objects]
        token = page.next_token
        if not token:
            break
    assert sorted(entries) == ["exp/1/", "exp/2/", "exp/3/", "exp/top"]


def test_listing_a_partial_prefix(store: ObjectStore) -> None:
    for key in ["runs/ab1", "runs/ab2", "runs/ac1", "runs/ab/nested"]:
        store.put(key, b"")
    assert [o.key for o in store.list_objects("runs/ab")] == [
        "runs/ab/nested",
        "runs/ab1",
        "runs/ab2",
    ]


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.put("gone/soon", b"x")
    store.put("gone/stays", b"y")
    store.delete("gone/soon")
    store.delete("gone/soon")
    assert not store.exists("gone/soon")
    assert [o.key for o in store.list_objects("gone/")] == ["gone/stays"]
    # The key is free again for create-if-absent.
    store.create("gone/soon", b"again")


def test_many_gets_and_puts_in_parallel(store: ObjectStore) -> None:
    items = {f"bulk/{i:03d}": f"value {i}".encode() * (i + 1) for i in range(150)}
    infos = store.put_many(items)
    assert set(infos) == set(items)
    assert store.get_many(items) == items
    store.delete_many(items)
    assert list(store.list_objects("bulk/")) == []


def test_unicode_keys(store: ObjectStore) -> None:
    keys = ["uni/naïve résumé", "uni/数据/1", "uni/emoji 🚀", "uni/pct%20+plus"]
    for k in keys:
        store.put(k, k.encode())
    assert [o.key for o in store.list_objects("uni/")] == sorted(keys)
    assert all(store.get(k) == k.encode() for k in keys)


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "./a", "a/.", "nul\x00byte", "dir/"])
def test_keys_that_could_escape_or_alias_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.put(key, b"x")
    with pytest.raises(InvalidKey):
        store.get(key)


def test_server_time_is_near_the_local_clock(store: ObjectStore) -> None:
    # Emulators run on this machine, so their clock is ours.
    assert abs(store.server_time() - datetime.now(UTC)) < timedelta(minutes=1)


def test_a_read_pinned_to_a_version_fails_once_the_object_is_replaced(
    store: ObjectStore, request: pytest.FixtureRequest
) -> None:
    # Transfers pin each ranged read to the version they started with (GCS ifGenerationMatch,
    # S3 If-Match), so a concurrent overwrite fails the download instead of splicing two.
    if store.scheme in ("memory", "file"):
        pytest.skip("a memory or local store has no version pins (one writer's own files)")
    _unless_fake_gcs_differs(request, "version pin")
    first = store.put("pinned", b"first version")
    assert store._get_blob("pinned", 0, 5, first.version)[0] == b"first"
    store.put("pinned", b"second version")
    with pytest.raises(PreconditionFailed):
        store._get_blob("pinned", 0, 5, first.version)


def test_a_declared_checksum_that_does_not_match_is_refused(
    store: ObjectStore, request: pytest.FixtureRequest
) -> None:
    # Uploads declare the checksum of the bytes meant (GCS crc32c in the resource, S3
    # Content-MD5): bytes damaged on the way are refused by the server, not stored.
    if store.scheme in ("memory", "file"):
        pytest.skip("a memory or local store is written without a network in between")
    if store.scheme == "s3":
        pytest.skip("moto's server checks no Content-MD5 (tests/artifacts/test_s3_checksums.py)")
    _unless_fake_gcs_differs(request, "declared checksums")
    other = b"not the bytes sent"
    with pytest.raises(StorageError) as err:
        store._put_blob(
            "damaged",
            b"the bytes sent",
            crc32c=crc32c(other) if store.verify_kind == "crc32c" else None,
            md5=md5_digest(other) if store.verify_kind == "md5" else None,
            content_type=None,
            metadata={},
        )
    assert err.value.status == 400
    assert not store.exists("damaged")
