"""The guard's time limits on heads and idle connections never cut a long stream."""

from __future__ import annotations

import pytest

from dockyard.guard import server

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("cli", ["20.10"])
def test_logs_follow_and_attach_outlive_the_time_limits(guard, owners, monkeypatch, cli):
    monkeypatch.setattr(server, "HEAD_TIMEOUT", 0.3)
    monkeypatch.setattr(server, "IDLE_TIMEOUT", 0.3)
    alice = owners[0]
    script = "echo one; sleep 1.5; echo two"
    made = guard.docker(alice, "run", "-d", "dockyard/base:0.1", "sh", "-c", script, cli=cli)
    ident = made.stdout.decode().strip()
    followed = guard.docker(alice, "logs", "-f", ident, cli=cli)
    assert followed.stdout == b"one\ntwo\n"
    attached = guard.docker(alice, "run", "--rm", "dockyard/base:0.1", "sh", "-c", script, cli=cli)
    assert attached.stdout == b"one\ntwo\n"
    guard.docker(alice, "rm", ident, cli=cli)
