"""Autologging: scikit-learn training logged into the bucket with no logging calls.

    export MLFLOW_TRACKING_URI=gs://team-bucket/mlflow   # or s3://..., bucket+file:///srv/mlflow
    python examples/autolog.py

mlflow.sklearn.autolog() patches scikit-learn's fit(): every fit becomes a
run with the estimator's parameters, training metrics and the fitted
model; a grid search also gets a child run per candidate, and scoring on
test data adds a metric to the run that fitted. Nothing here knows about
buckets. With nothing configured it logs into a local emulator bucket
(default_store.py).
"""

from __future__ import annotations

import mlflow
from default_store import bucket_store
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> str:
    mlflow.set_experiment("autolog")
    # log_input_examples: the model's page in the UI shows a sample input.
    mlflow.sklearn.autolog(log_input_examples=True, max_tuning_runs=4)

    X, y = load_iris(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    search = GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
        {"logisticregression__C": [0.1, 1.0, 10.0]},
        cv=3,
    )
    with mlflow.start_run(run_name="grid-search") as run:
        search.fit(X_train, y_train)  # one run, plus a child run per candidate C
        search.score(X_test, y_test)  # logged too, as a metric on the same run

    print(f"logged run {run.info.run_id} to {mlflow.get_tracking_uri()}")
    print(f"  best C {search.best_params_['logisticregression__C']}")
    return run.info.run_id


if __name__ == "__main__":
    with bucket_store():
        main()
