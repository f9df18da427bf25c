"""Prompts (MLflow 3) are registered models and versions with tags: they work on this store."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient


@pytest.fixture
def uri(memory_uri: str) -> str:
    mlflow.set_tracking_uri(memory_uri)
    mlflow.set_registry_uri(memory_uri)
    yield memory_uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_register_load_alias_and_search_prompts(uri: str) -> None:
    first = mlflow.genai.register_prompt(
        name="summarize", template="Summarize {{text}} in {{n}} words.", tags={"team": "nlp"}
    )
    assert first.version == 1
    second = mlflow.genai.register_prompt(
        name="summarize",
        template=[{"role": "user", "content": "Summarize {{text}}."}],
        commit_message="chat form",
    )
    assert second.version == 2
    loaded = mlflow.genai.load_prompt("prompts:/summarize/1")
    assert loaded.template == "Summarize {{text}} in {{n}} words."
    assert loaded.format(text="this", n=3) == "Summarize this in 3 words."
    mlflow.genai.set_prompt_alias("summarize", alias="production", version=2)
    assert mlflow.genai.load_prompt("prompts:/summarize@production").version == 2
    assert mlflow.genai.load_prompt("prompts:/summarize@latest").version == 2
    found = mlflow.genai.search_prompts()
    assert [p.name for p in found] == ["summarize"]

    # Prompts stay out of the model pages, as on MLflow's SQL store...
    client = MlflowClient()
    client.create_registered_model("a-model")
    assert [m.name for m in client.search_registered_models()] == ["a-model"]
    assert client.search_model_versions() == []
    # ...and a prompt's name is taken for models.
    with pytest.raises(mlflow.exceptions.MlflowException, match="already taken by a prompt"):
        client.create_registered_model("summarize")
    mlflow.genai.delete_prompt_alias("summarize", "production")
    with pytest.raises(mlflow.exceptions.MlflowException):
        mlflow.genai.load_prompt("prompts:/summarize@production")
