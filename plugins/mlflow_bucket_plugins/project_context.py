"""The ``mlflow.run_context_provider`` entry point: applies the project configuration.

MLflow loads this module while ``import mlflow`` runs (its run-context
registry loads every plugin's providers then). Loading it points MLflow at
the project's store (``mlflow_bucket.autoconfig``); the provider itself
adds no tags. Nothing here may raise: MLflow would turn an error into a
warning at best, and a broken import at worst.
"""

from __future__ import annotations

from mlflow.tracking.context.abstract_context import RunContextProvider

from mlflow_bucket.autoconfig import apply

apply()


class ProjectRunContext(RunContextProvider):
    """Adds nothing to a run; it exists so that MLflow loads this module."""

    def in_context(self) -> bool:
        return False

    def tags(self) -> dict[str, str]:
        return {}
