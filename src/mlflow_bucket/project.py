"""Per-project configuration: which store a project uses, and how.

A project names its store once, in its repository: a ``[tool.mlflow-bucket]``
table in pyproject.toml, or a ``mlflow-bucket.toml`` beside it, found by
walking up from the working directory. A user config file in the
platform's config folder supplies defaults for every project. Each value is
taken from the first of these that sets it:

1. MLflow's own explicit settings (``mlflow.set_tracking_uri``,
   ``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``): the store only;
2. our environment variables (``MLFLOW_BUCKET_*``);
3. the project file;
4. the user config file;
5. the built-in defaults.

Secrets never go in these files: a key that looks like a credential is
refused, with the place credentials belong named in the error, and so is a
URL-valued setting (a store URI, the artifact root, an endpoint, in a file
or a variable) carrying ``user:password@`` or a secret-looking query
parameter (``X-Amz-Signature``, ``token``, ``sig``...). What is shown of a
URL goes through ``mlflow_bucket.redact.redact``.

Imported when MLflow loads its plugins (``autoconfig``), so it imports
nothing heavy: no storage backends, no cloud SDKs.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .config import Settings
from .redact import redact as redact
from .redact import url_credentials

PROJECT_FILE = "mlflow-bucket.toml"
PYPROJECT = "pyproject.toml"
TOOL_TABLE = "mlflow-bucket"
USER_FILE = "config.toml"
# A path to the user config file, or "" for none (tests, CI).
USER_CONFIG_ENV = "MLFLOW_BUCKET_USER_CONFIG"
URI_ENV = "MLFLOW_BUCKET_URI"
REGISTRY_URI_ENV = "MLFLOW_BUCKET_REGISTRY_URI"
ARTIFACT_ROOT_ENV = "MLFLOW_BUCKET_ARTIFACT_ROOT"
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
MLFLOW_REGISTRY_URI = "MLFLOW_REGISTRY_URI"

DEFAULT = "default"


class ConfigError(ValueError):
    """A configuration file or variable that cannot be used; the message says why and where."""


# -- the knobs -------------------------------------------------------------------


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not true or false")


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    if number < 0 or number != number:
        raise ValueError(f"{value!r} is not a non-negative number")
    return number


def _as_int(value: Any) -> int:
    if isinstance(value, str):  # a variable: "32" or "32.0"
        value = float(value)
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{value!r} is not a whole number")
    number = int(value)
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return number


def _as_str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


@dataclass(frozen=True)
class Knob:
    """One engine setting: its file key, environment variable, parser and default."""

    key: str
    env: str
    parse: Callable[[Any], Any]
    default: Any
    path: bool = False  # a folder: relative paths in a file are relative to the file
    help: str = ""


KNOBS: tuple[Knob, ...] = (
    Knob("sync", "MLFLOW_BUCKET_SYNC", _as_bool, Settings.sync,
         help="upload inside each logging call instead of through the spool"),
    Knob("flush_interval", "MLFLOW_BUCKET_FLUSH_INTERVAL", _as_float, Settings.flush_interval,
         help="seconds between the background flusher's uploads"),
    Knob("spool_dir", "MLFLOW_BUCKET_SPOOL_DIR", _as_str, None, path=True,
         help="folder of the write-behind spool (one sub-folder per store)"),
    Knob("cache_dir", "MLFLOW_BUCKET_CACHE_DIR", _as_str, None, path=True,
         help="folder of the local object cache (one sub-folder per store)"),
    Knob("refresh_interval", "MLFLOW_BUCKET_REFRESH_INTERVAL", _as_float,
         Settings.refresh_interval, help="a reader lists the bucket for news at most this often"),
    Knob("compact_threshold", "MLFLOW_BUCKET_COMPACT_THRESHOLD", _as_int,
         Settings.compact_threshold, help="log objects after a checkpoint before a new one"),
    Knob("retry_attempts", "MLFLOW_BUCKET_RETRY_ATTEMPTS", _as_int, 12,
         help="attempts of one request on transient errors"),
    Knob("retry_deadline", "MLFLOW_BUCKET_RETRY_DEADLINE", _as_float, 120.0,
         help="seconds one request may take including its retries"),
    Knob("gc_retention", "MLFLOW_BUCKET_GC_RETENTION", _as_float, 3600.0,
         help="seconds a folded log object is kept before gc may delete it"),
)  # fmt: skip
KNOBS_BY_KEY = {k.key: k for k in KNOBS}
STORE_KEYS = ("uri", "registry_uri", "artifact_root")

# Storage options a file may set, and the SDK variables that override each
# (the environment wins over a file, as for every other key).
STORAGE_KEYS: dict[str, dict[str, tuple[str, ...]]] = {
    "project": {"gs": ("GOOGLE_CLOUD_PROJECT", "GCSFS_DEFAULT_PROJECT")},
    "endpoint_url": {
        "gs": ("STORAGE_EMULATOR_HOST",),
        "s3": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    },
    "region": {"s3": ("AWS_REGION", "AWS_DEFAULT_REGION")},
    "profile": {"s3": ("AWS_PROFILE",)},
}
STORAGE_TABLE = "storage"
# Storage options that hold a URL: credentials in them are refused.
URL_STORAGE_KEYS = ("endpoint_url",)
# The SDKs' endpoint variables, which override endpoint_url: checked alike.
ENDPOINT_ENVS = tuple(
    env for per_scheme in STORAGE_KEYS["endpoint_url"].values() for env in per_scheme
)
# Schemes of the stores this package serves: MLflow's own variables naming
# one of these are checked as ours are (an http:// tracking server may carry
# MLflow's own credentials; that is MLflow's business, and only redacted).
BUCKET_SCHEMES = ("gs", "gcs", "s3", "memory", "bucket+file")

# Key names that smell of a credential: refused wherever they appear.
_SECRET = re.compile(
    r"(secret|passw|token|credential|private|access[_-]?key|api[_-]?key|session|auth|^key$)",
    re.IGNORECASE,
)
_CREDENTIAL_HOME = (
    "credentials stay with the cloud SDKs: `gcloud auth application-default login` or "
    "GOOGLE_APPLICATION_CREDENTIALS for GCS; an AWS profile (`profile = ...` here names one), "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an instance role for S3"
)


# -- where files are -------------------------------------------------------------


def user_config_path() -> Path | None:
    """The user config file: ``$MLFLOW_BUCKET_USER_CONFIG``, else the platform's config folder."""
    override = os.environ.get(USER_CONFIG_ENV)
    if override is not None:
        return Path(override).expanduser() if override else None
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return base / "mlflow-bucket" / USER_FILE


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None


def _table_in(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """This folder's configuration (file, table), if it has one."""
    own = directory / PROJECT_FILE
    pyproject = directory / PYPROJECT
    found: list[tuple[Path, dict[str, Any]]] = []
    if own.is_file():
        found.append((own, _read_toml(own)))
    if pyproject.is_file():
        tool = _read_toml(pyproject).get("tool")
        if isinstance(tool, dict) and TOOL_TABLE in tool:
            table = tool[TOOL_TABLE]
            if not isinstance(table, dict):
                raise ConfigError(f"{pyproject}: [tool.{TOOL_TABLE}] must be a table")
            found.append((pyproject, table))
    if len(found) > 1:
        raise ConfigError(
            f"{directory} configures mlflow-bucket twice ({PROJECT_FILE} and "
            f"[tool.{TOOL_TABLE}] in {PYPROJECT}): keep one"
        )
    return found[0] if found else None


def find_project_file(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest project file at or above ``start`` (default: the working directory)."""
    found = _find(start)
    return found[0] if found else None


def _find(start: str | os.PathLike[str] | None) -> tuple[Path, dict[str, Any]] | None:
    try:
        here = Path(start if start is not None else os.getcwd()).resolve()
    except OSError:
        return None  # the working directory was removed
    for directory in (here, *here.parents):
        found = _table_in(directory)
        if found is not None:
            return found
    return None


# -- checking a file's table ---------------------------------------------------------


def _refuse_secrets(table: Mapping[str, Any], where: str) -> None:
    for key, value in table.items():
        if _SECRET.search(str(key)):
            raise ConfigError(
                f"{where}: {key!r} looks like a credential; it does not belong in a "
                f"configuration file that is committed or shared ({_CREDENTIAL_HOME})"
            )
        if isinstance(value, dict):
            _refuse_secrets(value, f"{where} [{key}]")


def refuse_url_credentials(value: str, key: str, where: str) -> None:
    """ConfigError if the URL ``value`` carries a credential: ``user:password@``
    or a secret-looking query parameter. The message names ``where`` (a file,
    a variable) and ``key``, and never repeats the value."""
    found = url_credentials(value)
    if found is not None:
        raise ConfigError(
            f"{where}: {key} carries credentials ({found}); a URL in the configuration "
            f"is shown and shared, so {_CREDENTIAL_HOME}"
        )


def _check_uri(value: Any, key: str, where: str, base: Path | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} must be a non-empty string")
    value = value.strip()
    if "://" in value:  # a URL (a plain path is a folder, whatever it holds)
        # Before anything else: no later message may repeat a secret.
        refuse_url_credentials(value, key, where)
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme in ("gs", "gcs", "s3", "memory"):
        if not parts.netloc:
            raise ConfigError(f"{where}: {key} = {redact(value)!r} names no bucket")
        return value
    if scheme in ("bucket+file", "") or (len(scheme) == 1 and value[1:3] in (":\\", ":/")):
        # A local folder in this format. Plain paths and file:// are MLflow's
        # FileStore to MLflow, so the URI handed on always says bucket+file.
        # bucket+file://folder (no third slash) is a relative folder.
        raw = parts.netloc + parts.path if scheme == "bucket+file" else value
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        return f"bucket+file://{path.resolve().as_posix()}"
    raise ConfigError(
        f"{where}: {key} = {redact(value)!r} is not a bucket store: expected gs://bucket/prefix, "
        "s3://bucket/prefix, bucket+file:///folder (or a plain folder path) or memory://name"
    )


def _check_artifact_root(value: Any, where: str, base: Path | None) -> str:
    """Any artifact URI MLflow takes; a plain path is a local folder (file://)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: artifact_root must be a non-empty string")
    value = value.strip()
    if "://" in value:
        refuse_url_credentials(value, "artifact_root", where)
    parts = urlsplit(value)
    if parts.scheme and not (len(parts.scheme) == 1 and value[1:3] in (":\\", ":/")):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return path.resolve().as_uri()


@dataclass(frozen=True)
class Layer:
    """The values one source sets, already checked."""

    name: str  # where they came from, for messages and `mlflow-bucket config`
    values: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)


def parse_table(table: Mapping[str, Any], where: str, base: Path | None) -> Layer:
    """Check a file's table: known keys, no secrets, values of the right type."""
    _refuse_secrets(table, where)
    values: dict[str, Any] = {}
    storage: dict[str, Any] = {}
    for key, value in table.items():
        if key == "artifact_root":
            values[key] = _check_artifact_root(value, where, base)
        elif key in STORE_KEYS:
            values[key] = _check_uri(value, key, where, base)
        elif key in KNOBS_BY_KEY:
            knob = KNOBS_BY_KEY[key]
            try:
                parsed = knob.parse(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {key}: {exc}") from None
            if knob.path:
                path = Path(parsed).expanduser()
                parsed = path if path.is_absolute() or base is None else (base / path).resolve()
            values[key] = parsed
        elif key == STORAGE_TABLE:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{STORAGE_TABLE}] must be a table")
            for skey, svalue in value.items():
                if skey not in STORAGE_KEYS:
                    raise ConfigError(
                        f"{where}: unknown storage option {skey!r}; known: "
                        + ", ".join(STORAGE_KEYS)
                    )
                if not isinstance(svalue, str) or not svalue:
                    raise ConfigError(f"{where}: [{STORAGE_TABLE}] {skey} must be a string")
                if skey in URL_STORAGE_KEYS:
                    refuse_url_credentials(svalue, f"[{STORAGE_TABLE}] {skey}", where)
                storage[skey] = svalue
        else:
            known = ", ".join((*STORE_KEYS, *KNOBS_BY_KEY, f"[{STORAGE_TABLE}]"))
            raise ConfigError(f"{where}: unknown key {key!r}; known: {known}")
    return Layer(where, values, storage)


def _env_layer(environ: Mapping[str, str]) -> Layer:
    values: dict[str, Any] = {}
    for env in ENDPOINT_ENVS:
        if environ.get(env):
            refuse_url_credentials(environ[env], "endpoint_url", env)
    for key, env in (("uri", URI_ENV), ("registry_uri", REGISTRY_URI_ENV)):
        if environ.get(env):
            values[key] = _check_uri(environ[env], key, env, None)
    if environ.get(ARTIFACT_ROOT_ENV):
        values["artifact_root"] = _check_artifact_root(
            environ[ARTIFACT_ROOT_ENV], ARTIFACT_ROOT_ENV, None
        )
    for knob in KNOBS:
        raw = environ.get(knob.env)
        if raw is None or raw == "":
            continue
        try:
            values[knob.key] = Path(raw).expanduser() if knob.path else knob.parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{knob.env}={raw!r}: {exc}") from None
    return Layer("environment", values)


# -- the result ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectConfig:
    """The configuration in force for one working directory.

    ``uri`` is None when nothing names a store. ``sources`` says, per key,
    which layer set it (a file's path, "environment", an MLflow variable,
    or "default").
    """

    uri: str | None
    registry_uri: str | None
    artifact_root: str | None
    settings: Settings
    storage: dict[str, str]
    retry_attempts: int
    retry_deadline: float
    gc_retention: float
    project_file: Path | None
    user_file: Path | None
    sources: dict[str, str]

    @property
    def storage_options(self) -> dict[str, Any]:
        """The storage options for ``uri``'s store, in gcsfs/s3fs terms."""
        return self.storage_options_for(self.uri) if self.uri else {}

    def storage_options_for(
        self, uri: str, environ: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The options ``open_store(uri, ...)`` takes, for a store of ``uri``'s scheme.

        Options that do not apply to the scheme are left out (a user config
        may hold both a GCP project and an AWS profile); so is an option
        whose SDK variable is set, since the environment wins. The retry
        policy is included when it differs from the default.
        """
        env = os.environ if environ is None else environ
        scheme = urlsplit(uri).scheme.lower()
        scheme = "gs" if scheme == "gcs" else scheme
        out: dict[str, Any] = {}
        for key, value in self.storage.items():
            overriders = STORAGE_KEYS[key].get(scheme)
            if overriders is None or any(env.get(v) for v in overriders):
                continue
            if key == "region":
                out.setdefault("client_kwargs", {})["region_name"] = value
            else:
                out[key] = value
        if (self.retry_attempts, self.retry_deadline) != (
            KNOBS_BY_KEY["retry_attempts"].default,
            KNOBS_BY_KEY["retry_deadline"].default,
        ):
            from .storage.retry import RetryPolicy

            out["retry"] = replace(
                RetryPolicy(), max_attempts=self.retry_attempts, deadline=self.retry_deadline
            )
        return out

    @property
    def tracking_uri(self) -> str | None:
        return self.uri

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) rows for every key, as `mlflow-bucket config` prints them."""
        rows: list[tuple[str, str, str]] = []
        for key in STORE_KEYS:
            value = getattr(self, key)
            shown = "" if value is None else redact(str(value))
            rows.append((key, shown, self.sources.get(key, DEFAULT)))
        for knob in KNOBS:
            value = getattr(self.settings, knob.key, None)
            if value is None:
                value = getattr(self, knob.key, None)
            shown = (
                ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
            rows.append((knob.key, shown, self.sources.get(knob.key, DEFAULT)))
        for key, value in sorted(self.storage.items()):
            rows.append(
                (f"storage.{key}", redact(value), self.sources.get(f"storage.{key}", DEFAULT))
            )
        return rows


def load_config(
    start: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    mlflow_uris: bool = True,
) -> ProjectConfig:
    """The configuration in force at ``start`` (default: the working directory).

    Raises ConfigError for a file or variable that cannot be used. With
    ``mlflow_uris``, MLflow's own MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI
    take precedence over everything for the store URIs (a process that set
    ``mlflow.set_tracking_uri`` has these set too).
    """
    env = os.environ if environ is None else environ
    layers: list[Layer] = []
    if mlflow_uris:
        explicit: dict[str, Any] = {}
        for key, name in (("uri", MLFLOW_TRACKING_URI), ("registry_uri", MLFLOW_REGISTRY_URI)):
            value = env.get(name)
            if not value:
                continue
            if urlsplit(value).scheme.lower() in BUCKET_SCHEMES:
                refuse_url_credentials(value, key, name)
            explicit[key] = value
        if explicit:
            layers.append(Layer("MLflow (MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI)", explicit))
    layers.append(_env_layer(env))
    found = _find(start)
    project_file = None
    if found is not None:
        project_file, table = found
        layers.append(parse_table(table, str(project_file), project_file.parent))
    user_file = user_config_path()
    if user_file is not None and user_file.is_file():
        layers.append(parse_table(_read_toml(user_file), str(user_file), user_file.parent))
    else:
        user_file = None

    values: dict[str, Any] = {}
    storage: dict[str, str] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.values.items():
            if key not in values:
                values[key] = value
                sources[key] = layer.name
        for key, value in layer.storage.items():
            if key not in storage:
                storage[key] = value
                sources[f"storage.{key}"] = layer.name

    def knob(key: str) -> Any:
        return values.get(key, KNOBS_BY_KEY[key].default)

    settings = Settings(
        sync=knob("sync"),
        flush_interval=knob("flush_interval"),
        spool_dir=Path(values["spool_dir"]) if "spool_dir" in values else None,
        cache_dir=Path(values["cache_dir"]) if "cache_dir" in values else None,
        refresh_interval=knob("refresh_interval"),
        compact_threshold=knob("compact_threshold"),
    )
    uri = values.get("uri")
    registry_uri = values.get("registry_uri", uri)
    if "registry_uri" not in values and uri is not None:
        sources["registry_uri"] = f"uri ({sources['uri']})"
    return ProjectConfig(
        uri=uri,
        registry_uri=registry_uri,
        artifact_root=values.get("artifact_root"),
        settings=settings,
        storage=storage,
        retry_attempts=knob("retry_attempts"),
        retry_deadline=knob("retry_deadline"),
        gc_retention=knob("gc_retention"),
        project_file=project_file,
        user_file=user_file,
        sources=sources,
    )


def project_table_text(uri: str, *, pyproject: bool) -> str:
    """What ``mlflow-bucket init`` writes: the table naming ``uri``."""
    header = f"[tool.{TOOL_TABLE}]" if pyproject else ""
    lines = [
        header,
        "# The team's MLflow store: runs, registry and artifacts (docs/configuration.md).",
        "# No credentials here: they come from the cloud SDK's usual places.",
        f'uri = "{uri}"',
    ]
    return "\n".join(line for line in lines if line) + "\n"


@dataclass(frozen=True)
class StoreSetup:
    """What a process opening the store ``uri`` takes from the configuration."""

    settings: Settings
    storage_options: dict[str, Any]
    # The configured artifact root, when ``uri`` is the configured store.
    artifact_root: str | None


def _same_store(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.rstrip("/") == b.rstrip("/")


def store_setup(uri: str, start: str | os.PathLike[str] | None = None) -> StoreSetup:
    """The settings, storage options and artifact root for opening ``uri`` here.

    Storage options go to every store of their scheme (they say how this
    machine reaches GCS or S3); the artifact root only to the configured
    store itself.
    """
    config = load_config(start)
    same = _same_store(uri, config.uri)
    return StoreSetup(
        settings=config.settings,
        storage_options=config.storage_options_for(uri),
        artifact_root=config.artifact_root if same else None,
    )
