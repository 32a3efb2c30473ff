"""A pod from ``dockyard kube pod-template --for generic`` runs a build for real (v1.20: the
classic sidecar path; the native one is checked on manifests in the unit tests)."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from dockyard.cli import app

pytestmark = [pytest.mark.docker, pytest.mark.kube]
BUILD = (
    "mkdir -p /tmp/b && cd /tmp/b && echo t >f && printf 'FROM scratch\\nCOPY f /f\\n' >D"
    " && DOCKER_BUILDKIT=0 docker build -q -f D -t from-template:1 . && echo BUILT"
)


def test_generic_template_builds_in_the_cluster(cluster, jobs, unique):
    result = CliRunner().invoke(
        app,
        ["kube", "pod-template", "--for", "generic", "--server-version", "1.20",
         "--image", "dockyard/engine:0.1", "--job-image", "dockyard/engine:0.1",
         "--name", unique("tpl")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    secret, pod = YAML(typ="safe").load_all(result.output)
    assert "initContainers" not in pod["spec"]
    pod["spec"]["containers"][0]["args"] = [BUILD]
    cluster.core.create_namespaced_secret(cluster.namespace, secret)
    code, log = jobs.run_pod(cluster, pod, timeout=120)
    assert code == 0, log
    assert "BUILT" in log
