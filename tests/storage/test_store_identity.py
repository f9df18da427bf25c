"""A store's identity: its URI, plus its endpoint unless that is the scheme's default.

Local state about a store (the spool, the object cache) is kept under a hash
of it, so ``s3://twin/team`` on two services never shares either. No
request is made: the endpoint is known from the options, the variables and
the configuration files, as the cloud clients read them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fsspec.asyn import sync

from mlflow_bucket.log import ObjectCache
from mlflow_bucket.log.cache import legacy_store_id, store_id
from mlflow_bucket.storage import ObjectStore, open_store
from mlflow_bucket.storage.endpoints import gcs_endpoint, normalize
from mlflow_bucket.storage.s3 import S3Store

URI = "s3://twin/team"
S3_OPTIONS: dict[str, Any] = {"key": "k", "secret": "s"}


@pytest.fixture(autouse=True)
def _no_cloud_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No endpoint, region or profile from this machine: only what a test sets."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name in (
            "STORAGE_EMULATOR_HOST",
            "GOOGLE_CLOUD_UNIVERSE_DOMAIN",
        ):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield


def _s3(**options: Any) -> S3Store:
    store = open_store(URI, **S3_OPTIONS, **options)
    assert isinstance(store, S3Store)
    return store


def _client_endpoint(store: S3Store) -> str:
    """Where botocore's own client for the store sends requests (made, not used)."""
    client = sync(store.fs.loop, store._client)
    return normalize(str(client.meta.endpoint_url))


def test_a_store_on_its_default_endpoint_is_its_uri_and_keeps_its_old_folder_name() -> None:
    for store in (
        _s3(client_kwargs={"region_name": "eu-west-1"}),
        open_store("gs://twin/team", token="anon"),
        open_store("memory://twin/team"),
    ):
        assert store.endpoint is None
        assert store.identity == store.uri
        assert store_id(store) == legacy_store_id(store)


def test_an_s3_endpoint_given_as_an_option_is_part_of_the_identity() -> None:
    a = _s3(endpoint_url="http://127.0.0.1:9000/")
    b = _s3(endpoint_url="http://127.0.0.1:9001")
    assert a.identity == f"{URI} at http://127.0.0.1:9000"
    assert b.identity == f"{URI} at http://127.0.0.1:9001"
    assert len({store_id(a), store_id(b), legacy_store_id(a)}) == 3
    assert a.endpoint == _client_endpoint(a)
    also = _s3(client_kwargs={"endpoint_url": "HTTP://127.0.0.1:9000"})
    assert also.identity == a.identity


def test_an_s3_endpoint_from_the_variables_is_part_of_the_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio.local:9000")
    assert _s3().identity == f"{URI} at http://minio.local:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.com:443/")
    store = _s3()
    assert store.identity == f"{URI} at https://s3.example.com"  # the S3 one wins
    assert store.endpoint == _client_endpoint(store)
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert _s3(client_kwargs={"region_name": "us-east-1"}).identity == URI


def test_an_s3_endpoint_from_the_aws_config_file_is_part_of_the_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "aws-config").write_text(
        "[default]\n"
        "endpoint_url = http://everything.local\n"
        "[profile minio]\n"
        "services = minio-s3\n"
        "[services minio-s3]\n"
        "s3 =\n"
        "  endpoint_url = http://minio.local:9000\n"
    )
    store = _s3()
    assert store.identity == f"{URI} at http://everything.local"
    assert store.endpoint == _client_endpoint(store)
    by_profile = _s3(profile="minio")
    assert by_profile.identity == f"{URI} at http://minio.local:9000"
    assert by_profile.endpoint == _client_endpoint(by_profile)
    monkeypatch.setenv("AWS_PROFILE", "minio")
    assert _s3().identity == f"{URI} at http://minio.local:9000"


def test_an_s3_bucket_in_another_aws_partition_is_another_store() -> None:
    china = _s3(client_kwargs={"region_name": "cn-north-1"})
    assert china.identity == f"{URI} at aws-cn"
    assert _s3(client_kwargs={"region_name": "us-gov-west-1"}).identity == f"{URI} at aws-us-gov"
    assert store_id(china) != store_id(_s3(client_kwargs={"region_name": "us-east-1"}))


def test_a_gcs_endpoint_is_part_of_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = "gs://twin/team"
    option = open_store(uri, token="anon", endpoint_url="http://127.0.0.1:4443/")
    assert option.identity == f"{uri} at http://127.0.0.1:4443"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "LocalHost:4443")  # gcsfs adds http://
    assert open_store(uri, token="anon").identity == f"{uri} at http://localhost:4443"
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_CLOUD_UNIVERSE_DOMAIN", "sovereign.example")
    assert open_store(uri, token="anon").identity == f"{uri} at https://storage.sovereign.example"


def test_a_local_folder_is_named_by_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "store")
    monkeypatch.chdir(tmp_path)
    here = open_store("store")
    assert here.endpoint is None
    assert here.identity == (tmp_path / "store").resolve().as_uri()
    monkeypatch.chdir(tmp_path.parent)
    assert open_store(str(tmp_path / "store")).identity == here.identity
    assert open_store(str(tmp_path / "link")).identity == here.identity
    assert open_store(str(tmp_path / "other")).identity != here.identity


def test_an_endpoint_is_compared_in_one_spelling_without_credentials() -> None:
    assert normalize(" HTTPS://User:Secret@S3.Example.COM:443/base/ ") == (
        "https://s3.example.com/base"
    )
    assert normalize("http://[::1]:80") == "http://[::1]"
    assert normalize("http://host:8080") == "http://host:8080"
    # Google's JSON API host and its mTLS host are one service: the default.
    assert gcs_endpoint("https://storage.googleapis.com/") is None
    assert gcs_endpoint("https://storage.mtls.googleapis.com") is None


def test_the_object_cache_of_a_uri_on_two_endpoints_is_two_folders(tmp_path: Path) -> None:
    """An emulator's generation numbers repeat: a shared cache would serve one
    service's object for the other's."""
    stores: list[ObjectStore] = [
        _s3(endpoint_url="http://127.0.0.1:9000"),
        _s3(endpoint_url="http://127.0.0.1:9001"),
        _s3(),
    ]
    folders = {ObjectCache.for_store(s, tmp_path).directory for s in stores}
    assert len(folders) == 3
