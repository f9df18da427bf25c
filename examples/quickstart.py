"""Train a gradient boosting classifier and log everything about it into the bucket.

    export MLFLOW_TRACKING_URI=gs://team-bucket/mlflow   # or s3://..., bucket+file:///srv/mlflow
    python examples/quickstart.py

With nothing configured it logs into a local emulator bucket instead (see
default_store.py). The body of main() is plain MLflow: tags, parameters,
metrics, a figure and the model, all stored in the bucket.
"""

from __future__ import annotations

import mlflow
from default_store import bucket_store
from matplotlib.figure import Figure
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, precision_score, recall_score
from sklearn.model_selection import train_test_split


def performance_chart(y_test, predictions, scores: dict[str, float]) -> Figure:
    """The confusion matrix next to the three scores, as one figure."""
    # A Figure, not pyplot: no display or global state needed on a server.
    figure = Figure(figsize=(9, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    ConfusionMatrixDisplay.from_predictions(y_test, predictions, ax=left, colorbar=False)
    left.set_title("confusion matrix (test set)")
    right.bar(list(scores), list(scores.values()), color=["#4c72b0", "#55a868", "#c44e52"])
    right.set_ylim(0, 1)
    right.set_title("scores (test set)")
    for i, value in enumerate(scores.values()):
        right.text(i, value + 0.01, f"{value:.3f}", ha="center")
    return figure


def trusting_trees() -> dict[str, list[str]]:
    """Recent MLflow saves scikit-learn models with skops, which loads only the
    types it is told to trust; a gradient-boosted model is made of trees.
    Older MLflow pickles them and takes no such argument."""
    if "skops" not in mlflow.sklearn.SUPPORTED_SERIALIZATION_FORMATS:
        return {}
    return {"skops_trusted_types": ["sklearn.tree._tree.Tree"]}


def main() -> str:
    # A dataset that ships with scikit-learn: 569 tumours, malignant or benign.
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    params = {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3, "random_state": 0}

    mlflow.set_experiment("quickstart")
    with mlflow.start_run(run_name="gradient-boosting") as run:
        mlflow.set_tags({"team": "ml", "dataset": "breast-cancer", "stage": "exploration"})
        mlflow.log_params(params)

        model = GradientBoostingClassifier(**params).fit(X_train, y_train)
        predictions = model.predict(X_test)
        scores = {
            "accuracy": accuracy_score(y_test, predictions),
            "precision": precision_score(y_test, predictions),
            "recall": recall_score(y_test, predictions),
        }
        mlflow.log_metrics(scores)
        mlflow.log_figure(performance_chart(y_test, predictions, scores), "performance.png")
        # The model, its environment and an input example: loadable later with
        # mlflow.sklearn.load_model(f"runs:/{run_id}/model") or from the UI.
        mlflow.sklearn.log_model(
            model, name="model", input_example=X_test.head(3), **trusting_trees()
        )

    print(f"logged run {run.info.run_id} to {mlflow.get_tracking_uri()}")
    print("  " + ", ".join(f"{name} {value:.3f}" for name, value in scores.items()))
    return run.info.run_id


if __name__ == "__main__":
    with bucket_store():
        main()
