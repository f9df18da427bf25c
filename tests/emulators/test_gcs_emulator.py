"""Pins the GCS semantics our emulator must honour, through raw HTTP and both Python clients.

Each test cites, paraphrased, what Google's Cloud Storage documentation says the real service
does; the emulator is only useful to the stores' race tests while those statements hold.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import random
import re
import socket
import threading
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection, HTTPResponse
from typing import Any
from urllib.parse import quote

import pytest
import requests

# gcsfs reads this when first imported; with it unset (2026.x) opening a file probes the
# bucket type over gRPC for up to 60 s against an emulator.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import google_crc32c
from fsspec.asyn import sync
from gcsfs.core import GCSFileSystem
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from mlflow_bucket.testing import gcs_emulator as emu_mod
from mlflow_bucket.testing.gcs_emulator import GcsEmulator, ThreadedGcsEmulator

pytestmark = pytest.mark.emulator

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# --------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def emulator() -> Iterator[GcsEmulator]:
    with GcsEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def endpoint(emulator: GcsEmulator) -> str:
    return emulator.endpoint


@pytest.fixture
def bucket(emulator: GcsEmulator) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    emulator.create_bucket(name)
    return name


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def gcs_client(endpoint: str) -> Iterator[storage.Client]:
    # google-cloud-storage picks the emulator up from STORAGE_EMULATOR_HOST.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", endpoint)
        yield storage.Client(project="test", credentials=AnonymousCredentials())


@pytest.fixture(scope="module")
def fs(endpoint: str) -> GCSFileSystem:
    return GCSFileSystem(
        endpoint_url=endpoint, token="anon", project="test", skip_instance_cache=True
    )


def obj_url(endpoint: str, bucket: str, name: str, api: str = "storage/v1") -> str:
    return f"{endpoint}/{api}/b/{bucket}/o/{quote(name, safe='')}"


def upload(
    http: requests.Session,
    endpoint: str,
    bucket: str,
    name: str,
    data: bytes,
    kind: str = "media",
    **params: Any,
) -> requests.Response:
    """One upload of ``kind`` (media, multipart or resumable) with raw HTTP."""
    base = f"{endpoint}/upload/storage/v1/b/{bucket}/o"
    if kind == "media":
        return http.post(
            base, params={"uploadType": "media", "name": name, **params}, data=data, timeout=30
        )
    if kind == "multipart":
        boundary = uuid.uuid4().hex
        body = (
            (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                + json.dumps({"name": name})
                + f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return http.post(
            base,
            params={"uploadType": "multipart", **params},
            data=body,
            headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
            timeout=30,
        )
    assert kind == "resumable"
    start = http.post(
        base, params={"uploadType": "resumable", "name": name, **params}, json={}, timeout=30
    )
    if start.status_code != 200:
        return start
    headers = {"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}" if data else "bytes */0"}
    return http.put(start.headers["Location"], data=data, headers=headers, timeout=30)


def error_reason(resp: requests.Response) -> str:
    return str(resp.json()["error"]["errors"][0]["reason"])


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def crc_b64(data: bytes) -> str:
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


# --------------------------------------------------------------------------------------------
# service basics


def test_bucket_lifecycle(http: requests.Session, endpoint: str, emulator: GcsEmulator) -> None:
    name = f"life-{uuid.uuid4().hex[:8]}"
    # buckets.insert: POST /b?project=...; a name that exists is 409 Conflict.
    made = http.post(f"{endpoint}/storage/v1/b", params={"project": "p"}, json={"name": name})
    assert made.status_code == 200 and made.json()["name"] == name
    again = http.post(f"{endpoint}/storage/v1/b", params={"project": "p"}, json={"name": name})
    assert again.status_code == 409
    # buckets.list returns storage#buckets with items.
    listed = http.get(f"{endpoint}/storage/v1/b", params={"project": "p"}).json()
    assert listed["kind"] == "storage#buckets" and name in [b["name"] for b in listed["items"]]
    # buckets.delete: only an empty bucket can be deleted (409 otherwise).
    assert upload(http, endpoint, name, "x", b"1").status_code == 200
    assert http.delete(f"{endpoint}/storage/v1/b/{name}").status_code == 409
    assert http.delete(obj_url(endpoint, name, "x")).status_code == 204
    assert http.delete(f"{endpoint}/storage/v1/b/{name}").status_code == 204
    missing = http.get(f"{endpoint}/storage/v1/b/{name}")
    assert missing.status_code == 404 and error_reason(missing) == "notFound"
    # Bucket names: lowercase letters, digits, dashes, underscores, dots.
    bad = http.post(f"{endpoint}/storage/v1/b", params={"project": "p"}, json={"name": "Bad!"})
    assert bad.status_code == 400


def test_errors_are_gcs_shaped_and_never_fatal(http: requests.Session, endpoint: str) -> None:
    # Errors come back as {"error": {"code", "message", "errors": [{"reason", ...}]}}.
    unknown = http.get(f"{endpoint}/storage/v1/nothing/here")
    assert unknown.status_code == 404
    assert "no route" in unknown.json()["error"]["message"]
    missing = http.get(obj_url(endpoint, "no-such-bucket", "o"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404
    # A handler that raises answers 500 and the server carries on.
    boom = http.get(f"{endpoint}/_emulator/fail")
    assert boom.status_code == 500 and error_reason(boom) == "backendError"
    assert http.get(f"{endpoint}/_emulator/health").status_code == 200


def test_http_framing_keep_alive_date_and_lengths(endpoint: str, bucket: str) -> None:
    host, port = endpoint.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=10)
    try:
        # Several requests on one connection: HTTP/1.1 keep-alive needs exact lengths.
        for i in range(3):
            conn.request(
                "POST",
                f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name=k{i}",
                body=b"abc" * i,
            )
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200
            assert int(resp.headers["Content-Length"]) == len(body)
            assert resp.headers["Date"]
        conn.request("DELETE", f"/storage/v1/b/{bucket}/o/k0")
        resp = conn.getresponse()
        assert resp.status == 204 and resp.read() == b""
        conn.request("GET", f"/storage/v1/b/{bucket}/o/k2?alt=media")
        resp = conn.getresponse()
        assert resp.read() == b"abcabc" and resp.headers["Content-Length"] == "6"
        # A chunked request body (a client streaming an upload of unknown size).
        conn.request(
            "POST",
            f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name=chunked",
            body=iter([b"ab\r", b"", b"\ncd"]),
            encode_chunked=True,
        )
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["size"] == "6"
    finally:
        conn.close()


def test_object_resource_fields(http: requests.Session, endpoint: str, bucket: str) -> None:
    data = b"payload\r"
    name = "dir/a b+c%d/é ü.txt"
    meta = upload(http, endpoint, bucket, name, data).json()
    # The object resource: generation/metageneration/size are strings (int64 in JSON);
    # md5Hash and crc32c are base64 (crc32c big-endian); times are RFC 3339.
    assert meta["kind"] == "storage#object"
    assert meta["name"] == name and meta["bucket"] == bucket
    assert meta["size"] == str(len(data)) and meta["metageneration"] == "1"
    assert meta["generation"].isdigit() and meta["id"] == f"{bucket}/{name}/{meta['generation']}"
    assert meta["md5Hash"] == md5_b64(data) and meta["crc32c"] == crc_b64(data)
    assert RFC3339_MS.match(meta["timeCreated"]) and RFC3339_MS.match(meta["updated"])
    assert meta["storageClass"] == "STANDARD" and meta["etag"]
    # selfLink and mediaLink are usable URLs (names percent-encoded as one segment).
    assert http.get(meta["selfLink"]).json()["generation"] == meta["generation"]
    assert http.get(meta["mediaLink"]).content == data


def test_generations_strictly_increase(http: requests.Session, endpoint: str, bucket: str) -> None:
    # Generation numbers of successive writes (any object in the bucket) only grow.
    gens = [
        int(upload(http, endpoint, bucket, f"g{i % 3}", b"x").json()["generation"])
        for i in range(30)
    ]
    assert gens == sorted(gens) and len(set(gens)) == len(gens)


def test_storage_layout(http: requests.Session, endpoint: str, bucket: str) -> None:
    # buckets.getStorageLayout: a flat (non-hierarchical) multi-region bucket.
    doc = http.get(f"{endpoint}/storage/v1/b/{bucket}/storageLayout").json()
    assert doc["bucket"] == bucket and doc["hierarchicalNamespace"] == {"enabled": False}


def test_reset_drops_everything() -> None:
    with ThreadedGcsEmulator() as emu:  # its own server: reset must not hit the shared one
        emu.create_bucket("one")
        emu.reset()
        assert requests.get(f"{emu.endpoint}/storage/v1/b/one", timeout=10).status_code == 404
        emu.create_bucket("one")


# --------------------------------------------------------------------------------------------
# preconditions


@pytest.mark.parametrize("kind", ["media", "multipart", "resumable"])
def test_create_only_if_absent(
    http: requests.Session, endpoint: str, bucket: str, kind: str
) -> None:
    # ifGenerationMatch=0: the write succeeds only if no live version of the object exists;
    # otherwise 412 Precondition Failed and the existing object is untouched.
    first = upload(http, endpoint, bucket, "lock", b"first", kind, ifGenerationMatch="0")
    assert first.status_code == 200, first.text
    second = upload(http, endpoint, bucket, "lock", b"second", kind, ifGenerationMatch="0")
    assert second.status_code == 412 and error_reason(second) == "conditionNotMet"
    assert http.get(obj_url(endpoint, bucket, "lock"), params={"alt": "media"}).content == b"first"


@pytest.mark.parametrize("kind", ["media", "multipart", "resumable"])
def test_sixteen_racing_creates_have_one_winner(endpoint: str, bucket: str, kind: str) -> None:
    # The precondition and the write are one atomic step: of N concurrent
    # ifGenerationMatch=0 writes exactly one succeeds.
    barrier = threading.Barrier(16)

    def attempt(i: int) -> tuple[int, bytes]:
        with requests.Session() as session:
            barrier.wait()
            data = b"writer-%d" % i
            resp = upload(session, endpoint, bucket, "race", data, kind, ifGenerationMatch="0")
            return resp.status_code, data

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, range(16)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [412] * 15
    winner = next(data for status, data in results if status == 200)
    got = requests.get(obj_url(endpoint, bucket, "race"), params={"alt": "media"}, timeout=10)
    assert got.content == winner


def test_resumable_precondition_rechecked_at_completion(
    http: requests.Session, endpoint: str, bucket: str
) -> None:
    # Preconditions of a resumable upload are evaluated when the upload completes: two
    # sessions opened with ifGenerationMatch=0 cannot both create the object.
    base = f"{endpoint}/upload/storage/v1/b/{bucket}/o"
    params = {"uploadType": "resumable", "name": "r", "ifGenerationMatch": "0"}
    sessions = [http.post(base, params=params, json={}).headers["Location"] for _ in range(2)]
    done = http.put(sessions[0], data=b"one", headers={"Content-Range": "bytes 0-2/3"})
    assert done.status_code == 200
    late = http.put(sessions[1], data=b"two", headers={"Content-Range": "bytes 0-2/3"})
    assert late.status_code == 412
    # ... and it is also checked when the session is opened.
    assert http.post(base, params=params, json={}).status_code == 412


def test_generation_preconditions_on_delete_patch_get(
    http: requests.Session, endpoint: str, bucket: str
) -> None:
    gen = upload(http, endpoint, bucket, "o", b"v1").json()["generation"]
    url = obj_url(endpoint, bucket, "o")
    stale = str(int(gen) - 1)
    # ifGenerationMatch=<g>: the operation applies only if the live generation is g.
    assert http.delete(url, params={"ifGenerationMatch": stale}).status_code == 412
    patched = http.patch(url, params={"ifGenerationMatch": stale}, json={"metadata": {"k": "v"}})
    assert patched.status_code == 412
    # objects.patch merges metadata (null deletes a key) and bumps the metageneration only.
    ok = http.patch(url, params={"ifGenerationMatch": gen}, json={"metadata": {"k": "v", "j": 1}})
    assert ok.status_code == 200
    assert ok.json()["metadata"] == {"k": "v", "j": "1"}
    assert ok.json()["generation"] == gen and ok.json()["metageneration"] == "2"
    again = http.patch(url, params={"ifMetagenerationMatch": "2"}, json={"metadata": {"k": None}})
    assert again.json()["metadata"] == {"j": "1"} and again.json()["metageneration"] == "3"
    assert http.patch(url, params={"ifMetagenerationMatch": "2"}, json={}).status_code == 412
    assert http.patch(url, params={"ifMetagenerationNotMatch": "3"}, json={}).status_code == 412
    # On a GET, a failed ifGenerationNotMatch is 304 Not Modified; a failed match is 412.
    assert http.get(url, params={"ifGenerationNotMatch": gen}).status_code == 304
    assert http.get(url, params={"ifGenerationMatch": stale}).status_code == 412
    assert http.get(url, params={"ifGenerationMatch": gen}).status_code == 200
    # A generation that is not live is 404, not 412.
    assert http.get(url, params={"generation": stale}).status_code == 404
    assert http.delete(url, params={"ifGenerationMatch": gen}).status_code == 204
    # ifGenerationNotMatch=0 means "only if a live object exists".
    assert upload(http, endpoint, bucket, "o", b"x", ifGenerationNotMatch="0").status_code == 412
    assert http.delete(url, params={"ifGenerationMatch": gen}).status_code == 404


def test_clients_see_precondition_failures(
    fs: GCSFileSystem, gcs_client: storage.Client, bucket: str
) -> None:
    # gcsfs's exclusive create (mode="create", and "xb" files) sends ifGenerationMatch=0 and
    # turns every 412 into FileExistsError.
    fs.pipe(f"{bucket}/x", b"1", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe(f"{bucket}/x", b"2", mode="create")
    with pytest.raises(FileExistsError), fs.open(f"{bucket}/x", "xb", block_size=2**18) as f:
        f.write(b"3" * (2**18 + 1))
    gen = fs.info(f"{bucket}/x")["generation"]
    # ... even for a conditional delete whose generation is stale.
    with pytest.raises(FileExistsError):
        fs.call("DELETE", "b/{}/o/{}", bucket, "x", ifGenerationMatch=str(int(gen) + 1))
    # google-cloud-storage raises PreconditionFailed.
    blob = gcs_client.bucket(bucket).blob("x")
    with pytest.raises(gexc.PreconditionFailed):
        blob.upload_from_string(b"4", if_generation_match=0)
    blob.upload_from_string(b"5", if_generation_match=int(gen))
    assert fs.cat(f"{bucket}/x") == b"5"


# --------------------------------------------------------------------------------------------
# listing


def _names(doc: dict[str, Any]) -> list[str]:
    return [item["name"] for item in doc.get("items", [])]


def test_list_offsets_prefixes_and_globs(
    http: requests.Session, endpoint: str, bucket: str
) -> None:
    names = ["a", "b/", "b/1", "b/2/x", "c/1", "c/2", "d", "e/f/g"]
    for name in names:
        assert upload(http, endpoint, bucket, name, b"").status_code == 200
    url = f"{endpoint}/storage/v1/b/{bucket}/o"

    def ls(**params: str) -> dict[str, Any]:
        resp = http.get(url, params=params)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    # Results are in lexicographic order of name.
    assert _names(ls()) == names
    # startOffset is inclusive, endOffset exclusive.
    assert _names(ls(startOffset="b/1", endOffset="c/2")) == ["b/1", "b/2/x", "c/1"]
    assert _names(ls(startOffset="b/10")) == ["b/2/x", "c/1", "c/2", "d", "e/f/g"]
    # delimiter: names with the delimiter after the prefix collapse into prefixes[].
    top = ls(delimiter="/")
    assert _names(top) == ["a", "d"] and top["prefixes"] == ["b/", "c/", "e/"]
    inner = ls(prefix="b/", delimiter="/")
    assert _names(inner) == ["b/", "b/1"] and inner["prefixes"] == ["b/2/"]
    # includeTrailingDelimiter: an object ending in the delimiter is also an item.
    trailing = ls(delimiter="/", includeTrailingDelimiter="true")
    assert _names(trailing) == ["a", "b/", "d"]
    # matchGlob: '*' stays within a segment, '**' crosses '/'.
    assert _names(ls(matchGlob="c/*")) == ["c/1", "c/2"]
    assert _names(ls(matchGlob="**/x")) == ["b/2/x"]
    assert _names(ls(matchGlob="{a,d}")) == ["a", "d"]
    assert ls(prefix="zzz") == {"kind": "storage#objects"}


def test_pagination_walks_2500_objects_in_three_pages(
    endpoint: str, bucket: str, gcs_client: storage.Client
) -> None:
    names = [f"obj/{i:05d}" for i in range(2500)]
    local = threading.local()

    def put(name: str) -> int:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return upload(local.session, endpoint, bucket, name, name.encode()).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(put, reversed(names))) == {200}
    # maxResults caps a page (1000 at most); nextPageToken continues after the last entry.
    seen: list[str] = []
    pages = 0
    token: str | None = None
    with requests.Session() as http:
        while True:
            params = {"maxResults": "1000", **({"pageToken": token} if token else {})}
            doc = http.get(f"{endpoint}/storage/v1/b/{bucket}/o", params=params).json()
            pages += 1
            seen += _names(doc)
            token = doc.get("nextPageToken")
            if not token:
                break
        # Asking for more than the cap still returns at most 1000.
        capped = http.get(f"{endpoint}/storage/v1/b/{bucket}/o", params={"maxResults": "5000"})
        assert len(capped.json()["items"]) == 1000
    assert pages == 3 and seen == names
    # The same through google-cloud-storage's page iterator.
    iterator = gcs_client.list_blobs(bucket, page_size=1000)
    page_sizes = [len(list(page)) for page in iterator.pages]
    assert page_sizes == [1000, 1000, 500]


def test_pagination_with_prefixes_is_stable(
    http: requests.Session, endpoint: str, bucket: str
) -> None:
    names = [f"{d}/{i}" for d in "abc" for i in range(3)] + ["b", "b0", "c/"]
    for name in names:
        upload(http, endpoint, bucket, name, b"")
    url = f"{endpoint}/storage/v1/b/{bucket}/o"
    # maxResults counts items and prefixes together; a page never repeats a prefix.
    for trailing in ("false", "true"):
        items: list[str] = []
        prefixes: list[str] = []
        token = None
        while True:
            params = {"delimiter": "/", "maxResults": "1", "includeTrailingDelimiter": trailing}
            if token:
                params["pageToken"] = token
            doc = http.get(url, params=params).json()
            items += _names(doc)
            prefixes += doc.get("prefixes", [])
            token = doc.get("nextPageToken")
            if not token:
                break
        assert prefixes == ["a/", "b/", "c/"]
        assert items == (["b", "b0", "c/"] if trailing == "true" else ["b", "b0"])
    # Objects written after a page was served appear on later pages in order.
    first = http.get(url, params={"maxResults": "2"}).json()
    upload(http, endpoint, bucket, "zz", b"")
    rest = http.get(url, params={"pageToken": first["nextPageToken"]}).json()
    assert _names(first) + _names(rest) == sorted([*names, "zz"])


# --------------------------------------------------------------------------------------------
# reads


def test_ranged_reads(http: requests.Session, endpoint: str, bucket: str) -> None:
    data = bytes(range(256)) * 4
    upload(http, endpoint, bucket, "r", data)
    url = obj_url(endpoint, bucket, "r", api="download/storage/v1")

    def get(rng: str) -> requests.Response:
        return http.get(url, params={"alt": "media"}, headers={"Range": rng})

    # A satisfiable Range is 206 with Content-Range: bytes first-last/size.
    part = get("bytes=10-19")
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["Content-Range"] == "bytes 10-19/1024"
    assert get("bytes=1000-").content == data[1000:]
    assert get("bytes=-24").content == data[-24:]
    assert get("bytes=1000-5000").headers["Content-Range"] == "bytes 1000-1023/1024"
    # A range starting at or past the end is 416 Requested Range Not Satisfiable.
    past = get("bytes=1024-")
    assert past.status_code == 416 and past.headers["Content-Range"] == "bytes */1024"
    # A full download carries the stored hashes, generation and length.
    full = http.get(url, params={"alt": "media"})
    assert full.status_code == 200 and full.content == data
    assert full.headers["x-goog-hash"] == f"crc32c={crc_b64(data)},md5={md5_b64(data)}"
    assert full.headers["x-goog-stored-content-length"] == "1024"
    assert full.headers["x-goog-generation"] and full.headers["x-goog-metageneration"] == "1"


def test_ranged_reads_through_clients(
    fs: GCSFileSystem, gcs_client: storage.Client, bucket: str
) -> None:
    data = os.urandom(100_000)
    fs.pipe(f"{bucket}/blob", data)
    assert fs.cat_file(f"{bucket}/blob", start=5, end=70_000) == data[5:70_000]
    assert fs.cat_file(f"{bucket}/blob", start=-10) == data[-10:]
    with fs.open(f"{bucket}/blob", "rb", block_size=4096) as f:
        f.seek(99_990)
        assert f.read() == data[99_990:]
    blob = gcs_client.bucket(bucket).blob("blob")
    # google-cloud-storage's end is inclusive; full downloads are checksum-verified.
    assert blob.download_as_bytes(start=3, end=9) == data[3:10]
    assert blob.download_as_bytes() == data


# --------------------------------------------------------------------------------------------
# byte-exact uploads


def _payloads(count: int = 512, seed: int = 1234) -> list[bytes]:
    # The tails that multipart parsers get wrong: a line ending or a half delimiter at the end.
    tails = [b"\r", b"\r\n", b"\n--", b"\n", b"--", b"\r\n\r\n", b"\r\n--", b"\n\r", b""]
    rng = random.Random(seed)
    out = [b"", *tails]
    while len(out) < count:
        body = rng.randbytes(rng.randrange(0, 3000))
        out.append(body + tails[len(out) % len(tails)])
    return out


def test_multipart_round_trip_is_byte_exact_through_gcsfs(
    fs: GCSFileSystem, http: requests.Session, endpoint: str, bucket: str
) -> None:
    # Uploads store exactly the bytes sent: gcsfs's pipe() is a multipart/related upload
    # written with LF line endings.
    payloads = _payloads()
    paths = {f"{bucket}/rt/{i:03d}": data for i, data in enumerate(payloads)}
    fs.pipe(paths)
    got = fs.cat(list(paths))
    assert got == paths
    # The server's own view (size, MD5) proves the bytes stored, not just echoed.
    doc = http.get(f"{endpoint}/storage/v1/b/{bucket}/o", params={"prefix": "rt/"}).json()
    stored = {f"{bucket}/{item['name']}": item for item in doc["items"]}
    for path, data in paths.items():
        assert stored[path]["size"] == str(len(data))
        assert stored[path]["md5Hash"] == md5_b64(data)


def test_multipart_round_trip_is_byte_exact_through_google_client(
    gcs_client: storage.Client, bucket: str
) -> None:
    # google-cloud-storage writes multipart/related with CRLF line endings.
    b = gcs_client.bucket(bucket)
    for i, data in enumerate(_payloads()):
        blob = b.blob(f"rt/{i:03d}")
        blob.upload_from_string(data, content_type="application/octet-stream")
        assert blob.md5_hash == md5_b64(data), i
        assert b.blob(f"rt/{i:03d}").download_as_bytes() == data, i


# --------------------------------------------------------------------------------------------
# content types


def multipart_typed(
    http: requests.Session,
    endpoint: str,
    bucket: str,
    resource: dict[str, Any],
    data: bytes,
    media_type: str | None,
) -> requests.Response:
    """A multipart upload of ``resource`` whose media part declares ``media_type`` (or none)."""
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
    return http.post(
        f"{endpoint}/upload/storage/v1/b/{bucket}/o",
        params={"uploadType": "multipart"},
        data=body,
        headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
        timeout=30,
    )


def test_multipart_upload_declares_one_content_type(
    http: requests.Session, endpoint: str, bucket: str
) -> None:
    # Google's multipart upload: the metadata part (the object resource, whose contentType
    # is the object's Content-Type) and a media part that "must have a Content-Type header".
    # The docs do not say which wins when the two differ; Google's testbench refuses such a
    # request with 412, fake-gcs-server keeps the media part's. A client declaring two types
    # gets its type kept somewhere and lost elsewhere, so it is refused here too.
    refused = multipart_typed(
        http, endpoint, bucket, {"name": "two", "contentType": "image/png"}, b"x", "text/plain"
    )
    assert refused.status_code == 412, refused.text
    assert "Content-Type" in refused.json()["error"]["message"]
    assert http.get(obj_url(endpoint, bucket, "two")).status_code == 404
    # One type, wherever it is declared, is the object's.
    for name, resource_type, media_type in [
        ("both", "image/png", "image/png"),
        ("media-only", None, "image/png"),
        ("resource-only", "image/png", None),
    ]:
        resource = {"name": name} | ({"contentType": resource_type} if resource_type else {})
        made = multipart_typed(http, endpoint, bucket, resource, b"x", media_type)
        assert made.status_code == 200, (name, made.text)
        assert made.json()["contentType"] == "image/png", name
        got = http.get(
            obj_url(endpoint, bucket, name, "download/storage/v1"), params={"alt": "media"}
        )
        assert got.headers["Content-Type"] == "image/png", name
    # Neither: application/octet-stream.
    plain = multipart_typed(http, endpoint, bucket, {"name": "untyped"}, b"x", None)
    assert plain.json()["contentType"] == "application/octet-stream"


def test_clients_declare_one_content_type(
    gcs_client: storage.Client, fs: GCSFileSystem, bucket: str
) -> None:
    # Both Python clients pass the stricter rule: google-cloud-storage declares the type in
    # the resource and on the media part alike, gcsfs only on the media part.
    blob = gcs_client.bucket(bucket).blob("by-google-client.png")
    blob.upload_from_string(b"\x89PNG", content_type="image/png")
    assert gcs_client.bucket(bucket).get_blob("by-google-client.png").content_type == "image/png"
    fs.pipe_file(f"{bucket}/by-gcsfs.txt", b"hello", content_type="text/plain")
    assert fs.info(f"{bucket}/by-gcsfs.txt")["contentType"] == "text/plain"


def test_resumable_upload_through_gcsfs(fs: GCSFileSystem, bucket: str) -> None:
    # Resumable uploads: chunks with Content-Range bytes a-b/* (size unknown yet) or
    # a-b/total, answered 308 with Range: bytes=0-N until the last byte arrives.
    data = random.Random(7).randbytes(8 * 2**20 + 12345)
    with fs.open(f"{bucket}/big", "wb", block_size=2**18, consistency="md5") as f:
        for i in range(0, len(data), 100_000):
            f.write(data[i : i + 100_000])
    assert fs.cat(f"{bucket}/big") == data
    fs.pipe(f"{bucket}/big2", data + b"\r", chunksize=2**18)
    assert fs.cat(f"{bucket}/big2") == data + b"\r"
    assert fs.info(f"{bucket}/big2")["md5Hash"] == md5_b64(data + b"\r")


def test_resumable_upload_through_google_client(gcs_client: storage.Client, bucket: str) -> None:
    data = random.Random(8).randbytes(2**20 + 17) + b"\r\n"
    blob = gcs_client.bucket(bucket).blob("chunked")
    blob.chunk_size = 256 * 1024  # PUT chunks; the client verifies the final crc32c
    blob.upload_from_string(data)
    assert gcs_client.bucket(bucket).blob("chunked").download_as_bytes() == data


def test_resumable_session_protocol(http: requests.Session, endpoint: str, bucket: str) -> None:
    start = http.post(
        f"{endpoint}/upload/storage/v1/b/{bucket}/o",
        params={"uploadType": "resumable", "name": "s"},
        json={"metadata": {"a": "b"}},
        headers={"X-Upload-Content-Type": "text/plain"},
    )
    session = start.headers["Location"]
    # A status query (Content-Range: bytes */*) before any data: 308 without Range.
    query = http.put(session, headers={"Content-Range": "bytes */*"})
    assert query.status_code == 308 and "Range" not in query.headers
    part = http.put(session, data=b"abc", headers={"Content-Range": "bytes 0-2/*"})
    assert part.status_code == 308 and part.headers["Range"] == "bytes=0-2"
    # Re-sent bytes are ignored; the total may be declared with an empty final request.
    part = http.put(session, data=b"bcd", headers={"Content-Range": "bytes 1-3/*"})
    assert part.headers["Range"] == "bytes=0-3"
    done = http.put(session, headers={"Content-Range": "bytes */4"})
    assert done.status_code == 200
    assert done.json()["metadata"] == {"a": "b"} and done.json()["contentType"] == "text/plain"
    assert http.get(obj_url(endpoint, bucket, "s"), params={"alt": "media"}).content == b"abcd"
    # Cancelling a session (DELETE on its URI) answers 499; the session is then gone.
    other = http.post(
        f"{endpoint}/upload/storage/v1/b/{bucket}/o",
        params={"uploadType": "resumable", "name": "t"},
    ).headers["Location"]
    assert http.delete(other).status_code == 499
    assert http.put(other, headers={"Content-Range": "bytes */*"}).status_code == 404


# --------------------------------------------------------------------------------------------
# compose, copy, move, batch


def test_compose_copy_move(
    fs: GCSFileSystem, http: requests.Session, endpoint: str, bucket: str
) -> None:
    fs.pipe({f"{bucket}/p1": b"one\r", f"{bucket}/p2": b"two\n"})
    # compose concatenates sources in order; a composite has crc32c and componentCount.
    fs.merge(f"{bucket}/both", [f"{bucket}/p1", f"{bucket}/p2"])
    assert fs.cat(f"{bucket}/both") == b"one\rtwo\n"
    both = fs.info(f"{bucket}/both")
    assert both["componentCount"] == 2 and both["crc32c"] == crc_b64(b"one\rtwo\n")
    compose = http.post(
        obj_url(endpoint, bucket, "both") + "/compose",
        params={"ifGenerationMatch": "0"},
        json={"sourceObjects": [{"name": "p1"}]},
    )
    assert compose.status_code == 412
    # rewriteTo copies (done: true in one call); copyTo returns the new object.
    fs.cp(f"{bucket}/p1", f"{bucket}/copy")
    assert fs.cat(f"{bucket}/copy") == b"one\r"
    copied = http.post(obj_url(endpoint, bucket, "p2") + f"/copyTo/b/{bucket}/o/c2")
    assert copied.status_code == 200 and copied.json()["name"] == "c2"
    rewrite = http.post(
        obj_url(endpoint, bucket, "p2") + f"/rewriteTo/b/{bucket}/o/c2",
        params={"ifGenerationMatch": "0"},
    )
    assert rewrite.status_code == 412
    # moveTo renames atomically within a bucket (gcsfs falls back to copy+delete on errors,
    # so the raw call is what pins it).
    moved = http.post(
        obj_url(endpoint, bucket, "c2") + "/moveTo/o/c3", params={"ifSourceGenerationMatch": "1"}
    )
    assert moved.status_code == 412
    moved = http.post(obj_url(endpoint, bucket, "c2") + "/moveTo/o/c3")
    assert moved.status_code == 200 and moved.json()["name"] == "c3"
    assert http.get(obj_url(endpoint, bucket, "c2")).status_code == 404
    fs.mv(f"{bucket}/copy", f"{bucket}/moved")
    assert not fs.exists(f"{bucket}/copy") and fs.cat(f"{bucket}/moved") == b"one\r"


def test_batch_delete(
    fs: GCSFileSystem,
    gcs_client: storage.Client,
    http: requests.Session,
    endpoint: str,
    bucket: str,
) -> None:
    # The batch endpoint runs embedded HTTP requests from a multipart/mixed body and answers
    # one application/http part per request, in order.
    for i in range(5):
        upload(http, endpoint, bucket, f"del/{i}", b"x")
    # gcsfs only batches on Google's own host; call its batch delete directly.
    out = sync(fs.loop, fs._rm_files, [f"{bucket}/del/0", f"{bucket}/del/1", f"{bucket}/nope"])
    assert out[:2] == [f"{bucket}/del/0", f"{bucket}/del/1"] and isinstance(out[2], OSError)
    b = gcs_client.bucket(bucket)
    with gcs_client.batch():
        b.delete_blob("del/2")
        b.delete_blob("del/3")
    assert [blob.name for blob in gcs_client.list_blobs(bucket, prefix="del/")] == ["del/4"]


# --------------------------------------------------------------------------------------------
# robustness


def _raw_connect(endpoint: str) -> socket.socket:
    host, port = endpoint.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def test_held_connections_do_not_block_others(endpoint: str, bucket: str) -> None:
    # Concurrency without timing: 32 uploads are left half-sent, and a 33rd request still
    # completes while they hold; then all 32 finish.
    body = b"z" * 1000
    socks = []
    for i in range(32):
        sock = _raw_connect(endpoint)
        head = (
            f"POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=held{i} HTTP/1.1\r\n"
            f"Host: x\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:500])
        socks.append(sock)
    try:
        with requests.Session() as session:
            other = upload(session, endpoint, bucket, "meanwhile", b"ok")
        assert other.status_code == 200
        listed = requests.get(f"{endpoint}/storage/v1/b/{bucket}/o", timeout=30).json()
        assert _names(listed) == ["meanwhile"]
        for sock in socks:
            sock.sendall(body[500:])
        for sock in socks:
            resp = HTTPResponse(sock)
            resp.begin()
            assert resp.status == 200 and json.loads(resp.read())["size"] == "1000"
    finally:
        for sock in socks:
            sock.close()
    listed = requests.get(f"{endpoint}/storage/v1/b/{bucket}/o", timeout=30).json()
    assert len(listed["items"]) == 33


def test_server_survives_clients_that_vanish(
    http: requests.Session, endpoint: str, bucket: str
) -> None:
    # A client that closes mid-body: nothing is stored, nothing breaks.
    sock = _raw_connect(endpoint)
    sock.sendall(
        f"POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=cut HTTP/1.1\r\n"
        "Host: x\r\nContent-Length: 100000\r\n\r\n".encode()
        + b"partial"
    )
    sock.close()
    # A client that asks for a large object and resets the connection without reading.
    upload(http, endpoint, bucket, "large", os.urandom(4 * 2**20))
    for _ in range(3):
        sock = _raw_connect(endpoint)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(
            f"GET /storage/v1/b/{bucket}/o/large?alt=media HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        sock.close()
    # Garbage instead of HTTP.
    sock = _raw_connect(endpoint)
    sock.sendall(b"\x00\xffnot http at all\r\n\r\n")
    sock.close()
    assert http.get(f"{endpoint}/_emulator/health").status_code == 200
    assert http.get(obj_url(endpoint, bucket, "cut")).status_code == 404
    assert (
        len(http.get(obj_url(endpoint, bucket, "large"), params={"alt": "media"}).content)
        == 4 * 2**20
    )


def test_crc32c_fallback_matches_google_crc32c() -> None:
    # CRC32C (Castagnoli); the standard check value of "123456789" is 0xE3069283.
    assert emu_mod._crc32c_py(b"123456789") == 0xE3069283
    data = random.Random(3).randbytes(5000)
    assert emu_mod._crc32c_py(data[2000:], emu_mod._crc32c_py(data[:2000])) == google_crc32c.value(
        data
    )
