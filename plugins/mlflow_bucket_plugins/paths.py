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

    Symbolic links are followed only while they stay inside ``local_dir``:
    a link to a file elsewhere is skipped with a warning, so logging a
    folder never uploads what lies outside it. Linked folders are not
    descended (their targets, if inside, are walked where they really are),
    which also rules out loops.
    """
    root = os.path.realpath(local_dir)
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
            if os.path.islink(full):
                target = os.path.realpath(full)
                if os.path.commonpath([root, target]) != root:
                    log.warning(
                        "skipping %s: it links to %s, outside the folder being logged",
                        full,
                        target,
                    )
                    continue
            if not os.path.isfile(full):
                continue  # a dangling link, a socket, a FIFO
            out.append((full, clean(join(rel_dir, name))))
    return out
