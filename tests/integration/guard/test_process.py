"""``dockyard guard`` as a process, stopped and signalled the way stacks and logrotate do."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker


@pytest.fixture
def guard(tmp_path) -> Iterator[tuple[subprocess.Popen[bytes], Path, Path]]:
    """A guard process (owner ``proc``) with its socket and audit log; killed if still up."""
    sock, log = tmp_path / "guard.sock", tmp_path / "audit.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "guard", "--listen", f"unix://{sock}?owner=proc",
         "--audit-log", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(sock.exists)
        yield process, sock, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_for(condition, tries: int = 200) -> None:
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.05)


def connect(sock: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(10)
    client.connect(str(sock))
    return client


def ping(client: socket.socket) -> bytes:
    client.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
    return client.recv(4096)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0, process.stderr.read() if process.stderr else ""


def test_sigterm_stops_the_guard_cleanly_with_its_audit_written(guard):
    process, sock, log = guard
    with connect(sock) as client:
        assert ping(client).startswith(b"HTTP/1.1 200")
        stop(process)  # with the client still connected
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert (line["owner"], line["path"], line["status"]) == ("proc", "/_ping", 200)


def test_sighup_reopens_the_audit_log_after_rotation(guard, tmp_path):
    process, sock, log = guard
    with connect(sock) as client:
        assert ping(client).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)  # (written within 50 ms)
        log.rename(tmp_path / "audit.log.1")
        process.send_signal(signal.SIGHUP)
        wait_for(log.exists)  # (the signal is handled between two requests)
        assert ping(client).startswith(b"HTTP/1.1 200")
    stop(process)
    assert len((tmp_path / "audit.log.1").read_text().splitlines()) == 1
    assert len(log.read_text().splitlines()) == 1
