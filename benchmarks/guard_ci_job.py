"""A realistic CI job through the guard vs on the direct socket, side by side in one run:
a BuildKit build (Debian's 20.10 CLI, ``DOCKER_BUILDKIT=1``) of a multi-stage Dockerfile
without cache, a run of the image, a tag and a push to a local registry container.

The two variants take turns job by job, so that a slow moment of this shared host falls on
both alike; the medians are compared. ``python -m benchmarks.guard_ci_job [--jobs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.guard_proxy import DIRECT, start_guard
from dockyard import labels

CLI = "/usr/bin/docker"
TARGET = 0.03
DOCKERFILE = """\
FROM dockyard/base:0.1 AS build
RUN --mount=type=cache,target=/cache head -c 2000000 /dev/urandom > /cache/x; cp /cache/x /x
RUN sha256sum /x > /x.sum
FROM dockyard/base:0.1
COPY --from=build /x /x.sum /
RUN echo {marker} > /marker
"""


def _docker(sock: str, root: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_BUILDKIT="1", DOCKER_CONFIG=str(root))
    subprocess.run([CLI, *args], env=env, cwd=root, check=True, capture_output=True)


def job(sock: str, root: Path, registry: str) -> float:
    """Seconds for one build, run, tag and push."""
    marker = secrets.token_hex(4)
    (root / "Dockerfile").write_text(DOCKERFILE.format(marker=marker))
    image, pushed = f"dockyard-bench/ci:{marker}", f"{registry}/dockyard-bench/ci:{marker}"
    started = time.perf_counter()
    _docker(sock, root, "build", "--no-cache", "-t", image, ".")
    _docker(sock, root, "run", "--rm", image, "cat", "/marker")
    _docker(sock, root, "tag", image, pushed)
    _docker(sock, root, "push", pushed)
    elapsed = time.perf_counter() - started
    _docker(DIRECT, root, "rmi", image, pushed)
    return elapsed


def main(jobs: int = 5) -> None:
    root = Path(tempfile.mkdtemp(prefix="dgjob-", dir="/tmp"))
    guard = start_guard(root)
    registry = subprocess.run(
        ["docker", "run", "-d", "-p", "127.0.0.1::5000", "--label", f"{labels.MANAGED}=true",
         "--label", f"{labels.ROLE}=bench", "dockyard/registry:0.1"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    try:
        port = json.loads(
            subprocess.run(["docker", "port", registry, "5000/tcp"], check=True,
                           capture_output=True, text=True).stdout.split(":")[-1]
        )  # fmt: skip
        address = f"127.0.0.1:{port}"
        _wait(address)
        times: dict[str, list[float]] = {"direct": [], "guard": []}
        socks = {"direct": DIRECT, "guard": str(root / "guard.sock")}
        job(DIRECT, root, address)  # untimed: warms the base image and the registry
        for turn in range(jobs):
            order = ["direct", "guard"] if turn % 2 == 0 else ["guard", "direct"]
            for name in order:
                times[name].append(job(socks[name], root, address))
        direct, guarded = (statistics.median(times[name]) for name in ("direct", "guard"))
        for name, found in times.items():
            print(f"ci job {name:<7} median {statistics.median(found):.2f} s  "
                  f"runs {' '.join(f'{t:.2f}' for t in found)}")  # fmt: skip
        extra = guarded / direct - 1
        verdict = "met" if extra <= TARGET else "NOT met"
        print(f"target: guard CI job within {TARGET:.0%} of direct: {verdict} ({extra:+.1%})")
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", registry], check=False, capture_output=True)
        guard.terminate()
        guard.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _wait(address: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5)
    main(parser.parse_args().jobs)
