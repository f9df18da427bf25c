"""Chunked, parallel, verified file transfers between local files and a store.

One ``Transfers`` object moves a batch of files in either direction:

* Small files (up to one chunk) take one request each, many in flight.
* Large files are cut into parts sent in parallel: S3 multipart uploads,
  GCS parallel composite uploads (parts are temporary objects composed into
  the final one). A failed part is retried alone through the store's retry
  policy, so a fault costs at most that part.
* Large downloads are a few long ranged GETs at once, each streamed into
  the file at its offset as the bytes arrive and hashed on the way; a
  retry resumes at the first byte missing, so a fault costs only what was
  in flight.
* Memory is bounded by ``chunk_size`` x ``concurrency`` (a byte budget every
  in-memory buffer draws from), whatever the files' sizes or number;
  streamed ranges hold only the HTTP client's small read buffers.
* Every transfer is verified end to end: the uploader declares checksums
  the server checks on each request, then compares what the store reports
  for the finished object (CRC32C on GCS, the MD5/multipart ETag on S3,
  the size at least everywhere) with what it computed from the file. A
  download is checked the same way against the store's checksums.
* Nobody sees a partial file: an object appears only once whole (a single
  PUT, a completed multipart upload, a compose), and a downloaded file is
  written under a temporary name beside its destination and renamed.
"""

from __future__ import annotations

import logging
import math
import mimetypes
import os
import sys
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from .base import PART_SIZE_KEY, BlobInfo, ObjectStore, validate_key
from .checksums import (
    composite_matches,
    crc32_b64,
    crc32_combine,
    crc32_composite,
    crc32c,
    crc32c_combine,
    md5_digest,
    md5_hasher,
    multipart_etag,
)
from .errors import StorageError, TransientError

log = logging.getLogger(__name__)

P = TypeVar("P")

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 8 * MiB
DEFAULT_CONCURRENCY = 8
# Small files are mostly waiting on the network: more of them in flight.
DEFAULT_FILE_CONCURRENCY = 32
# S3's smallest part (all but the last) is 5 MiB.
MIN_CHUNK_SIZE = 5 * MiB
# The longest range one request of a download asks for: its bytes stream
# into the file, so its length costs no memory; longer ranges mean fewer
# requests, shorter ones shorter stragglers and less to redo if a range's
# retries give up.
MAX_RANGE = 64 * MiB
# A bar appears only for transfers still running after this many seconds.
PROGRESS_DELAY = 2.0


class ChecksumMismatch(StorageError):
    """What arrived is not what was sent: never accepted silently."""


class TransferFailed(StorageError):
    """Some files of a batch failed; ``failures`` maps each to its error."""

    def __init__(self, failures: dict[str, BaseException], total: int) -> None:
        self.failures = failures
        lines = "\n".join(f"  {name}: {exc}" for name, exc in list(failures.items())[:20])
        more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
        super().__init__(f"{len(failures)} of {total} file transfers failed:\n{lines}{more}")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


class ByteBudget:
    """At most ``limit`` bytes of file data held in memory at once.

    A request larger than the whole budget is let through alone, so that a
    part bigger than the budget (a huge file's parts grow past the chunk
    size) still makes progress instead of waiting forever.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, n: int) -> Iterator[None]:
        with self._cond:
            while self.used and self.used + n > self.limit:
                self._cond.wait()
            self.used += n
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


class Progress:
    """A byte-counting tqdm bar on stderr, shown only on a terminal and only
    for transfers that last longer than ``PROGRESS_DELAY`` seconds.

    ``MLFLOW_BUCKET_PROGRESS=0`` (or 1) forces it off (or on, terminal or not).
    """

    def __init__(self, total: int, desc: str, enabled: bool | None) -> None:
        if enabled is None:
            setting = os.environ.get("MLFLOW_BUCKET_PROGRESS", "").strip().lower()
            if setting in ("0", "false", "no", "off"):
                enabled = False
            elif setting in ("1", "true", "yes", "on"):
                enabled = True
            else:
                enabled = sys.stderr.isatty()
        self._bar: Any = None
        if enabled and total:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                delay=PROGRESS_DELAY,
                leave=False,
            )

    def update(self, n: int) -> None:
        if self._bar is not None and n:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@dataclass
class _Part:
    number: int  # from 1
    offset: int
    size: int


def _split(size: int, part_size: int) -> list[_Part]:
    count = max(1, math.ceil(size / part_size))
    return [_Part(i + 1, i * part_size, min(part_size, size - i * part_size)) for i in range(count)]


def _ranges(segments: list[_Part], concurrency: int) -> list[list[_Part]]:
    """Consecutive segments grouped into the ranges a download requests:
    about one per part in flight, so the whole file goes in one round of
    requests, each at most ``MAX_RANGE`` bytes long (a few segments)."""
    per_range = math.ceil(len(segments) / concurrency)
    per_range = max(1, min(per_range, MAX_RANGE // segments[0].size))
    return [segments[i : i + per_range] for i in range(0, len(segments), per_range)]


class _RangeWriter:
    """The sink of one ranged download: writes each piece of the body at its
    offset in the file as it arrives (``os.pwrite``; the file is shared by
    the ranges, which never overlap) and folds it into its segment's
    checksum (``kind``: "crc32c", "crc32", "md5" or None), so the pieces are
    neither joined nor read again. ``offset`` is the first byte not yet
    written: where a retry resumes.

    Called with the pieces in order, possibly in the HTTP client's event-loop
    thread: it does only the write and the hashing, both of which release
    the GIL.
    """

    def __init__(
        self,
        fd: int,
        segments: list[_Part],
        kind: str | None,
        advance: Callable[[int], None],
        where: str,
    ) -> None:
        self.fd = fd
        self.where = where
        self.segments = segments
        self.kind = kind
        self.advance = advance
        self.start = self.offset = segments[0].offset
        self.end = segments[-1].offset + segments[-1].size
        self._index = 0
        self.digests: dict[int, Any] = {}
        for segment in segments:
            if kind == "md5":
                self.digests[segment.number] = md5_hasher()
            elif kind:
                self.digests[segment.number] = 0

    def __call__(self, data: bytes) -> None:
        if self.offset + len(data) > self.end:
            raise ChecksumMismatch(
                f"bytes {self.start}-{self.end - 1}: got more than asked for",
                operation="download",
                url=self.where,
            )
        done = 0
        while done < len(data):
            segment = self.segments[self._index]
            stop = segment.offset + segment.size
            take = min(len(data) - done, stop - self.offset)
            # A whole piece as is; slices only where a segment ends inside one.
            piece = data if take == len(data) else data[done : done + take]
            self._hash(segment.number, piece)
            written = 0
            view = memoryview(piece)
            while written < take:
                written += os.pwrite(self.fd, view[written:], self.offset + written)
            self.offset += take
            done += take
            if self.offset == stop:
                self._index += 1
        self.advance(len(data))

    def _hash(self, number: int, piece: bytes) -> None:
        if self.kind == "crc32c":
            self.digests[number] = crc32c(piece, self.digests[number])
        elif self.kind == "crc32":
            self.digests[number] = zlib.crc32(piece, self.digests[number])
        elif self.kind == "md5":
            self.digests[number].update(piece)


def _read_at(fd: int, offset: int, size: int) -> bytes:
    chunks = []
    while size > 0:
        data = os.pread(fd, size, offset)
        if not data:
            break
        chunks.append(data)
        offset += len(data)
        size -= len(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _temp_path(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.mlflow-bucket-{uuid.uuid4().hex[:12]}.part")


def guess_content_type(name: str) -> str | None:
    kind, _ = mimetypes.guess_type(name)
    return kind


class Transfers:
    """Moves files between local paths and one store; a context manager.

    ``chunk_size``: part size of multipart transfers and the size up to
    which a file goes in one request. ``concurrency``: parts in flight, and
    with the chunk size the memory bound. ``file_concurrency``: files in
    flight (each holds at most a chunk, drawn from the same budget).
    ``progress``: None decides by terminal and duration (see ``Progress``).
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        chunk_size: int | None = None,
        concurrency: int | None = None,
        file_concurrency: int | None = None,
        progress: bool | None = None,
        description: str = "",
    ) -> None:
        self.store = store
        chunk = chunk_size or _env_int("MLFLOW_BUCKET_CHUNK_SIZE", DEFAULT_CHUNK_SIZE)
        self.chunk_size = max(chunk, MIN_CHUNK_SIZE) if store.max_parts else chunk
        self.concurrency = max(
            1, concurrency or _env_int("MLFLOW_BUCKET_TRANSFER_CONCURRENCY", DEFAULT_CONCURRENCY)
        )
        self.file_concurrency = max(
            1,
            file_concurrency
            or _env_int("MLFLOW_BUCKET_FILE_CONCURRENCY", DEFAULT_FILE_CONCURRENCY),
        )
        self.progress_enabled = progress
        self.description = description
        self.budget = ByteBudget(self.chunk_size * self.concurrency)
        # Two pools: a file's task waits on its parts, so parts must never
        # queue behind the file tasks that wait on them.
        self._files = ThreadPoolExecutor(self.file_concurrency, "mlflow-bucket-file")
        self._parts = ThreadPoolExecutor(self.concurrency, "mlflow-bucket-part")
        self._progress: Progress | None = None

    def __enter__(self) -> Transfers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._files.shutdown(wait=True, cancel_futures=True)
        self._parts.shutdown(wait=True, cancel_futures=True)

    # -- batches --------------------------------------------------------

    def upload(
        self, items: Sequence[tuple[str, str]], *, content_types: bool = True
    ) -> list[BlobInfo]:
        """Upload (local path, key) pairs; all or an error naming each failure."""
        sizes = [os.stat(path).st_size for path, _ in items]
        return self._batch(
            "Uploading",
            [
                (path, size, partial(self._upload_one, path, key, size, content_types))
                for (path, key), size in zip(items, sizes, strict=True)
            ],
        )

    def download(
        self, items: Sequence[tuple[str, str]], sizes: Sequence[int | None] | None = None
    ) -> list[BlobInfo]:
        """Download (key, local path) pairs. ``sizes`` (from a listing) spare a
        HEAD per small file: it goes in one GET, checked against the size and
        the checksums the GET returns."""
        known = list(sizes) if sizes is not None else [None] * len(items)
        return self._batch(
            "Downloading",
            [
                (key, size or 0, partial(self._download_one, key, path, size))
                for (key, path), size in zip(items, known, strict=True)
            ],
        )

    def _batch(
        self, verb: str, tasks: list[tuple[str, int, Callable[[], BlobInfo]]]
    ) -> list[BlobInfo]:
        total = sum(size for _, size, _ in tasks)
        desc = f"{verb} {self.description or self.store.uri}"
        self._progress = Progress(total, desc, self.progress_enabled)
        try:
            if len(tasks) == 1:
                name, _, fn = tasks[0]
                try:
                    return [fn()]
                except StorageError:
                    raise
                except OSError as exc:
                    raise TransferFailed({name: exc}, 1) from exc
            futures = [self._files.submit(fn) for _, _, fn in tasks]
            results: list[BlobInfo] = []
            failures: dict[str, BaseException] = {}
            for (name, _, _), future in zip(tasks, futures, strict=True):
                try:
                    results.append(future.result())
                except Exception as exc:
                    failures[name] = exc
            if failures:
                raise TransferFailed(failures, len(tasks))
            return results
        finally:
            self._progress.close()
            self._progress = None

    def _advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(n)

    # -- uploads --------------------------------------------------------

    def _upload_one(self, path: str, key: str, size: int, content_types: bool) -> BlobInfo:
        content_type = guess_content_type(path) if content_types else None
        if self.store.scheme == "file":
            # Same machine: a streamed copy, renamed into place.
            from .local import LocalStore

            assert isinstance(self.store, LocalStore)
            info = self.store.put_file(key, path)
            self._check_size(info, size, path)
            self._advance(size)
            return info
        if size <= self.chunk_size or not self.store.max_parts:
            return self._upload_small(path, key, size, content_type)
        return self._upload_parts(path, key, size, content_type)

    def _checksums(self, data: bytes) -> tuple[int | None, bytes | None]:
        kind = self.store.verify_kind
        return (
            crc32c(data) if kind == "crc32c" else None,
            md5_digest(data) if kind == "md5" else None,
        )

    def _upload_small(self, path: str, key: str, size: int, content_type: str | None) -> BlobInfo:
        with self.budget.hold(size):
            with open(path, "rb") as f:
                data = f.read()
            if len(data) != size:
                raise StorageError(f"{path} changed size while being uploaded")
            crc, md5 = self._checksums(data)
            store = self.store
            info = store.retry.call(
                lambda: store._put_blob(
                    key, data, crc32c=crc, md5=md5, content_type=content_type, metadata={}
                ),
                f"upload {path} to {store.url(key)}",
            )
        self._verify(info, size, crc, md5, None, path, "upload")
        self._advance(size)
        return info

    def _upload_parts(self, path: str, key: str, size: int, content_type: str | None) -> BlobInfo:
        store = self.store
        part_size = max(self.chunk_size, math.ceil(size / store.max_parts))
        parts = _split(size, part_size)
        metadata = {PART_SIZE_KEY: str(part_size)}
        upload_id = store.mpu_start(key, content_type=content_type, metadata=metadata)
        # Each part is hashed here, in its own thread, for only what the store
        # checks: CRC32C on GCS; on S3 an MD5 only when the upload does not
        # carry CRC32s, which the store then computes and checks itself.
        want_crc = store.verify_kind == "crc32c"
        want_md5 = store.verify_kind == "md5" and not _checksummed(store, upload_id)
        crcs: dict[int, int] = {}
        md5s: dict[int, bytes] = {}
        try:
            with open(path, "rb") as f:
                fd = f.fileno()

                def send(part: _Part) -> tuple[int, str]:
                    with self.budget.hold(part.size):
                        data = _read_at(fd, part.offset, part.size)
                        if len(data) != part.size:
                            raise StorageError(f"{path} shrank while being uploaded")
                        if want_crc:
                            crcs[part.number] = crc32c(data)
                        if want_md5:
                            md5s[part.number] = md5_digest(data)
                        token = store.mpu_put_part(
                            key,
                            upload_id,
                            part.number,
                            data,
                            crc32c=crcs.get(part.number, 0),
                            md5=md5s.get(part.number, b""),
                        )
                    self._advance(part.size)
                    return part.number, token

                tokens = self._run_parts(send, parts)
            if os.stat(path).st_size != size:
                raise StorageError(f"{path} changed size while being uploaded")
            try:
                info = store.mpu_complete(
                    key, upload_id, tokens, content_type=content_type, metadata=metadata
                )
            except ChecksumMismatch as exc:
                raise ChecksumMismatch(
                    f"upload of {path} is corrupt: {exc.message}", operation="upload", url=exc.url
                ) from exc
        except BaseException:
            try:
                store.mpu_abort(key, upload_id)
            except Exception as exc:  # the original error matters more
                log.warning("could not abort the upload of %s: %s", store.url(key), exc)
            raise
        crc = self._combined_crc(parts, crcs) if crcs else None
        etag = multipart_etag([md5s[p.number] for p in parts]) if md5s else None
        self._verify(info, size, crc, None, etag, path, "upload")
        return info

    def _run_parts(self, fn: Callable[[P], Any], parts: Sequence[P]) -> list[Any]:
        futures: list[Future[Any]] = [self._parts.submit(fn, part) for part in parts]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            exc = future.exception()
            if exc is not None:
                # Stop sending the rest: the transfer has failed already.
                for other in pending:
                    other.cancel()
                wait(pending)
                raise exc
        return [future.result() for future in futures]

    @staticmethod
    def _combined_crc(parts: list[_Part], crcs: dict[int, int]) -> int:
        crc = crcs[parts[0].number]
        for part in parts[1:]:
            crc = crc32c_combine(crc, crcs[part.number], part.size)
        return crc

    # -- downloads ------------------------------------------------------

    def _download_one(self, key: str, path: str, size: int | None) -> BlobInfo:
        # The reads below go to the backend's primitives: the key is checked
        # here, as every public entry point of the store checks it.
        validate_key(key)
        store = self.store
        if store.scheme == "file":
            from .local import LocalStore

            assert isinstance(store, LocalStore)
            info = store.get_file(key, path)
            if size is not None:
                self._check_size(info, size, path)
            self._advance(info.size)
            return info
        if size is not None and size <= self.chunk_size:
            return self._download_small(key, path, size, None)
        stat = store.retry.call(lambda: store._stat_blob(key), f"head {store.url(key)}")
        if stat.size <= self.chunk_size or not store.max_parts:
            return self._download_small(key, path, stat.size, stat)
        return self._download_parts(key, path, stat)

    def _download_small(self, key: str, path: str, size: int, stat: BlobInfo | None) -> BlobInfo:
        store = self.store
        with self.budget.hold(size):
            data, sent = store.retry.call(
                lambda: store._get_blob(key, 0, None, stat.version if stat else None),
                f"get {store.url(key)}",
            )
            reference = sent or stat or BlobInfo(key, len(data), "")
            if len(data) != (stat.size if stat else size):
                raise ChecksumMismatch(
                    f"got {len(data)} bytes, expected {stat.size if stat else size}",
                    operation="download",
                    url=f"{store.url(key)} -> {path}",
                )
            crc, md5 = self._checksums(data)
            self._verify(reference, len(data), crc, md5, None, path, "download", local_md5=md5)
            tmp = _temp_path(path)
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                _unlink(tmp)
                raise
        self._advance(len(data))
        return reference

    def _download_parts(self, key: str, path: str, stat: BlobInfo) -> BlobInfo:
        """A large object in a few long ranges at once, each streamed into the
        file at its offset as its bytes arrive, hashed per segment on the way
        (see ``_RangeWriter``): no buffer the size of a range, no copy, no
        second pass over the file, and a fault costs only the bytes in flight
        (the retry resumes where they stopped)."""
        store = self.store
        segment_size = self.chunk_size
        aligned = False
        if "-" in stat.version and store.verify_kind == "md5":
            # Segments matching the upload's parts let the multipart ETag (or
            # S3's COMPOSITE CRC32) be re-derived from the pieces; without a
            # recorded part size, try the part size of the common uploaders
            # (ours, boto3, MLflow). The part count ends the ETag, even
            # where it is not an MD5 (SSE-KMS).
            count = stat.version.rsplit("-", 1)[1]
            for guess in (stat.part_size, self.chunk_size, 8 * MiB, 10 * MiB, 16 * MiB):
                if guess and count.isdigit() and math.ceil(stat.size / guess) == int(count):
                    segment_size, aligned = guess, True
                    break
        segments = _split(stat.size, segment_size)
        # S3's CRC32 of the object, when it has one (ours and boto3's uploads
        # do): checked with a CRC32 per segment, several times cheaper than
        # the MD5s an ETag needs, and no second pass over a single-part object.
        crc32_check = _crc32_check(stat, aligned) if store.verify_kind == "md5" else None
        kind: str | None = None
        if store.verify_kind == "crc32c":
            kind = "crc32c"
        elif crc32_check:
            kind = "crc32"
        elif store.verify_kind == "md5" and aligned and stat.etag:
            kind = "md5"
        digests: dict[int, Any] = {}
        where = f"{store.url(key)} -> {path}"
        tmp = _temp_path(path)
        try:
            with open(tmp, "wb") as f:
                f.truncate(stat.size)
                fd = f.fileno()

                def fetch(group: list[_Part]) -> None:
                    writer = _RangeWriter(fd, group, kind, self._advance, where)
                    self._read_range(key, stat.version, writer, path)
                    digests.update(writer.digests)

                self._run_parts(fetch, _ranges(segments, self.concurrency))
            crc = self._combined_crc(segments, digests) if kind == "crc32c" else None
            etag = None
            if kind == "md5":
                etag = multipart_etag([digests[p.number].digest() for p in segments])
            local_md5 = None
            if crc32_check:
                self._verify_crc32(stat, segments, digests, crc32_check, path)
            elif store.verify_kind == "md5" and stat.md5 is not None and etag is None:
                # A single-part object with only an MD5 (no CRC32): the MD5
                # of the whole is sequential, so it takes a pass of its own.
                local_md5 = _file_md5(tmp)
            self._verify(stat, stat.size, crc, local_md5, etag, path, "download")
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
        return stat

    def _read_range(self, key: str, version: str, writer: _RangeWriter, path: str) -> None:
        """Fill ``writer``'s range, retried; each attempt resumes at the first
        byte not yet written. An attempt that moved the range forward before
        failing earns a fresh retry budget: a long range on a slow link must
        not run out of budget merely by lasting long."""
        store = self.store
        stream = getattr(store, "_read_into", None)
        end = writer.end
        describe = f"get {store.url(key)} bytes {writer.start}-{end - 1}"

        def attempt() -> None:
            if stream is not None:
                stream(key, writer.offset, end, version, writer)
            else:  # a backend without streaming reads: one buffer per attempt
                data, _ = store._get_blob(key, writer.offset, end, version)
                writer(data)

        while True:
            before = writer.offset
            try:
                store.retry.call(attempt, describe)
                break
            except TransientError:
                if writer.offset == before:
                    raise
                log.debug("resuming %s at byte %d", describe, writer.offset)
        if writer.offset != end:
            raise ChecksumMismatch(
                f"bytes {writer.start}-{end - 1}: got {writer.offset - writer.start}",
                operation="download",
                url=f"{store.url(key)} -> {path}",
            )

    # -- verification ---------------------------------------------------

    def _verify_crc32(
        self,
        remote: BlobInfo,
        parts: list[_Part],
        crc32s: dict[int, int],
        check: tuple[str, bool, bool],
        path: str,
    ) -> None:
        """The parts' CRC32s against S3's CRC32 of the object: COMPOSITE (of
        the part CRC32s: ranges must match the upload's parts) or FULL_OBJECT
        (the CRC32 of the whole, combined from the parts' whatever the ranges).
        When the store does not say which (moto), either may match."""
        stored, composite, full = check
        ordered = [crc32s[p.number] for p in parts]
        local = []
        if composite:
            local.append(crc32_composite([crc32_b64(c) for c in ordered]))
            if composite_matches(local[-1], stored):
                return
        if full:
            whole = ordered[0]
            for part in parts[1:]:
                whole = crc32_combine(whole, crc32s[part.number], part.size)
            local.append(crc32_b64(whole))
            if local[-1] == stored:
                return
        raise ChecksumMismatch(
            f"download of {path} is corrupt: CRC32 {' or '.join(local)} locally, "
            f"{stored} in the store",
            operation="download",
            url=self.store.url(remote.key),
        )

    def _check_size(self, info: BlobInfo, size: int, path: str) -> None:
        if info.size != size:
            raise ChecksumMismatch(
                f"{path}: {size} bytes locally, {info.size} in the store",
                operation="verify",
                url=self.store.url(info.key),
            )

    def _verify(
        self,
        remote: BlobInfo,
        size: int,
        crc: int | None,
        md5: bytes | None,
        etag: str | None,
        path: str,
        direction: str,
        local_md5: bytes | None = None,
    ) -> None:
        """Compare what the store reports with what was computed locally.

        Only checksums both sides have are compared; the size always is.
        """
        url = self.store.url(remote.key)
        problems = []
        if remote.size != size:
            problems.append(f"size {size} locally, {remote.size} in the store")
        if crc is not None and remote.crc32c is not None and crc != remote.crc32c:
            problems.append(f"CRC32C {crc:08x} locally, {remote.crc32c:08x} in the store")
        md5 = md5 or local_md5
        if md5 is not None and remote.md5 is not None and md5 != remote.md5:
            problems.append(f"MD5 {md5.hex()} locally, {remote.md5.hex()} in the store")
        # Backends leave ``etag`` out where it is not MD5-based (S3 SSE-KMS/C).
        if etag is not None and remote.etag and "-" in remote.etag and etag != remote.etag:
            problems.append(f"multipart ETag {etag} locally, {remote.etag} in the store")
        if problems:
            raise ChecksumMismatch(
                f"{direction} of {path} is corrupt: " + "; ".join(problems),
                operation=direction,
                url=url,
            )


def _crc32_check(info: BlobInfo, aligned: bool) -> tuple[str, bool, bool] | None:
    """How to check a download against S3's CRC32 of the object
    (``S3BlobInfo.crc32``), if it has one: (the stored value, whether it may
    be COMPOSITE, whether it may be FULL_OBJECT). None when it cannot be
    checked: no CRC32, or a COMPOSITE one with ranges unlike the parts."""
    stored = getattr(info, "crc32", None)
    if not stored:
        return None
    kind = getattr(info, "crc32_type", None)
    multipart = "-" in info.version
    # S3 marks a composite value with the part count ("...==-N").
    composite = multipart and aligned and kind != "FULL_OBJECT"
    full = kind != "COMPOSITE" and not ("-" in stored and kind is None)
    if not multipart:
        composite, full = False, True  # one part: the CRC32 of the whole
    return (str(stored), composite, full) if composite or full else None


def _checksummed(store: ObjectStore, upload_id: str) -> bool:
    """Whether the store checksums this upload's parts itself (S3 uploads
    carrying CRC32s: ``S3Store.mpu_checksummed``)."""
    check = getattr(store, "mpu_checksummed", None)
    return bool(check(upload_id)) if check is not None else False


def _file_md5(path: str) -> bytes:
    digest = md5_hasher()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            digest.update(block)
    return digest.digest()


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
