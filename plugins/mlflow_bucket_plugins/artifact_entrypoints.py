"""The ``mlflow.artifact_repository`` entry points.

Kept apart from ``artifacts`` and free of MLflow imports on purpose: any
``import mlflow...`` loads MLflow's repository registry, which loads these
entry points; were they in a module that was itself being imported (a test
importing ``artifacts`` first), the registry would find it half-initialised
and silently keep MLflow's own gs:// and s3:// repositories.

``MLFLOW_BUCKET_ARTIFACTS=builtin`` (read each time a repository is made)
switches gs:// and s3:// back to MLflow's built-in repositories.
"""

from __future__ import annotations

import os
from typing import Any

SWITCH = "MLFLOW_BUCKET_ARTIFACTS"


def use_builtin() -> bool:
    return os.environ.get(SWITCH, "").strip().lower() in ("builtin", "mlflow", "0", "off")


def gcs_artifact_repository(
    artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
) -> Any:
    if use_builtin():
        from mlflow.store.artifact.gcs_artifact_repo import GCSArtifactRepository

        return GCSArtifactRepository(
            artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri
        )
    from .artifacts import CloudArtifactRepository

    return CloudArtifactRepository(artifact_uri, tracking_uri, registry_uri)


def s3_artifact_repository(
    artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
) -> Any:
    if use_builtin():
        from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository

        return S3ArtifactRepository(
            artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri
        )
    from .artifacts import CloudArtifactRepository

    return CloudArtifactRepository(artifact_uri, tracking_uri, registry_uri)


def memory_artifact_repository(
    artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
) -> Any:
    from .artifacts import BucketArtifactRepository

    return BucketArtifactRepository(artifact_uri, tracking_uri, registry_uri)
