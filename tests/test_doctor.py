"""``mlflow-bucket doctor``, and the Terraform roles checked against what the store calls.

The S3 emulator runs with moto's IAM enforcement on; the reader and writer
policies are built from the actions in terraform/modules/s3-store/iam.tf,
so a change to the module that breaks the store shows up here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
from mlflow_bucket_plugins.mlflow_compat import forget_store_instances
from mlflow_bucket_plugins.tracking.backend import close_backends

from mlflow_bucket.doctor import run_checks
from mlflow_bucket.storage import open_store
from mlflow_bucket.testing.s3_emulator import S3Emulator

IAM_TF = Path(__file__).parents[1] / "terraform" / "modules" / "s3-store" / "iam.tf"
BUCKET = "team-bucket"
PROJECT = "proj-a"
# Unauthenticated actions moto allows before enforcing IAM: exactly the set-up below
# (CreateBucket, then CreateUser, CreatePolicy, AttachUserPolicy and CreateAccessKey for
# each of the two roles). One more would let the first request of a test through unchecked.
SETUP_ACTIONS = 9


def _unquote(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip('"')
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items()}
    return value


def module_policy(group: str) -> dict[str, Any]:
    """The module's policy for ``group`` ("reader"/"writer"), for one project."""
    parsed = hcl2.loads(IAM_TF.read_text())
    local: dict[str, Any] = {}
    for block in parsed["locals"]:
        local.update(block)
    substitutions: dict[str, Any] = {
        "${local.bucket_arn}": f"arn:aws:s3:::{BUCKET}",
        "${local.object_resources}": [f"arn:aws:s3:::{BUCKET}/{PROJECT}/*"],
        "${local.list_prefixes}": [PROJECT, f"{PROJECT}/*"],
    }

    def render(value: Any) -> Any:
        value = _unquote(value)
        if isinstance(value, str):
            return substitutions.get(value, value)
        if isinstance(value, list):
            out: list[Any] = []
            for v in value:
                r = render(v)
                out.extend(r if isinstance(r, list) and isinstance(v, str) else [r])
            return out
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items() if not k.startswith("__")}
        return value

    statements = render(local[f"{group}_statements"])
    assert all("${" not in json.dumps(s) for s in statements), statements
    return {"Version": "2012-10-17", "Statement": statements}


@pytest.fixture(scope="module")
def iam_emulator() -> Iterator[S3Emulator]:
    with S3Emulator(env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}) as emulator:
        yield emulator


def _credentials_for(emulator: S3Emulator, group: str) -> dict[str, Any]:
    admin = emulator.client()
    if group == "reader":  # the first call also creates the bucket
        admin.create_bucket(Bucket=BUCKET)
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=emulator.endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    iam.create_user(UserName=group)
    arn = iam.create_policy(PolicyName=group, PolicyDocument=json.dumps(module_policy(group)))
    iam.attach_user_policy(UserName=group, PolicyArn=arn["Policy"]["Arn"])
    key = iam.create_access_key(UserName=group)["AccessKey"]
    return {
        "endpoint_url": emulator.endpoint,
        "key": key["AccessKeyId"],
        "secret": key["SecretAccessKey"],
        "client_kwargs": {"region_name": "us-east-1"},
    }


@pytest.fixture(scope="module")
def role_credentials(iam_emulator: S3Emulator) -> dict[str, dict[str, Any]]:
    return {group: _credentials_for(iam_emulator, group) for group in ("reader", "writer")}


def _statuses(options: dict[str, Any], project: str = PROJECT) -> dict[str, str]:
    with open_store(f"s3://{BUCKET}/{project}", **options) as store:
        return {c.name: c.status for c in run_checks(store)}


def test_the_module_reader_role_can_read_but_not_write(
    role_credentials: dict[str, dict[str, Any]],
) -> None:
    statuses = _statuses(role_credentials["reader"])
    assert statuses["bucket reachable"] == "pass"
    assert statuses["read"] == "pass"
    assert statuses["clock"] == "pass"
    assert statuses["write"] == "fail"


def test_the_module_writer_role_can_do_everything_the_store_does(
    role_credentials: dict[str, dict[str, Any]],
) -> None:
    statuses = _statuses(role_credentials["writer"])
    assert set(statuses.values()) == {"pass"}, statuses


def test_roles_stop_at_their_project_prefix(role_credentials: dict[str, dict[str, Any]]) -> None:
    statuses = _statuses(role_credentials["writer"], project="another-project")
    assert statuses["read"] == "fail"
    assert statuses["write"] == "fail"


def test_doctor_command_on_a_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_bucket.cli", "doctor", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[PASS] create-if-absent" in result.stdout
    assert "0 failed" in result.stdout
    # A folder store's artifacts stay with MLflow's own repository, on purpose.
    assert (
        f"[PASS] MLflow artifact repository: MLflow resolves {tmp_path.resolve().as_uri()}"
        "/artifacts to its own LocalArtifactRepository: local folders stay with MLflow's own "
        "repository (docs/artifacts.md)"
    ) in result.stdout.splitlines()
    # The probe objects are gone.
    assert not any(p.is_file() for p in (tmp_path / ".doctor").rglob("*"))


def test_doctor_exits_non_zero_and_names_the_fix_when_access_fails(
    role_credentials: dict[str, dict[str, Any]], iam_emulator: S3Emulator
) -> None:
    reader = role_credentials["reader"]
    env = {
        "AWS_ENDPOINT_URL": iam_emulator.endpoint,
        "AWS_ACCESS_KEY_ID": reader["key"],
        "AWS_SECRET_ACCESS_KEY": reader["secret"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_bucket.cli", "doctor", f"s3://{BUCKET}/{PROJECT}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert "[FAIL] write" in result.stdout and "fix: grant" in result.stdout
    # A credential never appears in what the command prints.
    assert reader["secret"] not in result.stdout + result.stderr


# -- MLflow's own resolution of the store: the plugins must load, and be the ones MLflow uses --

ROOT = Path(__file__).parents[1]
MLFLOW_CHECKS = ("MLflow tracking store", "MLflow registry store", "MLflow artifact repository")

# Makes `import <module>` fail as `import mlflow_bucket_plugins.registry.store` did on
# MLflow 3.18 (before mlflow_compat), in a subprocess that finds it on PYTHONPATH
# (as sitecustomize.py); with `once`, only the first import fails (an import cycle, say).
BROKEN_IMPORT = """
import importlib.abc
import sys


class _Broken(importlib.abc.MetaPathFinder):
    failures_left = 1 if {once!r} else -1

    def find_spec(self, name, path=None, target=None):
        if name == {module!r} and self.failures_left != 0:
            self.failures_left -= 1
            raise ImportError(
                "cannot import name '_validate_model_alias_name' from 'mlflow.utils.validation'",
                name="mlflow.utils.validation",
            )
        return None


sys.meta_path.insert(0, _Broken())
"""
REGISTRY_MODULE = "mlflow_bucket_plugins.registry.store"
REGISTRY_CALL = """
import sys

import mlflow

mlflow.MlflowClient(sys.argv[1], sys.argv[1]).search_registered_models()
"""

# A package installed after mlflow-bucket that registers bucket+file:// for MLflow's
# tracking store too: MLflow registers entry points in order, the last one wins.
RIVAL_SITECUSTOMIZE = """
import sys

sys.path.append({rival!r})
"""
RIVAL_MODULE = """
class RivalStore:
    def __init__(self, store_uri=None, artifact_uri=None):
        self.store_uri = store_uri
"""


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no project file, no user config; own spool and cache."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_BUCKET_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_BUCKET_USER_CONFIG", "")
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_BUCKET_CACHE_DIR", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _doctor_here(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from mlflow_bucket.cli import main

    capsys.readouterr()
    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def _lines(out: str) -> dict[str, str]:
    """Each check's line, by its name."""
    found = {}
    for line in out.splitlines():
        if line.startswith("[") and "] " in line and ": " in line:
            name = line.split("] ", 1)[1].split(": ", 1)[0]
            found[name] = line
    return found


def _supported_mlflow_in_pyproject() -> str:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d for d in deps if d.startswith("mlflow>") or d.startswith("mlflow<"))


def _run_cli(
    args: list[str], *, cwd: Path, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return _run_python(["-m", "mlflow_bucket.cli", *args], cwd=cwd, pythonpath=pythonpath)


def _run_python(
    args: list[str], *, cwd: Path, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
    )


def _broken_import(tmp_path: Path, module: str = REGISTRY_MODULE, once: bool = False) -> Path:
    """A folder for PYTHONPATH whose sitecustomize.py makes ``import module`` fail."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(BROKEN_IMPORT.format(module=module, once=once))
    return shim


def test_doctor_finds_mlflow_resolving_a_gcs_store_to_mlflow_bucket(
    gcs_env: Any, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"{gcs_env.url}/healthy"
    code, out = _doctor_here(capsys, uri)
    assert code == 0, out
    lines = _lines(out)
    assert lines["MLflow tracking store"] == (
        f"[PASS] MLflow tracking store: MLflow resolves {uri} to mlflow-bucket's "
        "BucketTrackingStore"
    )
    assert lines["MLflow registry store"] == (
        f"[PASS] MLflow registry store: MLflow resolves {uri} to mlflow-bucket's "
        "BucketRegistryStore"
    )
    assert lines["MLflow artifact repository"] == (
        f"[PASS] MLflow artifact repository: MLflow resolves {uri}/artifacts to "
        "mlflow-bucket's CloudArtifactRepository"
    )
    # The stores were opened on a probe prefix, deleted since: the empty store stays
    # empty (no format marker written), and nothing is left under .doctor/.
    with open_store(uri, **gcs_env.storage_options) as store:
        assert list(store.list_objects("")) == []
    # MLflow's cache keeps no store of the probe: this process then uses the store as usual.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.create_registered_model("after-doctor")
        assert [m.name for m in client.search_registered_models()] == ["after-doctor"]
    finally:
        close_backends()
        forget_store_instances()


def test_doctor_names_a_registry_plugin_mlflow_could_not_load(
    gcs_env: Any, isolated: Path, tmp_path: Path
) -> None:
    uri = f"{gcs_env.url}/broken-plugin"
    shim = _broken_import(tmp_path)
    # The issue: MLflow skips the plugin with a warning, and every registry call fails.
    registry_call = _run_python(["-c", REGISTRY_CALL, uri], cwd=isolated, pythonpath=shim)
    assert registry_call.returncode != 0
    assert 'UserWarning: Failure attempting to register store for scheme "gs"' in (
        registry_call.stderr
    )
    assert "Model registry functionality is unavailable" in registry_call.stderr

    result = _run_cli(["doctor", uri], cwd=isolated, pythonpath=shim)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = _lines(result.stdout)
    # The bucket is fine: every storage check passes, as they did in the issue.
    storage = [line for name, line in lines.items() if name not in MLFLOW_CHECKS]
    assert storage and all(line.startswith("[PASS]") for line in storage), result.stdout
    assert lines["MLflow tracking store"].startswith("[PASS]")
    assert lines["MLflow artifact repository"].startswith("[PASS]")
    assert lines["MLflow registry store"] == (
        f"[FAIL] MLflow registry store: MLflow could not load mlflow-bucket's model registry "
        f"store for {uri}: ImportError: cannot import name '_validate_model_alias_name' from "
        "'mlflow.utils.validation' (entry point mlflow.model_registry_store: gs = "
        "mlflow_bucket_plugins.registry.store:BucketRegistryStore); MLflow skips it, so every "
        "MLflow call that needs the model registry store fails"
    )
    import mlflow

    assert (
        "       fix: upgrade mlflow-bucket (pip install -U mlflow-bucket), or install an MLflow "
        f"this mlflow-bucket supports: pip install '{_supported_mlflow_in_pyproject()}' "
        f"(installed: MLflow {mlflow.__version__})"
    ) in result.stdout.splitlines()
    assert result.stdout.rstrip().endswith("1 failed")


def test_init_refuses_a_store_mlflow_cannot_open_the_registry_of(
    gcs_env: Any, isolated: Path, tmp_path: Path
) -> None:
    uri = f"{gcs_env.url}/broken-plugin"
    result = _run_cli(["init", uri], cwd=isolated, pythonpath=_broken_import(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[FAIL] MLflow registry store: MLflow could not load" in result.stdout
    assert "ImportError: cannot import name '_validate_model_alias_name'" in result.stdout
    assert "1 check(s) failed; nothing written" in result.stderr
    assert list(isolated.iterdir()) == []
    with open_store(uri, **gcs_env.storage_options) as store:
        assert not store.exists("mlflow-bucket.json")


def test_doctor_fails_a_scheme_mlflow_does_not_hand_to_mlflow_bucket(
    gcs_env: Any, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The engine reads gcs:// as gs://; MLflow knows no gcs:// store at all.
    uri = f"gcs://{gcs_env.bucket}/typo"
    code, out = _doctor_here(capsys, uri)
    assert code == 1, out
    lines = _lines(out)
    assert lines["write"].startswith("[PASS]")  # mlflow-bucket's own commands take it
    for name, what in (
        ("MLflow tracking store", "tracking store"),
        ("MLflow registry store", "model registry store"),
    ):
        assert lines[name] == (
            f"[FAIL] {name}: MLflow does not hand {uri} to mlflow-bucket: its {what} is "
            "registered for bucket+file://, gs://, memory://, s3://, not gcs://; MLflow knows "
            "Google Cloud Storage as gs:// only"
        )
    assert out.count("fix: write gs:// instead of gcs://") == 2
    # The artifact root is the store's own (gs://), which MLflow hands to mlflow-bucket.
    assert lines["MLflow artifact repository"].startswith("[PASS]")


def test_a_plain_folder_is_mlflows_filestore_not_mlflow_bucket(tmp_path: Path) -> None:
    from mlflow_bucket_plugins.resolution import resolution_checks

    from mlflow_bucket.storage.local import LocalStore

    folder = tmp_path / "mlruns"
    checks = {c.name: c for c in resolution_checks(str(folder), LocalStore(folder))}
    tracking = checks["MLflow tracking store"]
    assert tracking.status == "fail"
    assert tracking.detail.endswith(
        "not a plain path; a plain folder or file:// URI is MLflow's own FileStore"
    )
    assert tracking.fix == (f"give bucket+file://{folder} for a folder in mlflow-bucket's format")
    assert checks["MLflow registry store"].status == "fail"
    # Nothing was opened there: MLflow's FileStore would have made its folders.
    assert list(folder.rglob("*")) == []


def test_doctor_passes_mlflows_own_artifact_repository_when_switched_to_it(
    gcs_env: Any,
    isolated: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_BUCKET_ARTIFACTS", "builtin")
    uri = f"{gcs_env.url}/builtin-artifacts"
    code, out = _doctor_here(capsys, uri)
    assert code == 0, out
    assert _lines(out)["MLflow artifact repository"] == (
        f"[PASS] MLflow artifact repository: MLflow resolves {uri}/artifacts to its own "
        "GCSArtifactRepository: MLFLOW_BUCKET_ARTIFACTS=builtin switches gs:// back to "
        "MLflow's repository"
    )


def test_doctor_names_another_package_registering_the_same_scheme(
    isolated: Path, tmp_path: Path
) -> None:
    rival = tmp_path / "rival"
    (rival / "rival-0.1.dist-info").mkdir(parents=True)
    (rival / "rival-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rival\nVersion: 0.1\n"
    )
    (rival / "rival-0.1.dist-info" / "entry_points.txt").write_text(
        "[mlflow.tracking_store]\nbucket+file = rival_store:RivalStore\n"
    )
    (rival / "rival_store.py").write_text(RIVAL_MODULE)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(RIVAL_SITECUSTOMIZE.format(rival=str(rival)))
    store = tmp_path / "store"
    result = _run_cli(["doctor", str(store)], cwd=isolated, pythonpath=shim)
    assert result.returncode == 1, result.stdout + result.stderr
    uri = f"bucket+file://{store.resolve()}"
    lines = _lines(result.stdout)
    assert lines["MLflow tracking store"] == (
        f"[FAIL] MLflow tracking store: MLflow resolves {uri} to rival_store.RivalStore, not "
        "mlflow-bucket's BucketTrackingStore: another package registers bucket+file:// for "
        "MLflow's tracking store: rival 0.1 (rival_store:RivalStore)"
    )
    assert "fix: uninstall that package" in result.stdout
    assert lines["MLflow registry store"].startswith("[PASS]")


def test_an_unreachable_store_is_not_opened_but_a_broken_plugin_still_named(
    gcs_env: Any, isolated: Path, tmp_path: Path
) -> None:
    uri = f"gs://no-such-bucket-{tmp_path.name.lower()[-8:]}x/p"
    result = _run_cli(["doctor", uri], cwd=isolated, pythonpath=_broken_import(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = _lines(result.stdout)
    assert lines["bucket reachable"].startswith("[FAIL]")
    # Opening the stores would only fail (slowly, with retries) too: not tried ...
    assert "MLflow tracking store" not in lines
    # ... but a plugin that does not even load is named all the same.
    assert lines["MLflow registry store"].startswith(
        "[FAIL] MLflow registry store: MLflow could not load mlflow-bucket's model registry "
        f"store for {uri}: ImportError: cannot import name '_validate_model_alias_name'"
    )
    assert lines["MLflow artifact repository"].startswith("[PASS]")


def test_doctor_names_the_warning_of_a_plugin_mlflow_skipped(
    isolated: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shim = _broken_import(tmp_path, once=True)
    result = _run_cli(["doctor", str(store)], cwd=isolated, pythonpath=shim)
    assert result.returncode == 1, result.stdout + result.stderr
    uri = f"bucket+file://{store.resolve()}"
    lines = _lines(result.stdout)
    # MLflow loads the registry plugins when first asked for a registry store: the
    # first entry point (bucket+file) failed, the others loaded.
    assert lines["MLflow registry store"] == (
        f"[FAIL] MLflow registry store: MLflow resolves {uri} to no model registry store "
        "(MLflow has none registered for bucket+file://), not mlflow-bucket's "
        "BucketRegistryStore: MLflow skipped it when it loaded its plugins: Failure attempting "
        'to register store for scheme "bucket+file": cannot import name '
        "'_validate_model_alias_name' from 'mlflow.utils.validation'"
    )
    assert "if it persists, report it with this output" in result.stdout
    assert lines["MLflow tracking store"].startswith("[PASS]")


def test_doctor_names_an_artifact_repository_that_fails_when_made(
    gcs_env: Any, isolated: Path, tmp_path: Path
) -> None:
    # MLflow registers the entry point (a module free of MLflow imports), which imports
    # the repository's module only when a repository is made: at a run's first artifact.
    uri = f"{gcs_env.url}/broken-artifacts"
    shim = _broken_import(tmp_path, "mlflow_bucket_plugins.artifacts")
    result = _run_cli(["doctor", uri], cwd=isolated, pythonpath=shim)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = _lines(result.stdout)
    assert lines["MLflow artifact repository"] == (
        "[FAIL] MLflow artifact repository: MLflow found mlflow-bucket's artifact repository "
        f"for {uri}/artifacts, but it raised ImportError: cannot import name "
        "'_validate_model_alias_name' from 'mlflow.utils.validation'"
    )
    assert "fix: upgrade mlflow-bucket (pip install -U mlflow-bucket)" in result.stdout
    assert lines["MLflow tracking store"].startswith("[PASS]")
    assert lines["MLflow registry store"].startswith("[PASS]")


def test_doctor_names_a_tracking_plugin_mlflow_could_not_load(
    isolated: Path, tmp_path: Path
) -> None:
    # mlflow_compat is where a renamed private MLflow name would break first: both
    # stores import it.
    store = tmp_path / "store"
    shim = _broken_import(tmp_path, "mlflow_bucket_plugins.mlflow_compat")
    result = _run_cli(["doctor", str(store)], cwd=isolated, pythonpath=shim)
    assert result.returncode == 1, result.stdout + result.stderr
    uri = f"bucket+file://{store.resolve()}"
    lines = _lines(result.stdout)
    assert lines["MLflow tracking store"] == (
        f"[FAIL] MLflow tracking store: MLflow could not load mlflow-bucket's tracking store "
        f"for {uri}: ImportError: cannot import name '_validate_model_alias_name' from "
        "'mlflow.utils.validation' (entry point mlflow.tracking_store: bucket+file = "
        "mlflow_bucket_plugins.tracking.store:BucketTrackingStore); MLflow skips it, so every "
        "MLflow call that needs the tracking store fails"
    )
    assert lines["MLflow registry store"].startswith(
        "[FAIL] MLflow registry store: MLflow could not load mlflow-bucket's model registry store"
    )
    assert result.stdout.rstrip().endswith("2 failed")


def test_doctor_checks_the_configured_artifact_root(
    gcs_env: Any,
    isolated: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = f"{gcs_env.url}/configured"
    monkeypatch.setenv("MLFLOW_BUCKET_URI", uri)
    monkeypatch.setenv("MLFLOW_BUCKET_ARTIFACT_ROOT", f"{gcs_env.url}/shared-artifacts")
    code, out = _doctor_here(capsys)
    assert code == 0, out
    assert _lines(out)["MLflow artifact repository"] == (
        f"[PASS] MLflow artifact repository: MLflow resolves {gcs_env.url}/shared-artifacts "
        "to mlflow-bucket's CloudArtifactRepository"
    )
    # A scheme MLflow has no artifact repository for (a typo).
    monkeypatch.setenv("MLFLOW_BUCKET_ARTIFACT_ROOT", "gss://typo/artifacts")
    code, out = _doctor_here(capsys)
    assert code == 1, out
    line = _lines(out)["MLflow artifact repository"]
    assert line.startswith(
        "[FAIL] MLflow artifact repository: MLflow could not make an artifact repository for "
        "gss://typo/artifacts: "
    )
    assert "fix: set artifact_root to an artifact URI MLflow supports" in out


def test_doctor_says_so_when_mlflow_bucket_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A source tree on sys.path without the package installed: MLflow finds no entry point.
    from mlflow_bucket_plugins import resolution

    from mlflow_bucket.storage.local import LocalStore

    monkeypatch.setattr(resolution, "DISTRIBUTION", "mlflow-bucket-not-installed")
    folder = tmp_path / "store"
    checks = {
        c.name: c
        for c in resolution.resolution_checks(f"bucket+file://{folder}", LocalStore(folder))
    }
    tracking = checks["MLflow tracking store"]
    assert (tracking.status, tracking.detail) == (
        "fail",
        "MLflow cannot find mlflow-bucket's tracking store: the mlflow-bucket-not-installed "
        "package is not installed in this environment (MLflow finds stores through installed "
        "packages' entry points)",
    )
    assert (
        tracking.fix
        == "pip install mlflow-bucket-not-installed (from a checkout: pip install -e .)"
    )


def test_doctor_names_an_artifact_plugin_mlflow_could_not_load(
    gcs_env: Any, isolated: Path, tmp_path: Path
) -> None:
    uri = f"{gcs_env.url}/broken-artifact-plugin"
    shim = _broken_import(tmp_path, "mlflow_bucket_plugins.artifact_entrypoints")
    result = _run_cli(["doctor", uri], cwd=isolated, pythonpath=shim)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _lines(result.stdout)["MLflow artifact repository"] == (
        "[FAIL] MLflow artifact repository: MLflow could not load mlflow-bucket's artifact "
        f"repository for {uri}/artifacts: ImportError: cannot import name "
        "'_validate_model_alias_name' from 'mlflow.utils.validation' (entry point "
        "mlflow.artifact_repository: gs = "
        "mlflow_bucket_plugins.artifact_entrypoints:gcs_artifact_repository); MLflow skips it "
        "and uses its own GCSArtifactRepository instead"
    )
    assert "fix: upgrade mlflow-bucket (pip install -U mlflow-bucket)" in result.stdout
