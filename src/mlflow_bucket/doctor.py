"""``mlflow-bucket doctor``: check that a store works for this machine.

Each check passes, warns or fails, and a failure says how to fix it. The
checks touch only a probe prefix (``.doctor/``) under the store's root and
remove what they wrote; the format marker is read, never written, and the
local spool is looked at, never uploaded.

Credentials are reported by where they were found (their kind, a profile
name), never by their value.

Whether MLflow itself resolves the store's URI to mlflow-bucket's classes
is checked on the MLflow side (``mlflow_bucket_plugins.resolution``, which
opens its stores on a probe prefix under ``.doctor/`` too); the command line
adds those checks to the report (``report(more=...)``), as this module
imports no MLflow.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .config import Settings
from .marker import FORMAT_VERSION, UnknownFormat, read_marker
from .redact import redact
from .storage import (
    AlreadyExists,
    NotFound,
    ObjectStore,
    PermissionDenied,
    StorageError,
)

PROBE_PREFIX = ".doctor/"
# Beyond this the store's clock and ours disagree enough to matter for
# retention windows and for timestamps MLflow shows.
SKEW_WARN_SECONDS = 60.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "pass", "warn" or "fail"
    detail: str
    fix: str = ""

    def render(self) -> str:
        """The check as printed: redacted, since a detail may quote a client's error."""
        line = f"[{self.status.upper():4}] {self.name}: {self.detail}"
        text = f"{line}\n       fix: {self.fix}" if self.fix and self.status != "pass" else line
        return redact(text)


def _denied(action: str, store: ObjectStore, exc: StorageError) -> Check:
    return Check(
        action,
        "fail",
        str(exc),
        f"grant these credentials {action} on {store.uri} "
        "(the Terraform modules' writer role for logging, reader role for the UI)",
    )


def _reachable(store: ObjectStore) -> Check:
    try:
        store.list_page("", max_results=1)
    except NotFound as exc:
        return Check("bucket reachable", "fail", str(exc), "check the bucket name in the URI")
    except PermissionDenied as exc:
        return _denied("list", store, exc)
    except StorageError as exc:
        return Check(
            "bucket reachable",
            "fail",
            str(exc),
            "check the network, the endpoint (STORAGE_EMULATOR_HOST, AWS_ENDPOINT_URL) "
            "and the credentials (gcloud auth application-default login, AWS profile)",
        )
    return Check("bucket reachable", "pass", f"listed {store.uri}")


def _read(store: ObjectStore) -> Check:
    try:
        store.get(f"{PROBE_PREFIX}absent-{uuid.uuid4().hex}")
    except NotFound:
        return Check("read", "pass", "objects can be read (a missing one answers 404)")
    except PermissionDenied as exc:
        return _denied("read", store, exc)
    except StorageError as exc:
        return Check("read", "fail", str(exc), "see the error above")
    return Check("read", "fail", "a random key exists?", "report this")


def _write_cycle(store: ObjectStore) -> Iterator[Check]:
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    payload = uuid.uuid4().bytes
    try:
        store.create(key, payload)
    except PermissionDenied as exc:
        yield _denied("write", store, exc)
        return
    except StorageError as exc:
        yield Check("write", "fail", str(exc), "see the error above")
        return
    try:
        ok = store.get(key) == payload
        yield Check(
            "write",
            "pass" if ok else "fail",
            "an object written reads back intact" if ok else "read back other bytes",
            "" if ok else "the endpoint altered the object: check any proxy in between",
        )
        try:
            store.create(key, b"second writer")
        except AlreadyExists:
            yield Check("create-if-absent", "pass", "a second create of one key was refused")
        else:
            yield Check(
                "create-if-absent",
                "fail",
                "a second create of the same key overwrote it",
                "this endpoint ignores conditional writes (ifGenerationMatch=0 / "
                "If-None-Match: *); concurrent writers would lose data: use GCS, S3 "
                "(since Aug 2024) or an emulator that honours preconditions",
            )
    finally:
        try:
            store.delete(key)
        except PermissionDenied as exc:
            yield _denied("delete", store, exc)
        except StorageError as exc:
            yield Check("delete", "fail", str(exc), "see the error above")
        else:
            gone = not store.exists(key)
            yield Check(
                "delete",
                "pass" if gone else "fail",
                "the probe object was removed" if gone else "the probe object is still there",
            )


def _clock(store: ObjectStore) -> Check:
    try:
        server = store.server_time()
    except StorageError as exc:
        return Check("clock", "warn", f"could not read the store's clock: {exc}")
    skew = (datetime.now(UTC) - server).total_seconds()
    if abs(skew) > SKEW_WARN_SECONDS:
        return Check(
            "clock",
            "warn",
            f"this machine's clock is {skew:+.0f}s off the store's",
            "enable NTP (timedatectl set-ntp true); ordering never depends on clocks, "
            "but run times shown in the UI do",
        )
    return Check("clock", "pass", f"{skew:+.1f}s from the store's clock (1 s resolution)")


def _latency(store: ObjectStore, samples: int = 5) -> Check:
    times: list[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        try:
            store.list_page(PROBE_PREFIX, max_results=1)
        except StorageError:
            break
        times.append(time.perf_counter() - start)
    if not times:
        return Check("latency", "warn", "no request succeeded")
    median_ms = statistics.median(times) * 1000
    return Check("latency", "pass", f"median {median_ms:.0f} ms per request over {len(times)}")


def _gcs_credentials(options: Mapping[str, Any]) -> Check:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        return Check("credentials", "pass", f"none needed: an emulator at {emulator}")
    if "token" in options:
        return Check("credentials", "pass", "given in the storage options")
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        return Check(
            "credentials", "fail", "google-auth is not installed",
            'pip install "mlflow-bucket[gcs]"',
        )  # fmt: skip
    try:
        credentials, project = google.auth.default()
    except DefaultCredentialsError as exc:
        return Check(
            "credentials",
            "fail",
            f"no Application Default Credentials ({str(exc).splitlines()[0]})",
            "gcloud auth application-default login (a laptop), GOOGLE_APPLICATION_CREDENTIALS "
            "pointing at a key file, or a VM/CI service account",
        )
    where = (
        "GOOGLE_APPLICATION_CREDENTIALS"
        if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        else "Application Default Credentials"
    )
    suffix = f", project {project}" if project else ""
    return Check("credentials", "pass", f"{where} ({type(credentials).__name__}{suffix})")


def _s3_credentials(options: Mapping[str, Any]) -> Check:
    if options.get("key") or options.get("anon"):
        return Check("credentials", "pass", "given in the storage options")
    try:
        import botocore.session
        from botocore.exceptions import BotoCoreError
    except ImportError:
        return Check(
            "credentials", "fail", "botocore is not installed", 'pip install "mlflow-bucket[s3]"'
        )
    profile = options.get("profile")
    try:
        credentials = botocore.session.Session(profile=profile).get_credentials()
    except BotoCoreError as exc:
        return Check(
            "credentials", "fail", str(exc), "check the profile name (aws configure list-profiles)"
        )
    if credentials is None:
        return Check(
            "credentials",
            "fail",
            "the AWS credential chain found none"
            + (f" for profile {profile!r}" if profile else ""),
            "aws configure / aws sso login, AWS_PROFILE, AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or an instance/task role",
        )
    source = f"profile {profile!r}, " if profile else ""
    return Check("credentials", "pass", f"{source}found by the AWS chain ({credentials.method})")


def _credentials(store: ObjectStore, options: Mapping[str, Any]) -> Check:
    fs = getattr(store, "fs", None)
    if store.scheme == "s3" and fs is not None and (getattr(fs, "key", None) or fs.anon):
        # Opened with explicit keys (storage options from code, not a file).
        options = {**options, "key": True}
    if store.scheme == "gs":
        return _gcs_credentials(options)
    if store.scheme == "s3":
        return _s3_credentials(options)
    return Check("credentials", "pass", f"none needed ({store.scheme} store)")


def _format(store: ObjectStore) -> Check:
    try:
        doc = read_marker(store)
    except UnknownFormat as exc:
        return Check(
            "format version", "fail", str(exc),
            "point the URI at an mlflow-bucket store's root, or upgrade mlflow-bucket",
        )  # fmt: skip
    except StorageError as exc:
        return Check("format version", "fail", str(exc), "see the error above")
    if doc is None:
        # An empty store: the first process that opens it writes the marker.
        return Check(
            "format version",
            "pass",
            "no format marker yet (an empty store; `mlflow-bucket init` or the first MLflow "
            "process writes it)",
        )
    created = doc.get("created_by")
    by = f", created by mlflow-bucket {created}" if created else ""
    return Check(
        "format version",
        "pass",
        f"version {doc['version']} (this release reads {FORMAT_VERSION}){by}",
    )


def _spool(store: ObjectStore, settings: Settings) -> Check:
    from .spool_state import orphaned, spool_dir, spool_folders

    base = spool_dir(store, settings)
    folders = spool_folders(base)
    dead = orphaned(folders)
    if dead:
        batches = sum(f.batches + f.inflight for f in dead)
        oldest = min((f.oldest for f in dead if f.oldest), default=None)
        since = f", the oldest from {oldest:%Y-%m-%d %H:%M} UTC" if oldest else ""
        return Check(
            "spool",
            "warn",
            f"{batches} batch(es) logged by {len(dead)} process(es) that ended before "
            f"uploading them wait in {base}{since}",
            "mlflow-bucket flush (or any MLflow process that opens this store uploads them)",
        )
    live = [f for f in folders if f.alive]
    if live:
        queued = sum(f.batches for f in live)
        return Check("spool", "pass", f"{len(live)} running process(es), {queued} batch(es) queued")
    return Check("spool", "pass", f"nothing waiting in {base}")


def run_checks(
    store: ObjectStore,
    *,
    storage_options: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> list[Check]:
    """Every check, in order; the store's are skipped without credentials or if it
    cannot be reached.

    ``settings`` locate the local spool (default: the environment's).
    """
    results = [_credentials(store, storage_options or {})]
    # Without credentials every request fails, slowly (each is retried):
    # the fix above comes first.
    if results[-1].status != "fail":
        results.append(_reachable(store))
    if results[-1].status != "fail":
        results.append(_read(store))
        results.extend(_write_cycle(store))
        results.append(_clock(store))
        results.append(_latency(store))
        results.append(_format(store))
    results.append(_spool(store, settings or Settings.from_env()))
    return results


# Checks whose failure means the store cannot be reached from here.
REACH_CHECKS = ("credentials", "bucket reachable", "list", "read")


def store_unreachable(checks: Sequence[Check]) -> bool:
    """Whether one of ``checks`` found the store unreachable from here (no
    credentials, no listing, no read): checks that open the store would only fail too."""
    return any(c.status == "fail" and c.name in REACH_CHECKS for c in checks)


def report(
    store: ObjectStore,
    out: Callable[[str], None] = print,
    *,
    storage_options: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
    more: Callable[[list[Check]], Iterable[Check]] | None = None,
) -> int:
    """Run the checks, print them; exit status 0 if none failed, else 1.

    ``more`` gets the checks' results and returns further checks to report
    (the command line adds the MLflow side's: this module imports no MLflow).
    """
    out(f"mlflow-bucket doctor: {redact(store.uri)}")
    results = run_checks(store, storage_options=storage_options, settings=settings)
    if more is not None:
        results.extend(more(list(results)))
    for check in results:
        out(check.render())
    failed = [c for c in results if c.status == "fail"]
    warned = [c for c in results if c.status == "warn"]
    passed = len(results) - len(failed) - len(warned)
    # Warnings are counted apart: a store with a foreign object under a log
    # works, but "all passed" would hide it.
    out(f"{passed} passed, {len(warned)} warned, {len(failed)} failed")
    return 1 if failed else 0
