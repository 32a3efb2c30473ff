"""``dockyard guard`` through a tiny typer app, as the CLI will register it."""

import typer
from typer.testing import CliRunner

from dockyard.guard import command

app = typer.Typer()
app.command("guard")(command.guard)
app.command("noop")(lambda: None)
runner = CliRunner()


def test_help_teaches_the_options():
    result = runner.invoke(app, ["guard", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--listen", "--profile", "--allow-bind", "--mode", "--audit-log", "--tls"):
        assert option in result.output


def test_tcp_without_tls_is_refused():
    result = runner.invoke(app, ["guard", "--listen", "tcp://0.0.0.0:2376"])
    assert result.exit_code == 1
    assert "--tls" in result.output


def test_unknown_profile_names_the_known_ones():
    result = runner.invoke(app, ["guard", "--profile", "nope"])
    assert result.exit_code == 1
    assert "ci-build" in result.output


def test_allow_bind_of_root_is_refused():
    result = runner.invoke(app, ["guard", "--allow-bind", "/"])
    assert result.exit_code == 1


def test_profiles_get_allow_bind_and_socket_proxy_env():
    profile = command.choose_profile("ci-build", None, ["/srv/ci"], {})
    assert profile.rules.allow_bind == ("/srv/ci",)
    proxy = command.choose_profile("docker-socket-proxy", None, [], {"CONTAINERS": "1"})
    assert proxy.permits("container.list")
    assert not proxy.permits("container.create")


def test_listen_urls_carry_owner_and_mode():
    (listener,) = command.listeners(
        ["unix:///run/x.sock?owner=job 1&mode=0600"], None, False, False
    )
    assert (listener.url, listener.owner, listener.mode) == ("unix:///run/x.sock", "job_1", 0o600)
    (listener,) = command.listeners(["unix:///run/x.sock"], "default", False, False)
    assert listener.owner == "default"
