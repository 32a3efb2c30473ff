"""What the Kubernetes pool writes: label values Kubernetes refuses go to annotations."""

from __future__ import annotations

from dockyard import labels
from dockyard.kube.pool import lease_secret, marker, split_labels
from dockyard.pool import inventory, leases


def test_owner_and_cache_key_become_annotations():
    found = {labels.OWNER: "uid:0", inventory.CACHE_KEY: "git@x:a/b", labels.LEASE: "abc"}
    own, notes = split_labels(found)
    assert own == {labels.LEASE: "abc"}
    assert notes == {labels.OWNER: "uid:0", inventory.CACHE_KEY: "git@x:a/b"}


def test_marker_is_a_secret_named_by_lease_and_expiry(roundtrip):
    lease = leases.Lease("abc123", "ci", "dockyard-ci-1", "repo", 1700000000, "uid:0")
    made = marker(lease, "ns")
    assert made["metadata"]["name"] == lease.marker
    assert made["metadata"]["labels"][labels.ROLE] == inventory.ROLE_LEASE
    assert made["metadata"]["annotations"][labels.OWNER] == "uid:0"
    assert roundtrip(made, "V1Secret") == made
    assert lease_secret("abc123") == "dockyard-lease-abc123"


def test_kube_cli_prints_templates_and_rbac():
    from ruamel.yaml import YAML
    from typer.testing import CliRunner

    from dockyard.cli import app

    rbac = CliRunner().invoke(app, ["kube", "rbac", "--namespace", "ci"])
    assert rbac.exit_code == 0, rbac.output
    kinds = [d["kind"] for d in YAML(typ="safe").load_all(rbac.output)]
    assert kinds == ["ServiceAccount", "Role", "RoleBinding"]
    bad = CliRunner().invoke(app, ["kube", "pod-template", "--for", "drone"])
    assert bad.exit_code != 0
    assert "unknown CI system" in bad.output
