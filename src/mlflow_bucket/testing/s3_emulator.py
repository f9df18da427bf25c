"""An S3 emulator for tests: moto's server in a subprocess, with object writes serialized.

``python -m mlflow_bucket.testing.s3_emulator [--host H] [--port P]`` serves the real
``moto.server`` WSGI application over HTTP (port 0 picks a free one, announced on stdout).
:class:`S3Emulator` starts and stops that subprocess from a test.

Why a lock in front of moto: moto checks conditional writes and then writes, without a lock
(``put_object``: look the key up, raise ``PreconditionFailed`` if it exists, ..., store the
key). Under concurrent requests two ``If-None-Match: *`` PUTs can both pass the check and
both "win", which real S3 never allows and which is exactly what a lock-free commit protocol
relies on. :class:`SerializedWrites` runs every mutating request (PUT, POST, DELETE, PATCH:
PutObject, CopyObject, UploadPart, CompleteMultipartUpload, DeleteObject(s), ...) behind one
lock. Request bodies are read before the lock is taken so a slow upload does not stall the
others.

Conditional writes in moto 5.2.5 (``moto/s3/responses.py``), as this emulator serves them:

* PutObject: ``If-None-Match: *`` → 412 ``PreconditionFailed`` when the key exists (any other
  If-None-Match value is ignored); ``If-Match: <etag>`` → 412 on an ETag mismatch, 404
  ``NoSuchKey`` when the key is missing.
* CompleteMultipartUpload: ``If-None-Match: *`` → 412 when the key exists, except that
  completing the *same* upload again is treated as idempotent and succeeds; ``If-Match`` is
  ignored.
* DeleteObject: ``If-Match`` honoured (412 / 404); ``x-amz-if-match-size`` and
  ``x-amz-if-match-last-modified-time`` ignored.
* CopyObject: destination ``If-None-Match`` / ``If-Match`` ignored (only the
  ``x-amz-copy-source-if-*`` conditions on the source are checked).
* Never returns 409 ``ConditionalRequestConflict`` (real S3 may, for racing conditional
  writes); with the lock the loser of a race always gets 412.

IAM, when enforced (``INITIAL_NO_AUTH_ACTION_COUNT``): S3 requests are authorized as the IAM
action S3 checks for them, as real S3 does: ListObjects(V2) as ``s3:ListBucket``,
HeadObject as ``s3:GetObject``, UploadPart as ``s3:PutObject``, ListParts as
``s3:ListMultipartUploadParts``, DeleteObjects as ``s3:DeleteObject``. moto's S3
layer still works that action out (its ``ACTION_MAP``) and puts it in the request's
``Action`` before authorizing, but from moto 5.2.6 the authorization takes the API operation
instead (``BaseResponse._get_action`` no longer reads ``Action``: it asks the botocore
router), so a policy with the real IAM actions (terraform/modules/s3-store/iam.tf) was refused
ListObjectsV2 and HeadObject, and only a policy naming ``s3:ListObjectsV2``/``s3:HeadObject``,
which AWS does not have, would pass. :func:`_authorize_s3_by_iam_action` hands moto's own
action back to the check (moto 5.2.5 and earlier did that already; then it changes nothing).
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import signal
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from mlflow_bucket.testing._process import ServerProcess, announce_ready, exit_with_parent

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "DUMMY_ACCESS_KEY_ID",
    "DUMMY_REGION",
    "DUMMY_SECRET_ACCESS_KEY",
    "S3Emulator",
    "SerializedWrites",
    "main",
]

DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"
DUMMY_REGION = "us-east-1"

_WRITE_METHODS = frozenset({"PUT", "POST", "DELETE", "PATCH"})
_READ_CHUNK = 1 << 20

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SerializedWrites:
    """WSGI middleware: mutating requests run one at a time (reads stay concurrent)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() not in _WRITE_METHODS:
            return self.app(environ, start_response)
        body = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        with self.lock:
            result = self.app(environ, start_response)
            # Drain inside the lock: a lazily produced response could still be writing.
            try:
                return [b"".join(result)]
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):  # chunked: the server's stream ends at the body
        return bytes(stream.read())
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    parts: list[bytes] = []
    while remaining > 0:
        chunk = stream.read(min(remaining, _READ_CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


class S3Emulator:
    """moto's S3 server as a subprocess; a context manager.

    ``env`` is added to the child's environment, e.g. ``{"INITIAL_NO_AUTH_ACTION_COUNT":
    "4"}`` to make moto enforce IAM (and verify SigV4 signatures) after four requests.
    ``serialize_writes=False`` serves moto unprotected, only to demonstrate the race.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        env: Mapping[str, str] | None = None,
        *,
        serialize_writes: bool = True,
        start_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.env = {
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": DUMMY_REGION,
            **(env or {}),
        }
        self.serialize_writes = serialize_writes
        self.start_timeout = start_timeout
        self._server: ServerProcess | None = None

    @property
    def endpoint(self) -> str:
        if self._server is None or self._server.port is None:
            raise RuntimeError("S3Emulator is not started")
        return f"http://{self.host}:{self._server.port}"

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("S3Emulator already started")
        args = ["--host", self.host, "--port", str(self.port)]
        if not self.serialize_writes:
            args.append("--no-serialize-writes")
        server = ServerProcess(__name__, args, env=self.env, name="S3 emulator (moto)")
        server.start(timeout=self.start_timeout, host=self.host)
        self._server = server
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every bucket and object (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def client(self, **kwargs: Any) -> S3Client:
        """A boto3 S3 client for this emulator (dummy credentials unless overridden)."""
        import boto3

        options: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "aws_access_key_id": self.env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": self.env["AWS_SECRET_ACCESS_KEY"],
            "region_name": self.env["AWS_DEFAULT_REGION"],
            **kwargs,
        }
        return boto3.client("s3", **options)

    def create_bucket(self, name: str) -> None:
        # Signed through boto3 so it also works once moto enforces IAM.
        self.client().create_bucket(Bucket=name)


_IAM_ACTION_PATCH = "_mlflow_bucket_iam_action"
# moto's hook every S3 handler calls to authenticate and authorize its request.
_S3_AUTHORIZE = "_authenticate_and_authorize_s3_action"


def _authorize_s3_by_iam_action() -> None:
    """Make moto authorize each S3 request as its IAM action (see the module docstring).

    moto's S3 handlers set ``self.data["Action"]`` to the IAM action (from ``ACTION_MAP``,
    or by hand: ``DeleteObject`` for DeleteObjects, ``PutObject`` for a POST upload) just
    before calling ``_authenticate_and_authorize_s3_action``, which builds the IAM request
    from ``self._get_action()``. For that one call ``_get_action`` answers the IAM action;
    afterwards the operation name is back, which moto needs to serialize the response.
    A request without an ``Action`` is authorized as moto does by default. moto makes a
    response object per request, so the override is never shared between threads.
    """
    from moto.s3.responses import S3Response

    authorize: Callable[[S3Response, str | None, str | None], None] = getattr(
        S3Response, _S3_AUTHORIZE
    )
    if getattr(authorize, _IAM_ACTION_PATCH, False):
        return

    @functools.wraps(authorize)
    def authorize_as_iam_action(
        self: S3Response, bucket_name: str | None = None, key_name: str | None = None
    ) -> None:
        action = self.data.get("Action")
        if isinstance(action, list):  # a query-string value
            action = action[0] if action else None
        if not isinstance(action, str) or not action:
            authorize(self, bucket_name, key_name)
            return
        overrides = vars(self)
        overrides["_get_action"] = lambda: action
        try:
            authorize(self, bucket_name, key_name)
        finally:
            overrides.pop("_get_action", None)

    setattr(authorize_as_iam_action, _IAM_ACTION_PATCH, True)
    setattr(S3Response, _S3_AUTHORIZE, authorize_as_iam_action)


def _serve(host: str, port: int, serialize_writes: bool) -> None:
    import logging

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import ThreadedWSGIServer

    # One log line per request would only slow the server down and fill its stderr file.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    class Server(ThreadedWSGIServer):
        request_queue_size = 1024  # many clients connect at once in race tests

    _authorize_s3_by_iam_action()
    app: WSGIApp = DomainDispatcherApplication(create_backend_app)
    if serialize_writes:
        app = SerializedWrites(app)
    server = Server(host, port, app, handler=MotoRequestHandler)
    bound_port = int(server.server_port)
    # moto builds some URLs (e.g. presigned POST redirects) from MOTO_PORT.
    os.environ["MOTO_PORT"] = str(bound_port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    exit_with_parent()
    announce_ready(host, bound_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--no-serialize-writes",
        action="store_true",
        help="serve moto without the write lock (only to demonstrate its race)",
    )
    args = parser.parse_args(argv)
    _serve(args.host, args.port, not args.no_serialize_writes)


if __name__ == "__main__":
    main()
