"""The artifact repository: the same behaviour on memory, local, GCS and S3."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow_bucket_plugins.artifacts import BucketArtifactRepository

# fake_gcs: fake-gcs-server, a second GCS implementation besides our own emulator.
BACKENDS = ["memory", "local", "gcs", "fake_gcs", "s3"]

TREE = {
    "model/MLmodel": b"flavors: {}\n",
    "model/data/weights.bin": os.urandom(70_000),
    "model/data/deeper/still/leaf.txt": b"leaf",
    "empty.txt": b"",
    "résumé/données ü.json": '{"ключ": "值"}'.encode(),
    "top.txt": b"top",
}


def _make_tree(root: Path) -> Path:
    for rel, data in TREE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _listing(repo: BucketArtifactRepository, path: str | None = None) -> list[tuple]:
    return [(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts(path)]


def test_directory_tree_round_trip(repo: BucketArtifactRepository, tmp_path: Path) -> None:
    repo.log_artifacts(str(_make_tree(tmp_path / "src")))
    dst = tmp_path / "dst"
    dst.mkdir()
    assert repo.download_artifacts("", str(dst)) == str(dst)
    assert _read_tree(dst) == TREE
    # A sub-folder, and a single file, come back at their own paths.
    sub = tmp_path / "sub"
    sub.mkdir()
    got = repo.download_artifacts("model/data", str(sub))
    assert got == str(sub / "model" / "data")
    assert (sub / "model/data/deeper/still/leaf.txt").read_bytes() == b"leaf"
    one = tmp_path / "one"
    one.mkdir()
    assert repo.download_artifacts("résumé/données ü.json", str(one)) == str(
        one / "résumé" / "données ü.json"
    )
    assert Path(repo.download_artifacts("empty.txt", str(one))).read_bytes() == b""


def test_download_to_a_fresh_temporary_folder(
    repo: BucketArtifactRepository, tmp_path: Path
) -> None:
    repo.log_artifacts(str(_make_tree(tmp_path / "src")), "nested")
    got = Path(repo.download_artifacts("nested"))
    assert _read_tree(got) == TREE


def test_listing_at_every_depth(repo: BucketArtifactRepository, tmp_path: Path) -> None:
    repo.log_artifacts(str(_make_tree(tmp_path / "src")))
    assert _listing(repo) == [
        ("empty.txt", False, 0),
        ("model", True, None),
        ("résumé", True, None),
        ("top.txt", False, 3),
    ]
    assert _listing(repo, "model") == [
        ("model/MLmodel", False, len(TREE["model/MLmodel"])),
        ("model/data", True, None),
    ]
    assert _listing(repo, "model/data/") == [
        ("model/data/deeper", True, None),
        ("model/data/weights.bin", False, 70_000),
    ]
    assert _listing(repo, "model/data/deeper/still") == [
        ("model/data/deeper/still/leaf.txt", False, 4)
    ]
    # MLflow's contract: a file, or nothing, lists as empty.
    assert repo.list_artifacts("top.txt") == []
    assert repo.list_artifacts("no/such/dir") == []
    assert repo._is_directory("model") and not repo._is_directory("top.txt")


def test_a_repository_below_the_root_sees_its_part(
    repo: BucketArtifactRepository, tmp_path: Path
) -> None:
    repo.log_artifacts(str(_make_tree(tmp_path / "src")))
    sub = BucketArtifactRepository(f"{repo.artifact_uri}/model")
    assert _listing(sub) == [
        ("MLmodel", False, len(TREE["model/MLmodel"])),
        ("data", True, None),
    ]


def test_log_artifact_into_a_path_and_overwrite(
    repo: BucketArtifactRepository, tmp_path: Path
) -> None:
    f = tmp_path / "metrics.json"
    f.write_text("first")
    repo.log_artifact(str(f))
    repo.log_artifact(str(f), "a/b")
    f.write_text("second, longer")
    # Logging the same name again replaces it, as MLflow's own repositories do.
    repo.log_artifact(str(f), "a/b")
    assert _listing(repo, "a/b") == [("a/b/metrics.json", False, 14)]
    got = repo.download_artifacts("a/b/metrics.json", str(tmp_path))
    assert Path(got).read_text() == "second, longer"
    assert Path(repo.download_artifacts("metrics.json", str(tmp_path))).read_text() == "first"


def test_delete_a_file_a_folder_and_everything(
    repo: BucketArtifactRepository, tmp_path: Path
) -> None:
    repo.log_artifacts(str(_make_tree(tmp_path / "src")))
    repo.log_artifact(str(tmp_path / "src" / "top.txt"), "model2")  # a sibling sharing a prefix
    repo.delete_artifacts("top.txt")
    assert [f.path for f in repo.list_artifacts()] == ["empty.txt", "model", "model2", "résumé"]
    repo.delete_artifacts("model")
    assert [f.path for f in repo.list_artifacts()] == ["empty.txt", "model2", "résumé"]
    assert repo.list_artifacts("model") == []
    repo.delete_artifacts("no/such/thing")  # not an error, like MLflow's
    repo.delete_artifacts()
    assert repo.list_artifacts() == []


def test_missing_artifact_is_resource_does_not_exist(
    repo: BucketArtifactRepository, tmp_path: Path
) -> None:
    with pytest.raises(MlflowException) as err:
        repo.download_artifacts("nothing/here.txt", str(tmp_path))
    assert err.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert not list(tmp_path.rglob("*.txt"))
    # An empty root downloads as an empty folder.
    assert repo.download_artifacts("", str(tmp_path)) == str(tmp_path)


@pytest.mark.parametrize(
    "bad",
    ["../escape", "a/../../b", "/etc", "C:/Windows", "a\\b", "nul\x00byte", ".mlflow-bucket-tmp/x"],
)
def test_paths_that_escape_are_refused(
    repo: BucketArtifactRepository, tmp_path: Path, bad: str
) -> None:
    f = tmp_path / "f.txt"
    f.write_text("x")
    for call in (
        lambda: repo.log_artifact(str(f), bad),
        lambda: repo.log_artifacts(str(tmp_path), bad),
        lambda: repo.list_artifacts(bad),
        lambda: repo.download_artifacts(bad, str(tmp_path)),
        lambda: repo.delete_artifacts(bad),
    ):
        with pytest.raises(MlflowException) as err:
            call()
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"
        assert "Invalid artifact path" in err.value.message


def test_a_file_name_with_a_backslash_is_refused(
    repo: BucketArtifactRepository, tmp_path: Path
) -> None:
    f = tmp_path / "a\\b.txt"
    f.write_text("x")
    with pytest.raises(MlflowException, match="backslash"):
        repo.log_artifact(str(f))


def test_file_links_are_logged_with_their_content_wherever_they_point(
    repo: BucketArtifactRepository, tmp_path: Path
) -> None:
    """As MLflow's own repositories: a Hugging Face snapshot's files are links to
    ../../blobs/<hash>; logging the snapshot logs those contents. Linked folders are
    not descended (MLflow's os.walk does not either), dangling links are skipped."""
    blobs = tmp_path / "hub" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "ab12").write_text('{"hidden_size": 8}')
    (blobs / "cd34").write_bytes(b"\x00weights")
    snapshot = tmp_path / "hub" / "snapshots" / "rev1"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to("../../blobs/ab12")
    (snapshot / "model.safetensors").symlink_to("../../blobs/cd34")
    (snapshot / "real.txt").write_text("real")
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (outside_dir / "x.txt").write_text("not descended")
    (snapshot / "outside-dir").symlink_to(outside_dir, target_is_directory=True)
    (snapshot / "dangling").symlink_to(tmp_path / "gone")
    repo.log_artifacts(str(snapshot), "model")
    listed = [f.path for f in repo.list_artifacts("model")]
    assert listed == ["model/config.json", "model/model.safetensors", "model/real.txt"]
    (tmp_path / "down").mkdir()
    got = Path(repo.download_artifacts("model", str(tmp_path / "down")))
    assert (got / "config.json").read_text() == '{"hidden_size": 8}'
    assert (got / "model.safetensors").read_bytes() == b"\x00weights"


# What mimetypes guesses from the names, as MLflow's own repositories store it.
TYPED = {"plot.png": "image/png", "notes.txt": "text/plain", "params.json": "application/json"}


def _stored_content_type(info: Any, name: str) -> str | None:
    """The Content-Type the bucket itself keeps for object ``name``, read back over HTTP."""
    if info.scheme == "gs":
        url = f"{info.endpoint}/storage/v1/b/{info.bucket}/o/{quote(name, safe='')}"
        resp = requests.get(url, timeout=30)
        resp.raise_for_status()
        return resp.json().get("contentType")
    import boto3

    options = info.storage_options
    s3 = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["key"],
        aws_secret_access_key=options["secret"],
        region_name=options["client_kwargs"]["region_name"],
    )
    return str(s3.head_object(Bucket=info.bucket, Key=name)["ContentType"])


def test_logged_artifacts_keep_their_content_type(
    store_target: tuple[str, dict[str, Any], Any],
    repo: BucketArtifactRepository,
    tmp_path: Path,
) -> None:
    # A small file goes up in one multipart/related request on GCS, which once declared the
    # guessed type in the object resource and application/octet-stream on the media part:
    # our emulator kept the first, fake-gcs-server the second (the type was lost), Google's
    # testbench refuses such a request with 412 (docs/storage.md).
    _, _, info = store_target
    if info is None:
        pytest.skip("memory and local folders keep no content type")
    src = tmp_path / "typed"
    src.mkdir()
    (src / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    (src / "notes.txt").write_text("hello")
    (src / "params.json").write_text(json.dumps({"k": 1}))
    repo.log_artifacts(str(src), "many")  # the batch path
    repo.log_artifact(str(src / "plot.png"), "one")  # the single-file path
    prefix = repo.artifact_uri.split(f"{info.url}/", 1)[1]
    stored = {
        f"{folder}/{name}": _stored_content_type(info, f"{prefix}/{folder}/{name}")
        for folder, names in (("many", TYPED), ("one", ["plot.png"]))
        for name in names
    }
    assert stored == {
        **{f"many/{name}": kind for name, kind in TYPED.items()},
        "one/plot.png": "image/png",
    }
