"""Per-project configuration: files, precedence, secrets, and plain ``import mlflow``.

docs/configuration.md is the contract these tests check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_bucket import autoconfig
from mlflow_bucket.project import (
    ConfigError,
    find_project_file,
    load_config,
    store_setup,
)
from mlflow_bucket.storage import RetryPolicy, open_store
from mlflow_bucket.testing.pytest_plugin import BucketInfo

# Every variable the configuration reads, cleared so the developer's own
# setup cannot leak into a test.
CONFIG_VARS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_BUCKET_URI",
    "MLFLOW_BUCKET_REGISTRY_URI",
    "MLFLOW_BUCKET_ARTIFACT_ROOT",
    "MLFLOW_BUCKET_SYNC",
    "MLFLOW_BUCKET_FLUSH_INTERVAL",
    "MLFLOW_BUCKET_SPOOL_DIR",
    "MLFLOW_BUCKET_CACHE_DIR",
    "MLFLOW_BUCKET_REFRESH_INTERVAL",
    "MLFLOW_BUCKET_COMPACT_THRESHOLD",
    "MLFLOW_BUCKET_RETRY_ATTEMPTS",
    "MLFLOW_BUCKET_RETRY_DEADLINE",
    "MLFLOW_BUCKET_GC_RETENTION",
    "MLFLOW_BUCKET_AUTOCONFIG",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "GOOGLE_CLOUD_PROJECT",
    "GCSFS_DEFAULT_PROJECT",
    "STORAGE_EMULATOR_HOST",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project folder as the working directory, no user config, no variables."""
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_BUCKET_USER_CONFIG", str(tmp_path / "user" / "config.toml"))
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.chdir(root)
    yield root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def user_file(project: Path) -> Path:
    return project.parent / "user" / "config.toml"


# -- files and where they are found -------------------------------------------------


def test_nothing_configured_gives_the_defaults(project: Path) -> None:
    config = load_config()
    assert config.uri is None and config.registry_uri is None
    assert config.project_file is None and config.user_file is None
    assert config.settings.flush_interval == 2.0 and config.settings.sync is False
    assert config.gc_retention == 3600.0
    assert all(src == "default" for key, _, src in config.describe())


def test_pyproject_table_found_from_a_subfolder(project: Path) -> None:
    write(
        project / "pyproject.toml",
        """
        [project]
        name = "demo"
        [tool.mlflow-bucket]
        uri = "gs://team-bucket/mlflow"
        flush_interval = 0.5
        sync = true
        [tool.mlflow-bucket.storage]
        project = "team-project"
        """,
    )
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    config = load_config(deep)
    assert config.uri == "gs://team-bucket/mlflow"
    assert config.registry_uri == "gs://team-bucket/mlflow"  # defaults to the store
    assert config.settings.flush_interval == 0.5 and config.settings.sync is True
    assert config.project_file == project / "pyproject.toml"
    assert config.sources["flush_interval"] == str(project / "pyproject.toml")
    assert config.storage_options == {"project": "team-project"}


def test_a_pyproject_without_the_table_does_not_stop_the_walk(project: Path) -> None:
    write(project / "mlflow-bucket.toml", 'uri = "s3://team/ml"\n')
    inner = project / "sub"
    write(inner / "pyproject.toml", '[project]\nname = "inner"\n')
    assert find_project_file(inner) == project / "mlflow-bucket.toml"
    assert load_config(inner).uri == "s3://team/ml"


def test_the_nearest_file_wins(project: Path) -> None:
    write(project / "mlflow-bucket.toml", 'uri = "s3://outer/ml"\n')
    write(project / "inner" / "mlflow-bucket.toml", 'uri = "s3://inner/ml"\n')
    assert load_config(project / "inner").uri == "s3://inner/ml"


def test_two_files_in_one_folder_are_refused(project: Path) -> None:
    write(project / "mlflow-bucket.toml", 'uri = "s3://a/ml"\n')
    write(project / "pyproject.toml", '[tool.mlflow-bucket]\nuri = "s3://b/ml"\n')
    with pytest.raises(ConfigError, match="twice"):
        load_config()


def test_local_folders_are_relative_to_the_file(project: Path) -> None:
    write(
        project / "mlflow-bucket.toml",
        """
        uri = "bucket+file://store"
        spool_dir = ".state/spool"
        artifact_root = "artifacts"
        """,
    )
    config = load_config()
    assert config.uri == f"bucket+file://{(project / 'store').resolve().as_posix()}"
    assert config.settings.spool_dir == (project / ".state" / "spool").resolve()
    assert config.artifact_root == (project / "artifacts").resolve().as_uri()
    # A plain folder path is this format too: MLflow would read it as its FileStore.
    write(project / "mlflow-bucket.toml", 'uri = "./data"\n')
    assert load_config().uri == f"bucket+file://{(project / 'data').resolve().as_posix()}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('urii = "gs://b/x"', "unknown key 'urii'"),
        ('uri = "http://tracking:5000"', "not a bucket store"),
        ('uri = "gs://"', "names no bucket"),
        ('flush_interval = "soon"', "flush_interval"),
        ("compact_threshold = 2.5", "whole number"),
        ("sync = 3", "true or false"),
        ('[storage]\nendpoint = "x"', "unknown storage option 'endpoint'"),
        ("uri = [", "not valid TOML"),
    ],
)
def test_bad_files_are_refused_naming_the_file_and_key(
    project: Path, text: str, message: str
) -> None:
    path = write(project / "mlflow-bucket.toml", text + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_config()
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        'token = "ya29.SECRETVALUE"',
        '[storage]\nsecret_access_key = "SECRETVALUE"',
        '[storage]\nkey = "SECRETVALUE"',
        '[storage]\naws_session_token = "SECRETVALUE"',
        'password = "SECRETVALUE"',
        'uri = "s3://AKIAX:SECRETVALUE@bucket/ml"',
    ],
)
def test_secrets_are_refused_without_repeating_them(project: Path, text: str) -> None:
    write(project / "mlflow-bucket.toml", text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert "SECRETVALUE" not in message
    assert "credential" in message
    assert "gcloud auth application-default login" in message  # where they belong


# Credentials a URL can carry: user:password@, and secret query parameters
# (a presigned URL's, an API token's, a SAS signature).
URL_CREDENTIALS = {
    "userinfo": "http://AKIAUSERINFO:SECRETVALUE@127.0.0.1:9000",
    "user only": "http://SECRETVALUE@127.0.0.1:9000",
    "presigned": "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=SECRETVALUE&X-Amz-Signature=SECRETVALUE",
    "session token": "https://host/x?X-Amz-Security-Token=SECRETVALUE",
    "gcs signed": "https://storage.googleapis.com/b/o?X-Goog-Signature=SECRETVALUE",
    "token": "https://host/x?token=SECRETVALUE",
    "access_token": "https://host/x?access_token=SECRETVALUE",
    "sas": "https://acct.blob.core.windows.net/c?sv=2024&sig=SECRETVALUE",
    "api key": "https://host/x?key=SECRETVALUE",
}


def _as_store_uri(url: str, scheme: str) -> str:
    """``url``'s credential on a bucket URI of ``scheme``."""
    rest = url.split("://", 1)[1]
    if "?" in rest:
        return f"{scheme}://team/ml?{rest.split('?', 1)[1]}"
    return f"{scheme}://{rest.split('@', 1)[0]}@team/ml"


@pytest.mark.parametrize("kind", sorted(URL_CREDENTIALS))
@pytest.mark.parametrize(
    ("key", "scheme"),
    [
        ("uri", "s3"),
        ("registry_uri", "gs"),
        ("artifact_root", "https"),
        ("[storage] endpoint_url", "http"),
    ],
)
def test_a_url_setting_with_credentials_is_refused_in_a_file_naming_file_and_key(
    project: Path, key: str, scheme: str, kind: str
) -> None:
    url = URL_CREDENTIALS[kind]
    value = url if scheme.startswith("http") else _as_store_uri(url, scheme)
    if key.startswith("[storage]"):
        text = f'[storage]\nendpoint_url = "{value}"\n'
    else:
        text = ('uri = "gs://team/ml"\n' if key != "uri" else "") + f'{key} = "{value}"\n'
    for path in (project / "mlflow-bucket.toml", user_file(project)):
        write(path, text)
        with pytest.raises(ConfigError) as info:
            load_config()
        message = str(info.value)
        assert message.startswith(f"{path}: {key} carries credentials"), message
        assert "SECRETVALUE" not in message and "AKIAUSERINFO" not in message
        assert "gcloud auth application-default login" in message  # where they belong
        path.unlink()


@pytest.mark.parametrize("kind", sorted(URL_CREDENTIALS))
@pytest.mark.parametrize(
    ("variable", "scheme"),
    [
        ("MLFLOW_BUCKET_URI", "s3"),
        ("MLFLOW_BUCKET_REGISTRY_URI", "gs"),
        ("MLFLOW_BUCKET_ARTIFACT_ROOT", "https"),
        ("MLFLOW_TRACKING_URI", "gs"),  # MLflow's, naming one of our stores
        ("MLFLOW_REGISTRY_URI", "s3"),
        ("AWS_ENDPOINT_URL", "http"),  # the SDKs' endpoint variables, over endpoint_url
        ("AWS_ENDPOINT_URL_S3", "https"),
        ("STORAGE_EMULATOR_HOST", "http"),
    ],
)
def test_a_url_variable_with_credentials_is_refused_naming_it(
    project: Path, monkeypatch: pytest.MonkeyPatch, variable: str, scheme: str, kind: str
) -> None:
    url = URL_CREDENTIALS[kind]
    monkeypatch.setenv(variable, url if scheme.startswith("http") else _as_store_uri(url, scheme))
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert message.startswith(f"{variable}: "), message
    assert "carries credentials" in message
    assert "SECRETVALUE" not in message and "AKIAUSERINFO" not in message


def test_an_emulator_host_without_a_scheme_is_read_as_a_host(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:9023")
    load_config()  # host:port, no credentials
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "user:SECRETVALUE@127.0.0.1:9023")
    with pytest.raises(ConfigError, match="STORAGE_EMULATOR_HOST: endpoint_url carries"):
        load_config()


def test_urls_without_credentials_and_folders_are_kept(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        project / "mlflow-bucket.toml",
        """
        uri = "team@store"
        artifact_root = "https://artifacts.example/team?region=eu"
        [storage]
        endpoint_url = "http://minio.local:9000/?x-id=1"
        """,
    )
    config = load_config()
    # A folder is a folder, whatever its name holds.
    assert config.uri == f"bucket+file://{project / 'team@store'}"
    assert config.artifact_root == "https://artifacts.example/team?region=eu"
    assert config.storage == {"endpoint_url": "http://minio.local:9000/?x-id=1"}
    # An http:// tracking server is MLflow's (its own credentials are its own
    # business): not refused, and shown redacted.
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", "https://me:SECRETVALUE@mlflow.example/?token=SECRETVALUE"
    )
    config = load_config()
    assert config.uri is not None and "SECRETVALUE" in config.uri
    shown = {key: value for key, value, _ in config.describe()}
    assert shown["uri"] == "https://***@mlflow.example/?token=***"


def test_config_output_redacts_every_url(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", "https://me:SECRETVALUE@mlflow.example/?sig=SECRETVALUE"
    )
    monkeypatch.setenv("MLFLOW_BUCKET_USER_CONFIG", "")
    for args in ([], ["--json"], ["--uri"]):
        done = subprocess.run(
            [sys.executable, "-m", "mlflow_bucket.cli", "config", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "mlflow.example" in done.stdout
        assert "SECRETVALUE" not in done.stdout + done.stderr


# -- precedence ------------------------------------------------------------------------


def test_precedence_mlflow_then_our_variables_then_project_then_user_then_defaults(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        user_file(project),
        """
        uri = "gs://user-default/ml"
        flush_interval = 9.0
        refresh_interval = 7.0
        compact_threshold = 5
        [storage]
        profile = "user-profile"
        """,
    )
    config = load_config()
    assert config.uri == "gs://user-default/ml"
    assert config.sources["uri"] == str(user_file(project))
    assert config.user_file == user_file(project)

    write(
        project / "pyproject.toml",
        """
        [tool.mlflow-bucket]
        uri = "gs://project/ml"
        flush_interval = 3.0
        refresh_interval = 4.0
        """,
    )
    config = load_config()
    assert config.uri == "gs://project/ml"
    assert (config.settings.flush_interval, config.settings.refresh_interval) == (3.0, 4.0)
    assert config.settings.compact_threshold == 5  # only the user file sets it
    assert config.storage == {"profile": "user-profile"}

    monkeypatch.setenv("MLFLOW_BUCKET_URI", "gs://ours/ml")
    monkeypatch.setenv("MLFLOW_BUCKET_FLUSH_INTERVAL", "1.5")
    config = load_config()
    assert config.uri == "gs://ours/ml" and config.sources["uri"] == "environment"
    assert config.settings.flush_interval == 1.5
    assert config.settings.refresh_interval == 4.0

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "gs://mlflow-explicit/ml")
    config = load_config()
    assert config.uri == "gs://mlflow-explicit/ml"
    assert config.sources["uri"].startswith("MLflow")
    # Our own view without MLflow's variables (what autoconfig applies).
    assert load_config(mlflow_uris=False).uri == "gs://ours/ml"


def test_a_bad_variable_is_an_error_naming_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_BUCKET_COMPACT_THRESHOLD", "many")
    with pytest.raises(ConfigError, match="MLFLOW_BUCKET_COMPACT_THRESHOLD"):
        load_config()


# -- storage options ---------------------------------------------------------------------


def test_storage_options_per_scheme_and_the_sdk_variables_win(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        project / "mlflow-bucket.toml",
        """
        uri = "s3://team/ml"
        retry_attempts = 3
        retry_deadline = 10
        [storage]
        endpoint_url = "http://minio.local:9000"
        region = "eu-west-1"
        profile = "team"
        project = "gcp-project"
        """,
    )
    config = load_config()
    options = config.storage_options_for("s3://team/ml")
    retry = options.pop("retry")
    assert isinstance(retry, RetryPolicy)
    assert (retry.max_attempts, retry.deadline) == (3, 10.0)
    assert options == {
        "endpoint_url": "http://minio.local:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "profile": "team",
    }
    gs = config.storage_options_for("gs://other/x")
    gs.pop("retry")
    assert gs == {"project": "gcp-project", "endpoint_url": "http://minio.local:9000"}
    assert "profile" not in config.storage_options_for("memory://x/y")

    monkeypatch.setenv("AWS_PROFILE", "from-env")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere")
    options = config.storage_options_for("s3://team/ml")
    assert "profile" not in options and "endpoint_url" not in options


def test_store_setup_gives_the_artifact_root_only_to_the_configured_store(
    project: Path,
) -> None:
    write(
        project / "mlflow-bucket.toml",
        """
        uri = "memory://team/ml"
        artifact_root = "s3://artifacts-bucket/ml"
        flush_interval = 0.25
        """,
    )
    setup = store_setup("memory://team/ml/")
    assert setup.artifact_root == "s3://artifacts-bucket/ml"
    assert setup.settings.flush_interval == 0.25
    assert store_setup("memory://other/ml").artifact_root is None


def test_the_tracking_store_takes_its_settings_from_the_project(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow_bucket_plugins.tracking.backend import backend_for, forget_backends

    from mlflow_bucket.storage.memory import reset_memory_buckets

    reset_memory_buckets()
    write(
        project / "mlflow-bucket.toml",
        f"""
        uri = "memory://cfg/ml"
        flush_interval = 0.25
        compact_threshold = 7
        spool_dir = "{project / "spool"}"
        cache_dir = "{project / "cache"}"
        artifact_root = "memory://cfg/elsewhere"
        """,
    )
    forget_backends()
    try:
        backend = backend_for("memory://cfg/ml")
        assert backend.settings.flush_interval == 0.25
        assert backend.compaction.threshold == 7
        assert backend.spool_dir.parent == project / "spool"
        assert backend.artifact_root == "memory://cfg/elsewhere"
    finally:
        forget_backends()


def test_two_stores_on_one_machine_never_share_a_spool_or_cache_folder(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow_bucket_plugins.tracking.backend import backend_for, forget_backends

    from mlflow_bucket.log import ObjectCache
    from mlflow_bucket.storage.memory import reset_memory_buckets

    reset_memory_buckets()
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(project / "spool"))
    forget_backends()
    try:
        a = backend_for("memory://team/project-a")
        b = backend_for("memory://team/project-b")
        assert a.spool_dir.parent == b.spool_dir.parent == project / "spool"
        assert a.spool_dir != b.spool_dir
        cache_a = ObjectCache.for_store(a.store, project / "cache")
        cache_b = ObjectCache.for_store(b.store, project / "cache")
        assert cache_a.directory != cache_b.directory
    finally:
        forget_backends()


# -- plain `import mlflow` -------------------------------------------------------------------


def test_autoconfig_fills_in_only_what_is_unset(project: Path) -> None:
    write(
        project / "mlflow-bucket.toml",
        'uri = "gs://team/ml"\nregistry_uri = "gs://team/registry"\n',
    )
    env: dict[str, str] = {}
    assert autoconfig.apply(env) == "gs://team/ml"
    assert env == {
        "MLFLOW_TRACKING_URI": "gs://team/ml",
        "MLFLOW_REGISTRY_URI": "gs://team/registry",
    }
    env = {"MLFLOW_TRACKING_URI": "sqlite:///mine.db"}
    assert autoconfig.apply(env) is None
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:///mine.db"
    env = {"MLFLOW_BUCKET_AUTOCONFIG": "0"}
    assert autoconfig.apply(env) is None and "MLFLOW_TRACKING_URI" not in env


def test_autoconfig_sets_no_registry_uri_unless_the_project_names_one(project: Path) -> None:
    write(project / "mlflow-bucket.toml", 'uri = "gs://team/ml"\n')
    env: dict[str, str] = {}
    autoconfig.apply(env)
    assert env == {"MLFLOW_TRACKING_URI": "gs://team/ml"}


def test_autoconfig_warns_and_leaves_mlflow_alone_on_a_broken_file(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(project / "mlflow-bucket.toml", 'token = "SECRETVALUE"\n')
    env: dict[str, str] = {}
    assert autoconfig.apply(env) is None
    assert env == {}
    assert "not applied" in caplog.text and "SECRETVALUE" not in caplog.text


def _python(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _clean_env(project: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env["MLFLOW_BUCKET_USER_CONFIG"] = ""
    env["MLFLOW_BUCKET_SPOOL_DIR"] = str(project.parent / "spool")
    env["MLFLOW_BUCKET_CACHE_DIR"] = str(project.parent / "cache")
    return env


SCRIPT = """
    import json, mlflow
    mlflow.set_experiment("from-config")
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_metric("loss", 0.5)
    print(json.dumps({"uri": mlflow.get_tracking_uri(), "run": run.info.run_id}))
"""


def test_plain_import_mlflow_logs_to_the_project_store(project: Path) -> None:
    write(project / "pyproject.toml", '[tool.mlflow-bucket]\nuri = "bucket+file://store"\n')
    (project / "scripts").mkdir()
    result = _python(SCRIPT, project / "scripts", _clean_env(project))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    store = (project / "store").resolve()
    assert out["uri"] == f"bucket+file://{store.as_posix()}"
    assert (store / "mlflow-bucket.json").is_file()

    # A second process reads the run back through the same configuration.
    check = _python(
        f"""
        import mlflow
        run = mlflow.get_run("{out["run"]}")
        print(run.data.params["lr"], run.data.metrics["loss"])
        """,
        project,
        _clean_env(project),
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["0.1", "0.5"]


def test_mlflow_tracking_uri_beats_the_project_file(project: Path) -> None:
    write(project / "mlflow-bucket.toml", 'uri = "bucket+file://store"\n')
    env = _clean_env(project)
    explicit = (project.parent / "explicit").resolve()
    env["MLFLOW_TRACKING_URI"] = f"bucket+file://{explicit.as_posix()}"
    result = _python(SCRIPT, project, env)
    assert result.returncode == 0, result.stderr
    assert (explicit / "mlflow-bucket.json").is_file()
    assert not (project / "store").exists()


def test_set_tracking_uri_in_code_beats_the_project_file(project: Path) -> None:
    write(project / "mlflow-bucket.toml", 'uri = "bucket+file://store"\n')
    target = (project.parent / "in-code").resolve()
    code = f'import mlflow\nmlflow.set_tracking_uri("bucket+file://{target.as_posix()}")\n'
    result = _python(code + textwrap.dedent(SCRIPT), project, _clean_env(project))
    assert result.returncode == 0, result.stderr
    assert (target / "mlflow-bucket.json").is_file()
    assert not (project / "store").exists()


def test_storage_options_from_the_file_reach_the_s3_store(
    project: Path, s3_bucket: BucketInfo
) -> None:
    """The endpoint and region come from the file; the keys from the SDK's variables."""
    uri = f"s3://{s3_bucket.bucket}/team"
    write(
        project / "mlflow-bucket.toml",
        f"""
        uri = "{uri}"
        [storage]
        endpoint_url = "{s3_bucket.endpoint}"
        region = "us-east-1"
        """,
    )
    env = _clean_env(project)
    env["AWS_ACCESS_KEY_ID"] = s3_bucket.env["AWS_ACCESS_KEY_ID"]
    env["AWS_SECRET_ACCESS_KEY"] = s3_bucket.env["AWS_SECRET_ACCESS_KEY"]
    script = SCRIPT.replace(
        'mlflow.log_metric("loss", 0.5)',
        'mlflow.log_metric("loss", 0.5)\n        mlflow.log_text("hello", "note.txt")',
    )
    result = _python(script, project, env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["uri"] == uri
    with open_store(uri, **s3_bucket.storage_options) as store:
        assert store.exists("mlflow-bucket.json")
        # The artifact repository reached the endpoint the file names too.
        notes = [o.key for o in store.list_objects("artifacts/") if o.key.endswith("note.txt")]
        assert len(notes) == 1 and out["run"] in notes[0]


def test_the_startup_hook_imports_nothing_heavy(project: Path) -> None:
    """What `import mlflow` pays for the hook when no project is configured."""
    code = """
        import sys, time
        before = set(sys.modules)
        start = time.perf_counter()
        from mlflow_bucket import autoconfig
        autoconfig.apply()
        elapsed = time.perf_counter() - start
        new = sorted(set(sys.modules) - before)
        print(elapsed)
        print(" ".join(new))
    """
    result = _python(code, project, _clean_env(project))
    assert result.returncode == 0, result.stderr
    new = result.stdout.splitlines()[1].split()
    heavy = {"mlflow", "fsspec", "gcsfs", "s3fs", "boto3", "botocore", "tenacity", "google"}
    assert not heavy & {name.split(".")[0] for name in new}, new
