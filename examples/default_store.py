"""Where the examples log: the store you configured, else a throwaway local bucket.

Not an example itself, and your own scripts do not need it: with a store
configured they are plain MLflow code. It only lets every example run with
no setup at all:

* ``MLFLOW_TRACKING_URI`` (or ``mlflow.set_tracking_uri``, or the project's
  ``[tool.mlflow-bucket]`` settings, see docs/configuration.md) names a
  store: the examples log there and nothing here happens;
* nothing is configured: a local GCS emulator (the one the tests use)
  serves the bucket ``gs://mlflow-examples/team`` for as long as the
  example runs, and its runs are gone when it ends.

Child processes an example starts (sweep workers, team members, ``mlflow
run``) inherit the environment set here, so they log into the same bucket.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import mlflow

BUCKET = "mlflow-examples"
STORE = f"gs://{BUCKET}/team"


_throwaway = False


def throwaway() -> bool:
    """Whether the examples log into the local emulator (gone at exit)."""
    return _throwaway


def configured_store() -> str | None:
    """The store named by the user's configuration, or None."""
    # A project file counts too: `import mlflow` has set MLFLOW_TRACKING_URI
    # from it already (the plugin's hook; docs/configuration.md).

    return mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None


@contextlib.contextmanager
def bucket_store() -> Iterator[str]:
    """Yield the tracking URI the example should log to (see the module's doc)."""
    uri = configured_store()
    if uri is not None:
        yield uri
        return
    from mlflow_bucket.testing.gcs_emulator import GcsEmulator

    global _throwaway

    with tempfile.TemporaryDirectory(prefix="mlflow-examples-") as scratch, GcsEmulator() as gcs:
        gcs.create_bucket(BUCKET)
        os.environ.update(
            {
                # The cloud SDKs' own setting for an emulator; anonymous credentials.
                "STORAGE_EMULATOR_HOST": gcs.endpoint,
                "GOOGLE_CLOUD_PROJECT": "examples",
                # gcsfs would otherwise probe the emulator over gRPC for a minute.
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                "MLFLOW_TRACKING_URI": STORE,
                # The bucket lives as long as this process: so do the spool and the
                # cache of its objects (another emulator's objects may share keys).
                "MLFLOW_BUCKET_SPOOL_DIR": os.path.join(scratch, "spool"),
                "MLFLOW_BUCKET_CACHE_DIR": os.path.join(scratch, "cache"),
            }
        )
        print(f"No store configured: logging into {STORE} on a local emulator ({gcs.endpoint}).")
        print("It goes away when this script ends; set MLFLOW_TRACKING_URI to keep your runs.")
        _throwaway = True
        try:
            yield STORE
        finally:
            _upload_before_the_bucket_goes()
            _throwaway = False


def _upload_before_the_bucket_goes() -> None:
    # Normally what a process logged is uploaded at its exit; here the bucket
    # stops first, so end the run and upload everything now.
    from mlflow_bucket_plugins.tracking.backend import close_backends

    with contextlib.suppress(Exception):
        mlflow.flush_async_logging()
    if mlflow.active_run() is not None:
        mlflow.end_run()
    close_backends()
