"""Artifacts: list a tree with sizes, copy what the destination lacks.

Both sides are MLflow artifact repositories (the bucket's is this
project's, which moves many files at once through the engine's transfers).
A file is copied when the destination has no file of that path and size, so
a copy that was cut short is finished by the next one and a finished one
costs a listing. Uploads are never visible half-written.
"""

from __future__ import annotations

import os
import posixpath
import tempfile

from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

# Runs whose artifacts are copied at once (each moves several files at once).
COPY_THREADS = 8


def repository(uri: str, tracking_uri: str | None) -> ArtifactRepository:
    return get_artifact_repository(uri, tracking_uri=tracking_uri)


def list_files(repo: ArtifactRepository, path: str | None = None) -> dict[str, int]:
    """{relative path: size} of every file under ``path``."""
    out: dict[str, int] = {}
    for info in repo.list_artifacts(path):
        if info.is_dir:
            out.update(list_files(repo, info.path))
        else:
            out[info.path] = int(info.file_size or 0)
    return out


def copy_tree(
    src_uri: str, dst_uri: str, src_tracking: str | None, dst_tracking: str | None
) -> int:
    """Copy the files under ``src_uri`` that ``dst_uri`` lacks; how many were copied."""
    src = repository(src_uri, src_tracking)
    files = list_files(src)
    if not files:
        return 0
    dst = repository(dst_uri, dst_tracking)
    have = list_files(dst)
    missing = sorted(p for p, size in files.items() if have.get(p) != size)
    if not missing:
        return 0
    with tempfile.TemporaryDirectory(prefix="mlflow-bucket-copy-") as tmp:
        if len(missing) == len(files):
            # All of it: one download, then one upload of many files at once.
            os.mkdir(os.path.join(tmp, "all"))
            local = src.download_artifacts("", os.path.join(tmp, "all"))
            dst.log_artifacts(local)
        else:
            for i, path in enumerate(missing):
                os.mkdir(os.path.join(tmp, str(i)))
                local = src.download_artifacts(path, os.path.join(tmp, str(i)))
                dst.log_artifact(local, posixpath.dirname(path) or None)
    return len(missing)
