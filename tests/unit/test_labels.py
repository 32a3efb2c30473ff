import pytest

from dockyard import labels
from dockyard.errors import DockyardError


def test_managed_labels_carry_role_and_extras(monkeypatch):
    monkeypatch.delenv("DOCKYARD_LABELS", raising=False)
    found = labels.managed(labels.ROLE_ENGINE, engine="ci", storage_driver="overlay2")
    assert found == {
        "io.dockyard.managed": "true",
        "io.dockyard.role": "engine",
        "io.dockyard.engine": "ci",
        "io.dockyard.storage-driver": "overlay2",
    }


def test_user_labels_are_added_to_everything(monkeypatch):
    monkeypatch.setenv("DOCKYARD_LABELS", "ci.job=42, team=infra")
    found = labels.managed(labels.ROLE_NETWORK)
    assert found["ci.job"] == "42"
    assert found["team"] == "infra"
    assert labels.is_managed(found)


@pytest.mark.parametrize(
    "text", ["novalue", "=x", "io.dockyard.managed=false", "io.dockyard.role=x"]
)
def test_user_labels_refuse_nonsense_and_our_own_keys(text):
    with pytest.raises(DockyardError, match="DOCKYARD_LABELS"):
        labels.user_labels(text)


def test_selectors():
    assert labels.selector() == ["io.dockyard.managed=true"]
    assert labels.selector("engine", engine="ci") == [
        "io.dockyard.managed=true",
        "io.dockyard.role=engine",
        "io.dockyard.engine=ci",
    ]
