"""A stack's mode and its missing parts, read from what exists: a half-made one too."""

import pytest

from dockyard.stack import status


@pytest.mark.parametrize(
    ("parts", "guarded", "docker_host", "mode"),
    [
        ({"network", "engine-cache", "certs", "ci-home"}, False, "", "dind"),  # failed first up
        ({"network", "engine", "ci"}, False, "tcp://docker:2376", "dind"),
        ({"network", "ci"}, True, "unix:///run/dockyard/guard.sock", "socket"),
        ({"network", "ci"}, False, "unix:///var/run/docker.sock", "socket-unsafe"),
        ({"network"}, False, "", "unknown"),
    ],
)
def test_the_mode_comes_from_what_exists(parts, guarded, docker_host, mode):
    assert status.mode_of(parts, guarded, docker_host) == mode


def test_a_half_made_dind_stack_lists_its_missing_engine_and_ci_with_the_cause():
    found = status.missing("s", "dind", set())
    assert [(c.component, c.name, c.state, c.health) for c in found] == [
        ("ci", "s-ci", "missing", "failing"),
        ("engine", "s-engine", "missing", "failing"),
    ]
    assert "the last dockyard up stopped" in found[0].detail
    assert status.missing("s", "socket", {"ci"}) == []
