"""The command renders each finding with its fix, or JSON, and exits 1 on a failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import typer
from typer.testing import CliRunner

from dockyard.doctor import gather
from dockyard.doctor.checks import Facts
from dockyard.doctor.command import doctor

app = typer.Typer()
app.command()(doctor)


@app.command()
def other() -> None:
    """Present so typer keeps ``doctor`` as a named subcommand, as in dockyard's CLI."""


runner = CliRunner()
BROKEN = Facts(stack="s", now=datetime(2030, 1, 1, tzinfo=UTC), host_error="connection refused")


@pytest.fixture
def gathered(monkeypatch):
    asked = []

    def fake(stack):
        asked.append(stack)
        return BROKEN

    monkeypatch.setattr(gather, "gather", fake)
    return asked


def test_a_failure_is_shown_with_its_fix_and_exits_1(gathered):
    result = runner.invoke(app, ["doctor", "--stack", "s"])
    assert result.exit_code == 1
    assert gathered == ["s"]
    assert "host-engine" in result.output
    assert "connection refused" in result.output
    assert "fix: start dockerd" in result.output
    assert "1 problem(s)" in result.output


def test_json_lists_the_findings(gathered):
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    assert gathered == ["dockyard"]
    document = json.loads(result.output)
    assert document["healthy"] is False
    [only] = document["findings"]
    assert set(only) == {"check", "status", "cause", "fix", "detail"}
    assert only["status"] == "fail"
