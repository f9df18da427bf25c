"""The multipart path of ``mlflow server --serve-artifacts`` (GCS and S3)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow
import requests
from mlflow_bucket_plugins.artifacts import CloudArtifactRepository

BACKENDS = ["gcs", "fake_gcs", "s3"]


def test_proxied_multipart_upload(make_repo: Any, tmp_path: Path) -> None:
    """What ``mlflow server --serve-artifacts`` does for a client with
    MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD: hand out part URLs, let the client
    PUT straight to the bucket, then complete (or abort)."""
    repo = CloudArtifactRepository(make_repo().artifact_uri)
    chunk = 5 * 1024 * 1024
    src = tmp_path / "weights.bin"
    data = os.urandom(2 * chunk + 1234)
    src.write_bytes(data)

    created = repo.create_multipart_upload(str(src), 3, "model")
    parts = []
    for credential in created.credentials:
        start = (credential.part_number - 1) * chunk
        answer = requests.put(
            credential.url, data=data[start : start + chunk], headers=credential.headers
        )
        answer.raise_for_status()
        parts.append(
            mlflow.entities.multipart_upload.MultipartUploadPart(
                part_number=credential.part_number, etag=answer.headers.get("ETag", "")
            )
        )
    repo.complete_multipart_upload(str(src), created.upload_id, parts, "model")
    assert [f.path for f in repo.list_artifacts("model")] == ["model/weights.bin"]
    out = repo.download_artifacts("model/weights.bin", str(tmp_path))
    assert Path(out).read_bytes() == data
    assert [f.path for f in repo.list_artifacts()] == ["model"]  # no parts left over

    aborted = repo.create_multipart_upload(str(src), 2, "other")
    requests.put(aborted.credentials[0].url, data=data[:chunk]).raise_for_status()
    repo.abort_multipart_upload(str(src), aborted.upload_id, "other")
    assert repo.list_artifacts("other") == []
    assert json.dumps([f.path for f in repo.list_artifacts()]) == '["model"]'
