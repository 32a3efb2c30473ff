"""``dockyard guard`` as a process, stopped the way stacks stop it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.docker


def ping(sock) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(sock))
        client.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        return client.recv(4096)


def test_sigterm_stops_the_guard_cleanly_with_its_audit_written(tmp_path):
    sock, log = tmp_path / "guard.sock", tmp_path / "audit.log"
    guard = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "guard", "--listen", f"unix://{sock}?owner=term",
         "--audit-log", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)
            client.connect(str(sock))
            client.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
            guard.send_signal(signal.SIGTERM)  # with the client still connected
            assert guard.wait(10) == 0, guard.stderr.read() if guard.stderr else ""
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait(10)
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert (line["owner"], line["path"], line["status"]) == ("term", "/_ping", 200)


def test_sighup_reopens_the_audit_log_after_rotation(tmp_path):
    sock, log = tmp_path / "guard.sock", tmp_path / "audit.log"
    guard = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "guard", "--listen", f"unix://{sock}?owner=hup",
         "--audit-log", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        assert ping(sock).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)  # (written within 50 ms)
        log.rename(tmp_path / "audit.log.1")
        guard.send_signal(signal.SIGHUP)
        for _ in range(100):  # (the signal is handled between two requests)
            if log.exists():
                break
            time.sleep(0.05)
        assert ping(sock).startswith(b"HTTP/1.1 200")
        guard.send_signal(signal.SIGTERM)
        assert guard.wait(10) == 0
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait(10)
    assert len((tmp_path / "audit.log.1").read_text().splitlines()) == 1
    assert len(log.read_text().splitlines()) == 1
