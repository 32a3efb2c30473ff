"""Framing checks: the guard reads a body only when it can read it exactly as dockerd."""

import pytest

from dockyard.guard.framing import JSON_BODY_LIMIT, Body, body_kind, check, media_type

JSON = ("Content-Type", "application/json")


def length(n: int) -> tuple[str, str]:
    return ("Content-Length", str(n))


@pytest.mark.parametrize(
    ("endpoint", "headers", "reason"),
    [
        ("container.create", [JSON, ("Transfer-Encoding", "chunked")], "chunked"),
        ("container.create", [JSON], "without Content-Length"),
        ("container.create", [JSON, length(10), length(10)], "repeated content-length"),
        ("container.create", [JSON, length(10), ("Transfer-Encoding", "chunked")], "both"),
        ("container.create", [JSON, ("content-length", "+10")], "invalid Content-Length"),
        ("container.create", [JSON, ("Content-Length", "1_0")], "invalid Content-Length"),
        ("container.create", [JSON, ("Content-Length", "\u0661")], "invalid Content-Length"),
        ("container.create", [JSON, ("Content-Length", "-1")], "invalid Content-Length"),
        ("container.create", [JSON, length(JSON_BODY_LIMIT + 1)], "over"),
        ("container.create", [length(10)], "not application/json"),
        ("container.create", [("Content-Type", "text/plain"), length(10)], "not application/json"),
        (
            "container.create",
            [("Content-Type", "application/json-patch"), length(2)],
            "not application",
        ),
        ("container.create", [("Content-Type", "application/json;"), length(2)], "malformed"),
        (
            "container.create",
            [("Content-Type", "application/json; a=1; a=2"), length(2)],
            "malformed",
        ),
        (
            "container.create",
            [("Content-Type", "application/json, text/plain"), length(2)],
            "malformed",
        ),
        ("container.create", [JSON, JSON, length(2)], "repeated content-type"),
        ("build", [("Content-Type", "application/x-www-form-urlencoded"), length(20)], "form body"),
        (
            "container.kill",
            [("Content-Type", "Multipart/Form-Data; boundary=x"), length(20)],
            "form",
        ),
        ("container.create", [JSON, ("Transfer-Encoding", "gzip, chunked")], "unsupported"),
        ("container.start", [JSON, ("Transfer-Encoding", "chunked")], "chunked"),
        ("exec.start", [JSON, ("Transfer-Encoding", "chunked")], "chunked"),
        ("container.kill", [("Transfer-Encoding", "chunked")], "takes none"),
        ("container.kill", [length(10**6)], "takes none"),
        ("container.list", [("Upgrade", "tcp"), ("Connection", "Upgrade")], "does not hijack"),
        ("container.attach", [("Upgrade", "h2c"), ("HTTP2-Settings", "AAA")], "HTTP/2"),
        ("container.attach", [("Upgrade", "tcp"), ("Upgrade", "tcp")], "repeated upgrade"),
        ("container.attach", [("Upgrade", "h2c"), ("Connection", "Upgrade")], "only 'tcp'"),
        ("exec.start", [("Upgrade", "websocket"), ("Connection", "Upgrade")], "only 'tcp'"),
        ("grpc", [("Upgrade", "tcp"), ("Connection", "Upgrade")], "only 'h2c'"),
    ],
)
def test_denied(endpoint, headers, reason):
    verdict = check(endpoint, headers)
    assert not verdict.ok
    assert reason in verdict.reason


@pytest.mark.parametrize(
    ("endpoint", "headers", "body"),
    [
        ("container.create", [JSON, length(30)], Body.JSON),
        (
            "container.create",
            [("content-type", "Application/JSON; charset=utf-8"), length(30)],
            Body.JSON,
        ),
        (
            "container.create",
            [("Content-Type", 'application/json; charset="utf-8"'), length(3)],
            Body.JSON,
        ),
        (
            "container.exec",
            [(b"Content-Type", b"application/json"), (b"Content-Length", b"40")],
            Body.JSON,
        ),
        ("volume.create", [length(0)], Body.JSON),
        ("exec.start", [], Body.JSON),
        ("container.start", [], Body.JSON),
        ("container.start", [length(0)], Body.JSON),
        (
            "build",
            [("Content-Type", "application/x-tar"), ("Transfer-Encoding", "chunked")],
            Body.STREAM,
        ),
        ("build", [length(10**9)], Body.STREAM),
        ("image.load", [("Transfer-Encoding", "Chunked")], Body.STREAM),
        (
            "container.archive.put",
            [("Content-Type", "application/x-tar"), length(10**8)],
            Body.STREAM,
        ),
        ("container.kill", [length(0)], Body.NONE),
        ("container.wait", [], Body.NONE),
        ("container.start", [length(2), JSON], Body.JSON),
        ("container.attach", [("Upgrade", "tcp"), ("Connection", "Upgrade")], Body.NONE),
        (
            "exec.start",
            [JSON, length(30), ("Upgrade", "tcp"), ("Connection", "Upgrade")],
            Body.JSON,
        ),
        ("grpc", [("Upgrade", "h2c"), ("Connection", "Upgrade")], Body.NONE),
        ("container.attach", [("Upgrade", "TCP"), ("Connection", "Upgrade")], Body.NONE),
        ("container.attach.ws", [("Upgrade", "websocket"), ("Connection", "Upgrade")], Body.NONE),
    ],
)
def test_allowed(endpoint, headers, body):
    verdict = check(endpoint, headers)
    assert verdict.ok, verdict.reason
    assert verdict.body is body


def test_verdict_carries_the_length_and_chunking():
    assert check("container.create", [JSON, length(42)]).length == 42
    assert check("build", [("Transfer-Encoding", "chunked")]).chunked


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("application/json", "application/json"),
        (" Application/Json ", "application/json"),
        ("application/json;charset=utf-8", "application/json"),
        ('application/json ; q="a;b"', "application/json"),
        ("application", None),
        ("application/json;charset", None),
        ("/json", None),
        ("a/b/c", None),
        ('application/json; x="unterminated', None),
    ],
)
def test_media_type(value, parsed):
    assert media_type(value) == parsed


def test_every_endpoint_has_one_body_kind():
    assert body_kind("container.create") is Body.JSON
    assert body_kind("build") is Body.STREAM
    assert body_kind("container.list") is Body.NONE
