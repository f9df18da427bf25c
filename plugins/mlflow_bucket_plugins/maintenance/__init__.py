"""Store maintenance for the command line: what the store holds, compaction and gc.

Works on the store's logs directly (no MLflow import, no spool, no
background threads): ``mlflow-bucket status``, ``compact`` and ``gc`` call
into here, lazily.
"""
