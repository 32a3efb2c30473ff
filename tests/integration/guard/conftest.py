"""A guard running in a thread of the test process, in front of the host's real socket, with
one unix socket per owner; and helpers to drive it with both docker CLIs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.guard.audit import AuditLog
from dockyard.guard.policy import Profile
from dockyard.guard.profiles import CI_BUILD
from dockyard.guard.server import Guard, Listener, Settings, event_loop_policy
from dockyard.guard.tagbook import TagBook
from dockyard.guard.upstream import Upstream, parse_upstream


def _find_clis() -> dict[str, str]:
    """Every docker CLI on PATH (and Debian's, which docker.io installs), by kind: "20.10"
    for Debian's client, "28" for a current one (23 or later; 28.x on the build machines)."""
    found: dict[str, str] = {}
    places = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]
    for place in dict.fromkeys(places):
        path = shutil.which("docker", path=place) if place else None
        if path is None:
            continue
        version = subprocess.run(
            [path, "--version"], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"version (\d+)\.(\d+)", version)
        if match is None:
            continue
        kind = "20.10" if match.groups() == ("20", "10") else "28" if int(match[1]) >= 23 else None
        if kind is not None:
            found.setdefault(kind, path)
    return found


CLIS = _find_clis()


def cli_path(kind: str | None = None) -> str:
    """The CLI of ``kind`` (default: the newest found), or a skip naming what is missing."""
    if kind is None:
        kind = "28" if "28" in CLIS else "20.10"
    if kind not in CLIS:
        wanted = "Debian's 20.10 docker CLI" if kind == "20.10" else "a docker CLI 23 or newer"
        pytest.skip(f"needs {wanted} on PATH; found: {', '.join(CLIS.values()) or 'none'}")
    return CLIS[kind]


@dataclasses.dataclass
class Running:
    root: Path
    sockets: dict[str, str]
    audit: Path
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    server: Guard

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def audit_lines(self) -> list[dict[str, object]]:
        """The audit log's records, with those still batched in the guard written first."""
        self.loop.call_soon_threadsafe(self.server.settings.audit.flush)
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(10)
        return [json.loads(line) for line in self.audit.read_text().splitlines()]

    def env(self, owner: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        return {**env, "DOCKER_HOST": f"unix://{self.sockets[owner]}", **extra}

    @staticmethod
    def cli(kind: str | None = None) -> str:
        return cli_path(kind)

    def docker(
        self, owner: str, *args: str, cli: str | None = None, stdin: bytes | None = None, check=True
    ) -> subprocess.CompletedProcess[bytes]:
        env = self.env(owner, DOCKER_BUILDKIT="0", DOCKER_CONFIG=str(self.root / "config"))
        done = subprocess.run(
            [cli_path(cli), *args],
            env=env,
            input=stdin,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode()}")
        return done


def start_guard(
    owners: list[str],
    profile: Profile = CI_BUILD,
    upstream: Upstream | None = None,
    tags: TagBook | None = None,
) -> Running:
    root = Path(tempfile.mkdtemp(prefix="dg-", dir="/tmp"))
    (root / "config").mkdir()
    sockets = {owner: str(root / f"{owner}.sock") for owner in owners}
    settings = Settings(
        upstream=upstream or parse_upstream("unix:///var/run/docker.sock"),
        profile=profile,
        listeners=tuple(Listener(f"unix://{path}", owner=o) for o, path in sockets.items()),
        audit=AuditLog(root / "audit.log"),
        tags=tags or TagBook(),
    )
    loop = event_loop_policy().new_event_loop()  # uvloop, as the command runs it
    guard = Guard(settings)
    loop.run_until_complete(guard.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return Running(root, sockets, root / "audit.log", loop, thread, guard)


@pytest.fixture
def clis() -> dict[str, str]:
    """The docker CLIs on this machine, by kind: each one found must work through the guard."""
    if not CLIS:
        pytest.skip("no docker CLI on PATH")
    return CLIS


@pytest.fixture
def guard_factory():
    """Start guards with other upstreams or profiles; each is stopped after the test."""
    started: list[Running] = []

    def make(owners: list[str], **options) -> Running:
        running = start_guard(owners, **options)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


@pytest.fixture
def owners() -> list[str]:
    tag = secrets.token_hex(3)
    return [f"alice-{tag}", f"bob-{tag}"]


@pytest.fixture
def guard(owners, docker_client, base_image) -> Iterator[Running]:
    rules = dataclasses.replace(CI_BUILD.rules, allow_bind=("/tmp",))
    running = start_guard(owners, dataclasses.replace(CI_BUILD, rules=rules))
    yield running
    running.stop()
    # Whatever the clients created (their own containers, volumes, networks, images).
    for owner in owners:
        selector = {"label": [f"io.dockyard.owner={owner}"]}
        for container in docker_client.api.containers(all=True, filters=selector):
            docker_client.api.remove_container(container["Id"], force=True, v=True)
        for volume in docker_client.api.volumes(filters=selector)["Volumes"] or []:
            docker_client.api.remove_volume(volume["Name"], force=True)
        for network in docker_client.api.networks(filters=selector):
            docker_client.api.remove_network(network["Id"])
        for image in docker_client.api.images(filters=selector):
            docker_client.api.remove_image(image["Id"], force=True)
