"""Moving MLflow data between any tracking store and a bucket store.

``mlflow-bucket import``, ``export`` and ``verify`` (docs/migrating.md):
``source.py`` reads a store through MLflow's client; ``to_bucket.py`` and
``to_sql.py`` write it in bulk; ``files.py`` copies artifacts;
``compare.py`` checks two stores against each other; ``commands.py`` is the
command line.
"""
