"""Fixtures for import/export/verify: source stores of each kind, filled.

Every test gets fresh Backends and its own spool and cache folders.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fill import fill
from mlflow_bucket_plugins.tracking.backend import forget_backends


@pytest.fixture(autouse=True)
def _isolated(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    base = tmp_path_factory.mktemp("bucket-state")
    # A SQL store's experiment 0 keeps artifacts under ./mlruns: not in the checkout.
    monkeypatch.chdir(base)
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(base / "spool"))
    monkeypatch.setenv("MLFLOW_BUCKET_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_BUCKET_PROGRESS", "0")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    forget_backends()
    yield
    forget_backends()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with MLflow's schema, migrated once: copies open at once."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    store = SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "artifacts"))
    store.engine.dispose()
    return path


@pytest.fixture
def new_sqlite(sqlite_template: Path, tmp_path: Path) -> Callable[[str], str]:
    """Makes an empty SQLite store (its artifacts beside it); returns its URI."""

    def make(name: str) -> str:
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(sqlite_template, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"

    return make


@pytest.fixture
def sqlite_source(new_sqlite: Callable[[str], str]) -> tuple[str, dict[str, Any]]:
    """A filled SQLite store: (uri, what fill made)."""
    uri = new_sqlite("source")
    return uri, fill(uri, artifact_root(uri))


def artifact_root(uri: str) -> str:
    """The folder beside an SQLite file: where the tests keep its artifacts."""
    return str(Path(uri[len("sqlite:///") :]).parent / "artifacts")


@pytest.fixture
def bucket_uri(gcs_env: Any) -> str:
    return f"gs://{gcs_env.bucket}/mlflow-{uuid.uuid4().hex[:8]}"


# -- PostgreSQL, started from Debian's binaries in a temp folder ---------------------------


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def postgres() -> Iterator[Callable[[str], str]]:
    """A PostgreSQL server on a loopback port; yields a maker of databases' URIs."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (Debian package postgresql)")
    # Not under pytest's temp folder: as root that is private to root, and
    # the server runs as another user.
    base = Path(tempfile.mkdtemp(prefix="mlflow-bucket-pg-"))
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: as the postgres user, in folders it owns.
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        for path in (base, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(
                    host="127.0.0.1", port=port, user="postgres", dbname="postgres"
                ).close()
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

        def database(name: str) -> str:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
            conn.close()
            # SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql://.
            return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{name}"

        yield database
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)
