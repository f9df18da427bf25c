"""The fault-injecting proxy, against a trivial local upstream and the S3 emulator.

No assertion here measures the wall clock: latency shows in the proxy's counters,
a stall by a request that stays pending while another one passes.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from mlflow_bucket.testing.fault_proxy import FaultProxy, FaultProxyError
from mlflow_bucket.testing.pytest_plugin import BucketInfo, ProxyFactory
from mlflow_bucket.testing.s3_emulator import S3Emulator

pytestmark = pytest.mark.emulator

BIG = 20 * 1024 * 1024
UPSTREAM_DATE = "Mon, 01 Jan 2001 00:00:00 GMT"
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


@cache
def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


class _Upstream(BaseHTTPRequestHandler):
    """GET /blob/<n>[?chunked=1] serves n known bytes; PUT/POST answer the body's digest;
    GET /headers answers the request headers. Every request is recorded."""

    protocol_version = "HTTP/1.1"
    server: _UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.command, self.path))

    def _body(self) -> tuple[bytes, bool]:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():
                pass
            return b"".join(parts), True
        return self.rfile.read(int(self.headers.get("Content-Length") or 0)), False

    def _answer(self, body: bytes, *, chunked: bool = False, status: int = 200) -> None:
        self.send_response_only(status)
        self.send_header("Date", UPSTREAM_DATE)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 1_000_003):
                piece = body[start : start + 1_000_003]
                self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._record()
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/blob/"):
            data = payload(int(url.path.rsplit("/", 1)[1]))
            self._answer(data, chunked="chunked=1" in url.query)
        elif url.path == "/headers":
            self._answer(json.dumps(self.headers.items()).encode())
        else:
            self._answer(b"ok")

    def do_HEAD(self) -> None:
        self._record()
        self.send_response_only(200)
        self.send_header("Content-Length", "12345")
        self.end_headers()

    def do_PUT(self) -> None:
        self._record()
        body, chunked = self._body()
        digest = {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body), "chunked": chunked}
        self._answer(json.dumps(digest).encode())

    do_POST = do_PUT


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Upstream)
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the proxy cutting a response short is expected here

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def seen_paths(self) -> list[str]:
        with self.lock:
            return [path for _, path in self.seen]


@pytest.fixture(scope="module")
def upstream() -> Iterator[_UpstreamServer]:
    server = _UpstreamServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: _UpstreamServer, fault_proxy: ProxyFactory) -> FaultProxy:
    return fault_proxy(upstream.endpoint)


def _s3_via(proxy: FaultProxy, bucket: BucketInfo, config: Config = NO_RETRIES) -> Any:
    options = bucket.via(proxy).storage_options
    return boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["key"],
        aws_secret_access_key=options["secret"],
        region_name=options["client_kwargs"]["region_name"],
        config=config,
    )


def _wait_for(predicate: Any, what: str, limit: float = 30.0) -> None:
    # A generous bound only so a broken proxy fails the test instead of hanging it.
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


# --------------------------------------------------------------------------- pass-through


def test_passthrough_content_length_both_ways(proxy: FaultProxy) -> None:
    data = payload(BIG)
    answer = requests.put(f"{proxy.endpoint}/upload", data=data, timeout=60).json()
    assert answer == {"sha256": hashlib.sha256(data).hexdigest(), "size": BIG, "chunked": False}
    response = requests.get(f"{proxy.endpoint}/blob/{BIG}", timeout=60)
    assert response.headers["Content-Length"] == str(BIG)
    assert response.content == data


def test_passthrough_chunked_both_ways(proxy: FaultProxy) -> None:
    data = payload(BIG)

    def pieces() -> Iterator[bytes]:
        for start in range(0, BIG, 777_777):
            yield data[start : start + 777_777]

    answer = requests.put(f"{proxy.endpoint}/upload", data=pieces(), timeout=60).json()
    assert answer == {"sha256": hashlib.sha256(data).hexdigest(), "size": BIG, "chunked": True}
    response = requests.get(f"{proxy.endpoint}/blob/{BIG}?chunked=1", timeout=60)
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.content == data


def test_headers_pass_through_unchanged(proxy: FaultProxy) -> None:
    response = requests.get(
        f"{proxy.endpoint}/headers",
        headers={"X-Amz-Meta-Run_Id": "abc", "X-Goog-Generation": "7"},
        timeout=10,
    )
    seen = {name.lower(): value for name, value in response.json()}
    # Host as the client sent it (SigV4 signs it), not rewritten to the upstream's.
    assert seen["host"] == urllib.parse.urlsplit(proxy.endpoint).netloc
    assert seen["x-amz-meta-run_id"] == "abc"
    assert seen["x-goog-generation"] == "7"
    assert response.headers["Date"] == UPSTREAM_DATE


def test_head_keeps_content_length(proxy: FaultProxy) -> None:
    with requests.Session() as session:
        response = session.head(f"{proxy.endpoint}/anything", timeout=10)
        assert response.headers["Content-Length"] == "12345"
        assert session.get(f"{proxy.endpoint}/ok", timeout=10).content == b"ok"


def test_keep_alive_reuses_one_client_connection(proxy: FaultProxy) -> None:
    with requests.Session() as session:
        for _ in range(10):
            assert session.get(f"{proxy.endpoint}/ok", timeout=10).content == b"ok"
    assert proxy.stats()["connections"] == 1


@pytest.fixture(scope="module")
def auth_s3() -> Iterator[tuple[S3Emulator, dict[str, str]]]:
    """An S3 emulator that enforces IAM, hence verifies SigV4, and a user's keys for it."""
    with S3Emulator(env={"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as emulator:
        iam = boto3.client(
            "iam",
            endpoint_url=emulator.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        iam.create_user(UserName="tester")
        key = iam.create_access_key(UserName="tester")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="tester", PolicyName="all-s3", PolicyDocument=json.dumps(policy)
        )
        yield (
            emulator,
            {
                "aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"],
            },
        )


def test_sigv4_verifies_through_the_proxy(
    auth_s3: tuple[S3Emulator, dict[str, str]], fault_proxy: ProxyFactory
) -> None:
    emulator, keys = auth_s3
    proxy = fault_proxy(emulator)
    s3 = emulator.client(endpoint_url=proxy.endpoint, config=NO_RETRIES, **keys)
    data = payload(BIG)
    s3.create_bucket(Bucket="signed")
    s3.put_object(Bucket="signed", Key="dir/a b+c.bin", Body=data)
    assert s3.get_object(Bucket="signed", Key="dir/a b+c.bin")["Body"].read() == data

    forged = emulator.client(
        endpoint_url=proxy.endpoint,
        config=NO_RETRIES,
        aws_access_key_id=keys["aws_access_key_id"],
        aws_secret_access_key="not-the-secret",
    )
    with pytest.raises(ClientError) as error:
        forged.head_object(Bucket="signed", Key="dir/a b+c.bin")
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


# --------------------------------------------------------------------------- failures


def test_count_failures_then_success(proxy: FaultProxy) -> None:
    proxy.fail(503, count=2)
    first = requests.get(f"{proxy.endpoint}/ok", timeout=10)
    second = requests.get(f"{proxy.endpoint}/ok", timeout=10)
    third = requests.get(f"{proxy.endpoint}/ok", timeout=10)
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert "<Code>SlowDown</Code>" in first.text  # shaped like S3's throttling error
    assert first.headers["X-Fault-Proxy"] == "fail"
    assert proxy.stats()["forwarded"] == 1


def test_gcs_json_api_errors_are_json(proxy: FaultProxy) -> None:
    proxy.fail(429, count=1)
    response = requests.get(f"{proxy.endpoint}/storage/v1/b/bucket/o", timeout=10)
    assert response.status_code == 429
    assert response.json()["error"]["errors"][0]["reason"] == "rateLimitExceeded"


def test_filters_pick_requests(proxy: FaultProxy) -> None:
    proxy.fail(500, methods=["PUT"], path_regex=r"^/only/")
    assert requests.put(f"{proxy.endpoint}/only/x", data=b"1", timeout=10).status_code == 500
    assert requests.put(f"{proxy.endpoint}/other", data=b"1", timeout=10).status_code == 200
    assert requests.get(f"{proxy.endpoint}/only/x", timeout=10).status_code == 200
    proxy.clear()
    assert requests.put(f"{proxy.endpoint}/only/x", data=b"1", timeout=10).status_code == 200


def test_boto3_retries_through_failures(s3_bucket: BucketInfo, fault_proxy: ProxyFactory) -> None:
    proxy = fault_proxy(s3_bucket)
    # One failure only: botocore sleeps a random backoff before each retry.
    proxy.fail(503, count=1, methods=["PUT"])
    s3 = _s3_via(proxy, s3_bucket, Config(retries={"mode": "standard", "total_max_attempts": 3}))
    s3.put_object(Bucket=s3_bucket.bucket, Key="k", Body=b"v")
    stats = proxy.stats()
    assert stats["by_method"]["PUT"] == 2
    assert stats["faults"] == {"fail": 1}


def _failure_pattern(proxy: FaultProxy, seed: int) -> list[int]:
    proxy.clear()
    proxy.seed(seed)
    proxy.fail(500, fraction=0.5)
    with requests.Session() as session:
        return [session.get(f"{proxy.endpoint}/ok", timeout=10).status_code for _ in range(40)]


def test_fraction_with_seed_is_deterministic(proxy: FaultProxy) -> None:
    first = _failure_pattern(proxy, seed=7)
    again = _failure_pattern(proxy, seed=7)
    other = _failure_pattern(proxy, seed=8)
    assert first == again
    assert 0 < first.count(500) < 40
    assert other != first


def test_after_upstream_failure_applied_the_write(
    s3_bucket: BucketInfo, s3_emulator: S3Emulator, fault_proxy: ProxyFactory
) -> None:
    proxy = fault_proxy(s3_bucket)
    proxy.fail(503, count=1, methods=["PUT"], after_upstream=True)
    with pytest.raises(ClientError) as error:
        _s3_via(proxy, s3_bucket).put_object(Bucket=s3_bucket.bucket, Key="k", Body=b"applied")
    assert error.value.response["Error"]["Code"] == "SlowDown"
    direct = s3_emulator.client()
    assert direct.get_object(Bucket=s3_bucket.bucket, Key="k")["Body"].read() == b"applied"
    assert proxy.stats()["faults"] == {"fail_after": 1}


# --------------------------------------------------------------------------- resets


def test_reset_before_never_reaches_upstream(proxy: FaultProxy, upstream: _UpstreamServer) -> None:
    proxy.reset(count=1)
    with pytest.raises(requests.ConnectionError):
        requests.put(f"{proxy.endpoint}/reset-before", data=b"x", timeout=10)
    assert "/reset-before" not in upstream.seen_paths()
    assert requests.put(f"{proxy.endpoint}/reset-before", data=b"x", timeout=10).ok


def test_reset_after_reaches_upstream(proxy: FaultProxy, upstream: _UpstreamServer) -> None:
    proxy.reset(count=1, when="after", methods=["PUT"])
    with pytest.raises(requests.ConnectionError):
        requests.put(f"{proxy.endpoint}/reset-after", data=b"x", timeout=10)
    assert "/reset-after" in upstream.seen_paths()
    assert proxy.stats()["faults"] == {"reset_after": 1}


@pytest.mark.parametrize("query", ["", "?chunked=1"], ids=["content-length", "chunked"])
def test_mid_body_reset_truncates(proxy: FaultProxy, query: str) -> None:
    proxy.reset(count=1, when="mid_body")
    received = 0
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        response = requests.get(f"{proxy.endpoint}/blob/{BIG}{query}", stream=True, timeout=30)
        for piece in response.iter_content(1 << 16):
            received += len(piece)
    assert received < BIG
    assert requests.get(f"{proxy.endpoint}/blob/1000{query}", timeout=10).content == payload(1000)


def test_client_disconnects_do_not_hurt_the_proxy(proxy: FaultProxy) -> None:
    host, port = urllib.parse.urlsplit(proxy.endpoint).netloc.split(":")
    # Hang up halfway through an upload...
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"PUT /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        sock.sendall(b"x" * 1_000_000)
    # ...halfway through a download...
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET /blob/{BIG} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.recv(1000)
    # ...and before sending anything.
    socket.create_connection((host, int(port))).close()
    _wait_for(lambda: proxy.stats()["in_flight"] == 0, "the proxy to finish those")
    assert proxy.stats()["client_disconnects"] >= 1
    assert requests.get(f"{proxy.endpoint}/blob/1000", timeout=10).content == payload(1000)


# --------------------------------------------------------------------------- time


def test_outage_ends(proxy: FaultProxy) -> None:
    proxy.outage(0.3)
    response = requests.get(f"{proxy.endpoint}/ok", timeout=10)
    assert response.status_code == 503
    assert response.headers["X-Fault-Proxy"] == "outage"
    _wait_for(
        lambda: requests.get(f"{proxy.endpoint}/ok", timeout=10).status_code == 200,
        "the outage to end",
    )
    assert proxy.stats()["faults"]["outage"] >= 1


def test_latency_applies_to_every_request(
    upstream: _UpstreamServer, fault_proxy: ProxyFactory
) -> None:
    proxy = fault_proxy(upstream, latency_ms=1)
    for _ in range(3):
        requests.get(f"{proxy.endpoint}/ok", timeout=10)
    proxy.latency(2, jitter_ms=1)
    for _ in range(2):
        requests.get(f"{proxy.endpoint}/ok", timeout=10)
    proxy.latency(0)
    requests.get(f"{proxy.endpoint}/ok", timeout=10)
    proxy.clear()  # back to the start latency
    requests.get(f"{proxy.endpoint}/ok", timeout=10)
    stats = proxy.stats()
    assert (stats["total"], stats["delayed"]) == (7, 6)


def test_stall_holds_a_request_while_others_pass(proxy: FaultProxy) -> None:
    proxy.stall(60, count=1, path_regex=r"^/slow")
    outcome: list[int] = []
    slow = threading.Thread(
        target=lambda: outcome.append(
            requests.get(f"{proxy.endpoint}/slow", timeout=120).status_code
        )
    )
    slow.start()
    _wait_for(lambda: proxy.stats()["faults"].get("stall") == 1, "the stall to catch /slow")
    assert requests.get(f"{proxy.endpoint}/fast", timeout=10).status_code == 200
    assert slow.is_alive() and outcome == []
    assert proxy.stats()["in_flight"] == 1
    proxy.clear()  # releases stalled requests
    slow.join(timeout=30)
    assert outcome == [200]


def test_stats_count_and_reset(proxy: FaultProxy) -> None:
    proxy.fail(503, count=1, methods=["PUT"])
    with requests.Session() as session:
        for _ in range(3):
            session.get(f"{proxy.endpoint}/ok", timeout=10)
        for _ in range(2):
            session.put(f"{proxy.endpoint}/up", data=b"x", timeout=10)
        session.head(f"{proxy.endpoint}/ok", timeout=10)
    stats = proxy.stats()
    assert stats["total"] == 6
    assert stats["by_method"] == {"GET": 3, "PUT": 2, "HEAD": 1}
    assert stats["faults"] == {"fail": 1}
    assert stats["forwarded"] == 5
    proxy.reset_stats()
    stats = proxy.stats()
    assert (stats["total"], stats["by_method"], stats["faults"]) == (0, {}, {})


def test_bad_control_commands_are_refused(proxy: FaultProxy) -> None:
    with pytest.raises(FaultProxyError, match="status"):
        proxy.fail(999)
    with pytest.raises(FaultProxyError, match="when"):
        proxy.reset(when="sometime")  # type: ignore[arg-type]
    with pytest.raises(FaultProxyError, match="fraction"):
        proxy.fail(503, fraction=1.5)
