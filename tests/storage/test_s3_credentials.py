"""An S3 store without credentials fails at once with a clear error.

botocore raises NoCredentialsError before any request; it is not a network
fault, so retrying it (for the policy's whole deadline) only hides the fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_bucket.storage import open_store
from mlflow_bucket.storage.errors import PermissionDenied
from mlflow_bucket.testing.pytest_plugin import BucketInfo

pytestmark = pytest.mark.emulator


def test_missing_credentials_are_reported_once_not_retried(
    s3_bucket: BucketInfo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [*s3_bucket.env, "AWS_PROFILE", "AWS_SESSION_TOKEN"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_bucket.env["AWS_ENDPOINT_URL"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_bucket.env["AWS_DEFAULT_REGION"])
    # No shared files and no instance metadata: nowhere to find credentials.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # A retried error would take the policy's attempts; one is all it may take.
    monkeypatch.setenv("MLFLOW_BUCKET_RETRY_ATTEMPTS", "1000")
    monkeypatch.setenv("MLFLOW_BUCKET_RETRY_DEADLINE", "600")
    with (
        open_store(f"s3://{s3_bucket.bucket}/p") as store,
        pytest.raises(PermissionDenied, match="credentials") as info,
    ):
        store.get("some/key")
    assert "doctor" in str(info.value)
