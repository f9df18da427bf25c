"""Objects under a run's artifacts whose keys the engine refuses cost only themselves.

Another tool (or a hand) can put objects named ``model/../x``, ``model/./x``
or ``model//x`` in a bucket; our own uploads refuse such paths. Listing and
downloading a folder leave them out with a warning naming each, list no
phantom ``..``, ``.`` or empty folder, write nothing outside the
destination, and bring every other file: ``download_artifacts`` and
``mlflow.pyfunc.load_model`` work. Runs on memory and both emulators (a
folder store cannot hold such names).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from mlflow_bucket_plugins.artifacts import BucketArtifactRepository

from mlflow_bucket.log import CorruptObjectWarning
from mlflow_bucket.storage import InvalidKey, ObjectStore
from mlflow_bucket.storage.transfer import TransferFailed, Transfers

BACKENDS = ["memory", "gcs", "s3"]

FOREIGN = [
    "model/../escaped.txt",
    "model/sub/../../../../outside.txt",
    "model/./dot.txt",
    "model//double.txt",
    "model/sub/..",
]
MODEL = {"model/MLmodel": b"flavors: {}\n", "model/data/a.bin": b"a" * 100, "model/b.txt": b"b"}


def _plant(repo: BucketArtifactRepository, rel: str, data: bytes) -> str:
    """Write ``rel`` under the repository's root as another tool would: through the
    backend's own primitive, which the engine's key validation does not guard."""
    key = f"{repo.root}/{rel}"
    repo.store._put(key, data, {})
    return key


@pytest.fixture
def planted(repo: BucketArtifactRepository, tmp_path: Path) -> list[str]:
    src = tmp_path / "src"
    for rel, data in MODEL.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    repo.log_artifacts(str(src))
    keys = [_plant(repo, rel, b"foreign") for rel in FOREIGN]
    listed = {info.key for info in repo.store.list_objects(f"{repo.root}/")}
    assert set(keys) <= listed, "the backend did not keep the planted names"
    return keys


def _named(caught: list[warnings.WarningMessage]) -> str:
    return "\n".join(str(w.message) for w in caught if issubclass(w.category, CorruptObjectWarning))


def test_a_listing_shows_no_phantom_folder_and_names_what_it_leaves_out(
    repo: BucketArtifactRepository, planted: list[str]
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        top = [(f.path, f.is_dir) for f in repo.list_artifacts("model")]
        sub = [(f.path, f.is_dir) for f in repo.list_artifacts("model/sub")]
    # (A folder holding only foreign objects, "sub", cannot be told from a
    # listing by folder; it lists as empty.)
    assert top == [
        ("model/MLmodel", False),
        ("model/b.txt", False),
        ("model/data", True),
        ("model/sub", True),
    ]
    assert sub == []
    text = _named(caught)
    for name in ("model/../", "model/./", "model//", "model/sub/../", "model/sub/.."):
        assert f"skipping {repo.store.url(f'{repo.root}/{name}')}:" in text, (name, text)


def test_downloading_the_folder_brings_every_other_file_and_nothing_outside(
    repo: BucketArtifactRepository, planted: list[str], tmp_path: Path
) -> None:
    dst = tmp_path / "dst" / "inner"
    dst.mkdir(parents=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = repo.download_artifacts("model", str(dst))
    assert out == str(dst / "model")
    got = {
        p.relative_to(tmp_path / "dst").as_posix(): p.read_bytes()
        for p in (tmp_path / "dst").rglob("*")
        if p.is_file()
    }
    assert {f"inner/{k}": v for k, v in MODEL.items()} == got
    text = _named(caught)
    for key in planted:
        assert repo.store.url(key) in text, (key, text)
    # The whole run too.
    whole = tmp_path / "whole"
    whole.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptObjectWarning)
        repo.download_artifacts("", str(whole))
    assert sorted(p.relative_to(whole).as_posix() for p in whole.rglob("*") if p.is_file()) == (
        sorted(MODEL)
    )


def test_a_model_with_foreign_keys_beside_it_loads(
    store_target: tuple[str, dict[str, Any], Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.pyfunc
    from mlflow_bucket_plugins.tracking.backend import forget_backends

    uri, _, info = store_target
    if info is not None:
        for name, value in info.env.items():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_BUCKET_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_BUCKET_CACHE_DIR", str(tmp_path / "cache"))
    forget_backends()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run():
            info_ = mlflow.pyfunc.log_model(name="model", python_model=_Doubler())
        location = mlflow.get_logged_model(info_.model_id).artifact_location
        repo = BucketArtifactRepository(location)
        assert any(f.path == "MLmodel" for f in repo.list_artifacts())
        for rel in ("../up.txt", "x/../../escaped.txt", "./dot.txt", "x//double.txt"):
            _plant(repo, rel, b"foreign")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = mlflow.pyfunc.load_model(info_.model_uri)
        assert loaded.predict([1, 2]) == [2, 4]
        assert repo.store.url(f"{repo.root}/x/../../escaped.txt") in _named(caught)
    finally:
        forget_backends()


class _Doubler:
    """A pyfunc model (defined lazily: importing mlflow.pyfunc is slow)."""

    def __new__(cls) -> Any:
        from mlflow.pyfunc import PythonModel

        class Doubler(PythonModel):
            def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
                return [2 * x for x in model_input]

        return Doubler()


def test_the_engines_download_path_refuses_a_key_it_would_refuse_anywhere(
    store: ObjectStore, tmp_path: Path
) -> None:
    """Transfers read through the backend's primitives: they apply validate_key
    themselves, as every other entry point of the engine does."""
    store._put("dir/../x", b"foreign", {})
    with Transfers(store) as transfers, pytest.raises(InvalidKey, match=r"'\.\.'"):
        transfers.download([("dir/../x", str(tmp_path / "x"))])
    store.put("dir/ok", b"ok")
    items = [("dir/../x", str(tmp_path / "x")), ("dir/ok", str(tmp_path / "ok"))]
    with Transfers(store) as transfers, pytest.raises(TransferFailed, match="1 of 2"):
        transfers.download(items)
    assert not os.path.exists(tmp_path / "x")
