"""Automatic promotion: move an alias to a model version that beats its holder on a metric.

    mlflow-bucket promote MODEL --metric NAME [--higher-is-better | --lower-is-better]
        [--alias champion] [--candidate VERSION | --challenger-alias challenger]
        [--min-improvement X] [--dry-run] [--json]

The candidate (a version number, the version a challenger alias points at,
or by default the model's newest version) is compared with the version the
alias points at now, on one metric read from the version's logged model
(MLflow 3) or else its source run. The alias moves only if the candidate is
better by more than nothing and by at least ``--min-improvement``. Either
way the decision is recorded as tags on the candidate (who, when, the
metric, both values, the previous holder, why), unless ``--dry-run``.

On this project's registry the move is a compare-and-set: the alias moves
only if it still points at the version the candidate was compared with, in
the same atomic step as the decision's tags. A promoter that loses a race
compares again with the new holder, so two promoters running at once end
with one consistent alias and both decisions recorded. On another registry
(MLflow's SQL store, say) the same steps run without that guarantee.

Exit codes (``EXIT_*`` below) are for CI pipelines; docs/registry.md lists
them. MLflow is imported lazily: the engine's command line builds its
parser from this module without importing MLflow.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import socket
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

# The candidate holds the alias now: promoted (or, with --dry-run, would be),
# or it held the alias already.
EXIT_PROMOTED = 0
# Something failed: the store is unreachable, an unexpected error.
EXIT_ERROR = 1
# Bad command-line arguments (argparse's own code).
EXIT_USAGE = 2
# The candidate is not better by the margin: the alias stays where it was.
EXIT_NOT_BETTER = 3
# Cannot decide: the model, the candidate, the challenger alias or the metric
# (on the candidate or on the current holder) is missing, or the metric is NaN.
EXIT_CANNOT_DECIDE = 4
# Lost the race to move the alias more times than allowed (heavy contention).
EXIT_CONTENDED = 5

TAG_PREFIX = "mlflow_bucket.promotion"


class CannotDecide(Exception):
    """Something the comparison needs is missing."""


@dataclass
class Decision:
    """What ``promote`` decided, and why."""

    model: str
    alias: str
    metric: str
    higher_is_better: bool
    min_improvement: float
    dry_run: bool
    # "promoted", "already-holds", "not-better", "cannot-decide", "contended"
    outcome: str = "cannot-decide"
    candidate: int | None = None
    candidate_value: float | None = None
    candidate_source: str | None = None
    previous: int | None = None
    previous_value: float | None = None
    previous_source: str | None = None
    reason: str = ""
    attempts: int = 0
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return {
            "promoted": EXIT_PROMOTED,
            "already-holds": EXIT_PROMOTED,
            "not-better": EXIT_NOT_BETTER,
            "cannot-decide": EXIT_CANNOT_DECIDE,
            "contended": EXIT_CONTENDED,
        }[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exit_code": self.exit_code}


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _usable(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def version_metric(client: Any, version: Any, metric: str) -> tuple[float | None, str]:
    """(value, where it came from) of ``metric`` for a model version.

    The version's logged model first (MLflow 3: its latest point by step,
    then timestamp), else its source run's latest value. None if neither
    has it.
    """
    from mlflow.exceptions import MlflowException

    looked: list[str] = []
    if getattr(version, "model_id", None):
        looked.append(f"logged model {version.model_id}")
        try:
            logged = client.get_logged_model(version.model_id)
        except MlflowException:
            logged = None
        points = [m for m in (getattr(logged, "metrics", None) or []) if m.key == metric]
        if points:
            latest = max(points, key=lambda m: (m.step, m.timestamp))
            value = _usable(latest.value)
            if value is not None:
                return value, f"logged model {version.model_id}"
    if version.run_id:
        looked.append(f"run {version.run_id}")
        try:
            run = client.get_run(version.run_id)
        except MlflowException:
            run = None
        if run is not None and metric in run.data.metrics:
            value = _usable(run.data.metrics[metric])
            if value is not None:
                return value, f"run {version.run_id}"
    return None, " or ".join(looked) or "no run or logged model"


def _fmt(value: float | None) -> str:
    return "" if value is None else repr(value)


def _candidate(client: Any, model: str, candidate: Any, challenger_alias: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        if candidate is not None:
            return client.get_model_version(model, str(candidate))
        if challenger_alias:
            return client.get_model_version_by_alias(model, challenger_alias)
        found = client.search_model_versions(
            f"name = '{model}'", max_results=1, order_by=["version_number DESC"]
        )
    except MlflowException as exc:
        raise CannotDecide(f"no candidate: {exc.message}") from None
    if not found:
        raise CannotDecide(f"model {model!r} has no versions")
    return found[0]


def _holder(client: Any, store: Any, model: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        if hasattr(store, "alias_holder"):
            holder: int | None = store.alias_holder(model, alias, fresh=True)
            return holder
        aliases = client.get_registered_model(model).aliases
    except MlflowException as exc:
        raise CannotDecide(exc.message) from None
    return int(aliases[alias]) if alias in aliases else None


def promote(
    model: str,
    metric: str,
    *,
    higher_is_better: bool = True,
    alias: str = "champion",
    candidate: int | str | None = None,
    challenger_alias: str | None = None,
    min_improvement: float = 0.0,
    dry_run: bool = False,
    client: Any = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    max_attempts: int = 10,
) -> Decision:
    """Move ``alias`` of ``model`` to the candidate if it beats the current holder on ``metric``.

    Returns the Decision (``decision.exit_code`` for a CI pipeline).
    ``candidate`` and ``challenger_alias`` are exclusive; with neither, the
    candidate is the model's newest version. ``min_improvement`` is an
    absolute difference in the metric's units. Raises ValueError for
    arguments that make no sense; other failures (the store, the network)
    propagate.
    """
    from mlflow import MlflowClient

    if candidate is not None and challenger_alias:
        raise ValueError("give a candidate version or a challenger alias, not both")
    if min_improvement < 0 or math.isnan(min_improvement):
        raise ValueError(f"min_improvement must be a number >= 0, not {min_improvement}")
    client = client or MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    store = client._get_registry_client().store
    decision = Decision(model, alias, metric, higher_is_better, float(min_improvement), dry_run)
    direction = "higher-is-better" if higher_is_better else "lower-is-better"
    for attempt in range(1, max_attempts + 1):
        decision.attempts = attempt
        try:
            cand = _candidate(client, model, candidate, challenger_alias)
            number = int(cand.version)
            decision.candidate = number
            holder = _holder(client, store, model, alias)
            decision.previous = holder
            if holder == number:
                decision.outcome = "already-holds"
                decision.reason = f"version {number} already holds @{alias}"
                return decision
            value, source = version_metric(client, cand, metric)
            decision.candidate_value, decision.candidate_source = value, source
            if value is None:
                raise CannotDecide(f"candidate version {number} has no {metric!r} in {source}")
            held_value = None
            if holder is not None:
                held = client.get_model_version(model, str(holder))
                held_value, held_source = version_metric(client, held, metric)
                decision.previous_value, decision.previous_source = held_value, held_source
                if held_value is None:
                    raise CannotDecide(
                        f"@{alias} (version {holder}) has no {metric!r} in {held_source}"
                    )
        except CannotDecide as exc:
            decision.outcome = "cannot-decide"
            decision.reason = str(exc)
            return decision
        if held_value is None:
            better = True
            reason = f"@{alias} points at no version: version {number} ({metric}={value}) takes it"
        else:
            gain = value - held_value if higher_is_better else held_value - value
            better = gain > 0 and gain >= min_improvement
            verb = "beats" if better else "does not beat"
            reason = (
                f"version {number} ({metric}={value}) {verb} version {holder} "
                f"({metric}={held_value}) by {gain:+g}, {direction}, "
                f"minimum improvement {min_improvement:g}"
            )
        decision.reason = reason
        outcome = "promoted" if better else "not-better"
        key = f"{TAG_PREFIX}.{alias}"
        decision.tags = {
            f"{key}.decision": outcome,
            f"{key}.by": _who(),
            f"{key}.at": datetime.now(UTC).isoformat(timespec="seconds"),
            f"{key}.metric": f"{metric} ({direction})",
            f"{key}.value": _fmt(value),
            f"{key}.previous_version": "" if holder is None else str(holder),
            f"{key}.previous_value": _fmt(held_value),
            f"{key}.min_improvement": f"{min_improvement:g}",
            f"{key}.reason": reason,
        }
        if dry_run:
            decision.outcome = outcome
            return decision
        if not better:
            _set_tags(client, store, model, number, decision.tags)
            decision.outcome = outcome
            return decision
        if _move_alias(client, store, model, alias, number, holder, decision.tags):
            decision.outcome = outcome
            return decision
        # Another promoter moved the alias first: compare with the new holder.
    decision.outcome = "contended"
    decision.reason = f"the alias kept moving under {max_attempts} attempts; try again"
    return decision


def _set_tags(client: Any, store: Any, model: str, version: int, tags: dict[str, str]) -> None:
    if hasattr(store, "set_model_version_tags"):
        store.set_model_version_tags(model, version, tags)
        return
    for key, value in tags.items():
        client.set_model_version_tag(model, str(version), key, value)


def _move_alias(
    client: Any,
    store: Any,
    model: str,
    alias: str,
    version: int,
    holder: int | None,
    tags: dict[str, str],
) -> bool:
    """Point the alias at ``version`` if it still points at ``holder``; False if it moved."""
    key = f"{TAG_PREFIX}.{alias}"
    all_tags: dict[int, dict[str, str]] = {version: tags}
    if holder is not None:
        all_tags[holder] = {
            f"{key}.replaced_by": str(version),
            f"{key}.replaced_at": tags[f"{key}.at"],
        }
    if hasattr(store, "set_registered_model_alias_if"):
        from .store import StaleAlias

        try:
            store.set_registered_model_alias_if(model, alias, version, holder, all_tags)
        except StaleAlias:
            return False
        return True
    # Another registry: the same steps, without the compare-and-set.
    client.set_registered_model_alias(model, alias, str(version))
    for number, items in all_tags.items():
        _set_tags(client, store, model, number, items)
    return True


# -- the command line ----------------------------------------------------------------------


def build_promote_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``promote`` to the ``mlflow-bucket`` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "promote",
        help="move an alias (champion) to a model version that beats its holder on a metric",
        description=(
            "Compare a candidate version with the version an alias points at, on a metric of "
            "their logged models or source runs, and move the alias if the candidate is better. "
            "Exit codes: 0 the candidate holds the alias (promoted, would be with --dry-run, or "
            "already did); 1 error; 2 usage; 3 not better, alias unchanged; 4 cannot decide "
            "(model, version, alias or metric missing); 5 lost the race too many times."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="registered model name")
    parser.add_argument("--metric", required=True, help="metric to compare")
    direction = parser.add_mutually_exclusive_group()
    direction.add_argument(
        "--higher-is-better",
        dest="higher_is_better",
        action="store_true",
        default=True,
        help="a larger value is better (the default)",
    )
    direction.add_argument(
        "--lower-is-better",
        dest="higher_is_better",
        action="store_false",
        help="a smaller value is better (losses, errors)",
    )
    parser.add_argument("--alias", default="champion", help="alias to move (default: champion)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--candidate", type=int, metavar="VERSION", help="candidate version")
    which.add_argument(
        "--challenger-alias",
        metavar="ALIAS",
        help="the candidate is the version this alias points at (default: the newest version)",
    )
    parser.add_argument(
        "--min-improvement",
        type=float,
        default=0.0,
        metavar="X",
        help="move only if better by at least X, in the metric's units (default: 0)",
    )
    parser.add_argument("--dry-run", action="store_true", help="decide and report; change nothing")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.add_argument("--tracking-uri", help="where the runs are (default: $MLFLOW_TRACKING_URI)")
    parser.add_argument(
        "--registry-uri",
        help="where the registry is (default: $MLFLOW_REGISTRY_URI, else the tracking URI)",
    )
    return parser


def run_promote(args: argparse.Namespace) -> int:
    """Run ``mlflow-bucket promote``; return its exit code."""
    try:
        decision = promote(
            args.model,
            args.metric,
            higher_is_better=args.higher_is_better,
            alias=args.alias,
            candidate=args.candidate,
            challenger_alias=args.challenger_alias,
            min_improvement=args.min_improvement,
            dry_run=args.dry_run,
            tracking_uri=args.tracking_uri,
            registry_uri=args.registry_uri,
        )
    except ValueError as exc:
        print(f"mlflow-bucket promote: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        print(f"mlflow-bucket promote: failed: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2, sort_keys=True))
    else:
        prefix = "dry run: " if decision.dry_run else ""
        what = {
            "promoted": "would promote" if decision.dry_run else "promoted",
            "already-holds": "unchanged",
            "not-better": "not promoted",
            "cannot-decide": "cannot decide",
            "contended": "gave up",
        }[decision.outcome]
        target = f"{decision.model}@{decision.alias}"
        version = f" version {decision.candidate}" if decision.candidate is not None else ""
        print(f"{prefix}{what}: {target}{version}: {decision.reason}")
    return decision.exit_code
