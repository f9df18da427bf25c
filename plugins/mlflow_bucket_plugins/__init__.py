"""The MLflow side of mlflow-bucket: stores and repositories registered
through MLflow's plugin entry points, mapping MLflow's API onto the engine
in ``mlflow_bucket``. Nothing here talks to a cloud client directly."""

# MLflow loads its store entry points (ours among them) while `mlflow.tracking`
# is first imported. Imported here first, so that a program whose first import
# is one of our modules does not reach that moment half-way through our own
# store module, which MLflow would then skip with a "circular import" warning.
import mlflow.tracking  # noqa: F401
