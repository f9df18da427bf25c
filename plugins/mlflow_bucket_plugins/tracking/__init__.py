"""The MLflow tracking store on the engine's log (``mlflow.tracking_store``)."""
