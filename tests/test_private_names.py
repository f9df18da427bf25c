"""MLflow names that are not public API are used in one module only.

MLflow renames its private helpers between releases (3.18 renamed
``_validate_model_alias_name``); an import of one elsewhere made the
registry plugin fail to load. Every such use lives in
``plugins/mlflow_bucket_plugins/mlflow_compat.py``, which knows each name's
history and has a fallback. This test reads every Python file of the
project and names the file, line and name of any other use, and checks
that on the installed MLflow no fallback is in use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("src", "plugins", "tests", "benchmarks", "examples")
COMPAT = ROOT / "plugins" / "mlflow_bucket_plugins" / "mlflow_compat.py"
ATTR_CALLS = {"getattr", "setattr", "hasattr", "delattr"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_mlflow(module: str) -> bool:
    return module == "mlflow" or module.startswith("mlflow.")


def private_uses(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line name`` of each private MLflow name used in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bound: set[str] = set()  # local names of MLflow modules and objects
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_mlflow(alias.name):
                    if any(_private(part) for part in alias.name.split(".")):
                        found.append((node.lineno, alias.name))
                    bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and _is_mlflow(node.module):
            if any(_private(part) for part in node.module.split(".")):
                found.append((node.lineno, node.module))
            for alias in node.names:
                if _private(alias.name):
                    found.append((node.lineno, f"{node.module}.{alias.name}"))
                bound.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                found.append((node.lineno, f"{ast.unparse(node.value)}.{node.attr}"))
        elif isinstance(node, ast.Call) and len(node.args) >= 2:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            target, attr = node.args[0], node.args[1]
            if (
                name in ATTR_CALLS
                and isinstance(target, ast.Name)
                and target.id in bound
                and isinstance(attr, ast.Constant)
                and isinstance(attr.value, str)
                and _private(attr.value)
            ):
                found.append((node.lineno, f"{target.id}.{attr.value}"))
    rel = path.relative_to(root)
    return [f"{rel}:{line} {name}" for line, name in sorted(set(found))]


def test_no_private_mlflow_name_outside_the_compat_module() -> None:
    offenders = [
        use
        for folder in FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != COMPAT and ".venv" not in path.parts
        for use in private_uses(path)
    ]
    assert not offenders, (
        "private MLflow names used outside plugins/mlflow_bucket_plugins/mlflow_compat.py "
        "(add them there, with their history and a fallback):\n" + "\n".join(offenders)
    )


def test_the_check_sees_each_kind_of_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import mlflow\n"
        "from mlflow.utils.validation import _validate_run_id\n"
        "from mlflow.tracking._tracking_service import utils\n"
        "import mlflow.server.handlers as handlers\n"
        "x = mlflow.tracking.fluent._active_experiment_id\n"
        "setattr(handlers, '_tracking_store', None)\n"
        "ok = mlflow.__version__, mlflow.MlflowClient\n"
    )
    uses = [u.split(" ", 1)[1] for u in private_uses(sample, tmp_path)]
    assert uses == [
        "mlflow.utils.validation._validate_run_id",
        "mlflow.tracking._tracking_service",
        "mlflow.tracking.fluent._active_experiment_id",
        "handlers._tracking_store",
    ]


def test_this_mlflow_serves_every_compat_use() -> None:
    """A fallback in use means MLflow renamed a helper: update mlflow_compat's candidates."""
    from mlflow_bucket_plugins import mlflow_compat

    assert not mlflow_compat.fallbacks_in_use()
    assert len(mlflow_compat.USES) >= 20


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("validate_alias_name", ("",)),
        ("validate_alias_name", ("bad alias!",)),
        ("validate_alias_name", ("a" * 300,)),
        ("validate_alias_name_reserved", ("Latest",)),
        ("validate_alias_name_reserved", ("v3",)),
        ("validate_model_name", ("",)),
        ("validate_model_name", ("a/b",)),
        ("validate_model_name", ("../x",)),
        ("validate_model_renaming", (None,)),
        ("validate_model_version", ("one",)),
        ("validate_registered_model_tag", ("k" * 300, "v")),
        ("validate_model_version_tag", ("bad\x00key", "v")),
        ("validate_tag_name", (None,)),
        ("validate_experiment_name", ("  ",)),
        ("validate_experiment_name", (5,)),
        ("validate_experiment_tag", ("k", "v" * 30000)),
        ("validate_metric", ("m", None, 0, 0)),
        ("validate_metric", ("m", 1.0, -1, 0)),
        ("validate_metric", ("../m", 1.0, 0, 0)),
        ("validate_tag", ("k" * 300, "v")),
        ("validate_run_id", ("!bad",)),
        ("validate_logged_model_name", ("a/b",)),
        ("validate_logged_model_name", ("",)),
    ],
)
def test_each_fallback_refuses_what_mlflow_refuses(name: str, args: tuple[object, ...]) -> None:
    """The local copies refuse, with MLflow's error code, what MLflow's own helper refuses
    (older MLflows refuse less: there the input passes both or the fallback is stricter)."""
    from mlflow.exceptions import MlflowException
    from mlflow_bucket_plugins import mlflow_compat

    use = mlflow_compat.USES[name]
    try:
        getattr(mlflow_compat, name)(*args)
    except MlflowException as exc:
        mlflow_code = exc.error_code
    else:
        pytest.skip(f"this MLflow's {name} accepts {args!r}")
    with pytest.raises(MlflowException) as fallback:
        use.fallback(*args)
    assert fallback.value.error_code == mlflow_code == "INVALID_PARAMETER_VALUE"


def test_the_servers_store_variable_is_mlflows() -> None:
    """mlflow_compat names the variable (importing mlflow.server is too heavy for a
    training process): it must be the one this MLflow's server sets."""
    import importlib

    from mlflow_bucket_plugins import mlflow_compat

    for module in ("mlflow.server.constants", "mlflow.server"):
        try:
            value = importlib.import_module(module).BACKEND_STORE_URI_ENV_VAR
        except (ImportError, AttributeError):
            continue
        assert value == mlflow_compat.SERVER_BACKEND_STORE_ENV
        return
    pytest.fail("this MLflow's server names no BACKEND_STORE_URI_ENV_VAR")
