"""Point plain ``import mlflow`` at the project's store: no code change in scripts.

MLflow has no hook for its default tracking URI: ``mlflow.get_tracking_uri``
reads ``mlflow.set_tracking_uri``'s value, then ``MLFLOW_TRACKING_URI``,
then falls back to its own default. It does load every installed plugin's
entry points while ``import mlflow`` runs; ours
(``mlflow_bucket_plugins.project_context``, an ``mlflow.run_context_provider``)
calls ``apply()`` then, which fills in ``MLFLOW_TRACKING_URI`` (and
``MLFLOW_REGISTRY_URI`` when the project names a separate registry) from the
configuration, only when they are unset. So MLflow's explicit settings still
win, and a later ``mlflow.set_tracking_uri`` wins over all of it.

The one-line alternative, where plugins' entry points are not loaded (or
to be explicit): ``mlflow.set_tracking_uri(mlflow_bucket.project.load_config().uri)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

from .project import (
    MLFLOW_REGISTRY_URI,
    MLFLOW_TRACKING_URI,
    ConfigError,
    load_config,
)

log = logging.getLogger(__name__)

# Set to 0/false to keep MLflow's own default even inside a configured project.
SWITCH = "MLFLOW_BUCKET_AUTOCONFIG"


def apply(environ: MutableMapping[str, str] | None = None, start: str | None = None) -> str | None:
    """Set MLflow's URI variables from the configuration where unset.

    Returns the tracking URI it set (None if it set none). Never raises: a
    broken file is reported as a warning, and MLflow keeps its default.
    """
    env = os.environ if environ is None else environ
    if env.get(SWITCH, "").strip().lower() in ("0", "false", "no", "off"):
        return None
    if env.get(MLFLOW_TRACKING_URI) and env.get(MLFLOW_REGISTRY_URI):
        return None
    try:
        config = load_config(start, environ=env, mlflow_uris=False)
    except ConfigError as exc:
        log.warning("mlflow-bucket configuration not applied: %s", exc)
        return None
    except Exception as exc:  # never break `import mlflow`
        log.warning("mlflow-bucket configuration not applied: %s: %s", type(exc).__name__, exc)
        return None
    applied = None
    if config.uri and not env.get(MLFLOW_TRACKING_URI):
        env[MLFLOW_TRACKING_URI] = applied = config.uri
    registry_named = not config.sources.get("registry_uri", "").startswith("uri")
    if config.registry_uri and registry_named and not env.get(MLFLOW_REGISTRY_URI):
        env[MLFLOW_REGISTRY_URI] = config.registry_uri
    return applied
