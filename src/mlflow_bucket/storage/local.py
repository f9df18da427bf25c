"""A local folder as an object store.

Objects are plain files, so a folder written by this backend is readable
with ordinary tools. Atomicity comes from the file system: every write goes
to a complete temporary file first, then ``os.replace`` (put) or ``os.link``
(create-if-absent: link fails if the name exists) moves it into place, so a
reader never sees a partial object. Custom metadata is not kept: a local
write is never retried, so the writer token is never needed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

from .base import BlobInfo, ListPage, ObjectInfo, ObjectStore, validate_key
from .errors import AlreadyExists, NotFound, PermissionDenied, StorageError

# Temporary files live here, under the store's folder so that os.link and
# os.replace stay on one file system; listings skip it.
TMP_DIR = ".mlflow-bucket-tmp"
COPY_BUFFER = 1024 * 1024


class LocalStore(ObjectStore):
    scheme = "file"

    def __init__(self, path: str | os.PathLike[str], **kwargs: object) -> None:
        self.path = Path(path).expanduser().resolve()
        super().__init__(str(self.path), "", **kwargs)  # type: ignore[arg-type]

    @property
    def uri(self) -> str:
        return self.path.as_uri()

    def _file(self, key: str) -> Path:
        return self.path.joinpath(*key.split("/"))

    def _fail(self, exc: OSError, operation: str, key: str) -> StorageError:
        url = self.url(key)
        if isinstance(exc, FileNotFoundError):
            return NotFound("no such object", operation=operation, url=url)
        if isinstance(exc, PermissionError):
            return PermissionDenied(str(exc), operation=operation, url=url)
        return StorageError(str(exc), operation=operation, url=url)

    def _write_temp(self, data: bytes) -> Path:
        tmp_dir = self.path / TMP_DIR
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / uuid.uuid4().hex
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp

    def _info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            version=f"{st.st_ino}-{st.st_mtime_ns}",
            updated=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def _place(self, key: str, data: bytes, exclusive: bool) -> ObjectInfo:
        operation = "create" if exclusive else "put"
        if self._file(key).is_dir():
            raise StorageError("a folder has that name", operation=operation, url=self.url(key))
        try:
            tmp = self._write_temp(data)
        except OSError as exc:
            raise self._fail(exc, operation, key) from exc
        return self._install(key, tmp, exclusive)

    def _install(self, key: str, tmp: Path, exclusive: bool) -> ObjectInfo:
        """Move the complete temporary file ``tmp`` into place as ``key``."""
        operation = "create" if exclusive else "put"
        target = self._file(key)
        try:
            # A concurrent delete may remove the parent folder between mkdir
            # and link (it prunes empty folders): make it again and retry.
            for _ in range(10):
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise StorageError(
                        "a parent of the key is an object",
                        operation=operation,
                        url=self.url(key),
                    ) from None
                try:
                    if exclusive:
                        os.link(tmp, target)
                    else:
                        os.replace(tmp, target)
                    return self._info(key, target.stat())
                except FileNotFoundError:
                    continue
            raise StorageError("folder kept vanishing", operation=operation, url=self.url(key))
        except FileExistsError:
            raise AlreadyExists("object exists", operation=operation, url=self.url(key)) from None
        except OSError as exc:
            raise self._fail(exc, operation, key) from exc
        finally:
            tmp.unlink(missing_ok=True)

    # -- whole files, streamed (storage/transfer.py) -------------------------

    def put_file(self, key: str, path: str) -> BlobInfo:
        """Copy a local file in as ``key``: streamed, never whole in memory,
        renamed into place once complete and fsync'd."""
        validate_key(key)
        if self._file(key).is_dir():
            raise StorageError("a folder has that name", operation="put", url=self.url(key))
        tmp_dir = self.path / TMP_DIR
        tmp = tmp_dir / uuid.uuid4().hex
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, COPY_BUFFER)
                dst.flush()
                os.fsync(dst.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise self._fail(exc, "put", key) from exc
        # The temporary folder stays: removing it could pull it from under
        # a concurrent writer between its mkdir and its open. Listings skip it.
        info = self._install(key, tmp, exclusive=False)
        return BlobInfo(key, info.size, info.version)

    def get_file(self, key: str, path: str) -> BlobInfo:
        """Copy ``key`` out to a local file, renamed into place once complete."""
        validate_key(key)
        head, tail = os.path.split(path)
        tmp = os.path.join(head, f".{tail}.mlflow-bucket-{uuid.uuid4().hex[:12]}.part")
        try:
            with open(self._file(key), "rb") as src:
                size = os.fstat(src.fileno()).st_size
                with open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, COPY_BUFFER)
            os.replace(tmp, path)
        except IsADirectoryError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise NotFound("no such object", operation="get", url=self.url(key)) from None
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise self._fail(exc, "get", key) from exc
        return BlobInfo(key, size, "")

    def _put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        return self._place(key, data, exclusive=False)

    def _create(self, key: str, data: bytes, metadata: Mapping[str, str]) -> ObjectInfo:
        return self._place(key, data, exclusive=True)

    def _get(self, key: str, start: int, end: int | None) -> bytes:
        try:
            with open(self._file(key), "rb") as f:
                f.seek(start)
                return f.read() if end is None else f.read(end - start)
        except IsADirectoryError:
            raise NotFound("no such object", operation="get", url=self.url(key)) from None
        except OSError as exc:
            raise self._fail(exc, "get", key) from exc

    def _head(self, key: str) -> ObjectInfo:
        try:
            st = self._file(key).stat()
        except OSError as exc:
            raise self._fail(exc, "head", key) from exc
        if not os.path.isfile(self._file(key)):
            raise NotFound("no such object", operation="head", url=self.url(key))
        return self._info(key, st)

    def _walk(self, directory: Path, rel: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            key = f"{rel}{entry.name}"
            if key == TMP_DIR:
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key + "/")
            elif entry.is_file():
                yield key, entry

    def _list_page(
        self,
        prefix: str,
        delimiter: str | None,
        start_after: str | None,
        max_results: int,
        token: str | None,
    ) -> ListPage:
        # Only the folder that holds the prefix's last segment needs walking.
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        start = self.path.joinpath(*base.split("/")) if base else self.path
        after = token or start_after
        found = sorted(
            (key, entry)
            for key, entry in self._walk(start, base)
            if key.startswith(prefix) and (after is None or key > after)
        )
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        last: str | None = None
        i = 0
        while i < len(found) and len(objects) + len(prefixes) < max_results:
            key, entry = found[i]
            rest = key[len(prefix) :]
            cut = rest.find(delimiter) if delimiter else -1
            if cut >= 0:
                rolled = prefix + rest[: cut + len(delimiter or "")]
                prefixes.append(rolled)
                last = rolled + "\U0010ffff"
                while i < len(found) and found[i][0].startswith(rolled):
                    i += 1
                continue
            with contextlib.suppress(FileNotFoundError):  # deleted while listing
                objects.append(self._info(key, entry.stat()))
            last = key
            i += 1
        return ListPage(objects, prefixes, last if i < len(found) else None)

    def _delete(self, key: str) -> None:
        target = self._file(key)
        try:
            target.unlink()
        except FileNotFoundError:
            return
        except IsADirectoryError:
            return
        except OSError as exc:
            raise self._fail(exc, "delete", key) from exc
        # Drop folders the delete emptied, up to the store's root, so that
        # listings of "directories" match the object stores'.
        parent = target.parent
        while parent != self.path:
            try:
                parent.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    break
                raise self._fail(exc, "delete", key) from exc
            parent = parent.parent
