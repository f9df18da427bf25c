"""What the tracking store answers for traces, GenAI evaluation, the AI gateway and
the other MLflow features it does not hold (docs/limits.md); the machinery is
``mlflow_bucket_plugins.unsupported``."""

from __future__ import annotations

from mlflow.store.tracking.abstract_store import AbstractStore

from ..unsupported import Answer, fill_unsupported, paged

# Calls answered with "nothing" whatever their annotation says: the listings
# and searches the UI makes on every experiment page.
EMPTY: dict[str, Answer] = {
    "search_traces": lambda: ([], None),
    "batch_get_traces": list,
    "batch_get_trace_infos": list,
    "find_completed_sessions": list,
    "query_trace_metrics": paged,
    "_delete_traces": lambda: 0,
    "search_datasets": paged,  # evaluation datasets (run inputs are _search_datasets)
    # Two handlers let any exception through as a 500: they get "nothing" too.
    "get_dataset_experiment_ids": list,
    "_load_dataset_records": lambda: ([], None),
    "search_issues": paged,
    "list_scorers": list,
    "list_scorer_versions": list,
    "get_online_scoring_configs": list,
    "get_active_online_scorers": list,
    "list_label_schemas": paged,
    "list_review_queues": paged,
    "list_review_queue_items": paged,
    # The AI gateway's listings (its store is MLflow's SQL store only).
    "list_secret_infos": list,
    "list_gateway_model_definitions": list,
    "list_gateway_endpoints": list,
    "list_endpoint_bindings": list,
    "list_budget_policies": paged,
    "list_gateway_guardrails": paged,
    "list_endpoint_guardrail_configs": list,
}

# Called by the server (MLflow's SQL store has them) without a NotImplementedError
# body in AbstractStore.
EXTRA = (
    "link_traces_to_run",
    "deprecated_start_trace_v2",
    "deprecated_end_trace_v2",
)

fill_tracking_unsupported = fill_unsupported(
    AbstractStore,
    EMPTY,
    EXTRA,
    "tracking store: it holds experiments, runs and logged models, not traces "
    "or GenAI evaluation data",
)
