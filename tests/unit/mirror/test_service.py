"""Credentials by reference: read from a private file or a variable, refused otherwise."""

from __future__ import annotations

import pytest

from dockyard.config import MirrorConfig
from dockyard.errors import DockyardError
from dockyard.mirror import service


def test_a_private_password_file_is_read(tmp_path):
    secret = tmp_path / "hub"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    cfg = MirrorConfig(upstream="https://h", username="u", password_file=secret)
    assert service.password(cfg) == "s3cret"


def test_a_password_file_others_can_read_is_refused(tmp_path):
    secret = tmp_path / "hub"
    secret.write_text("s3cret")
    secret.chmod(0o644)
    cfg = MirrorConfig(upstream="https://h", username="u", password_file=secret)
    with pytest.raises(DockyardError, match="readable by others") as refused:
        service.password(cfg)
    assert "chmod 600" in (refused.value.fix or "")


def test_a_password_variable_must_be_set(monkeypatch):
    cfg = MirrorConfig(upstream="https://h", username="u", password_env="HUB_TOKEN")
    monkeypatch.delenv("HUB_TOKEN", raising=False)
    with pytest.raises(DockyardError, match="HUB_TOKEN is not set"):
        service.password(cfg)
    monkeypatch.setenv("HUB_TOKEN", "t")
    assert service.password(cfg) == "t"
    assert service.password(MirrorConfig(upstream="https://h")) is None


def test_engines_get_the_hub_mirror_and_trust_the_cache_address():
    found = service.Mirror(
        "dockyard-mirror-x", "http://dockyard-mirror-x:5000", "dockyard-mirror-x:5000", "u"
    )
    assert service.engine_settings(found) == {
        "registry_mirrors": ("http://dockyard-mirror-x:5000",),
        "insecure_registries": ("dockyard-mirror-x:5000",),
    }
    assert service.engine_settings(None) == {}
