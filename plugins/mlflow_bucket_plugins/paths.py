"""Artifact paths: relative, POSIX, and never outside the run's root.

An artifact path names an object under the repository's root. Paths that
could name something else (a parent folder, an absolute path, a Windows
path, a NUL-truncated name) are refused with MLflow's INVALID_PARAMETER_VALUE
rather than normalised into something the caller did not mean.
"""

from __future__ import annotations

import logging
import os
import re

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mlflow_bucket.storage.base import TMP_PREFIX

log = logging.getLogger(__name__)

_DRIVE = re.compile(r"^[A-Za-z]:")


def _refuse(path: str, why: str) -> MlflowException:
    return MlflowException(
        f"Invalid artifact path {path!r}: {why}", error_code=INVALID_PARAMETER_VALUE
    )


def clean(path: str | None) -> str:
    """A path relative to the repository's root; '' for the root itself.

    Empty and '.' segments (``a//b``, ``./a``, a trailing '/') are dropped:
    they name the same object. Everything that could escape is refused.
    """
    if path is None:
        return ""
    if not isinstance(path, str):
        raise _refuse(repr(path), "not a string")
    if "\x00" in path:
        raise _refuse(path, "it contains a NUL character")
    if "\\" in path:
        raise _refuse(path, "it contains a backslash; artifact paths use '/'")
    if path.startswith("/") or _DRIVE.match(path):
        raise _refuse(path, "it is absolute; artifact paths are relative to the run's root")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _refuse(path, "'..' would leave the run's artifact root")
    if TMP_PREFIX in parts:
        raise _refuse(path, f"{TMP_PREFIX!r} is reserved for unfinished uploads")
    return "/".join(parts)


def file_name(local_file: str | os.PathLike[str]) -> str:
    """The artifact name of a local file: its base name, checked like a path."""
    name = os.path.basename(os.fspath(local_file))
    if not name or name in (".", ".."):
        raise _refuse(name, "a file to log needs a name")
    return clean(name)


def join(*parts: str) -> str:
    return "/".join(part for part in parts if part)


def is_hidden(rel: str) -> bool:
    """Temporary objects of unfinished uploads, never shown as artifacts."""
    return TMP_PREFIX in rel.split("/")


def walk_files(local_dir: str) -> list[tuple[str, str]]:
    """(local path, relative artifact path) of every regular file under ``local_dir``.

    As MLflow's own repositories do (``os.walk``, then each file opened): a
    link to a file is logged with the content it points to, wherever that
    lies (a Hugging Face snapshot's files link to ``../../blobs/...``);
    linked folders are not descended, which also rules out loops. A dangling
    link is skipped with a warning (MLflow's own repositories fail on it).
    """
    out: list[tuple[str, str]] = []
    for current, dirs, files in os.walk(local_dir, followlinks=False):
        rel_dir = os.path.relpath(current, local_dir)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        for name in dirs:
            full = os.path.join(current, name)
            if os.path.islink(full):
                log.warning("not following linked folder %s while logging %s", full, local_dir)
        for name in sorted(files):
            full = os.path.join(current, name)
            if not os.path.isfile(full):
                if os.path.islink(full):
                    log.warning("skipping %s: it links to nothing", full)
                continue  # a dangling link, a socket, a FIFO
            out.append((full, clean(join(rel_dir, name))))
    return out
