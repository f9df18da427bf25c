"""README's "Supported MLflow" says what CI tests: the declared range, both its ends."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _declared() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d for d in deps if re.match(r"mlflow\s*[<>=]", d)).replace(" ", "")


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Supported MLflow", 1)[1].split("\n## ", 1)[0]


def test_readme_states_the_declared_range_and_its_ends() -> None:
    spec = _declared()
    low = re.search(r">=([0-9.]+)", spec).group(1)  # type: ignore[union-attr]
    high = re.search(r"<([0-9.]+)", spec).group(1)  # type: ignore[union-attr]
    section = _section()
    assert f"`{spec}`" in section
    tested = re.search(r"Tested: MLflow ([0-9.]+) and ([0-9.]+)\.", section)
    assert tested is not None
    oldest, newest = tested.groups()
    assert oldest == low
    # The bound sits right above the newest minor release that passed.
    major, minor = (int(x) for x in newest.split(".")[:2])
    assert high == f"{major}.{minor + 1}"


def test_this_run_is_on_a_version_the_readme_names() -> None:
    """CI's two venvs are the oldest and the newest in range; each is one of the two."""
    installed = importlib.metadata.version("mlflow")
    tested = re.search(r"Tested: MLflow ([0-9.]+) and ([0-9.]+)\.", _section())
    assert tested is not None
    assert ".".join(installed.split(".")[:2]) in tested.groups(), installed
