"""What the registry store answers for the model registry features it does not hold:
webhooks (docs/limits.md); the machinery is ``mlflow_bucket_plugins.unsupported``."""

from __future__ import annotations

from mlflow.store.model_registry.abstract_store import AbstractStore

from ..unsupported import Answer, fill_unsupported, paged

# No webhooks are stored in a bucket: the server's event deliveries list them
# on every registry write and must find none, quietly.
EMPTY: dict[str, Answer] = {
    "list_webhooks": paged,
    "list_webhooks_by_event": paged,
}

fill_registry_unsupported = fill_unsupported(
    AbstractStore,
    EMPTY,
    (),
    "model registry: it holds registered models, versions, aliases and prompts, not webhooks",
)
