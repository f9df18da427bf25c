"""``doctor``'s checks that MLflow itself hands a store's URI to mlflow-bucket.

MLflow picks the tracking store, the model registry store and the artifact
repository of a URI by its scheme, among builders registered by MLflow and
by packages' entry points (``mlflow.tracking_store``,
``mlflow.model_registry_store``, ``mlflow.artifact_repository``). An entry
point whose import fails is skipped with a warning ("Failure attempting to
register store for scheme ..."), and the scheme then has no store, or
MLflow's own: every MLflow call on the store fails while the bucket works
and every storage check passes. MLflow 3.18 did this to the registry store,
which imported a private helper 3.18 had renamed.

So these checks ask MLflow, along the path its client takes
(``mlflow_compat.tracking_store_for`` and ``registry_store_for``, and the
public ``get_artifact_repository``), and pass only if the answer is
mlflow-bucket's class. A failure names the cause: the exception of loading
mlflow-bucket's entry point (loaded here again with importlib.metadata),
the warning MLflow gave when it skipped it, or another package that
registers the same scheme.

MLflow picks a store by the URI's scheme alone, so the stores are opened on
a probe prefix under the store's ``.doctor/``, which is then deleted: opening
the store itself would write the format marker of an empty store (doctor
only reads it) and would take over a crashed process's spool (doctor only
looks at it). MLflow's cached store instances are dropped afterwards. The
artifact repository is made for the store's real artifact root (making one
touches nothing). A URI whose scheme mlflow-bucket does not register
(``gcs://``, a plain folder, which is MLflow's own FileStore) is reported
without asking MLflow to open anything.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mlflow_bucket.doctor import PROBE_PREFIX, Check
from mlflow_bucket.storage import ObjectStore, StorageError
from mlflow_bucket.storage.local import LocalStore

DISTRIBUTION = "mlflow-bucket"
# artifact_entrypoints.SWITCH (that module may be the one that does not import).
ARTIFACTS_SWITCH = "MLFLOW_BUCKET_ARTIFACTS"
# The top-level package of every class mlflow-bucket registers with MLflow.
PACKAGE = __name__.partition(".")[0]


@dataclass(frozen=True)
class Kind:
    check: str  # the check's name in doctor's report
    what: str  # how a message names it
    group: str  # MLflow's entry-point group


TRACKING = Kind("MLflow tracking store", "tracking store", "mlflow.tracking_store")
REGISTRY = Kind("MLflow registry store", "model registry store", "mlflow.model_registry_store")
ARTIFACTS = Kind("MLflow artifact repository", "artifact repository", "mlflow.artifact_repository")


def _scheme(uri: str) -> str:
    scheme = urlsplit(uri).scheme.lower()
    # A Windows drive letter is a plain path to MLflow too.
    return "" if len(scheme) == 1 else scheme


def _dist_name(name: str) -> str:
    return name.lower().replace("_", "-")


def _ours(cls: type) -> bool:
    return cls.__module__.partition(".")[0] == PACKAGE


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _exc(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _raised_by_us(exc: BaseException) -> bool:
    """The exception came from mlflow-bucket's code that MLflow called (a store that
    was found but failed to open), not from MLflow's resolution itself."""
    in_mlflow = False
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        top = str(frame.f_globals.get("__name__", "")).partition(".")[0]
        if top == "mlflow":
            in_mlflow = True
        elif in_mlflow and top in (PACKAGE, "mlflow_bucket"):
            return True
    return False


def _our_entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return {}
    return {ep.name: ep for ep in dist.entry_points if ep.group == group}


def _rivals(group: str, scheme: str) -> list[str]:
    """Other packages' entry points for ``scheme`` in ``group``: "dist version (value)"."""
    found = []
    for ep in importlib.metadata.entry_points(group=group):
        dist = ep.dist
        if ep.name != scheme or dist is None or _dist_name(dist.name) == DISTRIBUTION:
            continue
        found.append(f"{dist.name} {dist.version} ({ep.value})")
    return found


def supported_mlflow() -> str:
    """The MLflow versions this installation of mlflow-bucket supports, as pip takes them."""
    try:
        from packaging.requirements import Requirement

        for line in importlib.metadata.requires(DISTRIBUTION) or []:
            req = Requirement(line)
            if _dist_name(req.name) == "mlflow" and req.marker is None:
                # Lower bounds first: "mlflow>=3.5,<3.19", as pyproject.toml writes it.
                specs = sorted(req.specifier, key=lambda s: (s.operator.startswith("<"), str(s)))
                return "mlflow" + ",".join(str(s) for s in specs)
    except Exception:  # no metadata (run from a source tree), or no packaging
        pass
    return "mlflow"


def _mlflow_version() -> str:
    try:
        return importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def upgrade_fix() -> str:
    return (
        "upgrade mlflow-bucket (pip install -U mlflow-bucket), or install an MLflow this "
        f"mlflow-bucket supports: pip install '{supported_mlflow()}' (installed: MLflow "
        f"{_mlflow_version()})"
    )


@contextmanager
def _mlflow_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Record MLflow's "Failure attempting to register ..." warnings; show the others."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for w in caught:
        if not str(w.message).startswith("Failure attempting to register"):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _skip_warnings(caught: list[warnings.WarningMessage], scheme: str) -> list[str]:
    return [
        " ".join(str(w.message).split())
        for w in caught
        if str(w.message).startswith("Failure attempting to register")
        and f'scheme "{scheme}"' in str(w.message)
    ]


def _foreign_scheme(kind: Kind, uri: str, scheme: str, ours: list[str]) -> Check:
    registered = ", ".join(f"{s}://" for s in sorted(ours))
    if scheme in ("", "file"):
        mlflow_uses = "a plain folder or file:// URI is MLflow's own FileStore"
        fix = (
            f"give bucket+file://{urlsplit(uri).path or uri} for a folder in mlflow-bucket's format"
        )
    elif scheme == "gcs":
        mlflow_uses = "MLflow knows Google Cloud Storage as gs:// only"
        fix = "write gs:// instead of gcs:// (in MLFLOW_TRACKING_URI or the project file)"
    else:
        mlflow_uses = f"MLflow uses its own {kind.what} for {scheme}://, if it has one"
        fix = "give a gs://, s3:// or bucket+file:// URI"
    return Check(
        kind.check,
        "fail",
        f"MLflow does not hand {uri} to mlflow-bucket: its {kind.what} is registered for "
        f"{registered}, not {f'{scheme}://' if scheme else 'a plain path'}; {mlflow_uses}",
        fix,
    )


def _no_store(kind: Kind, scheme: str, exc: BaseException) -> str:
    """What MLflow resolved instead, when resolving raised."""
    if getattr(exc, "supported_uri_schemes", None) is not None:
        # UnsupportedModelRegistryStoreURIException, for tracking stores too.
        return f"no {kind.what} (MLflow has none registered for {scheme}://)"
    return f"no {kind.what} ({_exc(exc)})"


def _not_ours(
    kind: Kind,
    uri: str,
    scheme: str,
    found: str,
    expected: str,
    ep: importlib.metadata.EntryPoint,
    caught: list[warnings.WarningMessage],
    instead: type | None = None,
) -> Check:
    """MLflow answered ``found`` (``instead``, a class) for ``uri``: name the cause."""
    try:
        ep.load()
    except Exception as exc:
        return _load_failed(kind, uri, ep, exc, instead)
    rivals = _rivals(kind.group, scheme)
    skipped = _skip_warnings(caught, scheme)
    detail = f"MLflow resolves {uri} to {found}, not mlflow-bucket's {expected}"
    if rivals:
        return Check(
            kind.check,
            "fail",
            f"{detail}: another package registers {scheme}:// for MLflow's {kind.what}: "
            + "; ".join(rivals),
            "uninstall that package, or keep it out of this environment",
        )
    if skipped:
        # It loads now, but did not when MLflow loaded its plugins (an import cycle, say).
        return Check(
            kind.check,
            "fail",
            f"{detail}: MLflow skipped it when it loaded its plugins: " + "; ".join(skipped),
            f"{upgrade_fix()}; if it persists, report it with this output",
        )
    return Check(kind.check, "fail", detail, "report this, with this output and pip list")


def _load_failed(
    kind: Kind,
    uri: str,
    ep: importlib.metadata.EntryPoint,
    exc: BaseException,
    instead: type | None = None,
) -> Check:
    then = (
        f"MLflow skips it and uses its own {instead.__name__} instead"
        if instead is not None
        else f"MLflow skips it, so every MLflow call that needs the {kind.what} fails"
    )
    return Check(
        kind.check,
        "fail",
        f"MLflow could not load mlflow-bucket's {kind.what} for {uri}: {_exc(exc)} (entry point "
        f"{kind.group}: {ep.name} = {ep.value}); {then}",
        upgrade_fix(),
    )


def _open_failed(kind: Kind, uri: str, expected: str, exc: BaseException) -> Check:
    return Check(
        kind.check,
        "fail",
        f"MLflow found mlflow-bucket's {expected} for {uri}, but it raised {_exc(exc)}",
        upgrade_fix() if isinstance(exc, ImportError) else "see the checks above",
    )


def _store_check(
    kind: Kind,
    uri: str,
    probe_uri: str,
    resolve: Callable[[str], Any] | None,
    caught: list[warnings.WarningMessage],
    open_stores: bool,
    compat_error: BaseException | None = None,
) -> Check | None:
    scheme = _scheme(uri)
    ours = _our_entry_points(kind.group)
    if not ours:
        return Check(
            kind.check,
            "fail",
            f"MLflow cannot find mlflow-bucket's {kind.what}: the {DISTRIBUTION} package is not "
            "installed in this environment (MLflow finds stores through installed packages' "
            "entry points)",
            f"pip install {DISTRIBUTION} (from a checkout: pip install -e .)",
        )
    ep = ours.get(scheme)
    if ep is None:
        return _foreign_scheme(kind, uri, scheme, list(ours))
    if not open_stores or resolve is None:
        # Only what needs neither the store nor MLflow's resolution: does the plugin load?
        try:
            ep.load()
        except Exception as exc:
            return _load_failed(kind, uri, ep, exc)
        if compat_error is not None:
            return Check(
                kind.check,
                "fail",
                f"cannot ask MLflow for the {kind.what} of {uri}: importing "
                f"{PACKAGE}.mlflow_compat failed: {_exc(compat_error)}",
                upgrade_fix(),
            )
        return None
    expected = ep.value.rpartition(":")[2]
    # MLflow first (its own registration of plugins may happen now), then the cause.
    try:
        instance = resolve(probe_uri)
    except Exception as exc:
        if _raised_by_us(exc):
            return _open_failed(kind, uri, expected, exc)
        return _not_ours(kind, uri, scheme, _no_store(kind, scheme, exc), expected, ep, caught)
    cls = type(instance)
    if _ours(cls):
        return Check(kind.check, "pass", f"MLflow resolves {uri} to mlflow-bucket's {cls.__name__}")
    return _not_ours(kind, uri, scheme, _class_name(cls), expected, ep, caught, cls)


def _artifact_check(
    artifact_uri: str,
    get_repository: Callable[[str], Any],
    caught: list[warnings.WarningMessage],
) -> Check:
    try:
        from .artifact_entrypoints import use_builtin

        builtin = use_builtin()
    except Exception:  # the module does not import: the entry point's failure says why
        builtin = False
    kind = ARTIFACTS
    scheme = _scheme(artifact_uri)
    ep = _our_entry_points(kind.group).get(scheme)
    expected = "artifact repository"
    try:
        repo = get_repository(artifact_uri)
    except Exception as exc:
        if _raised_by_us(exc):
            return _open_failed(kind, artifact_uri, expected, exc)
        if ep is not None and not builtin:
            return _not_ours(
                kind, artifact_uri, scheme, _no_store(kind, scheme, exc), expected, ep, caught
            )
        return Check(
            kind.check,
            "fail",
            f"MLflow could not make an artifact repository for {artifact_uri}: {_exc(exc)}",
            "set artifact_root to an artifact URI MLflow supports (docs/configuration.md)",
        )
    cls = type(repo)
    if _ours(cls):
        return Check(
            kind.check, "pass", f"MLflow resolves {artifact_uri} to mlflow-bucket's {cls.__name__}"
        )
    if ep is None:
        why = (
            "local folders stay with MLflow's own repository (docs/artifacts.md)"
            if scheme in ("", "file")
            else f"mlflow-bucket registers no artifact repository for {scheme}://"
        )
        return Check(
            kind.check, "pass", f"MLflow resolves {artifact_uri} to its own {cls.__name__}: {why}"
        )
    if builtin:
        return Check(
            kind.check,
            "pass",
            f"MLflow resolves {artifact_uri} to its own {cls.__name__}: "
            f"{ARTIFACTS_SWITCH}=builtin switches {scheme}:// back to MLflow's repository",
        )
    return _not_ours(kind, artifact_uri, scheme, _class_name(cls), expected, ep, caught, cls)


def _delete_probe(store: ObjectStore, prefix: str) -> None:
    with suppress(StorageError):
        for info in list(store.list_objects(prefix)):
            store.delete(info.key)
    if isinstance(store, LocalStore):
        # The folders a local store made for it (temporary files' among them).
        shutil.rmtree(store.path.joinpath(*prefix.strip("/").split("/")), ignore_errors=True)


def resolution_checks(
    uri: str,
    store: ObjectStore,
    *,
    artifact_uri: str | None = None,
    open_stores: bool = True,
) -> list[Check]:
    """Whether MLflow resolves ``uri``'s tracking and registry stores and
    ``artifact_uri``'s repository (default: the store's ``artifacts/``) to mlflow-bucket.

    ``store`` is the open store of ``uri``: the stores are opened on a probe
    prefix of it, deleted afterwards. With ``open_stores`` false (the store
    cannot be reached from here) nothing is opened, and the two store checks
    are reported only when loading mlflow-bucket's entry point already fails.
    """
    artifact_uri = artifact_uri or f"{store.uri}/artifacts"
    checks: list[Check | None] = []
    with _mlflow_warnings() as caught:
        try:
            # Imports MLflow's private resolution helpers: a future MLflow may break it,
            # and then the stores' own imports too (which the checks below name).
            from . import mlflow_compat
        except Exception as exc:
            compat: Any = None
            compat_error: BaseException | None = exc
        else:
            compat, compat_error = mlflow_compat, None
        probe_key = f"{PROBE_PREFIX}resolve-{uuid.uuid4().hex}"
        probe_uri = f"{uri.rstrip('/')}/{probe_key}"
        try:
            for kind, resolver in (
                (TRACKING, "tracking_store_for"),
                (REGISTRY, "registry_store_for"),
            ):
                resolve = getattr(compat, resolver, None)
                checks.append(
                    _store_check(kind, uri, probe_uri, resolve, caught, open_stores, compat_error)
                )
        finally:
            if open_stores and compat is not None:
                with suppress(Exception):
                    compat.forget_store_instances()
                _delete_probe(store, f"{probe_key}/")
        try:
            from mlflow.store.artifact.artifact_repository_registry import (
                get_artifact_repository,
            )
        except Exception as exc:
            checks.append(
                Check(
                    ARTIFACTS.check,
                    "fail",
                    f"cannot import MLflow's artifact repository registry: {_exc(exc)}",
                    upgrade_fix(),
                )
            )
        else:
            checks.append(_artifact_check(artifact_uri, get_artifact_repository, caught))
    return [c for c in checks if c is not None]
