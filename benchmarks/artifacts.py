"""Artifact transfers: mlflow-bucket against MLflow's built-in GCS and S3 repositories.

    .venv/bin/python benchmarks/artifacts.py [--size-mb 500] [--files 1000]
        [--file-kb 10] [--latency-ms 30] [--backends gs,s3] [--cases file,dir]
        [--repeat 1]

Starts the project's GCS emulator and moto's S3 server, each behind a fault
proxy that adds ``--latency-ms`` to every request (a realistic round trip to
a cloud bucket), and, for each backend, logs and downloads one large file
and a folder of many small files through MLflow's ``get_artifact_repository``
twice: with this project's repositories and with MLflow's own
(``MLFLOW_BUCKET_ARTIFACTS=builtin``), against the same emulators.

Each operation runs in a fresh subprocess, so that memory is measured alone:
"peak MB" is the subprocess's peak resident set (ru_maxrss) minus its resident
set just before the operation (after importing MLflow and the clients, which
alone take ~200 MB). The table is printed at the end; docs/performance.md
records a run.

``--repeat N`` runs every case N times, the two repositories taking turns
(this project's, MLflow's, this project's...), and the table gives the
median time (and the largest peak): on a small shared machine one run's
timings move as much as the difference being measured. ``--cases file``
(or ``dir``) runs only the large file (or the folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

MB = 1000 * 1000
IMPLS = ("mlflow-bucket", "builtin")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- child: one operation, measured --------------------------------------------


def child(op: str, uri: str, source: str, dest: str) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repo = get_artifact_repository(uri)
    if op.startswith("download"):
        # Warm the client (credentials, connection) on a tiny listing, as a
        # real process would have done before; the measurement is the transfer.
        repo.list_artifacts()
    before = _rss_mb()
    start = time.perf_counter()
    if op == "upload-file":
        repo.log_artifact(source)
    elif op == "upload-dir":
        repo.log_artifacts(source, "folder")
    elif op == "download-file":
        repo.download_artifacts(os.path.basename(source), dest)
    elif op == "download-dir":
        repo.download_artifacts("folder", dest)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak - before, "rss_mb": peak}))


# -- parent: emulators, proxies, data, the table --------------------------------


def _run(
    op: str, uri: str, source: str, dest: str, env: dict[str, str], impl: str
) -> dict[str, Any]:
    child_env = {**os.environ, **env, "MLFLOW_BUCKET_PROGRESS": "0"}
    if impl == "builtin":
        child_env["MLFLOW_BUCKET_ARTIFACTS"] = "builtin"
    else:
        child_env.pop("MLFLOW_BUCKET_ARTIFACTS", None)
    out = subprocess.run(
        [sys.executable, __file__, "--child", op, uri, source, dest],
        env=child_env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{impl} {op} {uri} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    if files_a != files_b:
        return False
    return all((a / p).read_bytes() == (b / p).read_bytes() for p in files_a)


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 22), fb.read(1 << 22)
            if x != y:
                return False
            if not x:
                return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-kb", type=int, default=10)
    parser.add_argument("--latency-ms", type=float, default=30)
    parser.add_argument("--backends", default="gs,s3")
    parser.add_argument("--cases", default="file,dir", help="file (the large one), dir, or both")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case, medians reported")
    args = parser.parse_args(argv)
    if args.repeat < 1 or not set(args.cases.split(",")) <= {"file", "dir"}:
        parser.error("--repeat must be at least 1, --cases a list of file and dir")

    from mlflow_bucket.testing.fault_proxy import FaultProxy
    from mlflow_bucket.testing.gcs_emulator import GcsEmulator
    from mlflow_bucket.testing.pytest_plugin import gcs_bucket_info, s3_bucket_info
    from mlflow_bucket.testing.s3_emulator import S3Emulator

    work = Path(tempfile.mkdtemp(prefix="mlflow-bucket-bench-"))
    rows: list[tuple[str, str, str, dict[str, Any]]] = []
    try:
        big = work / f"model-{args.size_mb}mb.bin"
        with open(big, "wb") as f:
            block = os.urandom(1 << 20)
            total = args.size_mb * MB
            for i in range(total // (1 << 20) + 1):
                # Every MiB differs, so misplaced parts would not verify.
                f.write((i.to_bytes(8, "big") + block)[: min(1 << 20, total - f.tell())])
        folder = work / "folder"
        folder.mkdir()
        for i in range(args.files):
            sub = folder / f"d{i % 10}"
            sub.mkdir(exist_ok=True)
            (sub / f"f{i:05d}.bin").write_bytes(os.urandom(args.file_kb * 1000))

        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        cases = [c.strip() for c in args.cases.split(",") if c.strip()]
        sources = {"file": big, "dir": folder}
        for backend in backends:
            emulator: Any = GcsEmulator() if backend == "gs" else S3Emulator()
            with emulator:
                proxy = FaultProxy(emulator.endpoint, latency_ms=args.latency_ms).start()
                try:
                    targets: dict[str, tuple[str, dict[str, str]]] = {}
                    for impl in IMPLS:
                        bucket = f"bench-{uuid.uuid4().hex[:12]}"
                        emulator.create_bucket(bucket)
                        if backend == "gs":
                            info = gcs_bucket_info(bucket, proxy.endpoint)
                        else:
                            info = s3_bucket_info(bucket, proxy.endpoint)
                            # MLflow's S3 repository reads its own variable.
                            info.env["MLFLOW_S3_ENDPOINT_URL"] = proxy.endpoint
                        targets[impl] = (f"{backend}://{bucket}/exp/run/artifacts", info.env)
                    for case in cases:
                        source = sources[case]
                        for rep in range(args.repeat):
                            # Taking turns: a slow minute hits both alike.
                            for impl in IMPLS:
                                uri, env = targets[impl]
                                dest = work / f"out-{backend}-{impl}-{case}"
                                dest.mkdir()
                                up = _run(f"upload-{case}", uri, str(source), "", env, impl)
                                down = _run(
                                    f"download-{case}", uri, str(source), str(dest), env, impl
                                )
                                got = dest / (source.name if case == "file" else "folder")
                                ok = (
                                    _same_file(source, got)
                                    if case == "file"
                                    else _same_tree(source, got)
                                )
                                rows.append(
                                    (backend, impl, case, {"up": up, "down": down, "ok": ok})
                                )
                                shutil.rmtree(dest)
                                print(
                                    f"{backend:3} {impl:14} {case:4} #{rep + 1} "
                                    f"up {up['seconds']:7.2f}s {up['peak_mb']:6.0f} MB  "
                                    f"down {down['seconds']:7.2f}s {down['peak_mb']:6.0f} MB  "
                                    f"verified={ok}",
                                    flush=True,
                                )
                finally:
                    proxy.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    _table(rows, args)


def _table(rows: list[tuple[str, str, str, dict[str, Any]]], args: argparse.Namespace) -> None:
    cases = {
        "file": f"1 file of {args.size_mb} MB",
        "dir": f"{args.files} files of {args.file_kb} KB",
    }
    # The median time and the largest peak of the repeated runs.
    runs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for backend, impl, case, r in rows:
        runs.setdefault((backend, impl, case), []).append(r)
    by = {
        k: {
            "up": statistics.median(r["up"]["seconds"] for r in rs),
            "down": statistics.median(r["down"]["seconds"] for r in rs),
            "up_mb": max(r["up"]["peak_mb"] for r in rs),
            "down_mb": max(r["down"]["peak_mb"] for r in rs),
            "ok": all(r["ok"] for r in rs),
        }
        for k, rs in runs.items()
    }
    print()
    print(f"Latency added per request: {args.latency_ms:.0f} ms")
    if args.repeat > 1:
        print(f"Median of {args.repeat} runs each, the repositories taking turns; largest peak")
    print()
    print(
        "| backend | case | repository | log (s) | download (s) | "
        "peak MB log | peak MB download | speed-up log | speed-up download |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for backend, impl, case in sorted(by, key=lambda k: (k[0], IMPLS.index(k[1]))):
        r = by[(backend, impl, case)]
        base = by.get((backend, "builtin", case))
        speed_up = speed_down = ""
        if impl == "mlflow-bucket" and base:
            speed_up = f"{base['up'] / r['up']:.1f}x"
            speed_down = f"{base['down'] / r['down']:.1f}x"
        print(
            f"| {backend} | {cases[case]} | {impl} | {r['up']:.2f} | {r['down']:.2f} | "
            f"{r['up_mb']:.0f} | {r['down_mb']:.0f} | {speed_up} | {speed_down} |"
            + ("" if r["ok"] else " NOT VERIFIED")
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
    else:
        main()
