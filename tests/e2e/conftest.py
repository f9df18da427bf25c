"""The UI in a real browser: ``mlflow-bucket ui`` on the GCS emulator, headless Chromium.

Playwright (the PyPI package) drives Debian's Chromium (``./dev`` installs it), never
a browser of Playwright's own download: the machines have no internet. Every page
the tests visit is saved as a PNG under ``$MLFLOW_BUCKET_SCREENSHOTS`` (default:
``mlflow-bucket-ui-screenshots/`` in the system's temporary folder; the path is printed at the end).

The UI and the browser start once per module; the store is filled before the UI
starts, by MLflow client code in a subprocess (tests/e2e/fill_store.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import ASSISTANT_API, Ui, run_client

from mlflow_bucket.testing.pytest_plugin import gcs_bucket_info, unique_bucket_name

CHROMIUM = os.environ.get("MLFLOW_BUCKET_CHROMIUM", "/usr/bin/chromium")
# No network at all on the test machines: nothing in the background may try.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_START_TIMEOUT = 240.0
# The assistant panel opens itself on a first visit and covers a third of the page;
# the model-training view is the one that shows runs, models and the registry.
INIT_SCRIPT = """
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
localStorage.setItem('mlflow.workflowType_v1', '"machine_learning"');
"""

_shots_dir: Path | None = None


def _stop(process: subprocess.Popen[bytes]) -> None:
    # The command stops its server on SIGTERM; signalling the whole group (the
    # command started it in a session of its own) also reaches the server.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ui(gcs_emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (./dev installs Debian's chromium)")
    pytest.importorskip("playwright")
    work = tmp_path_factory.mktemp("ui")
    bucket = unique_bucket_name("ui")
    gcs_emulator.create_bucket(bucket)
    info = gcs_bucket_info(bucket, gcs_emulator.endpoint)
    uri = f"gs://{bucket}/team"
    env = {
        **os.environ,
        **info.env,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_BUCKET_SPOOL_DIR": str(work / "spool"),
        "MLFLOW_BUCKET_CACHE_DIR": str(work / "cache"),
    }
    filled = run_client(env)
    log_path = work / "ui.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow_bucket.cli", "ui", uri, "--port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + UI_START_TIMEOUT
        url = None
        while url is None:
            found = re.search(r"MLflow UI for \S+: (http://\S+)", log_path.read_text())
            if found:
                url = found.group(1)
            elif process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow-bucket ui did not start:\n{log_path.read_text()[-4000:]}")
            else:
                time.sleep(0.3)
        yield Ui(url=url, uri=uri, env=env, log_path=log_path, filled=filled)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser_context(ui: Ui, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1920, "height": 1080},
        )
        context.add_init_script(INIT_SCRIPT)
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context: Any, ui: Ui) -> Iterator[Any]:
    """A fresh tab; any 5xx answer from the server fails the test.

    Except the Assistant's 500s from MLflow 3.18's own auth import race (docs/ui.md;
    test_ui_no_errors.py holds each of them to a race traceback in the log)."""
    tab = browser_context.new_page()
    errors: list[str] = []
    tab.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.request.method} {r.url}")
            # 501 NOT_IMPLEMENTED is an answer (the UI asks for a presigned download
            # URL, then downloads through the server), not a failure.
            if r.status >= 500
            and r.status != 501
            and not (r.status == 500 and ASSISTANT_API in r.url)
            else None
        ),
    )
    yield tab
    tab.close()
    ui.server_errors.extend(errors)
    assert not errors, f"server errors: {errors}\n{ui.log_text()[-4000:]}"


@pytest.fixture(scope="session")
def screenshots() -> Path:
    global _shots_dir
    given = os.environ.get("MLFLOW_BUCKET_SCREENSHOTS")
    # A fixed default: pytest's numbered temporary folders are pruned by later runs.
    path = Path(given) if given else Path(tempfile.gettempdir()) / "mlflow-bucket-ui-screenshots"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    _shots_dir = path
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _shots_dir is not None:
        terminalreporter.write_line(f"UI screenshots: {_shots_dir}")
