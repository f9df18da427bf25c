"""Two team members log into one bucket at the same time; one UI shows both.

    export MLFLOW_TRACKING_URI=gs://team-bucket/mlflow   # or s3://..., bucket+file:///srv/mlflow
    python examples/team/run_team.py          # then: mlflow-bucket ui (see README.md here)
    python examples/team/run_team.py --ui     # or start the UI right away

Alice and Bob are two processes with different OS users (LOGNAME/USER, which
MLflow reads for a run's user). Neither knows of the other: no server, no
lock; each writes its own objects into the bucket. With nothing configured
they log into a local emulator bucket that lives as long as this script
(with --ui: until you press Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/default_store.py

import mlflow  # noqa: E402
from default_store import bucket_store, throwaway  # noqa: E402

EXPERIMENT = "team-project"
MEMBERS = {"alice": ["0.01", "0.1"], "bob": ["0.03", "0.3"]}


def main(ui: bool) -> None:
    # Create the shared experiment once, up front. (If both members created it
    # at the same moment, one would win the name; MLflow's set_experiment then
    # leaves the loser on experiment 0 until it calls set_experiment again.)
    experiment_id = mlflow.set_experiment(EXPERIMENT).experiment_id

    members = [
        subprocess.Popen(
            [sys.executable, str(HERE / "member.py"), EXPERIMENT, *rates],
            # The environment carries the store (MLFLOW_TRACKING_URI, or the
            # local emulator's settings); only the user differs.
            env={**os.environ, "LOGNAME": user, "USER": user},
        )
        for user, rates in MEMBERS.items()
    ]
    if any(member.wait() != 0 for member in members):
        raise SystemExit("a team member's script failed")

    # Anyone who can read the bucket sees everyone's runs.
    runs = mlflow.search_runs([experiment_id], order_by=["metrics.loss ASC"], output_format="list")
    print(f"{len(runs)} runs in {EXPERIMENT!r} (experiment {experiment_id}), best first:")
    for run in runs:
        user = run.data.tags.get("mlflow.user")
        print(f"  {user:6} {run.info.run_name:16} loss {run.data.metrics['loss']:.4f}")

    uri = mlflow.get_tracking_uri()
    if not ui:
        if throwaway():
            print("Run again with --ui to browse them before the local bucket goes away.")
        else:
            print(f"See both in one UI: mlflow-bucket ui  (or mlflow ui --backend-store-uri {uri})")
        return
    # MLflow's UI on this machine, reading the same bucket: `mlflow-bucket ui URI`,
    # run with this interpreter. It prints its URL; Ctrl-C stops it.
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run([sys.executable, "-m", "mlflow_bucket.cli", "ui", uri], check=False)


if __name__ == "__main__":
    with bucket_store():
        main(ui="--ui" in sys.argv[1:])
