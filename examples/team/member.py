"""One team member's training script: plain MLflow code, nothing about the team.

Run by run_team.py as two different users at once; on a real team each
person runs their own script on their own machine, with the same
MLFLOW_TRACKING_URI (or the same [tool.mlflow-bucket] in the project).
"""

from __future__ import annotations

import getpass
import math
import sys

import mlflow


def main(experiment: str, learning_rates: list[float]) -> None:
    mlflow.set_experiment(experiment)
    for rate in learning_rates:
        # MLflow records who logged the run (the mlflow.user tag) from the OS user.
        with mlflow.start_run(run_name=f"{getpass.getuser()}-lr-{rate}"):
            mlflow.log_param("learning_rate", rate)
            # A stand-in for training: a loss curve that depends on the rate.
            for epoch in range(10):
                loss = math.exp(-10 * rate * epoch) + 0.001 / rate
                mlflow.log_metric("loss", loss, step=epoch)
    print(f"{getpass.getuser()} logged {len(learning_rates)} runs")


if __name__ == "__main__":
    main(sys.argv[1], [float(rate) for rate in sys.argv[2:]])
