"""The MLflow side of mlflow-bucket: stores and repositories registered
through MLflow's plugin entry points, mapping MLflow's API onto the engine
in ``mlflow_bucket``. Nothing here talks to a cloud client directly."""
