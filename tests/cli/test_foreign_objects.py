"""The store commands on a store holding a foreign or damaged object: one line, no traceback.

An object numbered past a log's end is ignored by readers (docs/format.md,
"Gaps"): ``status``, ``compact`` and ``gc`` work and name it in one line,
``status`` lists it, and ``doctor`` warns naming it. On a folder store and
the GCS emulator.
"""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from cli_helpers import Cli, log_runs

from mlflow_bucket.log import Log, codec
from mlflow_bucket.storage import ObjectStore, open_store

FOREIGN = "tracking/exp/1/log/000000000040"


@pytest.fixture(params=["folder", "gcs"])
def uri(request: pytest.FixtureRequest, project: Path) -> str:
    if request.param == "folder":
        return f"bucket+file://{(project / 'store').resolve().as_posix()}"
    gcs = request.getfixturevalue("gcs_env")
    return f"{gcs.url}/p-{uuid.uuid4().hex[:8]}"


def _store(uri: str) -> ObjectStore:
    return open_store(uri.replace("bucket+file://", "file://"))


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text and "CorruptObjectWarning:" not in text, text


def test_commands_on_a_store_with_an_object_past_a_logs_end(cli: Cli, uri: str) -> None:
    log_runs(uri, "alpha", 2)
    store = _store(uri)
    store.put(FOREIGN, codec.encode_batch([{"op": "run.purge", "id": "x"}], ["f"]))
    url = store.url(FOREIGN)

    status = cli("status", uri)
    assert status.code == 0, status.err
    _no_traceback(status.err)
    assert "2 run(s)" in status.out
    assert f"warning: {url}: log object" in status.out
    doc = json.loads(cli("status", uri, "--json").out)
    assert any(url in text for text in doc["warnings"])
    assert sum(e["runs"] for e in doc["experiments"]) == 2

    for args in (("compact",), ("gc", "--retention", "120"), ("gc", "--dry-run")):
        result = cli(*args, uri)
        assert result.code == 0, (args, result.err)
        _no_traceback(result.err)
        # The log layer's own record, one line per object (once per log read).
        assert all(url in line for line in result.err.splitlines()), result.err

    doctor = cli("doctor", uri)
    assert doctor.code == 0, doctor.out
    line = next(line for line in doctor.out.splitlines() if line.startswith("[WARN] logs:"))
    assert url in line and "past a gap" in line
    assert doctor.out.rstrip().endswith("1 warned, 0 failed"), doctor.out
    # Nothing was lost, and writers go on after the true end.
    log_runs(uri, "alpha", 1)
    assert "3 run(s)" in cli("status", uri).out
    assert store.exists(FOREIGN)


def test_doctor_passes_the_logs_of_a_sound_store(cli: Cli, uri: str) -> None:
    log_runs(uri, "alpha", 1)
    doctor = cli("doctor", uri)
    assert "[PASS] logs: no foreign object under any log" in doctor.out
    _store(uri).put("tracking/exp/1/log/notes.txt", b"hello")
    doctor = cli("doctor", uri)
    line = next(line for line in doctor.out.splitlines() if line.startswith("[WARN] logs:"))
    assert _store(uri).url("tracking/exp/1/log/notes.txt") in line


def test_a_damaged_newest_checkpoint_after_gc_is_one_line_and_nothing_is_lost(
    cli: Cli, uri: str, project: Path
) -> None:
    log_runs(uri, "alpha", 2)
    store = _store(uri)
    for _ in range(2):  # two checkpoints of each log
        log_runs(uri, "alpha", 1)
        assert cli("compact", uri).code == 0
    if uri.startswith("bucket+file://"):
        # A folder store's times are its files' mtimes: old enough for gc to delete.
        past = time.time() - 7200
        for path in (project / "store").rglob("*"):
            if path.is_file():
                os.utime(path, (past, past))
    gc = cli("gc", uri, "--retention", "120", "--no-compact")
    assert gc.code == 0, gc.err
    if uri.startswith("bucket+file://"):
        assert not gc.out.startswith("deleted 0 log object(s)"), gc.out
    newest = Log(store, "tracking/exp/1", cache=None).checkpoints()[-1][1].key
    store.put(newest, b"damaged")
    status = cli("status", uri)
    assert status.code == 0, status.err
    _no_traceback(status.err)
    assert "4 run(s)" in status.out
    assert f"warning: skipping {store.url(newest)}" in status.out


def test_an_object_of_a_newer_format_is_one_line_naming_it(cli: Cli, uri: str) -> None:
    log_runs(uri, "alpha", 1)
    store = _store(uri)
    log = Log(store, "tracking/exp/1", cache=None)
    key = log.key(log.tail() + 1)
    newer = {"format": "mlflow-bucket/log", "version": 99, "entries": [], "batches": []}
    store.put(key, gzip.compress(json.dumps(newer).encode()))
    for args in (("status",), ("compact",)):
        result = cli(*args, uri)
        assert result.code == 1, (args, result.out, result.err)
        _no_traceback(result.err)
        (line,) = result.err.splitlines()
        assert store.url(key) in line and "version 99" in line and "upgrade" in line
