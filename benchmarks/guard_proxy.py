"""The socket guard's cost: direct socket vs ``dockyard guard`` vs HAProxy set up like
docker-socket-proxy, measured side by side in one run.

- small calls over one keep-alive connection per variant: ``HEAD /_ping``, container
  inspect (by full ID, the guard checking ownership), create plus remove: p50 and p99;
  and a ping on a new connection each time (connect, ping, close);
- pings per second from 10 kept-alive clients at once (processes);
- a large streamed request body (``POST /images/load`` of a ~500 MB image of random data)
  and a large streamed response (``GET /images/NAME/get``): throughput.

Besides the direct socket, the guard and HAProxy, a bare relay (``benchmarks.bare_relay``:
Python on the guard's event loop, judging nothing) shows what the extra hop alone costs.

The variants take turns call by call, and load by load with each run starting at the next
variant (a load leaves dockerd writing to disk for a while), so that a slow moment of this
shared host falls on all of them alike.

The guard runs as a separate process (``ci-build`` plus ``image.load``, audit log on), as
it would in production. HAProxy is Debian's, when installed; its rules only match paths, as
docker-socket-proxy's do. ``python -m benchmarks.guard_proxy [--runs N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from dockyard import labels

DIRECT = "/var/run/docker.sock"
IMAGE = "dockyard/base:0.1"
LOADED = "dockyard-bench/random:guard"
CALLS = 1000
CONCURRENCY = 10
RATE_SECONDS = 3.0
NEW_CONNECTION_TARGET_MS = 0.15
RATE_TARGET = 0.5
CREATES = 300
LOAD_MB = 512
SMALL_TARGET_MS = 0.3
STREAM_TARGET = 0.9

HAPROXY_CONFIG = """
global
    maxconn 1000
defaults
    mode http
    timeout connect 10s
    timeout client 10m
    timeout server 10m
frontend docker
    bind unix@{socket} mode 660
    http-request deny unless {{ path,url_dec -m reg -i ^(/v[\\d\\.]+)?/(_ping|containers|images|version) }}
    default_backend dockerd
backend dockerd
    server dockerd unix@{upstream}
"""  # noqa: E501

POLICY = "profiles:\n  bench:\n    extends: ci-build\n    allow: [image.load]\n"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=600)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def call(conn: UnixHTTP, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def small_calls(
    variants: dict[str, str], container: str
) -> dict[str, dict[str, tuple[float, float]]]:
    """p50 and p99 (ms) of each call through each variant, the variants taking turns call by
    call so that a slow moment of this shared host hits them all alike."""
    conns = {name: UnixHTTP(sock) for name, sock in variants.items()}
    bodies = {}
    for name in variants:
        create: dict[str, object] = {"Image": IMAGE, "Cmd": ["true"]}
        if name != "guard":  # (the guard stamps its own labels; the others need them set)
            create["Labels"] = labels.managed("bench")
        bodies[name] = json.dumps(create).encode()
    found: dict[str, dict[str, list[float]]] = {
        name: {"ping": [], "inspect": [], "create+rm": [], "new conn": []} for name in variants
    }

    def timed(name: str, call_name: str, action: Callable[..., object], *args: object) -> None:
        started = time.perf_counter()
        action(*args)
        found[name][call_name].append((time.perf_counter() - started) * 1000)

    inspect = f"/v1.41/containers/{container}/json"
    for _ in range(CALLS):
        for name, conn in conns.items():
            timed(name, "ping", _get, conn, "HEAD", "/v1.41/_ping")
            timed(name, "inspect", _get, conn, "GET", inspect)
            timed(name, "new conn", _new_connection_ping, variants[name])
    for _ in range(CREATES):
        for name, conn in conns.items():
            timed(name, "create+rm", _create_and_remove, conn, bodies[name])
    for conn in conns.values():
        conn.close()
    return {
        name: {call_name: percentiles(samples) for call_name, samples in calls.items()}
        for name, calls in found.items()
    }


PING = b"HEAD /v1.41/_ping HTTP/1.1\r\nHost: docker\r\n\r\n"


def _new_connection_ping(path: str) -> None:
    """Connect, ping, hang up: what a client that does not keep connections pays."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        _raw_ping(sock)


def _raw_ping(sock: socket.socket) -> None:
    sock.sendall(PING)
    got = b""
    while b"\r\n\r\n" not in got:
        piece = sock.recv(4096)
        if not piece:
            raise RuntimeError("connection closed during a ping")
        got += piece
    if not got.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(got[:80].decode(errors="replace"))


def _ping_for(path: str, seconds: float) -> int:
    """Pings over one kept-alive connection until ``seconds`` pass (in a worker process)."""
    count = 0
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            _raw_ping(sock)
            count += 1
    return count


def concurrent_rates(variants: dict[str, str], rounds: int = 2) -> dict[str, float]:
    """Pings per second with :data:`CONCURRENCY` kept-alive clients (processes, so that the
    clients are not one GIL), the variants taking turns; the best round of each."""
    best: dict[str, float] = dict.fromkeys(variants, 0.0)
    with multiprocessing.get_context("fork").Pool(CONCURRENCY) as pool:
        for _ in range(rounds):
            for name, path in variants.items():
                counts = pool.starmap(_ping_for, [(path, RATE_SECONDS)] * CONCURRENCY)
                best[name] = max(best[name], sum(counts) / RATE_SECONDS)
    return best


def _get(conn: UnixHTTP, method: str, path: str) -> None:
    _expect(call(conn, method, path), 200)


def _expect(answer: tuple[int, bytes], status: int) -> bytes:
    assert answer[0] == status, answer
    return answer[1]


def _create_and_remove(conn: UnixHTTP, body: bytes) -> None:
    ident = json.loads(_expect(call(conn, "POST", "/v1.41/containers/create", body), 201))["Id"]
    _expect(call(conn, "DELETE", f"/v1.41/containers/{ident}"), 204)


def make_image_tar(path: Path, megabytes: int) -> None:
    """A docker-save archive of a scratch image with one layer holding random bytes."""
    layer = path.with_suffix(".layer")
    with tarfile.open(layer, "w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = megabytes * 1024 * 1024
        with open("/dev/urandom", "rb") as source:
            tar.addfile(info, _Limited(source, info.size))
    digest = hashlib.sha256()
    with layer.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": labels.managed("bench")},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{digest.hexdigest()}"]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [LOADED], "Layers": ["layer/layer.tar"]}]
    ).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(layer, "layer/layer.tar")
    layer.unlink()


class _Limited(io.RawIOBase):
    def __init__(self, source: io.BufferedReader, size: int) -> None:
        self.source, self.left = source, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return self.source.read(n)


def load_and_save(sock: str, archive: Path) -> tuple[float, float]:
    """MB/s of an image load (streamed request body) and an image save (streamed answer)."""
    size = archive.stat().st_size
    conn = UnixHTTP(sock)
    started = time.perf_counter()
    with archive.open("rb") as body:
        conn.request(
            "POST",
            "/v1.41/images/load?quiet=1",
            body=body,
            headers={"Content-Type": "application/x-tar", "Content-Length": str(size)},
        )
        response = conn.getresponse()
        answer = response.read()
    assert response.status == 200, answer
    load = size / (time.perf_counter() - started) / 1e6
    started = time.perf_counter()
    conn.request("GET", f"/v1.41/images/{LOADED}/get")
    response = conn.getresponse()
    saved = 0
    while block := response.read(1 << 20):
        saved += len(block)
    assert response.status == 200
    save = saved / (time.perf_counter() - started) / 1e6
    conn.close()
    return load, save


def start_guard(root: Path) -> subprocess.Popen[bytes]:
    (root / "policy.yaml").write_text(POLICY)
    sock = root / "guard.sock"
    process = subprocess.Popen(
        [
            sys.executable, "-c",
            "import typer; from dockyard.guard.command import guard; typer.run(guard)",
            "--listen", f"unix://{sock}?owner=bench", "--policy", str(root / "policy.yaml"),
            "--profile", "bench", "--audit-log", str(root / "audit.log"),
        ],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for(sock)
    return process


def start_relay(root: Path) -> subprocess.Popen[bytes]:
    sock = root / "relay.sock"
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_relay", str(sock), DIRECT])
    _wait_for(sock)
    return process


def start_haproxy(root: Path) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("haproxy")
    if binary is None:
        return None
    sock = root / "haproxy.sock"
    (root / "haproxy.cfg").write_text(HAPROXY_CONFIG.format(socket=sock, upstream=DIRECT))
    process = subprocess.Popen([binary, "-f", str(root / "haproxy.cfg")])
    _wait_for(sock)
    return process


def _wait_for(sock: Path) -> None:
    deadline = time.monotonic() + 20
    while not sock.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sock} never appeared")
        time.sleep(0.05)


def main(runs: int = 3) -> None:
    root = Path(tempfile.mkdtemp(prefix="dgbench-", dir="/tmp"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        guard = start_guard(root)
        processes.append(guard)
        processes.append(start_relay(root))
        variants = {
            "direct": DIRECT,
            "relay": str(root / "relay.sock"),
            "guard": str(root / "guard.sock"),
        }
        haproxy = start_haproxy(root)
        if haproxy is not None:
            processes.append(haproxy)
            variants["haproxy"] = str(root / "haproxy.sock")
        conn = UnixHTTP(variants["guard"])
        status, answer = call(
            conn, "POST", "/v1.41/containers/create", json.dumps({"Image": IMAGE}).encode()
        )
        assert status == 201, answer
        container = json.loads(answer)["Id"]
        conn.close()
        archive = root / "image.tar"
        make_image_tar(archive, LOAD_MB)
        print(
            f"guard benchmark: {CALLS} pings and inspects, {CREATES} creates, "
            f"{runs} x {LOAD_MB} MB image load/save per variant, variants taking turns"
        )
        small = small_calls(variants, container)
        rates = concurrent_rates(variants)
        streams: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        load_and_save(DIRECT, archive)  # untimed: the first load also writes the layer
        order = list(variants)
        for run in range(runs):  # turns again, each run starting with the next variant
            for name in order[run % len(order) :] + order[: run % len(order)]:
                streams[name].append(load_and_save(variants[name], archive))
        _report(small, streams, rates)
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        shutil.rmtree(root, ignore_errors=True)
        _clean_up()


def _clean_up() -> None:
    """What the benchmark made, whether it finished or not: the containers made through the
    guard (owner bench) or directly (role bench), and the loaded images (role bench, untagged
    ones too)."""
    conn = UnixHTTP(DIRECT)
    _remove_labelled(conn, "containers", f"{labels.OWNER}=bench")
    _remove_labelled(conn, "containers", f"{labels.ROLE}=bench")
    _remove_labelled(conn, "images", f"{labels.ROLE}=bench")
    conn.close()


def _remove_labelled(conn: UnixHTTP, kind: str, label: str) -> None:
    query = urlencode({"all": 1, "filters": json.dumps({"label": [label]})})
    for found in json.loads(_expect(call(conn, "GET", f"/v1.41/{kind}/json?{query}"), 200)):
        call(conn, "DELETE", f"/v1.41/{kind}/{found['Id']}?force=1")


def _report(
    small: dict[str, dict[str, tuple[float, float]]],
    streams: dict[str, list[tuple[float, float]]],
    rates: dict[str, float],
) -> None:
    direct = small["direct"]
    print(f"{'call':<11}{'variant':<9}{'p50 ms':>9}{'p99 ms':>9}{'p50 vs direct':>16}")
    for call_name in direct:
        for variant, found in small.items():
            p50, p99 = found[call_name]
            extra = p50 - direct[call_name][0]
            print(f"{call_name:<11}{variant:<9}{p50:>9.3f}{p99:>9.3f}{extra:>+13.3f} ms")
    print(f"{'stream':<11}{'variant':<9}{'MB/s':>9}{'vs direct':>12}")
    base = [statistics.median(values) for values in zip(*streams["direct"], strict=True)]
    shares = {}
    for index, name in enumerate(("image load", "image save")):
        for variant, samples in streams.items():
            rate = statistics.median(sample[index] for sample in samples)
            print(f"{name:<11}{variant:<9}{rate:>9.0f}{rate / base[index]:>11.0%}")
        shares[name] = statistics.median(s[index] for s in streams["guard"]) / base[index]
    print(f"{'pings/s':<11}{'variant':<9}{'x' + str(CONCURRENCY):>9}{'vs direct':>12}")
    for variant, rate in rates.items():
        print(f"{'':<11}{variant:<9}{rate:>9.0f}{rate / rates['direct']:>11.0%}")
    for call_name in direct:
        extra = small["guard"][call_name][0] - direct[call_name][0]
        limit = NEW_CONNECTION_TARGET_MS if call_name == "new conn" else SMALL_TARGET_MS
        if call_name in ("ping", "inspect") and "haproxy" in small:
            limit = small["haproxy"][call_name][0] - direct[call_name][0] + 0.05
        print(f"target: guard {call_name} p50 within {limit:.3f} ms of direct: "
              f"{_verdict(extra <= limit)} ({extra:+.3f} ms)")  # fmt: skip
    share = rates["guard"] / rates["direct"]
    print(f"target: guard pings/s at concurrency {CONCURRENCY} >= {RATE_TARGET:.0%} of direct: "
          f"{_verdict(share >= RATE_TARGET)} ({share:.0%})")  # fmt: skip
    for name, share in shares.items():
        print(f"target: guard {name} >= {STREAM_TARGET:.0%} of direct: "
              f"{_verdict(share >= STREAM_TARGET)} ({share:.0%})")  # fmt: skip


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    main(parser.parse_args().runs)
