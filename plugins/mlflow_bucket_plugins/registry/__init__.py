"""The MLflow model registry on the engine's log (``mlflow.model_registry_store``).

- ``fold``: the registry's state and how log entries change it (pure);
- ``backend``: the registry's log view, shared per store URI in a process;
- ``store``: ``BucketRegistryStore``, MLflow's registry API on top;
- ``promote``: move an alias to a better version (``mlflow-bucket promote``).
"""
