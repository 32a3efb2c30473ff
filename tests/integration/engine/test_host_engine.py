"""After the README's own `eval "$(dockyard engine env ci)"`, dockyard still finds its host
engine, and says why it passed DOCKER_HOST over."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.docker


def test_a_docker_host_of_a_dockyard_engine_is_not_taken_for_the_host_engine(docker_client):
    state = os.environ["DOCKYARD_STATE_DIR"]
    env = {
        **os.environ,
        "DOCKER_HOST": "tcp://ci:2376",
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": f"{state}/pki/clients/engine-ci",
    }
    done = subprocess.run(
        [sys.executable, "-m", "dockyard", "engine", "ls", "--json"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "is dockyard engine ci (from dockyard engine env)" in done.stderr
    assert "DOCKYARD_DOCKER_HOST" in done.stderr
