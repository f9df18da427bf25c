"""The S3 emulator: moto's server behind a write lock, in a subprocess.

The race tests are the reason the emulator exists in this shape: moto checks
``If-None-Match: *`` and then writes, without a lock, so concurrent conditional
PUTs of objects larger than moto's in-memory buffer (~5 MB, above which the
write goes to a temporary file and releases the GIL inside the check-to-write
window) can both succeed. Served unlocked (``S3Emulator(serialize_writes=False)``)
these tests fail; the emulator's lock makes them pass.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from mlflow_bucket.testing._process import ServerStartError
from mlflow_bucket.testing.pytest_plugin import BucketInfo
from mlflow_bucket.testing.s3_emulator import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_REGION,
    DUMMY_SECRET_ACCESS_KEY,
    S3Emulator,
)

pytestmark = pytest.mark.emulator

# Above moto's default key buffer (5 MiB - 1 KiB): see the module docstring.
RACE_BODY_SIZE = 6 * 1024 * 1024
# Unlocked, one round shows the double win about two times in three; three rounds make a
# missing lock fail the test almost always.
RACE_ROUNDS = 3

# One racing process: prepares `threads` signed PUTs on open connections, waits for the
# coordinator's go byte, fires them all at once and prints [[label, status], ...].
RACE_WORKER = r"""
import http.client, json, socket, sys, threading, urllib.parse
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

endpoint, path, coordinator, label, threads, size = sys.argv[1:7]
threads, size = int(threads), int(size)
url = urllib.parse.urlsplit(endpoint)
go = threading.Event()
results = [None] * threads

def prepare(i):
    body = f"{label}-{i:02d}|".encode().ljust(size, b".")
    request = AWSRequest("PUT", endpoint + path, data=body, headers={"If-None-Match": "*"})
    S3SigV4Auth(Credentials("testing", "testing"), "s3", "us-east-1").add_auth(request)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    conn.connect()
    return conn, dict(request.headers.items()), body

def run(i, conn, headers, body):
    go.wait()
    conn.request("PUT", path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    results[i] = [f"{label}-{i:02d}", response.status]

prepared = [prepare(i) for i in range(threads)]
workers = [threading.Thread(target=run, args=(i, *p)) for i, p in enumerate(prepared)]
for worker in workers:
    worker.start()
with socket.create_connection(("127.0.0.1", int(coordinator))) as sock:
    sock.recv(1)
go.set()
for worker in workers:
    worker.join()
print(json.dumps(results))
"""


def race_conditional_puts(
    endpoint: str, bucket: str, key: str, *, processes: int, threads: int, size: int
) -> list[tuple[str, int]]:
    """Fire ``processes x threads`` simultaneous ``If-None-Match: *`` PUTs of one key.

    Every request is signed and its connection open before a single go signal, so they
    reach the server within a millisecond or so of each other.
    """
    with socket.create_server(("127.0.0.1", 0)) as coordinator:
        coordinator.settimeout(60)
        port = coordinator.getsockname()[1]
        argv = [sys.executable, "-c", RACE_WORKER, endpoint, f"/{bucket}/{key}", str(port)]
        procs = [
            subprocess.Popen(
                [*argv, f"p{n}", str(threads), str(size)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for n in range(processes)
        ]
        try:
            ready = [coordinator.accept()[0] for _ in procs]
            for conn in ready:
                conn.sendall(b"g")
            outputs = [proc.communicate(timeout=120) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    results: list[tuple[str, int]] = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode(errors="replace")
        results.extend((label, status) for label, status in json.loads(out))
    return results


@pytest.fixture
def s3(s3_emulator: S3Emulator) -> Any:
    return s3_emulator.client()


def _status(error: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response: dict[str, Any] = error.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_put_get_and_paginated_listing(s3: Any, s3_bucket: BucketInfo) -> None:
    bucket = s3_bucket.bucket
    keys = [f"runs/{i:02d}.json" for i in range(7)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=keys[3])["Body"].read() == keys[3].encode()

    after = s3.list_objects_v2(Bucket=bucket, StartAfter=keys[4])
    assert [o["Key"] for o in after["Contents"]] == keys[5:]

    pages: list[list[str]] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": "runs/", "MaxKeys": 3}
    while True:
        page = s3.list_objects_v2(**kwargs)
        pages.append([o["Key"] for o in page["Contents"]])
        if not page["IsTruncated"]:
            break
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    assert pages == [keys[0:3], keys[3:6], keys[6:]]


def test_if_none_match_star_refuses_existing_key(s3: Any, s3_bucket: BucketInfo) -> None:
    bucket = s3_bucket.bucket
    s3.put_object(Bucket=bucket, Key="marker", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="marker", Body=b"second", IfNoneMatch="*")
    assert _status(error) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="marker")["Body"].read() == b"first"


def test_if_match_on_put_is_honoured(s3: Any, s3_bucket: BucketInfo) -> None:
    # Documents moto 5.2.5: PutObject If-Match compares ETags (404 when the key is missing).
    bucket = s3_bucket.bucket
    etag = s3.put_object(Bucket=bucket, Key="obj", Body=b"v1")["ETag"]
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="obj", Body=b"v2", IfMatch='"0123"')
    assert _status(error) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="missing", Body=b"v2", IfMatch=etag)
    assert _status(error)[0] == 404
    s3.put_object(Bucket=bucket, Key="obj", Body=b"v2", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"v2"


def _assert_single_winner(s3: Any, bucket: str, key: str, results: list[tuple[str, int]]) -> None:
    statuses = sorted(status for _, status in results)
    winners = [label for label, status in results if status == 200]
    assert statuses == [200] + [412] * (len(results) - 1), statuses
    head = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-15")["Body"].read()
    assert head.split(b"|")[0].decode() == winners[0]


def test_conditional_put_race_16_threads(
    s3: Any, s3_emulator: S3Emulator, s3_bucket: BucketInfo
) -> None:
    for round_ in range(RACE_ROUNDS):
        key = f"commit-{round_}"
        results = race_conditional_puts(
            s3_emulator.endpoint,
            s3_bucket.bucket,
            key,
            processes=1,
            threads=16,
            size=RACE_BODY_SIZE,
        )
        _assert_single_winner(s3, s3_bucket.bucket, key, results)


def test_conditional_put_race_4_processes(
    s3: Any, s3_emulator: S3Emulator, s3_bucket: BucketInfo
) -> None:
    for round_ in range(RACE_ROUNDS):
        key = f"commit-{round_}"
        results = race_conditional_puts(
            s3_emulator.endpoint,
            s3_bucket.bucket,
            key,
            processes=4,
            threads=4,
            size=RACE_BODY_SIZE,
        )
        assert len({label.split("-")[0] for label, _ in results}) == 4
        _assert_single_winner(s3, s3_bucket.bucket, key, results)


def _multipart(s3: Any, bucket: str, key: str, body: bytes) -> tuple[str, list[dict[str, Any]]]:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=body)
    return upload_id, [{"PartNumber": 1, "ETag": part["ETag"]}]


def test_multipart_completion_honours_if_none_match(s3: Any, s3_bucket: BucketInfo) -> None:
    bucket = s3_bucket.bucket
    first_id, first_parts = _multipart(s3, bucket, "big", b"first")
    second_id, second_parts = _multipart(s3, bucket, "big", b"second")
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="big",
        UploadId=first_id,
        MultipartUpload={"Parts": first_parts},
        IfNoneMatch="*",
    )
    with pytest.raises(ClientError) as error:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="big",
            UploadId=second_id,
            MultipartUpload={"Parts": second_parts},
            IfNoneMatch="*",
        )
    assert _status(error) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == b"first"


def test_multipart_completion_race(s3: Any, s3_bucket: BucketInfo) -> None:
    bucket = s3_bucket.bucket
    uploads = [_multipart(s3, bucket, "big", f"upload-{i}".encode()) for i in range(8)]
    barrier = threading.Barrier(len(uploads))
    outcomes: list[int] = [0] * len(uploads)

    def complete(i: int) -> None:
        upload_id, parts = uploads[i]
        barrier.wait()
        try:
            s3.complete_multipart_upload(
                Bucket=bucket,
                Key="big",
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
            outcomes[i] = 200
        except ClientError as exc:
            outcomes[i] = exc.response["ResponseMetadata"]["HTTPStatusCode"]

    threads = [threading.Thread(target=complete, args=(i,)) for i in range(len(uploads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [200] + [412] * (len(uploads) - 1)
    winner = outcomes.index(200)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == f"upload-{winner}".encode()


@pytest.fixture
def private_emulator() -> Iterator[S3Emulator]:
    # Its own server: reset() must not wipe the session emulator under other tests.
    with S3Emulator() as emulator:
        yield emulator


def test_reset_forgets_everything(private_emulator: S3Emulator) -> None:
    private_emulator.create_bucket("before-reset")
    client = private_emulator.client()
    client.put_object(Bucket="before-reset", Key="k", Body=b"v")
    private_emulator.reset()
    assert client.list_buckets()["Buckets"] == []


def test_start_failure_reports_stderr() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ServerStartError, match="Address already in use"):
            S3Emulator(port=port).start()


# IAM: what real S3 checks for each request. ListObjects(V2) need s3:ListBucket and
# HeadObject s3:GetObject; AWS has no s3:ListObjectsV2 or s3:HeadObject action.
IAM_BUCKET = "iam-bucket"
REAL_ACTIONS = [
    {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{IAM_BUCKET}"]},
    {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{IAM_BUCKET}/*"]},
]
OPERATION_NAMES = [
    {
        "Effect": "Allow",
        "Action": ["s3:ListObjectsV2", "s3:ListObjects"],
        "Resource": [f"arn:aws:s3:::{IAM_BUCKET}"],
    },
    {"Effect": "Allow", "Action": ["s3:HeadObject"], "Resource": [f"arn:aws:s3:::{IAM_BUCKET}/*"]},
]
# CreateBucket, PutObject, then four IAM calls per user: the rest is checked.
IAM_SETUP_ACTIONS = 2 + 4 * 2


@pytest.fixture(scope="module")
def iam_users() -> Iterator[dict[str, Any]]:
    with S3Emulator(env={"INITIAL_NO_AUTH_ACTION_COUNT": str(IAM_SETUP_ACTIONS)}) as emulator:
        admin = emulator.client()
        admin.create_bucket(Bucket=IAM_BUCKET)
        admin.put_object(Bucket=IAM_BUCKET, Key="k", Body=b"v")
        iam_client = boto3.client(
            "iam",
            endpoint_url=emulator.endpoint,
            aws_access_key_id=DUMMY_ACCESS_KEY_ID,
            aws_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
            region_name=DUMMY_REGION,
        )
        users: dict[str, Any] = {}
        for name, statements in (("real", REAL_ACTIONS), ("operations", OPERATION_NAMES)):
            iam_client.create_user(UserName=name)
            document = json.dumps({"Version": "2012-10-17", "Statement": statements})
            arn = iam_client.create_policy(PolicyName=name, PolicyDocument=document)
            iam_client.attach_user_policy(UserName=name, PolicyArn=arn["Policy"]["Arn"])
            key = iam_client.create_access_key(UserName=name)["AccessKey"]
            users[name] = emulator.client(
                aws_access_key_id=key["AccessKeyId"],
                aws_secret_access_key=key["SecretAccessKey"],
            )
        yield users


def test_iam_authorizes_s3_requests_as_their_iam_actions(iam_users: dict[str, Any]) -> None:
    client = iam_users["real"]
    assert [o["Key"] for o in client.list_objects_v2(Bucket=IAM_BUCKET)["Contents"]] == ["k"]
    assert [o["Key"] for o in client.list_objects(Bucket=IAM_BUCKET)["Contents"]] == ["k"]
    assert client.head_object(Bucket=IAM_BUCKET, Key="k")["ContentLength"] == 1
    assert client.get_object(Bucket=IAM_BUCKET, Key="k")["Body"].read() == b"v"
    with pytest.raises(ClientError) as denied:
        client.put_object(Bucket=IAM_BUCKET, Key="k2", Body=b"v")
    assert _status(denied) == (403, "AccessDenied")


def test_iam_does_not_know_s3_operation_names_as_actions(iam_users: dict[str, Any]) -> None:
    client = iam_users["operations"]
    for call in (
        lambda: client.list_objects_v2(Bucket=IAM_BUCKET),
        lambda: client.list_objects(Bucket=IAM_BUCKET),
        lambda: client.head_object(Bucket=IAM_BUCKET, Key="k"),
    ):
        with pytest.raises(ClientError) as denied:
            call()
        assert _status(denied)[0] == 403
