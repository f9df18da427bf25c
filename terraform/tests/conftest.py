"""Shared helpers: parse the Terraform modules with python-hcl2.

Each module directory is read into a ``Module`` holding its resources,
variables, outputs and locals, with string quotes stripped so that literal
values compare as plain Python strings. Expressions stay as ``${...}``
strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

TERRAFORM_DIR = Path(__file__).resolve().parent.parent
MODULES_DIR = TERRAFORM_DIR / "modules"
EXAMPLES_DIR = TERRAFORM_DIR / "examples"
MODULE_NAMES = ("gcs-store", "s3-store")
EXAMPLE_NAMES = ("gcs", "s3")

_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=True)


def _unquote(name: str) -> str:
    """Block labels keep their quotes in python-hcl2 8.x; drop them."""
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1]
    return name


@dataclass
class Module:
    path: Path
    resources: dict[tuple[str, str], dict] = field(default_factory=dict)
    data: dict[tuple[str, str], dict] = field(default_factory=dict)
    variables: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)
    locals: dict[str, object] = field(default_factory=dict)
    terraform: list[dict] = field(default_factory=list)
    providers: dict[str, dict] = field(default_factory=dict)
    module_calls: dict[str, dict] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def resource(self, rtype: str, name: str) -> dict:
        key = (rtype, name)
        assert key in self.resources, f"{self.path.name}: resource {rtype}.{name} is missing"
        return self.resources[key]

    def resources_of(self, rtype: str) -> dict[str, dict]:
        return {n: body for (t, n), body in self.resources.items() if t == rtype}

    @property
    def text(self) -> str:
        return "\n".join(self.sources.values())


def load_module(path: Path) -> Module:
    module = Module(path=path)
    for tf in sorted(path.glob("*.tf")):
        text = tf.read_text(encoding="utf-8")
        module.sources[tf.name] = text
        parsed = hcl2.loads(text, serialization_options=_OPTIONS)
        for block in parsed.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    module.resources[(_unquote(rtype), _unquote(name))] = body
        for block in parsed.get("data", []):
            for dtype, named in block.items():
                for name, body in named.items():
                    module.data[(_unquote(dtype), _unquote(name))] = body
        for block in parsed.get("variable", []):
            for name, body in block.items():
                module.variables[_unquote(name)] = body
        for block in parsed.get("output", []):
            for name, body in block.items():
                module.outputs[_unquote(name)] = body
        for block in parsed.get("locals", []):
            for name, value in block.items():
                if not name.startswith("__"):
                    module.locals[name] = value
        for block in parsed.get("provider", []):
            for name, body in block.items():
                module.providers[_unquote(name)] = body
        for block in parsed.get("module", []):
            for name, body in block.items():
                module.module_calls[_unquote(name)] = body
        module.terraform.extend(parsed.get("terraform", []))
    return module


def blocks(body: dict, name: str) -> list[dict]:
    """Nested blocks of one kind (python-hcl2 gives a list of dicts)."""
    value = body.get(name, [])
    if isinstance(value, dict):
        return [value]
    return list(value)


def skip_comments(body: dict) -> list[str]:
    return [c["value"] for c in body.get("__comments__", []) if "checkov:skip" in c.get("value", "")]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


LOCAL_REF = re.compile(r"^\$\{local\.([A-Za-z0-9_]+)\}$")


@pytest.fixture(scope="session")
def s3() -> Module:
    return load_module(MODULES_DIR / "s3-store")


@pytest.fixture(scope="session")
def gcs() -> Module:
    return load_module(MODULES_DIR / "gcs-store")


@pytest.fixture(scope="session", params=MODULE_NAMES)
def any_module(request) -> Module:
    return load_module(MODULES_DIR / request.param)


@pytest.fixture(scope="session", params=EXAMPLE_NAMES)
def any_example(request) -> Module:
    return load_module(EXAMPLES_DIR / request.param)
