"""MLflow's UI, served by ``mlflow-bucket ui`` over a GCS bucket, in headless Chromium.

What a team member sees after ``mlflow-bucket ui``: the experiments, the runs with
their params and metrics (sorted by a metric), a run's params, tags, metric chart
and artifacts (an image rendered), the logged model, the registry with an alias,
and a run another process logs while the page is open.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from e2e_support import Ui, run_client, split_tracebacks
from fill_store import ALIAS, IMAGE_WIDTH, MODEL, OTHER, SWEEP


def _shot(page: Any, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def _y(page: Any, text: str) -> float:
    """Where the link ``text`` is on the page (inf while the table re-renders)."""
    box = page.get_by_role("link", name=text, exact=True).first.bounding_box()
    return float(box["y"]) if box else float("inf")


def _in_order(page: Any, *names: str) -> bool:
    ys = [_y(page, name) for name in names]
    return float("inf") not in ys and ys == sorted(ys)


def _runs_url(ui: Ui) -> str:
    return f"{ui.url}/#/experiments/{ui.filled['experiment_id']}/runs"


def test_experiment_list(page: Any, ui: Ui, screenshots: Path) -> None:
    page.goto(f"{ui.url}/#/experiments")
    for name in (SWEEP, OTHER, "Default"):
        page.get_by_role("link", name=name, exact=True).wait_for()
    _shot(page, screenshots, "01-experiments")


def test_runs_table_shows_params_and_metrics_and_sorts_by_a_metric(
    page: Any, ui: Ui, screenshots: Path
) -> None:
    page.goto(_runs_url(ui))
    for name in ui.filled["runs"]:
        page.get_by_role("link", name=name, exact=True).wait_for()
    # MLflow's table starts with attribute columns only; show the metrics and params.
    page.get_by_role("button", name="Columns").click()
    for group in ("Metrics (2)", "Parameters (2)"):
        node = page.locator(".du-bois-light-tree-treenode").filter(
            has=page.locator(f"[title='{group}']")
        )
        node.locator(".du-bois-light-tree-checkbox").click()
    page.keyboard.press("Escape")
    grid = page.locator(".ag-center-cols-container")
    for value in ("0.9", "0.7", "0.63", "sgd"):  # accuracy of each run, a param
        grid.get_by_text(value, exact=True).first.wait_for()
    _shot(page, screenshots, "02-runs-table")

    # Created last comes first by default; by accuracy, descending, lr-0.3 leads.
    assert _in_order(page, "lr-0.03", "lr-0.3")
    page.get_by_role("button", name="Sort: Created").click()
    page.get_by_role("menuitemcheckbox", name="accuracy", exact=True).click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Sort: accuracy").wait_for()
    deadline = time.monotonic() + 30
    while not _in_order(page, "lr-0.3", "lr-0.1", "lr-0.03"):
        assert time.monotonic() < deadline, "the runs did not sort by accuracy"
        page.wait_for_timeout(300)
    assert "orderByKey=metrics.%60accuracy%60" in page.url
    _shot(page, screenshots, "03-runs-sorted-by-accuracy")


def test_run_page_params_tags_chart_and_image(page: Any, ui: Ui, screenshots: Path) -> None:
    run_id = ui.filled["runs"]["lr-0.3"]
    base = f"{ui.url}/#/experiments/{ui.filled['experiment_id']}/runs/{run_id}"
    page.goto(base)
    body = page.locator("body")
    page.get_by_text("learning_rate", exact=True).first.wait_for()
    for text in ("optimizer", "sgd", "owner", "team", run_id):
        body.get_by_text(text, exact=True).first.wait_for()
    body.get_by_text("browser-test").first.wait_for()  # a tag's value, shown as ": value"
    _shot(page, screenshots, "04-run-overview")

    page.get_by_role("tab", name="Model metrics").or_(
        page.get_by_text("Model metrics", exact=True)
    ).first.click()
    # loss has a history of 10 steps: plotly draws it as a line through 10 points.
    line = page.locator(".js-plotly-plot .scatterlayer path.js-line").first
    line.wait_for()
    points = page.locator(".js-plotly-plot .scatterlayer .point")
    page.wait_for_function(
        "n => document.querySelectorAll('.js-plotly-plot .scatterlayer .point').length >= n",
        arg=10,
    )
    assert points.count() >= 10
    assert (line.get_attribute("d") or "").count("L") == 9
    _shot(page, screenshots, "05-run-metric-charts")

    page.get_by_role("tab", name="Artifacts").or_(
        page.get_by_text("Artifacts", exact=True)
    ).first.click()
    page.get_by_text("plots", exact=True).click()
    page.get_by_text("gradient.png", exact=True).click()
    image = page.locator("img[src^='blob:']").first
    image.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert image.evaluate("img => img.naturalWidth") == IMAGE_WIDTH
    _shot(page, screenshots, "06-run-artifact-image")


def test_models_tab_shows_the_logged_model(page: Any, ui: Ui, screenshots: Path) -> None:
    page.goto(f"{ui.url}/#/experiments/{ui.filled['experiment_id']}/models")
    page.get_by_text("model", exact=True).first.wait_for()
    page.get_by_text("lr-0.3", exact=True).first.wait_for()  # its source run
    page.get_by_text(MODEL).first.wait_for()  # and the version it was registered as
    _shot(page, screenshots, "07-models-tab")

    page.goto(f"{ui.url}/#/experiments/{ui.filled['experiment_id']}/models/{ui.filled['model_id']}")
    page.get_by_text(ui.filled["model_id"]).first.wait_for()
    _shot(page, screenshots, "08-logged-model")


def test_registry_shows_the_model_with_its_alias(page: Any, ui: Ui, screenshots: Path) -> None:
    page.goto(f"{ui.url}/#/models")
    page.get_by_role("link", name=MODEL, exact=True).wait_for()
    page.get_by_text(ALIAS).first.wait_for()
    # A first visit gets a promotion of MLflow's next registry UI, in a dialog.
    promo = page.get_by_role("dialog")
    if promo.count():
        promo.get_by_role("button", name="Close").click()
        promo.wait_for(state="hidden")
        page.locator(".du-bois-light-modal-mask").last.wait_for(state="hidden")  # fades out
    _shot(page, screenshots, "09-registry")

    page.get_by_role("link", name=MODEL, exact=True).click()
    page.get_by_text(f"Version {ui.filled['model_version']}", exact=True).first.wait_for()
    page.get_by_text(ALIAS).first.wait_for()
    _shot(page, screenshots, "10-registered-model")


def test_a_run_logged_meanwhile_shows_after_a_reload(page: Any, ui: Ui, screenshots: Path) -> None:
    page.goto(_runs_url(ui))
    page.get_by_role("link", name="lr-0.3", exact=True).wait_for()
    assert page.get_by_role("link", name="late-run", exact=True).count() == 0

    run_client(ui.env, "--one-run", "late-run")
    # The writer uploads before it exits; the server lists news at most once a second.
    deadline = time.monotonic() + 60
    while True:
        page.reload()
        page.get_by_role("link", name="lr-0.3", exact=True).wait_for()
        if page.get_by_role("link", name="late-run", exact=True).count():
            break
        assert time.monotonic() < deadline, "the run logged meanwhile never showed"
        page.wait_for_timeout(1000)
    _shot(page, screenshots, "11-run-logged-meanwhile")


def test_the_server_logged_no_error(ui: Ui) -> None:
    # MLflow 3.18's own mlflow.server.auth import race is not ours (docs/ui.md).
    _, tracebacks = split_tracebacks(ui.log_text())
    assert not tracebacks, "\n".join(t[-3000:] for t in tracebacks)
