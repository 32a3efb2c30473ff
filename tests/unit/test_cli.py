"""The CLI's own behaviour: help that teaches, and bad input refused before any engine call."""

from typer.testing import CliRunner

from dockyard.cli import app

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("engine", "images", "demo"):
        assert command in result.output


def test_engine_create_help_teaches_by_example():
    result = runner.invoke(app, ["engine", "create", "--help"])
    assert result.exit_code == 0
    assert "dockyard engine env ci" in result.output
    assert "--insecure" in result.output


def test_bad_options_are_named_before_anything_is_created(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("the engine must not be contacted for invalid input")

    monkeypatch.setattr("dockyard.docker_api.connect", refuse)
    result = runner.invoke(app, ["engine", "create", "Bad_Name", "--memory", "2q"])
    assert result.exit_code == 1
    assert "invalid engine name 'Bad_Name'" in result.output
    assert "memory: invalid size '2q'" in result.output


def test_unknown_env_format_is_refused():
    result = runner.invoke(app, ["engine", "env", "ci", "--format", "yaml"])
    assert result.exit_code == 1
    assert "unknown format yaml" in result.output
