"""Every route ``mlflow server`` registers, called on a bucket store and on SQLite.

A guard that needs no list of store methods: the server's own apps (the Flask app
and, on MLflow 3.x, the FastAPI app that wraps it under uvicorn) say which routes
they serve; each one is called with the same benign inputs on two ``mlflow server``
processes started as a user types the command, one over a gs:// bucket on the GCS
emulator and one over SQLite. A call the bucket server answers with a 5xx (or not
at all) where SQLite answers below 500 fails the test. 501 NOT_IMPLEMENTED is
MLflow's own "this store does not support it": an answer, not a failure.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from mlflow_servers import STARTUP_SECONDS, Server, clean_env, start_server, stop_server, wait_ready

from mlflow_bucket.testing.pytest_plugin import BucketInfo

# The suite's 300 s per test is what a loaded machine may take just to start the
# servers (STARTUP_SECONDS); unloaded, the whole test takes about a minute.
pytestmark = [pytest.mark.emulator, pytest.mark.timeout(900)]

# Connect and read timeouts of one call; a call that takes longer counts as no answer.
CALL_TIMEOUT = (5.0, 60.0)
# Starlette answers 500 first and then lets uvicorn log the traceback: how long to
# wait for it after a 5xx (the next call waits too, so its lines do not mix in).
LOG_GRACE = 0.5
# Methods not called: HEAD is answered by the GET handler, OPTIONS by CORS preflight.
NOT_CALLED_METHODS = {"HEAD", "OPTIONS"}

# Printed by a subprocess of the test's interpreter: the routes the server would
# serve, as {"kind", "path", "methods"} records. Importing the apps in the test's
# own process would load MLflow's server handlers (and their stores' entry points)
# into pytest; a subprocess sees exactly what a fresh `mlflow server` worker sees.
LIST_ROUTES = r"""
import json
import warnings

warnings.simplefilter("ignore")
found = []


def add(kind, path, methods):
    found.append({"kind": kind, "path": path, "methods": sorted(methods or [])})


def add_flask(flask_app, prefix):
    for rule in flask_app.url_map.iter_rules():
        add("flask", prefix + rule.rule, rule.methods)


def walk(routes, prefix):
    from starlette.routing import Mount

    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            # FastAPI >= 0.16x keeps each include_router() as one lazy route; its
            # routes, with the include's prefix applied, are its effective contexts.
            for context in contexts():
                original = context.original_route
                add(type(original).__name__, prefix + context.path,
                    getattr(original, "methods", None))
        elif isinstance(route, Mount):
            # The Flask app, mounted at "/" behind a WSGI middleware (.app).
            inner = getattr(route.app, "app", route.app)
            if hasattr(inner, "url_map"):
                add_flask(inner, prefix + route.path.rstrip("/"))
            else:
                walk(route.routes, prefix + route.path)
        else:
            add(type(route).__name__, prefix + route.path, getattr(route, "methods", None))


try:
    from mlflow.server.fastapi_app import app as fastapi_app
except ImportError:  # an MLflow whose server is the Flask app alone
    from mlflow.server import app as flask_app

    add_flask(flask_app, "")
else:
    walk(fastapi_app.routes, "")
print("ROUTES " + json.dumps(found))
"""

# Served files, not handlers: the UI's index page and its bundled assets.
STATIC_ROUTES = re.compile(r"^/(static-files|build)/|^/$")

NAME = "compat"  # the experiment's, the registered model's and the logged model's
ALIAS = "champion"
KEY = "compat-key"
VERSION = "1"
FILE = "compat/file.txt"
TRACE_ID = "tr-" + "0" * 31 + "1"  # chosen by the client, so the same on both servers
SESSION_ID = "00000000-0000-4000-8000-000000000001"  # a well-formed assistant session id

# Path and query parameters of the routes: <name>, <conv:name>, {name}, {name:conv}.
PATH_PARAM = re.compile(r"<(?:[^<>:]+:)?(\w+)>|\{(\w+)(?::[^{}]+)?\}")
# Calls that delete or rename what later calls use go last, so the rest meet the objects.
DESTRUCTIVE = re.compile(r"delete|remove|rename|cancel|detach")
# MLflow's own refusals of a backend that is not a database: 500s that mean what
# 501 means, raised by MLflow before any store method runs, so no plugin store can
# change them. The AI gateway's endpoints require isinstance(store, SqlAlchemyStore)
# (mlflow/server/gateway_api.py, _validate_store); MLflow 3.5's job API requires a
# database URI (mlflow/server/handlers.py, _get_job_store; later MLflow answers 4xx).
MLFLOW_REFUSES_STORE_TYPE = re.compile(
    r"only available with SqlAlchemyStore|Job store requires a database backend URI"
)
# The line that names an exception at the end of a traceback.
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*$")
FRAME_LINE = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')


@dataclass
class Answer:
    status: int | None  # None: no answer within CALL_TIMEOUT (or the connection broke)
    body: str
    log: str  # what the server logged while answering
    seconds: float = 0.0


def _list_routes(cwd: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", LIST_ROUTES],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("ROUTES ")]
    assert done.returncode == 0 and lines, f"listing the routes failed:\n{done.stderr[-5000:]}"
    routes: list[dict[str, Any]] = json.loads(lines[-1][len("ROUTES ") :])
    return routes


def _calls(routes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(method, path template) of every route to call, in the order to call them."""
    calls: set[tuple[str, str]] = set()
    for route in routes:
        # WebSocket routes have no methods (and MLflow registers none); served files
        # are not handlers.
        if "WebSocket" in route["kind"] or STATIC_ROUTES.search(route["path"]):
            continue
        for method in route["methods"]:
            if method not in NOT_CALLED_METHODS:
                # A path both apps register (e.g. /health) is one call: FastAPI answers it.
                calls.add((method, route["path"]))

    def order(call: tuple[str, str]) -> tuple[int, str, str]:
        method, path = call
        if method == "DELETE" or DESTRUCTIVE.search(path):
            phase = 2
        elif method == "GET":
            phase = 0
        else:
            phase = 1
        return phase, path, method

    return sorted(calls, key=order)


def _call(
    server: Server,
    method: str,
    path: str,
    *,
    params: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
) -> Answer:
    start, started = server.log_size(), time.monotonic()
    try:
        response = requests.request(
            method,
            server.url + path,
            params=params,
            json=body,
            timeout=CALL_TIMEOUT,
            stream=True,  # an event stream would otherwise be read until it ends
        )
    except requests.RequestException as exc:
        elapsed = time.monotonic() - started
        time.sleep(LOG_GRACE)
        return Answer(None, f"{type(exc).__name__}: {exc}", server.log_text(start), elapsed)
    try:
        text = ""
        if response.status_code >= 400:
            raw = response.raw.read(4000, decode_content=True)
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    except requests.RequestException as exc:
        text = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # urllib3's read errors are not requests'
        text = f"{type(exc).__name__}: {exc}"
    finally:
        response.close()
    elapsed = time.monotonic() - started
    if response.status_code >= 500:
        time.sleep(LOG_GRACE)
    return Answer(response.status_code, text, server.log_text(start), elapsed)


def _prepare(server: Server) -> list[str]:
    """The objects the routes' ids point at, made through the REST API as a client does.

    Returns what failed. The sweep goes on without the objects that could not be
    made (their ids stay placeholders), so that it still lists every failing route.
    """
    api = "/api/2.0/mlflow"
    problems: list[str] = []

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        start = server.log_size()
        try:
            response = requests.post(server.url + path, json=body, timeout=CALL_TIMEOUT)
        except requests.RequestException as exc:
            problems.append(f"POST {path}: no answer ({type(exc).__name__})")
            return {}
        if response.status_code != 200:
            answer = Answer(response.status_code, response.text, server.log_text(start))
            problems.append(f"POST {path}: {response.status_code}: {_exception(answer)}")
            return {}
        result: dict[str, Any] = response.json()
        return result

    experiment = post(f"{api}/experiments/create", {"name": NAME})
    experiment_id = experiment.get("experiment_id", "compat-no-experiment")
    run = post(f"{api}/runs/create", {"experiment_id": experiment_id, "start_time": 0})
    run_id = run.get("run", {}).get("info", {}).get("run_id", "compat-no-run")
    post(
        f"{api}/runs/log-batch",
        {
            "run_id": run_id,
            "params": [{"key": KEY, "value": "1"}],
            "metrics": [{"key": KEY, "value": 1.0, "timestamp": 0, "step": 0}],
            "tags": [{"key": KEY, "value": "1"}],
        },
    )
    model = post(
        f"{api}/logged-models",
        {"experiment_id": experiment_id, "name": NAME, "source_run_id": run_id},
    )
    model_id = model.get("model", {}).get("info", {}).get("model_id", "m-compat-no-model")
    post(f"{api}/registered-models/create", {"name": NAME})
    post(
        f"{api}/model-versions/create",
        {"name": NAME, "source": f"runs:/{run_id}/model", "run_id": run_id},
    )
    post(f"{api}/registered-models/alias", {"name": NAME, "alias": ALIAS, "version": VERSION})
    server.ids.update(experiment_id=experiment_id, run_id=run_id, model_id=model_id)
    return problems


def _path_values(server: Server) -> dict[str, str]:
    ids = server.ids
    return {
        "experiment_id": ids["experiment_id"],
        "run_id": ids["run_id"],
        "model_id": ids["model_id"],
        "name": NAME,
        "version": VERSION,
        "alias": ALIAS,
        "key": KEY,
        "tag_key": KEY,
        "trace_id": TRACE_ID,
        "request_id": TRACE_ID,
        "artifact_path": FILE,
        "path": FILE,
        "session_id": SESSION_ID,
        "organization": "compat-org",
        # Not an assistant provider MLflow knows: nothing is run or reached for it.
        "provider": "compat-provider",
    }


def _query(server: Server) -> dict[str, Any]:
    ids = server.ids
    return {
        "experiment_id": ids["experiment_id"],
        "experiment_ids": [ids["experiment_id"]],
        "run_id": ids["run_id"],
        "run_uuid": ids["run_id"],
        "model_id": ids["model_id"],
        "name": NAME,
        "version": VERSION,
        "alias": ALIAS,
        "key": KEY,
        "trace_id": TRACE_ID,
        "request_id": TRACE_ID,
        "path": FILE,
        "max_results": "10",
    }


def _body(server: Server) -> dict[str, Any]:
    body = _query(server)
    # Types every reader of the field accepts: protobuf's JSON parser, MLflow's
    # schema checks and pydantic (values as strings, numbers where strings fail).
    body.update(
        max_results=10,
        value="1",
        timestamp=0,
        step=0,
        source=f"runs:/{server.ids['run_id']}/model",
    )
    return body


def _concrete(template: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return quote(values.get(name, f"compat-{name}"), safe="/")

    return PATH_PARAM.sub(value, template)


def _sweep(server: Server, calls: list[tuple[str, str]]) -> dict[tuple[str, str], Answer]:
    values, query, body = _path_values(server), _query(server), _body(server)
    answers: dict[tuple[str, str], Answer] = {}
    for method, template in calls:
        answers[method, template] = _call(
            server,
            method,
            _concrete(template, values),
            params=query,
            body=None if method == "GET" else body,
        )
    return answers


def _refused_by_mlflow(answer: Answer) -> bool:
    return any(MLFLOW_REFUSES_STORE_TYPE.search(t) for t in (answer.body, _exception(answer)))


def _failed(answer: Answer) -> bool:
    return answer.status is None or (answer.status >= 500 and answer.status != 501)


def _exception(answer: Answer) -> str:
    """The exception a 5xx came from, in one line: 'Type: message (in function, file:line)'."""
    lines = answer.log.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if EXCEPTION_LINE.match(lines[i]):
            where = ""
            for j in range(i - 1, -1, -1):
                frame = FRAME_LINE.match(lines[j])
                if frame:
                    where = f" (in {frame.group(3)}, {Path(frame.group(1)).name}:{frame.group(2)})"
                    break
            return lines[i].strip()[:300] + where
    if answer.status is None:
        return answer.body[:300]
    return f"no traceback in the log; answer: {answer.body[:300]!r}"


def _traceback(answer: Answer) -> str:
    start = answer.log.rfind("Traceback (most recent call last)")
    return answer.log[start:][-4000:] if start >= 0 else answer.log[-2000:]


@pytest.fixture
def servers(gcs_bucket: BucketInfo, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """`mlflow server` over a gs:// bucket on the emulator, and over SQLite, both started."""
    bucket_env = clean_env(tmp_path / "bucket" / "home")
    bucket_env.update(gcs_bucket.env)
    bucket_env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    sqlite_env = clean_env(tmp_path / "sqlite" / "home")
    started: list[Server] = []
    try:
        started.append(
            start_server("bucket", f"{gcs_bucket.url}/mlflow", tmp_path / "bucket", bucket_env)
        )
        started.append(
            start_server(
                "sqlite",
                f"sqlite:///{tmp_path / 'sqlite' / 'mlflow.db'}",
                tmp_path / "sqlite",
                sqlite_env,
            )
        )
        begun = time.monotonic()
        for server in started:
            wait_ready(server)
        print(f"\nboth servers answer /health after {time.monotonic() - begun:.0f} s")
        yield started[0], started[1]
    finally:
        for server in started:
            stop_server(server)


def test_no_route_fails_on_the_bucket_where_sqlite_answers(
    servers: tuple[Server, Server], tmp_path: Path
) -> None:
    bucket, sqlite = servers
    routes = _list_routes(tmp_path, clean_env(tmp_path / "list" / "home"))
    calls = _calls(routes)
    # SQLite failing here is the test's own fault; the bucket store failing is a finding.
    not_made = _prepare(bucket)
    assert not (broken := _prepare(sqlite)), f"preparing the SQLite server: {broken}"
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        on_bucket, on_sqlite = pool.map(lambda s: _sweep(s, calls), servers)
    swept = time.monotonic() - started

    failing = [call for call in calls if _failed(on_bucket[call])]
    refused = [call for call in failing if _refused_by_mlflow(on_bucket[call])]
    both = [call for call in failing if call not in refused and _failed(on_sqlite[call])]
    offenders = [call for call in failing if call not in refused and call not in both]

    def line(call: tuple[str, str], answer: Answer) -> str:
        method, path = call
        return (
            f"  {method} {path}: bucket {on_bucket[call].status}, "
            f"sqlite {on_sqlite[call].status}: {_exception(answer)}"
        )

    summary = [
        f"{len(not_made)} preparation calls fail on the bucket store only",
        *(f"  {problem}" for problem in not_made),
        f"{len(routes)} routes listed; {len(calls)} (method, path) called on each server "
        f"in {swept:.0f} s; {len(offenders)} fail on the bucket store only",
        *(line(call, on_bucket[call]) for call in offenders),
        f"{len(refused)} refused by MLflow itself for a backend that is not a database:",
        *(line(call, on_bucket[call]) for call in refused),
        f"{len(both)} fail on both servers (MLflow's, not the store's):",
        *(line(call, on_sqlite[call]) for call in both),
    ]
    record = tmp_path / "answers.json"
    record.write_text(
        json.dumps(
            [
                {
                    "method": method,
                    "path": path,
                    "bucket": on_bucket[method, path].status,
                    "sqlite": on_sqlite[method, path].status,
                    "bucket_seconds": round(on_bucket[method, path].seconds, 2),
                    "sqlite_seconds": round(on_sqlite[method, path].seconds, 2),
                }
                for method, path in calls
            ],
            indent=1,
        )
    )
    print("\n" + "\n".join(summary) + f"\nevery answer: {record}")
    shown: set[str] = set()
    for call in offenders:  # one traceback per distinct exception
        if (exception := _exception(on_bucket[call])) not in shown:
            shown.add(exception)
            print(f"\n===== {' '.join(call)} on {bucket.label} =====")
            print(_traceback(on_bucket[call]))
    assert not offenders and not not_made, "\n".join(summary)
    assert bucket.process.poll() is None and sqlite.process.poll() is None
