"""Real clients through the guard against the real engine: both docker CLIs and the SDK."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time

import docker
import pytest

from dockyard import labels

pytestmark = pytest.mark.docker

BOTH = pytest.mark.parametrize("cli", ["28", "20.10"])


def names(output: bytes) -> set[str]:
    return set(output.decode().split())


@BOTH
def test_ping_version_and_run_with_output(guard, owners, cli):
    alice = owners[0]
    version = guard.docker(alice, "version", "--format", "{{.Server.Version}}", cli=cli)
    assert version.stdout.strip()
    done = guard.docker(alice, "run", "--rm", "dockyard/base:0.1", "echo", "hello", cli=cli)
    assert done.stdout == b"hello\n"


@BOTH
def test_run_i_with_stdin_from_a_file_echoes_it(guard, owners, cli, tmp_path):
    data = os.urandom(300_000).hex().encode()  # 600 kB of text
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    with path.open("rb") as stdin:
        done = subprocess.run(
            [guard.cli(cli), "run", "-i", "--rm", "dockyard/base:0.1", "cat"],
            env=guard.env(owners[0]),
            stdin=stdin,
            capture_output=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


@BOTH
def test_exec_logs_follow_and_cp_both_ways(guard, owners, cli, tmp_path):
    alice = owners[0]
    name = f"job-{secrets.token_hex(3)}"
    guard.docker(alice, "run", "-d", "--name", name, "dockyard/base:0.1", "sh", "-c",
                 "echo started; sleep 1; echo done; sleep 30", cli=cli)  # fmt: skip
    assert guard.docker(alice, "exec", name, "echo", "in-exec", cli=cli).stdout == b"in-exec\n"
    interactive = guard.docker(alice, "exec", "-i", name, "cat", cli=cli, stdin=b"piped\n")
    assert interactive.stdout == b"piped\n"
    follow = subprocess.Popen(
        [guard.cli(cli), "logs", "-f", name], env=guard.env(alice), stdout=subprocess.PIPE
    )
    assert follow.stdout is not None
    assert follow.stdout.readline() == b"started\n"
    assert follow.stdout.readline() == b"done\n"
    follow.terminate()
    follow.wait(10)
    source = tmp_path / "up.txt"
    source.write_text("to the container\n")
    guard.docker(alice, "cp", str(source), f"{name}:/tmp/up.txt", cli=cli)
    guard.docker(alice, "cp", f"{name}:/tmp/up.txt", str(tmp_path / "down.txt"), cli=cli)
    assert (tmp_path / "down.txt").read_text() == "to the container\n"
    guard.docker(alice, "rm", "-f", name, cli=cli)


@BOTH
def test_attach_receives_output(guard, owners, cli):
    alice = owners[0]
    name = f"att-{secrets.token_hex(3)}"
    guard.docker(alice, "create", "-i", "--name", name, "dockyard/base:0.1", "cat", cli=cli)
    guard.docker(alice, "start", name, cli=cli)
    attached = guard.docker(alice, "attach", name, cli=cli, stdin=b"through attach\n")
    assert attached.stdout == b"through attach\n"
    guard.docker(alice, "rm", "-f", name, cli=cli)


@BOTH
def test_build_tags_an_image_only_its_owner_sees(guard, owners, cli, tmp_path):
    alice, bob = owners
    (tmp_path / "Dockerfile").write_text("FROM dockyard/base:0.1\nRUN echo built > /built\n")
    tag = f"guarded-{alice}:{cli}"
    guard.docker(alice, "build", "-q", "-t", tag, str(tmp_path), cli=cli)
    run = guard.docker(alice, "run", "--rm", tag, "cat", "/built", cli=cli)
    assert run.stdout == b"built\n"
    listed = guard.docker(alice, "images", "--format", "{{.Repository}}:{{.Tag}}", cli=cli)
    assert names(listed.stdout) == {tag}
    assert guard.docker(bob, "images", "-q", cli=cli).stdout.strip() == b""
    # bob can read the image but neither overwrite nor delete alice's tag
    denied = guard.docker(bob, "tag", "dockyard/base:0.1", tag, cli=cli, check=False)
    assert b"dockyard guard: ownership" in denied.stderr
    denied = guard.docker(bob, "rmi", tag, cli=cli, check=False)
    assert b"dockyard guard: ownership" in denied.stderr
    guard.docker(alice, "rmi", tag, cli=cli)


def test_owners_see_and_touch_only_their_own(guard, owners, docker_client):
    alice, bob = owners
    name = f"own-{secrets.token_hex(3)}"
    guard.docker(alice, "run", "-d", "--name", name, "dockyard/base:0.1", "sleep", "60")
    guard.docker(alice, "volume", "create", f"{name}-vol")
    guard.docker(alice, "network", "create", f"{name}-net")
    host = docker_client.containers.run(
        "dockyard/base:0.1", ["sleep", "60"], detach=True,
        labels=labels.managed("test"),
    )  # fmt: skip
    try:
        assert names(guard.docker(alice, "ps", "-aq", "--no-trunc").stdout) == {
            docker_client.containers.get(name).id
        }
        assert guard.docker(bob, "ps", "-aq").stdout.strip() == b""
        assert names(guard.docker(alice, "volume", "ls", "-q").stdout) == {f"{name}-vol"}
        assert guard.docker(bob, "volume", "ls", "-q").stdout.strip() == b""
        nets = guard.docker(alice, "network", "ls", "--format", "{{.Name}}").stdout
        assert names(nets) == {f"{name}-net"}
        for args in (
            ("inspect", name),
            ("logs", name),
            ("exec", name, "true"),
            ("stop", name),
            ("rm", "-f", name),
            ("cp", f"{name}:/etc/hostname", "-"),
            ("rename", name, "stolen"),
            ("volume", "rm", f"{name}-vol"),
            ("network", "rm", f"{name}-net"),
            ("run", "--rm", "-v", f"{name}-vol:/v", "dockyard/base:0.1", "true"),
            ("run", "--rm", f"--network=container:{name}", "dockyard/base:0.1", "true"),
            ("inspect", host.id),
        ):
            denied = guard.docker(bob, *args, check=False)
            assert denied.returncode != 0, args
            assert b"dockyard guard" in denied.stderr, (args, denied.stderr)
        assert docker_client.containers.get(name).status == "running"
    finally:
        host.remove(force=True)


ESCAPES = [
    ("--privileged",),
    ("-v", "/:/host"),
    ("--pid", "host"),
    ("--cap-add", "ALL"),
    ("--security-opt", "seccomp=unconfined"),
    ("--network", "host"),
    ("--device", "/dev/mem"),
]


@BOTH
@pytest.mark.parametrize("flags", ESCAPES, ids=" ".join)
def test_escapes_are_denied_with_the_guards_message(guard, owners, docker_client, cli, flags):
    name = f"esc-{secrets.token_hex(3)}"
    denied = guard.docker(
        owners[0], "run", "--rm", "--name", name, *flags, "dockyard/base:0.1", "true",
        cli=cli, check=False,
    )  # fmt: skip
    assert denied.returncode != 0
    assert b"dockyard guard: " in denied.stderr
    assert not docker_client.api.containers(all=True, filters={"name": name})


@BOTH
def test_bind_volume_options_are_denied(guard, owners, docker_client, cli):
    name = f"bindvol-{secrets.token_hex(3)}"
    denied = guard.docker(
        owners[0], "volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=/", name,
        cli=cli, check=False,
    )  # fmt: skip
    assert b"dockyard guard: mounts" in denied.stderr
    assert not docker_client.api.volumes(filters={"name": name})["Volumes"]


def test_allowed_bind_under_prefix_works(guard, owners, tmp_path):
    (tmp_path / "f").write_text("bound\n")
    done = guard.docker(
        owners[0], "run", "--rm", "-v", f"{tmp_path}:/w:ro", "dockyard/base:0.1", "cat", "/w/f"
    )
    assert done.stdout == b"bound\n"


def test_events_show_only_own_objects(guard, owners):
    alice, bob = owners
    since = str(int(time.time()))
    name = f"ev-{secrets.token_hex(3)}"
    guard.docker(alice, "run", "--name", name, "dockyard/base:0.1", "true")
    until = str(int(time.time()) + 1)
    time.sleep(1.1)
    args = ("events", "--since", since, "--until", until, "--format", "{{json .}}")
    mine = [json.loads(line) for line in guard.docker(alice, *args).stdout.splitlines()]
    assert mine
    assert all(e["Actor"]["Attributes"].get("name") == name for e in mine)
    assert guard.docker(bob, *args).stdout.strip() == b""
    guard.docker(alice, "rm", name)


def test_python_sdk_through_the_guard(guard, owners):
    client = docker.DockerClient(base_url=f"unix://{guard.sockets[owners[0]]}", timeout=60)
    assert client.ping()
    output = client.containers.run("dockyard/base:0.1", ["echo", "sdk"], remove=True)
    assert output == b"sdk\n"
    with pytest.raises(docker.errors.APIError, match="dockyard guard: privileged"):
        client.containers.run("dockyard/base:0.1", ["true"], privileged=True, remove=True)
    container = client.containers.run("dockyard/base:0.1", ["sleep", "30"], detach=True)
    assert [c.id for c in client.containers.list()] == [container.id]
    assert container.exec_run(["echo", "x"]).output == b"x\n"
    container.remove(force=True)
    client.close()


def test_audit_log_has_one_line_per_request(guard, owners):
    guard.docker(owners[0], "run", "--rm", "--privileged", "dockyard/base:0.1", "true", check=False)
    lines = guard.audit_lines()
    denied = [line for line in lines if line["verdict"] == "deny"]
    assert denied
    assert denied[-1]["rule"] == "privileged"
    assert denied[-1]["status"] == 403
    assert denied[-1]["owner"] == owners[0]
    assert {"time", "client", "method", "path", "bytes_in", "bytes_out", "latency_ms"} <= set(
        lines[0]
    )


def test_attach_without_upgrade_switches_on_dockerds_plain_200(guard, owners):
    """Older clients attach without ``Upgrade``: dockerd answers a bare 200 and hijacks."""
    client = docker.DockerClient(base_url=f"unix://{guard.sockets[owners[0]]}", timeout=60)
    container = client.containers.run("dockyard/base:0.1", ["cat"], stdin_open=True, detach=True)
    try:
        raw = socket.socket(socket.AF_UNIX)
        raw.settimeout(20)
        raw.connect(guard.sockets[owners[0]])
        raw.sendall(
            f"POST /v1.41/containers/{container.id}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\n"
            "Host: docker\r\nContent-Length: 0\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(1)
        assert head.startswith(b"HTTP/1.1 200")
        raw.sendall(b"raw stream\n")
        output = b""
        while not output.endswith(b"raw stream\n"):  # after the 8-byte stream header
            output += raw.recv(65536)
        raw.shutdown(socket.SHUT_WR)  # half-close reaches dockerd, which ends the stream
        assert raw.recv(65536) == b""
        raw.close()
    finally:
        container.remove(force=True)
        client.close()
