"""The CLI's own behaviour: help that teaches, and bad input refused before any engine call."""

import subprocess
import sys
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
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


def test_defaults_in_option_help_are_shown_not_eaten_as_markup():
    wide = {"COLUMNS": "200"}
    created = runner.invoke(app, ["engine", "create", "--help"], env=wide)
    assert "existing network to join [default: its own]" in created.output
    leased = runner.invoke(app, ["lease", "--help"], env=wide)
    assert "[default: unix://<state dir>/serve.sock]" in leased.output
    served = runner.invoke(app, ["serve", "--help"], env=wide)
    assert "kubernetes: the kubeconfig [default: $KUBECONFIG]" in served.output


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


def test_client_cert_for_a_service_names_its_owner(tmp_path, monkeypatch):
    from cryptography import x509

    from dockyard import pki

    monkeypatch.setenv("DOCKYARD_STATE_DIR", str(tmp_path))
    result = runner.invoke(app, ["client-cert", "alice", "--for", "guard"])
    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate(
        (tmp_path / result.output.strip() / "cert.pem").read_bytes()
    )
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "alice"
    issuer = pki.PkiStore().issuer(pki.SERVICE_ISSUERS["guard"]).cert_pem
    assert not pki.check_certificate(
        issuer, cert.public_bytes(serialization.Encoding.PEM), now=datetime.now(UTC),
        purpose="client",
    )  # fmt: skip
    refused = runner.invoke(app, ["client-cert", "alice", "--for", "nope"])
    assert refused.exit_code == 1


def test_the_cli_starts_without_its_heavy_modules():
    """``dockyard --help`` and every command's parsing load only typer and rich: the guard's
    data path, pydantic, YAML, the Docker SDK and cryptography load when a command runs."""
    heavy = ("asyncio", "pydantic", "ruamel", "docker", "cryptography", "httptools", "uvloop")
    probe = f"import sys, dockyard.cli; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_pools_shows_each_pools_cache_and_what_its_engines_hold(monkeypatch):
    from dockyard.pool import client

    served = [
        {
            "name": "ci",
            "idle": 2,
            "leased": 1,
            "creating": 0,
            "max": 8,
            "seed": ["debian:12"],
            "engines": [{"name": "e1", "state": "ready", "images": ["debian:12"]}],
            "mirror": {
                "upstream": "https://hub.example",
                "hits": 9,
                "misses": 1,
                "size": 10 * 1024**2,
                "max_size": 20 * 1024**3,
                "problem": None,
            },
        }
    ]
    monkeypatch.setattr(client.Client, "call", lambda self, method, path, body=None: served)
    result = runner.invoke(app, ["pools"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "https://hub.example: 9 hits, 1 misses, 10 of 20480 MiB" in result.output
    assert "debian:12 (1 engine(s) hold it)" in result.output
