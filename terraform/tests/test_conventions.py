"""Module conventions that checkov does not look at."""

from __future__ import annotations

import re

import pytest

from conftest import EXAMPLES_DIR, MODULES_DIR, Module, load_module, skip_comments

EXPECTED_OUTPUTS = {
    "gcs-store": {"bucket_name", "tracking_uris", "config_snippets", "writer_roles", "reader_roles"},
    "s3-store": {
        "bucket_name",
        "tracking_uris",
        "config_snippets",
        "writer_policy_arn",
        "reader_policy_arn",
        "writer_policy_json",
        "reader_policy_json",
    },
}
PROVIDER = {"gcs-store": "google", "s3-store": "aws"}


def test_every_variable_is_typed_and_described(any_module: Module):
    assert any_module.variables, "module has no variables"
    for name, body in any_module.variables.items():
        assert body.get("type"), f"variable {name} has no type"
        description = body.get("description", "")
        assert isinstance(description, str) and len(description) >= 15, f"variable {name} has no real description"


def test_every_output_is_described(any_module: Module):
    for name, body in any_module.outputs.items():
        description = body.get("description", "")
        assert isinstance(description, str) and len(description) >= 10, f"output {name} has no description"


def test_expected_outputs_present(any_module: Module):
    missing = EXPECTED_OUTPUTS[any_module.path.name] - set(any_module.outputs)
    assert not missing, f"{any_module.path.name} lacks outputs {sorted(missing)}"


def test_validations_have_messages(any_module: Module):
    for name, body in any_module.variables.items():
        for validation in body.get("validation", []):
            assert validation.get("condition"), f"variable {name}: validation without condition"
            assert len(validation.get("error_message", "")) > 10, f"variable {name}: validation without a useful message"


@pytest.mark.parametrize(
    "module_name, variables",
    [
        ("s3-store", ["bucket_name", "projects", "noncurrent_version_expiration_days", "abort_incomplete_multipart_upload_days"]),
        (
            "gcs-store",
            [
                "bucket_name",
                "projects",
                "noncurrent_version_retention_days",
                "soft_delete_retention_days",
                "abort_incomplete_multipart_upload_days",
                "writers",
                "readers",
            ],
        ),
    ],
)
def test_key_inputs_are_validated(module_name: str, variables: list[str]):
    module = load_module(MODULES_DIR / module_name)
    for name in variables:
        assert module.variables[name].get("validation"), f"{module_name}: variable {name} has no validation"


def test_versions_pin_terraform_and_provider(any_module: Module):
    assert (any_module.path / "versions.tf").is_file()
    (block,) = any_module.terraform
    assert re.match(r"^>= ?1\.\d+\.\d+, ?< ?2\.0\.0$", block["required_version"])
    providers = {}
    for entry in block["required_providers"]:
        providers.update(entry)
    provider = providers[PROVIDER[any_module.path.name]]
    assert provider["source"] == f"hashicorp/{PROVIDER[any_module.path.name]}"
    # A lower and an upper bound, so a new major version is never picked up silently.
    assert re.match(r"^>= ?\d+\.\d+\.\d+, ?< ?\d+\.0\.0$", provider["version"]), provider["version"]


def test_modules_configure_no_provider(any_module: Module):
    assert not any_module.providers, "a reusable module must not hold provider blocks"


def test_readme_tables_list_every_input_and_output(any_module: Module):
    readme = (any_module.path / "README.md").read_text(encoding="utf-8")
    assert "## Inputs" in readme and "## Outputs" in readme
    inputs_part = readme.split("## Inputs", 1)[1].split("## Outputs", 1)[0]
    outputs_part = readme.split("## Outputs", 1)[1]
    documented_inputs = set(re.findall(r"^\| `([a-z0-9_]+)` \|", inputs_part, re.M))
    documented_outputs = set(re.findall(r"^\| `([a-z0-9_]+)` \|", outputs_part, re.M))
    assert documented_inputs == set(any_module.variables), "README inputs table is out of date"
    assert documented_outputs == set(any_module.outputs), "README outputs table is out of date"


def test_checkov_skips_carry_a_reason(any_module: Module):
    for name, text in any_module.sources.items():
        for line in text.splitlines():
            if "checkov:skip" in line:
                assert re.search(r"checkov:skip=CKV2?_[A-Z]+_\d+: \S.{15,}", line), f"{name}: skip without reason: {line.strip()}"


def test_skips_are_attached_to_resources(any_module: Module):
    count = sum(len(skip_comments(body)) for body in any_module.resources.values())
    in_text = sum(text.count("checkov:skip") for text in any_module.sources.values())
    assert count == in_text, "a checkov:skip comment sits outside a resource block"


def test_examples_use_the_module_for_two_projects(any_example: Module):
    (call,) = any_example.module_calls.values()
    expected = "../../modules/gcs-store" if any_example.path.name == "gcs" else "../../modules/s3-store"
    assert call["source"] == expected
    assert isinstance(call["projects"], list) and len(call["projects"]) == 2
    assert "tracking_uris" in any_example.outputs and "config_snippets" in any_example.outputs
    assert (any_example.path / "README.md").is_file()
    for name, body in any_example.variables.items():
        assert body.get("type") and body.get("description"), f"example variable {name} untyped or undescribed"


def test_no_credentials_in_examples(any_example: Module):
    for provider in any_example.providers.values():
        for key in ("access_key", "secret_key", "credentials", "access_token"):
            assert key not in provider, f"example provider sets {key}"


def test_examples_dir_has_both_clouds():
    assert {p.name for p in EXAMPLES_DIR.iterdir() if p.is_dir()} >= {"gcs", "s3"}
